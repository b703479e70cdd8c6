package netsetup

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// newLab builds the standard lab for spec (skipping only when namespaces
// cannot be created: EPERM).
func newLab(t *testing.T, spec lab.PodSpec) *lab.Lab {
	t.Helper()
	l := lab.NewLab(t, spec)
	// The guest's link up, as a running VM's: the tap stand-in has carrier,
	// so its link-local address finishes DAD instead of hanging tentative.
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "up")
	return l
}

// do runs fn in ns and fails the test on error.
func do(t *testing.T, ns *lab.NS, fn func() error) {
	t.Helper()
	if err := ns.Do(fn); err != nil {
		t.Fatal(err)
	}
}

func snapshotOpts(l *lab.Lab) SnapshotOptions {
	return SnapshotOptions{PodIface: l.Spec.PodIface, ResolvConf: l.ResolvConf, Hostname: l.Hostname, ResolveTimeout: 2 * time.Second}
}

// takeIn takes the pod's snapshot inside its namespace.
func takeIn(t *testing.T, l *lab.Lab) *Snapshot {
	t.Helper()
	var s *Snapshot
	do(t, l.Pod, func() (err error) {
		s, err = Take(context.Background(), snapshotOpts(l))
		return err
	})
	return s
}

// standInLayout is the layout with the lab's veth standing in for the tap.
func standInLayout(l *lab.Lab) Layout {
	lay := LayoutFor(l.Spec.PodIface, l.Tap)
	lay.TapStandIn = true
	return lay
}

// dumpOpts says how a dump treats MACs no test can predict.
type dumpOpts struct {
	// stable MACs are printed; every other MAC prints as "random".
	stable []string
}

// dump lists every link, address, route (all tables) and the sysctls this
// package touches in the current namespace, one sorted line each, with
// interface indexes replaced by names: two dumps are equal when the
// namespaces' networking is.
func dump(o *dumpOpts) ([]string, error) {
	links, err := linkList()
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	random := map[int]bool{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
		random[l.Attrs().Index] = strings.Contains(dumpLink(l, names, o), " mac random ")
	}
	var out []string
	for _, l := range links {
		out = append(out, dumpLink(l, names, o))
		addrs, err := addrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			ip := a.IPNet.String()
			if a.IP.IsLinkLocalUnicast() && random[l.Attrs().Index] {
				continue // derived from a random MAC, and its DAD state from timing
			}
			out = append(out, fmt.Sprintf("addr %s %s scope %d flags %#x", l.Attrs().Name, ip, a.Scope, a.Flags))
		}
		if v, err := ReadSysctl(ipv6Conf(l.Attrs().Name, "addr_gen_mode")); err == nil {
			out = append(out, fmt.Sprintf("sysctl %s addr_gen_mode=%d", l.Attrs().Name, v))
		}
	}
	routes, err := routeList(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		dst := r.Dst.String()
		if r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast() && r.Table == unix.RT_TABLE_LOCAL && random[r.LinkIndex] {
			continue // the local route of such an address
		}
		out = append(out, fmt.Sprintf("route table %d %s via %s dev %s proto %d scope %d metric %d type %d flags %#x src %s mtu %d",
			r.Table, dst, r.Gw, names[r.LinkIndex], r.Protocol, r.Scope, r.Priority, r.Type, r.Flags&^carrierFlags, r.Src, r.MTU))
	}
	v, err := ReadSysctl(sysctlArpIgnoreAll)
	if err != nil {
		return nil, err
	}
	out = append(out, fmt.Sprintf("sysctl arp_ignore=%d", v))
	slices.Sort(out)
	return out, nil
}

// carrierFlags are the route flags that follow a link's carrier (dead,
// linkdown): state the kernel updates asynchronously, not configuration.
const carrierFlags = unix.RTNH_F_DEAD | unix.RTNH_F_LINKDOWN

func dumpLink(l netlink.Link, names map[int]string, o *dumpOpts) string {
	a := l.Attrs()
	mac := a.HardwareAddr.String()
	if o != nil && !slices.Contains(o.stable, mac) && mac != "" {
		mac = "random"
	}
	s := fmt.Sprintf("link %s type %s mac %s mtu %d up %t master %s", a.Name, l.Type(), mac, a.MTU, a.Flags&net.FlagUp != 0, names[a.MasterIndex])
	if tap, ok := l.(*netlink.Tuntap); ok {
		s += fmt.Sprintf(" tun mode %d flags %#x owner %d group %d persist %t", tap.Mode, tap.Flags, tap.Owner, tap.Group, !tap.NonPersist)
	}
	if a.MasterIndex != 0 {
		if pi, err := linkProtinfo(l); err == nil {
			s += fmt.Sprintf(" learning %t isolated %t", pi.Learning, pi.Isolated)
		}
	}
	return s
}

// settledDumpIn dumps l's pod namespace once it has settled: no address
// tentative (a fresh lab's link-local addresses are still in DAD) and two
// dumps 200 ms apart equal (the kernel inserts some routes from a work
// queue, after the netlink call that causes them has returned).
func settledDumpIn(t *testing.T, l *lab.Lab, o *dumpOpts) []string {
	t.Helper()
	prev := dumpIn(t, l, o)
	for deadline := time.Now().Add(5 * time.Second); ; prev = dumpIn(t, l, o) {
		time.Sleep(200 * time.Millisecond)
		d := dumpIn(t, l, o)
		tentative := strings.Contains(strings.Join(grep(d, "addr "), "\n"), "flags 0xc0")
		if (!tentative && slices.Equal(prev, d)) || time.Now().After(deadline) {
			return d
		}
	}
}

// dumpIn dumps l's pod namespace.
func dumpIn(t *testing.T, l *lab.Lab, o *dumpOpts) []string {
	t.Helper()
	var d []string
	do(t, l.Pod, func() (err error) {
		d, err = dump(o)
		return err
	})
	return d
}

func grep(lines []string, substr string) []string {
	var out []string
	for _, l := range lines {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}
