package dhcp4

import (
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// seedRequests are realistic requests from the VM, one per client state.
func seedRequests(t testing.TB) []*dhcpv4.DHCPv4 {
	return []*dhcpv4.DHCPv4{
		newRequest(t, dhcpv4.MessageTypeDiscover),
		newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithBroadcast(true), withOpt(optClientID, append([]byte{1}, vmMAC[:]...))),
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

// FuzzServeFrame: any frame through the packet transport and the handler
// never panics, and whatever would be sent is a well-formed frame.
func FuzzServeFrame(f *testing.F) {
	for _, r := range seedRequests(f) {
		f.Add(requestFrame(vmMAC, zero, bcastAddr, frame.PortDHCPv4Client, r))
	}
	f.Add(requestFrame(vmMAC, relayAddr, serverID, frame.PortDHCPv4Server, newRequest(f, dhcpv4.MessageTypeDiscover, dhcpv4.WithGatewayIP(relayAddr.AsSlice()))))
	f.Add(arpRequest(vmMAC, podAddr, serverID))
	h := newTestHandler(f, kubeOVNConfig())
	rec := &recordConn{}
	t4 := &packetTransport{conn: rec, vmMAC: h.vmMAC, serviceMAC: h.serviceMAC, sid: h.sid}
	handle := h.serveWith(packetRoute)
	f.Fuzz(func(t *testing.T, b []byte) {
		p := t4.parse(b)
		if p.Drop != "" {
			return
		}
		r, _ := handle(p)
		if r.Data == nil && r.ARP == nil {
			return
		}
		rec.last = nil
		if err := t4.Send(p, r); err != nil {
			t.Fatal(err)
		}
		if r.ARP != nil {
			if _, _, err := frame.ParseARP(rec.last); err != nil {
				t.Fatalf("ARP reply does not parse: %v", err)
			}
			return
		}
		u, err := frame.ParseUDP4(rec.last)
		if err != nil {
			t.Fatalf("reply frame does not parse: %v", err)
		}
		if _, err := dhcpv4.FromBytes(u.Payload); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
	})
}

// recordConn is a frame.Conn that keeps the last frame written.
type recordConn struct{ last []byte }

func (c *recordConn) ReadFrame([]byte) (int, error)   { return 0, net.ErrClosed }
func (c *recordConn) WriteFrame(b []byte) error       { c.last = append(c.last[:0], b...); return nil }
func (c *recordConn) SetReadDeadline(time.Time) error { return nil }
func (c *recordConn) Close() error                    { return nil }
