package trace

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// Printer writes trace lines, one at a time, each prefixed with a
// timestamp with microseconds.
type Printer struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
}

// NewPrinter writes to w.
func NewPrinter(w io.Writer) *Printer { return &Printer{w: w, now: time.Now} }

// Line writes "15:04:05.000000 <verb> <proto> <text>".
func (p *Printer) Line(verb, proto, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s %-10s %-6s %s\n", p.now().Format("15:04:05.000000"), verb, proto, text)
}

// Verbs of trace lines.
const (
	VerbRecv      = "recv"       // a frame from the VM
	VerbSend      = "send"       // a frame sent to the VM
	VerbWouldSend = "would-send" // dry run: the frame that would have been sent
	VerbDrop      = "drop"       // a packet not answered, and why
	VerbNoReply   = "no-reply"   // a valid packet that needs no answer
)

// Conn is a frame.Conn that prints every frame of interest it reads and
// writes. With DryRun it sends nothing: writes are printed and discarded.
type Conn struct {
	frame.Conn
	P      *Printer
	DryRun bool
}

var _ frame.Conn = (*Conn)(nil)

// ReadFrame reads a frame and prints it.
func (c *Conn) ReadFrame(b []byte) (int, error) {
	n, err := c.Conn.ReadFrame(b)
	if err == nil {
		if proto, line, ok := Decode(b[:n]); ok {
			c.P.Line(VerbRecv, proto, line)
		}
	}
	return n, err
}

// WriteFrame prints the frame and, unless DryRun, sends it.
func (c *Conn) WriteFrame(b []byte) error {
	verb := VerbSend
	if c.DryRun {
		verb = VerbWouldSend
	}
	proto, line, ok := Decode(b)
	if !ok {
		proto, line = "?", fmt.Sprintf("frame of %d bytes", len(b))
	}
	if c.DryRun {
		c.P.Line(verb, proto, line)
		return nil
	}
	err := c.Conn.WriteFrame(b)
	if err != nil {
		line += " (failed: " + err.Error() + ")"
	}
	c.P.Line(verb, proto, line)
	return err
}
