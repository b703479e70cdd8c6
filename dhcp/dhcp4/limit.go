package dhcp4

import (
	"bytes"
	"net"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/internal/ratelimit"
)

// limiter keeps two token buckets: one for the VM, one shared by every other
// sender (only the UDP transport hears them), so neither the VM nor strangers
// can make the server spend more than the limit, and strangers cannot starve
// the VM.
type limiter struct {
	rate, burst float64
	vmMAC       net.HardwareAddr
	vm, others  ratelimit.Bucket
}

func newLimiter(l RateLimit, vmMAC net.HardwareAddr) limiter {
	return limiter{rate: l.Rate, burst: float64(max(l.Burst, 1)), vmMAC: vmMAC}
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
	return b.Take(now, l.rate, l.burst)
}
