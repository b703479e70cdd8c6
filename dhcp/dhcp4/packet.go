package dhcp4

import (
	"net/netip"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
)

// packetTransport serves on the VM's tap through a frame.Conn: it sees only
// the VM's frames, and what it sends reaches only the VM.
type packetTransport struct {
	conn       frame.Conn
	vmMAC      frame.MAC
	serviceMAC frame.MAC
	sid        netip.Addr
	out        []byte // reused for every reply frame
}

var _ serve.Transport = (*packetTransport)(nil)

func (t *packetTransport) Receive(buf []byte) (serve.Packet, error) {
	n, err := t.conn.ReadFrame(buf)
	if err != nil {
		return serve.Packet{}, err
	}
	return t.parse(buf[:n]), nil
}

// parse checks that b is an ARP request or a DHCP request from the VM to
// this server.
func (t *packetTransport) parse(b []byte) serve.Packet {
	eth, err := frame.ParseEthernet(b)
	switch {
	case err != nil:
		return serve.Packet{Drop: serve.Malformed, Detail: err.Error()}
	case eth.Src != t.vmMAC:
		return serve.Packet{SrcMAC: eth.Src, Drop: serve.NotVM, Detail: "Ethernet source is not the VM"}
	case eth.Type == frame.EtherTypeARP:
		_, a, err := frame.ParseARP(b)
		if err != nil {
			return serve.Packet{SrcMAC: eth.Src, Drop: serve.Malformed, Detail: err.Error()}
		}
		return serve.Packet{SrcMAC: eth.Src, FromVM: true, ARP: &a}
	}
	u, err := frame.ParseUDP4(b)
	p := serve.Packet{Data: u.Payload, Src: netip.AddrPortFrom(u.Src, u.SrcPort), Dst: u.Dst, SrcMAC: eth.Src, FromVM: true}
	switch {
	case err != nil:
		p.Drop, p.Detail = serve.Malformed, err.Error()
	case u.DstPort != frame.PortDHCPv4Server || (u.Dst != limitedBroadcast && u.Dst != t.sid):
		p.Drop, p.Detail = serve.NotForServer, "not sent to the server's port at the broadcast address or the server identifier"
	}
	return p
}

// Send writes the reply frame from the service MAC and the server
// identifier; an ARP reply goes back to the asker.
func (t *packetTransport) Send(p serve.Packet, r serve.Reply) error {
	if r.ARP != nil {
		t.out = frame.AppendARP(t.out[:0], frame.Ethernet{Dst: p.SrcMAC, Src: t.serviceMAC}, *r.ARP)
		return t.conn.WriteFrame(t.out)
	}
	dst := r.MAC
	if dst.IsZero() {
		dst = p.SrcMAC
	}
	t.out = frame.AppendUDP4(t.out[:0], frame.UDP4{
		Eth: frame.Ethernet{Dst: dst, Src: t.serviceMAC},
		Src: t.sid, Dst: r.To.Addr(), SrcPort: frame.PortDHCPv4Server, DstPort: r.To.Port(),
		Payload: r.Data,
	})
	return t.conn.WriteFrame(t.out)
}

func (t *packetTransport) SetReadDeadline(d time.Time) error { return t.conn.SetReadDeadline(d) }

// SetReadBuffer implements serve.ReadBufferSetter when the link's Conn
// does.
func (t *packetTransport) SetReadBuffer(bytes int) error {
	if b, ok := t.conn.(serve.ReadBufferSetter); ok {
		return b.SetReadBuffer(bytes)
	}
	return nil
}

func (t *packetTransport) Close() error { return t.conn.Close() }
