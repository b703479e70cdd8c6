package netsetup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
)

// DefaultStateDir is where saved snapshots live unless configured.
const DefaultStateDir = "/var/run/dsbridge"

// StatePath is the saved snapshot of podIface under stateDir:
// <stateDir>/snapshot-<podIface>.json.
func StatePath(stateDir, podIface string) string {
	return filepath.Join(stateDir, "snapshot-"+podIface+".json")
}

// Save writes s as JSON to path atomically (temporary file and rename),
// creating the directory.
func Save(s *Snapshot, path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to encode snapshot of %q: %w", s.PodIface, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("failed to create state directory for %q: %w", path, err)
	}
	if err := WriteFileAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("failed to save snapshot: %w", err)
	}
	return nil
}

// WriteFileAtomic replaces path with b: a reader (or a crash) sees the old
// file or the new one, never half of it (a temporary file in the same
// directory, renamed over path).
func WriteFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename: ENOENT, ignored
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	return nil
}

// Load reads a snapshot saved by Save. A missing file is reported with an
// error wrapping os.ErrNotExist.
func Load(path string) (*Snapshot, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read snapshot %q: %w", path, err)
	}
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("failed to decode snapshot %q: %w", path, err)
	}
	if s.Version != SnapshotVersion {
		return nil, fmt.Errorf("snapshot %q has version %d, want %d", path, s.Version, SnapshotVersion)
	}
	return &s, nil
}

// MismatchError reports a saved snapshot whose addresses differ from the
// pod's live ones: it describes another pod (or an old one) and is not used.
type MismatchError struct {
	Path        string
	Saved, Live []netip.Prefix
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("saved snapshot %q does not match the pod: saved addresses %v, live %v", e.Path, e.Saved, e.Live)
}

// CheckMatches returns a *MismatchError when saved and live hold different
// sets of addresses (in any order).
func CheckMatches(path string, saved, live *Snapshot) error {
	a, b := allPrefixes(saved), allPrefixes(live)
	if slices.Equal(a, b) {
		return nil
	}
	return &MismatchError{Path: path, Saved: a, Live: b}
}

func allPrefixes(s *Snapshot) []netip.Prefix {
	out := append(slices.Clone(s.IPv4), s.IPv6...)
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}

// LoadOrTake returns the snapshot saved at statePath when it still matches
// the live pod, so a restarted process keeps the gateways and routes that
// plumbing removed. Otherwise it takes one and, if the pod is pristine,
// saves it. A saved snapshot that no longer matches is never used: on a
// pristine pod it is logged and replaced; on a plumbed pod (whose routes are
// gone) LoadOrTake returns the *MismatchError.
func LoadOrTake(ctx context.Context, opts SnapshotOptions, statePath string, log *slog.Logger) (*Snapshot, error) {
	saved, err := Load(statePath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	live, err := Take(ctx, opts)
	switch {
	case errors.Is(err, ErrInterrupted) && saved != nil:
		log.Info("pod interface is mid-plumbing; using the saved snapshot", "path", statePath, "podIface", saved.PodIface)
		return saved, nil
	case err != nil:
		return nil, err
	}
	if saved != nil {
		mismatch := CheckMatches(statePath, saved, live)
		if mismatch == nil {
			return saved, nil
		}
		if live.Plumbed {
			return nil, mismatch
		}
		log.Warn("saved snapshot ignored", "error", mismatch)
	}
	if live.Plumbed {
		log.Warn("pod interface already plumbed and no saved snapshot: gateways and routes unknown",
			"podIface", live.PodIface, "path", statePath)
		return live, nil
	}
	if err := Save(live, statePath); err != nil {
		return nil, err
	}
	return live, nil
}
