package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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
