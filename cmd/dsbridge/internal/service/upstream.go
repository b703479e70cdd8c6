package service

import (
	"context"
	"errors"
	"net"
	"os"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/ra"
	"github.com/mdlayher/ndp"
)

// icmpRouterAdvertisement is the ICMPv6 type of an RA (RFC 4861 §4.2).
const icmpRouterAdvertisement = 134

// upstreamWatcher reads the ICMPv6 frames the gateway sends into the pod
// (on the uplink) and hands its router advertisements to the advertiser,
// which warns once when they differ from its own.
type upstreamWatcher struct {
	conn frame.Conn
	adv  *ra.Advertiser
}

// Run implements runner.
func (w upstreamWatcher) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = w.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 2048)
	for {
		n, err := w.conn.ReadFrame(buf)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		w.observe(buf[:n])
	}
}

func (w upstreamWatcher) observe(b []byte) {
	p, err := frame.ParseICMP6(b)
	if err != nil || len(p.Payload) == 0 || p.Payload[0] != icmpRouterAdvertisement || p.HopLimit != ndp.HopLimit {
		return
	}
	m, err := ndp.ParseMessage(p.Payload)
	if err != nil {
		return
	}
	if adv, ok := m.(*ndp.RouterAdvertisement); ok {
		w.adv.ObserveUpstream(p.Src, adv)
	}
}
