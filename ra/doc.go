// Package ra sends the VM IPv6 Router Advertisements (RFC 4861 §4.2, §6.2)
// on the real gateway's behalf, with the managed/other flags, prefix and MTU
// (RFC 4861 §4.6) and DNS options (RFC 8106) its guest needs to start DHCPv6
// and install the pod's default route.
package ra
