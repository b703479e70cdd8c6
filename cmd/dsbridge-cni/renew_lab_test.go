package main

import (
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// TestRenewals: real clients renew (unicast from 10.16.0.5 to the server
// identifier, resolved through the egress program's ARP answer) and rebind
// (broadcast from 10.16.0.5) a 20 s (60 s) lease with the uid-107 stand-in behind
// the CNI's uplink programs; each request reaches the socket, and each
// client takes the answer: dhclient and udhcpc the ACK the stand-in
// broadcasts to 255.255.255.255:68, dhcpcd 9.4.1 (which, renewing, listens
// only on its own address) the unicast copy to 10.16.0.5 that the egress
// program makes of it on the VM's port. (dhclient 4.4.3-P1's script
// reports a lease extended by Rebind as RENEW.)
func TestRenewals(t *testing.T) {
	if testing.Short() {
		t.Skip("real clients renew a 20 s lease")
	}
	type client struct {
		name  string
		start func(*lab.Lab) *lab.Client
		bound string // the script's reason once bound
		// The script's reason once the lease is extended with the Renew
		// answered, and with the Renew unanswered (by Rebind).
		renewed, rebound string
	}
	clients := []client{
		{"dhclient", func(l *lab.Lab) *lab.Client { return l.Dhclient(t, "-4", "") }, "BOUND", "RENEW", "RENEW"},
		{"dhcpcd", func(l *lab.Lab) *lab.Client { return l.Dhcpcd(t, "-4") }, "BOUND", "RENEW", "REBIND"},
		{"udhcpc", func(l *lab.Lab) *lab.Client { return l.Udhcpc(t) }, "bound", "renew", "renew"},
	}
	for _, c := range clients {
		for _, answered := range []bool{true, false} {
			name := c.name + map[bool]string{true: " renews", false: " rebinds"}[answered]
			t.Run(name, func(t *testing.T) {
				l := lab.NewLab(t, lab.KubeOVN)
				unprivilegedPod(t, l)
				spec := "v4 k6t-eth0 20 yes"
				if !answered {
					spec = "v4 k6t-eth0 60 no" // T1 15 s, T2 30 s
				}
				v4 := startStandIn(t, l, spec)
				cl := c.start(l)
				cl.Env(t, 20*time.Second, c.bound)
				want, wait := c.rebound, 55*time.Second
				if answered {
					want, wait = c.renewed, 40*time.Second
				}
				// Rebinding, a client broadcasts at its first
				// retransmission after T2 (30 s): ISC dhclient backs off
				// at random up to 21 s between retransmissions (15 s
				// cutoff), so that may come 51 s after BOUND (CI once saw
				// none within 40 s), still before the 60 s lease ends.
				cl.Env(t, wait, want)
				// The Renew reached the socket either way; unanswered, so
				// did the Rebind.
				for to, must := range map[string]bool{"to=169.254.75.10": true, "to=255.255.255.255": !answered} {
					if must && len(v4.matching("v4 REQUEST from=10.16.0.5:68", to, "ciaddr=10.16.0.5")) == 0 {
						t.Errorf("no REQUEST from 10.16.0.5 %s reached the socket", to)
					}
				}
				if answered && len(v4.matching("v4 sent ACK")) < 2 {
					t.Errorf("the stand-in did not answer the Renew")
				}
			})
		}
	}
}

// TestRenewNeedsTheSysctls: in a pod whose reverse-path filter is loose
// (rp_filter=2, as systemd sets it on many hosts and a new namespace
// inherits it), the Renew from the VM's address reaches the socket after
// ADD; once accept_local is back to 0, the next Renew from that address,
// local to the pod, is dropped as a martian and never arrives.
func TestRenewNeedsTheSysctls(t *testing.T) {
	if testing.Short() {
		t.Skip("a real client renews a 20 s lease twice")
	}
	l := lab.NewLab(t, lab.KubeOVN)
	l.Pod.Run(t, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2", "net.ipv4.conf.default.rp_filter=2")
	unprivilegedPod(t, l)
	if got := l.Pod.Run(t, "sysctl", "-n", "net.ipv4.conf.k6t-eth0.rp_filter", "net.ipv4.conf.all.accept_local"); got != "0\n1\n" {
		t.Fatalf("bridge rp_filter, all.accept_local = %q, want 0 and 1", got)
	}
	v4 := startStandIn(t, l, "v4 k6t-eth0 20 yes")
	cl := l.Dhclient(t, "-4", "")
	cl.Env(t, 20*time.Second, "BOUND")
	cl.Next(t, 25*time.Second, "RENEW")
	renews := len(v4.matching("v4 REQUEST from=10.16.0.5:68"))
	if renews == 0 {
		t.Fatal("no Renew from 10.16.0.5 reached the socket")
	}
	l.Pod.Run(t, "sysctl", "-qw", "net.ipv4.conf.all.accept_local=0")
	time.Sleep(12 * time.Second) // past the next T1 (10 s after the ACK)
	if got := len(v4.matching("v4 REQUEST from=10.16.0.5:68")); got != renews {
		t.Errorf("%d Renews from 10.16.0.5 reached the socket without accept_local, want none after the first %d", got-renews, renews)
	}
}
