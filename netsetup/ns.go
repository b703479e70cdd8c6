package netsetup

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn inside the network namespace at nsPath (e.g.
// /proc/<pid>/ns/net or /run/netns/<name>) on a fresh, locked OS thread,
// and returns fn's error. It is the one place this package switches
// namespaces. The thread returns to its original namespace afterwards; when
// that fails the thread stays locked, so the Go runtime discards it instead
// of reusing a thread in the wrong namespace (containernetworking/plugins
// pkg/ns). An empty nsPath runs fn in the caller's namespace, still on a
// locked thread.
func Do(nsPath string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread on purpose when the switch back fails: the
		// goroutine exits locked and the runtime terminates the thread.
		restored, err := doLocked(nsPath, fn)
		if restored {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// doLocked switches the locked thread into nsPath, runs fn and switches
// back; restored reports whether the thread is in its original namespace.
func doLocked(nsPath string, fn func() error) (restored bool, err error) {
	if nsPath == "" {
		return true, fn()
	}
	orig, err := netns.Get()
	if err != nil {
		return true, fmt.Errorf("failed to open the current network namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(nsPath)
	if err != nil {
		return true, fmt.Errorf("failed to open network namespace %q: %w", nsPath, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return true, fmt.Errorf("failed to enter network namespace %q: %w", nsPath, err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		return false, fmt.Errorf("failed to leave network namespace %q: %w", nsPath, err)
	}
	return true, fnErr
}
