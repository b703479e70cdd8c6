package ra

import (
	"context"
	"errors"
	"net"
	"os"
	"time"

	"github.com/mdlayher/ndp"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// WatchUpstream reads the frames the gateway sends into the pod on conn (a
// packet socket on the uplink filtered to the gateway's MAC and ICMPv6) and
// hands its router advertisements to ObserveUpstream, which warns once when
// they differ from ours. It returns nil when ctx ends or conn is closed.
func (a *Advertiser) WatchUpstream(ctx context.Context, conn frame.Conn) error {
	stop := context.AfterFunc(ctx, func() {
		_ = conn.SetReadDeadline(time.Unix(1, 0)) // a failure leaves the read blocked: the conn is already broken
	})
	defer stop()
	buf := make([]byte, 2048)
	for {
		n, err := conn.ReadFrame(buf)
		switch {
		case ctx.Err() != nil, errors.Is(err, net.ErrClosed):
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue
		case err != nil:
			return err
		}
		a.observeUpstreamFrame(buf[:n])
	}
}

// observeUpstreamFrame passes on the RA in b, if it is one (RFC 4861 §6.1.2:
// hop limit 255).
func (a *Advertiser) observeUpstreamFrame(b []byte) {
	p, err := frame.ParseICMP6(b)
	if err != nil || len(p.Payload) == 0 || p.Payload[0] != frame.ICMPv6RouterAdvertisement || p.HopLimit != frame.NDPHopLimit {
		return
	}
	m, err := ndp.ParseMessage(p.Payload)
	if err != nil {
		return
	}
	if adv, ok := m.(*ndp.RouterAdvertisement); ok {
		a.ObserveUpstream(p.Src, adv)
	}
}
