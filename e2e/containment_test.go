package e2e

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/e2e/lab"
)

// TestContainment: dsbridge answers the VM behind its tap and nobody else.
// A stranger on the uplink side (a macvlan on the node's end of the pod's
// veth, in a namespace of its own) runs dhclient -4, dhclient -6 and the
// kernel's router solicitation for the whole time the real guest is being
// served; its requests reach the pod (a capture on the node sees them leave),
// yet it gets no lease, no address, no route and no RA, and a capture on the
// node's side of the uplink holds no DHCPv4 reply, DHCPv6 reply or RA. Rows:
// a stranger with a MAC of its own, and one spoofing the VM's MAC.
func TestContainment(t *testing.T) {
	tests := []struct {
		name string
		mac  string
		// ping: the real guest's pings must be answered. Not with the VM's
		// MAC on both sides of the pod's bridge: the node's replies then go
		// wherever the bridge last learned that MAC.
		ping bool
	}{
		{name: "other MAC", mac: "0a:58:0a:10:00:99", ping: true},
		{name: "the VM's MAC", mac: lab.KubeOVN.MAC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := lab.NewLab(t, lab.KubeOVN)
			leak := lab.StartCapture(t, l.Node, l.NodeIf, lab.LeakFilter)
			s := newStranger(t, l, tt.mac)
			// The stranger's frames leave through the node's end of the veth
			// (outbound there); the guest's arrive (inbound).
			asked := lab.StartCapture(t, l.Node, l.NodeIf, "outbound and ether src "+tt.mac+
				" and ((udp dst port 67) or (udp dst port 547) or (icmp6 and ip6[40] == 133))")
			serve(t, l, "")
			start := time.Now()
			s4 := s.Dhclient(t, "-4", "")
			s6 := s.Dhclient(t, "-6", "")

			l.Dhclient(t, "-4", "").Env(t, 15*time.Second, "BOUND", "REBOOT")
			l.Dhclient(t, "-6", "").Env(t, 15*time.Second, "BOUND6", "REBOOT6")
			waitAddrs(t, l, []string{"10.16.0.5/16", "fd00:10:16::5/128"}, 5*time.Second)
			waitDefault(t, l, "-6", l.GatewayLLA(), 10*time.Second)
			if tt.ping {
				pingAll(t, l, 3, gatewayPings(l.Spec)...)
				// The stranger shares the guest's link: whatever dsbridge put
				// on the pod's bridge would reach it.
				lla := frame.LinkLocalFromMAC(l.VMMAC()).String() + "%" + s.GuestIf
				if out, err := s.Guest.Exec("ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", lla); err != nil {
					t.Errorf("stranger cannot reach the guest at %s: %v\n%s", lla, err, out)
				}
			}
			// Give the stranger's clients a few retransmissions.
			time.Sleep(time.Until(start.Add(8 * time.Second)))
			out, err := s.Guest.Exec("rdisc6", "-1", "-n", "-r", "2", "-w", "1000", s.GuestIf)
			if err == nil || !strings.Contains(out, "No response") {
				t.Errorf("stranger's rdisc6 got an answer (err %v):\n%s", err, out)
			}

			if got := recordedReasons(t, s4, s6); !slices.Equal(got, []string{"PREINIT", "PREINIT6"}) {
				t.Errorf("stranger's dhclients recorded %v, want only [PREINIT PREINIT6]: it got an answer", got)
			}
			if addrs := lab.Addrs(t, s.Guest, s.GuestIf); len(addrs) > 0 {
				t.Errorf("stranger has global addresses %v, want none", addrs)
			}
			for _, f := range []string{"-4", "-6"} {
				if gw := lab.DefaultVia(t, s.Guest, f); gw != "" {
					t.Errorf("stranger has a default route %s via %s, want none", f, gw)
				}
			}
			checkAsked(t, asked.Stop(t))
			checkNoLeak(t, leak)
		})
	}
}

// newStranger is a client on the uplink side of the pod: a macvlan (bridge
// mode) on the node's end of the pod's veth, with its own MAC, moved into
// a namespace of its own as eth0 and set up like the lab's guest.
func newStranger(t *testing.T, l *lab.Lab, mac string) *lab.Lab {
	t.Helper()
	ns := lab.NewNS(t)
	tmp := lab.RandName("mv")
	l.Node.Run(t, "ip", "link", "add", tmp, "link", l.NodeIf, "address", mac, "type", "macvlan", "mode", "bridge")
	l.Node.Run(t, "ip", "link", "set", tmp, "netns", ns.Name)
	ns.Run(t, "ip", "link", "set", tmp, "name", "eth0")
	ns.Run(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=0", "net.ipv6.conf.eth0.accept_ra=1",
		"net.ipv6.conf.eth0.accept_dad=0", "net.ipv6.conf.eth0.autoconf=1")
	spec := l.Spec
	spec.Name, spec.MAC = "stranger", mac
	return &lab.Lab{Spec: spec, Guest: ns, GuestIf: "eth0", Hostname: "stranger"}
}

// recordedReasons lists the script reasons the clients recorded, sorted.
func recordedReasons(t *testing.T, cs ...*lab.Client) []string {
	t.Helper()
	var out []string
	for _, c := range cs {
		entries, err := os.ReadDir(c.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if r, ok := strings.CutSuffix(e.Name(), ".env"); ok {
				out = append(out, r)
			}
		}
	}
	slices.Sort(out)
	return out
}

// checkAsked checks the stranger's DHCPv4 Discover, DHCPv6 Solicit and
// router solicitation all went out towards the pod: without them the
// stranger's silence would prove nothing.
func checkAsked(t *testing.T, pkts []string) {
	t.Helper()
	all := strings.Join(pkts, "\n")
	// The capture's filter admits only these three; tcpdump prints a
	// DHCPv4 packet's decoding on continuation lines, so its first line
	// shows only the ethertype.
	for _, want := range []string{"ethertype IPv4", "dhcp6 solicit", "router solicitation"} {
		if !strings.Contains(all, want) {
			t.Errorf("no %q from the stranger left the node towards the pod:\n%s", want, all)
		}
	}
}
