package ra

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/ndp"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

var allRouters = netip.MustParseAddr("ff02::2")

// rsFrame is an RS as a Linux guest sends it, from src (with an SLLAO
// unless src is ::), edited by edit before the checksum is computed.
func rsFrame(t testing.TB, src netip.Addr, hopLimit uint8, edit func(msg []byte) []byte) []byte {
	t.Helper()
	rs := &ndp.RouterSolicitation{}
	if src != netip.IPv6Unspecified() {
		rs.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: vmMAC.HardwareAddr()}}
	}
	msg, err := ndp.MarshalMessage(rs)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		msg = edit(msg)
	}
	return frame.AppendICMP6(nil, frame.ICMP6{
		Eth:      frame.Ethernet{Dst: frame.MulticastMAC(allRouters), Src: vmMAC},
		Src:      src,
		Dst:      allRouters,
		HopLimit: hopLimit,
		Payload:  msg,
	})
}

func TestClassify(t *testing.T) {
	t.Parallel()
	unspec := netip.IPv6Unspecified()
	dadNS, err := ndp.MarshalMessage(&ndp.NeighborSolicitation{TargetAddress: guestLLA})
	if err != nil {
		t.Fatal(err)
	}
	badSum := rsFrame(t, guestLLA, 255, nil)
	badSum[len(badSum)-1] ^= 0xff
	ipv4 := frame.AppendUDP4(nil, frame.UDP4{
		Eth: frame.Ethernet{Dst: frame.Broadcast, Src: vmMAC}, Src: netip.IPv4Unspecified(),
		Dst: netip.MustParseAddr("255.255.255.255"), SrcPort: 68, DstPort: 67, Payload: []byte{1},
	})
	other := rsFrame(t, guestLLA, 255, nil)
	copy(other[6:12], []byte{0x52, 0x54, 0, 0, 0, 9})

	tests := []struct {
		name    string
		frame   []byte
		want    frameEvent
		wantErr error
	}{
		{"RS from the link-local address", rsFrame(t, guestLLA, 255, nil),
			frameEvent{spoke: true, rs: true, from: target{IP: guestLLA, MAC: vmMAC}}, nil},
		{"RS from ::", rsFrame(t, unspec, 255, nil), frameEvent{spoke: true, rs: true}, nil},
		{"RS with an unknown option", rsFrame(t, guestLLA, 255, func(m []byte) []byte { return append(m, 99, 1, 0, 0, 0, 0, 0, 0) }),
			frameEvent{spoke: true, rs: true, from: target{IP: guestLLA, MAC: vmMAC}}, nil},
		{"RS from :: with SLLAO", rsFrame(t, unspec, 255, func(m []byte) []byte { return append(m, 1, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56) }),
			frameEvent{spoke: true}, errInvalidRS},
		{"RS with hop limit 64 (forwarded)", rsFrame(t, guestLLA, 64, nil), frameEvent{spoke: true}, errInvalidRS},
		{"RS with code 1", rsFrame(t, guestLLA, 255, func(m []byte) []byte { m[1] = 1; return m }), frameEvent{spoke: true}, errInvalidRS},
		{"RS with a zero-length option", rsFrame(t, guestLLA, 255, func(m []byte) []byte { m[9] = 0; return m }), frameEvent{spoke: true}, errInvalidRS},
		{"RS with an option past its end", rsFrame(t, guestLLA, 255, func(m []byte) []byte { m[9] = 2; return m }), frameEvent{spoke: true}, errInvalidRS},
		{"RS with a 1-byte option tail", rsFrame(t, guestLLA, 255, func(m []byte) []byte { return append(m, 1) }), frameEvent{spoke: true}, errInvalidRS},
		{"RS of 4 bytes", rsFrame(t, guestLLA, 255, func(m []byte) []byte { return m[:4] }), frameEvent{spoke: true}, errInvalidRS},
		{"RS from a multicast address", rsFrame(t, allRouters, 255, nil), frameEvent{spoke: true}, errInvalidRS},
		{"RS with a bad checksum", badSum, frameEvent{spoke: true}, frame.ErrChecksum},
		{"DAD neighbour solicitation", frame.AppendICMP6(nil, frame.ICMP6{
			Eth: frame.Ethernet{Dst: frame.MulticastMAC(netip.MustParseAddr("ff02::1:ff12:3456")), Src: vmMAC},
			Src: unspec, Dst: netip.MustParseAddr("ff02::1:ff12:3456"), Payload: dadNS,
		}), frameEvent{spoke: true}, errNotRS},
		{"another VM's RS", other, frameEvent{}, errNotFromVM},
		{"IPv4 from the VM", ipv4, frameEvent{}, errNotFromVM},
		{"runt", []byte{1, 2, 3}, frameEvent{}, frame.ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := classify(tt.frame, vmMAC)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(frameEvent{}, target{}), cmpopts.EquateComparable(netip.Addr{}),
				cmpopts.IgnoreFields(frameEvent{}, "src", "nsTarget", "nsMAC")); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzClassify feeds arbitrary frames to the receive path: it must never
// panic, and whatever it accepts as an RS must satisfy RFC 4861 §6.1.1.
func FuzzClassify(f *testing.F) {
	f.Add(rsFrame(f, guestLLA, 255, nil))
	f.Add(rsFrame(f, netip.IPv6Unspecified(), 255, nil))
	f.Add(rsFrame(f, guestLLA, 255, func(m []byte) []byte { return append(m, 99, 1, 0, 0, 0, 0, 0, 0) }))
	f.Add(rsFrame(f, guestLLA, 255, func(m []byte) []byte { m[9] = 0; return m }))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := classify(b, vmMAC)
		if !ev.rs {
			return
		}
		if err != nil {
			t.Fatalf("RS accepted with error %v", err)
		}
		p, perr := frame.ParseICMP6(b)
		if perr != nil || p.HopLimit != 255 || p.Payload[0] != frame.ICMPv6RouterSolicitation || p.Payload[1] != 0 || len(p.Payload) < 8 {
			t.Fatalf("accepted an invalid RS: %+v %v", p, perr)
		}
		if frame.MAC(b[6:12]) != vmMAC {
			t.Fatal("accepted a frame from another MAC")
		}
	})
}

// TestClassifyNS: a neighbour solicitation from the VM gives its source,
// target and frame destination (the renumbering evidence); the classified
// source of any ICMPv6 message is the address the guest used.
func TestClassifyNS(t *testing.T) {
	t.Parallel()
	target := netip.MustParseAddr("fe80::858:aff:fe11:1")
	b, err := ndp.MarshalMessage(&ndp.NeighborSolicitation{TargetAddress: target})
	if err != nil {
		t.Fatal(err)
	}
	mac := frame.MustParseMAC("0a:58:0a:11:00:01")
	f := frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: mac, Src: vmMAC}, Src: guestLLA, Dst: target,
		HopLimit: 255, Payload: b})
	ev, err := classify(f, vmMAC)
	if !errors.Is(err, errNotRS) {
		t.Fatalf("classify(NS) error = %v, want errNotRS", err)
	}
	if !ev.spoke || ev.rs || ev.src != guestLLA || ev.nsTarget != target || ev.nsMAC != mac {
		t.Errorf("classify(NS) = %+v, want spoke, source %v, target %v at %v", ev, guestLLA, target, mac)
	}
}
