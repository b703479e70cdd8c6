// Package dhcp6 is a DHCPv6 server (RFC 8415) that hands one VM one binding:
// the pod's own IPv6 address in an IA_NA, plus DNS servers and search domains
// (RFC 3646), from a server DUID that survives sidecar restarts and live
// migration.
//
// The Handler is pure: a request in, a reply (or nil) out. A Server moves
// packets between the Handler and either the VM's tap (the frame transport,
// needing CAP_NET_RAW) or a UDP socket on the bridge, answering the VM only.
package dhcp6
