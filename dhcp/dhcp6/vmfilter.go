package dhcp6

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

// vmFilter decides whether a request that reached a UDP socket on the bridge
// came from the VM. The bridge also carries the pod's uplink, so every
// client there hears our server: only the VM's MAC, as the link-layer
// address in a DUID-LL or DUID-LLT (RFC 8415 §11.2, §11.4), in a relay's
// Client Link-Layer Address option (RFC 6939), or in an EUI-64 link-local
// source (RFC 4291 appendix A), identifies it. A request is answered when
// some of these evidences name the VM and none names another host.
type vmFilter struct {
	mac frame.MAC
}

// fromVM reports whether msg, sent from src, is the VM's; reason says why
// not.
func (f vmFilter) fromVM(src netip.Addr, msg dhcpv6.DHCPv6) (bool, string) {
	match, other := 0, 0
	count := func(mac net.HardwareAddr) {
		switch {
		case mac == nil:
		case bytes.Equal(mac, f.mac[:]):
			match++
		default:
			other++
		}
	}
	count(macFromLinkLocal(src))
	inner := msg
	if r, ok := msg.(*dhcpv6.RelayMessage); ok && r != nil {
		chain, m := unwrapRelay(r)
		if m == nil {
			return false, "malformed relay message"
		}
		last := chain[len(chain)-1]
		if peer, ok := netip.AddrFromSlice(last.PeerAddr); ok {
			count(macFromLinkLocal(peer))
		}
		if t, mac := last.Options.ClientLinkLayerAddress(); t == iana.HWTypeEthernet {
			count(mac)
		}
		inner = m
	}
	if m, ok := inner.(*dhcpv6.Message); ok && m != nil {
		count(macFromDUID(clientID(m)))
	}
	switch {
	case other > 0:
		return false, "a link-layer address in the request is not the VM's"
	case match == 0:
		return false, "ambiguous: no link-layer address in the request (DUID, EUI-64 source) names the VM"
	}
	return true, ""
}

// macFromDUID is the Ethernet address inside a DUID-LL or DUID-LLT.
func macFromDUID(d dhcpv6.DUID) net.HardwareAddr {
	switch d := d.(type) {
	case *dhcpv6.DUIDLL:
		if d != nil && d.HWType == iana.HWTypeEthernet && len(d.LinkLayerAddr) == 6 {
			return d.LinkLayerAddr
		}
	case *dhcpv6.DUIDLLT:
		if d != nil && d.HWType == iana.HWTypeEthernet && len(d.LinkLayerAddr) == 6 {
			return d.LinkLayerAddr
		}
	}
	return nil
}

// macFromLinkLocal is the MAC behind an EUI-64 link-local source; nil for
// any other address.
func macFromLinkLocal(a netip.Addr) net.HardwareAddr {
	if m, ok := frame.MACFromLinkLocal(a); ok {
		return m.HardwareAddr()
	}
	return nil
}
