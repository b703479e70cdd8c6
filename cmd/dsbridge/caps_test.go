package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// capsHelperEnv makes TestCapsHelperProcess act as the process under test.
const capsHelperEnv = "DSBRIDGE_CAPS_HELPER"

// TestCapsHelperProcess is not a test by itself: run by TestRaiseNetCaps
// with capsHelperEnv set, it raises the capabilities and prints what it
// raised and every thread's CapEff.
func TestCapsHelperProcess(t *testing.T) {
	if os.Getenv(capsHelperEnv) != "1" {
		t.Skip("helper process for TestRaiseNetCaps")
	}
	raised, err := raiseNetCaps()
	fmt.Printf("raised %#x err %v\n", raised, err)
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	effs := map[string]bool{}
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread exited
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
				effs[strings.TrimSpace(v)] = true
			}
		}
	}
	var list []string
	for e := range effs {
		list = append(list, e)
	}
	sort.Strings(list)
	fmt.Printf("threads CapEff %s (%d threads)\n", strings.Join(list, ","), len(tasks))
	os.Exit(0)
}

// TestRaiseNetCaps runs a static build of this package's tests, carrying
// the Containerfile's file capabilities, as uid 107 under the bounding sets
// of the tiers: the capabilities the pod grants end up effective on every
// thread, the others stay off, and nothing fails where none are granted.
func TestRaiseNetCaps(t *testing.T) {
	requireTools(t, "setcap", "setpriv")
	if testing.Short() {
		t.Skip("builds a test binary")
	}
	dir := sharedTempDir(t)
	bin := filepath.Join(dir, "dsbridge.test")
	cmd := exec.Command("go", "test", "-c", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go test -c: %v\n%s", err, out)
	}
	if out, err := exec.Command("setcap", containerfileCaps(t), bin).CombinedOutput(); err != nil {
		t.Fatalf("setcap: %v: %s", err, out)
	}
	uid107 := []string{"setpriv", "--reuid", "107", "--regid", "107", "--clear-groups", "--inh-caps=-all"}
	rows := []struct {
		name     string
		bounding string
		want     string
	}{
		{"full tier", "-all,+net_admin,+net_raw,+net_bind_service", "raised 0x3400 err <nil>\nthreads CapEff 0000000000003400"},
		{"NET_RAW only", "-all,+net_raw", "raised 0x2000 err <nil>\nthreads CapEff 0000000000002000"},
		{"KubeVirt default (none)", "-all", "raised 0x0 err <nil>\nthreads CapEff 0000000000000000"},
		{"unrelated capability granted", "-all,+chown,+net_raw", "raised 0x2000 err <nil>\nthreads CapEff 0000000000002000"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			argv := append(append([]string{}, uid107...), "--bounding-set="+row.bounding, bin, "-test.run=^TestCapsHelperProcess$")
			c := exec.Command(argv[0], argv[1:]...)
			c.Env = append(os.Environ(), capsHelperEnv+"=1")
			out, err := c.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
			}
			got := string(out)
			if i := strings.LastIndex(got, " ("); i > 0 {
				got = got[:i] // drop the thread count
			}
			if diff := cmp.Diff(row.want, got); diff != "" {
				t.Errorf("helper output (-want +got):\n%s", diff)
			}
		})
	}
}
