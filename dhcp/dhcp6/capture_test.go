package dhcp6

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dsbridge/dsbridge/dhcp/serve"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// readCorpus reads one []byte value of a "go test fuzz v1" corpus file.
func readCorpus(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "[]byte(") {
		t.Fatalf("%s is not a one-value corpus file", path)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}

// TestCapturedFrames runs frames captured from real clients (ISC dhclient
// 4.4.3-P1, perfdhcp 2.2.0; served by dnsmasq, so messages for a server
// carry dnsmasq's DUID) through the frame path.
func TestCapturedFrames(t *testing.T) {
	tests := []struct {
		file string
		want serve.Event
	}{
		{"capture-solicit-1", serve.Event{Outcome: serve.Replied, Request: "SOLICIT", Reply: "ADVERTISE"}},   // dhclient, with FQDN
		{"capture-solicit-2", serve.Event{Outcome: serve.Replied, Request: "SOLICIT", Reply: "ADVERTISE"}},   // perfdhcp
		{"capture-relayforw-1", serve.Event{Outcome: serve.Replied, Request: "SOLICIT", Reply: "ADVERTISE"}}, // perfdhcp -A 1
		{"capture-confirm-1", serve.Event{Outcome: serve.Replied, Request: "CONFIRM", Reply: "REPLY"}},
		{"capture-inforeq-1", serve.Event{Outcome: serve.Replied, Request: "INFORMATION-REQUEST", Reply: "REPLY"}},
		{"capture-request-1", serve.Event{Outcome: serve.Dropped, Reason: serve.OtherServer, Request: "REQUEST"}}, // for dnsmasq
		{"capture-release-1", serve.Event{Outcome: serve.Dropped, Reason: serve.OtherServer, Request: "RELEASE"}}, // for dnsmasq
	}
	h := newTestHandler(t)
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, _ := serveFrame(t, h, readCorpus(t, filepath.Join("testdata/fuzz/FuzzPacketReceive", tt.file)))
			if diff := cmp.Diff(tt.want, basic(got), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
		})
	}
}
