package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/internal/loudlog"
)

// Packet is one received packet as a transport hands it over.
type Packet struct {
	// Data is the protocol message (the UDP payload); it aliases the
	// receive buffer until the next Receive.
	Data []byte
	// Src is the IP source address and UDP port, Dst the IP destination.
	Src netip.AddrPort
	Dst netip.Addr
	// SrcMAC is the Ethernet source on a packet transport; zero over UDP.
	SrcMAC frame.MAC
	// FromVM is set when the transport proved that the VM sent the packet
	// (it arrived on the VM's own port); otherwise the handler must find
	// the VM in the message itself.
	FromVM bool
	// ARP is an ARP request (DHCPv4's packet transport) instead of Data.
	ARP *frame.ARP
	// Drop, when set, is why the transport already refused the packet;
	// Detail says more.
	Drop   Reason
	Detail string
}

// Reply is what to send for a Packet.
type Reply struct {
	// Data is the reply message; nil: nothing to send.
	Data []byte
	// To is the destination address and port.
	To netip.AddrPort
	// MAC is the Ethernet destination on a packet transport; zero: the
	// request's source MAC.
	MAC frame.MAC
	// ARP is an ARP reply (DHCPv4's packet transport) instead of Data.
	ARP *frame.ARP
}

// empty reports a Reply that sends nothing.
func (r Reply) empty() bool { return r.Data == nil && r.ARP == nil }

// Transport moves one protocol's packets between a Server and the VM. One
// goroutine uses it.
type Transport interface {
	// Receive reads one packet into buf. A packet the transport refuses
	// comes back with Drop set, so that it is still observed.
	Receive(buf []byte) (Packet, error)
	// Send sends r in answer to p.
	Send(p Packet, r Reply) error
	// SetReadDeadline sets the read deadline; one in the past interrupts a
	// blocked Receive.
	SetReadDeadline(t time.Time) error
	// Close releases the transport and its socket.
	Close() error
}

// ReadBufferSetter is a Transport, or a frame.Conn, whose receive buffer can
// be resized (SO_RCVBUF).
type ReadBufferSetter interface {
	SetReadBuffer(bytes int) error
}

// NapReadBuffer is the receive buffer of a rate-limited loop that naps
// (Server, and the RA advertiser's reader): the kernel doubles it (socket(7))
// to a few dozen small frames, so one nap's leftovers are read before the
// next (DefaultNapAfter) and a flood's excess is dropped by the kernel. A
// loop without a limit keeps the kernel's default, for bursts.
const NapReadBuffer = 16 << 10

// HandleFunc answers one packet: the reply (empty for none) and the Event
// to report. It is the protocol's pure logic; Server adds the latency and
// turns a failed send or a panic into a drop.
type HandleFunc func(Packet) (Reply, Event)

// bufSize holds any frame or datagram of a 9000-byte MTU link, and any
// UDP datagram the kernel hands over.
const bufSize = 1 << 16

// Defaults of Server.Nap and NapAfter: a nap well under a client's
// patience and the 10 ms a guest's next request may wait after a flood,
// far above the time a packet takes; and about the frames a packet
// socket's buffer queues (frame.Listen).
const (
	DefaultNap      = 5 * time.Millisecond
	DefaultNapAfter = 32
)

// readBackoff is the pause after a read error that may be transient (the
// link going down during a migration) before the next read.
const readBackoff = 100 * time.Millisecond

// Server runs one protocol's loop over one Transport: one packet at a time,
// with one receive buffer. It owns the Transport: Run closes it when it
// returns, and Close releases it when Run is never called.
type Server struct {
	// Observer, when set before Run, is called on Run's goroutine with
	// every received packet's Event.
	Observer func(Event)
	// Limit, when changed before Run, replaces the protocol's default.
	Limit Limit
	// Now is the clock; tests replace it before Run.
	Now func() time.Time
	// Nap is how long the loop stops reading once NapAfter packets in a
	// row were over the rate limit: a flood's packets queue meanwhile, to
	// be read in batches, or are dropped by the kernel when the socket's
	// buffer is full, where reading each as it comes would wake the server
	// for every one (the limit would drop them all the same; the bucket
	// refills during the nap). NapAfter is about what a socket's buffer
	// queues, so that a flood's leftovers are gone after one nap. Nap zero:
	// no nap.
	Nap      time.Duration
	NapAfter int

	name   string
	t      Transport
	handle HandleFunc
	log    *slog.Logger
	debug  bool // log at debug level: per-packet lines (their attributes cost allocations even when discarded)
	in     []byte
	panics loudlog.Every
	close  sync.Once

	readFailing, sendFailing bool // the last read/send failed: further failures at debug level
}

// New returns a server named name (for logs: "DHCPv4") that answers what
// t receives with handle. A nil log discards.
func New(name string, t Transport, handle HandleFunc, limit Limit, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{Limit: limit, Now: time.Now, Nap: DefaultNap, NapAfter: DefaultNapAfter, name: name, t: t, handle: handle, log: log,
		debug: log.Enabled(context.Background(), slog.LevelDebug),
		in:    make([]byte, bufSize), panics: loudlog.Every{Interval: loudlog.Interval}}
}

// Close releases the transport; Run does it itself when it returns.
func (s *Server) Close() error {
	err := net.ErrClosed
	s.close.Do(func() { err = s.t.Close() })
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Run serves until ctx is cancelled, then returns nil; it returns an error
// when the transport is closed under it. Either way the transport is
// closed when it returns.
func (s *Server) Run(ctx context.Context) error {
	defer s.Close()
	stop := context.AfterFunc(ctx, func() {
		// A deadline in the past interrupts the blocked read.
		if err := s.t.SetReadDeadline(time.Unix(1, 0)); err != nil {
			s.log.Warn("failed to interrupt the read", "server", s.name, "error", err)
		}
	})
	defer stop()
	lim := newBucket(s.Limit)
	if b, ok := s.t.(ReadBufferSetter); ok && s.Limit.Rate > 0 && s.Nap > 0 {
		if err := b.SetReadBuffer(NapReadBuffer); err != nil {
			s.log.Warn("failed to shrink the receive buffer: a flood costs more", "server", s.name, "error", err)
		}
	}
	nap := time.NewTimer(time.Hour)
	nap.Stop()
	defer nap.Stop()
	limited := 0 // packets over the limit in a row
	for {
		p, err := s.t.Receive(s.in)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if err := s.readFailed(ctx, err); err != nil {
				return err
			}
			continue
		}
		s.readFailing = false
		if s.serve(p, lim) != RateLimited {
			limited = 0
			continue
		}
		if limited++; s.Nap > 0 && limited >= s.NapAfter {
			limited = 0
			nap.Reset(s.Nap)
			select {
			case <-ctx.Done():
				return nil
			case <-nap.C:
			}
		}
	}
}

// readFailed returns err when the transport is gone, else logs it (the
// first of a streak at warning level) and waits readBackoff, or until ctx
// is done, before the next read.
func (s *Server) readFailed(ctx context.Context, err error) error {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("%s server stopped: %w", s.name, err)
	}
	s.logStreak(&s.readFailing, "failed to read a request, retrying", err)
	t := time.NewTimer(readBackoff)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return nil
}

// serve handles one packet, sends the reply and reports the Event. A
// panic anywhere in between (handler, encoding, transport) drops the packet.
// It returns why the packet was dropped, if it was.
func (s *Server) serve(p Packet, lim *bucket) Reason {
	start := s.Now()
	ev := s.recoverAnswer(p, lim, start)
	if s.Observer != nil {
		ev.Latency = s.Now().Sub(start)
		s.Observer(ev)
	}
	return ev.Reason
}

// recoverAnswer is answer, turning a panic into a dropped packet.
func (s *Server) recoverAnswer(p Packet, lim *bucket, now time.Time) (ev Event) {
	defer func() {
		if v := recover(); v != nil {
			s.logPanic(v, p, now)
			ev = Drop(Panic, fmt.Sprint(v))
		}
	}()
	return s.answer(p, lim, now)
}

// answer runs p through the transport's verdict, the limit and the
// handler, and sends the reply.
func (s *Server) answer(p Packet, lim *bucket, now time.Time) Event {
	switch {
	case p.Drop != "":
		if s.debug {
			s.log.Debug("dropped a packet", "server", s.name, "src", p.Src, "reason", p.Drop, "detail", p.Detail)
		}
		return Drop(p.Drop, p.Detail)
	case !lim.take(now):
		return Drop(RateLimited, "")
	}
	r, ev := s.handle(p)
	if ev.Outcome == Dropped && s.debug {
		s.log.Debug("dropped a request", "server", s.name, "src", p.Src, "request", ev.Request, "reason", ev.Reason, "detail", ev.Detail)
	}
	if r.empty() {
		return ev
	}
	if err := s.t.Send(p, r); err != nil {
		s.logStreak(&s.sendFailing, "failed to send a reply", err)
		ev.Outcome, ev.Reason, ev.Detail = Dropped, SendFailed, err.Error()
		return ev
	}
	s.sendFailing = false
	if s.debug {
		s.log.Debug("replied", "server", s.name, "request", ev.Request, "reply", ev.Reply, "to", r.To)
	}
	return ev
}

// logStreak logs the first error of a streak at warning level, the rest at
// debug level.
func (s *Server) logStreak(failing *bool, msg string, err error) {
	if *failing {
		s.log.Debug(msg, "server", s.name, "error", err)
		return
	}
	*failing = true
	s.log.Warn(msg, "server", s.name, "error", err)
}

// logPanic logs a recovered panic with its stack at error level, at most
// once per loudlog.Interval: input that panics may come in a flood.
func (s *Server) logPanic(v any, p Packet, now time.Time) {
	const msg = "recovered from a panic while handling a request"
	if ok, held := s.panics.Allow(now); ok {
		s.log.Error(msg, "server", s.name, "panic", fmt.Sprint(v), "src", p.Src, "stack", string(debug.Stack()),
			"alsoSinceLastLogged", held)
		return
	}
	s.log.Debug(msg, "server", s.name, "panic", fmt.Sprint(v), "src", p.Src)
}
