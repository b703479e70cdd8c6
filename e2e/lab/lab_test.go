package lab

import (
	"net"
	"strings"
	"syscall"
	"testing"
)

func TestVethAndDo(t *testing.T) {
	a, b := NewNS(t), NewNS(t)
	Veth(t, a, "left0", b, "right0")
	a.Run(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "left0")
	b.Run(t, "ip", "addr", "add", "192.0.2.2/24", "dev", "right0")
	out := a.Run(t, "ping", "-c", "1", "-W", "2", "192.0.2.2")
	if !strings.Contains(out, "1 received") {
		t.Fatalf("ping across the veth failed:\n%s", out)
	}
	var names []string
	if err := b.Do(func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "lo,right0" {
		t.Fatalf("interfaces seen inside netns %s = %v, want [lo right0]", b.Name, names)
	}
}

func TestStartedProcessIsStopped(t *testing.T) {
	var pid int
	t.Run("inner", func(t *testing.T) {
		n := NewNS(t)
		pid = n.Start(t, "sleep", "300").Process.Pid
	})
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("process %d still runs after cleanup", pid)
	}
}
