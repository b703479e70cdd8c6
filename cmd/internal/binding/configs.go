package binding

import (
	"crypto/sha256"
	"errors"
	"net/netip"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/dhcp4"
	"github.com/dsbridge/dsbridge/dhcp/dhcp6"
	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/netsetup"
	"github.com/dsbridge/dsbridge/ra"
)

// Spec is one VM interface to serve.
type Spec struct {
	// Name identifies the interface: the VMI interface name, or the pod
	// interface in standalone mode.
	Name string
	// Index is the interface's position among the VMI's interfaces; it
	// picks the DHCPv4 server identifier 169.254.75.1<Index>.
	Index    int
	Snapshot *netsetup.Snapshot
	Layout   netsetup.Layout
	VMMAC    frame.MAC
	// Identity and Network name the server identities (DHCPv6 DUID, service
	// MAC): the VMI UID and network name in the sidecar, so they survive
	// restarts and live migration.
	Identity, Network string
	Extra             []dhcp4.Option // the VMI's dhcpOptions
	RAMode            ra.Mode
	Timers            Timers
	Plan              netsetup.Plan
}

// Timers are the lease and advertisement timings; zero fields take the
// servers' defaults (dhcp4.Default*, dhcp6.Default*, ra.Default*).
type Timers struct {
	// Lease is the DHCPv4 lease and the DHCPv6 valid and preferred
	// lifetimes.
	Lease time.Duration
	// Renew is T1 of both families; T2 is twice it.
	Renew time.Duration
	// RouterLifetime and PrefixLifetime are the RA's.
	RouterLifetime, PrefixLifetime time.Duration
}

// Configs are the service configurations for one interface; nil where the
// pod has nothing to serve in that family.
type Configs struct {
	DHCPv4 *dhcp4.Config
	DHCPv6 *dhcp6.Config
	RA     *ra.Config
}

// ConfigsFor computes every service configuration from the snapshot.
func ConfigsFor(s Spec) (Configs, error) {
	snap := s.Snapshot
	if snap == nil {
		return Configs{}, errors.New("no network snapshot")
	}
	svc := ServiceMAC(s.Identity, s.Network)
	var c Configs
	if len(snap.IPv4) > 0 {
		c.DHCPv4 = dhcp4Config(s, svc)
	}
	if len(snap.IPv6) > 0 {
		c.DHCPv6 = &dhcp6.Config{
			VMMAC: s.VMMAC, ServiceMAC: svc, ServerLinkLocal: frame.LinkLocalFromMAC(svc),
			ServerDUID: dhcp6.ServerDUID(s.Identity, s.Network),
			Address:    snap.IPv6[0].Addr(), DNS: family(snap.DNS, false), Search: snap.Search,
			PreferredLifetime: s.Timers.Lease, ValidLifetime: s.Timers.Lease, T1: s.Timers.Renew, T2: 2 * s.Timers.Renew,
		}
		c.RA = RAConfig(snap, s.VMMAC, s.RAMode)
		if c.RA != nil {
			c.RA.RouterLifetime, c.RA.PrefixLifetime = s.Timers.RouterLifetime, s.Timers.PrefixLifetime
			c.RA.DHCPServer = c.DHCPv6.ServerLinkLocal
		}
	}
	return c, nil
}

// RAConfig is the router advertisement of the pod's IPv6 gateway to the VM;
// nil when the pod has no IPv6 default gateway with a known MAC (its
// link-local address, the RA's source, derives from it).
func RAConfig(snap *netsetup.Snapshot, vmMAC frame.MAC, mode ra.Mode) *ra.Config {
	gw := snap.Gateway6
	if len(snap.IPv6) == 0 || gw == nil || !gw.LinkLocal.IsValid() || gw.MAC.IsZero() {
		return nil
	}
	return &ra.Config{
		Mode: mode, GatewayLLA: gw.LinkLocal, GatewayMAC: gw.MAC,
		Prefix: snap.IPv6[0], MTU: snap.MTU, DNS: family(snap.DNS, false), Search: snap.Search,
		VMMAC: vmMAC,
	}
}

func dhcp4Config(s Spec, svc frame.MAC) *dhcp4.Config {
	snap := s.Snapshot
	c := &dhcp4.Config{
		VMMAC: s.VMMAC, ServiceMAC: svc, ServerID: dhcp4.ServerIDForIndex(s.Index),
		Address: snap.IPv4[0], DNS: family(snap.DNS, true), Search: snap.Search,
		Hostname: snap.Hostname, DomainName: longest(snap.Search), MTU: snap.MTU, Extra: s.Extra,
		LeaseTime: s.Timers.Lease, RenewTime: s.Timers.Renew, RebindTime: 2 * s.Timers.Renew,
	}
	if snap.Gateway4 != nil {
		c.Gateway = snap.Gateway4.IP
	}
	for _, r := range snap.Routes {
		if r.Dst.Addr().Is4() && r.Dst.Bits() > 0 {
			c.Routes = append(c.Routes, dhcp4.Route{Dst: r.Dst, Via: r.Via})
		}
	}
	return c
}

// ServiceMAC is the stable, locally administered unicast MAC that DHCP
// replies come from: derived from the identity, never from a pod MAC, so it
// is the same on a migration target.
func ServiceMAC(identity, network string) frame.MAC {
	sum := sha256.Sum256([]byte("dsbridge service mac\x00" + identity + "\x00" + network))
	mac := frame.MAC(sum[:6])
	mac[0] = mac[0]&^0x01 | 0x02 // unicast, locally administered
	return mac
}

// family keeps the IPv4 (v4) or IPv6 addresses of addrs.
func family(addrs []netip.Addr, v4 bool) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if a.Is4() == v4 {
			out = append(out, a)
		}
	}
	return out
}

// longest is the longest search domain, KubeVirt's choice for option 15
// (the most specific: "<ns>.svc.cluster.local").
func longest(search []string) string {
	var l string
	for _, d := range search {
		if len(d) > len(l) {
			l = d
		}
	}
	return l
}
