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
)

// udpTransport serves on a UDP socket bound to [::]:547 that joined
// All_DHCP_Relay_Agents_and_Servers on the bridge (RFC 8415 §7.1). The
// bridge also hears the uplink, so only datagrams that arrived on it and
// whose content names the VM are answered.
type udpTransport struct {
	pc      *ipv6.PacketConn
	ifIndex int
	cm      ipv6.ControlMessage // reused for every reply
}

// NewUDPServer opens the UDP transport on the bridge ifname, in the calling
// goroutine's network namespace; it needs no CAP_NET_RAW but must bind port
// 547. The bridge needs a non-tentative IPv6 link-local address to send
// from. Run closes the socket.
func NewUDPServer(h *Handler, ifname string, log *slog.Logger) (*Server, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("failed to find DHCPv6 link %q: %w", ifname, err)
	}
	pc, err := listenUDP(ifi)
	if err != nil {
		return nil, err
	}
	t := &udpTransport{pc: pc, ifIndex: ifi.Index}
	t.cm.IfIndex = ifi.Index
	return newServer(h, t, log), nil
}

// listenUDP binds [::]:547 and joins ff02::1:2 on ifi. It binds to no
// device (SO_BINDTODEVICE needs CAP_NET_RAW); the ingress interface filters.
func listenUDP(ifi *net.Interface) (*ipv6.PacketConn, error) {
	// No SO_REUSEADDR: a second server on the port (KubeVirt's own, a
	// dnsmasq) must be an error, not a silent race for the requests.
	c, err := net.ListenPacket("udp6", fmt.Sprintf("[::]:%d", serverPort))
	switch {
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("failed to bind DHCPv6 server port %d: %w (grant CAP_NET_BIND_SERVICE, "+
			"or lower sysctl net.ipv4.ip_unprivileged_port_start to %d in the pod, as the dsbridge binding CNI does)",
			serverPort, err, serverPort)
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("failed to bind DHCPv6 server port %d: %w (another DHCPv6 server runs in this network namespace)",
			serverPort, err)
	case err != nil:
		return nil, fmt.Errorf("failed to bind DHCPv6 server port %d: %w", serverPort, err)
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
	return pc, nil
}

func (u *udpTransport) check() error { return nil }

func (u *udpTransport) receive(buf []byte) (request, error) {
	n, cm, src, err := u.pc.ReadFrom(buf)
	if err != nil {
		return request{}, err
	}
	ua, ok := src.(*net.UDPAddr)
	if !ok {
		return request{drop: OutcomeMalformed, reason: "no source address"}, nil
	}
	req := request{payload: buf[:n], src: udpSource(ua), srcPort: uint16(ua.Port), udpPeer: ua}
	if cm == nil || cm.IfIndex != u.ifIndex {
		req.drop, req.reason = OutcomeNotVM, "arrived on another interface"
	}
	return req, nil
}

// udpSource is the address of ua without its zone.
func udpSource(ua *net.UDPAddr) netip.Addr {
	a, _ := netip.AddrFromSlice(ua.IP)
	return a.Unmap()
}

// send replies through the bridge the request came in on.
func (u *udpTransport) send(req request, payload []byte) error {
	_, err := u.pc.WriteTo(payload, &u.cm, req.udpPeer)
	return err
}

func (u *udpTransport) setReadDeadline(t time.Time) error { return u.pc.SetReadDeadline(t) }

func (u *udpTransport) close() error { return u.pc.Close() }
