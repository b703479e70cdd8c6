package service

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/status"
	"github.com/dsbridge/dsbridge/dhcp/serve"
)

// BenchmarkObserveDORA is what the sidecar adds to a DORA beyond the
// server's loop: both replies' events turned into status events and
// recorded (counters, last messages, lease state, addresses seen).
func BenchmarkObserveDORA(b *testing.B) {
	benchObserve(b, status.ProtoDHCPv4, &status.Lease{Address: "10.16.0.5/16", Seconds: 86400},
		serve.Event{Request: "DISCOVER", Reply: "OFFER", XID: 1, Outcome: serve.Replied, Latency: 40 * time.Microsecond},
		serve.Event{Request: "REQUEST", Reply: "ACK", XID: 1, Outcome: serve.Replied, Latency: 40 * time.Microsecond})
}

// BenchmarkObserveSARR is the same for a Solicit/Advertise and
// Request/Reply exchange.
func BenchmarkObserveSARR(b *testing.B) {
	peer := netip.MustParseAddr("fe80::858:aff:fe10:5")
	benchObserve(b, status.ProtoDHCPv6, &status.Lease{Address: "fd00:10:16::5", Seconds: 86400},
		serve.Event{Request: "SOLICIT", Reply: "ADVERTISE", XID: 1, Peer: peer, Outcome: serve.Replied, Latency: 40 * time.Microsecond},
		serve.Event{Request: "REQUEST", Reply: "REPLY", XID: 1, Peer: peer, Outcome: serve.Replied, Latency: 40 * time.Microsecond})
}

func benchObserve(b *testing.B, proto string, lease *status.Lease, evs ...serve.Event) {
	model := status.NewModel(status.Info{})
	m := NewManager(context.Background(), slog.New(slog.DiscardHandler), Options{Status: model})
	states := newLeases(lease)
	b.ReportAllocs()
	for b.Loop() {
		for _, ev := range evs {
			m.record("default", statusEvent(proto, ev, states))
		}
	}
	st := model.Status()
	if got := st.Interfaces[0].Services[0].LastReply; got == nil || got.XID == "" {
		b.Fatalf("last reply %+v: no transaction ID written out", got)
	}
}
