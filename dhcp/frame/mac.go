package frame

import (
	"fmt"
	"net"
	"net/netip"
)

// MAC is an Ethernet (EUI-48) address. As an array it is always six bytes:
// a value parsed once at the edge (the VMI, a flag, netlink) travels to the
// wire without further length checks. The zero MAC means "unknown".
type MAC [6]byte

// ParseMAC parses a 48-bit MAC in any form net.ParseMAC accepts.
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return MAC{}, err
	}
	m, ok := MACFrom(hw)
	if !ok {
		return MAC{}, fmt.Errorf("MAC %q is not 48 bits", s)
	}
	return m, nil
}

// MACFrom converts a 6-byte hardware address; ok is false for any other
// length.
func MACFrom(hw net.HardwareAddr) (m MAC, ok bool) {
	if len(hw) != len(m) {
		return MAC{}, false
	}
	return MAC(hw), true
}

// IsZero reports the zero (unknown) MAC.
func (m MAC) IsZero() bool { return m == MAC{} }

// HardwareAddr returns m as a net.HardwareAddr (a fresh slice).
func (m MAC) HardwareAddr() net.HardwareAddr { return append(net.HardwareAddr(nil), m[:]...) }

// String returns the colon-separated form; "" for the zero MAC.
func (m MAC) String() string {
	if m.IsZero() {
		return ""
	}
	return net.HardwareAddr(m[:]).String()
}

// MarshalText implements encoding.TextMarshaler: "0a:58:0a:10:00:05", or
// empty for the zero MAC.
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; empty text is the zero
// MAC.
func (m *MAC) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*m = MAC{}
		return nil
	}
	v, err := ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// MustParseMAC is ParseMAC for constants and tests: it panics on a bad MAC.
func MustParseMAC(s string) MAC {
	m, err := ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// IsUnicast reports a known individual (not group) address: the I/G bit of
// the first octet clear (IEEE 802).
func (m MAC) IsUnicast() bool { return !m.IsZero() && m[0]&0x01 == 0 }

// MACFromLinkLocal is the MAC behind a modified EUI-64 link-local address
// (fe80::/64 with ff:fe in the middle, RFC 4291 appendix A), the inverse of
// LinkLocalFromMAC; ok is false for any other address, such as an RFC 7217
// stable private one.
func MACFromLinkLocal(a netip.Addr) (m MAC, ok bool) {
	b := a.As16()
	if !a.Is6() || !a.IsLinkLocalUnicast() || [6]byte(b[2:8]) != [6]byte{} || b[11] != 0xff || b[12] != 0xfe {
		return MAC{}, false
	}
	return MAC{b[8] ^ 0x02, b[9], b[10], b[13], b[14], b[15]}, true
}
