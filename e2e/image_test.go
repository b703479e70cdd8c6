package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/e2e/imagetest"
	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/e2e/lab/managedtap"
	"github.com/dsbridge/dsbridge/hooks/hookstest"
	"github.com/google/go-cmp/cmp"
)

// builtImage is one image cmd/mkimage wrote: its reference, archive,
// image ID (the config digest) and the binary it holds.
type builtImage struct {
	ref, archive, id, binary string
}

// loadImage builds both images as make image does (go run ./cmd/mkimage:
// static, stamped binaries, then the OCI archives) and loads the one at
// index i (0 sidecar, 1 CNI installer) into p; podman's image ID must be
// the archive's config digest.
func loadImage(t *testing.T, p *imagetest.Podman, i int) builtImage {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "run", "./cmd/mkimage", "-out", dir, "-arch", runtime.GOARCH,
		"-version", "v0.0.0-e2e", "-commit", "0123abcd", "-date", "2026-12-01T00:00:00Z",
		"-sidecar-ref", "localhost/dsbridge:e2e", "-cni-ref", "localhost/dsbridge-cni:e2e")
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mkimage: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	f := strings.Fields(lines[min(i, len(lines)-1)])
	if len(lines) != 2 || len(f) != 6 || f[2] != "id" || f[4] != "manifest" {
		t.Fatalf("mkimage printed %q, want two lines <ref> <archive> id <id> manifest <digest>", out)
	}
	b := builtImage{ref: f[0], archive: f[1], id: f[3],
		binary: filepath.Join(dir, runtime.GOARCH, []string{"dsbridge", "dsbridge-cni"}[i])}
	p.Run(t, "load", "--quiet", "--input", b.archive)
	if id := strings.TrimSpace(p.Run(t, "image", "inspect", "--format", "{{.Id}}", b.ref)); id != b.id {
		t.Fatalf("podman loaded %s as image %s, the archive's config is %s", b.ref, id, b.id)
	}
	return b
}

// TestSidecarImage runs the sidecar image under podman exactly as the pod
// KubeVirt renders runs hook-sidecar-0 (pkg/virt-controller/services/
// template.go, rendercontainer.go): no arguments, uid/gid 107, every
// capability dropped, a read-only root filesystem, the hooks emptyDir's
// own sub-directory at /var/run/kubevirt-hooks (subPath, KubeVirt >= 1.6),
// KubeVirt's environment, the pod's network namespace. The fake
// virt-launcher drives it through Info, OnDefineDomain and Shutdown, and a
// guest gets both families.
//
//   - unprivileged: KubeVirt's default securityContext (no-new-privileges);
//     the binding CNI's ADD first; the process has no capability at all;
//   - full: the capability policy's NET_ADMIN, NET_RAW and NET_BIND_SERVICE
//     added and privilege escalation allowed: the image's permitted-only
//     file capabilities are what makes them effective, and the sidecar
//     runs in the full tier. The runtime mounts /proc/sys read-only, as
//     for every unprivileged container: the sidecar gets past the
//     plumbing's sysctls only because the binding CNI's ADD set the
//     namespace-wide ones and the IPv6 defaults the bridge inherits
//     (without those it fails with EROFS).
func TestSidecarImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images and runs them under podman")
	}
	lab.RequireRoot(t)
	imagetest.Require(t)
	p := imagetest.New(t)
	b := loadImage(t, p, 0)
	for _, row := range []imageRow{
		{name: "unprivileged", tier: "Unprivileged", podman: []string{"--cap-drop=ALL", "--security-opt=no-new-privileges"},
			caps: "CapInh:0 CapPrm:0 CapEff:0 CapBnd:0 CapAmb:0 NoNewPrivs:1", leak: "icmp6 and ip6[40] == 134",
			plan: map[string]string{"tier": "Unprivileged", "plumbing": "adopt", "dhcpv4": "udp", "dhcpv6": "udp", "ra": "tc-bpf"}},
		{name: "full", tier: "Full", podman: []string{"--cap-drop=ALL", "--cap-add=NET_ADMIN,NET_RAW,NET_BIND_SERVICE"},
			caps: "CapInh:0 CapPrm:3400 CapEff:3400 CapBnd:3400 CapAmb:0 NoNewPrivs:0", leak: lab.LeakFilter,
			plan: map[string]string{"tier": "Full", "plumbing": "build", "dhcpv4": "packet", "dhcpv6": "packet", "ra": "packet"}},
	} {
		t.Run(row.name, func(t *testing.T) { runImageTier(t, p, b, row) })
	}
}

// imageRow is one tier of TestSidecarImage: the securityContext as podman
// flags, the capability sets the sidecar process must have (hex, from
// /proc/<pid>/status), the plan it must log and the uplink capture filter
// that must stay empty.
type imageRow struct {
	name, tier string
	podman     []string
	caps, leak string
	plan       map[string]string // service: transport, and the tier
}

func runImageTier(t *testing.T, p *imagetest.Podman, b builtImage, row imageRow) {
	l := lab.NewLab(t, lab.KubeOVN)
	leak := lab.StartCapture(t, l.Node, l.NodeIf, row.leak)
	cni := cniAdd(t, l, false)
	hooksDir, resolv := podHooksDir(t, l)

	name := lab.RandName("dsbside")
	args := append(append([]string{"run", "--name", name, "--network", "ns:" + l.Pod.Path(),
		"--user", "107:107", "--read-only", "--read-only-tmpfs=false", "--security-opt", "seccomp=unconfined",
		"--hostname", "vmi-dual", "--env", "NETWORK_BINDING_PLUGIN_NAME=dsbridge", "--env", "CONTAINER_NAME=hook-sidecar-0",
		"--env", "XDG_CACHE_HOME=/var/run/kubevirt-private", "--env", "XDG_CONFIG_HOME=/var/run/kubevirt-private",
		"--env", "XDG_RUNTIME_DIR=/var/run",
		"--volume", hooksDir + ":/var/run/kubevirt-hooks", "--volume", resolv + ":/etc/resolv.conf:ro"},
		p.RunArgs()...), row.podman...)
	side := &lab.Buffer{}
	cmd := p.Command(append(args, b.ref)...)
	cmd.Stdout, cmd.Stderr = side, side
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.Command("rm", "--force", "--time", "0", name).Run()
		<-exited
		if t.Failed() {
			t.Logf("sidecar container output:\n%s", side.String())
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	launcher, err := hookstest.Connect(ctx, filepath.Join(hooksDir, "dsbridge.sock"))
	if err != nil {
		t.Fatalf("%v\nsidecar output:\n%s", err, side.String())
	}
	if got := processCaps(t, p, name); got != row.caps {
		t.Errorf("sidecar process: %s, want %s", got, row.caps)
	}
	managedtap.Build(t, l)
	if _, err := launcher.OnDefineDomain(ctx, readFixture(t, "domain.xml"), readFixture(t, "vmi-pod.json")); err != nil {
		t.Fatalf("OnDefineDomain: %v", err)
	}
	checkPlan(t, side, row.plan)
	checkStatusTier(t, filepath.Join(hooksDir, "dsbridge", "status.sock"), row.tier)

	l.Dhcpcd(t)
	waitAddrs(t, l, []string{"10.16.0.5/16", "fd00:10:16::5/128"}, 30*time.Second)
	waitDefault(t, l, "-4", "10.16.0.1", 5*time.Second)
	waitDefault(t, l, "-6", l.GatewayLLA(), 5*time.Second)
	pingAll(t, l, 3, gatewayPings(l.Spec)...)

	if err := launcher.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Errorf("sidecar container exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("sidecar container still runs 10 s after Shutdown")
	}
	cni.run(t, l, "DEL")
	if pkts := leak.Stop(t); len(pkts) > 0 {
		t.Errorf("the uplink capture (%s) holds:\n%s", row.leak, strings.Join(pkts, "\n"))
	}
}

// podHooksDir is the pod's hooks emptyDir (hook-sidecar-sockets) with the
// sidecar's sub-directory, as the kubelet leaves it with fsGroup 107
// (group 107, group-writable, setgid), and a copy of the lab's resolv.conf
// the kubelet would mount. It returns the sub-directory and the copy.
func podHooksDir(t *testing.T, l *lab.Lab) (hooksDir, resolv string) {
	t.Helper()
	emptyDir, err := os.MkdirTemp("", "dsb-emptydir-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(emptyDir) })
	hooksDir = filepath.Join(emptyDir, "hook-sidecar-0")
	if err := os.Mkdir(hooksDir, 0o770); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{emptyDir, hooksDir} {
		if err := os.Chown(d, 0, 107); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o2770|os.ModeSetgid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(emptyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	resolv = filepath.Join(emptyDir, "resolv.conf")
	copyFile(t, l.ResolvConf, resolv)
	return hooksDir, resolv
}

// processCaps reads the container's main process from /proc: its uids and
// gids must be 107; it returns its capability sets (hex, as in
// /proc/<pid>/status, without leading zeros) and no_new_privs.
func processCaps(t *testing.T, p *imagetest.Podman, name string) string {
	t.Helper()
	pid := strings.TrimSpace(p.Run(t, "inspect", "--format", "{{.State.Pid}}", name))
	b, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.Join(strings.Fields(v), " ")
		switch k {
		case "Uid", "Gid":
			if v != "107 107 107 107" {
				t.Errorf("sidecar process %s: %s, want 107 for all four", k, v)
			}
		case "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb":
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", k, v, err)
			}
			got = append(got, fmt.Sprintf("%s:%x", k, n))
		case "NoNewPrivs":
			got = append(got, k+":"+v)
		}
	}
	return strings.Join(got, " ")
}

// checkPlan waits for the sidecar's "serving interface" line and checks
// it holds every want.
func checkPlan(t *testing.T, side *lab.Buffer, want map[string]string) {
	t.Helper()
	var line string
	lab.WaitFor(t, 10*time.Second, "the sidecar's serving interface line", func() bool {
		for _, l := range strings.Split(side.String(), "\n") {
			if strings.Contains(l, `"msg":"serving interface"`) {
				line = l
				return true
			}
		}
		return false
	})
	type service struct {
		On        bool
		Transport string
	}
	var plan struct {
		Tier                         string
		Plumbing, DHCPv4, DHCPv6, RA service
	}
	if err := json.Unmarshal([]byte(line), &plan); err != nil {
		t.Fatalf("serving interface line: %v\n%s", err, line)
	}
	got := map[string]string{"tier": plan.Tier}
	for name, s := range map[string]service{"plumbing": plan.Plumbing, "dhcpv4": plan.DHCPv4, "dhcpv6": plan.DHCPv6, "ra": plan.RA} {
		if s.On {
			got[name] = s.Transport
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sidecar plan (-want +got):\n%s\n%s", diff, line)
	}
}

// checkStatusTier reads the sidecar's status API from the host, as
// `kubectl exec ... dsbridge status` would inside the pod.
func checkStatusTier(t *testing.T, socket, tier string) {
	t.Helper()
	out, err := exec.Command(dsbridgeBin, "status", "--socket", socket, "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("dsbridge status: %v\n%s", err, out)
	}
	var doc struct{ Tier string }
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("dsbridge status --json: %v\n%s", err, out)
	}
	if doc.Tier != tier {
		t.Errorf("status tier = %q, want %q", doc.Tier, tier)
	}
}

// TestCNIInstallerImage runs the CNI installer image as deploy/base's
// DaemonSet runs it (root, every capability dropped, no privilege
// escalation, read-only root filesystem, the node's CNI directory at
// /host/opt/cni/bin): it installs the image's binary there, byte for byte
// and executable, keeps running, and exits 0 on SIGTERM.
func TestCNIInstallerImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images and runs them under podman")
	}
	lab.RequireRoot(t)
	imagetest.Require(t)
	p := imagetest.New(t)
	b := loadImage(t, p, 1)
	hostDir := t.TempDir()
	name := lab.RandName("dsbcni")
	p.Run(t, append(append([]string{"run", "--detach", "--name", name, "--network", "none", "--user", "0",
		"--cap-drop=ALL", "--security-opt=no-new-privileges", "--read-only", "--read-only-tmpfs=false",
		"--volume", hostDir + ":/host/opt/cni/bin"}, p.RunArgs()...), b.ref)...)
	t.Cleanup(func() { _ = p.Command("rm", "--force", "--time", "0", name).Run() })

	installed := filepath.Join(hostDir, "dsbridge-cni")
	lab.WaitFor(t, 20*time.Second, "the installed plugin", func() bool {
		fi, err := os.Stat(installed)
		return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm() == 0o755
	})
	got, err := os.ReadFile(installed)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(b.binary)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("installed %d bytes, the image's /dsbridge-cni (%s) has %d: not the same file", len(got), b.binary, len(want))
	}
	ver := exec.Command(installed)
	ver.Env = append(os.Environ(), "CNI_COMMAND=VERSION")
	ver.Stdin = strings.NewReader(`{"cniVersion":"1.0.0"}`)
	if out, err := ver.CombinedOutput(); err != nil || !strings.Contains(string(out), `"supportedVersions"`) {
		t.Errorf("installed plugin VERSION: %v\n%s", err, out)
	}
	if state := strings.TrimSpace(p.Run(t, "inspect", "--format", "{{.State.Status}}", name)); state != "running" {
		t.Errorf("installer container is %s after installing, want running (-wait)", state)
	}
	p.Run(t, "stop", "--time", "10", name)
	logs, err := p.Command("logs", name).CombinedOutput() // the container's stderr comes on podman's
	if err != nil {
		t.Fatalf("podman logs: %v\n%s", err, logs)
	}
	if code := strings.TrimSpace(p.Run(t, "inspect", "--format", "{{.State.ExitCode}}", name)); code != "0" {
		t.Errorf("installer exit code after SIGTERM = %s, want 0\n%s", code, logs)
	}
	wantLog := "installed /host/opt/cni/bin/dsbridge-cni (dsbridge-cni v0.0.0-e2e commit 0123abcd built 2026-12-01T00:00:00Z)\n"
	if string(logs) != wantLog {
		t.Errorf("installer log = %q, want %q", logs, wantLog)
	}
}
