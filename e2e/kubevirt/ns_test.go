package kubevirt

// Network namespaces, veths, captures and process output for the tests.
// The main module's e2e/lab has the same kind of helpers, but importing it
// would put the main module's requirements into this module's build list
// (its cilium/ebpf breaks the opencontainers/cgroups that KubeVirt's
// virt-chroot builds against), so this package keeps its own few.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// randName returns prefix and six random hex digits (keep prefix <= 9
// characters for link names).
func randName(prefix string) string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // programmer invariant: the kernel RNG never fails
	}
	return prefix + hex.EncodeToString(b[:])
}

// netNS is a network namespace created for one test, removed (with every
// process still in it, killed by PID) when the test ends.
type netNS struct{ Name string }

func newNS(t *testing.T) *netNS {
	t.Helper()
	n := &netNS{Name: randName("dsbk")}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", n.Name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "pids", n.Name).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 && pid != os.Getpid() {
					_ = syscall.Kill(pid, syscall.SIGKILL) // best effort: it may be gone
				}
			}
		}
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
		}
	})
	n.run(t, "ip", "link", "set", "lo", "up")
	return n
}

func (n *netNS) path() string { return filepath.Join("/var/run/netns", n.Name) }

func (n *netNS) exec(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in netns %s: %s: %w: %s", n.Name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

func (n *netNS) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := n.exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// veth creates a veth pair, aName in a and bName in b, both up.
func veth(t *testing.T, a *netNS, aName string, b *netNS, bName string) {
	t.Helper()
	tmp := randName("v")
	if out, err := exec.Command("ip", "link", "add", tmp, "netns", a.Name, "type", "veth", "peer", "name", bName, "netns", b.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip link add veth %s/%s: %v: %s", aName, bName, err, out)
	}
	a.run(t, "ip", "link", "set", tmp, "name", aName)
	a.run(t, "ip", "link", "set", aName, "up")
	b.run(t, "ip", "link", "set", bName, "up")
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leakFilter matches what dsbridge must never send onto the uplink: DHCPv4
// and DHCPv6 replies and router advertisements.
const leakFilter = "(udp src port 67) or (udp src port 547) or (icmp6 and ip6[40] == 134)"

// capture is tcpdump writing to a file in the test's directory.
type capture struct {
	path string
	cmd  *exec.Cmd
	done chan struct{}
}

func startCapture(t *testing.T, ns *netNS, dev, filter string) *capture {
	t.Helper()
	c := &capture{path: filepath.Join(t.TempDir(), "capture.pcap"), done: make(chan struct{})}
	c.cmd = exec.Command("ip", "netns", "exec", ns.Name, "tcpdump", "-i", dev, "-n", "-U", "--immediate-mode", "-w", c.path, filter)
	out := &buffer{}
	c.cmd.Stdout, c.cmd.Stderr = out, out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(c.end)
	waitFor(t, 10*time.Second, "tcpdump on "+dev, func() bool {
		fi, err := os.Stat(c.path)
		return err == nil && fi.Size() > 0
	})
	time.Sleep(200 * time.Millisecond)
	return c
}

func (c *capture) end() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// stop ends tcpdump and returns the packets, one decoded line each.
func (c *capture) stop(t *testing.T) []string {
	t.Helper()
	c.end()
	out, err := exec.Command("tcpdump", "-r", c.path, "-n", "-e", "-v").CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v: %s", c.path, err, out)
	}
	var pkts []string
	for _, l := range strings.Split(string(out), "\n") {
		if len(l) > 0 && l[0] >= '0' && l[0] <= '9' {
			pkts = append(pkts, l)
		}
	}
	return pkts
}

// read decodes the stopped capture again with tcpdump's flags, a line each.
func (c *capture) read(t *testing.T, flags ...string) []string {
	t.Helper()
	out, err := exec.Command("tcpdump", append([]string{"-r", c.path}, flags...)...).Output()
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v", c.path, err)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		return strings.Split(s, "\n")
	}
	return nil
}

// buffer collects a process's output; safe for concurrent use.
type buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
