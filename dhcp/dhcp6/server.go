package dhcp6

import (
	"log/slog"

	"github.com/insomniacslk/dhcp/dhcpv6"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
)

// DefaultLimit bounds what the server handles. A guest's DHCPv6 client
// sends a few messages a minute; the limit only stops a runaway guest from
// spinning the server, and stays above perfdhcp's 500 exchanges (1,000
// packets) per second.
var DefaultLimit = serve.Limit{Rate: 2000, Burst: 200}

// serverName names the server in logs.
const serverName = "DHCPv6"

// newServer serves h over t: a request the transport did not prove to be
// the VM's must name the VM itself (vmFilter).
func newServer(h *Handler, t serve.Transport, log *slog.Logger) *serve.Server {
	return serve.New(serverName, t, h.serve, DefaultLimit, log)
}

// serve is the HandleFunc of both transports.
func (h *Handler) serve(p serve.Packet) (serve.Reply, serve.Event) {
	msg, err := dhcpv6.FromBytes(p.Data)
	if err != nil {
		return serve.Reply{}, serve.Drop(serve.Malformed, err.Error())
	}
	ev := serve.Event{Request: innerType(msg).String(), XID: innerXID(msg), Peer: p.Src.Addr(), Stale: h.Stale(msg)}
	if !p.FromVM {
		if ok, why := (vmFilter{mac: h.cfg.VMMAC}).fromVM(p.Src.Addr(), msg); !ok {
			ev.Outcome, ev.Reason, ev.Detail = serve.Dropped, serve.NotVM, why
			return serve.Reply{}, ev
		}
	}
	reply := h.Handle(msg)
	if reply == nil {
		ev.Reason, ev.Detail = h.unanswered(msg)
		ev.Outcome = serve.Unanswered
		if ev.Reason != "" {
			ev.Outcome = serve.Dropped
		}
		return serve.Reply{}, ev
	}
	ev.Outcome, ev.Reply = serve.Replied, innerType(reply).String()
	return serve.Reply{Data: reply.ToBytes(), To: p.Src}, ev
}

// innerXID is the transaction ID of the client message inside any relay
// messages; 0 when there is none.
func innerXID(msg dhcpv6.DHCPv6) uint32 {
	if r, ok := msg.(*dhcpv6.RelayMessage); ok {
		_, inner := unwrapRelay(r)
		msg = inner
	}
	m, ok := msg.(*dhcpv6.Message)
	if !ok || m == nil {
		return 0
	}
	t := m.TransactionID
	return uint32(t[0])<<16 | uint32(t[1])<<8 | uint32(t[2])
}

// innerType is the type of the client message inside any relay messages.
func innerType(msg dhcpv6.DHCPv6) dhcpv6.MessageType {
	for range maxRelayDepth + 1 {
		r, ok := msg.(*dhcpv6.RelayMessage)
		if !ok || r == nil {
			break
		}
		inner := r.Options.RelayMessage()
		if inner == nil {
			return r.MessageType
		}
		msg = inner
	}
	if msg == nil {
		return 0
	}
	return msg.Type()
}

// Destinations a client's request may have (RFC 8415 §7.1).
var (
	allRelaysAndServers = frame.AllDHCPRelaysAndServers
	allServers          = frame.AllDHCPServers
)
