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

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/internal/pktinfo"
	"github.com/dsbridge/dsbridge/dhcp/serve"
)

// udpTransport is a UDP socket on 0.0.0.0:67 that takes only what arrived on
// one interface (the bridge) and sends through it.
type udpTransport struct {
	conn    *net.UDPConn
	ifindex int
	guarded bool // the uplink guard proves what arrives came from the VM's port
	in      *pktinfo.Reader
	out     *pktinfo.Writer // every reply out of ifindex, from the server identifier when local (IP_PKTINFO)
}

var _ serve.Transport = (*udpTransport)(nil)

// NewUDPServer serves h on a UDP socket bound to port 67, keeping only the
// requests that came in through ifname (the bridge the VM's tap is enslaved
// to, by IP_PKTINFO), and replying through ifname. It needs no NET_RAW, but
// port 67 needs CAP_NET_BIND_SERVICE or net.ipv4.ip_unprivileged_port_start
// <= 67.
//
// The bridge also carries the pod's uplink, and through a UDP socket the
// pod's kernel picks the link-layer destination (by ARP, from the bridge)
// and may route a reply out of the uplink. So the socket never sends to an
// address a request chose: every reply is broadcast on the bridge
// (255.255.255.255:68, which every client accepts in every state), a
// relayed request is not answered (its reply would go to giaddr), and
// replies carry the server identifier as their source when it is a local
// address of the pod (the binding CNI makes 169.254.75.0/24 local), never
// the VM's own address.
//
// guarded says the binding CNI's uplink guard closes the bridge to the
// uplink: then every request on the bridge came from the VM's port.
func NewUDPServer(h *Handler, ifname string, guarded bool, log *slog.Logger) (*serve.Server, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("failed to find DHCPv4 interface %q: %w", ifname, err)
	}
	conn, err := listenUDP4()
	if err != nil {
		return nil, err
	}
	if err := ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("failed to enable IP_PKTINFO on the DHCPv4 socket: %w", err)
	}
	in, err := pktinfo.NewReader(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("failed to open the DHCPv4 socket: %w", err)
	}
	src := netip.Addr{}
	if isLocal(h.sid) {
		src = h.sid
	} else if log != nil {
		log.Warn("the DHCPv4 server identifier is not a local address of the pod: replies carry the address the kernel picks, "+
			"which may be the VM's own; attach the dsbridge binding CNI, which makes 169.254.75.0/24 local",
			"serverID", h.sid)
	}
	out, err := pktinfo.NewWriter(conn, unix.AF_INET, pktinfo.Out4(ifi.Index, src))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("failed to open the DHCPv4 socket: %w", err)
	}
	t := &udpTransport{conn: conn, ifindex: ifi.Index, guarded: guarded, in: in, out: out}
	return serve.New(serverName, t, h.serveWith(udpRoute), DefaultLimit, log), nil
}

// listenUDP4 binds 0.0.0.0:67 with SO_BROADCAST.
func listenUDP4() (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1) })
		return errors.Join(err, serr)
	}}
	conn, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", frame.PortDHCPv4Server))
	switch {
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("failed to bind DHCPv4 port %d: %w (needs CAP_NET_BIND_SERVICE, or "+
			"sysctl net.ipv4.ip_unprivileged_port_start <= %d in the pod network namespace, which the dsbridge binding CNI plugin sets)",
			frame.PortDHCPv4Server, err, frame.PortDHCPv4Server)
	case err != nil:
		return nil, fmt.Errorf("failed to bind DHCPv4 port %d: %w", frame.PortDHCPv4Server, err)
	}
	return conn.(*net.UDPConn), nil // a "udp4" listener is one
}

// isLocal reports whether a may be the source of a datagram sent from this
// network namespace: the kernel lets a socket bind only to a local address
// (an interface address, or one a local route covers).
func isLocal(a netip.Addr) bool {
	c, err := net.ListenPacket("udp4", netip.AddrPortFrom(a, 0).String())
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// udpRoute broadcasts every reply on the bridge and refuses a relayed
// request: through a UDP socket, a unicast would go wherever the request
// said, possibly out of the uplink.
func udpRoute(d Dest) (netip.AddrPort, frame.MAC, string) {
	if d.Kind == DestRelay {
		return netip.AddrPort{}, frame.MAC{}, "a relayed request: the reply would go to giaddr, an address the request chose"
	}
	return netip.AddrPortFrom(limitedBroadcast, frame.PortDHCPv4Client), frame.MAC{}, ""
}

func (t *udpTransport) Receive(buf []byte) (serve.Packet, error) {
	n, src, ifindex, dst, err := t.in.Read(buf)
	if err != nil {
		return serve.Packet{}, err
	}
	p := serve.Packet{Data: buf[:n], FromVM: t.guarded, Src: src}
	if ifindex != t.ifindex {
		p.Drop, p.Detail = serve.NotForServer, "arrived on another interface"
		return p, nil
	}
	p.Dst = dst.Unmap()
	return p, nil
}

func (t *udpTransport) Send(_ serve.Packet, r serve.Reply) error { return t.out.Write(r.Data, r.To) }

func (t *udpTransport) SetReadDeadline(d time.Time) error { return t.conn.SetReadDeadline(d) }

// SetReadBuffer implements serve.ReadBufferSetter.
func (t *udpTransport) SetReadBuffer(bytes int) error { return t.conn.SetReadBuffer(bytes) }

func (t *udpTransport) Close() error { return t.conn.Close() }
