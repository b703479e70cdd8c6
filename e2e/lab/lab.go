// Package lab builds throwaway network namespaces for tests: the pod, the
// node (gateway) and the guest, with real processes in them.
// Everything a test creates here is removed when the test ends, also when it
// fails.
package lab

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// RandName returns prefix followed by six random hex characters. Keep the
// prefix at most nine characters so the name fits a 15-byte link name.
func RandName(prefix string) string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // programmer invariant: the kernel RNG never fails
	}
	return prefix + hex.EncodeToString(b[:])
}

// RequireRoot skips the test when network namespaces cannot be created,
// saying why. Only a permission error skips; anything else fails.
func RequireRoot(t T) {
	t.Helper()
	name := RandName("dsbchk")
	out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("Operation not permitted")) || bytes.Contains(out, []byte("Permission denied")) {
			t.Skipf("network namespaces need CAP_SYS_ADMIN: ip netns add: %s", bytes.TrimSpace(out))
		}
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del %s: %v: %s", name, err, out)
	}
}

// NS is a named network namespace created for one test.
type NS struct {
	Name string

	mu    sync.Mutex
	procs []*exec.Cmd
}

// NewNS creates a namespace with a random name and loopback up. It and every
// process started with Start are removed at the end of the test.
func NewNS(t T) *NS {
	t.Helper()
	RequireRoot(t)
	n := &NS{Name: RandName("dsb")}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", n.Name, err, out)
	}
	t.Cleanup(func() { n.destroy(t) })
	n.Run(t, "ip", "link", "set", "lo", "up")
	return n
}

func (n *NS) destroy(t T) {
	n.mu.Lock()
	procs := n.procs
	n.procs = nil
	n.mu.Unlock()
	for _, c := range procs {
		stopProcess(c)
	}
	// Processes started outside Start (by code under test) must not outlive
	// the namespace either: kill whatever still runs in it, by PID.
	if out, err := exec.Command("ip", "netns", "pids", n.Name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL) // best effort: the process may already be gone
			}
		}
	}
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		t.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
	}
}

// stopWaitDelay is how long Wait waits for a finished process's output to
// be closed by whatever it left running.
const stopWaitDelay = 2 * time.Second

// stopProcess ends a process by PID: SIGTERM, then SIGKILL after a second.
func stopProcess(c *exec.Cmd) {
	if c.Process == nil || c.ProcessState != nil {
		return
	}
	_ = c.Process.Signal(syscall.SIGTERM) // may have exited already
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		_ = c.Process.Kill()
		<-done
	}
}

// Exec runs a command inside the namespace and returns its combined output.
func (n *NS) Exec(args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in netns %s: %s: %w: %s", n.Name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Run is Exec that fails the test on error.
func (n *NS) Run(t T, args ...string) string {
	t.Helper()
	out, err := n.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Start runs a command in the background inside the namespace, with its
// output going to the test log on failure. It is stopped by PID at cleanup.
func (n *NS) Start(t T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	var buf Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	// A process's helpers may outlive it holding its output open (dhcpcd's
	// privilege-separation proxies, when the manager exits first): Wait
	// then returns stopWaitDelay after the process, not when they exit
	// (the namespace's destroy kills them).
	cmd.WaitDelay = stopWaitDelay
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s in netns %s: %v", strings.Join(args, " "), n.Name, err)
	}
	n.mu.Lock()
	n.procs = append(n.procs, cmd)
	n.mu.Unlock()
	t.Cleanup(func() {
		stopProcess(cmd)
		if t.Failed() {
			t.Logf("output of %s:\n%s", strings.Join(args, " "), buf.String())
		}
	})
	return cmd
}

// Path is the namespace's bind-mount path.
func (n *NS) Path() string { return filepath.Join("/var/run/netns", n.Name) }

// Do runs fn inside the namespace on a locked OS thread of a fresh
// goroutine. Sockets opened inside fn keep the namespace after Do returns.
// A thread that fails to switch back is never reused (it stays locked and
// the runtime discards it when the goroutine exits).
func (n *NS) Do(fn func() error) error {
	return DoPath(n.Path(), fn)
}

// DoPath is Do for a namespace given by path.
func DoPath(path string, fn func() error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("failed to open netns %q: %w", path, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("failed to get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("failed to enter netns %q: %w", path, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it exits with the goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("failed to return from netns %q: %w", path, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Veth creates a veth pair with one end in each namespace, both up.
func Veth(t T, a *NS, aName string, b *NS, bName string) {
	t.Helper()
	tmp := RandName("v")
	if out, err := exec.Command("ip", "link", "add", tmp, "netns", a.Name, "type", "veth", "peer", "name", bName, "netns", b.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip link add veth %s/%s: %v: %s", aName, bName, err, out)
	}
	a.Run(t, "ip", "link", "set", tmp, "name", aName)
	a.Run(t, "ip", "link", "set", aName, "up")
	b.Run(t, "ip", "link", "set", bName, "up")
}

// WriteFile writes content to a file named name in the test's temporary
// directory and returns its path.
func WriteFile(t T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Buffer collects a process's stdout and stderr; it is safe for concurrent
// writes and reads.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
