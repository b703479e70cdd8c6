package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/status/statustest"
	"github.com/dsbridge/dsbridge/netsetup"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock returns a clock that advances by step on every reading.
func clock(step time.Duration) func() time.Time {
	now := t0
	return func() time.Time {
		t := now
		now = now.Add(step)
		return t
	}
}

// dora is the exchange of a dhclient: DISCOVER/OFFER, REQUEST/ACK, plus a
// foreign packet, an ARP for the gateway and a RELEASE.
func dora(m *Model) {
	lease := func(state string) *Lease { return &Lease{State: state, Address: "10.16.0.5/16", Seconds: 86400} }
	m.Record("default", Event{Protocol: ProtoDHCPv4, Received: true, Request: "DISCOVER", Reply: "OFFER",
		Outcome: OutcomeReplied, XID: "0x00000001", Latency: 40 * time.Microsecond, Lease: lease(LeaseOffered)})
	m.Record("default", Event{Protocol: ProtoDHCPv4, Received: true, Request: "REQUEST", Reply: "ACK",
		Outcome: OutcomeReplied, XID: "0x00000001", Latency: 2 * time.Millisecond, Lease: lease(LeaseBound)})
	m.Record("default", Event{Protocol: ProtoDHCPv4, Received: true, Request: "ARP", Outcome: OutcomeDropped,
		Reason: "not-for-server", Latency: time.Microsecond})
	m.Record("default", Event{Protocol: ProtoRA, Received: true, Request: "RS", Outcome: OutcomeAccepted, Peer: "fe80::1"})
	m.Record("default", Event{Protocol: ProtoRA, Reply: "RA", Peer: "ff02::1"})
}

func newTestModel() *Model {
	m := newModel(Info{Version: "v1", Commit: "abc", Mode: "sidecar"}, clock(time.Second))
	m.AddInterface(Interface{Name: "default", PodIface: "eth0", Tap: "tap0", VMMAC: "0a:58:0a:10:00:05",
		Plan: netsetup.Plan{PodIface: "eth0", Tier: netsetup.TierFull}, Offer: Offer{IPv4: "10.16.0.5/16"}})
	m.SetRunning("default", ProtoDHCPv4, true)
	m.SetRunning("default", ProtoRA, true)
	return m
}

func TestStatusDocument(t *testing.T) {
	m := newTestModel()
	dora(m)
	m.SetVMI(VMI{Namespace: "ns", Name: "vm", UID: "u1"})
	m.Error("default", ProtoDHCPv4, errors.New("boom"))
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	exp := at(2).Add(86400 * time.Second)
	want := Status{
		Version: "v1", Commit: "abc", Mode: "sidecar", StartedAt: at(0), Now: at(7), Tier: "Full",
		VMI: &VMI{Namespace: "ns", Name: "vm", UID: "u1"},
		Interfaces: []Interface{{
			Name: "default", PodIface: "eth0", Tap: "tap0", VMMAC: "0a:58:0a:10:00:05",
			Plan: netsetup.Plan{PodIface: "eth0", Tier: netsetup.TierFull}, Offer: Offer{IPv4: "10.16.0.5/16"},
			Observed: []Observed{{Address: "10.16.0.5", Served: true, FirstSeen: at(2), LastSeen: at(2)}},
			Errors:   []ErrorRecord{{Time: at(6), Service: ProtoDHCPv4, Error: "boom"}},
			Services: []Service{
				{
					Protocol: ProtoDHCPv4, Running: true, Errors: 1,
					Lease:       &Lease{State: LeaseBound, Address: "10.16.0.5/16", Since: at(2), Seconds: 86400, Expires: &exp},
					LastRequest: &Message{Time: at(3), Type: "ARP", Outcome: OutcomeDropped, Reason: "not-for-server", LatencyMicros: 1},
					LastReply:   &Message{Time: at(2), Type: "ACK", XID: "0x00000001", Request: "REQUEST"},
					LastDrop:    &Message{Time: at(3), Type: "ARP", Outcome: OutcomeDropped, Reason: "not-for-server"},
					Received: []Counter{{Type: "ARP", Outcome: OutcomeDropped, Count: 1},
						{Type: "DISCOVER", Outcome: OutcomeReplied, Count: 1}, {Type: "REQUEST", Outcome: OutcomeReplied, Count: 1}},
					Replies: []Counter{{Type: "ACK", Count: 1}, {Type: "OFFER", Count: 1}},
					Dropped: []Counter{{Reason: "not-for-server", Count: 1}},
				},
				{
					Protocol: ProtoRA, Running: true,
					LastRequest: &Message{Time: at(4), Type: "RS", Peer: "fe80::1", Outcome: OutcomeAccepted},
					LastReply:   &Message{Time: at(5), Type: "RA", Peer: "ff02::1"},
					Received:    []Counter{{Type: "RS", Outcome: OutcomeAccepted, Count: 1}},
					Replies:     []Counter{{Type: "RA", Count: 1}},
				},
			},
		}},
	}
	got := m.Status()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	// The JSON round trip keeps everything `dsbridge status` prints.
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var back Status
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, back); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
}

// A repeated OFFER keeps the time the lease was first offered.
func TestLeaseSinceKeptForRepeats(t *testing.T) {
	m := newModel(Info{}, clock(time.Second))
	for range 3 {
		m.Record("x", Event{Protocol: ProtoDHCPv6, Received: true, Request: "SOLICIT", Reply: "ADVERTISE",
			Outcome: OutcomeReplied, Lease: &Lease{State: LeaseOffered, Address: "fd00::5"}})
	}
	got := m.Status().Interfaces[0].Services[0].Lease
	want := &Lease{State: LeaseOffered, Address: "fd00::5", Since: t0.Add(time.Second)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lease (-want +got):\n%s", diff)
	}
}

func TestMetrics(t *testing.T) {
	m := newTestModel()
	dora(m)
	var buf bytes.Buffer
	if err := m.WriteMetrics(&buf); err != nil {
		t.Fatal(err)
	}
	fams, err := statustest.Parse(&buf)
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, buf.String())
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, "dsbridge_") || len(f.Help) < 40 {
			t.Errorf("family %s: want the dsbridge_ prefix and a help text that explains it, got %q", name, f.Help)
		}
	}
	dl := map[string]string{"interface": "default", "protocol": ProtoDHCPv4}
	with := func(kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range dl {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"dsbridge_packets_received_total", with("type", "DISCOVER", "outcome", "replied"), 1},
		{"dsbridge_packets_received_total", with("type", "ARP", "outcome", "dropped"), 1},
		{"dsbridge_packets_received_total", map[string]string{"protocol": "ra", "type": "RS", "outcome": "accepted"}, 1},
		{"dsbridge_replies_sent_total", with("type", "ACK"), 1},
		{"dsbridge_replies_sent_total", map[string]string{"protocol": "ra", "type": "RA"}, 1},
		{"dsbridge_packets_dropped_total", with("reason", "not-for-server"), 1},
		{"dsbridge_handler_latency_seconds_count", dl, 3},
		{"dsbridge_handler_latency_seconds_bucket", with("le", "1e-05"), 1},
		{"dsbridge_handler_latency_seconds_bucket", with("le", "5e-05"), 2},
		{"dsbridge_handler_latency_seconds_bucket", with("le", "0.0025"), 3},
		{"dsbridge_handler_latency_seconds_sum", dl, 0.002041},
		{"dsbridge_lease_bound", dl, 1},
		{"dsbridge_service_up", map[string]string{"interface": "default", "service": "ra"}, 1},
		{"dsbridge_build_info", map[string]string{"version": "v1", "commit": "abc", "mode": "sidecar"}, 1},
	}
	for _, tt := range tests {
		got, ok := statustest.Value(fams, tt.name, tt.labels)
		if !ok || math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("%s%v = %v (found %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
	if _, ok := statustest.Value(fams, "dsbridge_handler_latency_seconds_count", map[string]string{"protocol": "ra"}); ok {
		t.Error("RA has a latency histogram; its RAs are scheduled, not timed")
	}
}

// Label values and help texts are escaped as the text format requires.
func TestMetricsEscaping(t *testing.T) {
	m := newModel(Info{Version: "v\"1\\\n"}, clock(time.Second))
	var buf bytes.Buffer
	if err := m.WriteMetrics(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `version="v\"1\\\n"`) {
		t.Errorf("version label not escaped:\n%s", buf.String())
	}
	fams, err := statustest.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := statustest.Value(fams, "dsbridge_build_info", map[string]string{"version": "v\"1\\\n"}); !ok || v != 1 {
		t.Errorf("build info with escaped version not found back")
	}
}

// The parser rejects what the format forbids, so that TestMetrics can fail.
func TestParserRejects(t *testing.T) {
	bad := map[string]string{
		"no TYPE":            "# HELP a_total x\na_total 1\n",
		"sample outside":     "# HELP a x\n# TYPE a counter\nb 1\n",
		"bad bucket order":   "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
		"count mismatch":     "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",
		"unescaped quote":    "# HELP a x\n# TYPE a gauge\na{l=\"a\"b\"} 1\n",
		"duplicate labelset": "# HELP a x\n# TYPE a gauge\na{l=\"1\"} 1\na{l=\"1\"} 2\n",
		"negative counter":   "# HELP a x\n# TYPE a counter\na -1\n",
	}
	for name, in := range bad {
		if _, err := statustest.Parse(strings.NewReader(in)); err == nil {
			t.Errorf("%s: parsed, want an error", name)
		}
	}
}

// The socket serves both documents; Fetch reads them.
func TestServeSocket(t *testing.T) {
	m := newTestModel()
	dora(m)
	path := filepath.Join(shortDir(t), SocketName)
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, Handler(m, nil)) }()
	b, err := Fetch(ctx, path, "/status")
	if err != nil {
		t.Fatal(err)
	}
	var doc Status
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if got := doc.Interfaces[0].Services[0].Lease.State; got != LeaseBound {
		t.Errorf("lease state %q, want bound", got)
	}
	b, err = Fetch(ctx, path, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := statustest.Parse(bytes.NewReader(b)); err != nil {
		t.Errorf("served metrics do not parse: %v", err)
	}
	if _, err := Fetch(ctx, path, "/nothing"); err == nil {
		t.Error("GET /nothing succeeded, want 404")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v, want nil at cancel", err)
	}
	// A stale socket from a crashed process is replaced.
	l, err = Listen(path)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	l.Close()
}

// BenchmarkRecord is the per-packet cost the status model adds.
func BenchmarkRecord(b *testing.B) {
	m := NewModel(Info{})
	ev := Event{Protocol: ProtoDHCPv4, Received: true, Request: "REQUEST", Reply: "ACK", Outcome: OutcomeReplied,
		XID: "0x00000001", Latency: 40 * time.Microsecond, Lease: &Lease{State: LeaseBound, Address: "10.16.0.5/16", Seconds: 86400}}
	b.ReportAllocs()
	for b.Loop() {
		m.Record("default", ev)
	}
}

func BenchmarkWriteMetrics(b *testing.B) {
	m := newTestModel()
	dora(m)
	b.ReportAllocs()
	for b.Loop() {
		if err := m.WriteMetrics(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRenumbering: a guest seen using an address not served here is
// reported once (stale), listed among the observed addresses and counted
// on /metrics until it takes the served address, which is reported with
// the time it took.
func TestRenumbering(t *testing.T) {
	m := newTestModel()
	stale := func() Renumbering {
		return m.Record("default", Event{Protocol: ProtoDHCPv4, Received: true, Request: "REQUEST", Reply: "NAK",
			Outcome: OutcomeReplied, Stale: "10.17.0.9"})
	}
	first, again := stale(), stale()
	bound := m.Record("default", Event{Protocol: ProtoDHCPv4, Received: true, Request: "REQUEST", Reply: "ACK",
		Outcome: OutcomeReplied, Lease: &Lease{State: LeaseBound, Address: "10.16.0.5/16", Seconds: 60}})
	want := []Renumbering{
		{Family: "4", Stale: "10.17.0.9", Served: "10.16.0.5/16"},
		{},
		{Family: "4", Served: "10.16.0.5", Converged: true, Took: 2 * time.Second}, // the test clock steps a second a reading
	}
	if diff := cmp.Diff(want, []Renumbering{first, again, bound}); diff != "" {
		t.Errorf("renumbering (-want +got):\n%s", diff)
	}
	var observed []string
	for _, o := range m.Status().Interfaces[0].Observed {
		observed = append(observed, fmt.Sprintf("%s %t", o.Address, o.Served))
	}
	if diff := cmp.Diff([]string{"10.16.0.5 true", "10.17.0.9 false"}, observed); diff != "" {
		t.Errorf("observed (-want +got):\n%s", diff)
	}
	var buf bytes.Buffer
	if err := m.WriteMetrics(&buf); err != nil {
		t.Fatal(err)
	}
	fams, err := statustest.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{"dsbridge_stale_addresses": 0, "dsbridge_renumbered_total": 1} {
		l := map[string]string{"interface": "default"}
		if name == "dsbridge_renumbered_total" {
			l["family"] = "4"
		}
		if got, ok := statustest.Value(fams, name, l); !ok || got != want {
			t.Errorf("%s = %v (found %v), want %v", name, got, ok, want)
		}
	}
}

// TestRecordCount: an event standing for several packets (rate-limited ones
// counted together) counts them all.
func TestRecordCount(t *testing.T) {
	m := newModel(Info{}, clock(time.Second))
	m.Record("default", Event{Protocol: ProtoRA, Received: true, Request: "RS", Outcome: OutcomeDropped, Reason: "rate-limited", Count: 32})
	m.Record("default", Event{Protocol: ProtoRA, Received: true, Request: "RS", Outcome: OutcomeDropped, Reason: "rate-limited"})
	s := m.Status().Interfaces[0].Services[0]
	if diff := cmp.Diff([]Counter{{Type: "RS", Outcome: OutcomeDropped, Count: 33}}, s.Received); diff != "" {
		t.Errorf("received (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Counter{{Reason: "rate-limited", Count: 33}}, s.Dropped); diff != "" {
		t.Errorf("dropped (-want +got):\n%s", diff)
	}
}
