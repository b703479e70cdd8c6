package netsetup

import (
	"net"
	"net/netip"
)

// Handout is what each service would hand the VM, read straight from a
// snapshot. It is a view for `dsbridge inspect`; the services build their
// own configurations.
type Handout struct {
	DHCPv4 *DHCPv4Handout `json:"dhcpv4,omitempty"`
	DHCPv6 *DHCPv6Handout `json:"dhcpv6,omitempty"`
	RA     *RAHandout     `json:"ra,omitempty"`
}

// DHCPv4Handout is the lease a DHCPv4 server would offer (RFC 2132 options
// 1, 3, 6, 12, 15/119, 26 and RFC 3442 option 121).
type DHCPv4Handout struct {
	Address  netip.Addr   `json:"address"`
	Mask     string       `json:"mask"`
	Router   netip.Addr   `json:"router,omitzero"`
	Routes   []Route      `json:"classlessRoutes,omitempty"` // default route last
	DNS      []netip.Addr `json:"dns,omitempty"`
	Search   []string     `json:"search,omitempty"`
	Hostname string       `json:"hostname,omitempty"`
	MTU      int          `json:"mtu,omitempty"`
}

// DHCPv6Handout is the IA_NA address and options a DHCPv6 server would
// send (RFC 8415, RFC 3646 options 23 and 24).
type DHCPv6Handout struct {
	Address netip.Addr   `json:"address"`
	DNS     []netip.Addr `json:"dns,omitempty"`
	Search  []string     `json:"search,omitempty"`
}

// RAHandout is the router advertisement (PROTOCOLS.md §3.3): from the
// gateway's link-local address with its MAC as SLLAO, the pod prefix (none
// for a /128) and the MTU.
type RAHandout struct {
	Source netip.Addr   `json:"source,omitzero"`
	SLLAO  MAC          `json:"sllao,omitempty"`
	Prefix netip.Prefix `json:"prefix,omitzero"`
	MTU    int          `json:"mtu,omitempty"`
	DNS    []netip.Addr `json:"rdnss,omitempty"`
	Search []string     `json:"dnssl,omitempty"`
}

// HandoutFor computes the handout of every service the snapshot has data
// for; the first address of each family is the one served.
func HandoutFor(s *Snapshot) Handout {
	var h Handout
	if len(s.IPv4) > 0 {
		h.DHCPv4 = dhcpv4Handout(s)
	}
	if len(s.IPv6) > 0 {
		h.DHCPv6 = &DHCPv6Handout{Address: s.IPv6[0].Addr(), DNS: dnsOf(s.DNS, false), Search: s.Search}
		h.RA = raHandout(s)
	}
	return h
}

func dhcpv4Handout(s *Snapshot) *DHCPv4Handout {
	p := s.IPv4[0]
	d := &DHCPv4Handout{
		Address:  p.Addr(),
		Mask:     net.IP(net.CIDRMask(p.Bits(), 32)).String(),
		DNS:      dnsOf(s.DNS, true),
		Search:   s.Search,
		Hostname: s.Hostname,
		MTU:      s.MTU,
	}
	for _, r := range s.Routes {
		if r.Dst.Addr().Is4() && r.Dst.Bits() > 0 {
			d.Routes = append(d.Routes, Route{Dst: r.Dst, Via: r.Via})
		}
	}
	if s.Gateway4 != nil {
		d.Router = s.Gateway4.IP
		d.Routes = append(d.Routes, Route{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Via: s.Gateway4.IP})
	}
	return d
}

func raHandout(s *Snapshot) *RAHandout {
	ra := &RAHandout{MTU: s.MTU, DNS: dnsOf(s.DNS, false), Search: s.Search}
	if p := s.IPv6[0]; p.Bits() < 128 {
		ra.Prefix = p.Masked()
	}
	if gw := s.Gateway6; gw != nil {
		ra.Source, ra.SLLAO = gw.LinkLocal, gw.MAC
	}
	return ra
}

func dnsOf(all []netip.Addr, v4 bool) []netip.Addr {
	var out []netip.Addr
	for _, a := range all {
		if a.Is4() == v4 {
			out = append(out, a)
		}
	}
	return out
}
