package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/hooks/hookstest"
)

// tierSidecar is `dsbridge sidecar` running in a lab's pod with a tier's
// privileges, connected to over its hook socket as virt-launcher connects.
type tierSidecar struct {
	cmd      *exec.Cmd
	out      *lab.Buffer   // stdout and stderr
	dir      string        // the hooks directory, the sidecar's own
	resolv   string        // the lab's resolv.conf, copied into dir
	exited   chan struct{} // closed once the process exited (cmd.ProcessState set)
	launcher *hookstest.Launcher
}

// stateDir is where the sidecar keeps its snapshot and status socket.
func (s *tierSidecar) stateDir() string { return filepath.Join(s.dir, "dsbridge") }

// launchSidecar starts `dsbridge sidecar` in l's pod under setpriv's
// arguments (the process then runs as uid), with flags after its hooks
// directory and resolv.conf and env added to its environment, and connects
// to its hook socket. It is killed by PID and waited for at cleanup, its
// output logged if the test failed.
func launchSidecar(t *testing.T, l *lab.Lab, uid int, setpriv, flags, env []string) *tierSidecar {
	t.Helper()
	// t.TempDir's parent is private to root: uid 107 needs a path it can
	// traverse, as the sidecar's emptyDir is in a pod; and the directory is
	// the sidecar's own (root without CAP_DAC_OVERRIDE cannot write to
	// another uid's).
	dir, err := os.MkdirTemp("", "dsb-hooks-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
	s := &tierSidecar{out: &lab.Buffer{}, dir: dir, resolv: filepath.Join(dir, "resolv.conf"), exited: make(chan struct{})}
	copyFile(t, l.ResolvConf, s.resolv)
	args := append(append([]string{"netns", "exec", l.Pod.Name, "setpriv"}, setpriv...),
		append([]string{dsbridgeBin, "sidecar", "--hooks-dir", dir, "--resolv-conf", s.resolv}, flags...)...)
	s.cmd = exec.Command("ip", args...) // ip netns exec and setpriv exec: the PID is the sidecar's
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			t.Logf("sidecar output:\n%s", s.out.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if s.launcher, err = hookstest.Connect(ctx, filepath.Join(dir, "dsbridge.sock")); err != nil {
		t.Fatal(err)
	}
	return s
}
