package loudlog

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// A flood of loud lines lets one through per interval and counts the rest.
func TestEvery(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := &Every{Interval: 10 * time.Second}
	type result struct {
		OK   bool
		Held int
	}
	var got []result
	for _, d := range []time.Duration{0, time.Second, 2 * time.Second, 10 * time.Second, 11 * time.Second, 25 * time.Second} {
		ok, held := l.Allow(t0.Add(d))
		got = append(got, result{ok, held})
	}
	want := []result{{true, 0}, {false, 0}, {false, 0}, {true, 2}, {false, 0}, {true, 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("allow (-want +got):\n%s", diff)
	}
	var none *Every
	if ok, _ := none.Allow(t0); !ok {
		t.Error("a nil Every refused a line")
	}
}
