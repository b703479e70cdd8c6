package dhcp6

import (
	"net/netip"
	"time"
)

// Default per-client rate limit. A guest's DHCPv6 client sends a few
// messages a minute; the limit only stops a runaway guest or a flood from
// the uplink from spinning the server, and stays above perfdhcp's
// 500 exchanges (1,000 packets) per second.
const (
	DefaultRate  = 2000 // packets per second per client
	DefaultBurst = 200
	// maxTracked bounds the clients tracked; beyond it all buckets start
	// afresh, which only ever lets more through.
	maxTracked = 64
)

// limiter is a token bucket per source address. It is used by one
// goroutine only.
type limiter struct {
	rate    float64
	burst   float64
	buckets map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), buckets: make(map[netip.Addr]*bucket)}
}

// allow takes a token from src's bucket at time now.
func (l *limiter) allow(src netip.Addr, now time.Time) bool {
	if l.rate <= 0 {
		return true
	}
	b := l.buckets[src]
	if b == nil {
		if len(l.buckets) >= maxTracked {
			clear(l.buckets)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[src] = b
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(l.burst, b.tokens+el.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
