package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// cniBin is the plugin built once for the package's tests, as a runtime
// would find it in /opt/cni/bin.
var cniBin string

func TestMain(m *testing.M) {
	if os.Getenv(standInEnv) != "" { // a stand-in server: needs no plugin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "dsbcni")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cniBin = filepath.Join(dir, "dsbridge-cni")
	cmd := exec.Command("go", "build", "-o", cniBin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// invocation is one plugin run: the CNI_* environment and stdin.
type invocation struct {
	// Wrap, when set, runs the plugin through this command line (which
	// execs its trailing arguments).
	Wrap        []string
	Command     string
	ContainerID string
	Netns       string
	IfName      string
	Args        string
	Conf        string
}

// result is the plugin's stdout and exit status.
type result struct {
	Stdout string
	Stderr string
	Exit   int
}

// run executes the plugin as a runtime does.
func run(t *testing.T, inv invocation) result {
	t.Helper()
	r, err := execPlugin(inv)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// execPlugin is run for any goroutine: only starting the plugin fails.
func execPlugin(inv invocation) (result, error) {
	cmd := exec.Command(cniBin)
	if len(inv.Wrap) > 0 {
		cmd = exec.Command(inv.Wrap[0], append(inv.Wrap[1:], cniBin)...)
	}
	cmd.Env = []string{
		"CNI_COMMAND=" + inv.Command,
		"CNI_CONTAINERID=" + inv.ContainerID,
		"CNI_NETNS=" + inv.Netns,
		"CNI_IFNAME=" + inv.IfName,
		"CNI_ARGS=" + inv.Args,
		"CNI_PATH=/opt/cni/bin",
	}
	cmd.Stdin = strings.NewReader(inv.Conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return result{}, fmt.Errorf("run %s: %w", cniBin, err)
	}
	return result{Stdout: stdout.String(), Stderr: stderr.String(), Exit: cmd.ProcessState.ExitCode()}, nil
}

// mustRun runs inv and fails the test unless it exits 0.
func mustRun(t *testing.T, inv invocation) string {
	t.Helper()
	r := run(t, inv)
	if r.Exit != 0 {
		t.Fatalf("%s exited %d: stdout %s stderr %s", inv.Command, r.Exit, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// confJSON is a network configuration with the given extra fields and
// cni-args; stateDir is always set.
func confJSON(t *testing.T, stateDir string, extra map[string]any, cniArgs map[string]any) string {
	t.Helper()
	c := map[string]any{"cniVersion": "1.0.0", "name": "dsbridge-binding", "type": "dsbridge-cni", "stateDir": stateDir}
	for k, v := range extra {
		c[k] = v
	}
	if cniArgs != nil {
		c["args"] = map[string]any{"cni": cniArgs}
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func logicNet(name string) map[string]any { return map[string]any{"logicNetworkName": name} }

// adds are the sysctls ADD sets.
var adds = []string{sysctlUnprivPortStart, sysctlArpIgnoreAll, sysctlAcceptLocalAll, sysctlRPFilterAll, sysctlRPFilterDefault,
	sysctlAcceptRADefault, sysctlAcceptDADDefault}

// sysctls reads the sysctls ADD sets inside ns, and whether the server
// identifier route is there (as "route": 1).
func sysctls(t *testing.T, ns *lab.NS) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, name := range adds {
		s := strings.TrimSpace(ns.Run(t, "cat", filepath.Join("/proc/sys", name)))
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("sysctl %s = %q: %v", name, s, err)
		}
		out[name] = v
	}
	out["route"] = strings.Count(ns.Run(t, "ip", "route", "show", "table", "local", "169.254.75.0/24"),
		"local 169.254.75.0/24 dev lo proto static scope host")
	return out
}

// pristine is a new namespace's: IPv4 "all" and "default" values are copied
// from the host's (net.core.devconf_inherit_init_net 0), which the tests
// run in; IPv6 ones are the kernel's defaults.
func pristine() map[string]int {
	host := func(name string) int {
		b, err := os.ReadFile(filepath.Join("/proc/sys", name))
		if err != nil {
			panic(err) // the host has IPv4
		}
		v, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return v
	}
	return map[string]int{sysctlUnprivPortStart: 1024, sysctlArpIgnoreAll: host(sysctlArpIgnoreAll),
		sysctlAcceptLocalAll: host(sysctlAcceptLocalAll), sysctlRPFilterAll: host(sysctlRPFilterAll),
		sysctlRPFilterDefault: host(sysctlRPFilterDefault), sysctlAcceptRADefault: 1, sysctlAcceptDADDefault: 1, "route": 0}
}

func configured() map[string]int {
	return map[string]int{sysctlUnprivPortStart: 0, sysctlArpIgnoreAll: 1, sysctlAcceptLocalAll: 1,
		sysctlRPFilterAll: 0, sysctlRPFilterDefault: 0, sysctlAcceptRADefault: 0, sysctlAcceptDADDefault: 0, "route": 1}
}

// recorded is what ADD records for a pristine namespace.
func recorded() []sysctlChange {
	p := pristine()
	var out []sysctlChange
	for _, w := range wantSysctls {
		out = append(out, sysctlChange{Name: w.name, Prev: p[w.name], Set: w.val})
	}
	return out
}

func TestAddDelSysctls(t *testing.T) {
	ns := lab.NewNS(t)
	dir := t.TempDir()
	inv := invocation{Command: "ADD", ContainerID: "c1", Netns: ns.Path(), IfName: "net1",
		Args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=vms;K8S_POD_NAME=virt-launcher-a",
		Conf: confJSON(t, dir, nil, logicNet("default"))}
	if diff := cmp.Diff(pristine(), sysctls(t, ns)); diff != "" {
		t.Fatalf("fresh namespace sysctls (-want +got):\n%s", diff)
	}

	out := mustRun(t, inv)
	if diff := cmp.Diff(`{"cniVersion":"1.0.0"}`, compact(t, out)); diff != "" {
		t.Errorf("ADD result (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(configured(), sysctls(t, ns)); diff != "" {
		t.Errorf("sysctls after ADD (-want +got):\n%s", diff)
	}
	st, err := loadState(statePath(dir, "c1", "net1"))
	if err != nil {
		t.Fatal(err)
	}
	want := &state{Version: 1, Network: "dsbridge-binding", ContainerID: "c1", IfName: "net1", Netns: ns.Path(),
		LogicNetwork: "default", PodIface: "eth0", Sysctls: recorded(), ServerRoute: true}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("state after ADD (-want +got):\n%s", diff)
	}

	inv.Command = "CHECK"
	mustRun(t, inv)

	inv.Command = "DEL"
	mustRun(t, inv)
	if diff := cmp.Diff(pristine(), sysctls(t, ns)); diff != "" {
		t.Errorf("sysctls after DEL (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(statePath(dir, "c1", "net1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file after DEL: %v, want it gone", err)
	}
	// A second DEL finds nothing to undo and succeeds.
	mustRun(t, inv)
}

// jsonRoundTrip normalises a value to what encoding/json decodes it to.
func jsonRoundTrip(v map[string]any) map[string]any {
	b, _ := json.Marshal(v)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

func compact(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("not JSON: %q: %v", s, err)
	}
	return b.String()
}

func TestAddPassesPrevResultThrough(t *testing.T) {
	ns := lab.NewNS(t)
	prev := map[string]any{
		"cniVersion": "1.0.0",
		"interfaces": []any{map[string]any{"name": "eth0", "mac": "0a:58:0a:10:00:05", "sandbox": ns.Path()}},
		"ips": []any{
			map[string]any{"address": "10.16.0.5/16", "gateway": "10.16.0.1", "interface": 0},
			map[string]any{"address": "fd00:10:16::5/112", "gateway": "fd00:10:16::1", "interface": 0},
		},
		"routes": []any{map[string]any{"dst": "0.0.0.0/0", "gw": "10.16.0.1"}},
		"dns":    map[string]any{"nameservers": []any{"10.96.0.10"}, "search": []any{"vms.svc.cluster.local"}},
	}
	conf := confJSON(t, t.TempDir(), map[string]any{"prevResult": prev}, logicNet("default"))
	out := mustRun(t, invocation{Command: "ADD", ContainerID: "c1", Netns: ns.Path(), IfName: "eth0", Conf: conf})
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("ADD result %q: %v", out, err)
	}
	if diff := cmp.Diff(prev, got, cmp.Transformer("json", jsonRoundTrip)); diff != "" {
		t.Errorf("ADD result (-want +got):\n%s", diff)
	}
}

// TestDelUndoesOnlyItsOwnChanges: a sysctl changed by someone else after ADD
// keeps that value.
func TestDelUndoesOnlyItsOwnChanges(t *testing.T) {
	ns := lab.NewNS(t)
	inv := invocation{Command: "ADD", ContainerID: "c1", Netns: ns.Path(), IfName: "net1", Conf: confJSON(t, t.TempDir(), nil, logicNet("default"))}
	ns.Run(t, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=2")
	mustRun(t, inv)
	ns.Run(t, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=8")
	inv.Command = "DEL"
	mustRun(t, inv)
	want := pristine()
	want[sysctlArpIgnoreAll] = 8
	if diff := cmp.Diff(want, sysctls(t, ns)); diff != "" {
		t.Errorf("sysctls after DEL (-want +got):\n%s", diff)
	}
}

// TestTwoAttachmentsShareSysctls: a VM with two dsbridge interfaces gets two
// ADDs in one pod; the sysctls are restored only when the last one goes,
// to the values from before the first.
func TestTwoAttachmentsShareSysctls(t *testing.T) {
	for _, order := range [][2]string{{"net1", "net2"}, {"net2", "net1"}} {
		t.Run(order[0]+"-first", func(t *testing.T) {
			ns := lab.NewNS(t)
			dir := t.TempDir()
			mk := func(cmd, ifname, network string) invocation {
				return invocation{Command: cmd, ContainerID: "c1", Netns: ns.Path(), IfName: ifname, Conf: confJSON(t, dir, nil, logicNet(network))}
			}
			mustRun(t, mk("ADD", "net1", "default"))
			mustRun(t, mk("ADD", "net2", "blue"))
			st, err := loadState(statePath(dir, "c1", "net2"))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(recorded(), st.Sysctls); diff != "" {
				t.Errorf("second attachment's record (-want +got):\n%s", diff)
			}
			if st.PodIface != "pod16477688c0e" {
				t.Errorf("pod interface of network blue = %q, want pod16477688c0e", st.PodIface)
			}
			mustRun(t, mk("DEL", order[0], "default"))
			if diff := cmp.Diff(configured(), sysctls(t, ns)); diff != "" {
				t.Errorf("sysctls after the first DEL (-want +got):\n%s", diff)
			}
			mustRun(t, mk("DEL", order[1], "default"))
			if diff := cmp.Diff(pristine(), sysctls(t, ns)); diff != "" {
				t.Errorf("sysctls after the last DEL (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDelWithoutNetns: the namespace is gone (or the runtime passes none);
// DEL succeeds and forgets the attachment.
func TestDelWithoutNetns(t *testing.T) {
	for _, tc := range []struct {
		name  string
		netns func(ns *lab.NS) string
	}{
		{"deleted", func(ns *lab.NS) string { return ns.Path() }},
		{"empty CNI_NETNS", func(*lab.NS) string { return "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := lab.NewNS(t)
			dir := t.TempDir()
			conf := confJSON(t, dir, nil, logicNet("default"))
			mustRun(t, invocation{Command: "ADD", ContainerID: "c1", Netns: ns.Path(), IfName: "net1", Conf: conf})
			path := tc.netns(ns)
			if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
				t.Fatalf("ip netns del: %v: %s", err, out)
			}
			t.Cleanup(func() { _ = exec.Command("ip", "netns", "add", ns.Name).Run() }) // lab's cleanup deletes it again
			mustRun(t, invocation{Command: "DEL", ContainerID: "c1", Netns: path, IfName: "net1", Conf: conf})
			if _, err := os.Stat(statePath(dir, "c1", "net1")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("state file after DEL: %v, want it gone", err)
			}
		})
	}
}

// TestErrors: each bad input gives the CNI error code and message a runtime
// shows the user, and changes nothing.
func TestErrors(t *testing.T) {
	ns := lab.NewNS(t)
	dir := t.TempDir()
	good := confJSON(t, dir, nil, logicNet("default"))
	tests := []struct {
		name string
		inv  invocation
		want types.Error
	}{
		{"malformed JSON", invocation{Conf: `{"cniVersion":"1.0.0","name":"x",`},
			types.Error{Code: 6, Msg: "error unmarshall network config: unexpected end of JSON input"}},
		{"unknown cni-arg", invocation{Conf: confJSON(t, dir, nil, map[string]any{"logicNetworkName": "default", "podNetwork": "x"})},
			types.Error{Code: 2, Msg: `unknown cni-arg "podNetwork": dsbridge-cni knows only logicNetworkName`}},
		{"unknown field", invocation{Conf: confJSON(t, dir, map[string]any{"plumbng": true}, logicNet("default"))},
			types.Error{Code: 2, Msg: `unknown field "plumbng" in network configuration`}},
		{"wrong type", invocation{Conf: confJSON(t, dir, map[string]any{"plumbing": "yes"}, logicNet("default"))},
			types.Error{Code: 6, Msg: "failed to decode network configuration",
				Details: "json: cannot unmarshal string into Go struct field netConf.plumbing of type bool"}},
		{"cni-args not an object", invocation{Conf: confJSON(t, dir, map[string]any{"args": map[string]any{"cni": "x"}}, nil)},
			types.Error{Code: 6, Msg: "failed to decode cni-args (args.cni)",
				Details: "json: cannot unmarshal string into Go value of type main.cniArgs"}},
		{"missing logicNetworkName", invocation{Conf: confJSON(t, dir, nil, nil)},
			types.Error{Code: 7, Msg: "missing cni-arg logicNetworkName: attach this network through a KubeVirt binding (networkAttachmentDefinition), which sets it"}},
		{"relative stateDir", invocation{Conf: confJSON(t, "state", nil, logicNet("default"))},
			types.Error{Code: 7, Msg: `stateDir "state" is not an absolute path`}},
		{"tapQueues without plumbing", invocation{Conf: confJSON(t, dir, map[string]any{"tapQueues": 4}, logicNet("default"))},
			types.Error{Code: 7, Msg: "tapQueues 4 needs plumbing: true and a positive count"}},
		{"old CNI version", invocation{Conf: strings.Replace(good, `"1.0.0"`, `"0.4.0"`, 1)},
			types.Error{Code: 1, Msg: "incompatible CNI versions",
				Details: `config is "0.4.0", plugin supports ["1.0.0" "1.1.0"]`}},
		{"unknown CNI_ARGS key", invocation{Conf: good, Args: "K8S_POD_NAME=a;FOO=bar"},
			types.Error{Code: 4, Msg: "invalid CNI_ARGS", Details: `ARGS: unknown args ["FOO=bar"]`}},
		{"tapQueues over the kernel's 256", invocation{Conf: confJSON(t, dir, map[string]any{"plumbing": true, "tapQueues": 257}, logicNet("default"))},
			types.Error{Code: 7, Msg: "tapQueues 257 is more than a tap can have (256, MAX_TAP_QUEUES)"}},
		{"tapOwner over 32 bits", invocation{Conf: confJSON(t, dir, map[string]any{"plumbing": true, "tapOwner": 1 << 32}, logicNet("default"))},
			types.Error{Code: 7, Msg: "tapOwner 4294967296 needs plumbing: true and an id from 0 to 4294967295"}},
		// CNI_NETNS must name a network namespace: the spec's code for a
		// bad CNI_* variable is 4, its message naming the variable.
		{"missing netns", invocation{Conf: good, Netns: "/var/run/netns/" + lab.RandName("gone")},
			types.Error{Code: 4, Msg: "CNI_NETNS %NETNS% is not a network namespace", Details: "open %PATH%: no such file or directory"}},
		{"netns a regular file", invocation{Conf: good, Netns: lab.WriteFile(t, "not-a-netns", "")},
			types.Error{Code: 4, Msg: "CNI_NETNS %NETNS% is not a network namespace", Details: "ioctl NS_GET_NSTYPE: inappropriate ioctl for device"}},
		{"netns a mount namespace", invocation{Conf: good, Netns: "/proc/self/ns/mnt"},
			types.Error{Code: 4, Msg: "CNI_NETNS %NETNS% is not a network namespace", Details: "it is a namespace of type 0x20000, not CLONE_NEWNET"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inv := tc.inv
			inv.Command, inv.ContainerID, inv.IfName = "ADD", "c1", "net1"
			if inv.Netns == "" {
				inv.Netns = ns.Path()
			}
			r := run(t, inv)
			if r.Exit != 1 {
				t.Fatalf("exit %d, want 1; stdout %s", r.Exit, r.Stdout)
			}
			var got types.Error
			if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil {
				t.Fatalf("error output %q: %v", r.Stdout, err)
			}
			want := tc.want
			want.Msg = strings.ReplaceAll(want.Msg, "%NETNS%", strconv.Quote(inv.Netns))
			want.Details = strings.ReplaceAll(want.Details, "%PATH%", inv.Netns)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("CNI error (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(pristine(), sysctls(t, ns)); diff != "" {
				t.Errorf("sysctls after a failed ADD (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	out := mustRun(t, invocation{Command: "VERSION"})
	if diff := cmp.Diff(`{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}`, compact(t, out)); diff != "" {
		t.Errorf("VERSION (-want +got):\n%s", diff)
	}
}

func TestCheckDetectsDrift(t *testing.T) {
	ns := lab.NewNS(t)
	inv := invocation{Command: "ADD", ContainerID: "c1", Netns: ns.Path(), IfName: "net1", Conf: confJSON(t, t.TempDir(), nil, logicNet("default"))}
	mustRun(t, inv)
	ns.Run(t, "sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=1024")
	inv.Command = "CHECK"
	r := run(t, inv)
	var got types.Error
	if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil || r.Exit != 1 {
		t.Fatalf("CHECK exit %d output %q (%v), want a CNI error", r.Exit, r.Stdout, err)
	}
	want := types.Error{Code: 999, Msg: "pod interface eth0 is not as ADD left it",
		Details: `sysctl "net/ipv4/ip_unprivileged_port_start" is 1024, want 0`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CHECK error (-want +got):\n%s", diff)
	}

	inv.Command, inv.ContainerID = "CHECK", "never-added"
	r = run(t, inv)
	if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil || got.Code != types.ErrUnknownContainer {
		t.Errorf("CHECK of an unknown attachment: exit %d output %q, want code 3", r.Exit, r.Stdout)
	}
}

// TestGC: attachments the runtime no longer lists are undone and forgotten;
// listed ones and other networks' are kept.
func TestGC(t *testing.T) {
	keep, drop := lab.NewNS(t), lab.NewNS(t)
	dir := t.TempDir()
	conf := confJSON(t, dir, map[string]any{"cniVersion": "1.1.0"}, logicNet("default"))
	mustRun(t, invocation{Command: "ADD", ContainerID: "keep", Netns: keep.Path(), IfName: "net1", Conf: conf})
	mustRun(t, invocation{Command: "ADD", ContainerID: "drop", Netns: drop.Path(), IfName: "net1", Conf: conf})
	other := confJSON(t, dir, map[string]any{"cniVersion": "1.1.0", "name": "other"}, logicNet("default"))
	mustRun(t, invocation{Command: "ADD", ContainerID: "other", Netns: drop.Path(), IfName: "net2", Conf: other})

	gcConf := confJSON(t, dir, map[string]any{"cniVersion": "1.1.0",
		"cni.dev/valid-attachments": []any{map[string]any{"containerID": "keep", "ifname": "net1"}}}, nil)
	mustRun(t, invocation{Command: "GC", Conf: gcConf})

	var left []string
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if diff := cmp.Diff([]string{"keep-net1.json", "other-net2.json"}, left); diff != "" {
		t.Errorf("state files after GC (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(configured(), sysctls(t, keep)); diff != "" {
		t.Errorf("kept attachment's sysctls (-want +got):\n%s", diff)
	}
	// "drop" shared its namespace with the other network's attachment,
	// which still needs the sysctls.
	if diff := cmp.Diff(configured(), sysctls(t, drop)); diff != "" {
		t.Errorf("sysctls shared with a live attachment (-want +got):\n%s", diff)
	}
}

func TestGCUndoes(t *testing.T) {
	ns := lab.NewNS(t)
	dir := t.TempDir()
	conf := confJSON(t, dir, map[string]any{"cniVersion": "1.1.0"}, logicNet("default"))
	mustRun(t, invocation{Command: "ADD", ContainerID: "c1", Netns: ns.Path(), IfName: "net1", Conf: conf})
	mustRun(t, invocation{Command: "GC", Conf: confJSON(t, dir, map[string]any{"cniVersion": "1.1.0"}, nil)})
	if diff := cmp.Diff(pristine(), sysctls(t, ns)); diff != "" {
		t.Errorf("sysctls after GC (-want +got):\n%s", diff)
	}
}

func TestStatus(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, invocation{Command: "STATUS", Conf: confJSON(t, dir, map[string]any{"cniVersion": "1.1.0"}, nil)})

	file := lab.WriteFile(t, "not-a-dir", "")
	r := run(t, invocation{Command: "STATUS", Conf: confJSON(t, filepath.Join(file, "state"), map[string]any{"cniVersion": "1.1.0"}, nil)})
	var got types.Error
	if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil || r.Exit != 1 {
		t.Fatalf("STATUS exit %d output %q (%v), want a CNI error", r.Exit, r.Stdout, err)
	}
	want := types.Error{Code: 50, Msg: fmt.Sprintf("state directory %q is not usable", filepath.Join(file, "state")),
		Details: "mkdir " + file + ": not a directory"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("STATUS error (-want +got):\n%s", diff)
	}
}

// runConcurrently runs every invocation at once and fails the test for
// each that does not exit 0.
func runConcurrently(t *testing.T, invs []invocation) {
	t.Helper()
	results := make([]result, len(invs))
	errs := make([]error, len(invs))
	var wg sync.WaitGroup
	for i, inv := range invs {
		wg.Go(func() { results[i], errs[i] = execPlugin(inv) })
	}
	wg.Wait()
	for i, r := range results {
		if errs[i] != nil || r.Exit != 0 {
			t.Errorf("%s %s: %v, exit %d, stdout %s, stderr %s", invs[i].Command, invs[i].IfName, errs[i], r.Exit, r.Stdout, r.Stderr)
		}
	}
}

// TestConcurrentAddDel: a VM with 8 dsbridge networks gets its 8 ADDs from
// Multus at once, and its 8 DELs at once; 8 rounds, then one where DELs of
// some attachments race ADDs of others. Every ADD records the pod's
// pristine sysctl values (not the kernel's defaults here, and not a value
// a sibling already set) as the ones to restore; after the last DEL every
// sysctl is back and the state directory is empty (no state, no lock).
func TestConcurrentAddDel(t *testing.T) {
	const attachments, rounds = 8, 8
	ns := lab.NewNS(t)
	ns.Run(t, "sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=2000", "net.ipv4.conf.all.arp_ignore=2")
	before := pristine()
	before[sysctlUnprivPortStart], before[sysctlArpIgnoreAll] = 2000, 2
	dir := t.TempDir()
	inv := func(cmd string, i int) invocation {
		return invocation{Command: cmd, ContainerID: "c1", Netns: ns.Path(), IfName: fmt.Sprintf("net%d", i+1),
			Conf: confJSON(t, dir, nil, logicNet(fmt.Sprintf("blue%d", i)))}
	}
	all := func(cmd string, from, to int) []invocation {
		var out []invocation
		for i := from; i < to; i++ {
			out = append(out, inv(cmd, i))
		}
		return out
	}
	var wantRecord []sysctlChange
	for _, w := range wantSysctls {
		wantRecord = append(wantRecord, sysctlChange{Name: w.name, Prev: before[w.name], Set: w.val})
	}
	checkAdded := func(t *testing.T, from, to int) {
		t.Helper()
		if diff := cmp.Diff(configured(), sysctls(t, ns)); diff != "" {
			t.Errorf("sysctls after the ADDs (-want +got):\n%s", diff)
		}
		for i := from; i < to; i++ {
			st, err := loadState(statePath(dir, "c1", fmt.Sprintf("net%d", i+1)))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantRecord, st.Sysctls); diff != "" {
				t.Errorf("net%d's record of the values to restore (-want +got):\n%s", i+1, diff)
			}
		}
	}
	checkRestored := func(t *testing.T) {
		t.Helper()
		if diff := cmp.Diff(before, sysctls(t, ns)); diff != "" {
			t.Errorf("sysctls after the DELs (-want +got):\n%s", diff)
		}
		if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
			t.Errorf("state directory after the DELs: %v %v, want it empty", entries, err)
		}
	}
	for round := range rounds {
		t.Run(fmt.Sprintf("round %d", round+1), func(t *testing.T) {
			runConcurrently(t, all("ADD", 0, attachments))
			checkAdded(t, 0, attachments)
			runConcurrently(t, all("DEL", 0, attachments))
			checkRestored(t)
		})
	}
	t.Run("DELs racing ADDs", func(t *testing.T) {
		runConcurrently(t, all("ADD", 0, attachments/2))
		runConcurrently(t, slices.Concat(all("DEL", 0, attachments/2), all("ADD", attachments/2, attachments)))
		checkAdded(t, attachments/2, attachments)
		runConcurrently(t, all("DEL", attachments/2, attachments))
		checkRestored(t)
	})
}
