package dhcp6

import (
	"net/netip"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/internal/ratelimit"
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
	rate, burst float64
	buckets     map[netip.Addr]*ratelimit.Bucket
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), buckets: make(map[netip.Addr]*ratelimit.Bucket)}
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
		b = &ratelimit.Bucket{}
		l.buckets[src] = b
	}
	return b.Take(now, l.rate, l.burst)
}
