package dhcp6

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv6"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/e2e/lab"
)

var allDHCP = netip.MustParseAddr("ff02::1:2")

// udpFrame is a frame the VM (or, with another MAC, someone else) sends.
func udpFrame(src net.HardwareAddr, srcIP, dstIP netip.Addr, sport, dport uint16, payload []byte) []byte {
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
	return udpFrame(vmMAC, vmLLA, allDHCP, clientPort, serverPort,
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
	events chan Event
}

// startPacketServer runs a packet Server on one end of a pipe; the test
// plays the VM on the other. Cleanup cancels it and checks Run returns nil.
func startPacketServer(t *testing.T, wrap func(frame.Conn) frame.Conn, edit func(*Server)) *harness {
	t.Helper()
	srvEnd, vmEnd := frame.Pipe()
	var conn frame.Conn = srvEnd
	if wrap != nil {
		conn = wrap(srvEnd)
	}
	s := NewPacketServer(newTestHandler(t), conn, discard())
	hs := &harness{vm: vmEnd, events: make(chan Event, 64)}
	s.Observer = func(e Event) { hs.events <- basic(e) }
	if edit != nil {
		edit(s)
	}
	lab.RunUntilCleanup(t, s.Run)
	return hs
}

func (hs *harness) event(t *testing.T) Event {
	t.Helper()
	select {
	case e := <-hs.events:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event from the server")
	}
	return Event{}
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
	m, err := dhcpv6.FromBytes(u.Payload)
	if err != nil {
		t.Fatalf("reply payload does not parse: %v", err)
	}
	return &frameSummary{u.Eth.Src.String(), u.Eth.Dst.String(), u.Src.String(), u.Dst.String(), u.SrcPort, u.DstPort, innerType(m)}
}

func TestPacketServer(t *testing.T) {
	garbage := []byte{0xde, 0xad}
	relay := reparse(t, relayForward(t, 0, msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid)))).ToBytes()
	corrupt := solicitFrame(t)
	corrupt[len(corrupt)-1] ^= 0xff
	toVM := func(typ dhcpv6.MessageType, dstPort uint16) *frameSummary {
		return &frameSummary{serviceMAC.String(), vmMAC.String(), serverLLA.String(), vmLLA.String(), serverPort, dstPort, typ}
	}
	tests := []struct {
		name      string
		in        []byte
		wantEvent Event
		wantReply *frameSummary
	}{
		{"Solicit from the VM: Advertise from the service MAC and link-local", solicitFrame(t),
			Event{Outcome: OutcomeReplied, Type: dhcpv6.MessageTypeSolicit, Reply: dhcpv6.MessageTypeAdvertise},
			toVM(dhcpv6.MessageTypeAdvertise, clientPort)},
		{"Request unicast to our link-local: Reply",
			udpFrame(vmMAC, vmLLA, serverLLA, clientPort, serverPort,
				msg(t, dhcpv6.MessageTypeRequest, cid(), sid(), ia(iaid)).ToBytes()),
			Event{Outcome: OutcomeReplied, Type: dhcpv6.MessageTypeRequest, Reply: dhcpv6.MessageTypeReply}, toVM(dhcpv6.MessageTypeReply, clientPort)},
		{"Relay-forward from port 547: Relay-reply to port 547",
			udpFrame(vmMAC, vmLLA, allDHCP, serverPort, serverPort, relay),
			Event{Outcome: OutcomeReplied, Type: dhcpv6.MessageTypeSolicit, Reply: dhcpv6.MessageTypeAdvertise}, toVM(dhcpv6.MessageTypeAdvertise, serverPort)},
		{"Solicit from another MAC: not answered",
			udpFrame(otherMAC, vmLLA, allDHCP, clientPort, serverPort, msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid)).ToBytes()),
			Event{Outcome: OutcomeNotVM}, nil},
		{"to port 546: ignored",
			udpFrame(vmMAC, vmLLA, allDHCP, clientPort, clientPort, msg(t, dhcpv6.MessageTypeSolicit, cid()).ToBytes()),
			Event{Outcome: OutcomeMalformed}, nil},
		{"to another host: ignored",
			udpFrame(vmMAC, vmLLA, netip.MustParseAddr("fe80::1"), clientPort, serverPort, msg(t, dhcpv6.MessageTypeSolicit, cid()).ToBytes()),
			Event{Outcome: OutcomeMalformed}, nil},
		{"from the unspecified address: ignored",
			udpFrame(vmMAC, netip.IPv6Unspecified(), allDHCP, clientPort, serverPort, msg(t, dhcpv6.MessageTypeSolicit, cid()).ToBytes()),
			Event{Outcome: OutcomeMalformed}, nil},
		{"bad UDP checksum: ignored", corrupt, Event{Outcome: OutcomeMalformed}, nil},
		{"not IPv6: ignored", append(append([]byte(nil), vmMAC...), 1, 2, 3), Event{Outcome: OutcomeMalformed}, nil},
		{"not DHCPv6: ignored", udpFrame(vmMAC, vmLLA, allDHCP, clientPort, serverPort, garbage), Event{Outcome: OutcomeMalformed}, nil},
		{"Confirm without addresses: unanswered",
			udpFrame(vmMAC, vmLLA, allDHCP, clientPort, serverPort, msg(t, dhcpv6.MessageTypeConfirm, cid(), ia(iaid)).ToBytes()),
			Event{Outcome: OutcomeUnanswered, Type: dhcpv6.MessageTypeConfirm}, nil},
	}
	hs := startPacketServer(t, nil, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := hs.vm.WriteFrame(tt.in); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantEvent, hs.event(t)); diff != "" {
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
	var got []Outcome
	for range 2 {
		hs.vm.WriteFrame(solicitFrame(t))
		got = append(got, hs.event(t).Outcome)
	}
	if diff := cmp.Diff([]Outcome{OutcomePanic, OutcomeReplied}, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

func TestPacketServerRateLimit(t *testing.T) {
	hs := startPacketServer(t, nil, func(s *Server) {
		s.Rate, s.Burst = 1, 2
		s.now = func() time.Time { return time.Unix(1000, 0) }
	})
	var got []Outcome
	for range 3 {
		hs.vm.WriteFrame(solicitFrame(t))
		got = append(got, hs.event(t).Outcome)
	}
	if diff := cmp.Diff([]Outcome{OutcomeReplied, OutcomeReplied, OutcomeRateLimited}, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

func TestPacketServerRunErrors(t *testing.T) {
	t.Run("closed conn", func(t *testing.T) {
		srvEnd, _ := frame.Pipe()
		s := NewPacketServer(newTestHandler(t), srvEnd, discard())
		srvEnd.Close()
		err := s.Run(context.Background())
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Run = %v, want net.ErrClosed", err)
		}
	})
	t.Run("no service MAC", func(t *testing.T) {
		cfg := testConfig()
		cfg.ServiceMAC = nil
		h, err := NewHandler(cfg, discard())
		if err != nil {
			t.Fatal(err)
		}
		srvEnd, _ := frame.Pipe()
		err = NewPacketServer(h, srvEnd, discard()).Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "service MAC") {
			t.Errorf("Run = %v, want an error naming the service MAC", err)
		}
	})
}

// basic is the part of an event the table tests pin; XID, Reason and
// Latency are checked by TestEventDetails.
func basic(e Event) Event { return Event{Outcome: e.Outcome, Type: e.Type, Reply: e.Reply} }
