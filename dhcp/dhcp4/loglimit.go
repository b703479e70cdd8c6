package dhcp4

import (
	"sync"
	"time"
)

// loudInterval is how often a line a guest can trigger at will (a DECLINE,
// a panic on its input, a failing read) may reach the log at warning level
// or above; the others in between go to debug level and are counted.
const loudInterval = 10 * time.Second

// logEvery lets one line through per interval and counts the rest, so that a
// guest repeating a packet cannot flood the log. It is safe for concurrent
// use; the zero value with an interval set is ready.
type logEvery struct {
	interval time.Duration

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// allow reports whether a line may be logged loudly at now and, if so, how
// many were held back since the last one. A nil logEvery allows every line.
func (l *logEvery) allow(now time.Time) (bool, int) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.suppressed, l.next = 0, now.Add(l.interval)
	return true, n
}
