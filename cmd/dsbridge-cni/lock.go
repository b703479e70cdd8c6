package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"
)

// A pod is identified by its network namespace path, CNI_NETNS as the
// runtime gives it: Multus passes the sandbox's path to every delegate, so
// all dsbridge attachments of one pod (a VM with several dsbridge
// networks) share it, and each attachment's state records it. Every ADD,
// DEL and GC of a pod's attachments holds the pod's lock while it reads
// the sibling records and changes the namespace-wide sysctls, so that
// concurrent invocations see each other's records.

// Lock timing: a holder is at most one ADD (bounded by plumbTimeout) or
// DEL; a waiter gives up after lockWait with CNI error 11 (try again later).
const (
	lockWait = 2 * plumbTimeout
	lockPoll = 10 * time.Millisecond
)

// podLock is a held flock(2) on <stateDir>/.lock-<sha256(netns)[:16]>.
// The file exists only while someone holds or waits for it: the holder
// removes it on release, and a waiter that then wins the lock on the
// removed file tries again on the new one.
type podLock struct {
	f    *os.File
	path string
}

func lockPath(dir, netns string) string {
	sum := sha256.Sum256([]byte(netns))
	return filepath.Join(dir, ".lock-"+hex.EncodeToString(sum[:8]))
}

// lockPod takes the lock of the pod whose network namespace path is netns.
func lockPod(dir, netns string) (*podLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, types.NewError(types.ErrIOFailure, fmt.Sprintf("failed to create state directory %q", dir), err.Error())
	}
	path := lockPath(dir, netns)
	deadline := time.Now().Add(lockWait)
	for {
		l, err := tryLock(path)
		switch {
		case err == nil && l != nil:
			return l, nil
		case err != nil:
			return nil, types.NewError(types.ErrIOFailure, fmt.Sprintf("failed to lock pod %q", netns), err.Error())
		case time.Now().After(deadline):
			return nil, types.NewError(types.ErrTryAgainLater, fmt.Sprintf("pod %q is locked by another dsbridge-cni", netns),
				fmt.Sprintf("%s held for more than %v", path, lockWait))
		}
		time.Sleep(lockPoll)
	}
}

// tryLock returns the held lock, or nil when someone else holds it (or
// removed the file under us).
func tryLock(path string) (*podLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("flock %q: %w", path, err)
	}
	// The previous holder may have removed the file between our open and
	// our lock: then the lock is on a file nobody else will find.
	var held, now unix.Stat_t
	if unix.Fstat(int(f.Fd()), &held) != nil || unix.Stat(path, &now) != nil || held.Ino != now.Ino || held.Dev != now.Dev {
		f.Close()
		return nil, nil
	}
	return &podLock{f: f, path: path}, nil
}

// release removes the lock file and unlocks (closing it unlocks).
func (l *podLock) release() {
	_ = os.Remove(l.path) // only a state directory gone under us fails: nothing to keep
	l.f.Close()
}
