package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// dsbridgeBin and cniBin are the binaries under test, built once by
// TestMain into a directory any uid may read (the unprivileged tier runs
// the sidecar as uid 107).
var dsbridgeBin, cniBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dsbridge-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dsbridgeBin, cniBin = filepath.Join(dir, "dsbridge"), filepath.Join(dir, "dsbridge-cni")
	for bin, pkg := range map[string]string{dsbridgeBin: "./cmd/dsbridge", cniBin: "./cmd/dsbridge-cni"} {
		// Built as released (cmd/internal/image BuildFlags, stripped), so
		// that memory and size measured here are the image's.
		if err := buildBinary(bin, pkg, true); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildBinary builds the command pkg ("./cmd/dsbridge") into bin as the
// image does; stripped false keeps the symbols (for a profiler), the code
// being the same.
func buildBinary(bin, pkg string, stripped bool) error {
	args := []string{"build", "-trimpath", "-tags", "grpcnotrace"}
	if stripped {
		args = append(args, "-ldflags", "-s -w")
	}
	build := exec.Command("go", append(args, "-o", bin, "github.com/dsbridge/dsbridge/"+pkg[2:])...)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %v\n%s", pkg, err, out)
	}
	return nil
}

// server is a running `dsbridge serve` (or sidecar) in the pod namespace.
type server struct {
	cmd      *exec.Cmd
	out      *lab.Buffer
	stateDir string
}

// serve starts `dsbridge serve` in l's pod for the lab's pod interface and
// tap, with the lab's resolv.conf and hostname, and waits until it serves.
// stateDir "" means a fresh one. The process is stopped by PID at cleanup.
func serve(t *testing.T, l *lab.Lab, stateDir string, extra ...string) *server {
	t.Helper()
	if stateDir == "" {
		stateDir = t.TempDir()
	}
	args := append([]string{"ip", "netns", "exec", l.Pod.Name, dsbridgeBin, "serve",
		"--pod-iface", l.Spec.PodIface, "--tap", l.Tap, "--resolv-conf", l.ResolvConf,
		"--hostname", l.Hostname, "--state-dir", stateDir, "--log-level", "debug"}, extra...)
	s := &server{out: &lab.Buffer{}, stateDir: stateDir}
	s.cmd = exec.Command(args[0], args[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start dsbridge serve: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		s.stop()
		<-exited
		if t.Failed() {
			t.Logf("dsbridge serve output:\n%s", s.out.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(s.out.String(), `"msg":"serving interface`) {
		select {
		case <-exited:
			t.Fatalf("dsbridge serve exited early (%v):\n%s", s.cmd.ProcessState, s.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("dsbridge serve not serving after 15 s:\n%s", s.out.String())
		}
	}
	return s
}

// stop ends the server with SIGTERM by PID.
func (s *server) stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(os.Interrupt)
	}
}

// kill ends the server with SIGKILL by PID, as a crash would.
func (s *server) kill() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
	}
}

// hasLine reports whether one line of log holds every part.
func hasLine(log string, parts ...string) bool {
	for line := range strings.Lines(log) {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return true
		}
	}
	return false
}
