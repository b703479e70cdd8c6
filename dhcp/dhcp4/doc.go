// Package dhcp4 is a single-binding DHCPv4 server (RFC 2131, RFC 2132) that
// hands one VM its pod's IPv4 configuration and answers nobody else.
//
// The protocol logic is the pure [Handler]; a [Server] moves packets between
// it and either a raw link ([NewPacketServer], crafted Ethernet frames to the
// VM alone, RFC 2131 section 4.1 addressing, ARP for the server identifier)
// or a UDP socket on port 67 filtered by ingress interface ([NewUDPServer]).
package dhcp4
