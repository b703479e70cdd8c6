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
}{
	{sysctlUnprivPortStart, unprivPortStartSet},
	{sysctlArpIgnoreAll, arpIgnoreSet},
}

// plannedSysctls returns what ADD will set, with the values to restore:
// prev's, when non-nil (from before any dsbridge attachment of this pod,
// a sibling's or an earlier record, since the live values may already be
// ours), else the live ones. It changes nothing.
func plannedSysctls(prev map[string]int) ([]sysctlChange, error) {
	var out []sysctlChange
	for _, w := range wantSysctls {
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
