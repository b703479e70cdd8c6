package dhcp4

import (
	"log/slog"
	"net/netip"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
)

// DefaultLimit bounds the replies a guest flooding requests gets. A DHCP
// client sends a handful of packets per exchange and waits seconds between
// retransmissions (RFC 2131 section 4.1), so it never delays one; and a
// token every 5 ms answers the guest's next request within 10 ms after a
// flood. What a flood costs the server is bounded by its nap
// (serve.Server.Nap), not by the rate.
var DefaultLimit = serve.Limit{Rate: 200, Burst: 20}

// serverName names the server in logs.
const serverName = "DHCPv4"

// route says where a reply to Dest goes over one transport, or why it
// cannot go there (refuse).
type route func(d Dest) (to netip.AddrPort, mac frame.MAC, refuse string)

// NewPacketServer serves h over conn, a link on which every frame comes from
// and goes to the VM alone (frame.Listen with the VM MAC as source filter and
// frame.KindDHCPv4). Replies are crafted Ethernet/IPv4/UDP frames from the
// config's service MAC and server identifier, addressed as RFC 2131 section
// 4.1 says: they can reach nothing but the VM. ARP requests for the server
// identifier are answered, so that a guest's unicast renewals reach it. The
// server owns conn.
func NewPacketServer(h *Handler, conn frame.Conn, log *slog.Logger) *serve.Server {
	t := &packetTransport{conn: conn, vmMAC: h.vmMAC, serviceMAC: h.serviceMAC, sid: h.sid,
		out: make([]byte, 0, frame.EthernetLen+frame.IPv4Len+frame.UDPLen+maxReplySize)}
	return serve.New(serverName, t, h.serveWith(packetRoute), DefaultLimit, log)
}

// packetRoute sends every reply where RFC 2131 section 4.1 says: the frame
// goes out of the VM's tap, so whatever address it carries, only the VM
// receives it.
func packetRoute(d Dest) (netip.AddrPort, frame.MAC, string) {
	return netip.AddrPortFrom(d.IP, d.Port), d.MAC, ""
}

// serveWith is the HandleFunc of a server whose transport reaches the VM
// as r says. It answers on a Session of its own: one server, one goroutine.
func (h *Handler) serveWith(r route) serve.HandleFunc {
	s := h.NewSession()
	return func(p serve.Packet) (serve.Reply, serve.Event) {
		if p.ARP != nil {
			return h.answerARP(*p.ARP)
		}
		out, dest, err := s.Answer(p.Data)
		if err != nil {
			return serve.Reply{}, serve.Drop(serve.Malformed, err.Error())
		}
		req := &s.req
		ev := serve.Event{Request: typeName(req.messageType()), XID: xidOf(req.xid()), Peer: p.Src.Addr(), Stale: dest.Stale}
		switch {
		case out == nil && dest.Drop != "":
			ev.Outcome, ev.Reason, ev.Detail = serve.Dropped, dest.Drop, dest.Detail
			return serve.Reply{}, ev
		case out == nil:
			ev.Outcome = serve.Unanswered
			return serve.Reply{}, ev
		}
		to, mac, refuse := r(dest)
		if refuse != "" {
			ev.Outcome, ev.Reason, ev.Detail = serve.Dropped, serve.NotForServer, refuse
			return serve.Reply{}, ev
		}
		ev.Outcome, ev.Reply = serve.Replied, typeName(s.r.typ)
		return serve.Reply{Data: out, To: to, MAC: mac}, ev
	}
}

// answerARP answers an ARP request for the server identifier with the
// service MAC (RFC 826).
func (h *Handler) answerARP(a frame.ARP) (serve.Reply, serve.Event) {
	ev := serve.Event{Request: "ARP", Peer: a.SenderIP}
	if a.SenderIP.Is4() && !a.SenderIP.IsUnspecified() && a.SenderIP != h.addr {
		ev.Stale = a.SenderIP // the guest still uses an address from another pod
	}
	if a.Op != frame.ARPRequest || a.TargetIP != h.sid {
		ev.Outcome, ev.Reason = serve.Dropped, serve.NotForServer
		return serve.Reply{}, ev
	}
	ev.Outcome, ev.Reply = serve.Replied, "ARP"
	return serve.Reply{ARP: &frame.ARP{Op: frame.ARPReply, SenderMAC: h.serviceMAC, SenderIP: h.sid,
		TargetMAC: a.SenderMAC, TargetIP: a.SenderIP}}, ev
}

// xidOf is a transaction ID as a number.
func xidOf(t [4]byte) uint32 {
	return uint32(t[0])<<24 | uint32(t[1])<<16 | uint32(t[2])<<8 | uint32(t[3])
}
