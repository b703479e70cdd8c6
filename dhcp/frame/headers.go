package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Header lengths and EtherTypes.
const (
	EthernetLen = 14
	IPv4Len     = 20 // without options
	IPv6Len     = 40
	UDPLen      = 8
	ARPLen      = 28

	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeIPv6 = 0x86dd
)

// ARP operations (RFC 826).
const (
	ARPRequest = 1
	ARPReply   = 2
)

// Broadcast is the Ethernet broadcast address.
var Broadcast = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Ethernet is an untagged Ethernet II header.
type Ethernet struct {
	Dst, Src MAC
	Type     uint16
}

// UDP4 is a UDP datagram in an IPv4 packet in an Ethernet frame.
type UDP4 struct {
	Eth              Ethernet
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	TTL              uint8
	Payload          []byte
}

// UDP6 is a UDP datagram in an IPv6 packet in an Ethernet frame.
type UDP6 struct {
	Eth              Ethernet
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	HopLimit         uint8
	Payload          []byte
}

// ICMP6 is an ICMPv6 message in an IPv6 packet in an Ethernet frame.
// Payload starts at the ICMPv6 type byte.
type ICMP6 struct {
	Eth      Ethernet
	Src, Dst netip.Addr
	HopLimit uint8
	Payload  []byte
}

// ARP is an Ethernet/IPv4 ARP packet (RFC 826).
type ARP struct {
	Op                   uint16
	SenderMAC, TargetMAC MAC
	SenderIP, TargetIP   netip.Addr
}

// Parse errors.
var (
	ErrNotIPv4  = errors.New("not an IPv4 frame")
	ErrNotIPv6  = errors.New("not an IPv6 frame")
	ErrNotUDP   = errors.New("not a UDP packet")
	ErrNotARP   = errors.New("not an Ethernet/IPv4 ARP packet")
	ErrChecksum = errors.New("bad checksum")
)

// ParseEthernet reads the Ethernet header.
func ParseEthernet(b []byte) (Ethernet, error) {
	if len(b) < EthernetLen {
		return Ethernet{}, ErrTruncated
	}
	return Ethernet{
		Dst:  MAC(b[0:6]),
		Src:  MAC(b[6:12]),
		Type: binary.BigEndian.Uint16(b[12:14]),
	}, nil
}

func appendEthernet(dst []byte, e Ethernet) []byte {
	dst = append(dst, e.Dst[:]...)
	dst = append(dst, e.Src[:]...)
	return binary.BigEndian.AppendUint16(dst, e.Type)
}

// ParseUDP4 parses an Ethernet/IPv4/UDP frame. It checks lengths and the
// IPv4 header checksum, and rejects fragments. Payload aliases frame.
func ParseUDP4(frame []byte) (UDP4, error) {
	eth, err := ParseEthernet(frame)
	if err != nil {
		return UDP4{}, err
	}
	if eth.Type != EtherTypeIPv4 {
		return UDP4{}, ErrNotIPv4
	}
	ip := frame[EthernetLen:]
	if len(ip) < IPv4Len || ip[0]>>4 != 4 {
		return UDP4{}, ErrNotIPv4
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if ihl < IPv4Len || total < ihl+UDPLen || total > len(ip) {
		return UDP4{}, ErrTruncated
	}
	if checksum(ip[:ihl], 0) != 0 {
		return UDP4{}, fmt.Errorf("ipv4 header: %w", ErrChecksum)
	}
	if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
		return UDP4{}, errors.New("ipv4 fragment")
	}
	if ip[9] != ProtoUDP {
		return UDP4{}, ErrNotUDP
	}
	udp := ip[ihl:total]
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < UDPLen || ulen > len(udp) {
		return UDP4{}, ErrTruncated
	}
	return UDP4{
		Eth:     eth,
		Src:     netip.AddrFrom4([4]byte(ip[12:16])),
		Dst:     netip.AddrFrom4([4]byte(ip[16:20])),
		TTL:     ip[8],
		SrcPort: binary.BigEndian.Uint16(udp[0:2]),
		DstPort: binary.BigEndian.Uint16(udp[2:4]),
		Payload: udp[UDPLen:ulen],
	}, nil
}

// AppendUDP4 appends p as an Ethernet/IPv4/UDP frame to dst, with the IPv4
// header and UDP checksums filled in. A zero TTL becomes 64.
func AppendUDP4(dst []byte, p UDP4) []byte {
	eth := p.Eth
	eth.Type = EtherTypeIPv4
	dst = appendEthernet(dst, eth)
	ipStart := len(dst)
	total := IPv4Len + UDPLen + len(p.Payload)
	ttl := p.TTL
	if ttl == 0 {
		ttl = 64
	}
	src, dstIP := p.Src.As4(), p.Dst.As4()
	dst = append(dst, 0x45, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(total))
	dst = append(dst, 0, 0, 0x40, 0, ttl, ProtoUDP, 0, 0) // id 0, DF, checksum later
	dst = append(dst, src[:]...)
	dst = append(dst, dstIP[:]...)
	binary.BigEndian.PutUint16(dst[ipStart+10:], checksum(dst[ipStart:ipStart+IPv4Len], 0))
	udpStart := len(dst)
	dst = appendUDPHeader(dst, p.SrcPort, p.DstPort, len(p.Payload))
	dst = append(dst, p.Payload...)
	sum := checksum(dst[udpStart:], pseudo4(src, dstIP, ProtoUDP, UDPLen+len(p.Payload)))
	if sum == 0 {
		sum = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	binary.BigEndian.PutUint16(dst[udpStart+6:], sum)
	return dst
}

func appendUDPHeader(dst []byte, sport, dport uint16, payloadLen int) []byte {
	dst = binary.BigEndian.AppendUint16(dst, sport)
	dst = binary.BigEndian.AppendUint16(dst, dport)
	dst = binary.BigEndian.AppendUint16(dst, uint16(UDPLen+payloadLen))
	return append(dst, 0, 0)
}

// ipv6 is a parsed fixed IPv6 header.
type ipv6 struct {
	eth      Ethernet
	src, dst netip.Addr
	next     uint8
	hopLimit uint8
	payload  []byte
}

func parseIPv6(frame []byte) (ipv6, error) {
	eth, err := ParseEthernet(frame)
	if err != nil {
		return ipv6{}, err
	}
	if eth.Type != EtherTypeIPv6 {
		return ipv6{}, ErrNotIPv6
	}
	ip := frame[EthernetLen:]
	if len(ip) < IPv6Len || ip[0]>>4 != 6 {
		return ipv6{}, ErrNotIPv6
	}
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if plen > len(ip)-IPv6Len {
		return ipv6{}, ErrTruncated
	}
	return ipv6{
		eth:      eth,
		next:     ip[6],
		hopLimit: ip[7],
		src:      netip.AddrFrom16([16]byte(ip[8:24])),
		dst:      netip.AddrFrom16([16]byte(ip[24:40])),
		payload:  ip[IPv6Len : IPv6Len+plen],
	}, nil
}

func appendIPv6(dst []byte, eth Ethernet, src, dstIP netip.Addr, next, hopLimit uint8, plen int) []byte {
	eth.Type = EtherTypeIPv6
	dst = appendEthernet(dst, eth)
	dst = append(dst, 0x60, 0, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(plen))
	dst = append(dst, next, hopLimit)
	s, d := src.As16(), dstIP.As16()
	dst = append(dst, s[:]...)
	return append(dst, d[:]...)
}

// ParseUDP6 parses an Ethernet/IPv6/UDP frame without extension headers
// and checks the UDP checksum, accepting a CHECKSUM_PARTIAL one (see
// l4ChecksumOK). Payload aliases frame.
func ParseUDP6(frame []byte) (UDP6, error) {
	ip, err := parseIPv6(frame)
	if err != nil {
		return UDP6{}, err
	}
	if ip.next != ProtoUDP {
		return UDP6{}, ErrNotUDP
	}
	udp := ip.payload
	if len(udp) < UDPLen {
		return UDP6{}, ErrTruncated
	}
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < UDPLen || ulen > len(udp) {
		return UDP6{}, ErrTruncated
	}
	if !l4ChecksumOK(udp[:ulen], 6, pseudo6(ip.src, ip.dst, ProtoUDP, ulen)) {
		return UDP6{}, fmt.Errorf("udp: %w", ErrChecksum)
	}
	return UDP6{
		Eth:      ip.eth,
		Src:      ip.src,
		Dst:      ip.dst,
		HopLimit: ip.hopLimit,
		SrcPort:  binary.BigEndian.Uint16(udp[0:2]),
		DstPort:  binary.BigEndian.Uint16(udp[2:4]),
		Payload:  udp[UDPLen:ulen],
	}, nil
}

// AppendUDP6 appends p as an Ethernet/IPv6/UDP frame with the UDP checksum
// filled in. A zero hop limit becomes 64.
func AppendUDP6(dst []byte, p UDP6) []byte {
	hl := p.HopLimit
	if hl == 0 {
		hl = 64
	}
	ulen := UDPLen + len(p.Payload)
	dst = appendIPv6(dst, p.Eth, p.Src, p.Dst, ProtoUDP, hl, ulen)
	udpStart := len(dst)
	dst = appendUDPHeader(dst, p.SrcPort, p.DstPort, len(p.Payload))
	dst = append(dst, p.Payload...)
	sum := checksum(dst[udpStart:], pseudo6(p.Src, p.Dst, ProtoUDP, ulen))
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(dst[udpStart+6:], sum)
	return dst
}

// ParseICMP6 parses an Ethernet/IPv6/ICMPv6 frame without extension
// headers and checks the ICMPv6 checksum (RFC 4443 §2.3), accepting a
// CHECKSUM_PARTIAL one (see l4ChecksumOK). Payload aliases frame.
func ParseICMP6(frame []byte) (ICMP6, error) {
	ip, err := parseIPv6(frame)
	if err != nil {
		return ICMP6{}, err
	}
	if ip.next != ProtoICMPv6 {
		return ICMP6{}, errors.New("not an ICMPv6 packet")
	}
	if len(ip.payload) < 4 {
		return ICMP6{}, ErrTruncated
	}
	if !l4ChecksumOK(ip.payload, 2, pseudo6(ip.src, ip.dst, ProtoICMPv6, len(ip.payload))) {
		return ICMP6{}, fmt.Errorf("icmpv6: %w", ErrChecksum)
	}
	return ICMP6{Eth: ip.eth, Src: ip.src, Dst: ip.dst, HopLimit: ip.hopLimit, Payload: ip.payload}, nil
}

// AppendICMP6 appends p as an Ethernet/IPv6/ICMPv6 frame, computing the
// ICMPv6 checksum (bytes 2-3 of the message are overwritten in the output,
// not in p.Payload). A zero hop limit becomes 255, as Neighbor Discovery
// requires (RFC 4861 §6.1.2).
func AppendICMP6(dst []byte, p ICMP6) []byte {
	hl := p.HopLimit
	if hl == 0 {
		hl = 255
	}
	dst = appendIPv6(dst, p.Eth, p.Src, p.Dst, ProtoICMPv6, hl, len(p.Payload))
	start := len(dst)
	dst = append(dst, p.Payload...)
	if len(p.Payload) >= 4 {
		msg := dst[start:]
		msg[2], msg[3] = 0, 0
		binary.BigEndian.PutUint16(msg[2:], checksum(msg, pseudo6(p.Src, p.Dst, ProtoICMPv6, len(msg))))
	}
	return dst
}

// ParseARP parses an Ethernet/IPv4 ARP frame.
func ParseARP(frame []byte) (Ethernet, ARP, error) {
	eth, err := ParseEthernet(frame)
	if err != nil {
		return Ethernet{}, ARP{}, err
	}
	b := frame[EthernetLen:]
	if eth.Type != EtherTypeARP || len(b) < ARPLen {
		return Ethernet{}, ARP{}, ErrNotARP
	}
	// htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4.
	if binary.BigEndian.Uint16(b[0:2]) != 1 || binary.BigEndian.Uint16(b[2:4]) != EtherTypeIPv4 || b[4] != 6 || b[5] != 4 {
		return Ethernet{}, ARP{}, ErrNotARP
	}
	return eth, ARP{
		Op:        binary.BigEndian.Uint16(b[6:8]),
		SenderMAC: MAC(b[8:14]),
		SenderIP:  netip.AddrFrom4([4]byte(b[14:18])),
		TargetMAC: MAC(b[18:24]),
		TargetIP:  netip.AddrFrom4([4]byte(b[24:28])),
	}, nil
}

// AppendARP appends an Ethernet/IPv4 ARP frame.
func AppendARP(dst []byte, eth Ethernet, a ARP) []byte {
	eth.Type = EtherTypeARP
	dst = appendEthernet(dst, eth)
	dst = append(dst, 0, 1, 0x08, 0x00, 6, 4)
	dst = binary.BigEndian.AppendUint16(dst, a.Op)
	s, t := a.SenderIP.As4(), a.TargetIP.As4()
	dst = append(dst, a.SenderMAC[:]...)
	dst = append(dst, s[:]...)
	dst = append(dst, a.TargetMAC[:]...)
	return append(dst, t[:]...)
}

// MulticastMAC is the Ethernet address for an IPv6 multicast group
// (RFC 2464 §7): 33:33 followed by the group's last four bytes.
func MulticastMAC(ip netip.Addr) MAC {
	b := ip.As16()
	return MAC{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

// LinkLocalFromMAC is fe80:: with the modified EUI-64 interface identifier
// of mac (RFC 4291 appendix A): the universal/local bit flipped, ff:fe in
// the middle. 0a:58:0a:10:00:01 gives fe80::858:aff:fe10:1.
func LinkLocalFromMAC(mac MAC) netip.Addr {
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	b[8] = mac[0] ^ 0x02
	b[9], b[10] = mac[1], mac[2]
	b[11], b[12] = 0xff, 0xfe
	b[13], b[14], b[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(b)
}

// l4ChecksumOK accepts msg (a UDP datagram or ICMPv6 message whose
// checksum field is at off) when its checksum is correct, or when it is
// CHECKSUM_PARTIAL: a frame read from the VM's tap or a veth before any NIC
// finished it (virtio-net and veth checksum offload) carries only the folded
// pseudo-header sum in the field. Such a frame never crossed a wire; any
// other value is corruption.
func l4ChecksumOK(msg []byte, off int, pseudo uint32) bool {
	if checksum(msg, pseudo) == 0 {
		return true
	}
	field := uint16(msg[off])<<8 | uint16(msg[off+1])
	partial := ^checksum(nil, pseudo) // the folded pseudo-header sum
	return field == partial || field == ^partial
}

// checksum is the Internet checksum (RFC 1071) of b, starting from the
// partial sum initial (e.g. a pseudo-header sum).
func checksum(b []byte, initial uint32) uint16 {
	sum := initial
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func sum16(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	return s
}

func pseudo4(src, dst [4]byte, proto uint8, length int) uint32 {
	return sum16(src[:]) + sum16(dst[:]) + uint32(proto) + uint32(length)
}

func pseudo6(src, dst netip.Addr, proto uint8, length int) uint32 {
	s, d := src.As16(), dst.As16()
	return sum16(s[:]) + sum16(d[:]) + uint32(length) + uint32(proto)
}
