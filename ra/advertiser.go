package ra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/sync/errgroup"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
)

// Advertiser sends Router Advertisements to one VM through a frame
// transport on the VM's tap: solicited ones in reply to its Router
// Solicitations, unsolicited ones once the guest has spoken. It never sends
// a final RA with router lifetime 0 (RFC 4861 §6.2.5): the source is the
// real gateway, and withdrawing it would cut the guest off, for instance
// from a migration source.
type Advertiser struct {
	// Observer, when set before Run, is called on Run's goroutine for every
	// valid Router Solicitation (Request "RS", Accepted: the RA follows on
	// the schedule) and every RA sent (Reply "RA") or failed to send.
	Observer func(serve.Event)

	cfg   Config
	conn  frame.Conn
	log   *slog.Logger
	debug bool // log per packet: the attributes of a discarded line still cost allocations
	ra    *ndp.RouterAdvertisement

	src       netip.Addr // IPv6 source of every RA
	body      []byte     // the ICMPv6 message, checksum left to the frame
	multicast []byte     // the whole all-nodes frame, built once

	now func() time.Time // the clock; tests replace it
	rnd randN            // the random source; tests replace it

	stats  counters
	warned atomic.Bool // an upstream difference was logged

	// hints carries GuestStale's evidence to Run's loop.
	hints chan netip.Addr
	// Renumbering a stale guest (renumber.go); Run's loop goroutine only.
	staleUntil            time.Time
	deprecated, withdrawn map[netip.Addr]time.Time
	sendFailing           bool // the last send failed: log further failures at debug level
}

func (a *Advertiser) observe(ev serve.Event) {
	if a.Observer != nil {
		a.Observer(ev)
	}
}

// Stats counts what an Advertiser did; an observer for metrics.
type Stats struct {
	Solicitations uint64 // valid RSs from the VM
	Multicast     uint64 // RAs sent to all nodes
	Unicast       uint64 // RAs sent to a soliciting host
	WriteErrors   uint64 // RAs the transport failed to send
	RateLimited   uint64 // valid RSs over RSLimit, not passed on
}

type counters struct {
	solicitations, multicast, unicast, writeErrors, rateLimited atomic.Uint64
}

// NewAdvertiser validates cfg and prepares the advertisement. conn must be a
// transport carrying the VM's ICMPv6 frames (frame.KindICMPv6, filtered on
// the VM's MAC); without one an advertising mode fails with ErrNoTransport.
// In ModeOff, conn may be nil and Run only waits.
func NewAdvertiser(cfg Config, conn frame.Conn, log *slog.Logger) (*Advertiser, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Advertiser{cfg: cfg, conn: conn, log: log, debug: log.Enabled(context.Background(), slog.LevelDebug), now: time.Now, rnd: rand.Int64N, hints: make(chan netip.Addr, maxHints),
		deprecated: map[netip.Addr]time.Time{}, withdrawn: map[netip.Addr]time.Time{}}
	if cfg.Mode == ModeOff {
		return a, nil
	}
	if conn == nil {
		return nil, fmt.Errorf("failed to start router advertisements in mode %v: %w", cfg.Mode, ErrNoTransport)
	}
	ra, err := Build(cfg)
	if err != nil {
		return nil, err
	}
	body, err := ndp.MarshalMessage(ra)
	if err != nil {
		return nil, fmt.Errorf("failed to encode router advertisement: %w", err)
	}
	a.ra, a.body, a.src = ra, body, Source(cfg)
	a.multicast = a.appendFrame(nil, target{IP: allNodes, MAC: allNodesMAC})
	return a, nil
}

// Source is the IPv6 source address of the RAs cfg describes. In
// ModeGateway it is the gateway's link-local address, so the guest installs
// the gateway as its default router. In ModeFlagsOnly it is that address
// with the universal/local bit of its interface identifier flipped back:
// an RA with router lifetime 0 from the gateway's own address would delete
// the default route the cluster's RAs installed (RFC 4861 §6.3.4), so
// flags-only RAs come from a stable address nothing uses (RFC 4291
// appendix A: for a MAC-derived address, the unmodified EUI-64).
func Source(cfg Config) netip.Addr {
	a := cfg.GatewayLLA.WithZone("")
	if cfg.Mode != ModeFlagsOnly {
		return a
	}
	b := a.As16()
	b[8] ^= 0x02
	return netip.AddrFrom16(b)
}

// appendFrame appends the RA as an Ethernet frame from the gateway MAC to
// to, with the ICMPv6 checksum for that destination.
func (a *Advertiser) appendFrame(dst []byte, to target) []byte {
	return frame.AppendICMP6(dst, frame.ICMP6{
		Eth:      frame.Ethernet{Dst: to.MAC, Src: a.cfg.GatewayMAC},
		Src:      a.src,
		Dst:      to.IP,
		HopLimit: frame.NDPHopLimit,
		Payload:  a.body,
	})
}

// Stats returns the counters so far; safe to call concurrently with Run.
func (a *Advertiser) Stats() Stats {
	return Stats{
		Solicitations: a.stats.solicitations.Load(),
		Multicast:     a.stats.multicast.Load(),
		Unicast:       a.stats.unicast.Load(),
		WriteErrors:   a.stats.writeErrors.Load(),
		RateLimited:   a.stats.rateLimited.Load(),
	}
}

// Run serves until ctx is cancelled, which is a clean exit (nil). It
// returns an error only when the transport fails.
func (a *Advertiser) Run(ctx context.Context) error {
	if a.cfg.Mode == ModeOff {
		a.log.Info("router advertisements off")
		<-ctx.Done()
		return nil
	}
	a.log.Info("router advertisements waiting for the guest", "mode", a.cfg.Mode.String(), "source", a.src, "prefix", a.cfg.Prefix)
	if b, ok := a.conn.(serve.ReadBufferSetter); ok {
		if err := b.SetReadBuffer(serve.NapReadBuffer); err != nil { // the reader naps through an RS flood
			a.log.Warn("failed to shrink the receive buffer: a flood costs more", "error", err)
		}
	}
	events := make(chan frameEvent, 8)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.read(gctx, events) })
	g.Go(func() error { return a.loop(gctx, events) })
	return g.Wait()
}

// RSLimit bounds the Router Solicitations passed on to the schedule: a
// host sends at most MAX_RTR_SOLICITATIONS (3) at start, RTR_SOLICITATION_
// INTERVAL (4 s) apart (RFC 4861 §6.3.7, §10), and RSs while a reply is
// pending are answered by it (§6.2.6), so more change nothing. Once
// rsNapAfter in a row were over it, the reader naps for rsNap: a flooding
// guest's frames queue meanwhile and are read in batches, or are dropped
// by the kernel (serve.Server.Nap does the same).
var RSLimit = serve.Limit{Rate: 10, Burst: 10}

const (
	rsNap      = serve.DefaultNap
	rsNapAfter = serve.DefaultNapAfter
)

// read passes the guest's first frame and every valid RS within RSLimit
// to events; the RSs over it are counted, and passed on as one event
// before each nap.
func (a *Advertiser) read(ctx context.Context, events chan<- frameEvent) error {
	stop := context.AfterFunc(ctx, func() {
		_ = a.conn.SetReadDeadline(time.Unix(1, 0)) // a failure leaves the read blocked: the transport is already broken
	})
	defer stop()
	buf := make([]byte, 1<<16)
	told := false
	rs := serve.NewBucket(RSLimit)
	nap := time.NewTimer(time.Hour)
	nap.Stop()
	defer nap.Stop()
	limited := 0
	pass := func(ev frameEvent) bool {
		select {
		case events <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		n, err := a.conn.ReadFrame(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return fmt.Errorf("failed to read frames from the VM: %w", err)
		}
		ev, err := classify(buf[:n], a.cfg.VMMAC)
		if err != nil && !errors.Is(err, errNotRS) {
			a.log.Debug("ignoring frame from the VM", "error", err)
		}
		if ev.rs && !rs.Take(a.now()) {
			if limited++; limited < rsNapAfter {
				continue
			}
			if !pass(frameEvent{limitedRS: limited}) {
				return nil
			}
			limited = 0
			nap.Reset(rsNap)
			select {
			case <-ctx.Done():
				return nil
			case <-nap.C:
			}
			continue
		}
		if !ev.rs && (told || !ev.spoke) && !a.telling(ev) {
			continue
		}
		told = true
		ev.limitedRS, limited = limited, 0
		if !pass(ev) {
			return nil
		}
	}
}

// loop owns the schedule: it takes events, and sends each RA when due.
func (a *Advertiser) loop(ctx context.Context, events <-chan frameEvent) error {
	s := schedule{rnd: a.rnd}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-events:
			a.handle(&s, ev)
		case addr := <-a.hints:
			a.heard(a.now(), addr)
		case <-timer.C:
		}
		buf = a.sendDue(&s, buf)
		if next := s.next(); next.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(next.Sub(a.now()))
		}
	}
}

func (a *Advertiser) handle(s *schedule, ev frameEvent) {
	if ev.limitedRS > 0 {
		a.stats.rateLimited.Add(uint64(ev.limitedRS))
		a.observe(serve.Event{Request: "RS", Outcome: serve.Dropped, Reason: serve.RateLimited, Count: ev.limitedRS,
			Detail: "router solicitations over the rate limit"})
	}
	if !ev.spoke {
		return // only a count of RSs over the limit
	}
	now := a.now()
	if s.guestSpoke(now) {
		a.log.Info("guest spoke, sending router advertisements")
	}
	a.renumber(now, ev)
	if ev.rs {
		a.stats.solicitations.Add(1)
		if a.debug {
			a.log.Debug("router solicitation", "from", ev.from.IP)
		}
		s.solicited(now, ev.from)
		from := ev.from.IP
		if !from.IsValid() {
			from = unspecifiedIP6
		}
		a.observe(serve.Event{Request: "RS", Outcome: serve.Accepted, Peer: from})
	}
}

// sendDue sends every RA due now; buf is reused for unicast frames.
func (a *Advertiser) sendDue(s *schedule, buf []byte) []byte {
	now := a.now()
	for {
		to, ok := s.pop(now)
		if !ok {
			return buf
		}
		b, n, dst := a.multicast, &a.stats.multicast, allNodes
		if !to.multicast() {
			buf = a.appendFrame(buf[:0], to)
			b, n, dst = buf, &a.stats.unicast, to.IP
		}
		if err := a.conn.WriteFrame(b); err != nil {
			a.stats.writeErrors.Add(1)
			a.sendFailed(dst, err)
			a.observe(serve.Event{Reply: "RA", Outcome: serve.Dropped, Reason: serve.SendFailed, Detail: err.Error(), Peer: dst})
			continue
		}
		a.sendFailing = false
		n.Add(1)
		if a.debug {
			a.log.Debug("sent router advertisement", "to", dst)
		}
		a.observe(serve.Event{Reply: "RA", Outcome: serve.Replied, Peer: dst})
	}
}

// sendFailed logs a failed send: the first of a run at warning level, the
// rest at debug level.
func (a *Advertiser) sendFailed(dst netip.Addr, err error) {
	const msg = "failed to send router advertisement to the VM"
	if a.sendFailing {
		a.log.Debug(msg, "to", dst, "error", err)
		return
	}
	a.sendFailing = true
	a.log.Warn(msg, "to", dst, "error", err)
}

// ObserveUpstream reports an RA seen arriving from the uplink. When it comes
// from the router the advertiser speaks for and differs from ours in what
// the guest acts on (see Differences), that is logged once, as a warning.
func (a *Advertiser) ObserveUpstream(src netip.Addr, observed *ndp.RouterAdvertisement) {
	if a.ra == nil || src.WithZone("") != a.cfg.GatewayLLA.WithZone("") {
		return
	}
	d := Differences(a.ra, observed)
	if len(d) == 0 || a.warned.Swap(true) {
		return
	}
	a.log.Warn("the gateway's own router advertisements differ from dsbridge's; guests may flap between them", "source", src, "differences", d)
}
