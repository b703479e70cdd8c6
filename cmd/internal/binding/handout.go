package binding

import (
	"net"
	"net/netip"

	"github.com/dsbridge/dsbridge/ra"
)

// Handout is what each service hands out, for `dsbridge inspect`. It is
// derived from the same Configs the servers run with, so it cannot drift
// from what a guest is sent.
type Handout struct {
	DHCPv4 *DHCPv4Handout `json:"dhcpv4,omitempty"`
	DHCPv6 *DHCPv6Handout `json:"dhcpv6,omitempty"`
	RA     *RAHandout     `json:"ra,omitempty"`
}

// DHCPv4Handout is the lease (RFC 2132 options 1, 3, 6, 12, 15, 26, 54,
// 119 and RFC 3442 option 121).
type DHCPv4Handout struct {
	Address  netip.Addr     `json:"address"`
	Mask     string         `json:"mask"`
	Router   netip.Addr     `json:"router,omitzero"`
	Routes   []HandoutRoute `json:"classlessRoutes,omitempty"`
	DNS      []netip.Addr   `json:"dns,omitempty"`
	Search   []string       `json:"search,omitempty"`
	Domain   string         `json:"domainName,omitempty"`
	Hostname string         `json:"hostname,omitempty"`
	MTU      int            `json:"mtu,omitempty"`
	ServerID netip.Addr     `json:"serverID"`
}

// HandoutRoute is one option 121 route; Via is zero for on-link.
type HandoutRoute struct {
	Dst netip.Prefix `json:"dst"`
	Via netip.Addr   `json:"via,omitzero"`
}

// DHCPv6Handout is the IA_NA address and options 23 and 24 (RFC 8415,
// RFC 3646).
type DHCPv6Handout struct {
	Address netip.Addr   `json:"address"`
	DNS     []netip.Addr `json:"dns,omitempty"`
	Search  []string     `json:"search,omitempty"`
}

// RAHandout is the router advertisement: its source (the guest's default
// router), SLLAO, on-link prefix (none for a /128 pod), MTU, RDNSS, DNSSL.
type RAHandout struct {
	Mode   string       `json:"mode"`
	Source netip.Addr   `json:"source"`
	SLLAO  string       `json:"sllao"`
	Prefix netip.Prefix `json:"prefix,omitzero"`
	MTU    int          `json:"mtu,omitempty"`
	DNS    []netip.Addr `json:"rdnss,omitempty"`
	Search []string     `json:"dnssl,omitempty"`
}

// HandoutOf describes what the services configured by c hand out.
func HandoutOf(c Configs) Handout {
	var h Handout
	if d := c.DHCPv4; d != nil {
		v4 := &DHCPv4Handout{Address: d.Address.Addr(), Mask: net.IP(net.CIDRMask(d.Address.Bits(), 32)).String(),
			Router: d.Gateway, DNS: d.DNS, Search: d.Search, Domain: d.DomainName, Hostname: d.Hostname,
			MTU: d.MTU, ServerID: d.ServerID}
		for _, r := range d.ClasslessRoutes() {
			v4.Routes = append(v4.Routes, HandoutRoute{Dst: r.Dst, Via: r.Via})
		}
		h.DHCPv4 = v4
	}
	if d := c.DHCPv6; d != nil {
		h.DHCPv6 = &DHCPv6Handout{Address: d.Address, DNS: d.DNS, Search: d.Search}
	}
	if r := c.RA; r != nil {
		h.RA = &RAHandout{Mode: r.Mode.String(), Source: ra.Source(*r), SLLAO: r.GatewayMAC.String(),
			MTU: r.MTU, DNS: r.DNS, Search: r.Search}
		if r.Prefix.Bits() < 128 {
			h.RA.Prefix = r.Prefix.Masked()
		}
	}
	return h
}
