package lab

import (
	"context"
	"time"
)

// RunUntilCleanup runs run (a server's Run) in the background until the
// test ends, then cancels it and checks that it returned nil within 5 s;
// after it returns, each closer runs.
func RunUntilCleanup(t T, run func(context.Context) error, closers ...func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run() = %v after cancel, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run() did not return within 5 s of cancel")
		}
		for _, c := range closers {
			if err := c(); err != nil {
				t.Errorf("close: %v", err)
			}
		}
	})
}
