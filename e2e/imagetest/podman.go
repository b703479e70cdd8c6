// Package imagetest runs images under podman for tests, the way a
// Kubernetes node's runtime runs a pod's containers, without touching the
// host's podman: a private configuration, storage, run directory and
// cgroup parent per test, all removed at cleanup; nothing is ever pulled.
package imagetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// Podman is a podman with a private configuration and storage.
type Podman struct {
	dir          string
	cgroupParent string
	env          []string
	global       []string
}

// Require skips the test when podman or runc is not installed.
func Require(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian packages podman, runc; make deps installs them): %v", tool, err)
		}
	}
}

// New sets up a private podman for the test and registers its cleanup.
//
// Choices, each for a reason found on Debian 12's podman 4.3:
//   - runc, not crun: crun 1.8 refuses the cgroup v1/v2 hybrid layout
//     ("cgroups in hybrid mode not supported"), with or without --cgroups=disabled;
//   - the vfs storage driver: plain directories, no overlay mounts to leak;
//   - ulimits no higher than this process's: podman's defaults (nofile
//     1048576) need CAP_SYS_RESOURCE, which a sandboxed root may lack;
//   - the OCI runtime wrapped by k8s-runc (see kubeletCaps).
func New(t testing.TB) *Podman {
	t.Helper()
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "dsb-podman-")
	if err != nil {
		t.Fatal(err)
	}
	p := &Podman{dir: dir, cgroupParent: "/" + lab.RandName("dsbpodman")}
	t.Cleanup(func() { p.cleanup(t) })
	for _, d := range []string{"root", "run", "tmp", "net"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	wrapper := filepath.Join(dir, "k8s-runc")
	write(t, wrapper, fmt.Sprintf(kubeletCaps, runc), 0o755)
	write(t, filepath.Join(dir, "containers.conf"), containersConf(dir), 0o644)
	write(t, filepath.Join(dir, "storage.conf"), fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "run")), 0o644)
	write(t, filepath.Join(dir, "registries.conf"), "unqualified-search-registries = []\n", 0o644)
	p.env = append(os.Environ(), "CONTAINERS_CONF="+filepath.Join(dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF="+filepath.Join(dir, "storage.conf"),
		"CONTAINERS_REGISTRIES_CONF="+filepath.Join(dir, "registries.conf"))
	p.global = []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
		"--tmpdir", filepath.Join(dir, "tmp"), "--cgroup-manager", "cgroupfs", "--events-backend", "file",
		"--runtime", wrapper}
	return p
}

// kubeletCaps is an OCI runtime wrapper (a shell script; %s is runc) that
// gives a container's process the capabilities Kubernetes gives it.
// podman puts the capabilities of --cap-add into the ambient and
// inheritable sets when the user is not root, so a uid-107 process would
// have them effective without any file capability; containerd and CRI-O
// set only the bounding, permitted and effective sets (no inheritable
// since containerd 1.6.18 / CVE-2022-24769, never ambient), which a
// non-root exec drops unless the file grants them. The wrapper empties
// ambient and inheritable in the bundle's config.json before runc creates
// the container.
const kubeletCaps = `#!/bin/sh
bundle= prev=
for a in "$@"; do
	case "$prev" in --bundle|-b) bundle=$a ;; esac
	case "$a" in --bundle=*) bundle=${a#--bundle=} ;; esac
	prev=$a
done
if [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
	sed -i -E 's/"(ambient|inheritable)":\[[^]]*\]/"\1":[]/g' "$bundle/config.json" || exit 1
fi
exec %s "$@"
`

// containersConf keeps podman's networks, events and limits to dir and
// this process's limits; container logs go to files (no journald here).
func containersConf(dir string) string {
	var nofile, nproc unix.Rlimit
	_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile) // on error: zero, and podman says so
	_ = unix.Getrlimit(unix.RLIMIT_NPROC, &nproc)
	lim := func(r unix.Rlimit) uint64 { return min(r.Cur, r.Max, 4096) }
	return fmt.Sprintf(`[containers]
default_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]
log_driver = "k8s-file"
[network]
network_config_dir = %q
[engine]
events_logger = "file"
events_logfile_path = %q
`, lim(nofile), lim(nofile), lim(nproc), lim(nproc), filepath.Join(dir, "net"), filepath.Join(dir, "events.log"))
}

func write(t testing.TB, name, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// Command is podman with the private configuration and args.
func (p *Podman) Command(args ...string) *exec.Cmd {
	cmd := exec.Command("podman", append(append([]string{}, p.global...), args...)...)
	cmd.Env = p.env
	return cmd
}

// Run runs podman to completion and returns its standard output.
func (p *Podman) Run(t testing.TB, args ...string) string {
	t.Helper()
	cmd := p.Command(args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// RunArgs are the podman run flags every container of these tests gets:
// never pull, the test's cgroup parent.
func (p *Podman) RunArgs() []string {
	return []string{"--pull=never", "--cgroup-parent=" + p.cgroupParent}
}

// cleanup removes every container and image, the storage and
// configuration, and the cgroup directories podman created.
func (p *Podman) cleanup(t testing.TB) {
	for _, args := range [][]string{{"rm", "--all", "--force", "--time", "0"}, {"rmi", "--all", "--force"}} {
		if out, err := p.Command(args...).CombinedOutput(); err != nil {
			t.Errorf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if err := os.RemoveAll(p.dir); err != nil {
		t.Errorf("removing podman's directory: %v", err)
	}
	p.removeCgroups(t)
}

// removeCgroups removes the cgroup parent's directories in every
// hierarchy, innermost first.
func (p *Podman) removeCgroups(t testing.TB) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*" + p.cgroupParent)
	if fi, err := os.Stat("/sys/fs/cgroup" + p.cgroupParent); err == nil && fi.IsDir() {
		roots = append(roots, "/sys/fs/cgroup"+p.cgroupParent)
	}
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil {
				t.Errorf("removing cgroup %s: %v", dirs[i], err)
			}
		}
	}
}
