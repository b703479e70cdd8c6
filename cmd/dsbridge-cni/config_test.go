package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dsbridge/dsbridge/netsetup"
)

func TestPodIface(t *testing.T) {
	tests := []struct {
		name       string
		podNetwork string
		logic      string
		want       string
	}{
		{"pod network by default name", "", "default", "eth0"},
		{"Multus network", "", "network1", "poda7662f44d65"},
		{"pod network renamed", "podnet", "podnet", "eth0"},
		{"default is a Multus network when the pod network is renamed", "podnet", "default", "pod37a8eec1ce1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conf := `{"cniVersion":"1.0.0","name":"n","type":"dsbridge-cni","args":{"cni":{"logicNetworkName":"` + tc.logic + `"}}`
			if tc.podNetwork != "" {
				conf += `,"podNetwork":"` + tc.podNetwork + `"`
			}
			c, err := loadConf([]byte(conf+"}"), true)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.podIface(); got != tc.want {
				t.Errorf("podIface() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPlumbOptions(t *testing.T) {
	zero, other := 0, 1000
	tests := []struct {
		name  string
		owner *int
		want  netsetup.PlumbOptions
	}{
		{"default qemu user", nil, netsetup.PlumbOptions{TapOwner: 107, Queues: 4, BridgeLinkLocal: true}},
		{"root VM", &zero, netsetup.PlumbOptions{TapOwner: 0, RootTap: true, Queues: 4, BridgeLinkLocal: true}},
		{"other uid", &other, netsetup.PlumbOptions{TapOwner: 1000, Queues: 4, BridgeLinkLocal: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &netConf{Plumbing: true, TapOwner: tc.owner, TapQueues: 4}
			if diff := cmp.Diff(tc.want, c.plumbOptions()); diff != "" {
				t.Errorf("plumbOptions (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInstallFile(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "dsbridge-cni")
	if err := os.WriteFile(dst, []byte("old plugin"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := installFile(cniBin, dst); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(cniBin)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, got) {
		t.Error("installed file differs from the plugin")
	}
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("mode = %v, want 0755", fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the plugin (no temporary files left)", len(entries))
	}
}

// TestInstallCommand runs "dsbridge-cni install" as the DaemonSet does.
func TestInstallCommand(t *testing.T) {
	dir := t.TempDir()
	r := run(t, invocation{}) // no CNI_COMMAND and no args: the about text
	if r.Exit != 0 || r.Stderr == "" {
		t.Errorf("bare run: exit %d stderr %q, want the about text", r.Exit, r.Stderr)
	}
	out, err := execOut(cniBin, "install", "-dest", dir)
	if err != nil {
		t.Fatalf("install: %v: %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "dsbridge-cni")); err != nil {
		t.Error(err)
	}
}

// TestToolHelp: -h and --help print the usage on stdout and exit 0, for
// the binary and for install; a mistake goes to stderr with exit 2.
func TestToolHelp(t *testing.T) {
	tests := []struct {
		args       []string
		exit       int
		stdoutHead string
		stderrHead string
	}{
		{[]string{"--help"}, 0, "usage: dsbridge-cni install", ""},
		{[]string{"-h"}, 0, "usage: dsbridge-cni install", ""},
		{[]string{"help"}, 0, "usage: dsbridge-cni install", ""},
		{[]string{"install", "--help"}, 0, "Usage of dsbridge-cni install:\n  -dest directory", ""},
		{[]string{"install", "-h"}, 0, "Usage of dsbridge-cni install:\n  -dest directory", ""},
		{[]string{"install", "--bogus"}, 2, "", "flag provided but not defined: -bogus\nUsage of dsbridge-cni install:"},
		{[]string{"install", "extra"}, 2, "", `dsbridge-cni install: unexpected arguments ["extra"]`},
		{[]string{"nosuch"}, 2, "", "dsbridge-cni: unknown command \"nosuch\"\nusage: dsbridge-cni install"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := exec.Command(cniBin, tc.args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			_ = cmd.Run()
			if cmd.ProcessState.ExitCode() != tc.exit || !strings.HasPrefix(stdout.String(), tc.stdoutHead) ||
				!strings.HasPrefix(stderr.String(), tc.stderrHead) || (tc.stdoutHead == "") != (stdout.Len() == 0) ||
				(tc.stderrHead == "") != (stderr.Len() == 0) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout from %q, stderr from %q",
					cmd.ProcessState.ExitCode(), stdout.String(), stderr.String(), tc.exit, tc.stdoutHead, tc.stderrHead)
			}
		})
	}
}

func execOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// FuzzLoadConf: no configuration (NAD text plus Multus-injected args and
// prevResult) makes loadConf panic; an accepted one maps to a valid pod
// interface name.
func FuzzLoadConf(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"dsbridge-binding","type":"dsbridge-cni","podNetwork":"default","args":{"cni":{"logicNetworkName":"default"}}}`))
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"n","type":"dsbridge-cni","plumbing":true,"tapOwner":0,"tapQueues":4,"stateDir":"/var/lib/cni/dsbridge","args":{"cni":{"logicNetworkName":"blue"}}}`))
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"n","args":{"cni":{"logicNetworkName":"x"}},"prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.16.0.5/16"}]}}`))
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"n","args":{"cni":"x"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := loadConf(b, true)
		if err != nil {
			return
		}
		if name := c.podIface(); name == "" || len(name) > 15 {
			t.Errorf("podIface() = %q for %s", name, b)
		}
	})
}
