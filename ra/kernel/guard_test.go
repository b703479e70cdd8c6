package kernel

import (
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/ra"
	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/ndp"
)

// Frames of the guard's tests: the lab's VM (vmMAC, vmLLA), the bridge
// (bridge, bridgeLLA), a neighbour on the uplink side.
var (
	bridgeLLA   = frame.LinkLocalFromMAC(bridge)
	neighbour   = frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x63}
	neighLLA    = frame.LinkLocalFromMAC(neighbour)
	vmIP        = netip.MustParseAddr("10.16.0.5")
	sid         = netip.MustParseAddr("169.254.75.10")
	dhcpGroup   = netip.MustParseAddr("ff02::1:2")
	allNodesMAC = frame.MulticastMAC(netip.MustParseAddr("ff02::1"))
)

func udp4(src, dst frame.MAC, sip, dip netip.Addr, sport, dport uint16) []byte {
	return frame.AppendUDP4(nil, frame.UDP4{Eth: frame.Ethernet{Dst: dst, Src: src}, Src: sip, Dst: dip,
		SrcPort: sport, DstPort: dport, TTL: 64, Payload: make([]byte, 240)})
}

func udp6(src frame.MAC, sip, dip netip.Addr, sport, dport uint16) []byte {
	dst := frame.MulticastMAC(dip)
	if !dip.IsMulticast() {
		dst = vmMAC
	}
	return frame.AppendUDP6(nil, frame.UDP6{Eth: frame.Ethernet{Dst: dst, Src: src}, Src: sip, Dst: dip,
		SrcPort: sport, DstPort: dport, HopLimit: 64, Payload: make([]byte, 40)})
}

func arp(src frame.MAC, op uint16, sip, tip netip.Addr) []byte {
	return frame.AppendARP(nil, frame.Ethernet{Dst: frame.Broadcast, Src: src},
		frame.ARP{Op: op, SenderMAC: src, SenderIP: sip, TargetIP: tip})
}

// bootReply is a BOOTREPLY (RFC 2131 §2) for chaddr with ciaddr.
func bootReply(chaddr frame.MAC, ciaddr netip.Addr) []byte {
	b := make([]byte, 240)
	b[0], b[1], b[2] = 2, 1, 6
	c := ciaddr.As4()
	copy(b[12:], c[:])
	copy(b[28:], chaddr[:])
	copy(b[236:], []byte{99, 130, 83, 99})
	return b
}

// dhcpReply is the sidecar's broadcast reply for chaddr with ciaddr.
func dhcpReply(chaddr frame.MAC, ciaddr netip.Addr) []byte {
	return frame.AppendUDP4(nil, frame.UDP4{Eth: frame.Ethernet{Dst: frame.Broadcast, Src: bridge}, Src: sid,
		Dst: netip.MustParseAddr("255.255.255.255"), SrcPort: 67, DstPort: 68, TTL: 64, Payload: bootReply(chaddr, ciaddr)})
}

// podNSFor is the pod stack's NS for target, from the bridge's link-local.
func podNSFor(t testing.TB, src netip.Addr, target netip.Addr) []byte {
	opts := []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: bridge.HardwareAddr()}}
	if src.IsUnspecified() {
		opts = nil
	}
	return ndFrame(t, bridge, src, solicitedNode(target), 255, &ndp.NeighborSolicitation{TargetAddress: target, Options: opts})
}

func solicitedNode(a netip.Addr) netip.Addr {
	b := a.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
}

// withExt puts one extension header of type ext (8 bytes, next header =
// the original) in front of an IPv6 frame's upper-layer header.
func withExt(in []byte, ext uint8, frag uint16) []byte {
	const ip = frame.EthernetLen
	out := append([]byte{}, in[:ip+frame.IPv6Len]...)
	h := []byte{in[ip+6], 0, 0, 0, 0, 0, 0, 0}
	if ext == 44 {
		h[2], h[3] = byte(frag>>8), byte(frag)
	} else {
		h[2], h[3] = 1, 4 // PadN
	}
	out = append(append(out, h...), in[ip+frame.IPv6Len:]...)
	out[ip+6] = ext
	plen := int(out[ip+4])<<8 | int(out[ip+5]) + 8
	out[ip+4], out[ip+5] = byte(plen>>8), byte(plen)
	return out
}

// tagged puts VLAN tags (VID 0, priority tagged) after the addresses.
func tagged(in []byte, tags int) []byte {
	out := append([]byte{}, in[:12]...)
	for range tags {
		out = append(out, 0x81, 0x00, 0x00, 0x00)
	}
	return append(out, in[12:]...)
}

// mld2 is an MLDv2 report (RFC 3810 §5.2) from the bridge, behind a
// Hop-by-Hop header (a PadN option), listing groups.
func mld2(groups ...netip.Addr) []byte {
	body := []byte{143, 0, 0, 0, 0, 0, 0, byte(len(groups))}
	for _, g := range groups {
		a := g.As16()
		body = append(append(body, 4, 0, 0, 0), a[:]...)
	}
	f := frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: frame.MulticastMAC(netip.MustParseAddr("ff02::16")), Src: bridge},
		Src: bridgeLLA, Dst: netip.MustParseAddr("ff02::16"), HopLimit: 1, Payload: body})
	return withExt(f, 0, 0)
}

func mld1(group netip.Addr) []byte {
	a := group.As16()
	body := append([]byte{131, 0, 0, 0, 0, 0, 0, 0}, a[:]...)
	return frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: frame.MulticastMAC(group), Src: bridge},
		Src: bridgeLLA, Dst: group, HopLimit: 1, Payload: body})
}

// icmp6 is an ICMPv6 message of type typ with body rest.
func icmp6(src, dst frame.MAC, sip, dip netip.Addr, typ uint8, rest []byte) []byte {
	return frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: dst, Src: src}, Src: sip, Dst: dip,
		HopLimit: 255, Payload: append([]byte{typ, 0, 0, 0, 0, 0, 0, 0}, rest...)})
}

// vmKnown is the state after the VM solicited from its link-local address
// on the tap and the pod stack sent a frame: everything learned.
func vmKnown() learned {
	return learned{iid: iidOf(vmLLA.AsSlice()), podMAC: macBits(bridge), vmMAC: macBits(vmMAC), port: uplinkIndex}
}

// guardRow is one frame through one program with the state before, and the
// verdict and frame expected.
type guardRow struct {
	name    string
	in      []byte
	ingress uint32 // egress rows: where the frame came from (0: the pod stack)
	before  learned
	want    uint32
	out     []byte // the frame the program leaves when it rewrites; nil: unchanged
	mark    uint32
}

// TestEgressPodStack: what the pod's own stack sends after plumbing (from
// the bridge's MAC) through the uplink.
func TestEgressPodStack(t *testing.T) {
	na := neighborAdvert(bridge, vmMAC, bridgeLLA, vmLLA)
	known := vmKnown()
	nsHops := podNSFor(t, bridgeLLA, vmLLA)
	nsHops[frame.EthernetLen+7] = 254
	ack := dhcpReply(vmMAC, vmIP)
	ackTo := frame.AppendUDP4(nil, frame.UDP4{Eth: frame.Ethernet{Dst: vmMAC, Src: bridge}, Src: sid, Dst: vmIP,
		SrcPort: 67, DstPort: 68, TTL: 64, Payload: bootReply(vmMAC, vmIP)})
	noSum := append([]byte{}, ack...)
	noSum[frame.EthernetLen+26], noSum[frame.EthernetLen+27] = 0, 0
	noSumTo := append([]byte{}, ackTo...)
	noSumTo[frame.EthernetLen+26], noSumTo[frame.EthernetLen+27] = 0, 0
	rows := []guardRow{
		{name: "DHCPv4 OFFER broadcast", in: udp4(bridge, frame.Broadcast, sid, netip.MustParseAddr("255.255.255.255"), 67, 68), want: actShot},
		{name: "DHCPv4 ACK for a client without an address", in: dhcpReply(vmMAC, netip.IPv4Unspecified()), before: known, want: actShot},
		{name: "DHCPv4 ACK for a renewing VM: unicast on its port", in: ack, before: known, want: actRedirect, out: ackTo},
		{name: "DHCPv4 ACK without UDP checksum for a renewing VM", in: noSum, before: known, want: actRedirect, out: noSumTo},
		{name: "DHCPv4 ACK for a renewing VM, port unknown", in: ack, want: actShot},
		{name: "DHCPv4 ACK for another chaddr", in: dhcpReply(neighbour, vmIP), before: known, want: actShot},
		{name: "DHCPv4 OFFER sourced from the VM's address", in: udp4(bridge, frame.Broadcast, vmIP, netip.MustParseAddr("255.255.255.255"), 67, 68), want: actShot},
		{name: "ARP request for the VM's address", in: arp(bridge, frame.ARPRequest, vmIP, vmIP), want: actShot},
		{name: "ARP reply", in: arp(bridge, frame.ARPReply, sid, vmIP), want: actShot},
		{name: "DHCPv6 Advertise", in: udp6(bridge, bridgeLLA, vmLLA, 547, 546), want: actShot},
		{name: "DHCPv6 Advertise behind a destination options header", in: withExt(udp6(bridge, bridgeLLA, vmLLA, 547, 546), 60, 0), want: actShot},
		{name: "DHCPv6 Advertise, first fragment", in: withExt(udp6(bridge, bridgeLLA, vmLLA, 547, 546), 44, 1), want: actShot},
		{name: "IPv6 later fragment", in: withExt(udp6(bridge, bridgeLLA, vmLLA, 547, 546), 44, 0x5a9), want: actShot},
		{name: "DHCPv6 to a relay's port from another", in: udp6(bridge, bridgeLLA, neighLLA, 40000, 547), want: actOK},
		{name: "RA", in: icmp6(bridge, allNodesMAC, bridgeLLA, netip.MustParseAddr("ff02::1"), 134, make([]byte, 8)), want: actShot},
		{name: "the bridge's RS (KubeVirt's)", in: rs(t, bridge), want: actOK},
		{name: "the bridge's DAD probe (KubeVirt's)", in: podNSFor(t, netip.IPv6Unspecified(), bridgeLLA), want: actOK},
		{name: "the bridge's NA (KubeVirt's)", in: icmp6(bridge, neighbour, bridgeLLA, neighLLA, 136, bridgeLLA.AsSlice()), want: actOK},
		{name: "NS for the VM before it spoke", in: podNSFor(t, bridgeLLA, vmLLA), want: actShot},
		{name: "NS for the VM", in: podNSFor(t, bridgeLLA, vmLLA), before: known, want: actRedirect, out: na, mark: ownMark},
		{name: "NS for the VM, hop limit 254", in: nsHops, before: known, want: actShot},
		{name: "NS for the VM behind an extension header", in: withExt(podNSFor(t, bridgeLLA, vmLLA), 60, 0), before: known, want: actShot},
		{name: "NS for a neighbour", in: podNSFor(t, bridgeLLA, neighLLA), before: known, want: actShot},
		{name: "NS for the gateway", in: podNSFor(t, bridgeLLA, gwLLA), before: known, want: actShot},
		{name: "MLDv2 report joining ff02::1:2", in: mld2(dhcpGroup), want: actShot},
		{name: "MLDv2 report, ff02::1:2 second", in: mld2(solicitedNode(bridgeLLA), dhcpGroup), want: actShot},
		{name: "MLDv2 report for the bridge's own group", in: mld2(solicitedNode(bridgeLLA)), want: actOK},
		{name: "MLDv1 report for ff02::1:2", in: mld1(dhcpGroup), want: actShot},
		{name: "MLDv1 report for another group", in: mld1(solicitedNode(bridgeLLA)), want: actOK},
		{name: "echo reply", in: icmp6(bridge, neighbour, bridgeLLA, neighLLA, 129, nil), want: actOK},
		{name: "before plumbing: the pod's DHCPv4 from its MAC", in: udp4(vmMAC, frame.Broadcast, vmIP, netip.MustParseAddr("255.255.255.255"), 68, 67), want: actOK},
		{name: "before plumbing: the pod's NS", in: ndFrame(t, vmMAC, vmLLA, solicitedNode(gwLLA), 255, &ndp.NeighborSolicitation{TargetAddress: gwLLA}), want: actOK},
	}
	p := newTestProgram(t, kubeOVN())
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			p.setState(t, r.before)
			p.check(t, egressProgram, r, skbContext{IngressIfindex: r.ingress, Ifindex: uplinkIndex})
			want := r.before
			if r.in[6]&1 == 0 && frame.MAC(r.in[6:12]) != vmMAC {
				want.podMAC = macBits(frame.MAC(r.in[6:12]))
			}
			if want.vmMAC == want.podMAC {
				want.vmMAC = 0
			}
			if diff := cmp.Diff(want, p.state(t), cmp.AllowUnexported(learned{})); diff != "" {
				t.Errorf("learned (-want +got):\n%s", diff)
			}
		})
	}
}

// check runs r through program name and compares the verdict, the frame
// and the mark with r's.
func (p *testProgram) check(t *testing.T, name string, r guardRow, ctx skbContext) {
	t.Helper()
	got := p.exec(t, name, r.in, ctx)
	want := verdict{act: r.want, out: r.in, mark: ctx.Mark}
	if r.out != nil {
		want.out, want.mark = r.out, r.mark
	}
	if got.act != want.act || string(got.out) != string(want.out) || got.mark != want.mark {
		t.Errorf("verdict %d, mark %#x, frame:\n%x\nwant verdict %d, mark %#x, frame:\n%x", got.act, got.mark, got.out, want.act, want.mark, want.out)
	}
}

// TestNeighborAdvertBytes pins the NA the program answers the pod's NS
// with, byte for byte (RFC 4861 §4.4, §7.2.4), and the Go model's.
func TestNeighborAdvertBytes(t *testing.T) {
	// Ethernet: bridge <- VM, IPv6. IPv6: payload 32, ICMPv6, hop limit
	// 255, fe80::858:aff:fe10:5 -> fe80::ff:fe00:99 (the bridge's). NA:
	// type 136, code 0, checksum, S|O, target fe80::858:aff:fe10:5, option
	// target link-layer address 0a:58:0a:10:00:05.
	const want = "020000000099" + "0a580a100005" + "86dd" +
		"60000000" + "0020" + "3a" + "ff" +
		"fe8000000000000008580afffe100005" + "fe80000000000000000000fffe000099" +
		"88" + "00" + "e340" + "60000000" + "fe8000000000000008580afffe100005" + "0201" + "0a580a100005"
	if got := hex.EncodeToString(neighborAdvert(bridge, vmMAC, bridgeLLA, vmLLA)); got != want {
		t.Errorf("model NA:\n got %s\nwant %s", got, want)
	}
	p := newTestProgram(t, kubeOVN())
	p.setState(t, vmKnown())
	got := p.exec(t, egressProgram, podNSFor(t, bridgeLLA, vmLLA), skbContext{Ifindex: uplinkIndex})
	if hex.EncodeToString(got.out) != want || got.act != actRedirect || got.mark != ownMark {
		t.Errorf("program NA: verdict %d mark %#x\n got %x\nwant %s", got.act, got.mark, got.out, want)
	}
	if _, err := frame.ParseICMP6(got.out); err != nil { // verifies the checksum
		t.Errorf("program NA does not parse: %v", err)
	}
}

// TestARPReplyBytes pins the ARP reply (RFC 826) the program gives the
// VM's request for the server identifier, byte for byte.
func TestARPReplyBytes(t *testing.T) {
	// Ethernet: VM <- bridge, ARP. ARP: Ethernet, IPv4, 6, 4, reply,
	// 02:00:00:00:00:99 has 169.254.75.10, to 0a:58:0a:10:00:05 at 10.16.0.5.
	const want = "0a580a100005" + "020000000099" + "0806" +
		"0001" + "0800" + "06" + "04" + "0002" +
		"020000000099" + "a9fe4b0a" + "0a580a100005" + "0a100005"
	p := newTestProgram(t, kubeOVN())
	p.setState(t, vmKnown())
	got := p.exec(t, egressProgram, arp(vmMAC, frame.ARPRequest, vmIP, sid), skbContext{IngressIfindex: tapIndex, Ifindex: uplinkIndex})
	if hex.EncodeToString(got.out) != want || got.act != actRedirect || got.mark != 0 {
		t.Errorf("program ARP reply: verdict %d mark %#x\n got %x\nwant %s", got.act, got.mark, got.out, want)
	}
	var v learned
	v.podMAC = macBits(bridge)
	if m := vmARP(arp(vmMAC, frame.ARPRequest, vmIP, sid), p.v, &v, tapIndex); hex.EncodeToString(m.out) != want {
		t.Errorf("model ARP reply:\n got %x\nwant %s", m.out, want)
	}
}

// TestEgressVM: what the VM sends through the uplink, and what the
// programs learn from it.
func TestEgressVM(t *testing.T) {
	podOnly := learned{podMAC: macBits(bridge)}
	reply := func(asked, from netip.Addr) []byte {
		return frame.AppendARP(nil, frame.Ethernet{Dst: vmMAC, Src: bridge},
			frame.ARP{Op: frame.ARPReply, SenderMAC: bridge, SenderIP: asked, TargetMAC: vmMAC, TargetIP: from})
	}
	other := netip.MustParseAddr("fe80::1234:5678:9abc:def0")
	global := netip.MustParseAddr("fd00:10:16::5")
	for _, r := range []struct {
		guardRow
		after learned
	}{
		{guardRow{name: "Solicit from the link-local address", in: udp6(vmMAC, vmLLA, dhcpGroup, 546, 547), want: actOK},
			learned{iid: iidOf(vmLLA.AsSlice()), vmMAC: macBits(vmMAC), port: tapIndex}},
		{guardRow{name: "a new link-local address replaces the old", in: udp6(vmMAC, other, dhcpGroup, 546, 547), before: vmKnown(), want: actOK},
			learned{iid: iidOf(other.AsSlice()), podMAC: macBits(bridge), vmMAC: macBits(vmMAC), port: tapIndex}},
		{guardRow{name: "a global source teaches nothing", in: udp6(vmMAC, global, dhcpGroup, 546, 547), want: actOK},
			learned{vmMAC: macBits(vmMAC), port: tapIndex}},
		{guardRow{name: "the DAD probe teaches nothing", in: ndFrame(t, vmMAC, netip.IPv6Unspecified(), solicitedNode(vmLLA), 255,
			&ndp.NeighborSolicitation{TargetAddress: vmLLA}), want: actOK}, learned{vmMAC: macBits(vmMAC), port: tapIndex}},
		{guardRow{name: "another MAC becomes the VM's", in: udp6(neighbour, vmLLA, dhcpGroup, 546, 547), before: vmKnown(), want: actOK},
			learned{iid: iidOf(vmLLA.AsSlice()), podMAC: macBits(bridge), vmMAC: macBits(neighbour), port: tapIndex}},
		{guardRow{name: "ARP for the server identifier", in: arp(vmMAC, frame.ARPRequest, vmIP, sid), before: podOnly,
			want: actRedirect, out: reply(sid, vmIP)}, learned{podMAC: macBits(bridge), vmMAC: macBits(vmMAC), port: tapIndex}},
		{guardRow{name: "ARP probe for 169.254.75.112", in: arp(vmMAC, frame.ARPRequest, netip.IPv4Unspecified(), netip.MustParseAddr("169.254.75.112")),
			before: podOnly, want: actRedirect, out: reply(netip.MustParseAddr("169.254.75.112"), netip.IPv4Unspecified())},
			learned{podMAC: macBits(bridge), vmMAC: macBits(vmMAC), port: tapIndex}},
		{guardRow{name: "ARP for the server identifier before the bridge spoke", in: arp(vmMAC, frame.ARPRequest, vmIP, sid), want: actOK},
			learned{vmMAC: macBits(vmMAC), port: tapIndex}},
		{guardRow{name: "ARP for the gateway", in: arp(vmMAC, frame.ARPRequest, vmIP, netip.MustParseAddr("10.16.0.1")), before: podOnly, want: actOK},
			learned{podMAC: macBits(bridge), vmMAC: macBits(vmMAC), port: tapIndex}},
		{guardRow{name: "ARP for 169.254.76.10", in: arp(vmMAC, frame.ARPRequest, vmIP, netip.MustParseAddr("169.254.76.10")), before: podOnly, want: actOK},
			learned{podMAC: macBits(bridge), vmMAC: macBits(vmMAC), port: tapIndex}},
		{guardRow{name: "ARP announcement of 169.254.75.10", in: arp(vmMAC, frame.ARPRequest, sid, sid), before: podOnly, want: actOK},
			learned{podMAC: macBits(bridge), vmMAC: macBits(vmMAC), port: tapIndex}},
		{guardRow{name: "ARP reply from the VM", in: arp(vmMAC, frame.ARPReply, vmIP, sid), before: podOnly, want: actOK},
			learned{podMAC: macBits(bridge), vmMAC: macBits(vmMAC), port: tapIndex}},
		{guardRow{name: "DHCPv4 DISCOVER (the VM's business)", in: udp4(vmMAC, frame.Broadcast, netip.IPv4Unspecified(),
			netip.MustParseAddr("255.255.255.255"), 68, 67), want: actOK}, learned{vmMAC: macBits(vmMAC), port: tapIndex}},
	} {
		t.Run(r.name, func(t *testing.T) {
			p := newTestProgram(t, kubeOVN())
			p.setState(t, r.before)
			p.check(t, egressProgram, r.guardRow, skbContext{IngressIfindex: tapIndex, Ifindex: uplinkIndex})
			if diff := cmp.Diff(r.after, p.state(t), cmp.AllowUnexported(learned{})); diff != "" {
				t.Errorf("learned (-want +got):\n%s", diff)
			}
		})
	}
}

// TestIngress: what arrives from the cluster; actShot means the pod stack
// never sees it.
func TestIngress(t *testing.T) {
	bcast := netip.MustParseAddr("255.255.255.255")
	discover := udp4(neighbour, frame.Broadcast, netip.IPv4Unspecified(), bcast, 68, 67)
	withOptions := append([]byte{}, discover[:14]...)
	withOptions = append(append(withOptions, discover[14:34]...), 1, 1, 1, 0) // NOP NOP NOP EOL
	withOptions = append(withOptions, discover[34:]...)
	withOptions[14] = 0x46
	laterFragment := append([]byte{}, discover...)
	laterFragment[20] = 0x00
	laterFragment[21] = 0x10
	known := vmKnown()
	na := func(target netip.Addr) []byte {
		return icmp6(neighbour, allNodesMAC, neighLLA, netip.MustParseAddr("ff02::1"), 136, target.AsSlice())
	}
	deep := udp6(neighbour, neighLLA, dhcpGroup, 546, 547)
	for range 7 {
		deep = withExt(deep, 60, 0)
	}
	for _, r := range []guardRow{
		{name: "DHCPv4 DISCOVER broadcast", in: discover, want: actShot},
		{name: "DHCPv4 REQUEST to the bridge's MAC and the VM's address", in: udp4(neighbour, bridge, netip.MustParseAddr("10.16.0.99"), vmIP, 68, 67), want: actShot},
		{name: "DHCPv4 relayed to the server identifier", in: udp4(neighbour, bridge, netip.MustParseAddr("10.16.0.1"), sid, 67, 67), want: actShot},
		{name: "DHCPv4 with IP options", in: withOptions, want: actShot},
		{name: "DHCPv4 priority-tagged", in: tagged(discover, 1), want: actShot},
		{name: "DHCPv4 behind two tags", in: tagged(discover, 2), want: actShot},
		{name: "three tags", in: tagged(discover, 3), want: actShot},
		{name: "IPv4 later fragment", in: laterFragment, want: actOK},
		{name: "DHCPv4 to the VM's MAC", in: udp4(neighbour, vmMAC, netip.MustParseAddr("10.16.0.99"), vmIP, 68, 67), want: actOK},
		{name: "DHCPv4 OFFER from a server on the segment", in: udp4(neighbour, frame.Broadcast, netip.MustParseAddr("10.16.0.99"), bcast, 67, 68), want: actOK},
		{name: "DHCPv6 Solicit", in: udp6(neighbour, neighLLA, dhcpGroup, 546, 547), want: actShot},
		{name: "DHCPv6 Relay-forward from a global address", in: udp6(neighbour, netip.MustParseAddr("fd00:10:16::99"), dhcpGroup, 547, 547), want: actShot},
		{name: "DHCPv6 Solicit behind hop-by-hop and destination options", in: withExt(withExt(udp6(neighbour, neighLLA, dhcpGroup, 546, 547), 60, 0), 0, 0), want: actShot},
		{name: "DHCPv6 Solicit, first fragment", in: withExt(udp6(neighbour, neighLLA, dhcpGroup, 546, 547), 44, 1), want: actShot},
		{name: "IPv6 later fragment", in: withExt(udp6(neighbour, neighLLA, dhcpGroup, 546, 547), 44, 0x5a9), want: actOK},
		{name: "seven extension headers", in: deep, want: actShot},
		{name: "DHCPv6 Solicit to the VM's MAC", in: udp6(neighbour, neighLLA, vmLLA, 546, 547), want: actOK},
		{name: "DHCPv6 Advertise from a server on the segment", in: udp6(neighbour, neighLLA, vmLLA, 547, 546), want: actOK},
		{name: "RS", in: rs(t, neighbour), want: actShot},
		{name: "the gateway's RA", in: icmp6(gwMAC, allNodesMAC, gwLLA, netip.MustParseAddr("ff02::1"), 134, make([]byte, 8)), want: actOK},
		{name: "NA for the VM's link-local", in: na(vmLLA), before: known, want: actShot},
		{name: "NA for the VM's link-local before it spoke", in: na(vmLLA), want: actOK},
		{name: "NA for the neighbour", in: na(neighLLA), before: known, want: actOK},
		{name: "NS from the VM's link-local", in: ndFrame(t, neighbour, vmLLA, solicitedNode(bridgeLLA), 255, &ndp.NeighborSolicitation{TargetAddress: bridgeLLA}), before: known, want: actShot},
		{name: "NS for the bridge (KubeVirt's)", in: ndFrame(t, neighbour, neighLLA, solicitedNode(bridgeLLA), 255, &ndp.NeighborSolicitation{TargetAddress: bridgeLLA}), before: known, want: actOK},
		{name: "echo request to the bridge", in: icmp6(neighbour, bridge, neighLLA, bridgeLLA, 128, nil), want: actOK},
		{name: "ARP request for the server identifier", in: arp(neighbour, frame.ARPRequest, netip.MustParseAddr("10.16.0.99"), sid), want: actOK},
	} {
		t.Run(r.name, func(t *testing.T) {
			p := newTestProgram(t, kubeOVN())
			p.setState(t, r.before)
			p.check(t, ingressProgram, r, skbContext{IngressIfindex: uplinkIndex, Ifindex: uplinkIndex})
			if got := ingress(r.in, p.v, r.before, 0); got.act != r.want {
				t.Errorf("model verdict %d, want %d", got.act, r.want)
			}
		})
	}
	t.Run("own frame", func(t *testing.T) {
		p := newTestProgram(t, kubeOVN())
		p.check(t, ingressProgram, guardRow{in: discover, want: actOK}, skbContext{Mark: ownMark, IngressIfindex: uplinkIndex, Ifindex: uplinkIndex})
	})
}

// TestGuardWithoutRA: a pod without an IPv6 gateway gets the guard alone:
// the VM's RS goes upstream, the rest as with the responder.
func TestGuardWithoutRA(t *testing.T) {
	cfg := kubeOVN()
	cfg.RA.Mode = ra.ModeOff
	p := newTestProgram(t, cfg)
	p.check(t, egressProgram, guardRow{in: rs(t, vmMAC), want: actOK}, skbContext{IngressIfindex: tapIndex, Ifindex: uplinkIndex})
	p.check(t, egressProgram, guardRow{in: udp4(bridge, frame.Broadcast, sid, netip.MustParseAddr("255.255.255.255"), 67, 68), want: actShot},
		skbContext{Ifindex: uplinkIndex})
	p.check(t, ingressProgram, guardRow{in: rs(t, neighbour), want: actShot}, skbContext{IngressIfindex: uplinkIndex, Ifindex: uplinkIndex})
}

// FuzzEgress runs the egress program on arbitrary frames from the pod
// stack, the VM's port or the uplink itself (from%3), with nothing or
// everything learned (learnt), and compares its verdict, frame, mark and
// learned state with the Go model. An odd from/3 sets the learned VM MAC
// to one that is not the pod's (movedMAC, a migration target), or without
// learnt to the bridge's (a guest that borrowed it before the bridge
// spoke).
func FuzzEgress(f *testing.F) {
	for _, s := range [][]byte{rs(f, vmMAC), ns(f, gwLLA), rs(f, bridge), podNSFor(f, bridgeLLA, vmLLA), mld2(dhcpGroup), dhcpReply(vmMAC, vmIP),
		arp(vmMAC, frame.ARPRequest, vmIP, sid), udp6(vmMAC, vmLLA, dhcpGroup, 546, 547), rs(f, movedMAC), dhcpReply(movedMAC, vmIP),
		arp(movedMAC, frame.ARPRequest, vmIP, sid), rs(f, frame.MAC{0x0b, 0x58, 0x0a, 0x10, 0x00, 0x77}),
		vmMLD2(vmMAC, vmLLA, joined), vmMLD2(movedMAC, netip.IPv6Unspecified(), joined), vmMLD1(vmMAC, joined),
		mldVariants()["Hdr Ext Len past the end"], mldVariants()["echo behind HBH"]} {
		f.Add(s, uint8(0), true)
		f.Add(s, uint8(1), true)
		f.Add(s, uint8(2), false)
		f.Add(s, uint8(3), true)
		f.Add(s, uint8(4), true)
		f.Add(s, uint8(4), false)
	}
	p := newTestProgram(f, kubeOVN())
	f.Fuzz(func(t *testing.T, in []byte, from uint8, learnt bool) {
		if !testRunnable(in) {
			return
		}
		ingress := []uint32{0, tapIndex, uplinkIndex}[from%3]
		var st learned
		switch moved := from/3%2 == 1; {
		case learnt && moved:
			st = vmKnown()
			st.vmMAC = macBits(movedMAC)
		case learnt:
			st = vmKnown()
		case moved:
			st = learned{vmMAC: macBits(bridge), port: tapIndex}
		}
		p.forget(t)
		p.setState(t, st)
		want := egress(in, p.v, &st, ingress, true)
		got := p.exec(t, egressProgram, in, skbContext{IngressIfindex: ingress, Ifindex: uplinkIndex})
		if want.out == nil {
			want.out = in
		}
		if got.act != want.act || string(got.out) != string(want.out) || got.mark != want.mark {
			t.Errorf("from %d: verdict %d mark %#x frame\n%x\nwant verdict %d mark %#x frame\n%x", ingress, got.act, got.mark, got.out, want.act, want.mark, want.out)
		}
		if diff := cmp.Diff(st, p.state(t), cmp.AllowUnexported(learned{})); diff != "" {
			t.Errorf("learned (-want +got):\n%s", diff)
		}
	})
}

// FuzzIngress runs the ingress program on arbitrary frames from the cluster
// and compares its verdict with the Go model, and the learned state (which
// it never changes); it never changes a frame. Learnt: everything learned,
// the VM's MAC not the pod's (movedMAC).
func FuzzIngress(f *testing.F) {
	for _, s := range [][]byte{udp4(neighbour, frame.Broadcast, netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255"), 68, 67),
		udp6(neighbour, neighLLA, dhcpGroup, 546, 547), rs(f, neighbour), tagged(rs(f, neighbour), 2),
		icmp6(neighbour, allNodesMAC, neighLLA, netip.MustParseAddr("ff02::1"), 136, vmLLA.AsSlice()),
		udp4(neighbour, movedMAC, netip.MustParseAddr("10.16.0.99"), vmIP, 68, 67), udp4(neighbour, vmMAC, netip.MustParseAddr("10.16.0.99"), vmIP, 68, 67),
		rs(f, movedMAC)} {
		f.Add(s, true)
		f.Add(s, false)
	}
	p := newTestProgram(f, kubeOVN())
	f.Fuzz(func(t *testing.T, in []byte, learnt bool) {
		if !testRunnable(in) {
			return
		}
		var st learned
		if learnt {
			st = vmKnown()
			st.vmMAC = macBits(movedMAC)
		}
		p.setState(t, st)
		want := ingress(in, p.v, st, 0)
		got := p.exec(t, ingressProgram, in, skbContext{IngressIfindex: uplinkIndex, Ifindex: uplinkIndex})
		if got.act != want.act || string(got.out) != string(in) || got.mark != 0 {
			t.Errorf("verdict %d mark %#x frame\n%x\nwant verdict %d, the frame unchanged", got.act, got.mark, got.out, want.act)
		}
		if diff := cmp.Diff(st, p.state(t), cmp.AllowUnexported(learned{})); diff != "" {
			t.Errorf("learned (-want +got):\n%s", diff)
		}
	})
}
