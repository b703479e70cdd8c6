package netsetup

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// TestLoadOrTake: a pristine pod is taken and saved; after plumbing (routes
// gone) the saved snapshot comes back with its gateways; a snapshot of other
// addresses is reported, and never used; mid-plumbing the saved one is used.
func TestLoadOrTake(t *testing.T) {
	l := newLab(t, lab.KubeOVN)
	path := filepath.Join(t.TempDir(), "state", "snapshot-eth0.json")
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	loadOrTake := func() (*Snapshot, error) {
		var s *Snapshot
		err := l.Pod.Do(func() (err error) {
			s, err = LoadOrTake(context.Background(), snapshotOpts(l), path, log)
			return err
		})
		return s, err
	}

	first, err := loadOrTake()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("pristine snapshot not saved: %v", err)
	}
	lay := standInLayout(l)
	ensureIn(t, l, first, lay, PlumbOptions{})

	again, err := loadOrTake()
	if err != nil {
		t.Fatal(err)
	}
	if again.Plumbed || again.Gateway4 == nil || again.Gateway4.IP != netip.MustParseAddr("10.16.0.1") || again.Gateway6 == nil {
		t.Errorf("after plumbing got %+v, want the saved pristine snapshot with both gateways", again)
	}

	// A saved snapshot of another pod on a plumbed pod: reported.
	other := *first
	other.IPv4 = []netip.Prefix{netip.MustParsePrefix("10.16.0.99/16")}
	if err := Save(&other, path); err != nil {
		t.Fatal(err)
	}
	_, err = loadOrTake()
	var me *MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("mismatching snapshot on a plumbed pod: err = %v, want *MismatchError", err)
	}

	// Mid-plumbing (pod interface renamed, no dummy yet): the saved one.
	teardownIn(t, l, first, lay)
	if err := Save(first, path); err != nil {
		t.Fatal(err)
	}
	do(t, l.Pod, func() error { return applySteps(context.Background(), first, lay, PlumbOptions{}, 3) })
	mid, err := loadOrTake()
	if err != nil || mid.Gateway4 == nil {
		t.Errorf("mid-plumbing: got %+v, %v; want the saved snapshot", mid, err)
	}
	teardownIn(t, l, first, lay)

	// A mismatching snapshot on a pristine pod is logged and replaced.
	if err := Save(&other, path); err != nil {
		t.Fatal(err)
	}
	fresh, err := loadOrTake()
	if err != nil {
		t.Fatal(err)
	}
	if fresh.IPv4[0] != netip.MustParsePrefix("10.16.0.5/16") {
		t.Errorf("pristine pod with a stale snapshot: got %v, want the live 10.16.0.5/16", fresh.IPv4)
	}
	if !strings.Contains(logs.String(), "saved snapshot ignored") {
		t.Errorf("stale snapshot not reported; log:\n%s", logs.String())
	}
	saved, err := Load(path)
	if err != nil || saved.IPv4[0] != netip.MustParsePrefix("10.16.0.5/16") {
		t.Errorf("stale snapshot not replaced: %+v, %v", saved, err)
	}
}
