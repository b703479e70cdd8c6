// Package pktinfo reads and writes the packet-information control messages
// of UDP sockets (IP_PKTINFO, ip(7); IPV6_PKTINFO, RFC 3542 §6.1) without
// allocating: the DHCP servers' UDP transports read the ingress interface
// and destination of every request, and send every reply out of one
// interface.
package pktinfo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sizes of the control messages a socket receives with IP_PKTINFO or
// IPV6_RECVPKTINFO on: room for one of either.
var (
	space4 = unix.CmsgSpace(unix.SizeofInet4Pktinfo)
	space6 = unix.CmsgSpace(unix.SizeofInet6Pktinfo)
)

// Parse returns the ingress interface and destination address in oob, the
// control messages of one received datagram; ok is false without packet
// information.
func Parse(oob []byte) (ifindex int, dst netip.Addr, ok bool) {
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0, netip.Addr{}, false
		}
		switch {
		case h.Level == unix.SOL_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo: ipi_ifindex, ipi_spec_dst, ipi_addr (the
			// header's destination).
			return int(int32(binary.NativeEndian.Uint32(data))), netip.AddrFrom4([4]byte(data[8:12])), true
		case h.Level == unix.SOL_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			// struct in6_pktinfo: ipi6_addr, ipi6_ifindex.
			return int(binary.NativeEndian.Uint32(data[16:20])), netip.AddrFrom16([16]byte(data[:16])), true
		}
		oob = rest
	}
	return 0, netip.Addr{}, false
}

// Out4 is the control message that sends a datagram out of ifindex from
// src (unset: the kernel's choice), as IP_PKTINFO (ip(7)).
func Out4(ifindex int, src netip.Addr) []byte {
	b := header(unix.SOL_IP, unix.IP_PKTINFO, unix.SizeofInet4Pktinfo)
	data := b[unix.CmsgLen(0):]
	binary.NativeEndian.PutUint32(data, uint32(int32(ifindex)))
	if src.Is4() {
		a := src.As4()
		copy(data[4:8], a[:])
	}
	return b
}

// Out6 is the control message that sends a datagram out of ifindex, as
// IPV6_PKTINFO (RFC 3542 §6.1), the source left to the kernel.
func Out6(ifindex int) []byte {
	b := header(unix.SOL_IPV6, unix.IPV6_PKTINFO, unix.SizeofInet6Pktinfo)
	binary.NativeEndian.PutUint32(b[unix.CmsgLen(0)+16:], uint32(ifindex))
	return b
}

// header is one control message of level and type with room for n bytes
// of data.
func header(level, typ int32, n int) []byte {
	b := make([]byte, unix.CmsgSpace(n))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(n))
	return b
}

// Writer sends datagrams from a UDP socket with one control message,
// without allocating: sendmsg(2) from buffers it owns. One goroutine
// writes.
type Writer struct {
	raw     syscall.RawConn
	family  uint16
	msg     unix.Msghdr
	iov     unix.Iovec
	to      unix.RawSockaddrInet6 // room for either family's address
	oob     []byte
	err     error
	writeFn func(fd uintptr) bool
}

// NewWriter sends from c (of family AF_INET or AF_INET6) with the control
// message oob (Out4, Out6) on every datagram.
func NewWriter(c *net.UDPConn, family uint16, oob []byte) (*Writer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("failed to read the UDP socket's descriptor: %w", err)
	}
	w := &Writer{raw: raw, family: family, oob: oob}
	w.writeFn = w.sendmsg
	return w, nil
}

// sendmsg sends the datagram iov describes; false: not yet (the socket's
// buffer is full: the runtime waits).
func (w *Writer) sendmsg(fd uintptr) bool {
	namelen := uint32(unix.SizeofSockaddrInet6)
	if w.family == unix.AF_INET {
		namelen = unix.SizeofSockaddrInet4
	}
	w.msg = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&w.to)), Namelen: namelen, Iov: &w.iov, Control: &w.oob[0]}
	w.msg.Iovlen = 1
	w.msg.SetControllen(len(w.oob))
	// Raw, as Reader's recvmsg: the descriptor never blocks.
	_, _, errno := unix.RawSyscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&w.msg)), 0)
	w.err = nil
	if errno != 0 {
		w.err = errno
	}
	return errno != unix.EAGAIN
}

// Write sends b to to (an address of the socket's family, no zone: the
// control message names the interface).
func (w *Writer) Write(b []byte, to netip.AddrPort) error {
	if len(b) == 0 {
		return errors.New("empty datagram")
	}
	w.to = unix.RawSockaddrInet6{}
	port := htons(to.Port())
	switch {
	case w.family == unix.AF_INET && to.Addr().Is4():
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&w.to))
		sa.Family, sa.Port, sa.Addr = unix.AF_INET, port, to.Addr().As4()
	case w.family == unix.AF_INET6 && to.Addr().Is6():
		w.to.Family, w.to.Port, w.to.Addr = unix.AF_INET6, port, to.Addr().As16()
	default:
		return fmt.Errorf("cannot send to %v from a socket of family %d", to, w.family)
	}
	w.iov.Base = &b[0]
	w.iov.SetLen(len(b))
	err := w.raw.Write(w.writeFn)
	w.iov.Base = nil
	if err == nil {
		err = w.err
	}
	return err
}

// htons is a port in network byte order, as a sockaddr holds it.
func htons(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return *(*uint16)(unsafe.Pointer(&b))
}

// Reader reads datagrams from a UDP socket with their source, ingress
// interface and destination, without allocating: recvmsg(2) into buffers
// it owns, and no interface name looked up for a link-local source (the
// net package would look one up per datagram, in a process-wide cache
// that knows the interfaces of one network namespace). One goroutine
// reads.
type Reader struct {
	raw    syscall.RawConn
	msg    unix.Msghdr
	iov    unix.Iovec
	from   unix.RawSockaddrAny
	oob    []byte
	n      int
	err    error
	readFn func(fd uintptr) bool
}

// NewReader reads from c, whose packet information the caller turned on.
func NewReader(c *net.UDPConn) (*Reader, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("failed to read the UDP socket's descriptor: %w", err)
	}
	r := &Reader{raw: raw, oob: make([]byte, max(space4, space6))}
	r.readFn = r.recvmsg
	return r, nil
}

// recvmsg receives one datagram into iov; false: none yet (the runtime
// waits for the socket to be readable, or the deadline).
func (r *Reader) recvmsg(fd uintptr) bool {
	r.msg = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&r.from)), Namelen: unix.SizeofSockaddrAny, Iov: &r.iov,
		Control: &r.oob[0]}
	r.msg.Iovlen = 1
	r.msg.SetControllen(len(r.oob))
	// Raw: the descriptor never blocks (the network poller waits), and a
	// system call entered the runtime's way wakes its monitor thread
	// whenever the process was idle.
	n, _, errno := unix.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&r.msg)), 0)
	r.n, r.err = int(n), nil
	if errno != 0 {
		r.n, r.err = 0, errno
	}
	return errno != unix.EAGAIN
}

// Read reads one datagram into b: its length, source (no zone), ingress
// interface and destination; ifindex is 0 and dst invalid without packet
// information.
func (r *Reader) Read(b []byte) (n int, src netip.AddrPort, ifindex int, dst netip.Addr, err error) {
	if len(b) == 0 {
		return 0, netip.AddrPort{}, 0, netip.Addr{}, errors.New("empty read buffer")
	}
	r.iov.Base = &b[0]
	r.iov.SetLen(len(b))
	err = r.raw.Read(r.readFn)
	r.iov.Base = nil
	if err == nil {
		err = r.err
	}
	if err != nil {
		return 0, netip.AddrPort{}, 0, netip.Addr{}, err
	}
	ifindex, dst, _ = Parse(r.oob[:r.msg.Controllen])
	return r.n, r.source(), ifindex, dst, nil
}

// source is the datagram's source address and port.
func (r *Reader) source() netip.AddrPort {
	switch r.from.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.from))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&r.from))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// ntohs reads a port stored in network byte order.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return binary.BigEndian.Uint16(b[:])
}
