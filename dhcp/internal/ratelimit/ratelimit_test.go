package ratelimit

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestBucket: full at first use, one token per 1/rate second, capped at
// burst.
func TestBucket(t *testing.T) {
	var b Bucket
	t0 := time.Unix(1000, 0)
	var got []bool
	for _, at := range []time.Duration{0, 0, 0, 50 * time.Millisecond, 100 * time.Millisecond, 10 * time.Second, 10 * time.Second, 10 * time.Second} {
		got = append(got, b.Take(t0.Add(at), 10, 2))
	}
	want := []bool{true, true, false, false, true, true, true, false}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Take (-want +got):\n%s", diff)
	}
}
