package dhcp6

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/internal/pktinfo"
	"github.com/dsbridge/dsbridge/dhcp/serve"
)

// udpTransport serves on a UDP socket bound to [::]:547 that joined
// All_DHCP_Relay_Agents_and_Servers on the bridge (RFC 8415 §7.1).
type udpTransport struct {
	conn    *net.UDPConn
	ifIndex int
	guarded bool // the uplink guard proves what arrives came from the VM's port
	in      *pktinfo.Reader
	out     *pktinfo.Writer // every reply out of the bridge (IPV6_PKTINFO)
}

var _ serve.Transport = (*udpTransport)(nil)

// NewUDPServer opens the UDP transport on the bridge ifname, in the calling
// goroutine's network namespace; it needs no CAP_NET_RAW but must bind port
// 547. The bridge needs a non-tentative IPv6 link-local address to send
// from.
//
// The bridge also carries the pod's uplink, and through a UDP socket the
// pod's kernel resolves and routes the destination itself. So the socket
// answers only a client on the link: a request from a link-local address
// and the client port 546 (RFC 8415 §7.2), whose reply stays on the
// bridge; a relayed message, or one from a global address or another port,
// would send the reply where the request chose, and is not answered.
//
// guarded says the binding CNI's uplink guard closes the bridge to the
// uplink: then every request on the bridge came from the VM's port and is
// answered whatever its DUID (without the guard, only a request that names
// the VM's MAC is: vmFilter).
func NewUDPServer(h *Handler, ifname string, guarded bool, log *slog.Logger) (*serve.Server, error) {
	t, err := newUDPTransport(ifname, guarded)
	if err != nil {
		return nil, err
	}
	return newServer(h, t, log), nil
}

// newUDPTransport opens the server's socket on ifname.
func newUDPTransport(ifname string, guarded bool) (*udpTransport, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("failed to find DHCPv6 link %q: %w", ifname, err)
	}
	conn, err := listenUDP(ifi)
	if err != nil {
		return nil, err
	}
	in, err := pktinfo.NewReader(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("failed to open the DHCPv6 socket: %w", err)
	}
	out, err := pktinfo.NewWriter(conn, unix.AF_INET6, pktinfo.Out6(ifi.Index))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("failed to open the DHCPv6 socket: %w", err)
	}
	return &udpTransport{conn: conn, ifIndex: ifi.Index, guarded: guarded, in: in, out: out}, nil
}

// listenUDP binds [::]:547 and joins ff02::1:2 on ifi. It binds to no
// device (SO_BINDTODEVICE needs CAP_NET_RAW); the ingress interface filters.
func listenUDP(ifi *net.Interface) (*net.UDPConn, error) {
	// No SO_REUSEADDR: a second server on the port (KubeVirt's own, a
	// dnsmasq) must be an error, not a silent race for the requests.
	c, err := net.ListenPacket("udp6", fmt.Sprintf("[::]:%d", frame.PortDHCPv6Server))
	switch {
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("failed to bind DHCPv6 server port %d: %w (grant CAP_NET_BIND_SERVICE, "+
			"or lower sysctl net.ipv4.ip_unprivileged_port_start to %d in the pod, as the dsbridge binding CNI does)",
			frame.PortDHCPv6Server, err, frame.PortDHCPv6Server)
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("failed to bind DHCPv6 server port %d: %w (another DHCPv6 server runs in this network namespace)",
			frame.PortDHCPv6Server, err)
	case err != nil:
		return nil, fmt.Errorf("failed to bind DHCPv6 server port %d: %w", frame.PortDHCPv6Server, err)
	}
	pc := ipv6.NewPacketConn(c)
	if err := pc.JoinGroup(ifi, &net.UDPAddr{IP: net.IP(allRelaysAndServers.AsSlice())}); err != nil {
		c.Close()
		return nil, fmt.Errorf("failed to join %s on %q: %w", allRelaysAndServers, ifi.Name, err)
	}
	if err := pc.SetControlMessage(ipv6.FlagInterface|ipv6.FlagDst, true); err != nil {
		c.Close()
		return nil, fmt.Errorf("failed to request IPV6_PKTINFO on DHCPv6 socket: %w", err)
	}
	return c.(*net.UDPConn), nil // a "udp6" listener is one
}

func (u *udpTransport) Receive(buf []byte) (serve.Packet, error) {
	n, src, ifindex, dst, err := u.in.Read(buf)
	if err != nil {
		return serve.Packet{}, err
	}
	p := serve.Packet{Data: buf[:n], FromVM: u.guarded, Src: src, Dst: dst}
	switch {
	case ifindex != u.ifIndex:
		p.Drop, p.Detail = serve.NotForServer, "arrived on another interface"
	case udpVerdict(p.Src) != "":
		p.Drop, p.Detail = udpVerdict(p.Src), "not from a link-local address and the client port: the reply would go where the request chose"
	}
	return p, nil
}

// udpVerdict is why a request from src is not answered over UDP, or "":
// only a client on the link, at a link-local address and the client port
// (RFC 8415 §7.2), gets a reply that stays on the bridge.
func udpVerdict(src netip.AddrPort) serve.Reason {
	if !src.Addr().IsLinkLocalUnicast() || src.Port() != frame.PortDHCPv6Client {
		return serve.NotForServer
	}
	return ""
}

// Send replies through the bridge the request came in on, to the client's
// link-local address (zoned by the control message's interface).
func (u *udpTransport) Send(_ serve.Packet, r serve.Reply) error { return u.out.Write(r.Data, r.To) }

func (u *udpTransport) SetReadDeadline(t time.Time) error { return u.conn.SetReadDeadline(t) }

// SetReadBuffer implements serve.ReadBufferSetter.
func (u *udpTransport) SetReadBuffer(bytes int) error { return u.conn.SetReadBuffer(bytes) }

func (u *udpTransport) Close() error { return u.conn.Close() }
