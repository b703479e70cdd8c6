package kubevirt

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"kubevirt.io/kubevirt/pkg/network/domainspec"
)

// renumberTimers are the changed-addresses row's VMI annotations: busybox
// udhcpc and udhcpc6 renew only at half the lease (networking/udhcp/dhcpc.c,
// d6_dhcpc.c), ignoring the link flap and T1, so a VM with such a guest
// that may migrate to other addresses is given a short lease, as the README
// ("Migration", "What to choose") tells operators: 30 s, the shortest
// dsbridge serves (udhcpc takes any shorter one for 30 s).
var renumberTimers = map[string]string{"dsbridge.io/lease-time": "30s", "dsbridge.io/renew-time": "5s"}

// renumberBound bounds the guest's move to the target's addresses after
// link-refresh: the next renewal at most half the 30 s lease away, then
// udhcpc's 3 s pause after a NAK (networking/udhcp/dhcpc.c), a DORA, and
// the TCG guest's own slowness. Issue 16 asks 10 s of every client but
// dhclient; busybox cannot renew sooner than 15 s after its last renewal.
const renumberBound = 25 * time.Second

// TestLiveMigration migrates the running VM from a source pod to a target
// pod on the same node bridge (one libvirtd each, QEMU's stream over a
// unix socket), the target prepared by KubeVirt's code with its own
// sidecar, then runs KubeVirt's link-refresh on the target. With the same
// addresses (Kube-OVN) the guest keeps both families, its addresses and its
// default routes, and the pings running through the migration keep being
// answered (the loss is logged and bounded); with other addresses it must
// converge to them within renumberBound, its VMI annotated with
// renumberTimers. The target's sidecar sends nothing
// to the tap before the guest speaks; nothing reaches the uplinks.
func TestLiveMigration(t *testing.T) {
	if testing.Short() {
		t.Skip("boots and migrates a VM")
	}
	for _, tr := range []tier{tierFull, tierRootGate, tierUnprivileged} {
		t.Run(tr.name+"/same addresses", func(t *testing.T) { testMigration(t, tr, kubeOVN) })
	}
	t.Run("unprivileged/changed addresses", func(t *testing.T) { testMigration(t, tierUnprivileged, renumbered) })
}

func testMigration(t *testing.T, tr tier, target subnet) {
	n := newNode(t)
	var annotations map[string]string
	if target != kubeOVN {
		annotations = renumberTimers
	}
	src := bootVMAnnotated(t, n, kubeOVN, tr, annotations)
	checkGuest(t, src, kubeOVN, 1)

	// The target pod, prepared as KubeVirt prepares a migration target.
	tvmi := src.vmi.DeepCopy()
	tvmi.Status.Interfaces[0].MAC = kubeOVN.PodMAC // virt-handler reports the VM's MAC
	dst := newPod(t, n, target, tr, tvmi.Name)
	dstLeak := startCapture(t, n.ns, dst.uplink, tr.leak)
	if tr.cni {
		dst.cniAdd(t)
	}
	dst.startSidecar(t)
	dst.startLauncher(t)
	dst.launcher.call(launcherRequest{Op: "collect"})
	phase1(t, src.c, tvmi, dst.launcher.pid)
	tap := startCapture(t, dst.ns, "tap0", "")
	dst.launcher.call(launcherRequest{Op: "prepare-target", VMI: mustJSON(t, tvmi), Attachments: src.c.attachments(tvmi)})
	time.Sleep(2 * time.Second) // a target that speaks first does it now

	startPings(src.guest)
	echo4, echo6 := n.icmpEchos(t)
	migrate(t, src.pod, dst)
	waitExit(t, src.pod, 5*time.Second) // virt-launcher called Shutdown once QEMU left

	v := &vm{c: src.c, vmi: tvmi, node: n, pod: dst, guest: dialConsole(t, dst.serialSocket(), time.Minute)}
	refreshed := time.Now()
	dst.launcher.call(launcherRequest{Op: "link-refresh", VMI: mustJSON(t, tvmi),
		Migration: domainspec.BindingMigrationByInterfaceName(tvmi.Spec.Domain.Devices.Interfaces, src.c.bindings())})
	if target == kubeOVN {
		time.Sleep(3 * time.Second) // pings after the flap
		sent, lost := stopPings(t, v.guest)
		a4, a6 := n.icmpEchos(t)
		t.Logf("migration (%s): pings to both off-link targets: %d sent, %d lost; the node answered %d IPv4 and %d IPv6 echo requests meanwhile",
			tr.name, sent, lost, a4-echo4, a6-echo6)
		if lost > maxLost || sent < 10 {
			t.Errorf("pings through the migration: %d sent, %d lost (at most %d may be lost)", sent, lost, maxLost)
		}
		checkNoRenewal(t, v.guest)
		checkGuest(t, v, kubeOVN, 2)
	}
	if target != kubeOVN {
		converged, held := waitRenumbered(t, v.guest, target, refreshed)
		tap.end()
		lines := tap.read(t, "-n", "-e")
		quietTap(t, lines, kubeOVN.PodMAC)
		v.stop(t)
		checkLeak(t, src.leak, tr.leak)
		checkLeak(t, dstLeak, tr.leak)
		if !converged {
			t.Errorf("the guest did not move to the target's addresses (%s, %s) within %v of link-refresh: it holds %s; "+
				"router discovery on the target's tap:\n%s", target.IPv4, target.IPv6, renumberBound, held,
				strings.Join(slices.DeleteFunc(lines, func(l string) bool { return !strings.Contains(l, "router") }), "\n"))
		}
		return
	}
	tap.end()
	quietTap(t, tap.read(t, "-n", "-e"), kubeOVN.PodMAC)
	v.stop(t)
	checkLeak(t, src.leak, tr.leak)
	checkLeak(t, dstLeak, tr.leak)
}

// maxLost bounds the pings lost while the VM moves and its link flaps:
// 2 × 5 pings a second, 3 s.
const maxLost = 30

// migrate live-migrates the domain from one pod's libvirt to the other's,
// QEMU's stream over a unix socket in a directory both QEMUs reach.
func migrate(t *testing.T, from, to *pod) {
	t.Helper()
	dir, err := os.MkdirTemp("", "dsbm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	uid := 107
	if to.tier.root {
		uid = 0
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
	mode := "session"
	if to.tier.root {
		mode = "system"
	}
	start := time.Now()
	from.launcher.call(launcherRequest{Op: "migrate", DestURI: fmt.Sprintf("qemu+unix:///%s?socket=%s", mode, to.libvirtSock()),
		MigrateURI: "unix://" + filepath.Join(dir, "migration.sock")})
	t.Logf("migration took %v", time.Since(start).Round(time.Millisecond))
}

// startPings runs a ping to each off-link target in the guest, five a
// second, until stopPings.
func startPings(g *console) {
	g.run(fmt.Sprintf("ping -i 0.2 %s >/run/ping4.log 2>&1 & echo $! >/run/ping4.pid; ping -i 0.2 %s >/run/ping6.log 2>&1 & echo $! >/run/ping6.pid",
		offLink4, offLink6))
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) packets received`)

// stopPings interrupts the pings and returns how many were sent and lost,
// both targets together.
func stopPings(t *testing.T, g *console) (sent, lost int) {
	t.Helper()
	g.run("kill -INT $(cat /run/ping4.pid) $(cat /run/ping6.pid); sleep 1")
	for _, log := range []string{"/run/ping4.log", "/run/ping6.log"} {
		out := g.run("cat " + log)
		m := pingSummary.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no ping summary in %s:\n%s", log, out)
		}
		var tx, rx int
		fmt.Sscan(m[1], &tx)
		fmt.Sscan(m[2], &rx)
		sent += tx
		lost += tx - rx
	}
	return sent, lost
}

// checkNoRenewal: with unchanged addresses nothing made the guest's DHCP
// clients start over (no NAK, one lease each).
func checkNoRenewal(t *testing.T, g *console) {
	t.Helper()
	for _, log := range []string{"/run/udhcpc.log", "/run/udhcpc6.log"} {
		out := g.run("cat " + log)
		if strings.Contains(strings.ToLower(out), "nak") || strings.Count(out, "obtained") != 1 {
			t.Errorf("%s after the migration:\n%s", log, out)
		}
	}
}

// observeRenumbering is how long the changed-addresses row watches the
// guest when it does not converge within the bound: long enough to say
// more than "not within 10 s".
const observeRenumbering = 45 * time.Second

// waitRenumbered watches the guest until it holds exactly the target's
// addresses and default routes (and reports whether that was within the
// bound), or observeRenumbering passed; held is the guest's global
// addresses at the end.
func waitRenumbered(t *testing.T, g *console, s subnet, since time.Time) (converged bool, held string) {
	t.Helper()
	want := []string{s.IPv4, addrOnly(s.IPv6) + "/128"}
	slices.Sort(want)
	for {
		held = fields(g.run("ip -o addr show dev eth0 scope global"), 3)
		got := strings.Fields(held)
		if slices.Equal(got, want) && strings.Contains(g.run("ip -4 route show default"), "via "+s.Gateway4) &&
			strings.Contains(g.run("ip -6 route show default"), "via "+linkLocal(s.GatewayMAC)) {
			took := time.Since(since)
			t.Logf("renumbered %v after link-refresh", took.Round(100*time.Millisecond))
			return took <= renumberBound, held
		}
		if time.Since(since) > observeRenumbering {
			t.Logf("guest %v after link-refresh:\n%s", observeRenumbering, g.run("ip addr show dev eth0; ip route; ip -6 route"))
			return false, held
		}
		time.Sleep(time.Second)
	}
}

// quietTap checks a capture on the target's tap (tcpdump -n -e lines): before
// the guest's first frame (source vmMAC) there is no DHCPv4 or DHCPv6 reply
// and no RA, and nothing from the MAC that sent DHCPv4 replies later but
// the MLD reports of the pod's own stack: in the unprivileged tier that MAC
// is the bridge's, whose kernel reports its own groups when the tap comes
// up (seen once, at QEMU's start), and dsbridge never sends MLD reports.
func quietTap(t *testing.T, lines []string, vmMAC string) {
	t.Helper()
	first := slices.IndexFunc(lines, func(l string) bool { return srcMAC(l) == vmMAC })
	if first < 0 {
		t.Fatalf("the target's tap never saw the guest (%s):\n%s", vmMAC, strings.Join(lines, "\n"))
	}
	service := map[string]bool{}
	for _, l := range lines[first:] {
		if strings.Contains(l, ".67 > ") {
			service[srcMAC(l)] = true
		}
	}
	for _, l := range lines[:first] {
		if strings.Contains(l, ".67 > ") || strings.Contains(l, ".547 > ") ||
			strings.Contains(l, "router advertisement") ||
			service[srcMAC(l)] && !strings.Contains(l, "multicast listener report") {
			t.Errorf("the target sent before the guest spoke: %s", l)
		}
	}
	t.Logf("target tap: %d frames before the guest's first of %d", first, len(lines))
}

// srcMAC is the source MAC of a `tcpdump -e` line ("time src > dst, ...").
func srcMAC(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return ""
	}
	return f[1]
}
