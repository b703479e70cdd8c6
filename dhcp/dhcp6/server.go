package dhcp6

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/internal/loudlog"
	"github.com/insomniacslk/dhcp/dhcpv6"
)

// UDP ports (RFC 8415 §7.2).
const (
	clientPort = 546
	serverPort = 547
)

// maxPacket is the receive buffer: any frame or datagram fits.
const maxPacket = 1 << 16

// Outcome is what became of one received packet.
type Outcome int

// Outcomes.
const (
	OutcomeReplied     Outcome = iota + 1 // a reply was sent
	OutcomeUnanswered                     // valid DHCPv6 the RFC says not to answer
	OutcomeNotVM                          // not from the VM, or not provably
	OutcomeRateLimited                    // over the per-client rate limit
	OutcomeMalformed                      // not a parsable DHCPv6 request
	OutcomePanic                          // handling panicked (recovered)
	OutcomeSendFailed                     // the reply could not be sent
)

func (o Outcome) String() string {
	switch o {
	case OutcomeReplied:
		return "replied"
	case OutcomeUnanswered:
		return "unanswered"
	case OutcomeNotVM:
		return "not-vm"
	case OutcomeRateLimited:
		return "rate-limited"
	case OutcomeMalformed:
		return "malformed"
	case OutcomePanic:
		return "panic"
	case OutcomeSendFailed:
		return "send-failed"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Event describes one received packet, for metrics.
type Event struct {
	Outcome Outcome
	// Type is the client's message type (inside relays); 0 if unparsed.
	Type dhcpv6.MessageType
	// Reply is the type of the reply sent (inside relays), or 0.
	Reply dhcpv6.MessageType
	// XID is the client message's transaction ID; 0 if unparsed.
	XID uint32
	// Reason says why a packet was not answered (any Outcome but
	// OutcomeReplied), for a person reading a trace.
	Reason string
	// Latency is the time from the end of the read to the end of the
	// write (or to the decision not to answer).
	Latency time.Duration
}

// request is one received packet.
type request struct {
	payload []byte     // the DHCPv6 message; aliases the receive buffer
	src     netip.Addr // IPv6 source
	srcPort uint16
	srcMAC  net.HardwareAddr // packet transport: the Ethernet source
	udpPeer *net.UDPAddr     // UDP transport: the source with its zone
	// vm is true when the transport proved the sender is the VM (its
	// Ethernet source); otherwise the DHCPv6 content must show it.
	vm bool
	// drop, when set, is why the transport already refused the packet.
	drop   Outcome
	reason string
}

// transport moves DHCPv6 payloads; it is used by one goroutine.
type transport interface {
	// check reports a configuration the transport cannot serve with.
	check() error
	receive(buf []byte) (request, error)
	send(req request, payload []byte) error
	setReadDeadline(t time.Time) error
	// close releases what the transport opened itself.
	close() error
}

// Server answers the VM's DHCPv6 requests with a Handler.
type Server struct {
	// Observer, when set before Run, is called with every received
	// packet's fate, on the serving goroutine.
	Observer func(Event)
	// Rate (packets per second) and Burst limit each client; set before
	// Run. Rate 0 disables the limit.
	Rate  float64
	Burst int

	h      *Handler
	log    *slog.Logger
	t      transport
	filter vmFilter
	now    func() time.Time
	panics *loudlog.Every
}

func newServer(h *Handler, t transport, log *slog.Logger) *Server {
	return &Server{
		Rate: DefaultRate, Burst: DefaultBurst,
		h: h, log: log, t: t,
		filter: vmFilter{mac: h.cfg.VMMAC},
		now:    time.Now,
		panics: &loudlog.Every{Interval: loudlog.Interval},
	}
}

// Run serves until ctx is cancelled, then returns nil; it returns an error
// when the transport is closed under it. It closes what the Server opened
// itself (the UDP socket), not a Conn it was given.
func (s *Server) Run(ctx context.Context) error {
	defer s.t.close()
	if err := s.t.check(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { s.t.setReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, maxPacket)
	lim := newLimiter(s.Rate, s.Burst)
	var failing bool
	for {
		req, err := s.t.receive(buf)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, net.ErrClosed):
			return fmt.Errorf("DHCPv6 server stopped: %w", err)
		case err != nil:
			s.logStreak(&failing, "failed to receive DHCPv6 packet", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		failing = false
		s.serve(req, lim)
	}
}

// logStreak logs the first error of a streak at warning level, the rest at
// debug level.
func (s *Server) logStreak(failing *bool, msg string, err error) {
	if *failing {
		s.log.Debug(msg, "error", err)
		return
	}
	*failing = true
	s.log.Warn(msg, "error", err)
}

// serve handles one request; a panic is recovered and logged.
func (s *Server) serve(req request, lim *limiter) {
	start := time.Now()
	ev := Event{}
	defer func() {
		if p := recover(); p != nil {
			s.logPanic(p, req.src)
			ev = Event{Outcome: OutcomePanic, Type: ev.Type, XID: ev.XID, Reason: fmt.Sprint(p)}
		}
		if s.Observer != nil {
			ev.Latency = time.Since(start)
			s.Observer(ev)
		}
	}()
	s.answer(req, lim, &ev)
}

// logPanic logs a recovered panic at error level at most once per
// loudlog.Interval: input that panics may come in a flood.
func (s *Server) logPanic(p any, src netip.Addr) {
	const msg = "recovered from panic handling DHCPv6 packet"
	if ok, held := s.panics.Allow(time.Now()); ok {
		s.log.Error(msg, "panic", p, "src", src, "alsoSinceLastLogged", held)
		return
	}
	s.log.Debug(msg, "panic", p, "src", src)
}

// answer runs one request through the filters and the handler, sends the
// reply and fills ev.
func (s *Server) answer(req request, lim *limiter, ev *Event) {
	drop := func(o Outcome, reason string) { ev.Outcome, ev.Reason = o, reason }
	if req.drop != 0 {
		s.log.Debug("ignoring packet", "src", req.src, "reason", req.reason)
		drop(req.drop, req.reason)
		return
	}
	if !lim.allow(req.src, s.now()) {
		s.log.Debug("rate limit exceeded", "src", req.src)
		drop(OutcomeRateLimited, "over the rate limit")
		return
	}
	msg, err := dhcpv6.FromBytes(req.payload)
	if err != nil {
		s.log.Debug("ignoring malformed DHCPv6 message", "src", req.src, "error", err)
		drop(OutcomeMalformed, err.Error())
		return
	}
	ev.Type, ev.XID = innerType(msg), innerXID(msg)
	if !req.vm {
		if ok, reason := s.filter.fromVM(req.src, msg); !ok {
			s.log.Debug("not answering DHCPv6 message", "src", req.src, "msg", ev.Type, "reason", reason)
			drop(OutcomeNotVM, reason)
			return
		}
	}
	reply := s.h.Handle(msg)
	if reply == nil {
		drop(OutcomeUnanswered, s.h.unanswered(msg))
		return
	}
	ev.Reply = innerType(reply)
	if err := s.t.send(req, reply.ToBytes()); err != nil {
		s.log.Debug("failed to send DHCPv6 reply", "dst", req.src, "error", err)
		drop(OutcomeSendFailed, err.Error())
		return
	}
	s.log.Debug("answered DHCPv6 message", "src", req.src, "msg", ev.Type, "reply", ev.Reply)
	ev.Outcome = OutcomeReplied
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
