package dhcp6

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv6"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/internal/frametest"
	"github.com/dsbridge/dsbridge/dhcp/serve"
)

// seedMessages are client messages as real clients send them.
func seedMessages(t testing.TB) [][]byte {
	var out [][]byte
	for _, m := range []dhcpv6.DHCPv6{
		msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid), dhcpv6.OptRequestedOption(23, 24),
			dhcpv6.OptElapsedTime(0), fqdnOpt(fqdnS, "vm1")),
		msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid), &dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit},
			&dhcpv6.OptIAPD{IaId: iaid}),
		msg(t, dhcpv6.MessageTypeRequest, cid(), sid(), ia(iaid, podAddr)),
		msg(t, dhcpv6.MessageTypeRenew, cid(), sid(), ia(iaid, wrongAddr), ia(secondID)),
		msg(t, dhcpv6.MessageTypeRebind, cid(), ia(iaid, podAddr)),
		msg(t, dhcpv6.MessageTypeConfirm, cid(), ia(iaid, podAddr)),
		msg(t, dhcpv6.MessageTypeRelease, cid(), sid(), ia(iaid, podAddr)),
		msg(t, dhcpv6.MessageTypeDecline, cid(), sid(), ia(iaid, podAddr)),
		msg(t, dhcpv6.MessageTypeInformationRequest, dhcpv6.OptRequestedOption(23, 24)),
		relayForward(t, 0, msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid)), dhcpv6.OptInterfaceID([]byte("eth0"))),
		relayForward(t, 1, relayForward(t, 0, msg(t, dhcpv6.MessageTypeRenew, cid(), sid(), ia(iaid)))),
	} {
		out = append(out, m.ToBytes())
	}
	return out
}

// FuzzHandle: no input panics the handler, and every reply parses, carries
// our server ID and echoes the client's ID.
func FuzzHandle(f *testing.F) {
	for _, b := range seedMessages(f) {
		f.Add(b)
	}
	h := newTestHandler(f)
	sidBytes := serverDUID.ToBytes()
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := dhcpv6.FromBytes(b)
		if err != nil {
			return
		}
		reply := h.Handle(in)
		if reply == nil {
			return
		}
		back, err := dhcpv6.FromBytes(reply.ToBytes())
		if err != nil {
			t.Fatalf("reply does not parse: %v\nreply: %v", err, reply)
		}
		inner, err := back.GetInnerMessage()
		if err != nil {
			t.Fatalf("reply holds no message: %v", err)
		}
		if got := optionBytes(inner, dhcpv6.OptionServerID); !bytes.Equal(got, sidBytes) {
			t.Errorf("reply server ID = %x, want %x", got, sidBytes)
		}
		req, err := in.GetInnerMessage()
		if err != nil {
			t.Fatalf("answered a message without one inside: %v", err)
		}
		if want, got := optionBytes(req, dhcpv6.OptionClientID), optionBytes(inner, dhcpv6.OptionClientID); !bytes.Equal(want, got) {
			t.Errorf("reply client ID = %x, want %x", got, want)
		}
	})
}

// recordConn is a frame.Conn that records what is written.
type recordConn struct {
	frame.Conn
	written [][]byte
}

func (r *recordConn) WriteFrame(b []byte) error {
	r.written = append(r.written, append([]byte(nil), b...))
	return nil
}

// FuzzPacketReceive drives the frame-level receive path: any frame is
// either ignored or answered with one valid UDP frame to the VM.
func FuzzPacketReceive(f *testing.F) {
	for _, b := range seedMessages(f) {
		f.Add(udpFrame(vmMAC, vmLLA, allDHCP, frame.PortDHCPv6Client, frame.PortDHCPv6Server, b))
	}
	f.Add(udpFrame(otherMAC, vmLLA, allDHCP, frame.PortDHCPv6Client, frame.PortDHCPv6Server, seedMessages(f)[0]))
	h := newTestHandler(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, w := serveFrame(t, h, b)
		if (w != nil) != (ev.Outcome == serve.Replied) {
			t.Fatalf("outcome %v with reply %v", ev.Outcome, w != nil)
		}
		if w != nil {
			u, err := frame.ParseUDP6(w)
			if err != nil {
				t.Fatalf("reply frame does not parse: %v", err)
			}
			if u.Eth.Dst != vmMAC || u.Src != serverLLA || u.SrcPort != frame.PortDHCPv6Server {
				t.Fatalf("reply frame %s:%d -> %s (%s) is not from us to the VM", u.Src, u.SrcPort, u.Dst, u.Eth.Dst)
			}
			if _, err := dhcpv6.FromBytes(u.Payload); err != nil {
				t.Fatalf("reply payload does not parse: %v", err)
			}
		}
	})
}

func benchAnswer(b *testing.B, reqs ...dhcpv6.DHCPv6) {
	s := newTestHandler(b).NewSession()
	var wire [][]byte
	for _, r := range reqs {
		wire = append(wire, r.ToBytes())
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, in := range wire {
			if out, err := s.Answer(in); err != nil || out == nil {
				b.Fatalf("no reply: %v", err)
			}
		}
	}
}

// dhclientSolicit is a Solicit as dhclient sends it.
func dhclientSolicit(b *testing.B) dhcpv6.DHCPv6 {
	return msg(b, dhcpv6.MessageTypeSolicit, cid(), ia(iaid), dhcpv6.OptRequestedOption(23, 24), dhcpv6.OptElapsedTime(0))
}

// dhclientRequest is the Request that follows it.
func dhclientRequest(b *testing.B) dhcpv6.DHCPv6 {
	return msg(b, dhcpv6.MessageTypeRequest, cid(), sid(), ia(iaid, podAddr), dhcpv6.OptRequestedOption(23, 24),
		dhcpv6.OptElapsedTime(0))
}

// BenchmarkHandleSolicit is parse, handle and encode of a dhclient-like
// Solicit, bytes in to bytes out (the wire path a server uses).
func BenchmarkHandleSolicit(b *testing.B) { benchAnswer(b, dhclientSolicit(b)) }

// BenchmarkHandleRequest is the same for a Request.
func BenchmarkHandleRequest(b *testing.B) { benchAnswer(b, dhclientRequest(b)) }

// BenchmarkSARR is a whole exchange through the handler: Solicit ->
// Advertise, Request -> Reply.
func BenchmarkSARR(b *testing.B) { benchAnswer(b, dhclientSolicit(b), dhclientRequest(b)) }

// BenchmarkPacketServerSARR is the whole frame path of one SARR (two
// requests) through a running packet server, rate limit off, with an
// observer: read the frame, parse, filter, answer, write the reply frame.
func BenchmarkPacketServerSARR(b *testing.B) {
	h := newTestHandler(b)
	frames := [][]byte{
		udpFrame(vmMAC, vmLLA, allDHCP, frame.PortDHCPv6Client, frame.PortDHCPv6Server, dhclientSolicit(b).ToBytes()),
		udpFrame(vmMAC, vmLLA, allDHCP, frame.PortDHCPv6Client, frame.PortDHCPv6Server, dhclientRequest(b).ToBytes()),
	}
	conn := &frametest.Loop{Frames: frames, N: 2 * b.N}
	s := NewPacketServer(h, conn, discard())
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
		b.Fatalf("%d replies, %d frames written for %d SARRs", replied, conn.Written, b.N)
	}
}
