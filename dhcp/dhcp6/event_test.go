package dhcp6

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv6"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// TestEventDetails: the observer gets the client's transaction ID (inside
// relays too), why a packet was not answered, and the peer.
func TestEventDetails(t *testing.T) {
	tests := []struct {
		file       string
		wantReason string
	}{
		{"capture-solicit-1", ""},
		{"capture-relayforw-1", ""},
		{"capture-request-1", whyOtherServer},
	}
	h := newTestHandler(t)
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b := readCorpus(t, filepath.Join("testdata/fuzz/FuzzPacketReceive", tt.file))
			got, _ := serveFrame(t, h, b)
			u, err := frame.ParseUDP6(b)
			if err != nil {
				t.Fatal(err)
			}
			msg, err := dhcpv6.FromBytes(u.Payload)
			if err != nil {
				t.Fatal(err)
			}
			inner, err := msg.GetInnerMessage()
			if err != nil {
				t.Fatal(err)
			}
			x := inner.TransactionID
			want := struct {
				XID    uint32
				Reason string
			}{uint32(x[0])<<16 | uint32(x[1])<<8 | uint32(x[2]), tt.wantReason}
			if diff := cmp.Diff(want, struct {
				XID    uint32
				Reason string
			}{got.XID, got.Detail}); diff != "" {
				t.Errorf("event details (-want +got):\n%s", diff)
			}
			if got.Peer != u.Src {
				t.Errorf("peer %v, want the source %v", got.Peer, u.Src)
			}
		})
	}
}
