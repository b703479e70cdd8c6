package netsetup

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// readRoutes records the main-table unicast routes through link: the
// lowest-metric default of each family becomes the gateway, every other
// route (further defaults included) goes to s.Routes. The kernel's own
// connected-prefix routes (proto kernel) are left out: adding the addresses
// recreates them.
func readRoutes(ctx context.Context, link netlink.Link, s *Snapshot, timeout time.Duration) error {
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := routeList(family, &netlink.Route{LinkIndex: link.Attrs().Index}, netlink.RT_FILTER_OIF)
		if err != nil {
			return fmt.Errorf("failed to list routes of %q: %w", link.Attrs().Name, err)
		}
		gw := classifyRoutes(routes, s)
		if gw == nil {
			continue
		}
		resolveGateway(ctx, link, gw, timeout)
		if family == netlink.FAMILY_V4 {
			s.Gateway4 = gw
		} else {
			s.Gateway6 = gw
		}
	}
	return nil
}

// classifyRoutes appends the non-default routes to s.Routes and returns the
// default route with the lowest metric as a Gateway (nil if none).
func classifyRoutes(routes []netlink.Route, s *Snapshot) *Gateway {
	var gw *Gateway
	for _, r := range routes {
		route, ok := routeOf(r)
		if !ok {
			continue
		}
		if route.Dst.Bits() != 0 || !route.Via.IsValid() {
			s.Routes = append(s.Routes, route)
			continue
		}
		if gw != nil && gw.Route.Metric <= route.Metric {
			s.Routes = append(s.Routes, route)
			continue
		}
		if gw != nil {
			s.Routes = append(s.Routes, Route{Dst: route.Dst, Via: gw.IP, RouteAttrs: gw.Route})
		}
		gw = &Gateway{IP: route.Via, Route: route.RouteAttrs}
	}
	return gw
}

// routeOf converts a kernel route; ok is false for what the snapshot does not
// keep (kernel-made, non-unicast, multipath).
func routeOf(r netlink.Route) (Route, bool) {
	if r.Type != unix.RTN_UNICAST || r.Protocol == unix.RTPROT_KERNEL || len(r.MultiPath) > 0 {
		return Route{}, false
	}
	var route Route
	if p, ok := prefixOf(r.Dst); ok {
		route.Dst = p
	} else if r.Family == netlink.FAMILY_V4 {
		route.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	} else {
		route.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	if r.Gw != nil {
		route.Via, _ = addrOf(r.Gw)
	}
	if r.Src != nil {
		route.Src, _ = addrOf(r.Src)
	}
	route.Metric = r.Priority
	route.Protocol = int(r.Protocol)
	route.Scope = int(r.Scope)
	route.OnLink = r.Flags&unix.RTNH_F_ONLINK != 0
	route.MTU = r.MTU
	route.AdvMSS = r.AdvMSS
	return route, true
}

// resolveGateway fills gw.MAC from the neighbour table, forcing resolution
// with one datagram to the gateway's discard port when the entry is
// missing, and gw.LinkLocal for an IPv6 gateway. A MAC that cannot be
// learned within timeout stays zero.
func resolveGateway(ctx context.Context, link netlink.Link, gw *Gateway, timeout time.Duration) {
	mac := neighborMAC(link, gw.IP)
	if mac.IsZero() {
		poke(ctx, link.Attrs().Name, gw.IP)
		mac = pollNeighborMAC(ctx, link, gw.IP, timeout)
	}
	gw.MAC = mac
	if gw.IP.Is6() {
		gw.LinkLocal = gatewayLinkLocal(gw.IP, mac)
	}
}

// gatewayLinkLocal is a link-local next hop as is, else fe80:: + EUI-64 of
// the gateway MAC (RFC 4291 appendix A), else zero.
func gatewayLinkLocal(ip netip.Addr, mac frame.MAC) netip.Addr {
	switch {
	case ip.IsLinkLocalUnicast():
		return ip.WithZone("")
	case mac.IsZero():
		return netip.Addr{}
	}
	return frame.LinkLocalFromMAC(mac)
}

// usableNeigh are the neighbour states whose link-layer address is valid.
const usableNeigh = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY |
	netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP

func neighborMAC(link netlink.Link, ip netip.Addr) frame.MAC {
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	neighs, err := neighList(link.Attrs().Index, family)
	if err != nil {
		return frame.MAC{}
	}
	for _, n := range neighs {
		a, ok := addrOf(n.IP)
		mac, isMAC := frame.MACFrom(n.HardwareAddr)
		if ok && a == ip.WithZone("") && n.State&usableNeigh != 0 && isMAC {
			return mac
		}
	}
	return frame.MAC{}
}

func pollNeighborMAC(ctx context.Context, link netlink.Link, ip netip.Addr, timeout time.Duration) frame.MAC {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(neighPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return frame.MAC{}
		case <-deadline.C:
			return neighborMAC(link, ip)
		case <-tick.C:
			if mac := neighborMAC(link, ip); !mac.IsZero() {
				return mac
			}
		}
	}
}

// poke sends one UDP datagram to the gateway's discard port so the kernel
// resolves its link-layer address; errors are irrelevant (the neighbour
// table is read afterwards). The dial happens on the caller's thread, hence
// in the caller's network namespace.
func poke(ctx context.Context, ifname string, ip netip.Addr) {
	host := ip.WithZone("").String()
	if ip.Is6() && ip.IsLinkLocalUnicast() {
		host += "%" + ifname
	}
	d := net.Dialer{Timeout: 100 * time.Millisecond}
	c, err := d.DialContext(ctx, "udp", net.JoinHostPort(host, strconv.Itoa(discardPort)))
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.Write([]byte{0})
}
