package dhcp4

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/e2e/lab"
)

var bcastAddr = netip.MustParseAddr("255.255.255.255")

// requestFrame wraps req in the Ethernet/IPv4/UDP frame a client sends.
func requestFrame(src net.HardwareAddr, ipSrc, ipDst netip.Addr, sport uint16, req *dhcpv4.DHCPv4) []byte {
	return frame.AppendUDP4(nil, frame.UDP4{
		Eth: frame.Ethernet{Dst: frame.Broadcast, Src: src},
		Src: ipSrc, Dst: ipDst, SrcPort: sport, DstPort: ServerPort, Payload: req.ToBytes(),
	})
}

func arpRequest(src net.HardwareAddr, srcIP, target netip.Addr) []byte {
	return frame.AppendARP(nil, frame.Ethernet{Dst: frame.Broadcast, Src: src},
		frame.ARP{Op: frame.ARPRequest, SenderMAC: src, SenderIP: srcIP, TargetMAC: make(net.HardwareAddr, 6), TargetIP: target})
}

// startServer runs a packet server on one end of a frame.Pipe and returns
// the other end (the VM) and the server's events.
func startServer(t *testing.T, h *Handler, limit RateLimit) (*frame.PipeConn, <-chan Event) {
	t.Helper()
	srv, vm := frame.Pipe()
	events := make(chan Event, 100)
	s := NewPacketServer(h, srv, discardLogger())
	s.Limit = limit
	s.Observer = func(e Event) { events <- e }
	lab.RunUntilCleanup(t, s.Run, srv.Close, vm.Close)
	return vm, events
}

func nextEvent(t *testing.T, events <-chan Event) Event {
	t.Helper()
	select {
	case e := <-events:
		e.Latency = 0
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
		return Event{}
	}
}

// sent is what a test checks of a frame the server sent.
type sent struct {
	EthDst, EthSrc   string
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Type             dhcpv4.MessageType
	ARP              *frame.ARP
}

func readSent(t *testing.T, vm *frame.PipeConn) sent {
	t.Helper()
	buf := make([]byte, 2048)
	if err := vm.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := vm.ReadFrame(buf)
	if err != nil {
		t.Fatalf("no frame from the server: %v", err)
	}
	b := buf[:n]
	if eth, a, err := frame.ParseARP(b); err == nil {
		return sent{EthDst: eth.Dst.String(), EthSrc: eth.Src.String(), ARP: &a}
	}
	p, err := frame.ParseUDP4(b)
	if err != nil {
		t.Fatalf("server sent an unparsable frame: %v", err)
	}
	m, err := dhcpv4.FromBytes(p.Payload)
	if err != nil {
		t.Fatalf("server sent an unparsable DHCP message: %v", err)
	}
	return sent{EthDst: p.Eth.Dst.String(), EthSrc: p.Eth.Src.String(), Src: p.Src, Dst: p.Dst,
		SrcPort: p.SrcPort, DstPort: p.DstPort, Type: m.MessageType()}
}

func TestPacketServer(t *testing.T) {
	relayMAC := vmMAC // perfdhcp relays from the VM's own link
	tests := []struct {
		name  string
		in    []byte
		want  *sent // nil: nothing sent
		event Event
	}{{
		name: "DISCOVER -> OFFER to yiaddr at chaddr",
		in:   requestFrame(vmMAC, zero, bcastAddr, ClientPort, newRequest(t, dhcpv4.MessageTypeDiscover)),
		want: &sent{EthDst: vmMAC.String(), EthSrc: serviceMAC.String(), Src: serverID, Dst: podAddr,
			SrcPort: 67, DstPort: 68, Type: dhcpv4.MessageTypeOffer},
		event: Event{Type: dhcpv4.MessageTypeDiscover, Reply: dhcpv4.MessageTypeOffer, XID: testXID},
	}, {
		name: "DISCOVER with BROADCAST -> OFFER broadcast",
		in:   requestFrame(vmMAC, zero, bcastAddr, ClientPort, newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithBroadcast(true))),
		want: &sent{EthDst: "ff:ff:ff:ff:ff:ff", EthSrc: serviceMAC.String(), Src: serverID, Dst: bcastAddr,
			SrcPort: 67, DstPort: 68, Type: dhcpv4.MessageTypeOffer},
		event: Event{Type: dhcpv4.MessageTypeDiscover, Reply: dhcpv4.MessageTypeOffer, XID: testXID},
	}, {
		name: "relayed DISCOVER unicast to the server id -> OFFER to giaddr:67 at the source MAC",
		in: requestFrame(relayMAC, relayAddr, serverID, ServerPort,
			newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithGatewayIP(relayAddr.AsSlice()))),
		want: &sent{EthDst: relayMAC.String(), EthSrc: serviceMAC.String(), Src: serverID, Dst: relayAddr,
			SrcPort: 67, DstPort: 67, Type: dhcpv4.MessageTypeOffer},
		event: Event{Type: dhcpv4.MessageTypeDiscover, Reply: dhcpv4.MessageTypeOffer, XID: testXID},
	}, {
		name: "RENEWING unicast to the server id -> ACK to ciaddr",
		in:   requestFrame(vmMAC, podAddr, serverID, ClientPort, newRequest(t, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(podAddr.AsSlice()))),
		want: &sent{EthDst: vmMAC.String(), EthSrc: serviceMAC.String(), Src: serverID, Dst: podAddr,
			SrcPort: 67, DstPort: 68, Type: dhcpv4.MessageTypeAck},
		event: Event{Type: dhcpv4.MessageTypeRequest, Reply: dhcpv4.MessageTypeAck, XID: testXID},
	}, {
		name: "INIT-REBOOT for another address -> NAK broadcast",
		in:   requestFrame(vmMAC, zero, bcastAddr, ClientPort, newRequest(t, dhcpv4.MessageTypeRequest, withAddrOpt(optRequestedIP, otherAddr))),
		want: &sent{EthDst: "ff:ff:ff:ff:ff:ff", EthSrc: serviceMAC.String(), Src: serverID, Dst: bcastAddr,
			SrcPort: 67, DstPort: 68, Type: dhcpv4.MessageTypeNak},
		event: Event{Type: dhcpv4.MessageTypeRequest, Reply: dhcpv4.MessageTypeNak, XID: testXID},
	}, {
		name: "ARP for the server id -> reply with the service MAC",
		in:   arpRequest(vmMAC, podAddr, serverID),
		want: &sent{EthDst: vmMAC.String(), EthSrc: serviceMAC.String(), ARP: &frame.ARP{Op: frame.ARPReply,
			SenderMAC: serviceMAC, SenderIP: serverID, TargetMAC: vmMAC, TargetIP: podAddr}},
		event: Event{ARP: true},
	}, {
		name:  "ARP for the gateway -> nothing",
		in:    arpRequest(vmMAC, podAddr, netip.MustParseAddr("10.16.0.1")),
		event: Event{ARP: true, Drop: DropNotForServer},
	}, {
		name:  "frame from another MAC -> nothing",
		in:    requestFrame(otherMAC, zero, bcastAddr, ClientPort, newRequest(t, dhcpv4.MessageTypeDiscover)),
		event: Event{Drop: DropForeign},
	}, {
		name:  "chaddr of another client in the VM's frame -> nothing",
		in:    requestFrame(vmMAC, zero, bcastAddr, ClientPort, newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithHwAddr(otherMAC))),
		event: Event{Type: dhcpv4.MessageTypeDiscover, Drop: DropForeign, XID: testXID},
	}, {
		name:  "unicast to another server -> nothing",
		in:    requestFrame(vmMAC, podAddr, netip.MustParseAddr("10.16.0.2"), ClientPort, newRequest(t, dhcpv4.MessageTypeDiscover)),
		event: Event{Drop: DropNotForServer},
	}, {
		name:  "truncated frame -> nothing",
		in:    requestFrame(vmMAC, zero, bcastAddr, ClientPort, newRequest(t, dhcpv4.MessageTypeDiscover))[:40],
		event: Event{Drop: DropMalformed},
	}}
	h := newTestHandler(t, kubeOVNConfig())
	vm, events := startServer(t, h, RateLimit{Rate: DefaultRate, Burst: DefaultBurst})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := vm.WriteFrame(tt.in); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.event, nextEvent(t, events)); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
			if tt.want != nil {
				got := readSent(t, vm)
				if diff := cmp.Diff(*tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
					t.Errorf("sent frame (-want +got):\n%s", diff)
				}
			}
			assertNothingSent(t, vm)
		})
	}
}

func assertNothingSent(t *testing.T, vm *frame.PipeConn) {
	t.Helper()
	if err := vm.SetReadDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if n, err := vm.ReadFrame(make([]byte, 2048)); err == nil {
		t.Errorf("server sent an unexpected %d-byte frame", n)
	}
}

// TestPacketServerRateLimit: a flood gets Burst replies, the rest is dropped
// without work, and the bucket refills.
func TestPacketServerRateLimit(t *testing.T) {
	vm, events := startServer(t, newTestHandler(t, kubeOVNConfig()), RateLimit{Rate: 20, Burst: 5})
	in := requestFrame(vmMAC, zero, bcastAddr, ClientPort, newRequest(t, dhcpv4.MessageTypeDiscover))
	replies, limited := 0, 0
	for range 30 {
		if err := vm.WriteFrame(in); err != nil {
			t.Fatal(err)
		}
		switch e := nextEvent(t, events); e.Drop {
		case "":
			replies++
			readSent(t, vm)
		case DropRateLimited:
			limited++
		default:
			t.Fatalf("unexpected drop %q", e.Drop)
		}
	}
	// 30 frames take well under 250 ms here, so at most a few tokens refill.
	if replies < 5 || replies > 10 || limited != 30-replies {
		t.Errorf("replies = %d, limited = %d; want 5-10 replies and the rest limited", replies, limited)
	}
	time.Sleep(100 * time.Millisecond) // 2 tokens at 20/s
	if err := vm.WriteFrame(in); err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, events); e.Drop != "" {
		t.Errorf("after refilling: drop %q, want a reply", e.Drop)
	}
}

// TestPacketServerRecoversPanic: a panic while handling one packet is logged
// and the next packet is served.
func TestPacketServerRecoversPanic(t *testing.T) {
	h := newTestHandler(t, kubeOVNConfig())
	h.log = nil // DECLINE logs through it: a nil logger panics
	vm, events := startServer(t, h, RateLimit{Rate: DefaultRate, Burst: DefaultBurst})
	decline := newRequest(t, dhcpv4.MessageTypeDecline, withAddrOpt(optRequestedIP, podAddr))
	if err := vm.WriteFrame(requestFrame(vmMAC, zero, bcastAddr, ClientPort, decline)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Event{Drop: DropPanic}, nextEvent(t, events)); diff != "" {
		t.Errorf("event (-want +got):\n%s", diff)
	}
	if err := vm.WriteFrame(requestFrame(vmMAC, zero, bcastAddr, ClientPort, newRequest(t, dhcpv4.MessageTypeDiscover))); err != nil {
		t.Fatal(err)
	}
	if got := readSent(t, vm); got.Type != dhcpv4.MessageTypeOffer {
		t.Errorf("after the panic: sent %v, want an OFFER", got.Type)
	}
}

// TestPacketServerClosed: Run reports a conn closed under it.
func TestPacketServerClosed(t *testing.T) {
	srv, vm := frame.Pipe()
	defer vm.Close()
	s := NewPacketServer(newTestHandler(t, kubeOVNConfig()), srv, discardLogger())
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	srv.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Run() = nil after the conn was closed, want an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run() did not return after the conn was closed")
	}
}

// TestHandleDatagram: the UDP transport's addressing. It cannot unicast to a
// client without an address, so those replies are broadcast.
func TestHandleDatagram(t *testing.T) {
	s := NewPacketServer(newTestHandler(t, kubeOVNConfig()), nil, discardLogger())
	s.lim = newLimiter(RateLimit{}, vmMAC)
	tests := []struct {
		name string
		req  *dhcpv4.DHCPv4
		want string // destination, "" for none
	}{
		{"DISCOVER: broadcast", newRequest(t, dhcpv4.MessageTypeDiscover), "255.255.255.255:68"},
		{"RENEWING: to ciaddr", newRequest(t, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(podAddr.AsSlice())), "10.16.0.5:68"},
		{"relayed: to giaddr", newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithGatewayIP(relayAddr.AsSlice())), "10.16.0.50:67"},
		{"NAK: broadcast", newRequest(t, dhcpv4.MessageTypeRequest, withAddrOpt(optRequestedIP, otherAddr)), "255.255.255.255:68"},
		{"another chaddr: nothing", newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithHwAddr(otherMAC)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload, dst, _ := s.handleDatagram(tt.req.ToBytes(), time.Now())
			got := ""
			if dst != nil {
				got = dst.String()
				if _, err := dhcpv4.FromBytes(payload); err != nil {
					t.Errorf("reply does not parse: %v", err)
				}
			}
			if got != tt.want {
				t.Errorf("destination = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestLimiter: the VM and everyone else have separate buckets of Burst
// tokens, refilled at Rate per second.
func TestLimiter(t *testing.T) {
	l := newLimiter(RateLimit{Rate: 10, Burst: 2}, vmMAC)
	t0 := time.Unix(1000, 0)
	steps := []struct {
		mac  net.HardwareAddr
		at   time.Duration
		want bool
	}{
		{vmMAC, 0, true}, {vmMAC, 0, true}, {vmMAC, 0, false},
		{otherMAC, 0, true}, {otherMAC, 0, true}, {otherMAC, 0, false},
		{vmMAC, 50 * time.Millisecond, false},                                                              // half a token
		{vmMAC, 100 * time.Millisecond, true},                                                              // one token
		{vmMAC, 10 * time.Second, true}, {vmMAC, 10 * time.Second, true}, {vmMAC, 10 * time.Second, false}, // capped at Burst
	}
	var got, want []bool
	for _, s := range steps {
		got = append(got, l.allow(s.mac, t0.Add(s.at)))
		want = append(want, s.want)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("allow() (-want +got):\n%s", diff)
	}
}

// testXID is the transaction ID of newRequest's requests as a number, as
// the server's events carry it.
const testXID = 0xdeadbeef
