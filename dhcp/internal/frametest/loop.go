// Package frametest holds a frame.Conn for the DHCP servers' benchmarks.
package frametest

import (
	"net"
	"time"
)

// Loop is a frame.Conn for benchmarks: each read returns the next of
// Frames, round-robin, until N have been read, then net.ErrClosed;
// writes are only counted (Written).
type Loop struct {
	Frames  [][]byte
	N       int
	Written int
	read    int
}

// ReadFrame copies the next frame into b.
func (c *Loop) ReadFrame(b []byte) (int, error) {
	if c.read == c.N {
		return 0, net.ErrClosed
	}
	f := c.Frames[c.read%len(c.Frames)]
	c.read++
	return copy(b, f), nil
}

// WriteFrame counts the frame.
func (c *Loop) WriteFrame([]byte) error { c.Written++; return nil }

// SetReadDeadline does nothing: reads never block.
func (c *Loop) SetReadDeadline(time.Time) error { return nil }

// Close does nothing.
func (c *Loop) Close() error { return nil }
