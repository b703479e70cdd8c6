package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/netsetup"
)

// guestNet is what a guest's interface holds that a migration changes: its
// global addresses, the gateways of its routes, and its IPv6 on-link
// prefixes. Every list is sorted.
type guestNet struct {
	Addrs4, Addrs6 []string // "addr/len"
	// Via4 and Via6 are the gateways of the default routes; Routers4 every
	// gateway of an IPv4 route (option 121 routes included).
	Via4, Via6, Routers4 []string
	OnLink6              []string // prefix routes without a gateway, but fe80::/64 and host routes
}

// family4 and family6 are the parts of n of one family.
func (n guestNet) family4() guestNet {
	return guestNet{Addrs4: n.Addrs4, Via4: n.Via4, Routers4: n.Routers4}
}

func (n guestNet) family6(addrs bool) guestNet {
	v := guestNet{Via6: n.Via6, OnLink6: n.OnLink6}
	if addrs {
		v.Addrs6 = n.Addrs6
	}
	return v
}

func (n guestNet) String() string {
	return fmt.Sprintf("addrs %v %v, default via %v %v, IPv4 routers %v, IPv6 on-link %v",
		n.Addrs4, n.Addrs6, n.Via4, n.Via6, n.Routers4, n.OnLink6)
}

// netWatch reads a guest's interface over netlink, cheap enough to poll
// every few milliseconds.
type netWatch struct {
	h    *netlink.Handle
	link netlink.Link
}

func watchNet(t *testing.T, l *lab.Lab) *netWatch {
	t.Helper()
	ns, err := netns.GetFromName(l.Guest.Name)
	if err != nil {
		t.Fatalf("open netns %s: %v", l.Guest.Name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink in %s: %v", l.Guest.Name, err)
	}
	t.Cleanup(h.Close)
	link, err := h.LinkByName(l.GuestIf)
	if err != nil {
		t.Fatalf("guest link %s: %v", l.GuestIf, err)
	}
	return &netWatch{h: h, link: link}
}

// read returns the interface's state now.
func (w *netWatch) read() (guestNet, error) {
	var n guestNet
	addrs, err := netsetup.RetryDump(func() ([]netlink.Addr, error) { return w.h.AddrList(w.link, netlink.FAMILY_ALL) })
	if err != nil {
		return n, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if a.Scope != unix.RT_SCOPE_UNIVERSE {
			continue
		}
		if a.IP.To4() != nil {
			n.Addrs4 = append(n.Addrs4, a.IPNet.String())
		} else {
			n.Addrs6 = append(n.Addrs6, a.IPNet.String())
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := netsetup.RetryDump(func() ([]netlink.Route, error) { return w.h.RouteList(w.link, fam) })
		if err != nil {
			return n, fmt.Errorf("list routes: %w", err)
		}
		for _, r := range routes {
			n.addRoute(fam, r)
		}
	}
	for _, s := range [][]string{n.Addrs4, n.Addrs6, n.Via4, n.Via6, n.Routers4, n.OnLink6} {
		slices.Sort(s)
	}
	return n, nil
}

// addRoute adds what r shows; a multipath route (two routers with the same
// metric) counts once per next hop.
func (n *guestNet) addRoute(fam int, r netlink.Route) {
	for _, hop := range r.MultiPath {
		n.addRoute(fam, netlink.Route{Dst: r.Dst, Gw: hop.Gw})
	}
	if len(r.MultiPath) > 0 {
		return
	}
	gw := ""
	if r.Gw != nil {
		gw = r.Gw.String()
	}
	isDefault := r.Dst == nil || isZeroPrefix(r.Dst)
	switch {
	case fam == netlink.FAMILY_V4 && gw != "":
		n.Routers4 = appendNew(n.Routers4, gw)
		if isDefault {
			n.Via4 = append(n.Via4, gw)
		}
	case fam == netlink.FAMILY_V6 && isDefault && gw != "":
		n.Via6 = append(n.Via6, gw)
	case fam == netlink.FAMILY_V6 && gw == "" && r.Dst != nil:
		p, ok := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		if ok && ones < 128 && !p.IsLinkLocalUnicast() && !p.IsMulticast() {
			n.OnLink6 = append(n.OnLink6, r.Dst.String())
		}
	}
}

func isZeroPrefix(d *net.IPNet) bool {
	ones, _ := d.Mask.Size()
	return ones == 0
}

func appendNew(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}
