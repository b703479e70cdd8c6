package dhcp6

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
)

// packetTransport serves on the VM's tap through a frame.Conn: it sees only
// the VM's frames, and what it sends reaches only the VM.
type packetTransport struct {
	conn   frame.Conn
	vmMAC  frame.MAC
	srcMAC frame.MAC
	srcIP  netip.Addr
	out    []byte // reused for every reply frame
}

var _ serve.Transport = (*packetTransport)(nil)

// NewPacketServer serves the VM over conn, a frame link to the VM (see
// frame.Listen with Kind KindDHCPv6 and the VM's MAC as SrcMAC). Replies go
// from h's ServerLinkLocal and ServiceMAC to the requester's MAC and
// address: they can reach nothing but the VM. The server owns conn.
func NewPacketServer(h *Handler, conn frame.Conn, log *slog.Logger) *serve.Server {
	return newServer(h, &packetTransport{
		conn:   conn,
		vmMAC:  h.cfg.VMMAC,
		srcMAC: h.cfg.ServiceMAC,
		srcIP:  h.cfg.ServerLinkLocal,
		out:    make([]byte, 0, 1500),
	}, log)
}

func (p *packetTransport) Receive(buf []byte) (serve.Packet, error) {
	n, err := p.conn.ReadFrame(buf)
	if err != nil {
		return serve.Packet{}, err
	}
	return p.parse(buf[:n]), nil
}

// parse checks that b is a request from the VM to a DHCPv6 server.
func (p *packetTransport) parse(b []byte) serve.Packet {
	u, err := frame.ParseUDP6(b)
	if err != nil {
		return serve.Packet{Drop: serve.Malformed, Detail: "not a valid IPv6 UDP frame: " + err.Error()}
	}
	req := serve.Packet{Data: u.Payload, Src: netip.AddrPortFrom(u.Src, u.SrcPort), Dst: u.Dst, SrcMAC: u.Eth.Src, FromVM: true}
	switch {
	case u.Eth.Src != p.vmMAC:
		req.FromVM = false
		req.Drop, req.Detail = serve.NotVM, "Ethernet source is not the VM"
	case u.DstPort != frame.PortDHCPv6Server:
		req.Drop, req.Detail = serve.NotForServer, "not sent to the DHCPv6 server port"
	case !u.Src.IsLinkLocalUnicast() && !u.Src.IsGlobalUnicast():
		req.Drop, req.Detail = serve.Malformed, "source address cannot be answered"
	case u.Dst != allRelaysAndServers && u.Dst != allServers && u.Dst != p.srcIP:
		req.Drop, req.Detail = serve.NotForServer, "sent to another host"
	}
	return req
}

// Send answers from our link-local address and MAC to the requester's
// address, port and MAC.
func (p *packetTransport) Send(req serve.Packet, r serve.Reply) error {
	p.out = frame.AppendUDP6(p.out[:0], frame.UDP6{
		Eth:     frame.Ethernet{Dst: req.SrcMAC, Src: p.srcMAC},
		Src:     p.srcIP,
		Dst:     r.To.Addr(),
		SrcPort: frame.PortDHCPv6Server,
		DstPort: r.To.Port(),
		Payload: r.Data,
	})
	return p.conn.WriteFrame(p.out)
}

func (p *packetTransport) SetReadDeadline(t time.Time) error { return p.conn.SetReadDeadline(t) }

// SetReadBuffer implements serve.ReadBufferSetter when the link's Conn
// does.
func (p *packetTransport) SetReadBuffer(bytes int) error {
	if b, ok := p.conn.(serve.ReadBufferSetter); ok {
		return b.SetReadBuffer(bytes)
	}
	return nil
}

func (p *packetTransport) Close() error { return p.conn.Close() }
