package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/netsetup"
)

// linkInfo is what the test compares of one link.
type linkInfo struct {
	Type   string
	Master string
}

// links returns every link but lo in ns with its type and master.
func links(t *testing.T, ns *lab.NS) map[string]linkInfo {
	t.Helper()
	out := map[string]linkInfo{}
	err := ns.Do(func() error {
		all, err := netsetup.RetryDump(netlink.LinkList)
		if err != nil {
			return err
		}
		names := map[int]string{}
		for _, l := range all {
			names[l.Attrs().Index] = l.Attrs().Name
		}
		for _, l := range all {
			if l.Attrs().Name == "lo" {
				continue
			}
			typ := l.Type()
			if typ == "ifb" {
				// netsetup holds the addresses on an ifb where the kernel
				// lacks the dummy driver (as on this project's test VMs).
				typ = "dummy"
			}
			out[l.Attrs().Name] = linkInfo{Type: typ, Master: names[l.Attrs().MasterIndex]}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// podNS is a pod as a CNI leaves it: ifname (a veth to a node namespace)
// with Kube-OVN's default dual-stack addresses and default routes.
func podNS(t *testing.T, ifname string) *lab.NS {
	t.Helper()
	node, pod := lab.NewNS(t), lab.NewNS(t)
	lab.Veth(t, pod, ifname, node, "uplink")
	node.Run(t, "ip", "addr", "add", "10.16.0.1/16", "dev", "uplink")
	node.Run(t, "ip", "addr", "add", "fd00:10:16::1/112", "dev", "uplink", "nodad")
	pod.Run(t, "ip", "addr", "add", "10.16.0.5/16", "dev", ifname)
	pod.Run(t, "ip", "addr", "add", "fd00:10:16::5/112", "dev", ifname, "nodad")
	pod.Run(t, "ip", "route", "add", "default", "via", "10.16.0.1", "dev", ifname)
	pod.Run(t, "ip", "-6", "route", "add", "default", "via", "fd00:10:16::1", "dev", ifname)
	return pod
}

// routesAndAddrs is the pod's addressing as "ip" prints it, for before and
// after comparisons.
func routesAndAddrs(t *testing.T, ns *lab.NS, ifname string) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"ip", "-br", "addr", "show", "dev", ifname, "scope", "global"},
		{"ip", "-4", "route", "show", "dev", ifname},
		{"ip", "-6", "route", "show", "dev", ifname, "default"},
	} {
		b.WriteString(ns.Run(t, args...))
	}
	return b.String()
}

// TestPlumbing: with "plumbing": true ADD builds KubeVirt's managedTap
// layout for the pod network and for a Multus network, CHECK accepts it,
// and DEL puts the pod back as it was.
func TestPlumbing(t *testing.T) {
	tests := []struct {
		network  string
		podIface string
		want     map[string]linkInfo
	}{
		{"default", "eth0", map[string]linkInfo{
			"k6t-eth0": {Type: "bridge"},
			"eth0-nic": {Type: "veth", Master: "k6t-eth0"},
			"tap0":     {Type: "tuntap", Master: "k6t-eth0"},
			"eth0":     {Type: "dummy"},
		}},
		{"blue", "pod16477688c0e", map[string]linkInfo{
			"k6t-16477688c0e": {Type: "bridge"},
			"16477688c0e-nic": {Type: "veth", Master: "k6t-16477688c0e"},
			"tap16477688c0e":  {Type: "tuntap", Master: "k6t-16477688c0e"},
			"pod16477688c0e":  {Type: "dummy"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.network, func(t *testing.T) {
			pod := podNS(t, tc.podIface)
			before := routesAndAddrs(t, pod, tc.podIface)
			inv := invocation{Command: "ADD", ContainerID: "c1", Netns: pod.Path(), IfName: "net1",
				Conf: confJSON(t, t.TempDir(), map[string]any{"plumbing": true}, logicNet(tc.network))}
			mustRun(t, inv)
			if diff := cmp.Diff(tc.want, links(t, pod)); diff != "" {
				t.Errorf("links after ADD (-want +got):\n%s", diff)
			}
			tap := strings.TrimPrefix(tc.podIface, "pod")
			if tap == "eth0" {
				tap = "tap0"
			} else {
				tap = "tap" + tap
			}
			if got := pod.Run(t, "cat", fmt.Sprintf("/sys/class/net/%s/owner", tap)); strings.TrimSpace(got) != "107" {
				t.Errorf("tap owner = %q, want 107", got)
			}
			if diff := cmp.Diff(configured(), sysctls(t, pod)); diff != "" {
				t.Errorf("sysctls after ADD (-want +got):\n%s", diff)
			}
			inv.Command = "CHECK"
			mustRun(t, inv)

			inv.Command = "DEL"
			mustRun(t, inv)
			if diff := cmp.Diff(map[string]linkInfo{tc.podIface: {Type: "veth"}}, links(t, pod)); diff != "" {
				t.Errorf("links after DEL (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, routesAndAddrs(t, pod, tc.podIface)); diff != "" {
				t.Errorf("addresses and routes after DEL (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(pristine(), sysctls(t, pod)); diff != "" {
				t.Errorf("sysctls after DEL (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPlumbingCheckDetectsDrift: CHECK names the link that is gone.
func TestPlumbingCheckDetectsDrift(t *testing.T) {
	pod := podNS(t, "eth0")
	inv := invocation{Command: "ADD", ContainerID: "c1", Netns: pod.Path(), IfName: "net1",
		Conf: confJSON(t, t.TempDir(), map[string]any{"plumbing": true}, logicNet("default"))}
	mustRun(t, inv)
	pod.Run(t, "ip", "link", "del", "tap0")
	inv.Command = "CHECK"
	r := run(t, inv)
	if r.Exit != 1 || !strings.Contains(r.Stdout, `link \"tap0\": expected a tap attached to \"k6t-eth0\", found no such link`) {
		t.Errorf("CHECK exit %d output %s, want the missing tap named", r.Exit, r.Stdout)
	}
}

// TestPlumbingMissingPodIface: a Multus network whose pod interface does not
// exist fails ADD with the interface named and leaves the sysctls alone.
func TestPlumbingMissingPodIface(t *testing.T) {
	pod := podNS(t, "eth0")
	dir := t.TempDir()
	inv := invocation{Command: "ADD", ContainerID: "c1", Netns: pod.Path(), IfName: "net1",
		Conf: confJSON(t, dir, map[string]any{"plumbing": true}, logicNet("blue"))}
	r := run(t, inv)
	if r.Exit != 1 || !strings.Contains(r.Stdout, `"msg": "failed to set up pod16477688c0e for network \"blue\""`) {
		t.Errorf("ADD exit %d output %s, want a failure naming pod16477688c0e", r.Exit, r.Stdout)
	}
	if diff := cmp.Diff(pristine(), sysctls(t, pod)); diff != "" {
		t.Errorf("sysctls after a failed ADD (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(statePath(dir, "c1", "net1")); err == nil {
		t.Error("state file written for a failed ADD")
	}
}

// noTunDevice runs the plugin in a mount namespace of its own where
// /dev/net/tun is /dev/null: creating the tap fails after the uplink has
// been renamed and stripped, as on a node without the tun driver.
var noTunDevice = []string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
	`mount --bind /dev/null /dev/net/tun && exec "$@"`, "sh"}

// TestFailedAddLeavesPodAsItWas: an ADD with "plumbing": true that fails,
// before changing anything (a link in the way of the layout) or half way
// (no tun device when the uplink is already renamed and stripped of its
// addresses), leaves the pod exactly as it was: every link, address,
// route, qdisc and sysctl; and no state file. DEL afterwards (a runtime
// calls it after a failed ADD) succeeds and changes nothing either.
func TestFailedAddLeavesPodAsItWas(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, pod *lab.NS)
		wrap    []string
		details string // in the CNI error's details
	}{
		{"tap0 is not a tap", func(t *testing.T, pod *lab.NS) {
			pod.Run(t, "ip", "link", "add", "tap0", "type", "veth", "peer", "name", "tap0p")
		}, nil, `link "tap0": expected a tap, found type veth`},
		{"bridge name taken", func(t *testing.T, pod *lab.NS) {
			pod.Run(t, "ip", "link", "add", "k6t-eth0", "type", "veth", "peer", "name", "k6tp")
		}, nil, `link "k6t-eth0": expected a bridge, found type veth`},
		{"no tun device", func(*testing.T, *lab.NS) {}, noTunDevice, `plumbing of "eth0", step tap: failed to create tuntap "tap0"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := podNS(t, "eth0")
			tc.prepare(t, pod)
			dir := t.TempDir()
			before := capturePod(t, pod)
			inv := invocation{Wrap: tc.wrap, Command: "ADD", ContainerID: "c1", Netns: pod.Path(), IfName: "net1",
				Conf: confJSON(t, dir, map[string]any{"plumbing": true}, logicNet("default"))}
			r := run(t, inv)
			var got types.Error
			if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil || r.Exit != 1 {
				t.Fatalf("ADD exit %d output %q stderr %q, want a CNI error", r.Exit, r.Stdout, r.Stderr)
			}
			if got.Code != types.ErrInternal || got.Msg != `failed to set up eth0 for network "default"` || !strings.Contains(got.Details, tc.details) {
				t.Errorf("ADD error %+v, want code 999 naming eth0 with %q in the details", got, tc.details)
			}
			diffPod(t, "after the failed ADD", before, capturePod(t, pod))
			if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
				t.Errorf("state directory after a failed ADD: %v %v, want it empty", entries, err)
			}
			inv.Wrap, inv.Command = nil, "DEL"
			mustRun(t, inv)
			diffPod(t, "after DEL", before, capturePod(t, pod))
		})
	}
}

// TestKilledAddUndoneByDel: ADD records what it will change before
// changing anything, so an ADD killed (SIGKILL) at any point after its
// record appears (here 0 to 160 ms later: before the sysctls, part way
// through the plumbing, or done) is undone by DEL: the pod ends as it was,
// and no state or lock is left.
func TestKilledAddUndoneByDel(t *testing.T) {
	for _, delay := range []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond,
		80 * time.Millisecond, 160 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			pod := podNS(t, "eth0")
			dir := t.TempDir()
			before := capturePod(t, pod)
			inv := invocation{Command: "ADD", ContainerID: "c1", Netns: pod.Path(), IfName: "net1",
				Conf: confJSON(t, dir, map[string]any{"plumbing": true}, logicNet("default"))}
			killAfterRecord(t, inv, statePath(dir, "c1", "net1"), delay)
			inv.Command = "DEL"
			mustRun(t, inv)
			diffPod(t, "after the killed ADD and DEL", before, capturePod(t, pod))
			if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
				t.Errorf("state directory after DEL: %v %v, want it empty", entries, err)
			}
		})
	}
}

// killAfterRecord starts inv and kills it (by PID) delay after its state
// file appears.
func killAfterRecord(t *testing.T, inv invocation, path string, delay time.Duration) {
	t.Helper()
	cmd := exec.Command(cniBin)
	cmd.Env = []string{"CNI_COMMAND=" + inv.Command, "CNI_CONTAINERID=" + inv.ContainerID, "CNI_NETNS=" + inv.Netns,
		"CNI_IFNAME=" + inv.IfName, "CNI_PATH=/opt/cni/bin"}
	cmd.Stdin = strings.NewReader(inv.Conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill() // it may have finished already
		_ = cmd.Wait()
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no state file within 30 s")
		}
	}
	time.Sleep(delay)
}
