package kernel

import (
	"bytes"
	"encoding/binary"
	"net/netip"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/mdlayher/ndp"
)

// This file is the Go model of bpf/responder.c: what each program decides
// for a frame, written from the RFCs with the frame package and ndp, not
// from the C. FuzzEgress and FuzzIngress hold the kernel to it.

// ownMark is bpf/responder.c's OWN_MARK.
const ownMark = 0xd5b0d5b0

// learned is the programs' run-time state (their .bss).
type learned struct {
	iid    uint64 // the VM's fe80::/64 interface identifier, memory order
	podMAC uint64 // bridge MAC (macBits); 0: none yet
	vmMAC  uint64 // the VM's MAC from its forwarded frames (macBits); 0: vars.vmMAC stands
	port   uint32 // the VM's port
}

// macSet and macGroup are bpf/responder.c's MAC_SET and MAC_GROUP.
const (
	macSet   = 1 << 63
	macGroup = 1 << 40
)

// macBits is a MAC as the programs keep it: bits 0-47, bit 63 set.
func macBits(mac frame.MAC) uint64 {
	var b [8]byte
	copy(b[2:], mac[:])
	return binary.BigEndian.Uint64(b[:]) | macSet
}

// vm is the VM's MAC the programs serve: the learned one, else v's.
func (s learned) vm(v vars) frame.MAC {
	if s.vmMAC != 0 {
		return macOf(s.vmMAC)
	}
	return v.vmMAC
}

func macOf(v uint64) frame.MAC {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return frame.MAC(b[2:8])
}

// iidOf is the interface identifier of a, an address in fe80::/64; 0
// otherwise (RFC 4291 §2.5.6).
func iidOf(a []byte) uint64 {
	if !bytes.Equal(a[:8], []byte{0xfe, 0x80, 0, 0, 0, 0, 0, 0}) {
		return 0
	}
	return binary.NativeEndian.Uint64(a[8:16])
}

func (s learned) isVMLLA(a []byte) bool { return s.iid != 0 && iidOf(a) == s.iid }

// verdict is a program's decision: the tc action and the frame it leaves.
type verdict struct {
	act  uint32
	out  []byte // the frame after the program; nil: unchanged
	mark uint32 // skb->mark after the program
}

var pass = verdict{act: actOK}
var drop = verdict{act: actShot}

// upper is where the upper-layer header of an IPv6 or IPv4 packet starts.
type upper struct {
	off   int
	proto uint8
	later bool // a non-first fragment
	ok    bool
}

// ip6Upper walks at most six extension headers (RFC 8200 §4).
func ip6Upper(b []byte, l3 int) upper {
	if len(b) < l3+7 {
		return upper{}
	}
	next, off := b[l3+6], l3+frame.IPv6Len
	for range 6 {
		switch next {
		case 0, 43, 60, 44:
		default:
			return upper{off: off, proto: next, ok: true}
		}
		if len(b) < off+4 {
			return upper{}
		}
		if next == 44 {
			if binary.BigEndian.Uint16(b[off+2:])&0xfff8 != 0 {
				return upper{off: off, proto: b[off], later: true, ok: true}
			}
			next, off = b[off], off+8
			continue
		}
		next, off = b[off], off+8+8*int(b[off+1])
	}
	return upper{}
}

// port16 reads a UDP port at off, -1 when the frame is too short.
func port16(b []byte, off int) int {
	if off < 0 || len(b) < off+2 {
		return -1
	}
	return int(binary.BigEndian.Uint16(b[off:]))
}

// egress models dsbridge_egress for a frame that arrived on ingress (0: the
// pod stack) and leaves through the uplink (index uplinkIndex); refresh says
// whether the RA refresh interval, and the least gap before an RA for an
// MLD report, have passed. It updates st.
func egress(b []byte, v vars, st *learned, ingress uint32, refresh bool) verdict {
	if ingress == uplinkIndex || len(b) < frame.EthernetLen {
		return pass
	}
	if ingress == 0 {
		return podEgress(b, v, st)
	}
	// Forwarded from the VM's tap: a unicast, non-zero source other than
	// the bridge's is the VM's MAC.
	src := macBits(frame.MAC(b[6:12]))
	if src&macGroup != 0 || src == macSet || src == st.podMAC {
		return pass
	}
	st.vmMAC, st.port = src, ingress
	switch binary.BigEndian.Uint16(b[12:]) {
	case frame.EtherTypeIPv6:
		return vmIPv6(b, v, st, refresh)
	case frame.EtherTypeARP:
		return vmARP(b, v, st, ingress)
	}
	return pass
}

func vmIPv6(b []byte, v vars, st *learned, refresh bool) verdict {
	const ip, icmp = frame.EthernetLen, frame.EthernetLen + frame.IPv6Len
	if len(b) < RSFrameLen || b[ip]>>4 != 6 {
		return pass
	}
	if iid := iidOf(b[ip+8 : ip+24]); iid != 0 {
		st.iid = iid
	}
	if b[ip+6] == 0 && b[ip+7] == 1 { // Hop-by-Hop, hop limit 1 (RFC 3810 §5)
		if !isReport(b) || !refresh || len(v.frame) == 0 {
			return pass
		}
		return verdict{act: actRedirect, out: raTo(v.frame, frame.MAC(b[6:12])), mark: ownMark}
	}
	if b[ip+6] != 58 || b[ip+7] != 255 || b[icmp+1] != 0 || len(v.frame) == 0 {
		return pass
	}
	switch {
	case b[icmp] == 133,
		b[icmp] == 135 && refresh && v.refreshNS != 0 && len(b) >= NSFrameLen && bytes.Equal(b[icmp+8:icmp+24], v.gwLLA[:]):
		return verdict{act: actRedirect, out: raTo(v.frame, frame.MAC(b[6:12])), mark: ownMark}
	}
	return pass
}

// isReport reports whether the IPv6 frame b (Hop-by-Hop header first) is an
// MLD listener report (RFC 2710 §3, RFC 3810 §5.2) the program answers: a
// Hop-by-Hop header of at most four 8-octet units (RFC 8200 §4.3) that
// starts with the Router Alert option for MLD (RFC 2711 §2.1) and leads to
// ICMPv6, a report of type 143 or 131 whose fixed part fits in the IPv6
// payload length.
func isReport(b []byte) bool {
	const ip, hbh = frame.EthernetLen, frame.EthernetLen + frame.IPv6Len
	if len(b) < hbh+8 || b[hbh] != 58 || b[hbh+1] > 3 || !bytes.Equal(b[hbh+2:hbh+6], []byte{5, 2, 0, 0}) {
		return false
	}
	n := 8 + 8*int(b[hbh+1])
	plen := int(binary.BigEndian.Uint16(b[ip+4:]))
	if len(b) <= hbh+n || plen < n+8 {
		return false
	}
	switch b[hbh+n] {
	case 143:
		return true
	case 131:
		return plen >= n+24
	}
	return false
}

// raTo is the RA frame f sent to dst.
func raTo(f []byte, dst frame.MAC) []byte {
	out := append([]byte{}, f...)
	copy(out, dst[:])
	return out
}

// vmARP answers a request for an address in ServerIDNet (RFC 826) with the
// bridge's MAC, to the VM.
func vmARP(b []byte, v vars, st *learned, port uint32) verdict {
	if st.podMAC == 0 {
		return pass
	}
	eth, a, err := frame.ParseARP(b)
	if err != nil || a.Op != frame.ARPRequest || a.SenderMAC != st.vm(v) ||
		!ServerIDNet.Contains(a.TargetIP) || a.SenderIP == a.TargetIP {
		return pass
	}
	_ = eth
	bridge := macOf(st.podMAC)
	reply := frame.AppendARP(nil, frame.Ethernet{Dst: a.SenderMAC, Src: bridge},
		frame.ARP{Op: frame.ARPReply, SenderMAC: bridge, SenderIP: a.TargetIP, TargetMAC: a.SenderMAC, TargetIP: a.SenderIP})
	return verdict{act: actRedirect, out: reply}
}

func podEgress(b []byte, v vars, st *learned) verdict {
	if bytes.Equal(b[6:12], v.vmMAC[:]) {
		return pass // the pod before plumbing
	}
	st.podMAC = macBits(frame.MAC(b[6:12]))
	if st.vmMAC == st.podMAC {
		st.vmMAC = 0 // the bridge's MAC is never the VM's
	}
	switch binary.BigEndian.Uint16(b[12:]) {
	case frame.EtherTypeIPv4:
		return podIPv4(b, v, st)
	case frame.EtherTypeARP:
		return drop
	case frame.EtherTypeIPv6:
		return podIPv6(b, v, st)
	}
	return pass
}

// podIPv4: the pod stack's IPv4 stays in the pod, but a DHCPv4 reply
// broadcast to a client with an address (ciaddr, the VM's chaddr) becomes
// the unicast RFC 2131 §4.1 asks for, on the VM's port.
func podIPv4(b []byte, v vars, st *learned) verdict {
	const ip, udp, bootp = frame.EthernetLen, frame.EthernetLen + 20, frame.EthernetLen + 28
	if st.port == 0 || len(b) < bootp+34 || b[ip] != 0x45 || binary.BigEndian.Uint16(b[ip+6:])&0x3fff != 0 || b[ip+9] != 17 ||
		!bytes.Equal(b[ip+16:ip+20], []byte{255, 255, 255, 255}) || binary.BigEndian.Uint16(b[udp:]) != 67 ||
		binary.BigEndian.Uint16(b[udp+2:]) != 68 || b[bootp] != 2 || b[bootp+1] != 1 || b[bootp+2] != 6 ||
		frame.MAC(b[bootp+28:bootp+34]) != st.vm(v) {
		return drop
	}
	ciaddr := binary.NativeEndian.Uint32(b[bootp+12:])
	if ciaddr == 0 {
		return drop
	}
	out := append([]byte{}, b...)
	vm := st.vm(v)
	copy(out, vm[:])
	if sum := binary.NativeEndian.Uint16(out[udp+6:]); sum != 0 { // RFC 768: 0 is "no checksum"
		sum = csumReplace4(sum, 0xffffffff, ciaddr)
		if sum == 0 {
			sum = 0xffff
		}
		binary.NativeEndian.PutUint16(out[udp+6:], sum)
	}
	binary.NativeEndian.PutUint16(out[ip+10:], csumReplace4(binary.NativeEndian.Uint16(out[ip+10:]), 0xffffffff, ciaddr))
	binary.NativeEndian.PutUint32(out[ip+16:], ciaddr)
	return verdict{act: actRedirect, out: out}
}

// csumReplace4 updates the Internet checksum sum when a 32-bit word of the
// data changes from from to to (RFC 1624 eqn. 3), in the words' memory
// order as the kernel's csum_replace4 does.
func csumReplace4(sum uint16, from, to uint32) uint16 {
	add := func(a, b uint32) uint32 {
		s := a + b
		if s < a {
			s++
		}
		return s
	}
	x := add(add(^uint32(sum), ^from), to)
	x = x&0xffff + x>>16
	x = x&0xffff + x>>16
	return ^uint16(x)
}

func podIPv6(b []byte, v vars, st *learned) verdict {
	u := ip6Upper(b, frame.EthernetLen)
	switch {
	case !u.ok:
		return pass
	case u.later:
		return drop
	case u.proto == 17:
		if port16(b, u.off) == 547 {
			return drop
		}
		return pass
	case u.proto != 58 || len(b) <= u.off:
		return pass
	}
	switch t := b[u.off]; t {
	case 134:
		return drop
	case 135:
		return podNS(b, v, st, u)
	case 131, 132, 143:
		if namesDHCPGroup(b, u.off, t) {
			return drop
		}
	}
	return pass
}

// podNS: DAD probes pass; an NS for the VM's link-local becomes the VM's NA
// (RFC 4861 §7.2.4) into the pod; any other NS is dropped.
func podNS(b []byte, v vars, st *learned, u upper) verdict {
	const ip, icmp = frame.EthernetLen, frame.EthernetLen + frame.IPv6Len
	if len(b) < NSFrameLen {
		return drop
	}
	src := netip.AddrFrom16([16]byte(b[ip+8 : ip+24]))
	if src.IsUnspecified() {
		return pass
	}
	target := b[icmp+8 : icmp+24]
	if u.off != icmp || b[ip+7] != 255 || b[icmp+1] != 0 || !st.isVMLLA(target) {
		return drop
	}
	return verdict{act: actRedirect, out: neighborAdvert(frame.MAC(b[6:12]), st.vm(v), src,
		netip.AddrFrom16([16]byte(target))), mark: ownMark}
}

// neighborAdvert is the NA the VM sends for its address target to the
// solicitor src at MAC dst.
func neighborAdvert(dst, vm frame.MAC, src, target netip.Addr) []byte {
	body, err := ndp.MarshalMessage(&ndp.NeighborAdvertisement{Solicited: true, Override: true, TargetAddress: target,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: vm.HardwareAddr()}}})
	if err != nil {
		panic(err) // a valid message always marshals
	}
	return frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: dst, Src: vm, Type: frame.EtherTypeIPv6},
		Src: target, Dst: src, HopLimit: 255, Payload: body})
}

// namesDHCPGroup: an MLD message naming ff02::1:2 (RFC 2710 §3, RFC 3810
// §5.2), or one the program cannot read to the end of eight records.
func namesDHCPGroup(b []byte, off int, t uint8) bool {
	group := netip.MustParseAddr("ff02::1:2").As16()
	if t != 143 {
		return len(b) < off+24 || bytes.Equal(b[off+8:off+24], group[:])
	}
	if len(b) < off+8 {
		return true
	}
	n := int(binary.BigEndian.Uint16(b[off+6:]))
	if n > 8 {
		return true
	}
	off += 8
	for range n {
		if len(b) < off+20 {
			return true
		}
		if bytes.Equal(b[off+4:off+20], group[:]) {
			return true
		}
		off += 20 + 16*int(binary.BigEndian.Uint16(b[off+2:])) + 4*int(b[off+1])
	}
	return false
}

// ingress models dsbridge_ingress: drop means hidden from the pod stack.
func ingress(b []byte, v vars, st learned, mark uint32) verdict {
	if mark == ownMark || len(b) < frame.EthernetLen || frame.MAC(b[:6]) == st.vm(v) {
		return pass
	}
	typ, l3 := binary.BigEndian.Uint16(b[12:]), frame.EthernetLen
	for range 2 {
		if typ != 0x8100 && typ != 0x88a8 {
			break
		}
		if len(b) < l3+4 {
			return drop
		}
		typ, l3 = binary.BigEndian.Uint16(b[l3+2:]), l3+4
	}
	if typ == 0 || typ == 0x8100 || typ == 0x88a8 || hiddenFromPod(b, typ, l3, st) {
		return drop
	}
	return pass
}

func hiddenFromPod(b []byte, typ uint16, l3 int, st learned) bool {
	switch typ {
	case frame.EtherTypeIPv4:
		if len(b) < l3+10 || b[l3]>>4 != 4 || int(b[l3]&0xf)*4 < 20 ||
			binary.BigEndian.Uint16(b[l3+6:])&0x1fff != 0 || b[l3+9] != 17 {
			return false
		}
		return port16(b, l3+int(b[l3]&0xf)*4+2) == 67
	case frame.EtherTypeIPv6:
		if len(b) < l3+24 {
			return true
		}
		u := ip6Upper(b, l3)
		switch {
		case !u.ok || st.isVMLLA(b[l3+8:l3+24]):
			return true
		case u.later:
			return false
		case u.proto == 17:
			return port16(b, u.off+2) == 547
		case u.proto != 58 || len(b) <= u.off:
			return false
		case b[u.off] == 133:
			return true
		}
		return b[u.off] == 136 && len(b) >= u.off+24 && st.isVMLLA(b[u.off+8:u.off+24])
	}
	return false
}
