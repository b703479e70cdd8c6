package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/hooks"
	"github.com/dsbridge/dsbridge/hooks/hookstest"
	"github.com/dsbridge/dsbridge/hooks/naming"
)

// TestSidecarServesGuest drives `dsbridge sidecar` in the lab's pod the way
// virt-launcher does (hooks/hookstest): Info, OnDefineDomain with a
// realistic domain and VMI, then a real guest gets both families from the
// services the sidecar started, then Shutdown ends it with status 0 and
// nothing of it left running in the pod. The pod's hostname (a UTS
// namespace of the sidecar's own, as in a pod) is the VM's hostname.
// Rows: the pod network (eth0, tap0) and a secondary Multus network
// "network1" (pod<hash>, tap<hash>).
func TestSidecarServesGuest(t *testing.T) {
	tests := []struct {
		name   string
		spec   lab.PodSpec
		domain string
		vmi    func(t *testing.T) []byte
		alias  string // the VMI interface, ua-<name> in the domain
		stack  guestStack
	}{
		{name: "pod network", spec: lab.KubeOVN, domain: "domain.xml", alias: "default",
			vmi: func(t *testing.T) []byte { return hookFixture(t, "vmi-pod.json") }, stack: stackNamed("dhcpcd")},
		{name: "multus", spec: lab.Multus, domain: "domain-multus.xml", alias: "network1",
			vmi: multusVMI, stack: stackNamed("dhclient")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := lab.NewLab(t, tt.spec)
			l.Hostname = "vmi-dual" // the pod's hostname: the VMI's name
			leak := lab.StartCapture(t, l.Node, l.NodeIf, lab.LeakFilter)
			sc := startSidecarIn(t, l)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			launcher, err := hookstest.Connect(ctx, sc.socket)
			if err != nil {
				t.Fatal(err)
			}
			if launcher.Version != "v1alpha3" || !launcher.Subscribed("OnDefineDomain") || !launcher.Subscribed("Shutdown") {
				t.Fatalf("Info = %v, want v1alpha3 with OnDefineDomain and Shutdown", launcher.Info)
			}
			domain := hookFixture(t, tt.domain)
			out, err := launcher.OnDefineDomain(ctx, domain, tt.vmi(t))
			if err != nil {
				t.Fatal(err)
			}
			checkDomainInterface(t, domain, out, l, tt.alias)
			sc.waitLog(t, `"msg":"serving interface`, 10*time.Second)

			rec := tt.stack.start(t, l)
			want := wantView(l, tt.stack)
			waitView(t, l, tt.stack, rec, want, 10*time.Second)
			pingFromGuest(t, l, tt.stack, want, false)

			if err := launcher.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			sc.waitExit(t, 5*time.Second)
			if _, err := os.Stat(sc.socket); !os.IsNotExist(err) {
				t.Errorf("hook socket %s still there after exit (stat: %v)", sc.socket, err)
			}
			if pids, err := exec.Command("ip", "netns", "pids", l.Pod.Name).Output(); err != nil || len(strings.TrimSpace(string(pids))) > 0 {
				t.Errorf("processes left in the pod after the sidecar exited: %q (%v)", pids, err)
			}
			checkNoLeak(t, leak)
		})
	}
}

// stackNamed is the matrix's guest stack called name.
func stackNamed(name string) guestStack {
	for _, g := range guestStacks {
		if g.name == name {
			return g
		}
	}
	panic("no guest stack " + name) // programmer error in a test table
}

// hookFixture reads a fixture of the hooks package.
func hookFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "hooks", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// multusVMI is the hooks package's Multus VMI with its dsbridge network
// renamed "network1" (pod interface lab.MultusPodIface) and the MAC
// KubeVirt reports for it set to the lab pod interface's.
func multusVMI(t *testing.T) []byte {
	t.Helper()
	vmi := string(hookFixture(t, "vmi-multus.json"))
	for _, from := range []string{`"blue"`, "02:b1:00:00:00:07"} {
		if !strings.Contains(vmi, from) {
			t.Fatalf("vmi-multus.json no longer holds %s", from)
		}
	}
	vmi = strings.ReplaceAll(vmi, `"blue"`, `"network1"`)
	vmi = strings.ReplaceAll(vmi, "02:b1:00:00:00:07", lab.Multus.MAC)
	if naming.HashedPodInterface("network1") != lab.MultusPodIface {
		t.Fatalf("KubeVirt names network1's pod interface %s, the lab %s", naming.HashedPodInterface("network1"), lab.MultusPodIface)
	}
	return []byte(vmi)
}

// checkDomainInterface checks the sidecar's domain is the input plus one
// interface: the lab's tap, the pod interface's MAC and MTU, the VMI
// interface's alias.
func checkDomainInterface(t *testing.T, in, out []byte, l *lab.Lab, alias string) {
	t.Helper()
	iface := "<interface type=\"ethernet\">\n\t\t\t<source/>\n\t\t\t<target dev=\"" + l.Tap + "\" managed=\"no\"/>\n" +
		"\t\t\t<model type=\"virtio-non-transitional\"/>\n\t\t\t<mac address=\"" + l.Spec.MAC + "\"/>\n" +
		"\t\t\t<mtu size=\"" + strconv.Itoa(l.Spec.MTU) + "\"/>\n\t\t\t<alias name=\"ua-" + alias + "\"/>\n\t\t\t<rom enabled=\"no\"/>\n\t\t</interface>\n\t\t"
	if got := strings.Replace(string(out), iface, "", 1); got != string(in) {
		t.Fatalf("OnDefineDomain result is not the domain plus\n%s\ngot:\n%s", iface, out)
	}
}

// sidecarRun is `dsbridge sidecar` running in a lab's pod.
type sidecarRun struct {
	cmd    *exec.Cmd
	out    *lab.Buffer
	socket string
	exited chan struct{}
}

// startSidecarIn runs `dsbridge sidecar` in l's pod with a hooks directory
// in a temporary directory and the lab's resolv.conf, in a UTS namespace
// of its own whose hostname is l.Hostname, as a pod's containers have. It
// is killed by PID at cleanup unless it exited.
func startSidecarIn(t *testing.T, l *lab.Lab) *sidecarRun {
	t.Helper()
	dir := t.TempDir()
	sc := &sidecarRun{out: &lab.Buffer{}, socket: hooks.SocketPath(dir, "dsbridge"), exited: make(chan struct{})}
	sc.cmd = exec.Command("ip", "netns", "exec", l.Pod.Name, "unshare", "--uts", "sh", "-c",
		`hostname "$1" && exec "$2" sidecar --hooks-dir "$3" --resolv-conf "$4" --log-level debug`,
		"sh", l.Hostname, dsbridgeBin, dir, l.ResolvConf)
	sc.cmd.Stdout, sc.cmd.Stderr = sc.out, sc.out
	if err := sc.cmd.Start(); err != nil {
		t.Fatalf("start dsbridge sidecar: %v", err)
	}
	go func() { _ = sc.cmd.Wait(); close(sc.exited) }()
	t.Cleanup(func() {
		select {
		case <-sc.exited:
		default:
			_ = sc.cmd.Process.Kill() // by PID: the test failed before Shutdown
			<-sc.exited
		}
		if t.Failed() {
			t.Logf("dsbridge sidecar output:\n%s", sc.out.String())
		}
	})
	return sc
}

// waitLog waits until the sidecar logged a line containing s.
func (sc *sidecarRun) waitLog(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for !strings.Contains(sc.out.String(), s) {
		select {
		case <-sc.exited:
			t.Fatalf("dsbridge sidecar exited (%v) before logging %s", sc.cmd.ProcessState, s)
		case <-deadline:
			t.Fatalf("dsbridge sidecar did not log %s within %v", s, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitExit waits for the sidecar to exit with status 0.
func (sc *sidecarRun) waitExit(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-sc.exited:
		if !sc.cmd.ProcessState.Success() {
			t.Fatalf("dsbridge sidecar exited with %v, want status 0", sc.cmd.ProcessState)
		}
	case <-time.After(timeout):
		t.Fatalf("dsbridge sidecar still running %v after Shutdown", timeout)
	}
}
