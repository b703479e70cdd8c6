package dhcp4

import (
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// seedRequests are realistic requests from the VM, one per client state.
func seedRequests(t testing.TB) []*dhcpv4.DHCPv4 {
	return []*dhcpv4.DHCPv4{
		newRequest(t, dhcpv4.MessageTypeDiscover),
		newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithBroadcast(true), withOpt(optClientID, append([]byte{1}, vmMAC...))),
		newRequest(t, dhcpv4.MessageTypeRequest, withAddrOpt(optServerID, serverID), withAddrOpt(optRequestedIP, podAddr)),
		newRequest(t, dhcpv4.MessageTypeRequest, withAddrOpt(optRequestedIP, otherAddr)),
		newRequest(t, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(podAddr.AsSlice())),
		newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithGatewayIP(relayAddr.AsSlice())),
		newRequest(t, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(podAddr.AsSlice())),
		newRequest(t, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(podAddr.AsSlice())),
		newRequest(t, dhcpv4.MessageTypeDecline, withAddrOpt(optRequestedIP, podAddr)),
	}
}

// FuzzHandle: bytes -> FromBytes -> Handle -> ToBytes never panics, and every
// reply parses and fits 548 bytes.
func FuzzHandle(f *testing.F) {
	for _, r := range seedRequests(f) {
		f.Add(r.ToBytes())
	}
	cfg := kubeOVNConfig()
	cfg.Extra = []Option{{Code: 66, Value: []byte("tftp.example")}, {Code: 250, Value: make([]byte, 200)}}
	h := newTestHandler(f, cfg)
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		r, d := h.Handle(req)
		if r == nil {
			if d.Kind != DestNone {
				t.Fatalf("no reply but destination %+v", d)
			}
			return
		}
		out := r.ToBytes()
		if len(out) > maxReplySize {
			t.Fatalf("reply of %d bytes, want <= %d", len(out), maxReplySize)
		}
		if _, err := dhcpv4.FromBytes(out); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if d.Kind == DestNone {
			t.Fatal("reply without a destination")
		}
	})
}

// FuzzServeFrame: any frame through the packet server's receive path never
// panics, and whatever it would send is a well-formed frame.
func FuzzServeFrame(f *testing.F) {
	for _, r := range seedRequests(f) {
		f.Add(requestFrame(vmMAC, zero, bcastAddr, ClientPort, r))
	}
	f.Add(requestFrame(vmMAC, relayAddr, serverID, ServerPort, newRequest(f, dhcpv4.MessageTypeDiscover, dhcpv4.WithGatewayIP(relayAddr.AsSlice()))))
	f.Add(arpRequest(vmMAC, podAddr, serverID))
	srv, vm := frame.Pipe()
	f.Cleanup(func() { srv.Close(); vm.Close() })
	s := NewPacketServer(newTestHandler(f, kubeOVNConfig()), srv, discardLogger())
	s.lim = newLimiter(RateLimit{}, vmMAC)
	f.Fuzz(func(t *testing.T, b []byte) {
		out, ev := s.handleFrame(b, time.Now())
		if out == nil {
			return
		}
		if ev.ARP {
			if _, _, err := frame.ParseARP(out); err != nil {
				t.Fatalf("ARP reply does not parse: %v", err)
			}
			return
		}
		p, err := frame.ParseUDP4(out)
		if err != nil {
			t.Fatalf("reply frame does not parse: %v", err)
		}
		if _, err := dhcpv4.FromBytes(p.Payload); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
	})
}
