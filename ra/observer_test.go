package ra

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
)

// TestObserver: the observer sees the RS and both RAs it caused, in order.
func TestObserver(t *testing.T) {
	tap, guest := frame.Pipe()
	t.Cleanup(func() { tap.Close(); guest.Close() })
	cfg := kubeOVN112()
	a, err := NewAdvertiser(cfg, tap, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.rnd = rndMax
	events := make(chan serve.Event, 8)
	a.Observer = func(e serve.Event) { events <- e }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := guest.WriteFrame(rsFrame(t, guestLLA, 255, nil)); err != nil {
		t.Fatal(err)
	}
	var got []serve.Event
	for range 2 {
		if _, ok := readRA(t, guest, cfg, 2*time.Second); !ok {
			t.Fatal("no RA")
		}
	}
	for len(got) < 3 {
		select {
		case e := <-events:
			got = append(got, e)
		case <-time.After(2 * time.Second):
			t.Fatalf("events %v, want 3", got)
		}
	}
	want := []serve.Event{
		{Request: "RS", Outcome: serve.Accepted, Peer: guestLLA},
		{Reply: "RA", Outcome: serve.Replied, Peer: allNodes},
		{Reply: "RA", Outcome: serve.Replied, Peer: guestLLA},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// TestRSFloodLimited: of a flood of RSs, RSLimit's burst is passed on to
// the schedule (observed as accepted); the next rsNapAfter are counted as
// one rate-limited event before the reader naps, and show in Stats.
func TestRSFloodLimited(t *testing.T) {
	tap, guest := frame.Pipe()
	t.Cleanup(func() { tap.Close(); guest.Close() })
	a, err := NewAdvertiser(kubeOVN112(), tap, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.rnd = rndMax
	frozen := time.Unix(1000, 0) // no token refills
	a.now = func() time.Time { return frozen }
	events := make(chan serve.Event, 64)
	a.Observer = func(e serve.Event) {
		if e.Request == "RS" {
			events <- e
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	burst := RSLimit.Burst
	for range burst + rsNapAfter {
		if err := guest.WriteFrame(rsFrame(t, guestLLA, 255, nil)); err != nil {
			t.Fatal(err)
		}
	}
	accepted, limited := 0, 0
	for accepted+limited < burst+rsNapAfter {
		select {
		case e := <-events:
			switch {
			case e.Outcome == serve.Accepted:
				accepted++
			case e.Reason == serve.RateLimited:
				limited += e.Count
			default:
				t.Fatalf("unexpected event %+v", e)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("after %d accepted and %d limited RSs: no more events", accepted, limited)
		}
	}
	if accepted != burst || limited != rsNapAfter || a.Stats().RateLimited != uint64(rsNapAfter) {
		t.Errorf("accepted %d, limited %d (stats %d); want %d and %d", accepted, limited, a.Stats().RateLimited, burst, rsNapAfter)
	}
}
