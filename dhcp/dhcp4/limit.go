package dhcp4

import (
	"bytes"
	"net"
	"time"
)

// limiter keeps two token buckets: one for the VM, one shared by every other
// sender (only the UDP transport hears them), so neither the VM nor strangers
// can make the server spend more than the limit, and strangers cannot starve
// the VM.
type limiter struct {
	rate   float64
	burst  float64
	vmMAC  net.HardwareAddr
	vm     bucket
	others bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(l RateLimit, vmMAC net.HardwareAddr) limiter {
	burst := float64(max(l.Burst, 1))
	return limiter{rate: l.Rate, burst: burst, vmMAC: vmMAC,
		vm: bucket{tokens: burst}, others: bucket{tokens: burst}}
}

// allow reports whether a packet from mac at now is within the limit, and
// takes a token when it is.
func (l *limiter) allow(mac []byte, now time.Time) bool {
	if l.rate <= 0 {
		return true
	}
	b := &l.others
	if bytes.Equal(mac, l.vmMAC) {
		b = &l.vm
	}
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
