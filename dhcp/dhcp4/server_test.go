package dhcp4

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/internal/frametest"
	"github.com/dsbridge/dsbridge/dhcp/serve"
	"github.com/dsbridge/dsbridge/e2e/lab"
)

var bcastAddr = netip.MustParseAddr("255.255.255.255")

// requestFrame wraps req in the Ethernet/IPv4/UDP frame a client sends.
func requestFrame(src frame.MAC, ipSrc, ipDst netip.Addr, sport uint16, req *dhcpv4.DHCPv4) []byte {
	return frame.AppendUDP4(nil, frame.UDP4{
		Eth: frame.Ethernet{Dst: frame.Broadcast, Src: src},
		Src: ipSrc, Dst: ipDst, SrcPort: sport, DstPort: frame.PortDHCPv4Server, Payload: req.ToBytes(),
	})
}

func arpRequest(src frame.MAC, srcIP, target netip.Addr) []byte {
	return frame.AppendARP(nil, frame.Ethernet{Dst: frame.Broadcast, Src: src},
		frame.ARP{Op: frame.ARPRequest, SenderMAC: src, SenderIP: srcIP, TargetIP: target})
}

// startServer runs a packet server on one end of a frame.Pipe and returns
// the other end (the VM) and the server's events.
func startServer(t *testing.T, h *Handler) (*frame.PipeConn, <-chan serve.Event) {
	t.Helper()
	srv, vm := frame.Pipe()
	events := make(chan serve.Event, 100)
	s := NewPacketServer(h, srv, discardLogger())
	s.Observer = func(e serve.Event) { events <- e }
	lab.RunUntilCleanup(t, s.Run, vm.Close)
	return vm, events
}

func nextEvent(t *testing.T, events <-chan serve.Event) serve.Event {
	t.Helper()
	select {
	case e := <-events:
		e.Latency = 0
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
		return serve.Event{}
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
		event serve.Event
	}{{
		name: "DISCOVER -> OFFER to yiaddr at chaddr",
		in:   requestFrame(vmMAC, zero, bcastAddr, frame.PortDHCPv4Client, newRequest(t, dhcpv4.MessageTypeDiscover)),
		want: &sent{EthDst: vmMAC.String(), EthSrc: serviceMAC.String(), Src: serverID, Dst: podAddr,
			SrcPort: 67, DstPort: 68, Type: dhcpv4.MessageTypeOffer},
		event: serve.Event{Request: "DISCOVER", Reply: "OFFER", XID: testXID, Outcome: serve.Replied},
	}, {
		name: "DISCOVER with BROADCAST -> OFFER broadcast",
		in:   requestFrame(vmMAC, zero, bcastAddr, frame.PortDHCPv4Client, newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithBroadcast(true))),
		want: &sent{EthDst: "ff:ff:ff:ff:ff:ff", EthSrc: serviceMAC.String(), Src: serverID, Dst: bcastAddr,
			SrcPort: 67, DstPort: 68, Type: dhcpv4.MessageTypeOffer},
		event: serve.Event{Request: "DISCOVER", Reply: "OFFER", XID: testXID, Outcome: serve.Replied},
	}, {
		name: "relayed DISCOVER unicast to the server id -> OFFER to giaddr:67 at the source MAC",
		in: requestFrame(relayMAC, relayAddr, serverID, frame.PortDHCPv4Server,
			newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithGatewayIP(relayAddr.AsSlice()))),
		want: &sent{EthDst: relayMAC.String(), EthSrc: serviceMAC.String(), Src: serverID, Dst: relayAddr,
			SrcPort: 67, DstPort: 67, Type: dhcpv4.MessageTypeOffer},
		event: serve.Event{Request: "DISCOVER", Reply: "OFFER", XID: testXID, Outcome: serve.Replied},
	}, {
		name: "RENEWING unicast to the server id -> ACK to ciaddr",
		in:   requestFrame(vmMAC, podAddr, serverID, frame.PortDHCPv4Client, newRequest(t, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(podAddr.AsSlice()))),
		want: &sent{EthDst: vmMAC.String(), EthSrc: serviceMAC.String(), Src: serverID, Dst: podAddr,
			SrcPort: 67, DstPort: 68, Type: dhcpv4.MessageTypeAck},
		event: serve.Event{Request: "REQUEST", Reply: "ACK", XID: testXID, Outcome: serve.Replied},
	}, {
		name: "INIT-REBOOT for another address -> NAK broadcast",
		in:   requestFrame(vmMAC, zero, bcastAddr, frame.PortDHCPv4Client, newRequest(t, dhcpv4.MessageTypeRequest, withAddrOpt(optRequestedIP, otherAddr))),
		want: &sent{EthDst: "ff:ff:ff:ff:ff:ff", EthSrc: serviceMAC.String(), Src: serverID, Dst: bcastAddr,
			SrcPort: 67, DstPort: 68, Type: dhcpv4.MessageTypeNak},
		event: serve.Event{Request: "REQUEST", Reply: "NAK", XID: testXID, Outcome: serve.Replied, Stale: otherAddr},
	}, {
		name: "ARP for the server id -> reply with the service MAC",
		in:   arpRequest(vmMAC, podAddr, serverID),
		want: &sent{EthDst: vmMAC.String(), EthSrc: serviceMAC.String(), ARP: &frame.ARP{Op: frame.ARPReply,
			SenderMAC: serviceMAC, SenderIP: serverID, TargetMAC: vmMAC, TargetIP: podAddr}},
		event: serve.Event{Request: "ARP", Reply: "ARP", Outcome: serve.Replied, Peer: podAddr},
	}, {
		name:  "ARP for the gateway -> nothing",
		in:    arpRequest(vmMAC, podAddr, netip.MustParseAddr("10.16.0.1")),
		event: serve.Event{Request: "ARP", Outcome: serve.Dropped, Reason: serve.NotForServer, Peer: podAddr},
	}, {
		name:  "ARP from an address of another pod (after a migration) -> the address stale",
		in:    arpRequest(vmMAC, otherAddr, netip.MustParseAddr("10.16.0.1")),
		event: serve.Event{Request: "ARP", Outcome: serve.Dropped, Reason: serve.NotForServer, Peer: otherAddr, Stale: otherAddr},
	}, {
		name:  "frame from another MAC -> nothing",
		in:    requestFrame(otherMAC, zero, bcastAddr, frame.PortDHCPv4Client, newRequest(t, dhcpv4.MessageTypeDiscover)),
		event: serve.Drop(serve.NotVM, "Ethernet source is not the VM"),
	}, {
		name: "chaddr of another client in the VM's frame -> nothing",
		in:   requestFrame(vmMAC, zero, bcastAddr, frame.PortDHCPv4Client, newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithHwAddr(otherMAC.HardwareAddr()))),
		event: serve.Event{Request: "DISCOVER", XID: testXID, Outcome: serve.Dropped, Reason: serve.NotVM,
			Detail: "chaddr 0a:58:0a:10:00:63 is not the VM's"},
	}, {
		name:  "unicast to another server -> nothing",
		in:    requestFrame(vmMAC, podAddr, netip.MustParseAddr("10.16.0.2"), frame.PortDHCPv4Client, newRequest(t, dhcpv4.MessageTypeDiscover)),
		event: serve.Drop(serve.NotForServer, "not sent to the server's port at the broadcast address or the server identifier"),
	}, {
		name:  "truncated frame -> nothing",
		in:    requestFrame(vmMAC, zero, bcastAddr, frame.PortDHCPv4Client, newRequest(t, dhcpv4.MessageTypeDiscover))[:40],
		event: serve.Drop(serve.Malformed, "frame truncated"),
	}}
	h := newTestHandler(t, kubeOVNConfig())
	vm, events := startServer(t, h)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := vm.WriteFrame(tt.in); err != nil {
				t.Fatal(err)
			}
			ev := nextEvent(t, events)
			if ev.Request != "" {
				tt.event.Peer = ev.Peer // the client's address: the frame's source
			}
			if diff := cmp.Diff(tt.event, ev, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
			if tt.want != nil {
				got := readSent(t, vm)
				if diff := cmp.Diff(*tt.want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
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

// TestPacketServerRecoversPanic: a panic while handling one packet is
// reported as a drop and the next packet is served.
func TestPacketServerRecoversPanic(t *testing.T) {
	h := newTestHandler(t, kubeOVNConfig())
	h.log = nil // DECLINE logs through it: a nil logger panics
	vm, events := startServer(t, h)
	decline := newRequest(t, dhcpv4.MessageTypeDecline, withAddrOpt(optRequestedIP, podAddr))
	if err := vm.WriteFrame(requestFrame(vmMAC, zero, bcastAddr, frame.PortDHCPv4Client, decline)); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, events); ev.Outcome != serve.Dropped || ev.Reason != serve.Panic {
		t.Errorf("event = %+v, want a drop for a panic", ev)
	}
	if err := vm.WriteFrame(requestFrame(vmMAC, zero, bcastAddr, frame.PortDHCPv4Client, newRequest(t, dhcpv4.MessageTypeDiscover))); err != nil {
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

// TestUDPRoute: the UDP transport never sends where a request chose: every
// reply is broadcast on the bridge, and a relayed request gets none.
func TestUDPRoute(t *testing.T) {
	t.Parallel()
	handle := newTestHandler(t, kubeOVNConfig()).serveWith(udpRoute)
	tests := []struct {
		name string
		req  *dhcpv4.DHCPv4
		want string // destination, "" for none
	}{
		{"DISCOVER: broadcast", newRequest(t, dhcpv4.MessageTypeDiscover), "255.255.255.255:68"},
		{"RENEWING: broadcast, not to ciaddr", newRequest(t, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(podAddr.AsSlice())), "255.255.255.255:68"},
		{"INFORM from a chosen ciaddr: broadcast", newRequest(t, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(otherAddr.AsSlice())), "255.255.255.255:68"},
		{"relayed: nothing, not to giaddr", newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithGatewayIP(relayAddr.AsSlice())), ""},
		{"NAK: broadcast", newRequest(t, dhcpv4.MessageTypeRequest, withAddrOpt(optRequestedIP, otherAddr)), "255.255.255.255:68"},
		{"another chaddr: nothing", newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithHwAddr(otherMAC.HardwareAddr())), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := handle(serve.Packet{Data: tt.req.ToBytes()})
			got := ""
			if r.Data != nil {
				got = r.To.String()
				if _, err := dhcpv4.FromBytes(r.Data); err != nil {
					t.Errorf("reply does not parse: %v", err)
				}
			}
			if got != tt.want {
				t.Errorf("destination = %q, want %q", got, tt.want)
			}
		})
	}
}

// testXID is the transaction ID of newRequest's requests as a number, as
// the server's events carry it.
const testXID = 0xdeadbeef

// BenchmarkPacketServerDORA is the whole frame path of one DORA (two
// requests) through a running packet server, rate limit off, with an
// observer: read the frame, parse, filter, answer, write the reply frame.
func BenchmarkPacketServerDORA(b *testing.B) {
	h := newTestHandler(b, kubeOVNConfig())
	discover := requestFrame(vmMAC, zero, bcastAddr, frame.PortDHCPv4Client, newRequest(b, dhcpv4.MessageTypeDiscover))
	request := requestFrame(vmMAC, zero, bcastAddr, frame.PortDHCPv4Client, newRequest(b, dhcpv4.MessageTypeRequest,
		withAddrOpt(optServerID, serverID), withAddrOpt(optRequestedIP, podAddr)))
	conn := &frametest.Loop{Frames: [][]byte{discover, request}, N: 2 * b.N}
	s := NewPacketServer(h, conn, discardLogger())
	s.Limit = serve.Limit{}
	replied := 0
	s.Observer = func(e serve.Event) {
		if e.Outcome == serve.Replied {
			replied++
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	if err := s.Run(context.Background()); !errors.Is(err, net.ErrClosed) {
		b.Fatalf("Run: %v", err)
	}
	if replied != 2*b.N || conn.Written != 2*b.N {
		b.Fatalf("%d replies, %d frames written for %d DORAs", replied, conn.Written, b.N)
	}
}
