package dhcp4

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/internal/loudlog"
)

// Event describes one received packet, for metrics.
type Event struct {
	Type    dhcpv4.MessageType // the request's type; MessageTypeNone for ARP and unparsable packets
	ARP     bool               // an ARP request for the server identifier
	Reply   dhcpv4.MessageType // MessageTypeNone when nothing was sent
	Drop    DropReason         // why nothing was sent, when a reply was due or the packet was refused
	Latency time.Duration      // from the end of the read to the end of the write
	XID     uint32             // the request's transaction ID; 0 for ARP and unparsable packets
}

// RateLimit is a token bucket: Rate packets per second on average, Burst at
// once. A zero Rate disables the limit.
type RateLimit struct {
	Rate  float64
	Burst int
}

// The default rate limit bounds what a guest flooding requests costs the
// sidecar. A DHCP client sends a handful of packets per exchange and waits
// seconds between retransmissions (RFC 2131 section 4.1), so it never
// delays one.
const (
	DefaultRate  = 50 // packets per second
	DefaultBurst = 20
)

// bufSize holds any frame a link with a 9000-byte MTU delivers.
const bufSize = 9216

// readBackoff is the pause after a read error that may be transient (the
// link going down during a migration), before reading again.
const readBackoff = 100 * time.Millisecond

// Server moves packets between a Handler and the VM's link, one at a time,
// with one receive and one send buffer.
type Server struct {
	// Observer, when set before Run, is called after every packet.
	Observer func(Event)
	// Limit, when changed before Run, replaces DefaultRate and DefaultBurst.
	Limit RateLimit

	h    *Handler
	log  *slog.Logger
	conn frame.Conn    // packet transport
	udp  *udpTransport // UDP transport
	in   []byte
	out  []byte
	lim  limiter

	sendFailing bool // the last write failed: log further failures at debug level
	readFailing bool // the last read failed: log further failures at debug level
	panics      loudlog.Every
}

// NewPacketServer serves h over conn, a link on which every frame comes from
// and goes to the VM alone (frame.Listen with the VM MAC as source filter and
// frame.KindDHCPv4). Replies are crafted Ethernet/IPv4/UDP frames from the
// config's service MAC and server identifier; ARP requests for the server
// identifier are answered so that a guest's unicast renewals reach it. The
// caller owns conn and closes it after Run returns.
func NewPacketServer(h *Handler, conn frame.Conn, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{Limit: RateLimit{Rate: DefaultRate, Burst: DefaultBurst}, h: h, log: log, conn: conn,
		in: make([]byte, bufSize), out: make([]byte, 0, bufSize), panics: loudlog.Every{Interval: loudlog.Interval}}
}

// Run serves until ctx is cancelled, then returns nil. It returns an error
// when the link is closed under it.
func (s *Server) Run(ctx context.Context) error {
	s.lim = newLimiter(s.Limit, s.h.vmMAC)
	if s.udp != nil {
		return s.runUDP(ctx)
	}
	stop := context.AfterFunc(ctx, func() {
		// A deadline in the past interrupts the blocked read.
		if err := s.conn.SetReadDeadline(time.Unix(1, 0)); err != nil {
			s.log.Warn("failed to interrupt the DHCPv4 read", "error", err)
		}
	})
	defer stop()
	for {
		n, err := s.conn.ReadFrame(s.in)
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
		s.serveFrame(s.in[:n])
	}
}

// readFailed returns err when the transport is gone, else logs it (the
// first of a run at warning level, the rest at debug level) and waits
// readBackoff (or until ctx is done) before the next read.
func (s *Server) readFailed(ctx context.Context, err error) error {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("failed to read DHCPv4 request: %w", err)
	}
	if s.readFailing {
		s.log.Debug("failed to read DHCPv4 request, retrying", "error", err)
	} else {
		s.readFailing = true
		s.log.Warn("failed to read DHCPv4 request, retrying", "error", err)
	}
	t := time.NewTimer(readBackoff)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return nil
}

// serveFrame handles one frame and sends the reply, if any.
func (s *Server) serveFrame(in []byte) {
	start := time.Now()
	out, ev := s.recoverFrame(in, start)
	if out != nil {
		if err := s.conn.WriteFrame(out); err != nil {
			s.sendFailed(err)
			ev.Reply, ev.Drop = dhcpv4.MessageTypeNone, DropSendFailed
		} else {
			s.sendFailing = false
		}
	}
	s.observe(ev, start)
}

// recoverFrame is handleFrame, turning a panic into a logged drop.
func (s *Server) recoverFrame(in []byte, now time.Time) (out []byte, ev Event) {
	defer func() {
		if r := recover(); r != nil {
			s.logPanic("recovered from a panic while handling a DHCPv4 frame", r, now)
			out, ev = nil, Event{Drop: DropPanic}
		}
	}()
	return s.handleFrame(in, now)
}

// handleFrame turns one received frame into the frame to send (nil for none).
// The result aliases s.out.
func (s *Server) handleFrame(in []byte, now time.Time) ([]byte, Event) {
	eth, err := frame.ParseEthernet(in)
	switch {
	case err != nil:
		return nil, Event{Drop: DropMalformed}
	case !bytes.Equal(eth.Src, s.h.vmMAC):
		return nil, Event{Drop: DropForeign}
	case !s.lim.allow(eth.Src, now):
		return nil, Event{Drop: DropRateLimited}
	case eth.Type == frame.EtherTypeARP:
		return s.handleARP(in)
	default:
		return s.handleUDPFrame(in, eth)
	}
}

// handleARP answers an ARP request for the server identifier with the
// service MAC (RFC 826).
func (s *Server) handleARP(in []byte) ([]byte, Event) {
	_, a, err := frame.ParseARP(in)
	if err != nil {
		return nil, Event{ARP: true, Drop: DropMalformed}
	}
	if a.Op != frame.ARPRequest || a.TargetIP != s.h.sid {
		return nil, Event{ARP: true, Drop: DropNotForServer}
	}
	s.out = frame.AppendARP(s.out[:0],
		frame.Ethernet{Dst: a.SenderMAC, Src: s.h.serviceMAC},
		frame.ARP{Op: frame.ARPReply, SenderMAC: s.h.serviceMAC, SenderIP: s.h.sid,
			TargetMAC: a.SenderMAC, TargetIP: a.SenderIP})
	return s.out, Event{ARP: true}
}

// limitedBroadcast is 255.255.255.255 (RFC 919).
var limitedBroadcast = [4]byte{255, 255, 255, 255}

// handleUDPFrame answers a DHCPv4 request in an Ethernet/IPv4/UDP frame sent
// to the server port at the broadcast address or the server identifier.
func (s *Server) handleUDPFrame(in []byte, eth frame.Ethernet) ([]byte, Event) {
	p, err := frame.ParseUDP4(in)
	if err != nil {
		return nil, Event{Drop: DropMalformed}
	}
	if p.DstPort != ServerPort || (p.Dst.As4() != limitedBroadcast && p.Dst != s.h.sid) {
		return nil, Event{Drop: DropNotForServer}
	}
	req, err := dhcpv4.FromBytes(p.Payload)
	if err != nil {
		s.log.Debug("dropped an unparsable DHCPv4 request", "error", err)
		return nil, Event{Drop: DropMalformed}
	}
	reply, dest := s.h.Handle(req)
	ev := Event{Type: req.MessageType(), Drop: dest.Drop, XID: xidOf(req)}
	if reply == nil {
		return nil, ev
	}
	ev.Reply = reply.MessageType()
	dstMAC := dest.MAC
	if dest.Kind == DestRelay {
		dstMAC = eth.Src
	}
	s.out = frame.AppendUDP4(s.out[:0], frame.UDP4{
		Eth: frame.Ethernet{Dst: dstMAC, Src: s.h.serviceMAC},
		Src: s.h.sid, Dst: dest.IP, SrcPort: ServerPort, DstPort: dest.Port,
		Payload: reply.ToBytes(),
	})
	s.log.Debug("DHCPv4 reply", "request", ev.Type, "reply", ev.Reply, "dst", dest.IP)
	return s.out, ev
}

// sendFailed logs a failed write: the first of a run at warning level, the
// rest at debug level.
func (s *Server) sendFailed(err error) {
	if s.sendFailing {
		s.log.Debug("failed to send DHCPv4 reply", "error", err)
		return
	}
	s.sendFailing = true
	s.log.Warn("failed to send DHCPv4 reply", "error", err)
}

// logPanic logs a recovered panic with its stack, at error level at most
// once per loudlog.Interval: input that panics may come in a flood.
func (s *Server) logPanic(msg string, r any, now time.Time) {
	if ok, held := s.panics.Allow(now); ok {
		s.log.Error(msg, "panic", fmt.Sprint(r), "stack", string(debug.Stack()), "alsoSinceLastLogged", held)
		return
	}
	s.log.Debug(msg, "panic", fmt.Sprint(r))
}

// xidOf is the transaction ID of req as a number.
func xidOf(req *dhcpv4.DHCPv4) uint32 {
	t := req.TransactionID
	return uint32(t[0])<<24 | uint32(t[1])<<16 | uint32(t[2])<<8 | uint32(t[3])
}

func (s *Server) observe(ev Event, start time.Time) {
	if s.Observer != nil {
		ev.Latency = time.Since(start)
		s.Observer(ev)
	}
}
