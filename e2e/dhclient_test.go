package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// TestDhclientDualStack: ISC dhclient -4 and -6 with the guest kernel's RA
// handling get the pod's exact addresses, both default routes, MTU, DNS,
// search domains and hostname; the gateways and the addresses beyond them
// answer; nothing dsbridge sends appears on the uplink.
func TestDhclientDualStack(t *testing.T) {
	l := lab.NewLab(t, lab.KubeOVN)
	leak := lab.StartCapture(t, l.Node, l.NodeIf, lab.LeakFilter)
	serve(t, l, "")
	c4 := l.Dhclient(t, "-4", "")
	env4 := c4.Env(t, 15*time.Second, "BOUND", "REBOOT")
	c6 := l.Dhclient(t, "-6", "")
	env6 := c6.Env(t, 15*time.Second, "BOUND6", "REBOOT6")

	waitAddrs(t, l, []string{"10.16.0.5/16", "fd00:10:16::5/128"}, 5*time.Second)
	waitDefault(t, l, "-4", "10.16.0.1", 5*time.Second)
	waitDefault(t, l, "-6", l.GatewayLLA(), 10*time.Second)
	if got := lab.MTU(t, l.Guest, l.GuestIf); got != 1400 {
		t.Errorf("guest MTU = %d, want 1400", got)
	}
	envHas(t, env4, "new_domain_name_servers", "10.96.0.10")
	envHas(t, env4, "new_domain_search", strings.Join(quoted(l.Spec.Search), " "))
	envHas(t, env4, "new_host_name", l.Hostname)
	envHas(t, env6, "new_dhcp6_name_servers", "fd00:10:96::a")
	envHas(t, env6, "new_dhcp6_domain_search", strings.Join(quoted(l.Spec.Search), " "))
	pingAll(t, l, 3, gatewayPings(l.Spec)...)
	if pkts := leak.Stop(t); len(pkts) > 0 {
		t.Errorf("uplink capture holds %d packets dsbridge must never send there:\n%s", len(pkts), strings.Join(pkts, "\n"))
	}
}

// quoted is how dhclient reports domain lists: each name with a trailing
// dot.
func quoted(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n + "."
	}
	return out
}
