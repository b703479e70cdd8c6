// Package ratelimit is the token bucket behind the DHCP servers' per-client
// rate limits.
package ratelimit

import "time"

// Bucket holds up to burst tokens, refilled at rate tokens per second. The
// zero value starts full at its first Take. It is not safe for concurrent
// use: each server reads packets in one goroutine.
type Bucket struct {
	tokens  float64
	last    time.Time
	started bool
}

// Take refills the bucket up to now and takes one token, reporting whether
// there was one.
func (b *Bucket) Take(now time.Time, rate, burst float64) bool {
	if !b.started {
		b.tokens, b.last, b.started = burst, now, true
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(burst, b.tokens+el.Seconds()*rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
