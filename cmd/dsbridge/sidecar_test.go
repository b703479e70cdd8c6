package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dsbridge/dsbridge/cmd/internal/cliflag"
	"github.com/dsbridge/dsbridge/cmd/internal/image"
	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/hooks/hookstest"
)

func TestParseSidecarFlags(t *testing.T) {
	hooksDir := t.TempDir()
	tests := []struct {
		name      string
		env       *string // nil: unset
		args      []string
		wantName  string
		wantState string
	}{
		{name: "defaults", wantName: "dsbridge", wantState: filepath.Join(hooksDir, "dsbridge")},
		{name: "env names the plugin", env: ptr("dualstack"), wantName: "dualstack", wantState: filepath.Join(hooksDir, "dualstack")},
		{name: "flag wins over env", env: ptr("dualstack"), args: []string{"--plugin-name", "x", "--state-dir", "/tmp/s"},
			wantName: "x", wantState: "/tmp/s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setPluginEnv(t, tt.env)
			cfg, err := parseSidecarFlags(append([]string{"--hooks-dir", hooksDir}, tt.args...), &bytes.Buffer{}, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.pluginName != tt.wantName || cfg.hooksDir != hooksDir || cfg.stateDir != tt.wantState {
				t.Errorf("got name %q hooks dir %q state dir %q, want %q %q %q", cfg.pluginName, cfg.hooksDir, cfg.stateDir,
					tt.wantName, hooksDir, tt.wantState)
			}
		})
	}
	if _, err := parseSidecarFlags([]string{"--bogus"}, &bytes.Buffer{}, &bytes.Buffer{}); err != cliflag.ErrUsage {
		t.Errorf("unknown flag: error = %v, want cliflag.ErrUsage", err)
	}
}

func ptr[T any](v T) *T { return &v }

// setPluginEnv sets NETWORK_BINDING_PLUGIN_NAME for the test, or unsets it.
func setPluginEnv(t *testing.T, v *string) {
	t.Helper()
	t.Setenv(pluginNameEnv, "") // restored after the test
	if v == nil {
		os.Unsetenv(pluginNameEnv)
		return
	}
	t.Setenv(pluginNameEnv, *v)
}

// TestParseSidecarFlagsRejects: every bad input is named, all at once
// where there are several (a bad plugin name alone: nothing derived from it
// is worth checking).
func TestParseSidecarFlagsRejects(t *testing.T) {
	hooksDir := t.TempDir()
	long := t.TempDir() + "/" + strings.Repeat("d", 80)
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     *string
		args    []string
		wantErr string
	}{
		{"escaping env", ptr("../escape"), nil, `NETWORK_BINDING_PLUGIN_NAME: plugin name "../escape" holds a "/" or NUL: it must be a file name in the hooks directory`},
		{"path in the flag", nil, []string{"--plugin-name", "a/b"}, `--plugin-name: plugin name "a/b" holds a "/" or NUL: it must be a file name in the hooks directory`},
		{"empty env", ptr(""), nil, "NETWORK_BINDING_PLUGIN_NAME: plugin name is empty"},
		{"empty flag", ptr("dsbridge"), []string{"--plugin-name", ""}, "--plugin-name: plugin name is empty"},
		{"dot-dot", ptr(".."), nil, `NETWORK_BINDING_PLUGIN_NAME: plugin name ".." names a directory, not a file`},
		{"NUL", nil, []string{"--plugin-name", "a\x00b"}, `--plugin-name: plugin name "a\x00b" holds a "/" or NUL: it must be a file name in the hooks directory`},
		{"too long for a file name", ptr(strings.Repeat("p", 251)), nil, "NETWORK_BINDING_PLUGIN_NAME: plugin name of 251 bytes is longer than 250"},
		{"too long for a socket", ptr(strings.Repeat("p", 30)), []string{"--hooks-dir", long},
			`hook socket "` + long + "/" + strings.Repeat("p", 30) + `.sock" is ` + strconv.Itoa(len(long)+36) + ` bytes long; a unix socket path has at most 107 (unix(7))` + "\n" +
				`status socket "` + long + "/" + strings.Repeat("p", 30) + `/status.sock" is ` + strconv.Itoa(len(long)+43) + ` bytes long; a unix socket path has at most 107 (unix(7))`},
		{"no hooks dir", nil, []string{"--hooks-dir", hooksDir + "/none", "--ra-mode", "loud"},
			`--ra-mode: unknown router advertisement mode "loud" (want gateway, flags-only or off)` + "\n" +
				`--hooks-dir "` + hooksDir + `/none": stat ` + hooksDir + `/none: no such file or directory`},
		{"resolv.conf a directory", nil, []string{"--resolv-conf", hooksDir}, `--resolv-conf "` + hooksDir + `" is not a regular file`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setPluginEnv(t, tt.env)
			_, err := parseSidecarFlags(append([]string{"--hooks-dir", hooksDir}, tt.args...), &bytes.Buffer{}, &bytes.Buffer{})
			var bad badInput
			if !errors.As(err, &bad) || err.Error() != tt.wantErr {
				t.Errorf("error %v\nwant a bad input %q", err, tt.wantErr)
			}
		})
	}
}

// binDir holds the dsbridge binary the tests build once; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// built builds dsbridge once per test binary, on first use.
var built = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "dsbbin")
	if err != nil {
		return "", err
	}
	binDir = dir
	if err := os.Chmod(dir, 0o755); err != nil { // uid 107 runs it too
		return "", err
	}
	bin := filepath.Join(dir, "dsbridge")
	// As released (image.BuildFlags, stripped, static): the idle memory
	// measured here is the image's.
	build := exec.Command("go", append(append([]string{"build"}, image.BuildFlags()...), "-ldflags", "-s -w", "-o", bin, ".")...)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
})

// buildSidecar returns the dsbridge binary, built once for the package.
func buildSidecar(t *testing.T) string {
	t.Helper()
	bin, err := built()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// sidecarProc is `dsbridge sidecar` running in a namespace that has an
// eth0 like a pod's, with a stale socket left in its hooks dir.
type sidecarProc struct {
	cmd      *exec.Cmd
	stderr   *lab.Buffer
	hooksDir string
	socket   string
	exited   chan error
}

func startSidecar(t *testing.T, bin, plugin string) *sidecarProc {
	t.Helper()
	ns := lab.NewNS(t)
	// A veth like the CNI's (the dummy driver may be missing from the kernel).
	ns.Run(t, "ip", "link", "add", "eth0", "address", "0a:58:0a:f4:00:0c", "mtu", "1400", "type", "veth", "peer", "name", "peer0")
	ns.Run(t, "ip", "link", "set", "eth0", "up")
	p := &sidecarProc{hooksDir: t.TempDir(), stderr: &lab.Buffer{}, exited: make(chan error, 1)}
	p.socket = filepath.Join(p.hooksDir, plugin+".sock")
	leaveStaleSocket(t, p.socket)
	p.cmd = exec.Command("ip", "netns", "exec", ns.Name, bin, "sidecar", "--hooks-dir", p.hooksDir)
	p.cmd.Env = append(os.Environ(), pluginNameEnv+"="+plugin)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill() // by PID; the test failed before stopping it
			<-p.exited
		}
		if t.Failed() {
			t.Logf("sidecar stderr:\n%s", p.stderr.String())
		}
	})
	return p
}

// leaveStaleSocket leaves a socket file nobody listens on, as a crashed
// earlier run would.
func leaveStaleSocket(t *testing.T, path string) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
}

// waitExit waits up to limit for the process and checks it exited 0.
func (p *sidecarProc) waitExit(t *testing.T, limit time.Duration) {
	t.Helper()
	start := time.Now()
	select {
	case err := <-p.exited:
		p.exited <- err
		if err != nil {
			t.Fatalf("sidecar exited with %v, want status 0", err)
		}
		t.Logf("sidecar exited 0 after %v", time.Since(start))
	case <-time.After(limit):
		t.Fatalf("sidecar still running %v later", limit)
	}
}

func (p *sidecarProc) dirEntries(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(p.hooksDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "hooks", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSidecarBinary runs the built `dsbridge sidecar` in a namespace and
// drives it as virt-launcher does: Info, OnDefineDomain, then Shutdown or
// SIGTERM, each ending in exit status 0 within a second.
func TestSidecarBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	lab.RequireRoot(t)
	bin := buildSidecar(t)
	t.Run("Shutdown", func(t *testing.T) {
		p := startSidecar(t, bin, "dsbridge")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l, err := hookstest.Connect(ctx, p.socket)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("Info answered in %v", l.InfoLatency)
		if l.InfoLatency > 100*time.Millisecond {
			t.Errorf("Info took %v, want a few ms", l.InfoLatency)
		}
		if l.Version != "v1alpha3" || !l.Subscribed("OnDefineDomain") || !l.Subscribed("Shutdown") || l.Subscribed("PreCloudInitIso") {
			t.Errorf("Info = %v, want v1alpha3 with OnDefineDomain and Shutdown only", l.Info)
		}
		in := readFixture(t, "domain.xml")
		out, err := l.OnDefineDomain(ctx, in, readFixture(t, "vmi-pod.json"))
		if err != nil {
			t.Fatal(err)
		}
		wantIface := "<interface type=\"ethernet\">\n\t\t\t<source/>\n\t\t\t<target dev=\"tap0\" managed=\"no\"/>\n" +
			"\t\t\t<model type=\"virtio-non-transitional\"/>\n\t\t\t<mac address=\"0a:58:0a:f4:00:0c\"/>\n" +
			"\t\t\t<mtu size=\"1400\"/>\n\t\t\t<alias name=\"ua-default\"/>\n\t\t\t<rom enabled=\"no\"/>\n\t\t</interface>\n\t\t"
		if got := strings.Replace(string(out), wantIface, "", 1); got != string(in) {
			t.Errorf("OnDefineDomain result is not the domain plus ua-default:\n%s", out)
		}
		again, err := l.OnDefineDomain(ctx, out, readFixture(t, "vmi-pod.json"))
		if err != nil || !bytes.Equal(again, out) {
			t.Errorf("second OnDefineDomain changed the domain (err %v)", err)
		}
		if _, err := l.OnDefineDomain(ctx, []byte("<domain>"), readFixture(t, "vmi-pod.json")); err == nil ||
			!strings.Contains(err.Error(), "invalid domain XML") {
			t.Errorf("bad XML: error = %v, want one naming the invalid domain XML", err)
		}
		rss := procStatusKiB(t, p.cmd.Process.Pid, "VmRSS")
		t.Logf("idle sidecar VmRSS: %d KiB", rss)
		if rss > 15*1024 { // the idle budget after OnDefineDomain
			t.Errorf("idle sidecar VmRSS = %d KiB, want <= 15 MiB", rss)
		}
		// The socket at the top level, and the sidecar's own sub-directory
		// (saved snapshots): KubeVirt's rule is "only the gRPC socket
		// directly in the hooks directory, anything else in a sub-directory".
		if diff := cmp.Diff([]string{"dsbridge", "dsbridge.sock"}, p.dirEntries(t)); diff != "" {
			t.Errorf("hooks dir (-want +got):\n%s", diff)
		}
		if err := l.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		p.waitExit(t, time.Second)
		// The snapshots stay for a restarted sidecar; the socket goes.
		if diff := cmp.Diff([]string{"dsbridge"}, p.dirEntries(t)); diff != "" {
			t.Errorf("hooks dir after exit (-want +got):\n%s", diff)
		}
		checkLogLines(t, p.stderr.String())
	})
	t.Run("SIGTERM", func(t *testing.T) {
		p := startSidecar(t, bin, "dualstack")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := hookstest.Connect(ctx, p.socket); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		p.waitExit(t, time.Second)
	})
}

// checkLogLines checks that every stderr line is a KubeVirt-style JSON log.
func checkLogLines(t *testing.T, stderr string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(stderr))
	n := 0
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Errorf("log line is not JSON: %q", sc.Text())
			continue
		}
		for _, key := range []string{"component", "level", "msg", "timestamp", "pos"} {
			if _, ok := line[key]; !ok {
				t.Errorf("log line lacks %q: %s", key, sc.Text())
			}
		}
		n++
	}
	if n == 0 {
		t.Error("sidecar logged nothing")
	}
}
