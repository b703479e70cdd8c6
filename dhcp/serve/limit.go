package serve

import "time"

// Limit is a token bucket on the packets a server handles: Rate per second
// on average, Burst at once. A zero Rate disables it. It bounds the whole
// server, keyed on nothing a sender chooses: a transport hears only the VM
// (its tap, or a bridge whose uplink the binding CNI's guard closes to
// client messages), so per-source buckets would buy no fairness and cost
// memory a flood of forged sources could grow.
type Limit struct {
	Rate  float64
	Burst int
}

// Bucket is a Limit's token bucket, for a loop other than Server's (the RA
// advertiser's reader). One goroutine uses it.
type Bucket = bucket

// NewBucket returns l's bucket, full.
func NewBucket(l Limit) *Bucket { return newBucket(l) }

// Take refills the bucket up to now and takes a token, reporting whether
// there was one (always with a zero Rate).
func (b *bucket) Take(now time.Time) bool { return b.take(now) }

// bucket holds up to burst tokens, refilled at rate per second. It starts
// full. One goroutine uses it.
type bucket struct {
	rate, burst float64
	tokens      float64
	last        time.Time
	started     bool
}

func newBucket(l Limit) *bucket {
	return &bucket{rate: l.Rate, burst: float64(max(l.Burst, 1))}
}

// take refills the bucket up to now and takes a token, reporting whether
// there was one.
func (b *bucket) take(now time.Time) bool {
	if b.rate <= 0 {
		return true
	}
	if !b.started {
		b.tokens, b.last, b.started = b.burst, now, true
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(b.burst, b.tokens+el.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
