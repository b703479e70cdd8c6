package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

var testStamp = Stamp{Version: "v9.8.7", Commit: "0123abcd", Date: time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)}

// TestCapXattrMatchesSetcap: the security.capability value the layer
// carries is byte for byte what setcap writes for the Containerfile's
// capabilities.
func TestCapXattrMatchesSetcap(t *testing.T) {
	if _, err := exec.LookPath("setcap"); err != nil {
		t.Skipf("setcap not installed (libcap2-bin): %v", err)
	}
	f := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(f, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("setcap", "cap_net_admin,cap_net_raw,cap_net_bind_service=p", f).CombinedOutput(); err != nil {
		t.Skipf("setcap refused (needs CAP_SETFCAP): %v: %s", err, out)
	}
	got := make([]byte, 64)
	n, err := unix.Getxattr(f, "security.capability", got)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(CapXattr(SidecarCaps), got[:n]); diff != "" {
		t.Errorf("security.capability (-CapXattr +setcap):\n%s", diff)
	}
}

// layerEntry is a layer tar entry as a container runtime unpacks it.
type layerEntry struct {
	Name     string
	Type     byte
	Mode     int64
	UID, GID int
	ModTime  time.Time
	Size     int64
	PAX      map[string]string
}

// TestSidecarLayer pins the sidecar image's one layer and its config.
func TestSidecarLayer(t *testing.T) {
	im, err := Encode(Sidecar("ghcr.io/dsbridge/dsbridge:v9.8.7", "amd64", testStamp, []byte("ELF...")))
	if err != nil {
		t.Fatal(err)
	}
	want := []layerEntry{
		{Name: ".version", Type: tar.TypeReg, Mode: 0o644, ModTime: testStamp.Date, Size: int64(len("dsbridge v9.8.7 commit 0123abcd built 2026-09-01T12:00:00Z\n"))},
		{Name: "dsbridge", Type: tar.TypeReg, Mode: 0o755, ModTime: testStamp.Date, Size: 6,
			PAX: map[string]string{"SCHILY.xattr.security.capability": "\x00\x00\x00\x02\x00\x34\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"}},
	}
	if diff := cmp.Diff(want, readLayer(t, im)); diff != "" {
		t.Errorf("layer (-want +got):\n%s", diff)
	}
	var cfg Config
	if err := json.Unmarshal(im.blobs[im.Config.Digest], &cfg); err != nil {
		t.Fatal(err)
	}
	wantCfg := Config{Created: testStamp.Date, Architecture: "amd64", OS: "linux",
		History: []History{{Created: testStamp.Date, CreatedBy: "dsbridge cmd/mkimage"}}}
	wantCfg.Config.User, wantCfg.Config.Entrypoint = "65532:65532", []string{"/dsbridge", "sidecar"}
	wantCfg.RootFS.Type, wantCfg.RootFS.DiffIDs = "layers", cfg.RootFS.DiffIDs
	if diff := cmp.Diff(wantCfg, cfg); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != digest(gunzip(t, im.blobs[im.Layer.Digest])) {
		t.Errorf("diff_ids %v is not the uncompressed layer's digest", cfg.RootFS.DiffIDs)
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readLayer(t *testing.T, im Image) []layerEntry {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(gunzip(t, im.blobs[im.Layer.Digest])))
	var got []layerEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		e := layerEntry{Name: h.Name, Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid, ModTime: h.ModTime.UTC(), Size: h.Size}
		if len(h.PAXRecords) > 0 {
			e.PAX = h.PAXRecords
		}
		got = append(got, e)
	}
}

// TestBuildReproducible builds both images twice from the same sources
// into different directories: the archives are byte-identical, so the
// image IDs and manifest digests are too; another stamp changes them.
func TestBuildReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both binaries")
	}
	build := func(s Stamp) [][]byte {
		o := BuildOptions{Module: "../../..", OutDir: t.TempDir(), Arch: runtime.GOARCH, Stamp: s,
			SidecarRef: "ghcr.io/dsbridge/dsbridge:" + s.Version, CNIRef: "ghcr.io/dsbridge/dsbridge-cni:" + s.Version}
		built, err := Build(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		var out [][]byte
		for _, b := range built {
			a, err := os.ReadFile(b.Archive)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, a)
		}
		return out
	}
	first, second := build(testStamp), build(testStamp)
	for i := range first {
		if !bytes.Equal(first[i], second[i]) {
			t.Errorf("image %d: two builds of the same sources differ (%d and %d bytes)", i, len(first[i]), len(second[i]))
		}
	}
	other := testStamp
	other.Commit = "4567ef01"
	if third := build(other); bytes.Equal(first[0], third[0]) {
		t.Error("another commit stamp gave the same sidecar archive")
	}
}
