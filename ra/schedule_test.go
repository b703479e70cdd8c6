package ra

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func rndMin(int64) int64   { return 0 }
func rndMax(n int64) int64 { return n - 1 }
func rndMid(n int64) int64 { return n / 2 }

func TestUnsolicitedInterval(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sent int
		rnd  randN
		want time.Duration
	}{
		{1, rndMin, 4 * time.Second},
		{1, rndMax, 8 * time.Second},
		{2, rndMid, 6 * time.Second},
		{3, rndMin, 200 * time.Second},
		{3, rndMax, 600 * time.Second},
		{50, rndMid, 400 * time.Second},
	}
	for _, tt := range tests {
		if got := unsolicitedInterval(tt.rnd, tt.sent); got != tt.want {
			t.Errorf("unsolicitedInterval(sent %d) = %v, want %v", tt.sent, got, tt.want)
		}
	}
}

func TestSolicitedAt(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name      string
		now, last time.Duration // since t0; last < 0: no multicast RA yet
		rnd       randN
		want      time.Duration
	}{
		{"none sent yet, no delay", 5 * time.Second, -1, rndMin, 5 * time.Second},
		{"none sent yet, most delay", 5 * time.Second, -1, rndMax, 5500 * time.Millisecond},
		{"last long ago", 60 * time.Second, 10 * time.Second, rndMid, 60250 * time.Millisecond},
		{"last exactly MIN_DELAY_BETWEEN_RAS ago", 13 * time.Second, 10 * time.Second, rndMin, 13 * time.Second},
		{"last 1 s ago: after last + 3 s + delay", 11 * time.Second, 10 * time.Second, rndMax, 13500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var last time.Time
			if tt.last >= 0 {
				last = t0.Add(tt.last)
			}
			if got := solicitedAt(tt.rnd, t0.Add(tt.now), last).Sub(t0); got != tt.want {
				t.Errorf("solicitedAt = %v, want %v", got, tt.want)
			}
		})
	}
}

// simEvent is a frame from the guest at a time: the first frame, or an RS
// from a link-local address or from ::.
type simEvent struct {
	at   time.Duration
	kind string // "frame", "rs", "rs::"
}

var guestLLA = netip.MustParseAddr("fe80::5054:ff:fe12:3456")

// simulate runs a schedule the way Advertiser.loop does, with the clock
// jumping from event to event, and lists every RA sent before until.
func simulate(rnd randN, events []simEvent, until time.Duration) []string {
	t0 := time.Unix(1000, 0)
	s := schedule{rnd: rnd}
	var out []string
	popAll := func(now time.Time) {
		for to, ok := s.pop(now); ok; to, ok = s.pop(now) {
			dst := "ff02::1"
			if !to.multicast() {
				dst = to.IP.String()
			}
			out = append(out, fmt.Sprintf("%v %s", now.Sub(t0), dst))
		}
	}
	for {
		next := s.next()
		if len(events) > 0 && (next.IsZero() || t0.Add(events[0].at).Before(next)) {
			ev := events[0]
			events = events[1:]
			now := t0.Add(ev.at)
			s.guestSpoke(now)
			switch ev.kind {
			case "rs":
				s.solicited(now, target{IP: guestLLA, MAC: vmMAC})
			case "rs::":
				s.solicited(now, target{})
			}
			popAll(now)
			continue
		}
		if next.IsZero() || next.Sub(t0) >= until {
			return out
		}
		popAll(next)
	}
}

func TestSchedule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		rnd    randN
		events []simEvent
		until  time.Duration
		want   []string
	}{
		{
			name:  "quiet until the guest speaks (migration target)",
			rnd:   rndMin,
			until: time.Hour,
		},
		{
			name:   "first frame: 3 initial RAs, shortest intervals, then periodic",
			rnd:    rndMin,
			events: []simEvent{{10 * time.Second, "frame"}},
			until:  700 * time.Second,
			want:   []string{"10s ff02::1", "14s ff02::1", "18s ff02::1", "3m38s ff02::1", "6m58s ff02::1", "10m18s ff02::1"},
		},
		{
			name:   "first frame: longest intervals",
			rnd:    rndMax,
			events: []simEvent{{10 * time.Second, "frame"}},
			until:  1300 * time.Second,
			want:   []string{"10s ff02::1", "18s ff02::1", "26s ff02::1", "10m26s ff02::1", "20m26s ff02::1"},
		},
		{
			name:   "RS from the link-local address: unicast after the random delay",
			rnd:    rndMax,
			events: []simEvent{{10 * time.Second, "frame"}, {12 * time.Second, "rs"}},
			until:  20 * time.Second,
			want:   []string{"10s ff02::1", "12.5s " + guestLLA.String(), "18s ff02::1"},
		},
		{
			name:   "RS burst: one pending reply answers all",
			rnd:    rndMax,
			events: []simEvent{{10 * time.Second, "frame"}, {12 * time.Second, "rs"}, {12100 * time.Millisecond, "rs"}, {12400 * time.Millisecond, "rs"}, {13 * time.Second, "rs"}},
			until:  15 * time.Second,
			want:   []string{"10s ff02::1", "12.5s " + guestLLA.String(), "13.5s " + guestLLA.String()},
		},
		{
			name:   "RS from :: right after a multicast RA: held to MIN_DELAY_BETWEEN_RAS, restarts the timer",
			rnd:    rndMin,
			events: []simEvent{{10 * time.Second, "frame"}, {11 * time.Second, "rs::"}},
			until:  300 * time.Second,
			want:   []string{"10s ff02::1", "13s ff02::1", "17s ff02::1", "3m37s ff02::1"},
		},
		{
			name:   "RS from :: while periodic: multicast after the delay",
			rnd:    rndMax,
			events: []simEvent{{10 * time.Second, "frame"}, {100 * time.Second, "rs::"}},
			until:  701 * time.Second,
			want:   []string{"10s ff02::1", "18s ff02::1", "26s ff02::1", "1m40.5s ff02::1", "11m40.5s ff02::1"},
		},
		{
			name:   "RS from :: answered by an earlier unsolicited RA",
			rnd:    rndMax,
			events: []simEvent{{10 * time.Second, "frame"}, {17800 * time.Millisecond, "rs::"}},
			until:  27 * time.Second,
			want:   []string{"10s ff02::1", "18s ff02::1", "26s ff02::1"},
		},
		{
			name:   "RS as the very first frame from ::: the first unsolicited RA answers it",
			rnd:    rndMax,
			events: []simEvent{{10 * time.Second, "rs::"}},
			until:  19 * time.Second,
			want:   []string{"10s ff02::1", "18s ff02::1"},
		},
		{
			name:   "RS as the very first frame from the link-local: multicast now and unicast reply",
			rnd:    rndMin,
			events: []simEvent{{10 * time.Second, "rs"}},
			until:  11 * time.Second,
			want:   []string{"10s " + guestLLA.String(), "10s ff02::1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := simulate(tt.rnd, tt.events, tt.until)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("RAs sent (-want +got):\n%s", diff)
			}
		})
	}
}

// No two multicast RAs are ever closer than MIN_DELAY_BETWEEN_RAS, whatever
// the guest sends and whatever the random source returns.
func TestScheduleMulticastRateLimit(t *testing.T) {
	t.Parallel()
	for _, rnd := range []randN{rndMin, rndMid, rndMax} {
		var events []simEvent
		for i := range 800 {
			events = append(events, simEvent{time.Duration(i) * 150 * time.Millisecond, "rs::"})
		}
		t0 := time.Unix(1000, 0)
		var last time.Time
		sent := 0
		s := schedule{rnd: rnd}
		now := t0
		for step := 0; now.Sub(t0) < 2*time.Minute; step++ {
			now = t0.Add(time.Duration(step) * 50 * time.Millisecond)
			if len(events) > 0 && !t0.Add(events[0].at).After(now) {
				s.guestSpoke(now)
				s.solicited(now, target{})
				events = events[1:]
			}
			for to, ok := s.pop(now); ok; to, ok = s.pop(now) {
				if !to.multicast() {
					t.Fatalf("unicast RA to %v without a unicast RS", to.IP)
				}
				if !last.IsZero() && now.Sub(last) < minDelayBetweenRAs {
					t.Fatalf("multicast RAs %v apart at %v", now.Sub(last), now.Sub(t0))
				}
				last = now
				sent++
			}
		}
		if sent < 34 {
			t.Errorf("%d multicast RAs in 2 minutes of RSs, want at least 34 (one per 3 to 3.5 s)", sent)
		}
	}
}
