package kubevirt

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// tier is one deployment tier of deploy/tiers: how the sidecar runs, and
// what KubeVirt's CR and the pod look like for it.
type tier struct {
	name       string
	sidecarUID int
	// setpriv are the sidecar's privileges (util-linux setpriv arguments).
	setpriv []string
	cni     bool // the binding CNI's ADD runs in the pod first
	root    bool // KubeVirt's Root feature gate: the launcher side runs as root
	// leak is the uplink capture filter that must stay empty.
	leak string
	plan map[string]string // the plan the sidecar must log: the tier, and each service's transport
}

var uid107 = []string{"--reuid", "107", "--regid", "107", "--clear-groups"}

var (
	tierFull = tier{name: "full", sidecarUID: 107, leak: leakFilter,
		// The image's file capabilities under the full tier's policy: uid
		// 107 holding NET_ADMIN, NET_RAW and NET_BIND_SERVICE.
		setpriv: append(append([]string{}, uid107...), "--inh-caps=-all,+net_admin,+net_raw,+net_bind_service",
			"--ambient-caps=-all,+net_admin,+net_raw,+net_bind_service", "--bounding-set=-all,+net_admin,+net_raw,+net_bind_service"),
		plan: map[string]string{"tier": "Full", "dhcpv4": "packet", "dhcpv6": "packet", "ra": "packet"}}
	tierRootGate = tier{name: "root gate", sidecarUID: 0, root: true, leak: leakFilter,
		// KubeVirt's Root gate: root with the runtime's default network
		// capabilities, never NET_ADMIN.
		setpriv: []string{"--inh-caps=-all", "--bounding-set=-all,+net_raw,+net_bind_service"},
		plan:    map[string]string{"tier": "Root gate", "dhcpv4": "packet", "dhcpv6": "packet", "ra": "packet"}}
	tierUnprivileged = tier{name: "unprivileged", sidecarUID: 107, cni: true,
		// The binding CNI's uplink guard keeps the UDP sockets' replies off
		// the uplink, as the packet tiers' sockets never send there.
		leak:    leakFilter,
		setpriv: append(append([]string{}, uid107...), "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"),
		plan:    map[string]string{"tier": "Unprivileged", "dhcpv4": "udp", "dhcpv6": "udp", "ra": "tc-bpf"}}
)

// pod is a virt-launcher pod: its network namespace and the directories of
// its volumes (the hooks emptyDir, virt-launcher's private directory, the
// kernel-boot container's files), with a sidecar and a launcher in it.
type pod struct {
	t        *testing.T
	tier     tier
	ns       *netNS
	uplink   string // its veth's end on the node
	root     string // host directory holding the pod's volumes
	hostname string

	sidecarOut *buffer
	sidecar    *exec.Cmd
	launcher   *launcherClient
}

// Directories under pod.root.
func (p *pod) hooksDir() string   { return filepath.Join(p.root, "hooks") }
func (p *pod) sidecarDir() string { return filepath.Join(p.hooksDir(), "hook-sidecar-0") }
func (p *pod) privateDir() string { return filepath.Join(p.root, "private") }
func (p *pod) runtimeDir() string { return filepath.Join(p.root, "xdg") }
func (p *pod) libvirtSock() string {
	return filepath.Join(p.runtimeDir(), "libvirt", "libvirt-sock")
}

// serialSocket is the guest's serial console as the converter names it
// (/var/run/kubevirt-private/<uid>/virt-serial0), seen from the host.
func (p *pod) serialSocket() string { return filepath.Join(p.privateDir(), vmiUID, "virt-serial0") }

// newPod creates the pod's namespace on the node's subnet s and its
// directories, owned as KubeVirt's pod leaves them.
func newPod(t *testing.T, n *node, s subnet, tr tier, hostname string) *pod {
	t.Helper()
	p := &pod{t: t, tier: tr, ns: newNS(t), hostname: hostname}
	p.uplink = n.attach(t, p.ns, s)
	root, err := os.MkdirTemp("", "dsbp") // short: unix socket paths below it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	p.root = root
	launcherUID := 107
	if tr.root {
		launcherUID = 0
	}
	dirs := []struct {
		path string
		uid  int
		mode os.FileMode
	}{
		{root, 0, 0o755},
		{p.hooksDir(), launcherUID, 0o755},
		{p.sidecarDir(), tr.sidecarUID, 0o755},
		{p.privateDir(), launcherUID, 0o755},
		{filepath.Join(p.privateDir(), vmiUID), launcherUID, 0o755},
		{p.runtimeDir(), launcherUID, 0o755},
		{filepath.Join(root, "overlay"), 0, 0o755},
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d.path, d.uid, d.uid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "resolv.conf"), resolvConf())
	return p
}

func resolvConf() string {
	var b strings.Builder
	for _, d := range dnsServers {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	fmt.Fprintf(&b, "search %s\noptions ndots:5\n", strings.Join(searchList, " "))
	return b.String()
}

// container starts argv as a container of the pod would run: in the pod's
// network namespace, in a private mount and UTS namespace with the pod's
// hostname and the given bind mounts (host path -> container path) over a
// fresh /run, with only env in its environment and the given setpriv
// privileges. overlay puts a throwaway overlay over /etc and /var (the
// launcher's passwd needs the qemu user, a root libvirtd writes to /var);
// nothing changes on the host.
func (p *pod) container(name string, binds [][2]string, overlay bool, env, setpriv []string, argv ...string) (*exec.Cmd, io.WriteCloser, io.Reader) {
	t := p.t
	t.Helper()
	script := `set -e
mount -t tmpfs -o mode=0755 tmpfs /run
if [ "$1" = overlay ]; then
	for d in etc var; do
		mkdir -p "$2/$d.upper" "$2/$d.work"
		mount -t overlay overlay -o "lowerdir=/$d,upperdir=$2/$d.upper,workdir=$2/$d.work" "/$d"
	done
	# virt-launcher's image has the qemu user (107); libvirt looks it up.
	grep -q '^qemu:' /etc/passwd || echo 'qemu:x:107:107:qemu:/var/run/kubevirt-private:/bin/false' >>/etc/passwd
	grep -q '^qemu:' /etc/group || echo 'qemu:x:107:' >>/etc/group
	# A root libvirtd resolves Debian's built-in QEMU user and group before
	# it reads qemu.conf (which then says root).
	grep -q '^libvirt-qemu:' /etc/passwd || echo 'libvirt-qemu:x:64055:64055::/var/lib/libvirt:/bin/false' >>/etc/passwd
	grep -q '^libvirt-qemu:' /etc/group || echo 'libvirt-qemu:x:64055:' >>/etc/group
	grep -q '^kvm:' /etc/group || echo 'kvm:x:64056:' >>/etc/group
	# KubeVirt's device plugin gives compute /dev/net/tun (devices.kubevirt.io/tun).
	mount -t tmpfs -o mode=0755 tmpfs /dev/net
	mknod -m 0666 /dev/net/tun c 10 200
fi
shift 2
hostname "$1"
shift
while [ "$1" != -- ]; do
	dst=$(readlink -m "$2")
	if [ -d "$1" ]; then mkdir -p "$dst"; else mkdir -p "$(dirname "$dst")"; [ -e "$dst" ] || : >"$dst"; fi
	mount --bind "$1" "$dst"
	shift 2
done
shift
exec "$@"
`
	mode := "plain"
	if overlay {
		mode = "overlay"
	}
	overlayDir := filepath.Join(p.root, "overlay", name)
	if err := os.MkdirAll(overlayDir, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"netns", "exec", p.ns.Name, "unshare", "--mount", "--uts", "--propagation", "private",
		"sh", "-c", script, "sh", mode, overlayDir, p.hostname}
	for _, b := range binds {
		args = append(args, b[0], b[1])
	}
	args = append(args, "--", "env", "-i")
	args = append(args, env...)
	args = append(args, "setpriv")
	args = append(args, setpriv...)
	args = append(args, argv...)
	cmd := exec.Command("ip", args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	return cmd, stdin, stdout
}

// cniAdd runs the binding CNI's ADD in the pod as the container runtime
// does for the binding's NetworkAttachmentDefinition (KubeVirt adds it as
// a Multus network with cni-arg logicNetworkName).
func (p *pod) cniAdd(t *testing.T) {
	t.Helper()
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"dsbridge-binding","type":"dsbridge-cni","stateDir":%q,"args":{"cni":{"logicNetworkName":"default"}}}`,
		t.TempDir())
	cni := func(command string) {
		cmd := exec.Command(testEnv.cni)
		cmd.Env = append(os.Environ(), "CNI_COMMAND="+command, "CNI_CONTAINERID="+randName("ctr"),
			"CNI_NETNS="+p.ns.path(), "CNI_IFNAME=dsb0", "CNI_PATH="+filepath.Dir(testEnv.cni))
		cmd.Stdin = strings.NewReader(conf)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("CNI %s: %v\n%s", command, err, out)
		}
	}
	cni("ADD")
	if got := strings.TrimSpace(p.ns.run(t, "sysctl", "-n", "net.ipv4.ip_unprivileged_port_start")); got != "0" {
		t.Fatalf("after CNI ADD ip_unprivileged_port_start = %s, want 0", got)
	}
}

// startSidecar runs `dsbridge sidecar` with no arguments, as KubeVirt
// renders hook-sidecar-0 (v1.9): NETWORK_BINDING_PLUGIN_NAME and
// CONTAINER_NAME set, the hooks volume mounted with subPath, so it sees
// only its own sub-directory as /var/run/kubevirt-hooks, and the pod's
// resolv.conf. It waits for the hook socket.
func (p *pod) startSidecar(t *testing.T) {
	t.Helper()
	binds := [][2]string{
		{p.sidecarDir(), "/var/run/kubevirt-hooks"},
		{filepath.Join(p.root, "resolv.conf"), "/etc/resolv.conf"},
		{filepath.Dir(testEnv.dsbridge), "/var/run/dsbridge-bin"},
	}
	env := []string{"NETWORK_BINDING_PLUGIN_NAME=" + pluginName, "CONTAINER_NAME=hook-sidecar-0", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd, stdin, stdout := p.container("sidecar", binds, false, env, p.tier.setpriv, "/var/run/dsbridge-bin/dsbridge", "sidecar")
	stdin.Close()
	p.sidecarOut = &buffer{}
	cmd.Stderr = p.sidecarOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(p.sidecarOut, stdout) }()
	p.sidecar = cmd
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("sidecar (%s) output:\n%s", p.tier.name, p.sidecarOut.String())
		}
	})
	sock := filepath.Join(p.sidecarDir(), pluginName+".sock")
	waitFor(t, 30*time.Second, "the sidecar's hook socket "+sock, func() bool {
		fi, err := os.Stat(sock)
		return err == nil && fi.Mode()&os.ModeSocket != 0
	})
}

// startLauncher runs this test binary as virt-launcher's process (compute
// container): uid 107 with no capabilities (root for the Root gate), the
// whole hooks volume at /var/run/kubevirt-hooks, its private directory at
// /var/run/kubevirt-private, the kernel-boot container's files at
// /var/run/kubevirt/container-disks/kernel-boot.
func (p *pod) startLauncher(t *testing.T) {
	t.Helper()
	binds := [][2]string{
		{p.hooksDir(), "/var/run/kubevirt-hooks"},
		{p.privateDir(), "/var/run/kubevirt-private"},
		{filepath.Dir(testEnv.kernel), "/var/run/kubevirt/container-disks/kernel-boot"},
		{filepath.Dir(testEnv.self), "/var/run/dsb-launcher"},
	}
	// As virt-launcher's container for a non-root VMI (XDG_* under
	// /var/run/kubevirt-private, pkg/virt-controller/services/template.go),
	// except XDG_RUNTIME_DIR: libvirt's socket sits in a host directory so
	// the source's libvirtd can reach the target's for a migration.
	env := []string{roleEnv + "=" + launcherRole, envLibvirtSock + "=" + p.libvirtSock(), "HOME=/var/run/kubevirt-private",
		"XDG_CONFIG_HOME=/var/run/kubevirt-private", "XDG_CACHE_HOME=/var/run/kubevirt-private",
		"XDG_RUNTIME_DIR=" + p.runtimeDir(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	setpriv := append(append([]string{}, uid107...), "--inh-caps=-all", "--bounding-set=-all")
	if p.tier.root {
		setpriv = []string{"--inh-caps=-all"}
		writeFile(t, filepath.Join(p.root, "libvirtd.conf"), fmt.Sprintf("unix_sock_dir = %q\nauth_unix_rw = \"none\"\n", filepath.Dir(p.libvirtSock())))
		writeFile(t, filepath.Join(p.root, "qemu.conf"), rootQemuConf)
		binds = append(binds, [2]string{filepath.Join(p.root, "qemu.conf"), "/etc/libvirt/qemu.conf"})
		env = append(env, envLibvirtdConf+"="+filepath.Join(p.root, "libvirtd.conf"))
	}
	cmd, stdin, stdout := p.container("launcher", binds, true, env, setpriv, "/var/run/dsb-launcher/"+filepath.Base(testEnv.self))
	p.launcher = newLauncherClient(t, cmd, stdin, stdout, p.tier.name)
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(p.privateDir(), "libvirt", "qemu", "log", "default_vm1.log")); err == nil {
				t.Logf("QEMU log (%s):\n%s", p.tier.name, b)
			}
		}
	})
}

// rootQemuConf is the root libvirtd's QEMU driver configuration for the
// Root gate: no cgroups, namespaces, seccomp, SELinux/AppArmor or virtlogd
// (none of which a pod has), QEMU as root as KubeVirt's root launcher.
const rootQemuConf = `user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
cgroup_controllers = [ ]
namespaces = [ ]
seccomp_sandbox = 0
security_driver = "none"
stdio_handler = "file"
`

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// launcherClient talks to the launcher process (launcher_role_test.go).
type launcherClient struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr *buffer
	pid    int
}

func newLauncherClient(t *testing.T, cmd *exec.Cmd, stdin io.WriteCloser, stdout io.Reader, name string) *launcherClient {
	t.Helper()
	c := &launcherClient{t: t, cmd: cmd, in: stdin, out: bufio.NewScanner(stdout), stderr: &buffer{}}
	c.out.Buffer(make([]byte, 1<<20), 16<<20)
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = stdin.Close() // EOF: the launcher stops libvirtd and exits
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("launcher (%s) output:\n%s", name, c.stderr.String())
		}
	})
	c.pid = c.call(launcherRequest{Op: "pid"}).PID
	return c
}

// call sends one command and waits for its answer; an error fails the test.
func (c *launcherClient) call(req launcherRequest) launcherReply {
	c.t.Helper()
	rep, err := c.try(req)
	if err != nil {
		c.t.Fatalf("launcher %s: %v", req.Op, err)
	}
	return rep
}

func (c *launcherClient) try(req launcherRequest) (launcherReply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, err := json.Marshal(req)
	if err != nil {
		return launcherReply{}, err
	}
	if _, err := c.in.Write(append(b, '\n')); err != nil {
		return launcherReply{}, fmt.Errorf("launcher gone: %w\n%s", err, c.stderr.String())
	}
	if !c.out.Scan() {
		time.Sleep(100 * time.Millisecond)
		return launcherReply{}, fmt.Errorf("launcher exited (%v, %v)\n%s", c.out.Err(), c.cmd.ProcessState, c.stderr.String())
	}
	var rep launcherReply
	if err := json.Unmarshal(c.out.Bytes(), &rep); err != nil {
		return launcherReply{}, fmt.Errorf("launcher answer %q: %w", c.out.Text(), err)
	}
	if rep.Err != "" {
		return rep, fmt.Errorf("%s", rep.Err)
	}
	return rep, nil
}
