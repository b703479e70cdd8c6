package dhcp4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// udpTransport is a UDP socket on 0.0.0.0:67 that takes only what arrived on
// one interface (the bridge) and sends through it.
type udpTransport struct {
	conn    net.PacketConn
	pc      *ipv4.PacketConn
	ifindex int
	src     net.IP // the server identifier when it is a local address, else nil
}

// NewUDPServer serves h on a UDP socket bound to port 67, keeping only the
// requests that came in through ifname (the bridge the VM's tap is enslaved
// to, by IP_PKTINFO) from the VM's chaddr, and replying through ifname. It
// needs no NET_RAW, but port 67 needs CAP_NET_BIND_SERVICE or
// net.ipv4.ip_unprivileged_port_start <= 67. It cannot unicast to a client
// without an address, so such replies are broadcast (as KubeVirt's do), and
// it cannot answer ARP for the server identifier. Close releases the socket.
func NewUDPServer(h *Handler, ifname string, log *slog.Logger) (*Server, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("failed to find DHCPv4 interface %q: %w", ifname, err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1) })
		return errors.Join(err, serr)
	}}
	conn, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", ServerPort))
	if errors.Is(err, syscall.EACCES) {
		return nil, fmt.Errorf("failed to bind DHCPv4 port %d: %w (needs CAP_NET_BIND_SERVICE, or "+
			"sysctl net.ipv4.ip_unprivileged_port_start <= %d in the pod network namespace, which the dsbridge binding CNI plugin sets)",
			ServerPort, err, ServerPort)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to bind DHCPv4 port %d: %w", ServerPort, err)
	}
	pc := ipv4.NewPacketConn(conn)
	if err := pc.SetControlMessage(ipv4.FlagInterface, true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("failed to enable IP_PKTINFO on the DHCPv4 socket: %w", err)
	}
	u := &udpTransport{conn: conn, pc: pc, ifindex: ifi.Index}
	if isLocal(h.sid) {
		u.src = net.IP(h.sidOpt)
	}
	s := NewPacketServer(h, nil, log)
	s.udp = u
	return s, nil
}

// isLocal reports whether a is assigned to an interface in this network
// namespace: only then may replies carry it as their source.
func isLocal(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if b, ok := netip.AddrFromSlice(n.IP); ok && b.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// Close releases the socket of a server made by NewUDPServer. A packet
// server's conn belongs to its caller: Close leaves it alone.
func (s *Server) Close() error {
	if s.udp == nil {
		return nil
	}
	return s.udp.conn.Close()
}

func (s *Server) runUDP(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		if err := s.udp.conn.SetReadDeadline(time.Unix(1, 0)); err != nil {
			s.log.Warn("failed to interrupt the DHCPv4 read", "error", err)
		}
	})
	defer stop()
	for {
		n, cm, _, err := s.udp.pc.ReadFrom(s.in)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if err := s.readFailed(ctx, err); err != nil {
				return err
			}
			continue
		}
		s.readFailing = false
		if cm == nil || cm.IfIndex != s.udp.ifindex {
			s.observe(Event{Drop: DropNotForServer}, time.Now())
			continue
		}
		s.serveDatagram(s.in[:n])
	}
}

// chaddrOffset is where the client hardware address starts in a DHCP message
// (RFC 2131 section 2, figure 1).
const chaddrOffset = 28

// serveDatagram handles one request that arrived on the bridge.
func (s *Server) serveDatagram(in []byte) {
	start := time.Now()
	payload, dst, ev := s.recoverDatagram(in, start)
	if payload != nil {
		cm := &ipv4.ControlMessage{IfIndex: s.udp.ifindex, Src: s.udp.src}
		if _, err := s.udp.pc.WriteTo(payload, cm, dst); err != nil {
			s.sendFailed(err)
			ev.Reply, ev.Drop = dhcpv4.MessageTypeNone, DropSendFailed
		} else {
			s.sendFailing = false
		}
	}
	s.observe(ev, start)
}

func (s *Server) recoverDatagram(in []byte, now time.Time) (payload []byte, dst *net.UDPAddr, ev Event) {
	defer func() {
		if r := recover(); r != nil {
			s.logPanic("recovered from a panic while handling a DHCPv4 datagram", r, now)
			payload, dst, ev = nil, nil, Event{Drop: DropPanic}
		}
	}()
	return s.handleDatagram(in, now)
}

// handleDatagram answers one request: the payload to send and where to.
func (s *Server) handleDatagram(in []byte, now time.Time) ([]byte, *net.UDPAddr, Event) {
	var mac []byte
	if len(in) >= chaddrOffset+6 {
		mac = in[chaddrOffset : chaddrOffset+6]
	}
	if !s.lim.allow(mac, now) {
		return nil, nil, Event{Drop: DropRateLimited}
	}
	req, err := dhcpv4.FromBytes(in)
	if err != nil {
		return nil, nil, Event{Drop: DropMalformed}
	}
	reply, dest := s.h.Handle(req)
	ev := Event{Type: req.MessageType(), Drop: dest.Drop, XID: xidOf(req)}
	if reply == nil {
		return nil, nil, ev
	}
	ev.Reply = reply.MessageType()
	dst := &net.UDPAddr{IP: net.IPv4bcast, Port: ClientPort}
	switch {
	case dest.Kind == DestRelay:
		dst = &net.UDPAddr{IP: dest.IP.AsSlice(), Port: int(dest.Port)}
	case dest.Kind == DestUnicast && !addr4(req.ClientIPAddr).IsUnspecified():
		// The client has its address: ARP works. A client without one
		// would need an ARP entry the kernel cannot know, so it gets a
		// broadcast.
		dst = &net.UDPAddr{IP: dest.IP.AsSlice(), Port: int(dest.Port)}
	}
	return reply.ToBytes(), dst, ev
}
