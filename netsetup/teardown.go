package netsetup

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Teardown puts the pod back exactly as the snapshot describes it. The pod
// interface comes first: the dummy goes, the uplink is detached and
// renamed back to the pod interface name, and gets back its MAC, MTU,
// addrgenmode, addresses (with their flags), routes (with their metric,
// protocol, scope and flags) and administrative state; then the tap goes
// (a stand-in VM port is only detached from the bridge), the bridge, and
// net.ipv4.conf.all.arp_ignore is restored. It is best effort: a step that
// fails does not stop the others (only those that need the pod interface
// wait for it), and every failure is reported, joined. It is idempotent,
// works from any part of the layout that exists, and works in the caller's
// network namespace.
func Teardown(s *Snapshot, l Layout) error {
	errs := []error{deleteAddrHolder(l.Dummy)}
	pod, err := restoreName(l)
	errs = append(errs, err)
	if err == nil {
		errs = append(errs, restorePod(pod, s))
	}
	errs = append(errs, removeVMPort(l), deleteIfType(l.Bridge, "bridge"), restoreArpIgnore(s))
	return errors.Join(errs...)
}

// restorePod gives the pod interface back its link settings, addresses and
// routes, trying each even when one fails.
func restorePod(pod netlink.Link, s *Snapshot) error {
	err := errors.Join(restoreLink(pod, s), restoreAddrs(pod, s), restoreRoutes(pod, s))
	waitLinkLocal(pod, s)
	return err
}

func restoreArpIgnore(s *Snapshot) error {
	if v, err := ReadSysctl(sysctlArpIgnoreAll); err == nil && v != s.Restore.ArpIgnore {
		return WriteSysctl(sysctlArpIgnoreAll, s.Restore.ArpIgnore)
	}
	return nil
}

// removeVMPort deletes the tap; a stand-in VM port is not ours to delete,
// and is only detached from the layout's bridge.
func removeVMPort(l Layout) error {
	tap, err := netlink.LinkByName(l.Tap)
	switch {
	case err != nil && isNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("failed to look up %q: %w", l.Tap, err)
	case l.TapStandIn:
		return detachFrom(tap, l.Bridge)
	}
	return deleteIfType(l.Tap, "tuntap")
}

// detachFrom detaches link from bridge, and from nothing else.
func detachFrom(link netlink.Link, bridge string) error {
	m := link.Attrs().MasterIndex
	if m == 0 {
		return nil
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil || br.Attrs().Index != m {
		return nil // not a port of our bridge
	}
	if err := netlink.LinkSetNoMaster(link); err != nil {
		return fmt.Errorf("failed to detach %q: %w", link.Attrs().Name, err)
	}
	return nil
}

// deleteIfType deletes name when it exists with the given type; a link of
// another type is left alone and reported.
func deleteIfType(name, wantType string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("failed to look up %q: %w", name, err)
	}
	if link.Type() != wantType {
		return &LayoutError{Link: name, Expected: wantType + " (to delete)", Found: "type " + link.Type()}
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("failed to delete %q: %w", name, err)
	}
	return nil
}

// deleteAddrHolder deletes the dummy <x> (or its ifb stand-in).
func deleteAddrHolder(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("failed to look up %q: %w", name, err)
	}
	if !isAddrHolder(link.Type()) {
		// Already the pod interface again (teardown ran before).
		return nil
	}
	return deleteIfType(name, link.Type())
}

// restoreName detaches the uplink and gives it back the pod interface's
// name; if that already happened it returns the pod interface.
func restoreName(l Layout) (netlink.Link, error) {
	up, err := netlink.LinkByName(l.Uplink)
	if err != nil {
		if !isNotFound(err) {
			return nil, fmt.Errorf("failed to look up %q: %w", l.Uplink, err)
		}
		return linkByName(l.PodIface)
	}
	if err := netlink.LinkSetDown(up); err != nil {
		return nil, fmt.Errorf("failed to set %q down: %w", l.Uplink, err)
	}
	if up.Attrs().MasterIndex != 0 {
		if err := netlink.LinkSetNoMaster(up); err != nil {
			return nil, fmt.Errorf("failed to detach %q: %w", l.Uplink, err)
		}
	}
	if err := netlink.LinkSetName(up, l.PodIface); err != nil {
		return nil, fmt.Errorf("failed to rename %q to %q: %w", l.Uplink, l.PodIface, err)
	}
	return linkByName(l.PodIface)
}

// restoreLink sets MAC and addrgenmode (with the link down, only when they
// differ), MTU, then the administrative state.
func restoreLink(pod netlink.Link, s *Snapshot) error {
	name := pod.Attrs().Name
	macDiffers := !s.MAC.IsZero() && !bytes.Equal(pod.Attrs().HardwareAddr, s.MAC[:])
	genDiffers := false
	if s.Restore.AddrGenMode >= 0 && IPv6Enabled() {
		v, err := ReadSysctl(ipv6Conf(name, "addr_gen_mode"))
		genDiffers = err != nil || v != s.Restore.AddrGenMode
	}
	if macDiffers || genDiffers {
		if err := netlink.LinkSetDown(pod); err != nil {
			return fmt.Errorf("failed to set %q down: %w", name, err)
		}
		pod.Attrs().Flags &^= net.FlagUp
	}
	if macDiffers {
		if err := netlink.LinkSetHardwareAddr(pod, s.MAC.HardwareAddr()); err != nil {
			return fmt.Errorf("failed to restore MAC of %q: %w", name, err)
		}
	}
	if genDiffers {
		if err := netlink.LinkSetIP6AddrGenMode(pod, s.Restore.AddrGenMode); err != nil {
			return fmt.Errorf("failed to restore addrgenmode of %q: %w", name, err)
		}
	}
	if s.MTU > 0 && pod.Attrs().MTU != s.MTU {
		if err := netlink.LinkSetMTU(pod, s.MTU); err != nil {
			return fmt.Errorf("failed to restore MTU of %q: %w", name, err)
		}
	}
	if !s.Restore.Up {
		return nil
	}
	return setUp(pod)
}

// linkLocalWait bounds how long Teardown waits for the kernel to give the
// restored interface its IPv6 link-local address again (it does so once
// link watch reports the carrier, up to a second after the link comes up).
const linkLocalWait = 3 * time.Second

// waitLinkLocal returns once pod has an IPv6 link-local address, when one
// is to be expected (IPv6 on, addresses generated, link up with carrier).
func waitLinkLocal(pod netlink.Link, s *Snapshot) {
	if !s.Restore.Up || s.Restore.AddrGenMode < 0 || s.Restore.AddrGenMode == nl.IN6_ADDR_GEN_MODE_NONE || !IPv6Enabled() {
		return
	}
	for deadline := time.Now().Add(linkLocalWait); time.Now().Before(deadline); time.Sleep(neighPollInterval) {
		addrs, err := addrList(pod, netlink.FAMILY_V6)
		if err != nil {
			return
		}
		for _, a := range addrs {
			if a.Scope == unix.RT_SCOPE_LINK {
				return
			}
		}
	}
}

func restoreAddrs(pod netlink.Link, s *Snapshot) error {
	var errs []error
	for _, a := range snapshotAddrs(s) {
		if err := netlink.AddrReplace(pod, netlinkAddr(a)); err != nil {
			errs = append(errs, fmt.Errorf("failed to restore %s on %q: %w", a.Prefix, pod.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

// restoreRoutes adds on-link routes first (a gateway may need them), then
// the default routes, then routes via a next hop.
func restoreRoutes(pod netlink.Link, s *Snapshot) error {
	var onLink, via []Route
	for _, r := range s.Routes {
		if r.Via.IsValid() {
			via = append(via, r)
		} else {
			onLink = append(onLink, r)
		}
	}
	for _, gw := range []*Gateway{s.Gateway4, s.Gateway6} {
		if gw != nil {
			onLink = append(onLink, Route{Dst: defaultDst(gw.IP), Via: gw.IP, RouteAttrs: gw.Route})
		}
	}
	var errs []error
	for _, r := range slices.Concat(onLink, via) {
		if err := netlink.RouteReplace(netlinkRoute(pod, r)); err != nil {
			errs = append(errs, fmt.Errorf("failed to restore route %s via %s on %q: %w", r.Dst, r.Via, pod.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

func defaultDst(gw netip.Addr) netip.Prefix {
	if gw.Is4() {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
}

func netlinkRoute(link netlink.Link, r Route) *netlink.Route {
	nr := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       ipNet(r.Dst),
		Priority:  r.Metric,
		Protocol:  netlink.RouteProtocol(r.Protocol),
		Scope:     netlink.Scope(r.Scope),
		Table:     unix.RT_TABLE_MAIN,
		Type:      unix.RTN_UNICAST,
		MTU:       r.MTU,
		AdvMSS:    r.AdvMSS,
	}
	if r.Via.IsValid() {
		nr.Gw = net.IP(r.Via.WithZone("").AsSlice())
	}
	if r.Src.IsValid() {
		nr.Src = net.IP(r.Src.AsSlice())
	}
	if r.OnLink {
		nr.Flags |= unix.RTNH_F_ONLINK
	}
	return nr
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// snapshotAddrs is Restore.Addrs, or the plain prefixes of a snapshot that
// lacks them (written by hand or by an older version).
func snapshotAddrs(s *Snapshot) []Addr {
	if len(s.Restore.Addrs) > 0 {
		return s.Restore.Addrs
	}
	var out []Addr
	for _, p := range slices.Concat(s.IPv4, s.IPv6) {
		out = append(out, Addr{Prefix: p})
	}
	return out
}

func netlinkAddr(a Addr) *netlink.Addr {
	na := &netlink.Addr{IPNet: ipNet(a.Prefix), Flags: a.Flags}
	if a.ValidLft > 0 {
		na.ValidLft, na.PreferedLft = a.ValidLft, a.PreferedLft
	}
	return na
}

// removeOtherAddrs deletes global addresses of link that are not in want.
func removeOtherAddrs(link netlink.Link, want []Addr) error {
	addrs, err := addrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("failed to list addresses of %q: %w", link.Attrs().Name, err)
	}
	for i, a := range addrs {
		p, ok := prefixOf(a.IPNet)
		if !ok || a.Scope != unix.RT_SCOPE_UNIVERSE || slices.ContainsFunc(want, func(w Addr) bool { return w.Prefix == p }) {
			continue
		}
		if err := netlink.AddrDel(link, &addrs[i]); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("failed to remove %s from %q: %w", p, link.Attrs().Name, err)
		}
	}
	return nil
}
