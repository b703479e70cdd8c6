// Package frame is the packet transport shared by dsbridge's DHCPv4, DHCPv6
// and router advertisement services: an AF_PACKET socket on the VM's tap that
// sees only frames the VM sent and sends frames to the VM alone, plus the
// Ethernet, IPv4 (RFC 791), IPv6 (RFC 8200), UDP (RFC 768), ICMPv6 (RFC 4443)
// and ARP (RFC 826) encodings the services need.
//
// Frames written to the tap go to the VM only: they never enter the bridge,
// so nothing a service sends can reach the pod's uplink.
package frame
