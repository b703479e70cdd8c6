package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// tree lists every path under root, relative to it.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		out = append(out, rel)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBadPluginNames runs the sidecar binary with each bad plugin name (and
// a missing hooks directory): it exits 2 with an error naming the input and
// where it came from, and leaves the hooks directory and its parent as they
// were (no snapshot, no status socket, no hook socket, no directory).
func TestBadPluginNames(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	lab.RequireRoot(t)
	bin := buildSidecar(t)
	ns := lab.NewNS(t) // a pod-like namespace: a sidecar that got further would record its eth0
	ns.Run(t, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
	const fileName = `: it must be a file name in the hooks directory`
	tests := []struct {
		name    string
		env     *string
		args    []string
		wantErr string
	}{
		{"../escape", ptr("../escape"), nil, `NETWORK_BINDING_PLUGIN_NAME: plugin name "../escape" holds a "/" or NUL` + fileName},
		{"a/b", ptr("a/b"), nil, `NETWORK_BINDING_PLUGIN_NAME: plugin name "a/b" holds a "/" or NUL` + fileName},
		{"flag ../../x", nil, []string{"--plugin-name", "../../x"}, `--plugin-name: plugin name "../../x" holds a "/" or NUL` + fileName},
		{"empty", ptr(""), nil, "NETWORK_BINDING_PLUGIN_NAME: plugin name is empty"},
		{"..", ptr(".."), nil, `NETWORK_BINDING_PLUGIN_NAME: plugin name ".." names a directory, not a file`},
		{".", nil, []string{"--plugin-name", "."}, `--plugin-name: plugin name "." names a directory, not a file`},
		{"too long", ptr(strings.Repeat("n", 300)), nil, "NETWORK_BINDING_PLUGIN_NAME: plugin name of 300 bytes is longer than 250"},
		{"no hooks directory", nil, []string{"--hooks-dir", "%ROOT%/run/none"}, `--hooks-dir "%ROOT%/run/none": stat %ROOT%/run/none: no such file or directory`},
		// NUL cannot reach a process through its environment or arguments
		// (execve takes C strings): TestParseSidecarFlagsRejects has it.
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			hooksDir := filepath.Join(root, "run", "hooks")
			if err := os.MkdirAll(hooksDir, 0o755); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			args := []string{"netns", "exec", ns.Name, bin, "sidecar", "--hooks-dir", hooksDir}
			for _, a := range tt.args {
				args = append(args, strings.ReplaceAll(a, "%ROOT%", root))
			}
			cmd := exec.CommandContext(ctx, "ip", args...)
			cmd.Env = os.Environ()
			if tt.env != nil {
				cmd.Env = append(cmd.Env, pluginNameEnv+"="+*tt.env)
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Errorf("sidecar: %v, want exit status 2", err)
			}
			if want := "dsbridge sidecar: " + strings.ReplaceAll(tt.wantErr, "%ROOT%", root) + "\n"; stderr.String() != want || stdout.Len() != 0 {
				t.Errorf("stderr %q stdout %q\nwant stderr %q", stderr.String(), stdout.String(), want)
			}
			if diff := cmp.Diff([]string{".", "run", "run/hooks"}, tree(t, root)); diff != "" {
				t.Errorf("files left (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBadInputChangesNothing: each command stops at a bad input with exit
// status 2 and a message naming it, before its first side effect: no state
// directory, no status socket, no snapshot.
func TestBadInputChangesNothing(t *testing.T) {
	mac := []string{"--vm-mac", "0a:58:0a:10:00:05"}
	tests := []struct {
		name    string
		args    func(dir string) []string
		wantErr string
	}{
		{"serve: no such pod interface", func(d string) []string {
			return []string{"serve", "--pod-iface", "nosuch0", "--state-dir", d + "/state"}
		}, `--pod-iface "nosuch0": route ip+net: no such network interface`},
		{"serve: tap not an interface name", func(d string) []string {
			return []string{"serve", "--tap", "a/b", "--pod-iface", "nosuch0", "--state-dir", d + "/state"}
		}, `--tap "a/b" holds a "/", ":", NUL or white space`},
		{"serve: pod interface name too long", func(d string) []string {
			return []string{"serve", "--pod-iface", "eth0123456789abc", "--state-dir", d + "/state"}
		}, `--pod-iface "eth0123456789abc" is longer than 15 bytes`},
		{"serve: bad MAC and hostname", func(d string) []string {
			return []string{"serve", "--vm-mac", "0a:58", "--hostname", "-vm", "--pod-iface", "nosuch0", "--state-dir", d + "/state"}
		}, `--hostname "-vm" is not a host name (RFC 1123: labels of letters, digits and hyphens)` + "\n" + `--vm-mac "0a:58" is not an Ethernet MAC`},
		{"serve: bad RA mode", func(d string) []string {
			return []string{"serve", "--ra-mode", "loud", "--pod-iface", "nosuch0", "--state-dir", d + "/state"}
		}, `--ra-mode: unknown router advertisement mode "loud" (want gateway, flags-only or off)`},
		{"dhcp: no such interface", func(d string) []string {
			return append([]string{"dhcp", "--iface", "nosuch0", "--ipv4", "10.16.0.5/16", "--status-socket", d + "/state/s.sock"}, mac...)
		}, `--iface "nosuch0": route ip+net: no such network interface`},
		{"inspect: bad output", func(string) []string { return []string{"inspect", "-o", "yaml"} }, `-o "yaml": want text or json`},
		{"teardown: tap not an interface name", func(d string) []string {
			return []string{"teardown", "--tap", "tap 0", "--state-dir", d + "/state"}
		}, `--tap "tap 0" holds a "/", ":", NUL or white space`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(pluginNameEnv, "dsbridge")
			dir := t.TempDir()
			args := tt.args(dir)
			var stdout, stderr bytes.Buffer
			code := run(args, &stdout, &stderr)
			want := "dsbridge " + args[0] + ": " + strings.ReplaceAll(tt.wantErr, "%DIR%", dir) + "\n"
			if code != 2 || stderr.String() != want {
				t.Errorf("exit %d, stderr %q\nwant exit 2, stderr %q", code, stderr.String(), want)
			}
			if diff := cmp.Diff([]string{"."}, tree(t, dir)); diff != "" {
				t.Errorf("files left (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHelp: -h and --help print the usage on stdout and exit 0, for the
// binary and every command, as Go's flag package, ip and kubectl do.
func TestHelp(t *testing.T) {
	for _, cmd := range []string{"sidecar", "serve", "dhcp", "inspect", "teardown", "status"} {
		for _, flag := range []string{"-h", "--help", "-help"} {
			t.Run(cmd+" "+flag, func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				code := run([]string{cmd, flag}, &stdout, &stderr)
				if code != 0 || !strings.HasPrefix(stdout.String(), "usage: dsbridge "+cmd+" ") ||
					!strings.Contains(stdout.String(), "\nflags:\n  -") || stderr.Len() != 0 {
					t.Errorf("exit %d, stdout %q, stderr %q; want 0 and the usage on stdout", code, stdout.String(), stderr.String())
				}
			})
		}
	}
	for _, flag := range []string{"-h", "--help", "help"} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{flag}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "usage: dsbridge <command>") || stderr.Len() != 0 {
			t.Errorf("dsbridge %s: exit %d, stdout %q, stderr %q; want 0 and the usage on stdout", flag, code, stdout.String(), stderr.String())
		}
	}
}

// TestUsageErrors: a mistake on the command line is explained on stderr
// with exit status 2; teardown has no --resolv-conf or --hostname (it
// restores a saved snapshot, reading neither).
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string // first line of stderr
	}{
		{[]string{"teardown", "--resolv-conf", "/etc/resolv.conf"}, "flag provided but not defined: -resolv-conf"},
		{[]string{"teardown", "--hostname", "vm1"}, "flag provided but not defined: -hostname"},
		{[]string{"status", "extra"}, `dsbridge status: unexpected arguments ["extra"]`},
		{[]string{"serve", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"nosuchcommand"}, `dsbridge: unknown command "nosuchcommand"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			first, _, _ := strings.Cut(stderr.String(), "\n")
			if code != 2 || first != tt.wantErr || !strings.Contains(stderr.String(), "usage: dsbridge ") || stdout.Len() != 0 {
				t.Errorf("exit %d, stderr %q, stdout %q; want exit 2, %q and the usage on stderr", code, stderr.String(), stdout.String(), tt.wantErr)
			}
		})
	}
}
