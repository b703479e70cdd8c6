package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// setprivUID107 runs a command as KubeVirt runs the sidecar by default:
// uid/gid 107, no supplementary groups, no capabilities at all.
var setprivUID107 = []string{"setpriv", "--reuid", "107", "--regid", "107", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"}

// requireTools skips when a tool the test drives is not installed.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian package libcap2-bin / util-linux): %v", tool, err)
		}
	}
}

// sharedTempDir is a temporary directory uid 107 can enter and read.
func sharedTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dsbimg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// containerfileCaps returns the capability text the Containerfile gives
// the binary with setcap.
func containerfileCaps(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^RUN setcap '([^']+)' /out/dsbridge`).FindSubmatch(b)
	if m == nil {
		t.Fatal("Containerfile has no \"RUN setcap '<caps>' /out/dsbridge\" line")
	}
	return string(m[1])
}

// containerfileEntrypoint returns the sidecar stage's ENTRYPOINT.
func containerfileEntrypoint(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	_, sidecar, ok := strings.Cut(string(b), " AS sidecar\n")
	if !ok {
		t.Fatal("Containerfile has no sidecar stage")
	}
	m := regexp.MustCompile(`(?m)^ENTRYPOINT (.*)$`).FindStringSubmatch(sidecar)
	if m == nil {
		t.Fatal("sidecar stage has no ENTRYPOINT")
	}
	return m[1]
}

// buildStamped builds cmd/dsbridge as the Containerfile does: static,
// trimmed, version stamped.
func buildStamped(t *testing.T, dst string) {
	t.Helper()
	ldflags := "-s -w -X main.version=v9.8.7 -X main.commit=0123abcd -X main.date=2026-09-01T00:00:00Z"
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", dst, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
}

// TestImageBinary checks what can be checked of the image without a
// container engine: the binary is static, carries the Containerfile's
// file capabilities, runs as uid 107 with no capabilities (with and
// without no_new_privs, as KubeVirt's allowPrivilegeEscalation: false
// sets it) and reports the stamped version.
func TestImageBinary(t *testing.T) {
	requireTools(t, "setcap", "getcap", "setpriv")
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := sharedTempDir(t)
	bin := filepath.Join(dir, "dsbridge")
	buildStamped(t, bin)
	assertStatic(t, bin)

	caps := containerfileCaps(t)
	if diff := cmp.Diff("cap_net_admin,cap_net_raw,cap_net_bind_service=p", caps); diff != "" {
		t.Errorf("Containerfile capabilities (-want +got):\n%s", diff)
	}
	if out, err := exec.Command("setcap", caps, bin).CombinedOutput(); err != nil {
		t.Fatalf("setcap %s: %v: %s", caps, err, out)
	}
	out, err := exec.Command("getcap", bin).CombinedOutput()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), " cap_net_bind_service,cap_net_admin,cap_net_raw=p") {
		t.Fatalf("getcap %s = %q (%v), want the three capabilities, permitted only", bin, out, err)
	}
	if got := containerfileEntrypoint(t); got != `["/dsbridge", "sidecar"]` {
		t.Errorf("sidecar ENTRYPOINT = %s, want [\"/dsbridge\", \"sidecar\"]", got)
	}

	const wantVersion = "dsbridge v9.8.7 commit 0123abcd built 2026-09-01T00:00:00Z\n"
	rows := []struct {
		name string
		argv []string
	}{
		{"uid 107, no capabilities", setprivUID107},
		{"uid 107, no capabilities, no_new_privs", append(append([]string{}, setprivUID107...), "--no-new-privs")},
		{"uid 107, full tier bounding set", []string{"setpriv", "--reuid", "107", "--regid", "107", "--clear-groups", "--inh-caps=-all",
			"--bounding-set=-all,+net_admin,+net_raw,+net_bind_service"}},
		{"root, empty bounding set", []string{"setpriv", "--inh-caps=-all", "--bounding-set=-all"}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			argv := append(append([]string{}, row.argv...), bin, "version")
			out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
			}
			if diff := cmp.Diff(wantVersion, string(out)); diff != "" {
				t.Errorf("dsbridge version (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEffectiveFileCapsBreakExec is the control for the Containerfile's
// choice of "=p": with the effective bit the same binary cannot even start
// in KubeVirt's default sidecar (empty bounding set).
func TestEffectiveFileCapsBreakExec(t *testing.T) {
	requireTools(t, "setcap", "setpriv")
	dir := sharedTempDir(t)
	bin := filepath.Join(dir, "true")
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("setcap", "cap_net_admin,cap_net_raw,cap_net_bind_service=ep", bin).CombinedOutput(); err != nil {
		t.Fatalf("setcap: %v: %s", err, out)
	}
	argv := append(append([]string{}, setprivUID107...), bin)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Operation not permitted") {
		t.Errorf("exec of a =ep binary with an empty bounding set: err %v output %q, want EPERM", err, out)
	}
}

// assertStatic fails unless bin is a statically linked ELF (no program
// interpreter, no shared libraries): the image is FROM scratch, no libc.
func assertStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter: not static", bin)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s imports shared libraries %v (%v): not static", bin, libs, err)
	}
}
