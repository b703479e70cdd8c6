package dhcp6

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/insomniacslk/dhcp/dhcpv6"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
	"github.com/dsbridge/dsbridge/e2e/lab"
)

var allDHCP = netip.MustParseAddr("ff02::1:2")

// udpFrame is a frame the VM (or, with another MAC, someone else) sends.
func udpFrame(src frame.MAC, srcIP, dstIP netip.Addr, sport, dport uint16, payload []byte) []byte {
	dstMAC := serviceMAC
	if dstIP.IsMulticast() {
		dstMAC = frame.MulticastMAC(dstIP)
	}
	return frame.AppendUDP6(nil, frame.UDP6{
		Eth: frame.Ethernet{Dst: dstMAC, Src: src},
		Src: srcIP, Dst: dstIP, SrcPort: sport, DstPort: dport, Payload: payload,
	})
}

func solicitFrame(t testing.TB) []byte {
	return udpFrame(vmMAC, vmLLA, allDHCP, frame.PortDHCPv6Client, frame.PortDHCPv6Server,
		msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid)).ToBytes())
}

// flakyConn is a Conn whose WriteFrame panics while panics > 0.
type flakyConn struct {
	frame.Conn
	mu     sync.Mutex
	panics int
}

func (f *flakyConn) WriteFrame(b []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panics > 0 {
		f.panics--
		panic("injected")
	}
	return f.Conn.WriteFrame(b)
}

type harness struct {
	vm     *frame.PipeConn
	events chan serve.Event
}

// startPacketServer runs a packet Server on one end of a pipe; the test
// plays the VM on the other. Cleanup cancels it and checks Run returns nil.
func startPacketServer(t *testing.T, wrap func(frame.Conn) frame.Conn, edit func(*serve.Server)) *harness {
	t.Helper()
	srvEnd, vmEnd := frame.Pipe()
	var conn frame.Conn = srvEnd
	if wrap != nil {
		conn = wrap(srvEnd)
	}
	s := NewPacketServer(newTestHandler(t), conn, discard())
	hs := &harness{vm: vmEnd, events: make(chan serve.Event, 64)}
	s.Observer = func(e serve.Event) { hs.events <- basic(e) }
	if edit != nil {
		edit(s)
	}
	lab.RunUntilCleanup(t, s.Run)
	return hs
}

func (hs *harness) event(t *testing.T) serve.Event {
	t.Helper()
	select {
	case e := <-hs.events:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event from the server")
	}
	return serve.Event{}
}

// replyFrame reads the reply, or returns false when none is queued.
func (hs *harness) replyFrame(t *testing.T) (frame.UDP6, bool) {
	t.Helper()
	buf := make([]byte, 2048)
	hs.vm.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := hs.vm.ReadFrame(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return frame.UDP6{}, false
	}
	if err != nil {
		t.Fatalf("ReadFrame: %v", err)
	}
	u, err := frame.ParseUDP6(buf[:n])
	if err != nil {
		t.Fatalf("reply is not a valid UDP frame: %v", err)
	}
	return u, true
}

type frameSummary struct {
	EthSrc, EthDst   string
	Src, Dst         string
	SrcPort, DstPort uint16
	Type             dhcpv6.MessageType
}

func summarizeFrame(t *testing.T, u frame.UDP6) *frameSummary {
	t.Helper()
	if _, err := dhcpv6.FromBytes(u.Payload); err != nil {
		t.Fatalf("reply payload does not parse: %v", err)
	}
	return &frameSummary{u.Eth.Src.String(), u.Eth.Dst.String(), u.Src.String(), u.Dst.String(), u.SrcPort, u.DstPort, dhcpv6.MessageType(innerType(u.Payload))}
}

func TestPacketServer(t *testing.T) {
	garbage := []byte{0xde, 0xad}
	relay := reparse(t, relayForward(t, 0, msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid)))).ToBytes()
	corrupt := solicitFrame(t)
	corrupt[len(corrupt)-1] ^= 0xff
	toVM := func(typ dhcpv6.MessageType, dstPort uint16) *frameSummary {
		return &frameSummary{serviceMAC.String(), vmMAC.String(), serverLLA.String(), vmLLA.String(), frame.PortDHCPv6Server, dstPort, typ}
	}
	tests := []struct {
		name      string
		in        []byte
		wantEvent serve.Event
		wantReply *frameSummary
	}{
		{"Solicit from the VM: Advertise from the service MAC and link-local", solicitFrame(t),
			serve.Event{Outcome: serve.Replied, Request: "SOLICIT", Reply: "ADVERTISE"},
			toVM(dhcpv6.MessageTypeAdvertise, frame.PortDHCPv6Client)},
		{"Request unicast to our link-local: Reply",
			udpFrame(vmMAC, vmLLA, serverLLA, frame.PortDHCPv6Client, frame.PortDHCPv6Server,
				msg(t, dhcpv6.MessageTypeRequest, cid(), sid(), ia(iaid)).ToBytes()),
			serve.Event{Outcome: serve.Replied, Request: "REQUEST", Reply: "REPLY"}, toVM(dhcpv6.MessageTypeReply, frame.PortDHCPv6Client)},
		{"Relay-forward from port 547: Relay-reply to port 547",
			udpFrame(vmMAC, vmLLA, allDHCP, frame.PortDHCPv6Server, frame.PortDHCPv6Server, relay),
			serve.Event{Outcome: serve.Replied, Request: "SOLICIT", Reply: "ADVERTISE"}, toVM(dhcpv6.MessageTypeAdvertise, frame.PortDHCPv6Server)},
		{"Solicit from another MAC: not answered",
			udpFrame(otherMAC, vmLLA, allDHCP, frame.PortDHCPv6Client, frame.PortDHCPv6Server, msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid)).ToBytes()),
			serve.Event{Outcome: serve.Dropped, Reason: serve.NotVM}, nil},
		{"to port 546: ignored",
			udpFrame(vmMAC, vmLLA, allDHCP, frame.PortDHCPv6Client, frame.PortDHCPv6Client, msg(t, dhcpv6.MessageTypeSolicit, cid()).ToBytes()),
			serve.Event{Outcome: serve.Dropped, Reason: serve.NotForServer}, nil},
		{"to another host: ignored",
			udpFrame(vmMAC, vmLLA, netip.MustParseAddr("fe80::1"), frame.PortDHCPv6Client, frame.PortDHCPv6Server, msg(t, dhcpv6.MessageTypeSolicit, cid()).ToBytes()),
			serve.Event{Outcome: serve.Dropped, Reason: serve.NotForServer}, nil},
		{"from the unspecified address: ignored",
			udpFrame(vmMAC, netip.IPv6Unspecified(), allDHCP, frame.PortDHCPv6Client, frame.PortDHCPv6Server, msg(t, dhcpv6.MessageTypeSolicit, cid()).ToBytes()),
			serve.Event{Outcome: serve.Dropped, Reason: serve.Malformed}, nil},
		{"bad UDP checksum: ignored", corrupt, serve.Event{Outcome: serve.Dropped, Reason: serve.Malformed}, nil},
		{"not IPv6: ignored", append(append([]byte(nil), vmMAC[:]...), 1, 2, 3), serve.Event{Outcome: serve.Dropped, Reason: serve.Malformed}, nil},
		{"not DHCPv6: ignored", udpFrame(vmMAC, vmLLA, allDHCP, frame.PortDHCPv6Client, frame.PortDHCPv6Server, garbage), serve.Event{Outcome: serve.Dropped, Reason: serve.Malformed}, nil},
		{"Confirm without addresses: unanswered",
			udpFrame(vmMAC, vmLLA, allDHCP, frame.PortDHCPv6Client, frame.PortDHCPv6Server, msg(t, dhcpv6.MessageTypeConfirm, cid(), ia(iaid)).ToBytes()),
			serve.Event{Outcome: serve.Unanswered, Request: "CONFIRM"}, nil},
	}
	hs := startPacketServer(t, nil, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := hs.vm.WriteFrame(tt.in); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantEvent, hs.event(t), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
			var got *frameSummary
			if u, ok := hs.replyFrame(t); ok {
				got = summarizeFrame(t, u)
			}
			if diff := cmp.Diff(tt.wantReply, got); diff != "" {
				t.Errorf("reply frame (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPacketServerRecoversPanic(t *testing.T) {
	hs := startPacketServer(t, func(c frame.Conn) frame.Conn { return &flakyConn{Conn: c, panics: 1} }, nil)
	var got []serve.Outcome
	for range 2 {
		hs.vm.WriteFrame(solicitFrame(t))
		got = append(got, hs.event(t).Outcome)
	}
	if diff := cmp.Diff([]serve.Outcome{serve.Dropped, serve.Replied}, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

func TestPacketServerClosed(t *testing.T) {
	srvEnd, _ := frame.Pipe()
	s := NewPacketServer(newTestHandler(t), srvEnd, discard())
	srvEnd.Close()
	if err := s.Run(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Run = %v, want net.ErrClosed", err)
	}
}

// TestUDPTransportRefuses: over UDP, the kernel resolves and routes the
// destination, so only a client on the link (link-local source, port 546)
// is answered.
func TestUDPTransportRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  netip.AddrPort
		want serve.Reason
	}{
		{"link-local client", netip.AddrPortFrom(vmLLA, frame.PortDHCPv6Client), ""},
		{"global source", netip.MustParseAddrPort("[fd00:10:16::99]:546"), serve.NotForServer},
		{"relay agent port", netip.AddrPortFrom(vmLLA, frame.PortDHCPv6Server), serve.NotForServer},
		{"another port", netip.AddrPortFrom(vmLLA, 5000), serve.NotForServer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := udpVerdict(tt.src); got != tt.want {
				t.Errorf("verdict for %v = %q, want %q", tt.src, got, tt.want)
			}
		})
	}
}

// TestRandomSourcesCapped: the limit bounds the whole server, whatever the
// source of each request: 500 Solicits from 500 addresses in one instant
// get exactly one burst of replies (with the old per-source buckets, which
// reset at 64 sources, every one was answered).
func TestRandomSourcesCapped(t *testing.T) {
	hs := startPacketServer(t, nil, func(s *serve.Server) {
		s.Now = func() time.Time { return time.Unix(1000, 0) } // no refill
	})
	replied, limited := 0, 0
	for i := range 500 {
		src := netip.AddrFrom16([16]byte{0xfe, 0x80, 14: byte(i >> 8), 15: byte(i)})
		if err := hs.vm.WriteFrame(udpFrame(vmMAC, src, allDHCP, frame.PortDHCPv6Client, frame.PortDHCPv6Server,
			msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid)).ToBytes())); err != nil {
			t.Fatal(err)
		}
		switch ev := hs.event(t); {
		case ev.Outcome == serve.Replied:
			replied++
			hs.replyFrame(t)
		case ev.Reason == serve.RateLimited:
			limited++
		default:
			t.Fatalf("unexpected event %+v", ev)
		}
	}
	if replied != DefaultLimit.Burst || limited != 500-DefaultLimit.Burst {
		t.Errorf("replied %d, limited %d; want one burst of %d", replied, limited, DefaultLimit.Burst)
	}
}
