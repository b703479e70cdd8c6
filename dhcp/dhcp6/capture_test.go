package dhcp6

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv6"
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
		want Event
	}{
		{"capture-solicit-1", Event{Outcome: OutcomeReplied, Type: dhcpv6.MessageTypeSolicit, Reply: dhcpv6.MessageTypeAdvertise}},   // dhclient, with FQDN
		{"capture-solicit-2", Event{Outcome: OutcomeReplied, Type: dhcpv6.MessageTypeSolicit, Reply: dhcpv6.MessageTypeAdvertise}},   // perfdhcp
		{"capture-relayforw-1", Event{Outcome: OutcomeReplied, Type: dhcpv6.MessageTypeSolicit, Reply: dhcpv6.MessageTypeAdvertise}}, // perfdhcp -A 1
		{"capture-confirm-1", Event{Outcome: OutcomeReplied, Type: dhcpv6.MessageTypeConfirm, Reply: dhcpv6.MessageTypeReply}},
		{"capture-inforeq-1", Event{Outcome: OutcomeReplied, Type: dhcpv6.MessageTypeInformationRequest, Reply: dhcpv6.MessageTypeReply}},
		{"capture-request-1", Event{Outcome: OutcomeUnanswered, Type: dhcpv6.MessageTypeRequest}}, // for dnsmasq
		{"capture-release-1", Event{Outcome: OutcomeUnanswered, Type: dhcpv6.MessageTypeRelease}}, // for dnsmasq
	}
	rec := &recordConn{}
	s := NewPacketServer(newTestHandler(t), rec, discard())
	p := s.t.(*packetTransport)
	lim := newLimiter(0, 0)
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			var got Event
			s.Observer = func(e Event) { got = basic(e) }
			s.serve(p.parse(readCorpus(t, filepath.Join("testdata/fuzz/FuzzPacketReceive", tt.file))), lim)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
		})
	}
}
