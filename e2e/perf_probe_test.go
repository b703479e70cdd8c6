package e2e

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/mdlayher/packet"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/e2e/lab"
)

// prober sends the VM's own requests from the guest and reads the answers
// on a packet socket of its own, every frame on the guest's link.
type prober struct {
	c   *packet.Conn
	mac frame.MAC
	xid uint32
	buf []byte
}

// ethPAll is ETH_P_ALL: every protocol.
const ethPAll = 0x0003

func newProber(t *testing.T, l *lab.Lab) *prober {
	t.Helper()
	p := &prober{mac: l.VMMAC(), xid: 0x0e170000, buf: make([]byte, 2048)}
	err := l.Guest.Do(func() error {
		ifi, err := net.InterfaceByName(l.GuestIf)
		if err != nil {
			return err
		}
		p.c, err = packet.Listen(ifi, packet.Raw, ethPAll, nil)
		return err
	})
	if err != nil {
		t.Fatalf("packet socket in the guest: %v", err)
	}
	t.Cleanup(func() { p.c.Close() })
	return p
}

// next sends a DISCOVER and a Solicit, again every 5 ms until each is
// answered (a rate-limited one waits for the next token), and returns the
// time until both were; answered is false after 2 s without.
func (p *prober) next(t *testing.T, l *lab.Lab) (time.Duration, bool) {
	t.Helper()
	p.drain()
	p.xid++
	v4, v6 := discoverFrame(p.mac, p.xid), solicitFrame(p.mac, p.xid&0xffffff)
	start := time.Now()
	got4, got6 := false, false
	for time.Since(start) < 2*time.Second && !(got4 && got6) {
		for _, f := range [][]byte{v4, v6} {
			if _, err := p.c.WriteTo(f, &packet.Addr{HardwareAddr: net.HardwareAddr(f[0:6])}); err != nil {
				t.Fatalf("send a probe from the guest: %v", err)
			}
		}
		until := time.Now().Add(5 * time.Millisecond)
		for time.Now().Before(until) && !(got4 && got6) {
			_ = p.c.SetReadDeadline(until)
			n, _, err := p.c.ReadFrom(p.buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				t.Fatalf("read in the guest: %v", err)
			}
			r4, r6 := p.answers(p.buf[:n])
			got4, got6 = got4 || r4, got6 || r6
		}
	}
	return time.Since(start), got4 && got6
}

// answers reports whether f is a DHCPv4 or a DHCPv6 reply to the current
// probe.
func (p *prober) answers(f []byte) (v4, v6 bool) {
	if u, err := frame.ParseUDP4(f); err == nil && u.Eth.Src != p.mac && len(u.Payload) > 8 {
		return u.Payload[0] == 2 && binary.BigEndian.Uint32(u.Payload[4:]) == p.xid, false
	}
	if u, err := frame.ParseUDP6(f); err == nil && u.Eth.Src != p.mac && u.DstPort == frame.PortDHCPv6Client && len(u.Payload) >= 4 {
		x := uint32(u.Payload[1])<<16 | uint32(u.Payload[2])<<8 | uint32(u.Payload[3])
		return false, (u.Payload[0] == 2 || u.Payload[0] == 7) && x == p.xid&0xffffff
	}
	return false, false
}

// drain discards what the socket queued before now (the flood's own
// frames among them).
func (p *prober) drain() {
	for {
		_ = p.c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, _, err := p.c.ReadFrom(p.buf); err != nil {
			return
		}
	}
}
