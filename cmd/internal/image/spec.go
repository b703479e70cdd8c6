package image

import (
	"fmt"
	"io/fs"
	"time"

	"golang.org/x/sys/unix"
)

// File is one regular file of an image.
type File struct {
	Path    string      // absolute path in the image, e.g. "/dsbridge"
	Mode    fs.FileMode // permission bits
	Content []byte
	// Caps are file capabilities granted as permitted only (no effective
	// bit), written as the security.capability extended attribute; 0 for
	// none.
	Caps uint64
}

// Spec is one image: its files on an empty root (FROM scratch) and its
// runtime configuration.
type Spec struct {
	Ref        string // the reference it is loaded as, e.g. ghcr.io/dsbridge/dsbridge:v0.1.0
	Arch       string // GOARCH: amd64 or arm64
	Created    time.Time
	User       string
	Entrypoint []string
	Files      []File
}

// NonRootUser is both images' default user, the Containerfile's USER:
// distroless's "nonroot". KubeVirt runs the sidecar as 107 (runAsUser, or
// 0 with the Root feature gate) and the installer's DaemonSet runs as 0,
// both overriding it.
const NonRootUser = "65532:65532"

// SidecarCaps are the full tier's capabilities, which cmd/dsbridge raises
// to effective at start when the pod grants them (cmd/dsbridge/caps.go):
// NET_ADMIN, NET_RAW and NET_BIND_SERVICE.
const SidecarCaps uint64 = 1<<unix.CAP_NET_ADMIN | 1<<unix.CAP_NET_RAW | 1<<unix.CAP_NET_BIND_SERVICE

// Entrypoints of the two images.
var (
	SidecarEntrypoint = []string{"/dsbridge", "sidecar"}
	CNIEntrypoint     = []string{"/dsbridge-cni", "install", "-dest", "/host/opt/cni/bin", "-wait"}
)

// Stamp is what the binaries and /.version say about the build.
type Stamp struct {
	Version, Commit string
	Date            time.Time // the commit's time: the images' creation time too
}

// dateLayout is how -X main.date and /.version print Date.
const dateLayout = "2006-01-02T15:04:05Z"

// LDFlags are the linker flags of both binaries.
func (s Stamp) LDFlags() string {
	return fmt.Sprintf("-s -w -X main.version=%s -X main.commit=%s -X main.date=%s",
		s.Version, s.Commit, s.Date.UTC().Format(dateLayout))
}

// VersionFile is the content of /.version.
func (s Stamp) VersionFile() []byte {
	return fmt.Appendf(nil, "dsbridge %s commit %s built %s\n", s.Version, s.Commit, s.Date.UTC().Format(dateLayout))
}

// Sidecar is the sidecar image: /dsbridge with the full tier's
// capabilities as permitted-only file capabilities, /.version.
func Sidecar(ref, arch string, s Stamp, dsbridge []byte) Spec {
	return Spec{Ref: ref, Arch: arch, Created: s.Date, User: NonRootUser, Entrypoint: SidecarEntrypoint,
		Files: []File{
			{Path: "/dsbridge", Mode: 0o755, Content: dsbridge, Caps: SidecarCaps},
			{Path: "/.version", Mode: 0o644, Content: s.VersionFile()},
		}}
}

// CNIInstaller is the binding CNI installer image: /dsbridge-cni, which
// copies itself into the node's CNI directory, and /.version.
func CNIInstaller(ref, arch string, s Stamp, cni []byte) Spec {
	return Spec{Ref: ref, Arch: arch, Created: s.Date, User: NonRootUser, Entrypoint: CNIEntrypoint,
		Files: []File{
			{Path: "/dsbridge-cni", Mode: 0o755, Content: cni},
			{Path: "/.version", Mode: 0o644, Content: s.VersionFile()},
		}}
}
