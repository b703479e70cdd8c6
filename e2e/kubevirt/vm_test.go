package kubevirt

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	v1 "kubevirt.io/api/core/v1"

	"kubevirt.io/kubevirt/pkg/network/domainspec"
)

// TestVM runs each tier end to end: virt-api admits the VMI, the binding
// CNI (unprivileged tier) and the sidecar start, virt-launcher collects the
// sidecar, virt-handler's phase 1 builds managedTap's plumbing, and
// virt-launcher defines and starts the domain through both hook passes on a
// real libvirt. The TCG guest must then hold the pod's addresses, routes,
// MTU, DNS and search list and reach beyond both gateways; KubeVirt's
// link-refresh must leave it so; nothing dsbridge sends may reach the
// uplink; the sidecar exits on the hooks' Shutdown.
func TestVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM per tier")
	}
	for _, tr := range []tier{tierFull, tierRootGate, tierUnprivileged} {
		t.Run(tr.name, func(t *testing.T) { testVM(t, tr) })
	}
}

// vm is one running VMI: its cluster, pod and guest console.
type vm struct {
	c     *cluster
	vmi   *v1.VirtualMachineInstance
	node  *node
	pod   *pod
	guest *console
	start launcherReply
	leak  *capture // the pod's uplink, on the node, from the pod's start
}

// bootVM takes a VMI from admission to a guest shell in a new pod on s.
func bootVM(t *testing.T, n *node, s subnet, tr tier) *vm {
	t.Helper()
	return bootVMAnnotated(t, n, s, tr, nil)
}

// bootVMAnnotated is bootVM for a VMI with these annotations.
func bootVMAnnotated(t *testing.T, n *node, s subnet, tr tier, annotations map[string]string) *vm {
	t.Helper()
	c := newCluster(kubeVirtCR(string(v1.ManagedTap), tr.root))
	vmi := newVMI("vm1", v1.Interface{})
	vmi.Annotations = annotations
	vmi = withPodStatus(c.admit(t, vmi))
	wantUser := uint64(107)
	if tr.root {
		wantUser = 0
	}
	if vmi.Status.RuntimeUser != wantUser {
		t.Fatalf("virt-api set runtimeUser %d, want %d", vmi.Status.RuntimeUser, wantUser)
	}
	p := newPod(t, n, s, tr, vmi.Name)
	v := &vm{c: c, vmi: vmi, node: n, pod: p, leak: startCapture(t, n.ns, p.uplink, tr.leak)}
	if tr.cni {
		p.cniAdd(t)
	}
	p.startSidecar(t)
	p.startLauncher(t)
	p.launcher.call(launcherRequest{Op: "collect"})
	phase1(t, c, vmi, p.launcher.pid)
	v.start = p.launcher.call(launcherRequest{Op: "start", VMI: mustJSON(t, vmi), Attachments: c.attachments(vmi)})
	v.guest = dialConsole(t, p.serialSocket(), 4*time.Minute)
	return v
}

func testVM(t *testing.T, tr tier) {
	n := newNode(t)
	v := bootVM(t, n, kubeOVN, tr)
	checkHookPasses(t, v.start.Passes, 3)
	checkGuest(t, v, kubeOVN, 3)
	checkPlan(t, v.pod, tr.plan)

	// KubeVirt's link-refresh on the running domain.
	v.pod.launcher.call(launcherRequest{Op: "link-refresh", VMI: mustJSON(t, v.vmi),
		Migration: domainspec.BindingMigrationByInterfaceName(v.vmi.Spec.Domain.Devices.Interfaces, v.c.bindings())})
	time.Sleep(2 * time.Second)
	checkGuest(t, v, kubeOVN, 2)

	v.stop(t)
	checkLeak(t, v.leak, v.pod.tier.leak)
}

// checkLeak stops a capture on the uplink and fails on any packet in it.
func checkLeak(t *testing.T, c *capture, filter string) {
	t.Helper()
	if pkts := c.stop(t); len(pkts) > 0 {
		t.Errorf("the uplink capture (%s) holds %d packets dsbridge must never send there:\n%s", filter, len(pkts), strings.Join(pkts, "\n"))
	}
}

// stop ends QEMU, then virt-launcher calls the sidecar's Shutdown: the
// sidecar must exit 0 within 2 s.
func (v *vm) stop(t *testing.T) {
	t.Helper()
	v.pod.launcher.call(launcherRequest{Op: "stop"})
	waitExit(t, v.pod, 2*time.Second)
}

func waitExit(t *testing.T, p *pod, within time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for p.sidecar.ProcessState == nil {
			time.Sleep(20 * time.Millisecond)
		}
		done <- nil
	}()
	select {
	case <-done:
		if !p.sidecar.ProcessState.Success() {
			t.Errorf("sidecar exit: %v", p.sidecar.ProcessState)
		}
	case <-time.After(within):
		t.Errorf("sidecar still runs %v after Shutdown", within)
	}
}

// checkPlan checks the plan the sidecar logged in its "serving interface"
// line: the tier, and the transport of each service that is on.
func checkPlan(t *testing.T, p *pod, want map[string]string) {
	t.Helper()
	var line string
	for _, l := range strings.Split(p.sidecarOut.String(), "\n") {
		if strings.Contains(l, `"msg":"serving interface"`) {
			line = l
		}
	}
	type service struct {
		On        bool
		Transport string
	}
	var plan struct {
		Tier               string
		DHCPv4, DHCPv6, RA service
	}
	if err := json.Unmarshal([]byte(line), &plan); err != nil {
		t.Fatalf("the sidecar's serving interface line: %v\n%s", err, line)
	}
	got := map[string]string{"tier": plan.Tier}
	for name, s := range map[string]service{"dhcpv4": plan.DHCPv4, "dhcpv6": plan.DHCPv6, "ra": plan.RA} {
		if s.On {
			got[name] = s.Transport
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sidecar plan (-want +got):\n%s\n%s", diff, line)
	}
}

// checkGuest checks, in the guest: the pod's exact IPv4 with its prefix and
// IPv6 as a /128 plus the on-link prefix from the RA, default routes via
// the IPv4 gateway and the IPv6 gateway's link-local address, the MTU, the
// DNS servers and search list (resolv.conf) and what DHCPv4 handed out;
// then pings to both gateways and beyond them, each answered and each
// counted by the node.
func checkGuest(t *testing.T, v *vm, s subnet, pings int) {
	t.Helper()
	g := v.guest
	gw6 := linkLocal(s.GatewayMAC)
	g.waitFor("both families configured", fmt.Sprintf(
		"ip -4 addr show dev eth0 | grep -q 'inet %s ' && ip -6 addr show dev eth0 | grep -q 'inet6 %s/128 ' && ip -4 route show default | grep -q 'via %s' && ip -6 route show default | grep -q 'via %s'",
		s.IPv4, addrOnly(s.IPv6), s.Gateway4, gw6), 3*time.Minute)
	got := map[string]string{
		"ipv4":    fields(g.run("ip -o -4 addr show dev eth0 scope global"), 3),
		"ipv6":    fields(g.run("ip -o -6 addr show dev eth0 scope global"), 3),
		"route4":  g.run("ip -4 route show default"),
		"route6":  routeVia(g.run("ip -6 route show default")),
		"onlink6": routePrefix(g.run("ip -6 route show " + onlinkPrefix(s.IPv6))),
		"mtu":     g.run("cat /sys/class/net/eth0/mtu"),
		"resolv":  resolv(g.run("cat /etc/resolv.conf")),
		"dhcpmtu": g.env("/run/dhcp4.env")["mtu"],
		"search6": g.env("/run/dhcp6.env")["search"],
	}
	want := map[string]string{
		"ipv4":    s.IPv4,
		"ipv6":    addrOnly(s.IPv6) + "/128",
		"route4":  fmt.Sprintf("default via %s dev eth0 onlink ", s.Gateway4),
		"route6":  gw6,
		"onlink6": onlinkPrefix(s.IPv6),
		"mtu":     fmt.Sprint(s.MTU),
		"resolv":  fmt.Sprintf("nameservers %s; search %s", strings.Join(dnsServers, " "), strings.Join(searchList, " ")),
		"dhcpmtu": fmt.Sprint(s.MTU),
		"search6": strings.Join(searchList, " "),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("guest configuration (-want +got):\n%s", diff)
	}
	v4, v6 := v.node.icmpEchos(t)
	for _, target := range []string{s.Gateway4, offLink4, s.Gateway6, offLink6} {
		out := g.run(fmt.Sprintf("ping -c %d -W 2 %s", pings, target))
		if !strings.Contains(out, fmt.Sprintf("%d packets transmitted, %d packets received", pings, pings)) {
			t.Errorf("guest ping %s:\n%s", target, out)
		}
	}
	a4, a6 := v.node.icmpEchos(t)
	if a4-v4 != 2*pings || a6-v6 != 2*pings {
		t.Errorf("the node counted %d IPv4 and %d IPv6 echo requests, want %d each", a4-v4, a6-v6, 2*pings)
	}
}

// resolv summarizes a resolv.conf: its name servers (addresses in
// canonical form: udhcpc6 writes IPv6 ones in full) and search domains,
// each once, in order.
func resolv(text string) string {
	var servers, search []string
	seen := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(f[1]); err == nil && !seen[a.String()] {
				seen[a.String()] = true
				servers = append(servers, a.String())
			}
		case "search":
			for _, d := range f[1:] {
				if !seen[d] {
					seen[d] = true
					search = append(search, d)
				}
			}
		}
	}
	return fmt.Sprintf("nameservers %s; search %s", strings.Join(servers, " "), strings.Join(search, " "))
}

// fields returns the n-th (0-based) whitespace field of each line, joined
// by spaces.
func fields(text string, n int) string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if f := strings.Fields(line); len(f) > n {
			out = append(out, f[n])
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

var viaRE = regexp.MustCompile(`via (\S+) dev eth0`)

func routeVia(text string) string {
	var out []string
	for _, m := range viaRE.FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return strings.Join(out, " ")
}

func routePrefix(text string) string { return fields(text, 0) }

// onlinkPrefix is the pod's IPv6 prefix, e.g. fd00:10:16::/112.
func onlinkPrefix(cidr string) string {
	return netip.MustParsePrefix(cidr).Masked().String()
}

// checkHookPasses checks every hook pass: the sidecar changed no byte
// outside its own <interface> (alias ua-default), and every element and
// attribute of that interface survived KubeVirt's decode into
// api.DomainSpec and its re-encode. The first pass carries the
// placeholders.
func checkHookPasses(t *testing.T, passes []hookPass, placeholders int) {
	t.Helper()
	if len(passes) != 2 {
		t.Fatalf("%d hook passes, want 2 (placeholders, then the domain)", len(passes))
	}
	if got := strings.Count(passes[0].In, "placeholder-"); got != 2*placeholders {
		t.Errorf("pass 1 has %d placeholder names, want %d interfaces' (target and alias each)", got, placeholders)
	}
	if strings.Contains(passes[1].In, "placeholder-") {
		t.Errorf("pass 2 still has placeholders")
	}
	for i, p := range passes {
		inOut, _, err := cutInterface(p.In, "ua-default")
		if err != nil {
			inOut = p.In // no dsbridge interface before the hook
		}
		rawOut, rawIface, err := cutInterface(p.Raw, "ua-default")
		if err != nil {
			t.Fatalf("pass %d: the sidecar's answer has no ua-default interface: %v\n%s", i+1, err, p.Raw)
		}
		if inOut != rawOut {
			t.Errorf("pass %d changed bytes outside its interface:\n%s", i+1, cmp.Diff(inOut, rawOut))
		}
		_, decIface, err := cutInterface(p.Decoded, "ua-default")
		if err != nil {
			t.Fatalf("pass %d: KubeVirt's decode lost the interface: %v", i+1, err)
		}
		if diff := cmp.Diff(elementsOf(t, rawIface), elementsOf(t, decIface)); diff != "" {
			t.Errorf("pass %d: the interface changed through api.DomainSpec (-sidecar +KubeVirt):\n%s", i+1, diff)
		}
	}
}
