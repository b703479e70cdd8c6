package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// TestRenewRebind: a guest renews a short lease (T1 5 s, T2 10 s, 60 s
// lease) from the VM's own address, which the pod holds on its dummy, in
// the unprivileged tier (uid-107 sidecar on UDP sockets behind the binding
// CNI) and in the root gate tier (packet sockets). Rows:
//
//   - dhclient renews: its Renew, unicast from 10.16.0.5 to the server
//     identifier, is answered: dhclient -4 reports RENEW; dhclient -6, whose
//     Renew is multicast from its link-local address, RENEW6;
//   - dhclient rebinds: the guest's route to the server identifier is a
//     blackhole, so the Renews never leave; at T2 dhclient broadcasts the
//     Rebind from 10.16.0.5, which is answered. ISC dhclient 4.4.3's
//     DHCPv4 state machine has no REBINDING state (client/dhclient.c
//     broadcasts the DHCPREQUEST once T2 passed while staying in
//     RENEWING), so its script reports RENEW: the capture tells the Rebind;
//   - dhcpcd rebinds: the same blackhole; dhcpcd reports REBIND.
//
// A capture on the VM's port shows the requests from 10.16.0.5 (unicast to
// the server identifier when renewing; only broadcast when the route is a
// blackhole) and the server's ACKs; the sidecar logs the renewal's ACK;
// the gateway's end of the uplink sees no DHCP reply and no RA.
func TestRenewRebind(t *testing.T) {
	if testing.Short() {
		t.Skip("real clients renew a short lease")
	}
	rows := []renewRow{
		{name: "dhclient renews", client: "dhclient", reason: "RENEW"},
		{name: "dhclient rebinds", client: "dhclient", blackhole: true, reason: "RENEW"},
		{name: "dhcpcd rebinds", client: "dhcpcd", blackhole: true, reason: "REBIND"},
	}
	for _, tier := range []tierRow{unprivilegedTier(), rootGateTier()} {
		tier.args = []string{"--lease-time", "60s", "--renew-time", "5s"}
		for _, row := range rows {
			t.Run(tier.name+"/"+row.name, func(t *testing.T) {
				t.Parallel()
				row.run(t, tier)
			})
		}
	}
}

// renewRow is a client renewing, or rebinding when the guest's route to
// the server identifier is a blackhole, and the script reason that shows
// the lease extended.
type renewRow struct {
	name, client string
	blackhole    bool
	reason       string
}

func (r renewRow) run(t *testing.T, tier tierRow) {
	l := lab.NewLab(t, lab.KubeOVN)
	leak := lab.StartCapture(t, l.Node, l.NodeIf, lab.LeakFilter)
	tr := startTier(t, l, tier)
	c := lab.StartCapture(t, l.Pod, l.Tap, "(udp dst port 67 and src host 10.16.0.5) or ("+lab.DHCPReplies+")")
	var c4, c6 *lab.Client
	if r.client == "dhclient" {
		c4, c6 = l.Dhclient(t, "-4", ""), l.Dhclient(t, "-6", "")
		c6.Env(t, 15*time.Second, "BOUND6")
	} else {
		c4 = l.Dhcpcd(t, "-4")
	}
	env := c4.Env(t, 15*time.Second, "BOUND")
	if lease := env["new_dhcp_lease_time"] + "/" + env["new_dhcp_renewal_time"]; lease != "60/5" {
		t.Errorf("%s bound with lease/T1 %s, want 60/5", r.client, lease)
	}
	if r.blackhole {
		// After BOUND: the client installed option 121's on-link route to
		// the server identifier, which this replaces.
		l.Guest.Run(t, "ip", "route", "replace", "blackhole", serverID4+"/32")
	}
	// Renewing, the client sends at T1 (5 s). Rebinding, it broadcasts at
	// its first retransmission after T2 (10 s): ISC dhclient backs off at
	// random between retransmissions, up to 21 s with its 15 s cutoff
	// (CI once saw none within 20 s of BOUND), so that one may come more
	// than 30 s after BOUND, still well before the 60 s lease expires.
	wait := 20 * time.Second
	if r.blackhole {
		wait = 45 * time.Second
	}
	env = c4.Env(t, wait, r.reason)
	t.Logf("%s %s %v after BOUND", r.client, r.reason, recordedAt(t, c4, r.reason).Sub(recordedAt(t, c4, "BOUND")).Round(10*time.Millisecond))
	envHas(t, env, "new_ip_address", "10.16.0.5")
	if c6 != nil {
		envHas(t, c6.Env(t, 10*time.Second, "RENEW6"), "new_ip6_address", "fd00:10:16::5")
	}
	time.Sleep(500 * time.Millisecond)
	c.Stop(t)
	checkRenewals(t, c.Read(t, "-n"), tr, r.blackhole)
	if pkts := leak.Stop(t); len(pkts) > 0 {
		t.Errorf("the uplink capture (%s) holds:\n%s", lab.LeakFilter, strings.Join(pkts, "\n"))
	}
}

// recordedAt is when c's script recorded reason.
func recordedAt(t *testing.T, c *lab.Client, reason string) time.Time {
	t.Helper()
	fi, err := os.Stat(filepath.Join(c.Dir, reason+".env"))
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}

// checkRenewals checks the capture on the VM's port: requests from
// 10.16.0.5 went to the server identifier (renewing) or, with the route
// blackholed, only to 255.255.255.255 (rebinding); an ACK answered them
// (OFFER and ACK of the DORA and at least one more); and the sidecar
// answered at least two REQUESTs with an ACK.
func checkRenewals(t *testing.T, pkts []string, tr *tierRun, blackhole bool) {
	t.Helper()
	count := func(s string) int {
		n := 0
		for _, p := range pkts {
			if strings.Contains(p, s) {
				n++
			}
		}
		return n
	}
	unicast, broadcast := count("10.16.0.5.68 > "+serverID4+".67:"), count("10.16.0.5.68 > 255.255.255.255.67:")
	if (!blackhole && unicast == 0) || (blackhole && (unicast != 0 || broadcast == 0)) {
		t.Errorf("the VM's port saw %d requests from 10.16.0.5 to %s and %d broadcast (blackhole %t):\n%s",
			unicast, serverID4, broadcast, blackhole, strings.Join(pkts, "\n"))
	}
	if acks := count(serverID4 + ".67 > "); acks < 3 {
		t.Errorf("%d DHCPv4 replies on the VM's port, want OFFER, ACK and the renewal's ACK:\n%s", acks, strings.Join(pkts, "\n"))
	}
	answered := 0
	for line := range strings.Lines(tr.side.String()) {
		if strings.Contains(line, `"request":"REQUEST","reply":"ACK"`) {
			answered++
		}
	}
	if answered < 2 {
		t.Errorf("the sidecar logged %d REQUESTs answered with an ACK, want the DORA's and the renewal's", answered)
	}
}
