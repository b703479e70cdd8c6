package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// vmiIdentity is what the sidecar passes as the identity on both pods of a
// migration: the VMI UID and the network name.
const vmiIdentity = "4f0c2b9e-7d1a-4c3e-9b8f-2a6d5e1c0f37/default"

// TestMigration: a VM live-migrated to a target pod with the same addresses
// (Kube-OVN), followed by KubeVirt's link-refresh (the guest's link down
// for 100 ms, or the 6 s NetworkManager needs to notice), keeps both
// addresses and both default routes; the target dsbridge, run with the same
// identity, sent nothing before the guest spoke; and it answers the guest's
// INIT-REBOOT, Confirm and RS with the server identities and RA of the
// source.
func TestMigration(t *testing.T) {
	for _, down := range []time.Duration{100 * time.Millisecond, 6 * time.Second} {
		t.Run(fmt.Sprintf("link-down-%v", down), func(t *testing.T) {
			if testing.Short() && down > time.Second {
				t.Skip("a 6 s link flap in -short mode")
			}
			testMigration(t, down)
		})
	}
}

func testMigration(t *testing.T, down time.Duration) {
	m := lab.NewMigration(t, lab.KubeOVN)
	l := m.Lab
	leakSrc := lab.StartCapture(t, l.Node, l.NodeIf, lab.LeakFilter)
	src := serve(t, l, "", "--identity", vmiIdentity)
	c4, env4 := startDhclient(t, l, "-4", "", "BOUND")
	c6, env6 := startDhclient(t, l, "-6", "", "BOUND6")
	waitConfigured(t, l)
	pingAll(t, l, 3, lab.OffLink4, lab.OffLink6)
	ra := rdisc6(t, l)

	// The target pod appears; its dsbridge plumbs it and waits.
	m.StartTarget(t, l.Spec)
	leakDst := lab.StartCapture(t, l.Node, m.TargetUplink, lab.LeakFilter)
	tap := lab.StartCapture(t, m.Target, l.Tap, "")
	dst := serve(t, m.TargetLab(), "", "--identity", vmiIdentity)
	time.Sleep(time.Second) // a target that speaks first does it now
	beforeGuest := dst.out.String()

	m.SwitchOver(t)
	src.stop()
	waitGone(t, src.cmd.Process.Pid)
	m.LinkRefresh(t, down)
	configuredNow(t, l)
	pingAll(t, l, 3, gatewayPings(l.Spec)...)

	_, r4 := restartDhclient(t, l, c4, "-4")
	r6, _ := restartDhclient(t, l, c6, "-6")
	sameAnswers(t, env4, r4)
	sameDHCPv6Server(t, l, c6, r6, env6)
	if diff := cmp.Diff(ra, rdisc6(t, l)); diff != "" {
		t.Errorf("RA from the target differs (-source +target):\n%s", diff)
	}
	configuredNow(t, l)

	quietLog(t, beforeGuest, dst.out.String())
	tap.Stop(t)
	quietTap(t, tap.Read(t, "-n", "-e"), l.Spec.MAC)
	for _, c := range []*lab.Capture{leakSrc, leakDst} {
		if pkts := c.Stop(t); len(pkts) > 0 {
			t.Errorf("uplink capture holds %d packets dsbridge must never send there:\n%s", len(pkts), strings.Join(pkts, "\n"))
		}
	}
}

// configuredNow checks the guest holds, at this moment, the standard
// addresses and both default routes.
func configuredNow(t *testing.T, l *lab.Lab) {
	t.Helper()
	want := []string{"10.16.0.5/16", "fd00:10:16::5/128"}
	if got := slices.Sorted(slices.Values(lab.Addrs(t, l.Guest, l.GuestIf))); !slices.Equal(got, want) {
		t.Errorf("guest addresses = %v, want %v", got, want)
	}
	for family, gw := range map[string]string{"-4": "10.16.0.1", "-6": l.GatewayLLA()} {
		if got := lab.DefaultVia(t, l.Guest, family); got != gw {
			t.Errorf("guest default route %s via %q, want %q", family, got, gw)
		}
	}
}

// Log lines of a frame dsbridge sent, or of it noticing the guest.
var speaking = []string{`"msg":"replied"`, `"msg":"sent router advertisement"`, `"msg":"guest spoke`}

// quietLog checks the target's debug log had no line of a frame sent
// before the guest spoke (before), and has them once it did (after), so the
// check can fail.
func quietLog(t *testing.T, before, after string) {
	t.Helper()
	for _, s := range speaking {
		if strings.Contains(before, s) {
			t.Errorf("target dsbridge logged %s before the guest spoke:\n%s", s, before)
		}
	}
	if !strings.Contains(after, `"msg":"guest spoke`) || !hasLine(after, `"msg":"replied"`, `"server":"DHCPv4"`) {
		t.Errorf("target dsbridge never logged the guest or a DHCPv4 reply:\n%s", after)
	}
}

// quietTap checks a capture on the target's tap (`tcpdump -n -e` lines):
// before the guest's first frame (source vmMAC), no frame dsbridge would
// send: no DHCPv4 or DHCPv6 reply, no RA, nothing from the service MAC
// (learnt from the DHCPv4 replies after the guest spoke).
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
	if len(service) == 0 {
		t.Errorf("no DHCPv4 reply on the target's tap after the guest spoke:\n%s", strings.Join(lines, "\n"))
	}
	for _, l := range lines[:first] {
		if strings.Contains(l, ".67 > ") || strings.Contains(l, ".547 > ") ||
			strings.Contains(l, "router advertisement") || service[srcMAC(l)] {
			t.Errorf("the target sent before the guest spoke: %s", l)
		}
	}
	t.Logf("target tap: %d frames (none from dsbridge) before the guest's first of %d:\n%s", first, len(lines), strings.Join(lines[:first], "\n"))
}

// srcMAC is the source MAC of a `tcpdump -e` line ("time src > dst, ...").
func srcMAC(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

// TestMigrationKeepsAddresses: every stack of the migration matrix,
// live-migrated to a target with the same addresses (Kube-OVN), with
// KubeVirt's 100 ms link flap and without any, is never told anything of
// renumbering: the target NAKs nothing, sees no address it does not serve
// and logs no renumbering, though each client renewed there (its replies
// are counted); the guest's addresses and default routes never change,
// sampled every 20 ms until then; and pings beyond both gateways every
// 200 ms lose at most one at the switch-over, and with the flap no more
// than the flap costs (lostAllowed). A client that deconfigures on carrier loss (dhcpcd)
// drops its addresses at the flap and takes the same ones back: never
// another address, and the pings lost are those of its reconfiguration.
func TestMigrationKeepsAddresses(t *testing.T) {
	if testing.Short() {
		t.Skip("each row waits for the clients' renewals at the target (up to 35 s)")
	}
	t.Parallel()
	for _, s := range renumberStacks {
		for _, flap := range []time.Duration{flapKubeVirt, 0} {
			t.Run(fmt.Sprintf("%s/flap-%v", s.name, flap), func(t *testing.T) {
				t.Parallel()
				keepRun(t, s, flap)
			})
		}
	}
}

// renewedBy is how long after the switch-over every client of s has
// renewed at the target at the latest (rows' timers), plus a margin.
func (s renumberStack) renewedBy() time.Duration {
	if s.name == "udhcpc" {
		return testLeaseBusybox/2 + 3*time.Second
	}
	return testRenew + 3*time.Second
}

func keepRun(t *testing.T, s renumberStack, flap time.Duration) {
	m := lab.NewMigration(t, lab.KubeOVN)
	l := m.Lab
	src := packetTier(t, l, l.Spec.MAC, s.timers)
	w := watchNet(t, l)
	s.start(t, l)
	want := s.want(l, nil, false)
	waitNet(t, w, s, want, 30*time.Second)
	m.StartTarget(t, l.Spec)
	dst := packetTier(t, m.TargetLab(), l.Spec.MAC, s.timers)
	window := s.renewedBy()
	pings := startPingCounts(t, l, s, window+2*time.Second)
	t0 := time.Now()
	m.SwitchOver(t)
	if flap > 0 {
		m.LinkRefresh(t, flap)
	}
	src.stop()
	changes, foreign := watchSteady(t, w, s, want, t0, window)
	reconfigures := flap > 0 && s.dropsOnCarrierLoss
	for _, p := range pings {
		p.check(t, lostAllowed(flap, reconfigures))
	}
	if len(changes) > 0 && (!reconfigures || foreign) {
		t.Errorf("the guest's addresses or routes changed after the switch-over (want none, or for %s dropped and the same ones back):\n%s",
			s.name, strings.Join(changes, "\n"))
	}
	if v := s.view(mustRead(t, w)); !cmp.Equal(v, want, cmpopts.EquateEmpty()) {
		t.Errorf("guest at the end (-want +got):\n%s", cmp.Diff(want, v, cmpopts.EquateEmpty()))
	}
	t.Logf("changes after the switch-over:\n%s", strings.Join(changes, "\n"))
	quietTarget(t, s, dst)
}

// watchSteady samples the guest every 20 ms from t0 for d and returns
// every change of its view, with its time, and whether any view held an
// address or route that want lacks.
func watchSteady(t *testing.T, w *netWatch, s renumberStack, want guestNet, t0 time.Time, d time.Duration) (changes []string, foreign bool) {
	t.Helper()
	last := want
	for time.Since(t0) < d {
		v := s.view(mustRead(t, w))
		if !cmp.Equal(v, last, cmpopts.EquateEmpty()) {
			changes = append(changes, fmt.Sprintf("%7.3fs %v", time.Since(t0).Seconds(), v))
			foreign = foreign || !within(v, want)
		}
		last = v
		time.Sleep(20 * time.Millisecond)
	}
	return changes, foreign
}

// within reports whether every address and route of v is also in want.
func within(v, want guestNet) bool {
	sub := func(a, b []string) bool {
		return !slices.ContainsFunc(a, func(x string) bool { return !slices.Contains(b, x) })
	}
	return sub(v.Addrs4, want.Addrs4) && sub(v.Addrs6, want.Addrs6) && sub(v.Via4, want.Via4) && sub(v.Via6, want.Via6) &&
		sub(v.Routers4, want.Routers4) && sub(v.OnLink6, want.OnLink6)
}

// quietTarget checks the target's status and log: no NAK, every address
// seen served, no renumbering line, and a reply to each client's renewal.
func quietTarget(t *testing.T, s renumberStack, dst *server) {
	t.Helper()
	doc := fetchStatus(t, filepath.Join(dst.stateDir, "status.sock"))
	in := doc.Interfaces[0]
	for _, o := range in.Observed {
		if !o.Served {
			t.Errorf("target status: the guest was seen using %s, which it does not serve", o.Address)
		}
	}
	replies := map[string]uint64{}
	for _, svc := range in.Services {
		for _, r := range svc.Replies {
			replies[svc.Protocol+" "+r.Type] += r.Count
		}
	}
	if n := replies["dhcpv4 NAK"]; n != 0 {
		t.Errorf("target sent %d DHCPv4 NAKs, want 0", n)
	}
	if s.dhcp4 && replies["dhcpv4 ACK"] == 0 {
		t.Errorf("target ACKed no DHCPv4 request: the client did not renew there (replies %v)", replies)
	}
	if s.dhcp6 && replies["dhcpv6 REPLY"] == 0 {
		t.Errorf("target sent no DHCPv6 Reply: the client did not renew there (replies %v)", replies)
	}
	log := dst.out.String()
	for _, bad := range []string{"renumbering", "guest renumbered", `"reply":"NAK"`} {
		if strings.Contains(log, bad) {
			t.Errorf("target logged %q for a guest with the right addresses", bad)
		}
	}
}

// pingCount is a ping run in the background from the guest.
type pingCount struct {
	dst string
	cmd *exec.Cmd
	out *lab.Buffer
}

// startPingCounts pings, every 200 ms for d, an address beyond each
// gateway the stack reaches (the IPv6 gateway's link-local address when it
// leases no IPv6 address).
func startPingCounts(t *testing.T, l *lab.Lab, s renumberStack, d time.Duration) []*pingCount {
	t.Helper()
	dsts := []string{lab.OffLink6}
	if !s.dhcp6 {
		dsts = []string{l.GatewayLLA() + "%" + l.GuestIf}
	}
	if s.dhcp4 {
		dsts = append(dsts, lab.OffLink4)
	}
	var out []*pingCount
	for _, dst := range dsts {
		p := &pingCount{dst: dst, out: &lab.Buffer{}}
		p.cmd = exec.Command("ip", "netns", "exec", l.Guest.Name, "ping", "-n", "-i", "0.2", "-w", fmt.Sprint(int(d.Seconds())), dst)
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
		out = append(out, p)
	}
	return out
}

// dhcpcdReconfigure is how long dhcpcd takes at most to configure the
// same addresses again after a carrier loss: IPv6 in about a second, IPv4
// after its ARP probe (RFC 5227, about 5 s here).
const dhcpcdReconfigure = 8 * time.Second

// lostAllowed is how many pings, 200 ms apart, a migration with a link
// flap of down may cost: one at the switch-over (the lab rewires the
// guest's NIC from one tap to the other with two commands, as a VM pauses
// for the last copy), those sent while the link was down and one more in
// flight; for a client that reconfigures on carrier loss, also those of
// its reconfiguration.
func lostAllowed(down time.Duration, reconfigures bool) int {
	if down == 0 {
		return 1
	}
	if reconfigures {
		down += dhcpcdReconfigure
	}
	return int(down/(200*time.Millisecond)) + 2
}

// check waits for the ping to end and checks it lost at most allowed.
func (p *pingCount) check(t *testing.T, allowed int) {
	t.Helper()
	_ = p.cmd.Wait() // ping exits 1 when any echo went unanswered; the counts say how many
	var sent, got int
	for line := range strings.Lines(p.out.String()) {
		if strings.Contains(line, "packets transmitted") {
			fmt.Sscanf(line, "%d packets transmitted, %d received", &sent, &got)
		}
	}
	t.Logf("ping %s: %d sent, %d answered", p.dst, sent, got)
	if sent == 0 || sent-got > allowed {
		t.Errorf("ping %s across the migration: %d sent, %d answered; at most %d may be lost:\n%s",
			p.dst, sent, got, allowed, p.out.String())
	}
}
