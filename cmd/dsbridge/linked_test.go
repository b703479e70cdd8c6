package main

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// sizeBudget is the most the released dsbridge binary (linux/amd64,
// stripped, cmd/internal/image BuildFlags) may weigh. Nearly all of it is
// resident in a running sidecar: its idle memory is mostly its own code.
const sizeBudget = 12 << 20

// linkedModules are the only modules the released dsbridge binary links,
// each for a reason: a new one must earn its place here.
var linkedModules = []string{
	"github.com/insomniacslk/dhcp",              // DHCP message types in configs, tests and the packet trace
	"github.com/josharian/native",               // mdlayher/packet, vishvananda/netlink
	"github.com/mdlayher/ndp",                   // the RA's options
	"github.com/mdlayher/packet",                // the packet transport (AF_PACKET)
	"github.com/mdlayher/socket",                // mdlayher/packet
	"github.com/pierrec/lz4/v4",                 // u-root/uio, for insomniacslk/dhcp
	"github.com/u-root/uio",                     // insomniacslk/dhcp
	"github.com/vishvananda/netlink",            // plumbing
	"github.com/vishvananda/netns",              // plumbing
	"golang.org/x/net",                          // IP_PKTINFO sockets, grpc's HTTP/2
	"golang.org/x/sync",                         // errgroup
	"golang.org/x/sys",                          // syscalls
	"golang.org/x/text",                         // x/net's IDNA (ndp's DNSSL, grpc)
	"google.golang.org/genproto/googleapis/rpc", // grpc status
	"google.golang.org/grpc",                    // the KubeVirt hook server
	"google.golang.org/protobuf",                // the hook protocol
}

// cniOnly are packages only dsbridge-cni needs: the BPF loader and the CNI
// library; and grpc's tracing, which the grpcnotrace tag leaves out.
var cniOnly = []string{
	"github.com/dsbridge/dsbridge/ra/kernel",
	"github.com/dsbridge/dsbridge/cmd/dsbridge-cni",
	"github.com/cilium/ebpf",
	"github.com/containernetworking/cni",
	"golang.org/x/net/trace",
	"html/template",
	"text/template",
}

// cniOnlyPackage reports whether pkg is, or is inside, one of cniOnly; the
// sidecar reads what is attached through ra/kernel/attached, which loads
// nothing.
func cniOnlyPackage(pkg string) bool {
	if pkg == "github.com/dsbridge/dsbridge/ra/kernel/attached" {
		return false
	}
	for _, p := range cniOnly {
		if pkg == p || strings.HasPrefix(pkg, p+"/") {
			return true
		}
	}
	return false
}

// TestLinked: the released binary links exactly linkedModules, none of the
// packages only dsbridge-cni needs, and fits sizeBudget.
func TestLinked(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildSidecar(t)
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	var mods []string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "dep" {
			mods = append(mods, f[1])
		}
	}
	if diff := cmp.Diff(linkedModules, mods); diff != "" {
		t.Errorf("modules linked into dsbridge (-want +got):\n%s", diff)
	}
	deps, err := exec.Command("go", "list", "-deps", "-tags", "grpcnotrace", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for pkg := range strings.Lines(string(deps)) {
		if pkg = strings.TrimSpace(pkg); cniOnlyPackage(pkg) {
			t.Errorf("dsbridge links %s, which only dsbridge-cni needs", pkg)
		}
	}
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dsbridge (%s/%s, stripped): %d bytes, budget %d", runtime.GOOS, runtime.GOARCH, fi.Size(), sizeBudget)
	if runtime.GOARCH == "amd64" && fi.Size() > sizeBudget {
		t.Errorf("dsbridge is %d bytes, over its %d-byte budget", fi.Size(), sizeBudget)
	}
}
