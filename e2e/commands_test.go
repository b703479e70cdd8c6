package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/google/go-cmp/cmp"
)

// podState is the pod namespace as a comparable list: every link (name,
// MAC, MTU, master), global address and route (both families).
func podState(t *testing.T, ns *lab.NS) []string {
	t.Helper()
	var out []string
	var links []struct {
		Name   string `json:"ifname"`
		MAC    string `json:"address"`
		MTU    int    `json:"mtu"`
		Master string `json:"master"`
		Addrs  []struct {
			Local string `json:"local"`
			Len   int    `json:"prefixlen"`
			Scope string `json:"scope"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(ns.Run(t, "ip", "-j", "addr", "show")), &links); err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		out = append(out, fmt.Sprintf("link %s mac %s mtu %d master %q", l.Name, l.MAC, l.MTU, l.Master))
		for _, a := range l.Addrs {
			if a.Scope == "global" {
				out = append(out, fmt.Sprintf("addr %s %s/%d", l.Name, a.Local, a.Len))
			}
		}
	}
	for _, fam := range []string{"-4", "-6"} {
		for _, r := range lab.Routes(t, ns, fam) {
			out = append(out, fmt.Sprintf("route %s %s via %q dev %s", fam, r.Dst, r.Gateway, r.Dev))
		}
	}
	slices.Sort(out)
	return out
}

// TestInspectAndTeardown: `dsbridge inspect -o json` reports the pod's
// snapshot, the plan and what each service hands out; `serve
// --teardown-on-exit` and, after a kill -9, `dsbridge teardown` both give
// back the pod exactly as the CNI left it.
func TestInspectAndTeardown(t *testing.T) {
	l := lab.NewLab(t, lab.KubeOVN)
	before := podState(t, l.Pod)
	state := t.TempDir()
	common := []string{"--pod-iface", l.Spec.PodIface, "--resolv-conf", l.ResolvConf, "--hostname", l.Hostname, "--state-dir", state}

	var in struct {
		Snapshot struct {
			IPv4     []string `json:"ipv4"`
			IPv6     []string `json:"ipv6"`
			Gateway6 struct {
				LinkLocal string `json:"linkLocal"`
			} `json:"gateway6"`
		} `json:"snapshot"`
		Handout struct {
			DHCPv4 struct {
				ServerID string `json:"serverID"`
				Router   string `json:"router"`
			} `json:"dhcpv4"`
			RA struct {
				Source string `json:"source"`
				Prefix string `json:"prefix"`
			} `json:"ra"`
		} `json:"handout"`
		Plan struct {
			Tier string `json:"tier"`
		} `json:"plan"`
	}
	out := l.Pod.Run(t, append([]string{dsbridgeBin, "inspect", "-o", "json"}, common...)...)
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		t.Fatalf("inspect -o json: %v\n%s", err, out)
	}
	got := []string{fmt.Sprint(in.Snapshot.IPv4, in.Snapshot.IPv6), in.Snapshot.Gateway6.LinkLocal, in.Handout.DHCPv4.Router,
		in.Handout.DHCPv4.ServerID, in.Handout.RA.Source, in.Handout.RA.Prefix, in.Plan.Tier}
	want := []string{"[10.16.0.5/16] [fd00:10:16::5/112]", "fe80::858:aff:fe10:1", "10.16.0.1", "169.254.75.10",
		"fe80::858:aff:fe10:1", "fd00:10:16::/112", "Full"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("inspect (-want +got):\n%s", diff)
	}

	s := serve(t, l, state, "--teardown-on-exit")
	if cmp.Equal(before, podState(t, l.Pod)) {
		t.Fatal("the pod looks unchanged while dsbridge serves: the comparison cannot tell")
	}
	s.stop()
	waitExit(t, s)
	if diff := cmp.Diff(before, podState(t, l.Pod)); diff != "" {
		t.Errorf("after serve --teardown-on-exit the pod differs (-before +after):\n%s", diff)
	}

	s = serve(t, l, state)
	s.kill()
	waitExit(t, s)
	l.Pod.Run(t, dsbridgeBin, "teardown", "--pod-iface", l.Spec.PodIface, "--state-dir", state, "--tap", l.Tap, "--tap-stand-in")
	if diff := cmp.Diff(before, podState(t, l.Pod)); diff != "" {
		t.Errorf("after kill -9 and dsbridge teardown the pod differs (-before +after):\n%s", diff)
	}
}

// waitExit waits up to 5 s for the server process to end.
func waitExit(t *testing.T, s *server) {
	t.Helper()
	lab.WaitFor(t, 5*time.Second, "dsbridge to exit", func() bool {
		return s.cmd.ProcessState != nil || exec.Command("kill", "-0", fmt.Sprint(s.cmd.Process.Pid)).Run() != nil
	})
}
