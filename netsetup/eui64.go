package netsetup

import (
	"net"
	"net/netip"
)

// LinkLocalFromMAC returns fe80:: + the modified EUI-64 interface identifier
// of a 48-bit MAC (RFC 4291 appendix A: flip the U/L bit, insert ff:fe):
// 0a:58:0a:10:00:01 -> fe80::858:aff:fe10:1. It returns the zero Addr for
// anything but a 6-byte MAC.
func LinkLocalFromMAC(mac net.HardwareAddr) netip.Addr {
	if len(mac) != 6 {
		return netip.Addr{}
	}
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	b[8] = mac[0] ^ 0x02
	b[9], b[10] = mac[1], mac[2]
	b[11], b[12] = 0xff, 0xfe
	b[13], b[14], b[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(b)
}
