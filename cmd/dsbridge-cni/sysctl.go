package main

import (
	"errors"
	"fmt"

	"github.com/dsbridge/dsbridge/netsetup"
)

// Sysctls under net/ belong to the network namespace of the thread that
// opens them, so these run inside netsetup.Do.

// The sysctls ADD sets in the pod's network namespace.
const (
	// sysctlUnprivPortStart lowered to 0 lets the uid-107 sidecar bind UDP
	// 67 (DHCPv4) and 547 (DHCPv6); it governs IPv6 binds too.
	sysctlUnprivPortStart = "net/ipv4/ip_unprivileged_port_start"
	// sysctlArpIgnoreAll = 1 keeps the pod from answering ARP for the VM's
	// IPv4 address, which stays on the dummy (KubeVirt managedTap does the
	// same).
	sysctlArpIgnoreAll = "net/ipv4/conf/all/arp_ignore"
	// sysctlAcceptLocalAll = 1 lets the pod take the VM's DHCPv4 Renew,
	// Rebind and Inform, whose source (the VM's address) is local to the
	// pod, on the dummy (net/ipv4/fib_frontend.c fib_validate_source:
	// without it, a local source is a martian). The "all" value is ORed
	// with the bridge's (IN_DEV_ORCONF).
	sysctlAcceptLocalAll = "net/ipv4/conf/all/accept_local"
	// sysctlRPFilterAll and sysctlRPFilterDefault = 0: the strict and
	// loose reverse-path checks reject that source too on a bridge without
	// IPv4 addresses (__fib_validate_source: no address, rp_filter set ->
	// -EXDEV). The bridge's value is the larger of "all" and its own, which
	// it takes from "default" when KubeVirt creates it after ADD
	// (IN_DEV_MAXCONF).
	sysctlRPFilterAll     = "net/ipv4/conf/all/rp_filter"
	sysctlRPFilterDefault = "net/ipv4/conf/default/rp_filter"
	// sysctlAcceptRADefault and sysctlAcceptDADDefault = 0: the bridge
	// KubeVirt's managedTap creates after ADD (k6t-<x>) takes both from
	// "default", so it neither configures itself from router
	// advertisements nor holds its link-local address tentative. The
	// sidecar cannot set them itself: a container runtime mounts /proc/sys
	// read-only (runc's readonlyPaths), whatever the capabilities.
	sysctlAcceptRADefault  = "net/ipv6/conf/default/accept_ra"
	sysctlAcceptDADDefault = "net/ipv6/conf/default/accept_dad"
)

// The values ADD sets.
const (
	unprivPortStartSet = 0
	arpIgnoreSet       = 1
)

// wantSysctls are the values ADD sets, in order.
var wantSysctls = []struct {
	name string
	val  int
	ipv6 bool // skipped in a namespace without IPv6
}{
	{sysctlUnprivPortStart, unprivPortStartSet, false},
	{sysctlArpIgnoreAll, arpIgnoreSet, false},
	{sysctlAcceptLocalAll, 1, false},
	{sysctlRPFilterAll, 0, false},
	{sysctlRPFilterDefault, 0, false},
	{sysctlAcceptRADefault, 0, true},
	{sysctlAcceptDADDefault, 0, true},
}

// plannedSysctls returns what ADD will set, with the values to restore:
// prev's, when non-nil (from before any dsbridge attachment of this pod,
// a sibling's or an earlier record, since the live values may already be
// ours), else the live ones. It changes nothing.
func plannedSysctls(prev map[string]int) ([]sysctlChange, error) {
	var out []sysctlChange
	for _, w := range wantSysctls {
		if w.ipv6 && !netsetup.IPv6Enabled() {
			continue
		}
		cur, ok := prev[w.name]
		if !ok {
			v, err := netsetup.ReadSysctl(w.name)
			if err != nil {
				return nil, err
			}
			cur = v
		}
		out = append(out, sysctlChange{Name: w.name, Prev: cur, Set: w.val})
	}
	return out, nil
}

// writeSysctls sets each planned value.
func writeSysctls(changes []sysctlChange) error {
	for _, c := range changes {
		if err := netsetup.WriteSysctl(c.Name, c.Set); err != nil {
			return err
		}
	}
	return nil
}

// restoreSysctls puts back each value ADD changed, in reverse order, unless
// something else changed it since (then that value stays). It tries every
// sysctl and reports every failure.
func restoreSysctls(changes []sysctlChange) error {
	var errs []error
	for i := len(changes) - 1; i >= 0; i-- {
		c := changes[i]
		cur, err := netsetup.ReadSysctl(c.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if cur != c.Set || c.Prev == c.Set {
			continue
		}
		errs = append(errs, netsetup.WriteSysctl(c.Name, c.Prev))
	}
	return errors.Join(errs...)
}

// checkSysctls reports the first sysctl no longer at the value ADD set.
func checkSysctls(changes []sysctlChange) error {
	for _, c := range changes {
		cur, err := netsetup.ReadSysctl(c.Name)
		if err != nil {
			return err
		}
		if cur != c.Set {
			return fmt.Errorf("sysctl %q is %d, want %d", c.Name, cur, c.Set)
		}
	}
	return nil
}
