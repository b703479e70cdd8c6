package main

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/dsbridge/dsbridge/netsetup"
	"github.com/dsbridge/dsbridge/ra/kernel"
)

// The server identifier route makes every address of kernel.ServerIDNet
// (169.254.75.0/24) local to the pod, as "ip route add local
// 169.254.75.0/24 dev lo table local" does, without putting an address on
// any link. KubeVirt numbers the server identifier 169.254.75.1<index> by
// the VMI interface's position, which the CNI does not know; the route
// covers every index. With it:
//
//   - the sidecar's UDP socket may send from the server identifier with
//     IP_PKTINFO's ipi_spec_dst: __ip_dev_find falls back to the local
//     table (net/ipv4/devinet.c), so the DHCPv4 replies no longer carry the
//     VM's address as their source;
//   - a unicast Renew to the server identifier is a local delivery
//     (net/ipv4/route.c ip_route_input_slow, RTN_LOCAL);
//   - nothing in the pod answers ARP for it (arp_ignore=1: only addresses
//     configured on the receiving link, net/ipv4/arp.c arp_ignore), so the
//     egress program gives the VM the bridge's MAC for it, and the cluster
//     nothing.
//
// It is namespace-wide: added by the first dsbridge attachment of a pod,
// removed with the last.

// serverRoute is the route, on the link with index lo.
func serverRoute(lo int) *netlink.Route {
	n := kernel.ServerIDNet.Masked()
	return &netlink.Route{
		LinkIndex: lo,
		Dst:       &net.IPNet{IP: n.Addr().AsSlice(), Mask: net.CIDRMask(n.Bits(), 32)},
		Type:      unix.RTN_LOCAL,
		Table:     unix.RT_TABLE_LOCAL,
		Scope:     netlink.SCOPE_HOST,
		Protocol:  unix.RTPROT_STATIC,
	}
}

// hasServerRoute reports whether the route is there.
func hasServerRoute() (bool, error) {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return false, fmt.Errorf("failed to find lo: %w", err)
	}
	want := serverRoute(lo.Attrs().Index)
	routes, err := netsetup.RetryDump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_V4, want, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST|netlink.RT_FILTER_OIF)
	})
	if err != nil {
		return false, fmt.Errorf("failed to list the local routes: %w", err)
	}
	return len(routes) > 0, nil
}

// addServerRoute adds the route; one that is there already is fine.
func addServerRoute() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("failed to find lo: %w", err)
	}
	err = netlink.RouteAdd(serverRoute(lo.Attrs().Index))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("failed to add the local route for %s: %w", kernel.ServerIDNet, err)
	}
	return nil
}

// removeServerRoute deletes the route; one that is gone already is fine.
func removeServerRoute() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("failed to find lo: %w", err)
	}
	err = netlink.RouteDel(serverRoute(lo.Attrs().Index))
	if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("failed to remove the local route for %s: %w", kernel.ServerIDNet, err)
	}
	return nil
}
