package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// BuildOptions say what Build builds and where.
type BuildOptions struct {
	Module     string // the repository root: where go build runs
	OutDir     string // binaries go to OutDir/<arch>/, archives to OutDir
	Arch       string // GOARCH: amd64 or arm64
	Stamp      Stamp
	SidecarRef string // e.g. ghcr.io/dsbridge/dsbridge:v0.1.0
	CNIRef     string // e.g. ghcr.io/dsbridge/dsbridge-cni:v0.1.0
}

// Built is one image Build wrote.
type Built struct {
	Spec    Spec
	Image   Image
	Archive string // the OCI archive's path
}

// Archive names in OutDir.
const (
	SidecarArchive = "dsbridge.oci.tar"
	CNIArchive     = "dsbridge-cni.oci.tar"
)

// Build compiles both binaries as the Containerfile's build stage does
// (static, -trimpath, stamped) and writes the sidecar and CNI installer
// images as OCI archives.
func Build(ctx context.Context, o BuildOptions) ([]Built, error) {
	binDir := filepath.Join(o.OutDir, o.Arch)
	bins := map[string][]byte{}
	for _, name := range []string{"dsbridge", "dsbridge-cni"} {
		b, err := goBuild(ctx, o, "./cmd/"+name, filepath.Join(binDir, name))
		if err != nil {
			return nil, err
		}
		bins[name] = b
	}
	specs := []struct {
		spec    Spec
		archive string
	}{
		{Sidecar(o.SidecarRef, o.Arch, o.Stamp, bins["dsbridge"]), SidecarArchive},
		{CNIInstaller(o.CNIRef, o.Arch, o.Stamp, bins["dsbridge-cni"]), CNIArchive},
	}
	var out []Built
	for _, s := range specs {
		b, err := writeArchive(s.spec, filepath.Join(o.OutDir, s.archive))
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// BuildFlags are the go build flags of both binaries, besides the stamped
// -ldflags: no file system paths in them, and the grpcnotrace tag, which
// leaves out grpc's golang.org/x/net/trace and the html/template it pulls in
// (about 3 MB of dsbridge's binary, all of it resident: the sidecar's idle
// memory is mostly its own code).
func BuildFlags() []string { return []string{"-trimpath", "-tags", "grpcnotrace"} }

// goBuild builds pkg into dst and returns the binary.
func goBuild(ctx context.Context, o BuildOptions, pkg, dst string) ([]byte, error) {
	args := append(append([]string{"build"}, BuildFlags()...), "-ldflags", o.Stamp.LDFlags(), "-o", dst, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = o.Module
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.Arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("failed to build %s: %w\n%s", pkg, err, out)
	}
	return os.ReadFile(dst)
}

// writeArchive encodes s and writes it to path through a temporary file.
func writeArchive(s Spec, path string) (Built, error) {
	im, err := Encode(s)
	if err != nil {
		return Built{}, err
	}
	var buf bytes.Buffer
	if err := im.WriteArchive(&buf, s.Created); err != nil {
		return Built{}, fmt.Errorf("failed to write the archive of %s: %w", s.Ref, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return Built{}, fmt.Errorf("failed to write %q: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return Built{}, fmt.Errorf("failed to write %q: %w", path, err)
	}
	return Built{Spec: s, Image: im, Archive: path}, nil
}

// ParseDate reads a stamp date as the Makefile's DATE prints it.
func ParseDate(s string) (time.Time, error) {
	t, err := time.Parse(dateLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("failed to parse date %q: %w", s, err)
	}
	return t, nil
}
