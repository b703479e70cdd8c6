package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/e2e/lab/managedtap"
	"github.com/dsbridge/dsbridge/hooks/hookstest"
	"github.com/dsbridge/dsbridge/netsetup"
	"github.com/google/go-cmp/cmp"
)

// TestTiers runs each deployment tier end to end with the sidecar under
// the privileges that tier gives it, driven by the fake virt-launcher; a
// guest running dhcpcd gets both families and both default routes.
//
//   - unprivileged (KubeVirt's default posture): the binding CNI's ADD on the
//     pristine pod (port sysctl, arp_ignore, kernel RS->RA responder), the
//     sidecar as uid 107 with no capabilities (it records the pod before the
//     socket opens), virt-handler's managedTap plumbing, then OnDefineDomain:
//     the sidecar adopts the layout and serves DHCPv4 and DHCPv6 from UDP
//     sockets while the kernel answers RS;
//   - legacy (KubeVirt before 1.4, domainAttachmentType: tap): the CNI builds
//     the plumbing itself before any container starts, so the sidecar finds
//     the pod already plumbed and recovers the gateways from the plumbing's
//     record;
//   - root gate (KubeVirt's Root feature gate: root with the runtime's default
//     capabilities, NET_RAW and NET_BIND_SERVICE but never NET_ADMIN): no
//     CNI, managedTap plumbing, every service on the packet transport, and
//     nothing dsbridge sends reaches the uplink.
func TestTiers(t *testing.T) {
	if testing.Short() {
		t.Skip("long end-to-end rows")
	}
	for _, row := range []tierRow{unprivilegedTier(), legacyTier(), rootGateTier()} {
		t.Run(row.name, func(t *testing.T) { runTier(t, row) })
	}
}

// uid107 are setpriv's arguments for KubeVirt's default sidecar: uid and
// gid 107, no groups, an empty capability set, no_new_privs.
func uid107() []string {
	return []string{"--reuid", "107", "--regid", "107", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"}
}

// unprivilegedTier is KubeVirt's default posture: the binding CNI's ADD,
// managedTap, the sidecar as uid 107 without capabilities.
func unprivilegedTier() tierRow {
	return tierRow{name: "unprivileged", cni: true, uid: 107, setpriv: uid107(), leak: lab.LeakFilter,
		plan: []string{`"tier":"Unprivileged"`, `"plumbing":{"on":true,"transport":"adopt"`,
			`"dhcpv4":{"on":true,"transport":"udp","reason":"UDP on the bridge; the binding CNI's uplink guard`,
			`"dhcpv6":{"on":true,"transport":"udp","reason":"UDP on the bridge; the binding CNI's uplink guard`, `"ra":{"on":true,"transport":"tc-bpf"}`}}
}

// legacyTier is KubeVirt before 1.4: the CNI builds the plumbing.
func legacyTier() tierRow {
	return tierRow{name: "legacy CNI plumbing", cni: true, cniPlumbing: true, uid: 107, setpriv: uid107(), leak: lab.LeakFilter,
		plan: []string{`"tier":"Unprivileged"`, `"plumbing":{"on":true,"transport":"adopt"`,
			`"dhcpv4":{"on":true,"transport":"udp"`, `"dhcpv6":{"on":true,"transport":"udp"`, `"ra":{"on":true,"transport":"tc-bpf"}`}}
}

// rootGateTier is KubeVirt's Root feature gate: root with the runtime's
// default capabilities (NET_RAW, NET_BIND_SERVICE), managedTap, no CNI:
// the packet tier.
func rootGateTier() tierRow {
	return tierRow{name: "root gate", setpriv: []string{"--inh-caps=-all", "--bounding-set=-all,+net_raw,+net_bind_service"}, leak: lab.LeakFilter,
		plan: []string{`"tier":"Root gate"`, `"plumbing":{"on":true,"transport":"adopt"`,
			`"dhcpv4":{"on":true,"transport":"packet"}`, `"dhcpv6":{"on":true,"transport":"packet"}`, `"ra":{"on":true,"transport":"packet"}`}}
}

// tierRow is one deployment tier: whether the binding CNI runs (and builds
// the plumbing), the sidecar's privileges (setpriv arguments), the plan it
// must log, and the uplink capture filter that must stay empty.
type tierRow struct {
	name             string
	cni, cniPlumbing bool
	uid              int // the sidecar's uid, which owns the hooks directory
	setpriv, plan    []string
	leak             string
	args             []string // extra sidecar flags (e.g. --lease-time)
}

func runTier(t *testing.T, row tierRow) {
	l := lab.NewLab(t, lab.KubeOVN)
	leak := lab.StartCapture(t, l.Node, l.NodeIf, row.leak)
	tr := startTier(t, l, row)
	l.Dhcpcd(t)
	waitAddrs(t, l, []string{"10.16.0.5/16", "fd00:10:16::5/128"}, 30*time.Second)
	waitDefault(t, l, "-4", "10.16.0.1", 5*time.Second)
	waitDefault(t, l, "-6", l.GatewayLLA(), 5*time.Second)
	pingAll(t, l, 3, gatewayPings(l.Spec)...)

	if err := tr.launcher.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-tr.proc.exited:
		if !tr.proc.cmd.ProcessState.Success() {
			t.Errorf("sidecar exit: %v", tr.proc.cmd.ProcessState)
		}
	case <-time.After(2 * time.Second):
		t.Error("sidecar still runs 2 s after Shutdown")
	}
	if row.cni {
		// DEL takes back what ADD did, the kernel responder included.
		if f := responderFilters(t, l); !strings.Contains(f, "dsbridge_ra") {
			t.Errorf("before CNI DEL no responder at egress of the uplink:\n%s", f)
		}
		tr.cni.run(t, l, "DEL")
		if f := responderFilters(t, l); strings.Contains(f, "dsbridge_ra") {
			t.Errorf("after CNI DEL the responder is still attached:\n%s", f)
		}
	}
	if pkts := leak.Stop(t); len(pkts) > 0 {
		t.Errorf("the uplink capture (%s) holds:\n%s", row.leak, strings.Join(pkts, "\n"))
	}
}

// tierRun is a sidecar serving l's pod in a tier, after OnDefineDomain.
type tierRun struct {
	launcher *hookstest.Launcher
	side     *lab.Buffer  // the sidecar's output
	proc     *tierSidecar // the sidecar process (launcher and side are its)
	cni      cniRun       // the binding CNI's ADD, when the tier has one
}

// startTier sets l's pod up as row's tier runs it and starts the sidecar
// with row's privileges: the binding CNI's ADD (and plumbing) when the tier
// has it, the sidecar (which records the pod before its socket opens),
// virt-handler's managedTap layout, then OnDefineDomain; it checks the plan
// the sidecar logs and that inspect reports the same. The sidecar is
// killed by PID at cleanup.
func startTier(t *testing.T, l *lab.Lab, row tierRow) *tierRun {
	t.Helper()
	if row.cniPlumbing {
		// The CNI creates the real tap0; the guest's veth joins the bridge
		// beside it, standing in for the VM on that tap.
		l.Pod.Run(t, "ip", "link", "set", l.Tap, "down")
		l.Pod.Run(t, "ip", "link", "set", l.Tap, "name", "vm0")
	}
	var cni cniRun
	if row.cni {
		cni = cniAdd(t, l, row.cniPlumbing)
	}
	if row.cniPlumbing {
		l.Pod.Run(t, "ip", "link", "set", "vm0", "master", "k6t-"+l.Spec.PodIface, "up")
	}
	side := launchSidecar(t, l, row.uid, row.setpriv, append([]string{"--log-level", "debug"}, row.args...), nil)
	tr := &tierRun{launcher: side.launcher, side: side.out, proc: side, cni: cni}
	if !row.cniPlumbing {
		managedtap.Build(t, l)
	}
	domain, vmi := readFixture(t, "domain.xml"), readFixture(t, "vmi-pod.json")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := tr.launcher.OnDefineDomain(ctx, domain, vmi); err != nil {
		t.Fatalf("OnDefineDomain: %v", err)
	}
	plan := tr.side.String()
	for _, want := range row.plan {
		if !strings.Contains(plan, want) {
			t.Errorf("sidecar plan lacks %s", want)
		}
	}
	samePlan(t, l, row.setpriv, side.stateDir(), side.resolv)
	return tr
}

// samePlan checks that `dsbridge inspect`, run with the sidecar's own
// privileges in its pod, reports exactly the plan the running sidecar
// serves with (its status document): one plan, whoever asks.
func samePlan(t *testing.T, l *lab.Lab, setpriv []string, stateDir, resolv string) {
	t.Helper()
	run := func(args ...string) []byte {
		t.Helper()
		full := append(append([]string{"netns", "exec", l.Pod.Name, "setpriv"}, setpriv...), append([]string{dsbridgeBin}, args...)...)
		out, err := exec.Command("ip", full...).Output()
		if err != nil {
			t.Fatalf("dsbridge %s: %v", args[0], err)
		}
		return out
	}
	var inspected struct{ Plan netsetup.Plan }
	if err := json.Unmarshal(run("inspect", "-o", "json", "--pod-iface", l.Spec.PodIface, "--state-dir", stateDir,
		"--resolv-conf", resolv), &inspected); err != nil {
		t.Fatalf("inspect -o json: %v", err)
	}
	var served struct {
		Interfaces []struct{ Plan netsetup.Plan }
	}
	if err := json.Unmarshal(run("status", "--socket", filepath.Join(stateDir, "status.sock"), "--json"), &served); err != nil {
		t.Fatalf("status --json: %v", err)
	}
	if len(served.Interfaces) != 1 || len(served.Interfaces[0].Plan.Services) != 4 {
		t.Fatalf("the sidecar serves %d interfaces, want 1 with a plan for plumbing and 3 services: %+v", len(served.Interfaces), served)
	}
	if diff := cmp.Diff(served.Interfaces[0].Plan, inspected.Plan); diff != "" {
		t.Errorf("inspect's plan differs from the sidecar's (-sidecar +inspect):\n%s", diff)
	}
}

// cniRun runs the binding CNI binary as a runtime would: command in the
// environment, configuration on stdin.
type cniRun struct {
	conf, containerID string
}

// cniAdd runs the binding CNI's ADD in the pod and returns what DEL needs.
func cniAdd(t *testing.T, l *lab.Lab, plumbing bool) cniRun {
	t.Helper()
	c := cniRun{containerID: lab.RandName("ctr"), conf: fmt.Sprintf(
		`{"cniVersion":"1.0.0","name":"dsbridge-binding","type":"dsbridge-cni","stateDir":%q,"plumbing":%t,"args":{"cni":{"logicNetworkName":"default"}}}`,
		t.TempDir(), plumbing)}
	c.run(t, l, "ADD")
	if got := strings.TrimSpace(l.Pod.Run(t, "sysctl", "-n", "net.ipv4.ip_unprivileged_port_start")); got != "0" {
		t.Fatalf("after CNI ADD ip_unprivileged_port_start = %s, want 0", got)
	}
	return c
}

func (c cniRun) run(t *testing.T, l *lab.Lab, command string) {
	t.Helper()
	cmd := exec.Command(cniBin)
	cmd.Env = append(os.Environ(), "CNI_COMMAND="+command, "CNI_CONTAINERID="+c.containerID,
		"CNI_NETNS="+l.Pod.Path(), "CNI_IFNAME=dsb0", "CNI_PATH="+filepath.Dir(cniBin))
	cmd.Stdin = strings.NewReader(c.conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CNI %s: %v\n%s", command, err, out)
	}
}

// responderFilters lists the tc filters at egress of the pod's uplink:
// <x>-nic while plumbed, <x> again after the legacy CNI's DEL tore the
// plumbing down.
func responderFilters(t *testing.T, l *lab.Lab) string {
	t.Helper()
	if out, err := l.Pod.Exec("tc", "filter", "show", "dev", l.Spec.PodIface+"-nic", "egress"); err == nil {
		return out
	}
	return l.Pod.Run(t, "tc", "filter", "show", "dev", l.Spec.PodIface, "egress")
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "hooks", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestTiersMLDReport: in the unprivileged tier a guest whose interface was
// already configured, and which therefore does not solicit (a Linux guest
// after KubeVirt's carrier flap, net/ipv6/addrconf.c addrconf_notify
// NETDEV_CHANGE), still meets the router: a new address makes its kernel
// join the address's solicited-node group and send an MLD report (RFC 3810
// §5.2, RFC 4861 §7.2.1), and the kernel responder answers it with the RA
// from the gateway's link-local to ff02::1 at the guest's MAC, with no RS
// in between. The report itself still goes upstream; the RA never does.
func TestTiersMLDReport(t *testing.T) {
	if testing.Short() {
		t.Skip("long end-to-end row")
	}
	l := lab.NewLab(t, lab.KubeOVN)
	leak := lab.StartCapture(t, l.Node, l.NodeIf, lab.LeakFilter)
	startTier(t, l, unprivilegedTier())
	vm := lab.StartCapture(t, l.Pod, l.Tap, "ip6") // not icmp6: it misses ICMPv6 behind Hop-by-Hop
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "up")
	waitDefault(t, l, "-6", l.GatewayLLA(), 10*time.Second)
	ra := l.GatewayLLA() + " > ff02::1: ICMP6, router advertisement"
	// The responder sends at most one RA a second for reports: wait until
	// the guest's start-up RSs and reports (RFC 3810 §6.1) and their RAs
	// are 2 s past.
	lab.WaitFor(t, 30*time.Second, "2 s without an RA to the guest", func() bool {
		return time.Since(lastAt(t, vm.Read(t, "-n", "-e", "-tt"), ra)) > 2*time.Second
	})
	upstream := lab.StartCapture(t, l.Node, l.NodeIf, "ip6 and ip6[6] == 0")
	added := time.Now()
	l.Guest.Run(t, "ip", "addr", "add", "fd00:99::1:2345/128", "dev", l.GuestIf) // joins ff02::1:ff01:2345
	for deadline := added.Add(3 * time.Second); time.Now().Before(deadline) && lastAt(t, vm.Read(t, "-n", "-e", "-tt"), ra).Before(added); {
		time.Sleep(100 * time.Millisecond)
	}
	vm.Stop(t)
	var pkts []string
	for _, p := range vm.Read(t, "-n", "-e", "-tt") {
		if !packetTime(t, p).Before(added) {
			pkts = append(pkts, p)
		}
	}
	report, answer, solicits := -1, -1, 0
	for i, p := range pkts {
		switch {
		case answer < 0 && strings.Contains(p, "router solicitation"):
			solicits++
		case report < 0 && strings.Contains(p, l.Spec.MAC+" > ") && strings.Contains(p, "multicast listener report"):
			report = i
		case answer < 0 && strings.Contains(p, l.Spec.NodeMAC+" > "+l.Spec.MAC+",") && strings.Contains(p, ra):
			answer = i
		}
	}
	if report < 0 || answer < report || solicits != 0 {
		t.Errorf("want the guest's MLD report, then the RA to its MAC, no RS (report %d, RA %d, %d RSs):\n%s",
			report, answer, solicits, strings.Join(pkts, "\n"))
	}
	upstream.Stop(t)
	if up := strings.Join(upstream.Packets(t), "\n"); !strings.Contains(up, "ff02::1:ff01:2345") {
		t.Errorf("the guest's report for ff02::1:ff01:2345 did not go upstream:\n%s", up)
	}
	if pkts := leak.Stop(t); len(pkts) > 0 {
		t.Errorf("the uplink capture (%s) holds:\n%s", lab.LeakFilter, strings.Join(pkts, "\n"))
	}
}

// lastAt is the time of the last packet line (tcpdump -tt) holding what;
// the zero time when none does.
func lastAt(t *testing.T, pkts []string, what string) time.Time {
	t.Helper()
	var last time.Time
	for _, p := range pkts {
		if strings.Contains(p, what) {
			last = packetTime(t, p)
		}
	}
	return last
}

// packetTime reads the epoch timestamp tcpdump -tt starts a line with.
func packetTime(t *testing.T, line string) time.Time {
	t.Helper()
	f, _, _ := strings.Cut(line, " ")
	sec, frac, _ := strings.Cut(f, ".")
	s, err1 := strconv.ParseInt(sec, 10, 64)
	us, err2 := strconv.ParseInt(frac, 10, 64)
	if err1 != nil || err2 != nil || len(frac) != 6 {
		t.Fatalf("tcpdump line without a -tt timestamp: %q", line)
	}
	return time.Unix(s, us*1000)
}
