// Package loudlog keeps lines a guest can trigger at will (a DECLINE, a
// panic on its input, a failing read) from flooding the log: one per
// interval reaches warning level, the rest are counted.
package loudlog

import (
	"sync"
	"time"
)

// Interval is how often such a line may reach the log at warning level or
// above; the others in between go to debug level and are counted.
const Interval = 10 * time.Second

// Every lets one line through per Interval and counts the rest. It is safe
// for concurrent use; the zero value with Interval set is ready.
type Every struct {
	Interval time.Duration

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// Allow reports whether a line may be logged loudly at now and, if so, how
// many were held back since the last one. A nil Every allows every line.
func (l *Every) Allow(now time.Time) (bool, int) {
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
	l.suppressed, l.next = 0, now.Add(l.Interval)
	return true, n
}
