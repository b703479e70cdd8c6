package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// tcFilters is what tc shows at each clsact hook of dev in ns, filter names
// only ("" for none).
func tcFilters(t *testing.T, ns *lab.NS, dev string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, hook := range []string{"egress", "ingress"} {
		// "filter protocol all pref 1 bpf chain 0 handle 0xd5b <name> direct-action ..."
		var names []string
		f := strings.Fields(ns.Run(t, "tc", "filter", "show", "dev", dev, hook))
		for i := 0; i+2 < len(f); i++ {
			if f[i] == "handle" {
				names = append(names, f[i+2])
			}
		}
		out[hook] = strings.Join(names, ",")
	}
	return out
}

// TestUplinkPrograms: ADD attaches the kernel uplink programs to the pod
// interface (the RS->RA responder with the guard when the pod has an IPv6
// gateway and the configuration keeps it, the guard alone otherwise),
// records them, CHECK finds them, and DEL takes them off with their clsact
// qdisc; a second DEL finds nothing to do.
func TestUplinkPrograms(t *testing.T) {
	for _, tc := range []struct {
		name   string
		extra  map[string]any
		ipv4   bool // an IPv4-only pod
		egress string
		ra     bool
	}{
		{name: "dual-stack", egress: "dsbridge_ra", ra: true},
		{name: "raResponder off", extra: map[string]any{"raResponder": false}, egress: "dsbridge_guard"},
		{name: "IPv4 only", ipv4: true, egress: "dsbridge_guard"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := podNS(t, "eth0")
			if tc.ipv4 {
				pod.Run(t, "ip", "-6", "route", "del", "default")
				pod.Run(t, "ip", "-6", "addr", "del", "fd00:10:16::5/112", "dev", "eth0")
			}
			if diff := cmp.Diff(map[string]string{"egress": "", "ingress": ""}, tcFilters(t, pod, "eth0")); diff != "" {
				t.Fatalf("tc filters before ADD (-want +got):\n%s", diff)
			}
			dir := t.TempDir()
			inv := invocation{Command: "ADD", ContainerID: "c1", Netns: pod.Path(), IfName: "net1",
				Conf: confJSON(t, dir, tc.extra, logicNet("default"))}
			mustRun(t, inv)
			if diff := cmp.Diff(map[string]string{"egress": tc.egress, "ingress": "dsbridge_guard"}, tcFilters(t, pod, "eth0")); diff != "" {
				t.Errorf("tc filters after ADD (-want +got):\n%s", diff)
			}
			st, err := loadState(statePath(dir, "c1", "net1"))
			if err != nil {
				t.Fatal(err)
			}
			if got := []bool{st.UplinkGuard, st.RAResponder, st.ServerRoute}; !cmp.Equal(got, []bool{true, tc.ra, true}) {
				t.Errorf("state uplinkGuard, raResponder, serverRoute = %v, want [true %t true]", got, tc.ra)
			}
			inv.Command = "CHECK"
			mustRun(t, inv)

			inv.Command = "DEL"
			mustRun(t, inv)
			if diff := cmp.Diff(map[string]string{"egress": "", "ingress": ""}, tcFilters(t, pod, "eth0")); diff != "" {
				t.Errorf("tc filters after DEL (-want +got):\n%s", diff)
			}
			if out := pod.Run(t, "tc", "qdisc", "show", "dev", "eth0"); strings.Contains(out, "clsact") {
				t.Errorf("clsact qdisc left after DEL: %s", out)
			}
			if diff := cmp.Diff(pristine(), sysctls(t, pod)); diff != "" {
				t.Errorf("sysctls and route after DEL (-want +got):\n%s", diff)
			}
			mustRun(t, inv)
		})
	}
}

// TestCheckFindsProgramsGone: CHECK fails when the programs ADD attached
// are gone.
func TestCheckFindsProgramsGone(t *testing.T) {
	pod := podNS(t, "eth0")
	inv := invocation{Command: "ADD", ContainerID: "c1", Netns: pod.Path(), IfName: "net1", Conf: confJSON(t, t.TempDir(), nil, logicNet("default"))}
	mustRun(t, inv)
	pod.Run(t, "tc", "qdisc", "del", "dev", "eth0", "clsact")
	inv.Command = "CHECK"
	r := run(t, inv)
	if r.Exit != 1 || !strings.Contains(r.Stdout, `the kernel uplink programs are no longer attached to \"eth0\"`) {
		t.Errorf("CHECK exit %d output %s, want the missing programs named", r.Exit, r.Stdout)
	}
}
