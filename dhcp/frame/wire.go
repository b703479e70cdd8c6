package frame

import "net/netip"

// The wire numbers every service and tool shares, one definition each.

// UDP ports of DHCPv4 (RFC 2131 §4.1) and DHCPv6 (RFC 8415 §7.2).
const (
	PortDHCPv4Server = 67
	PortDHCPv4Client = 68
	PortDHCPv6Server = 547
	PortDHCPv6Client = 546
)

// IP protocol numbers (IANA): UDP (RFC 768) and ICMPv6 (RFC 4443).
const (
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// ICMPv6 types of Neighbor Discovery (RFC 4861 §4).
const (
	ICMPv6RouterSolicitation    = 133
	ICMPv6RouterAdvertisement   = 134
	ICMPv6NeighborSolicitation  = 135
	ICMPv6NeighborAdvertisement = 136
)

// NDPHopLimit is the hop limit of every Neighbor Discovery message; a
// receiver drops one with any other (RFC 4861 §6.1).
const NDPHopLimit = 255

// DHCPv6 multicast destinations (RFC 8415 §7.1).
var (
	AllDHCPRelaysAndServers = netip.MustParseAddr("ff02::1:2")
	AllDHCPServers          = netip.MustParseAddr("ff05::1:3")
)
