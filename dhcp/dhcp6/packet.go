package dhcp6

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// Destinations a client's request may have (RFC 8415 §7.1).
var (
	allRelaysAndServers = netip.MustParseAddr("ff02::1:2")
	allServers          = netip.MustParseAddr("ff05::1:3")
)

// packetTransport serves on the VM's tap through a frame.Conn: it sees only
// the VM's frames, and what it sends reaches only the VM.
type packetTransport struct {
	conn   frame.Conn
	vmMAC  net.HardwareAddr
	srcMAC net.HardwareAddr
	srcIP  netip.Addr
	out    []byte // reused for every reply frame
}

// NewPacketServer serves the VM over conn, a frame link to the VM (see
// frame.Listen with Kind KindDHCPv6 and the VM's MAC as SrcMAC). Replies go
// from h's ServerLinkLocal and ServiceMAC to the requester's MAC and address;
// Run fails at once when the Config has no ServiceMAC. Run leaves conn open.
func NewPacketServer(h *Handler, conn frame.Conn, log *slog.Logger) *Server {
	return newServer(h, &packetTransport{
		conn:   conn,
		vmMAC:  h.cfg.VMMAC,
		srcMAC: h.cfg.ServiceMAC,
		srcIP:  h.cfg.ServerLinkLocal,
		out:    make([]byte, 0, 1500),
	}, log)
}

var errNoServiceMAC = errors.New("the DHCPv6 packet transport needs a service MAC and link-local address")

func (p *packetTransport) check() error {
	if p.srcMAC == nil || !p.srcIP.IsValid() {
		return errNoServiceMAC
	}
	return nil
}

func (p *packetTransport) receive(buf []byte) (request, error) {
	n, err := p.conn.ReadFrame(buf)
	if err != nil {
		return request{}, err
	}
	return p.parse(buf[:n]), nil
}

// parse checks that b is a request from the VM to a DHCPv6 server.
func (p *packetTransport) parse(b []byte) request {
	u, err := frame.ParseUDP6(b)
	if err != nil {
		return request{drop: OutcomeMalformed, reason: "not a valid IPv6 UDP frame: " + err.Error()}
	}
	req := request{payload: u.Payload, src: u.Src, srcPort: u.SrcPort, srcMAC: u.Eth.Src, vm: true}
	switch {
	case !bytes.Equal(u.Eth.Src, p.vmMAC):
		req.drop, req.reason = OutcomeNotVM, "Ethernet source is not the VM"
	case u.DstPort != serverPort:
		req.drop, req.reason = OutcomeMalformed, "not sent to the DHCPv6 server port"
	case !u.Src.IsLinkLocalUnicast() && !u.Src.IsGlobalUnicast():
		req.drop, req.reason = OutcomeMalformed, "source address cannot be answered"
	case u.Dst != allRelaysAndServers && u.Dst != allServers && u.Dst != p.srcIP:
		req.drop, req.reason = OutcomeMalformed, "sent to another host"
	}
	return req
}

// send answers from our link-local address and MAC to the requester's
// address, port and MAC.
func (p *packetTransport) send(req request, payload []byte) error {
	p.out = frame.AppendUDP6(p.out[:0], frame.UDP6{
		Eth:     frame.Ethernet{Dst: req.srcMAC, Src: p.srcMAC},
		Src:     p.srcIP,
		Dst:     req.src,
		SrcPort: serverPort,
		DstPort: req.srcPort,
		Payload: payload,
	})
	return p.conn.WriteFrame(p.out)
}

func (p *packetTransport) setReadDeadline(t time.Time) error { return p.conn.SetReadDeadline(t) }

func (p *packetTransport) close() error { return nil }
