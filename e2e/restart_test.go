package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// serverID4 is the DHCPv4 server identifier of the first VM interface
// (169.254.75.1<index>, as KubeVirt's bridge binding: link/address.go GetFakeBridgeIP).
const serverID4 = "169.254.75.10"

// TestRestartKeepsAnswers: dsbridge killed with SIGKILL once the guest holds
// both leases, and started again on the plumbed pod, reloads the pristine
// snapshot from its state directory and answers the guest's INIT-REBOOT,
// Confirm and RS with the same server identities and the same RA.
func TestRestartKeepsAnswers(t *testing.T) {
	l := lab.NewLab(t, lab.KubeOVN)
	stateDir := t.TempDir()
	s := serve(t, l, stateDir)
	c4, env4 := startDhclient(t, l, "-4", "", "BOUND")
	c6, env6 := startDhclient(t, l, "-6", "", "BOUND6")
	waitConfigured(t, l)
	ra := rdisc6(t, l)
	if !strings.Contains(ra, "from "+l.GatewayLLA()) {
		t.Fatalf("rdisc6 before the restart: no RA from the gateway %s:\n%s", l.GatewayLLA(), ra)
	}

	s.kill()
	waitGone(t, s.cmd.Process.Pid)
	configuredNow(t, l) // the guest keeps everything while no server runs
	s2 := serve(t, l, stateDir)
	for _, bad := range []string{"already plumbed", "saved snapshot ignored"} {
		if strings.Contains(s2.out.String(), bad) {
			t.Errorf("restarted dsbridge did not reuse the saved snapshot: its log says %q", bad)
		}
	}

	_, rc4 := restartDhclient(t, l, c4, "-4")
	r6, _ := restartDhclient(t, l, c6, "-6")
	sameAnswers(t, env4, rc4)
	sameDHCPv6Server(t, l, c6, r6, env6)
	if diff := cmp.Diff(ra, rdisc6(t, l)); diff != "" {
		t.Errorf("RA after the restart differs (-before +after):\n%s", diff)
	}
	waitConfigured(t, l)
	pingAll(t, l, 3, gatewayPings(l.Spec)...)
}

// startDhclient starts dhclient family with its files in dir ("" for a new
// one) and returns it with the environment of the first of reasons its
// script records.
func startDhclient(t *testing.T, l *lab.Lab, family, dir string, reasons ...string) (*lab.Client, map[string]string) {
	t.Helper()
	c := l.Dhclient(t, family, dir)
	return c, c.Env(t, 15*time.Second, reasons...)
}

// restartDhclient kills c (keeping its lease file, as a guest reboot
// would), forgets what its script recorded and starts it again on the same
// lease. The restarted client must keep its lease: dhclient -4 by
// INIT-REBOOT ACKed by the DHCPv4 server identifier (reason REBOOT),
// dhclient -6 by a Confirm answered Success (it reports that as BOUND6),
// neither falling back to a fresh exchange.
func restartDhclient(t *testing.T, l *lab.Lab, c *lab.Client, family string) (*lab.Client, map[string]string) {
	t.Helper()
	c.Kill()
	clearEnv(t, c.Dir)
	wantReason, want, fresh := "REBOOT", []string{"DHCPREQUEST for 10.16.0.5", "DHCPACK of 10.16.0.5 from " + serverID4}, "DHCPDISCOVER"
	if family == "-6" {
		wantReason, want, fresh = "BOUND6", []string{"Confirming active lease (INIT-REBOOT)", `message status code Success`}, "Soliciting for leases"
	}
	rc, env := startDhclient(t, l, family, c.Dir, "REBOOT", "BOUND", "BOUND6")
	out := rc.Output()
	if env["reason"] != wantReason || strings.Contains(out, fresh) {
		t.Errorf("restarted dhclient %s reported %q, want %q without %q: the server refused the kept lease:\n%s", family, env["reason"], wantReason, fresh, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("restarted dhclient %s did not print %q:\n%s", family, w, out)
		}
	}
	return rc, env
}

// sameAnswers checks that a restarted dhclient -4 (r4) got the address,
// gateway and server identifier of the first lease (b4).
func sameAnswers(t *testing.T, b4, r4 map[string]string) {
	t.Helper()
	for _, k := range []string{"new_ip_address", "new_subnet_mask", "new_routers", "new_dhcp_server_identifier"} {
		if r4[k] != b4[k] {
			t.Errorf("DHCPv4 %s = %q after, %q before", k, r4[k], b4[k])
		}
	}
	if b4["new_dhcp_server_identifier"] != serverID4 {
		t.Errorf("DHCPv4 server identifier = %q, want %s", b4["new_dhcp_server_identifier"], serverID4)
	}
}

// sameDHCPv6Server checks the DHCPv6 server the guest meets now is the one
// that gave the first lease (first, env): the Confirm Reply came from the
// same link-local address (derived from the service MAC), and a fresh
// client is given the same address by the same server DUID. dhclient
// reports the DUID of the lease it kept after a Confirm, so only a fresh
// exchange shows the DUID a server sends now. confirmed is stopped.
func sameDHCPv6Server(t *testing.T, l *lab.Lab, first, confirmed *lab.Client, env map[string]string) {
	t.Helper()
	if b, a := replyFrom(first.Output()), replyFrom(confirmed.Output()); a != b || b == "" {
		t.Errorf("DHCPv6 Reply came from %q after, %q before", a, b)
	}
	confirmed.Kill()
	_, fresh := startDhclient(t, l, "-6", "", "BOUND6")
	for _, k := range []string{"new_ip6_address", "new_dhcp6_server_id"} {
		if fresh[k] != env[k] || env[k] == "" {
			t.Errorf("DHCPv6 %s = %q after, %q before", k, fresh[k], env[k])
		}
	}
}

// replyFrom is the source of the last DHCPv6 Reply dhclient -6 -v printed.
func replyFrom(out string) string {
	const mark = "RCV: Reply message on "
	i := strings.LastIndex(out, mark)
	if i < 0 {
		return ""
	}
	line, _, _ := strings.Cut(out[i+len(mark):], "\n")
	_, from, _ := strings.Cut(line, " from ")
	return strings.TrimSuffix(from, ".")
}

// clearEnv removes the environments a client's script recorded.
func clearEnv(t *testing.T, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
}

// waitConfigured waits for the standard dual-stack guest: both addresses
// and both default routes.
func waitConfigured(t *testing.T, l *lab.Lab) {
	t.Helper()
	waitAddrs(t, l, []string{"10.16.0.5/16", "fd00:10:16::5/128"}, 10*time.Second)
	waitDefault(t, l, "-4", "10.16.0.1", 10*time.Second)
	waitDefault(t, l, "-6", l.GatewayLLA(), 10*time.Second)
}

// rdisc6 solicits a router from the guest and returns the first RA as
// rdisc6 prints it (flags, lifetimes, options, source), minus the
// "Soliciting" banner.
func rdisc6(t *testing.T, l *lab.Lab) string {
	t.Helper()
	out, err := l.Guest.Exec("rdisc6", "-1", "-n", "-r", "5", "-w", "1000", l.GuestIf)
	if err != nil {
		t.Fatalf("rdisc6: %v", err)
	}
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		if line != "" && !strings.HasPrefix(line, "Soliciting") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

// waitGone waits until process pid is gone (reaped).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	lab.WaitFor(t, 5*time.Second, "dsbridge to exit", func() bool {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	})
}
