package frame

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// Conn moves whole Ethernet frames to and from one link: the VM's tap, or a
// link standing in for it.
type Conn interface {
	// ReadFrame reads one whole frame into b; it honours the read deadline.
	ReadFrame(b []byte) (int, error)
	// WriteFrame sends one whole Ethernet frame to the VM.
	WriteFrame(b []byte) error
	// SetReadDeadline sets the read deadline; one in the past interrupts a
	// blocked ReadFrame.
	SetReadDeadline(t time.Time) error
	Close() error
}

// Kind selects the traffic a packet socket delivers.
type Kind int

// Kinds of traffic.
const (
	KindDHCPv4 Kind = iota + 1 // IPv4 UDP to port 67, and ARP
	KindDHCPv6                 // IPv6 UDP to port 547
	KindICMPv6                 // IPv6 with next header ICMPv6
)

func (k Kind) String() string {
	switch k {
	case KindDHCPv4:
		return "dhcpv4"
	case KindDHCPv6:
		return "dhcpv6"
	case KindICMPv6:
		return "icmpv6"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Filter says which received frames a PacketConn delivers: those of Kind
// that SrcMAC sent and that arrived on the link (never ones sent out of it).
type Filter struct {
	SrcMAC MAC
	Kind   Kind
}

// PacketConn is an AF_PACKET socket bound to one link with a kernel socket
// filter. It needs CAP_NET_RAW. Reading and writing a frame allocate
// nothing: one goroutine reads, one writes.
//
// Frames are received in batches (recvmmsg(2)) of up to batchSize: a guest
// flooding its tap costs one system call per batch, not per frame, and
// the server drops a frame over its rate limit without one.
type PacketConn struct {
	c    *packet.Conn
	name string
	raw  syscall.RawConn

	// The received batch: frames next..count-1 of slots are still to be
	// read. hdrs and iovs describe slots to recvmmsg, built once.
	slots       [batchSize][]byte
	hdrs        [batchSize]mmsghdr
	iovs        [batchSize]unix.Iovec
	next, count int

	// The frame being written, and the results, for readFd and writeFd:
	// functions built once, so that no call allocates a closure.
	wbuf            []byte
	rerr, werr      error
	readFd, writeFd func(fd uintptr) bool
}

// batchSize is the most frames one read takes from the socket.
const batchSize = 16

// slotHeadroom is what a received frame may carry beyond the link's MTU:
// its Ethernet header and one VLAN tag. A slot holds at least a frame of
// minSlotMTU, Ethernet's.
const (
	slotHeadroom = EthernetLen + 4
	minSlotMTU   = 1500
)

// mmsghdr is struct mmsghdr (recvmmsg(2)): a message header and the
// length received, padded to the header's alignment.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [unsafe.Sizeof(uintptr(0)) - 4]byte
}

var _ Conn = (*PacketConn)(nil)

// ethPAll is ETH_P_ALL: receive every protocol (the socket filter narrows it).
const ethPAll = 0x0003

// Listen opens a packet socket on the link ifname that delivers only the
// frames f selects. The filter is attached before the socket is bound, so no
// other frame is ever queued.
func Listen(ifname string, f Filter) (*PacketConn, error) {
	prog, err := f.assemble()
	if err != nil {
		return nil, fmt.Errorf("failed to build socket filter for %q: %w", ifname, err)
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("failed to find link %q: %w", ifname, err)
	}
	c, err := packet.Listen(ifi, packet.Raw, ethPAll, &packet.Config{Filter: prog})
	if err != nil {
		return nil, fmt.Errorf("failed to open packet socket on %q: %w", ifname, err)
	}
	raw, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("failed to open packet socket on %q: %w", ifname, err)
	}
	p := &PacketConn{c: c, name: ifname, raw: raw}
	size := max(ifi.MTU, minSlotMTU) + slotHeadroom
	slots := make([]byte, batchSize*size)
	for i := range p.slots {
		p.slots[i] = slots[i*size : (i+1)*size]
		p.iovs[i].Base = &p.slots[i][0]
		p.iovs[i].SetLen(len(p.slots[i]))
	}
	p.readFd, p.writeFd = p.read, p.write
	return p, nil
}

// read receives a batch of frames into the slots; false: none yet (the
// runtime waits for the socket to be readable, or the deadline). The
// descriptor never blocks, so the call is raw: a system call entered the
// runtime's way wakes its monitor thread whenever the process was idle, a
// thread switch per packet for a server that waits for each one.
func (p *PacketConn) read(fd uintptr) bool {
	for i := range p.hdrs {
		p.hdrs[i] = mmsghdr{hdr: unix.Msghdr{Iov: &p.iovs[i]}}
		p.hdrs[i].hdr.Iovlen = 1
	}
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&p.hdrs[0])), batchSize,
		unix.MSG_DONTWAIT, 0, 0)
	p.next, p.count, p.rerr = 0, int(n), nil
	if errno != 0 {
		p.count, p.rerr = 0, errno
	}
	return errno != unix.EAGAIN
}

// write sends wbuf: a packet socket bound to a link sends a frame written
// without an address out of that link (packet(7)). Raw, as read.
func (p *PacketConn) write(fd uintptr) bool {
	_, _, errno := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p.wbuf))), uintptr(len(p.wbuf)))
	p.werr = nil
	if errno != 0 {
		p.werr = errno
	}
	return errno != unix.EAGAIN
}

// ReadFrame implements Conn. A frame longer than the link's MTU allows is
// cut short (its headers then do not parse).
func (p *PacketConn) ReadFrame(b []byte) (int, error) {
	if p.next == p.count {
		err := p.raw.Read(p.readFd)
		if err == nil {
			err = p.rerr
		}
		if err != nil {
			return 0, fmt.Errorf("failed to read from %q: %w", p.name, err)
		}
	}
	i := p.next
	p.next++
	return copy(b, p.slots[i][:p.hdrs[i].n]), nil
}

// WriteFrame implements Conn. The frame carries its own Ethernet header.
func (p *PacketConn) WriteFrame(b []byte) error {
	if len(b) < EthernetLen {
		return fmt.Errorf("frame of %d bytes is shorter than an Ethernet header", len(b))
	}
	p.wbuf = b
	err := p.raw.Write(p.writeFd)
	p.wbuf = nil
	if err == nil {
		err = p.werr
	}
	if err != nil {
		return fmt.Errorf("failed to write to %q: %w", p.name, err)
	}
	return nil
}

// SetReadBuffer sets the socket's receive buffer to bytes (SO_RCVBUF; the
// kernel doubles it, socket(7)).
func (p *PacketConn) SetReadBuffer(bytes int) error {
	var serr error
	if err := p.raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, bytes) }); err != nil {
		return fmt.Errorf("failed to size the receive buffer on %q: %w", p.name, err)
	}
	if serr != nil {
		return fmt.Errorf("failed to size the receive buffer on %q: %w", p.name, serr)
	}
	return nil
}

// SetReadDeadline implements Conn.
func (p *PacketConn) SetReadDeadline(t time.Time) error { return p.c.SetReadDeadline(t) }

// Close implements Conn.
func (p *PacketConn) Close() error { return p.c.Close() }

// Name is the link the socket is bound to.
func (p *PacketConn) Name() string { return p.name }

// PipeConn is one end of an in-memory frame link for tests: what one end
// writes, the other reads.
type PipeConn struct {
	in   chan []byte
	peer *PipeConn

	mu       sync.Mutex
	deadline time.Time
	wake     chan struct{} // closed and replaced when the deadline changes
	closed   chan struct{}
	once     sync.Once
}

var _ Conn = (*PipeConn)(nil)

// Pipe returns two connected in-memory Conns.
func Pipe() (*PipeConn, *PipeConn) {
	a := &PipeConn{in: make(chan []byte, 64), wake: make(chan struct{}), closed: make(chan struct{})}
	b := &PipeConn{in: make(chan []byte, 64), wake: make(chan struct{}), closed: make(chan struct{})}
	a.peer, b.peer = b, a
	return a, b
}

// ReadFrame implements Conn.
func (p *PipeConn) ReadFrame(b []byte) (int, error) {
	for {
		p.mu.Lock()
		deadline, wake := p.deadline, p.wake
		p.mu.Unlock()
		n, err, again := p.readOnce(b, deadline, wake)
		if !again {
			return n, err
		}
	}
}

// readOnce waits for a frame, the deadline, Close or a deadline change
// (again: wait anew).
func (p *PipeConn) readOnce(b []byte, deadline time.Time, wake chan struct{}) (n int, err error, again bool) {
	var timer <-chan time.Time
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			return 0, os.ErrDeadlineExceeded, false
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case f := <-p.in:
		return copy(b, f), nil, false
	case <-p.closed:
		return 0, net.ErrClosed, false
	case <-timer:
		return 0, os.ErrDeadlineExceeded, false
	case <-wake:
		return 0, nil, true
	}
}

// WriteFrame implements Conn. It fails once either end is closed.
func (p *PipeConn) WriteFrame(b []byte) error {
	select {
	case <-p.closed:
		return net.ErrClosed
	case <-p.peer.closed:
		return net.ErrClosed
	default:
	}
	f := append([]byte(nil), b...)
	select {
	case p.peer.in <- f:
		return nil
	case <-p.closed:
		return net.ErrClosed
	case <-p.peer.closed:
		return net.ErrClosed
	}
}

// SetReadDeadline implements Conn.
func (p *PipeConn) SetReadDeadline(t time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deadline = t
	close(p.wake)
	p.wake = make(chan struct{})
	return nil
}

// Close implements Conn.
func (p *PipeConn) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// ErrTruncated reports a frame shorter than its headers claim.
var ErrTruncated = errors.New("frame truncated")
