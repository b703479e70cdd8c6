package ra

import (
	"net/netip"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// Timing (RFC 4861). Router constants from §10, router configuration
// variables from §6.2.1 at their defaults.
const (
	// MaxRtrAdvInterval: default 600 s (§6.2.1).
	MaxRtrAdvInterval = 600 * time.Second
	// minRtrAdvInterval: default 0.33 × MaxRtrAdvInterval (§6.2.1).
	minRtrAdvInterval = 200 * time.Second
	// maxInitialRtrAdvertInterval is MAX_INITIAL_RTR_ADVERT_INTERVAL (§10),
	// the cap on the first intervals (§6.2.4).
	maxInitialRtrAdvertInterval = 16 * time.Second
	// maxInitialRtrAdvertisements is MAX_INITIAL_RTR_ADVERTISEMENTS (§10).
	maxInitialRtrAdvertisements = 3
	// minDelayBetweenRAs is MIN_DELAY_BETWEEN_RAS (§10): multicast RAs are
	// at least this far apart (§6.2.4, §6.2.6).
	minDelayBetweenRAs = 3 * time.Second
	// maxRADelayTime is MAX_RA_DELAY_TIME (§10): a solicited RA waits a
	// random 0 to this long (§6.2.6).
	maxRADelayTime = 500 * time.Millisecond

	// The initial intervals are drawn from [initialIntervalMin,
	// initialIntervalMax]: within the §6.2.4 cap, but faster than it
	// (0, 4, 8 s), never closer than minDelayBetweenRAs.
	initialIntervalMin = 4 * time.Second
	initialIntervalMax = 8 * time.Second
)

// randN returns a uniform random int64 in [0, n); n > 0. math/rand/v2's
// Int64N in production, a fixed function in tests.
type randN func(n int64) int64

// uniform returns a random duration in [lo, hi].
func uniform(rnd randN, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rnd(int64(hi-lo)+1))
}

// unsolicitedInterval is the wait after the sent-th multicast RA (sent ≥ 1)
// until the next unsolicited one (§6.2.4): initial intervals for the first
// maxInitialRtrAdvertisements, then [MinRtrAdvInterval, MaxRtrAdvInterval].
func unsolicitedInterval(rnd randN, sent int) time.Duration {
	if sent < maxInitialRtrAdvertisements {
		return min(uniform(rnd, initialIntervalMin, initialIntervalMax), maxInitialRtrAdvertInterval)
	}
	return uniform(rnd, minRtrAdvInterval, MaxRtrAdvInterval)
}

// solicitedAt is when a multicast reply to an RS received at now goes out
// (§6.2.6): after a random delay of up to MAX_RA_DELAY_TIME, and, when a
// multicast RA went out less than MIN_DELAY_BETWEEN_RAS before, that delay
// after last + MIN_DELAY_BETWEEN_RAS. A zero last means none was sent.
func solicitedAt(rnd randN, now, last time.Time) time.Time {
	delay := uniform(rnd, 0, maxRADelayTime)
	if !last.IsZero() && now.Sub(last) < minDelayBetweenRAs {
		return last.Add(minDelayBetweenRAs + delay)
	}
	return now.Add(delay)
}

// target is where one RA goes: the zero target is all-nodes multicast, else
// unicast to a soliciting host.
type target struct {
	IP  netip.Addr
	MAC frame.MAC
}

func (t target) multicast() bool { return !t.IP.IsValid() }

// schedule decides when RAs go out. It has no clock and no randomness of its
// own: every method takes the time, so tests step it exactly.
type schedule struct {
	rnd randN

	spoke         bool      // the guest has sent a frame
	sent          int       // multicast RAs sent
	lastMulticast time.Time // zero before the first
	periodic      time.Time // next unsolicited RA; zero until the guest spoke
	reply         time.Time // pending solicited RA; zero when none
	replyTo       target
}

// guestSpoke starts unsolicited RAs at the guest's first frame: a
// migration target stays quiet until then. It reports whether this was
// the first frame.
func (s *schedule) guestSpoke(now time.Time) bool {
	if s.spoke {
		return false
	}
	s.spoke = true
	s.periodic = now
	return true
}

// solicited plans the reply to a valid RS received at now. Unicast replies
// (to a solicitor with a source address) go after a random delay; multicast
// ones are rate limited, and dropped when an unsolicited RA goes out first.
// While a reply is pending, further RSs are answered by it.
func (s *schedule) solicited(now time.Time, to target) {
	if !s.reply.IsZero() {
		return
	}
	if !to.multicast() {
		s.reply, s.replyTo = now.Add(uniform(s.rnd, 0, maxRADelayTime)), to
		return
	}
	at := solicitedAt(s.rnd, now, s.lastMulticast)
	if !s.periodic.IsZero() && !s.periodic.After(at) {
		return
	}
	s.reply, s.replyTo = at, target{}
}

// next is when the next RA is due; zero when none is planned.
func (s *schedule) next() time.Time {
	switch {
	case s.reply.IsZero():
		return s.periodic
	case s.periodic.IsZero() || s.reply.Before(s.periodic):
		return s.reply
	}
	return s.periodic
}

// pop returns an RA due at now and marks it sent; ok is false when none is
// due. Call it until ok is false.
func (s *schedule) pop(now time.Time) (to target, ok bool) {
	switch {
	case !s.reply.IsZero() && !s.reply.After(now) && (s.periodic.IsZero() || !s.reply.After(s.periodic)):
		to = s.replyTo
		s.reply, s.replyTo = time.Time{}, target{}
	case !s.periodic.IsZero() && !s.periodic.After(now):
		to = target{}
	default:
		return target{}, false
	}
	if to.multicast() {
		s.multicastSent(now)
	}
	return to, true
}

// multicastSent restarts the unsolicited timer after any multicast RA
// (§6.2.4); a pending multicast reply is answered by it.
func (s *schedule) multicastSent(now time.Time) {
	s.sent++
	s.lastMulticast = now
	s.periodic = now.Add(unsolicitedInterval(s.rnd, s.sent))
	if !s.reply.IsZero() && s.replyTo.multicast() {
		s.reply = time.Time{}
	}
}
