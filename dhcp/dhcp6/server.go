package dhcp6

import (
	"log/slog"

	"github.com/insomniacslk/dhcp/dhcpv6"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
)

// DefaultLimit bounds the replies a guest flooding requests gets. A guest's
// DHCPv6 client sends a few messages a minute (RFC 8415 §15: seconds
// between retransmissions), so it never delays one; a token every 5 ms
// answers the guest's next request within 10 ms after a flood. What a
// flood costs the server is bounded by its nap (serve.Server.Nap); load
// tests turn the limit off (dsbridge serve --rate-limit=false).
var DefaultLimit = serve.Limit{Rate: 200, Burst: 20}

// serverName names the server in logs.
const serverName = "DHCPv6"

// newServer serves h over t: a request the transport did not prove to be
// the VM's must name the VM itself (vmFilter).
func newServer(h *Handler, t serve.Transport, log *slog.Logger) *serve.Server {
	return serve.New(serverName, t, h.serveFunc(), DefaultLimit, log)
}

// serveFunc is the HandleFunc of both transports. It answers on a Session
// of its own: one server, one goroutine.
func (h *Handler) serveFunc() serve.HandleFunc {
	s := h.NewSession()
	return func(p serve.Packet) (serve.Reply, serve.Event) { return s.serve(p) }
}

// serve answers one packet.
func (s *Session) serve(p serve.Packet) (serve.Reply, serve.Event) {
	req := &s.req
	if err := req.parse(p.Data); err != nil {
		return serve.Reply{}, serve.Drop(serve.Malformed, err.Error())
	}
	ev := serve.Event{Request: dhcpv6.MessageType(req.typ).String(), XID: req.xid(), Peer: p.Src.Addr()}
	if req.ok {
		ev.Stale = s.h.stale(&req.msg)
	}
	if !p.FromVM {
		if ok, why := (vmFilter{mac: s.h.cfg.VMMAC}).fromVM(p.Src.Addr(), req); !ok {
			ev.Outcome, ev.Reason, ev.Detail = serve.Dropped, serve.NotVM, why
			return serve.Reply{}, ev
		}
	}
	reply := s.respond()
	if reply == nil {
		ev.Reason, ev.Detail = s.h.unanswered(req)
		ev.Outcome = serve.Unanswered
		if ev.Reason != "" {
			ev.Outcome = serve.Dropped
		}
		return serve.Reply{}, ev
	}
	ev.Outcome, ev.Reply = serve.Replied, dhcpv6.MessageType(innerType(reply)).String()
	return serve.Reply{Data: reply, To: p.Src}, ev
}

// unanswered says why req, which was not answered, gets no reply: a drop
// Reason for a message that is not ours to answer, or "" (no reply due,
// RFC 8415) with the detail.
func (h *Handler) unanswered(req *request) (serve.Reason, string) {
	switch {
	case !req.ok && req.relayed:
		return serve.Malformed, "malformed or too deep relay message"
	case !req.ok:
		return serve.NotRequest, "not a client message"
	case req.msg.typ == typeConfirm && h.invalid(&req.msg) == "":
		return "", "Confirm without addresses (RFC 8415 §18.3.3)"
	}
	switch why := h.invalid(&req.msg); why {
	case "":
		return "", "no reply due"
	case whyOtherServer:
		return serve.OtherServer, why
	case whyNotClient:
		return serve.NotRequest, why
	default:
		return serve.Malformed, why
	}
}

// Destinations a client's request may have (RFC 8415 §7.1).
var (
	allRelaysAndServers = frame.AllDHCPRelaysAndServers
	allServers          = frame.AllDHCPServers
)
