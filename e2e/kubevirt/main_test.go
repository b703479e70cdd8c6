package kubevirt

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// env is what every test uses: the binaries under test and the guest.
type env struct {
	dsbridge, cni  string // the dsbridge binaries, black boxes
	bin            string // a directory on PATH holding KubeVirt's virt-chroot
	kernel, initrd string // the guest (guest/build.sh)
	self           string // this test binary, re-executed as virt-launcher
}

var testEnv env

// roleEnv names the environment variable that makes this test binary play
// a process of the pod instead of running tests (launcher_test.go).
const roleEnv = "DSB_KV_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	flag.Parse()
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	if testing.Short() {
		return m.Run(), nil // every test here is long and skips itself
	}
	dir, err := os.MkdirTemp("", "dsb-kv-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	// uid 107 (the launcher, the sidecar) executes from here.
	if err := os.Chmod(dir, 0o755); err != nil {
		return 0, err
	}
	if err := buildBinaries(dir); err != nil {
		return 0, err
	}
	if err := buildGuest(); err != nil {
		return 0, err
	}
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	launcherCopy := filepath.Join(dir, "virt-launcher.test")
	if err := copyExec(self, launcherCopy); err != nil {
		return 0, err
	}
	testEnv.self = launcherCopy
	// virt-handler's tap creation runs the virt-chroot binary from PATH
	// (pkg/network/driver/virtchroot/tap.go).
	os.Setenv("PATH", testEnv.bin+":"+os.Getenv("PATH"))
	// virt-handler's own pod IP (its DaemonSet sets it); phase 1 reads it to
	// tell an IPv4-primary cluster (pkg/network/setup/netpod/discover.go).
	// Here virt-handler is this process, on the node.
	os.Setenv("MY_POD_IP", "10.16.0.1")
	return m.Run(), nil
}

// buildBinaries builds dsbridge and dsbridge-cni from the main module and
// KubeVirt's virt-chroot from this one, into dir.
func buildBinaries(dir string) error {
	testEnv.dsbridge, testEnv.cni = filepath.Join(dir, "dsbridge"), filepath.Join(dir, "dsbridge-cni")
	testEnv.bin = filepath.Join(dir, "bin")
	builds := []struct {
		dir, out, pkg, cgo string
	}{
		{"../..", testEnv.dsbridge, "./cmd/dsbridge", "0"},
		{"../..", testEnv.cni, "./cmd/dsbridge-cni", "0"},
		{".", filepath.Join(testEnv.bin, "virt-chroot"), "kubevirt.io/kubevirt/cmd/virt-chroot", "0"},
	}
	for _, b := range builds {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Dir = b.dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+b.cgo)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("failed to build %s: %w\n%s", b.pkg, err, out)
		}
	}
	return nil
}

// buildGuest runs guest/build.sh (a no-op when its cache is current) and
// finds the kernel and initramfs.
func buildGuest() error {
	cmd := exec.Command("./guest/build.sh")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("failed to build the guest: %w\n%s", err, out)
	}
	cache := os.Getenv("DSBRIDGE_GUEST_CACHE")
	if cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return err
		}
		cache = filepath.Join(base, "dsbridge", "kubevirt-guest")
	}
	testEnv.kernel = filepath.Join(cache, "out", "vmlinuz")
	testEnv.initrd = filepath.Join(cache, "out", "initramfs.gz")
	return nil
}

func copyExec(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}
