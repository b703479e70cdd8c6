package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/e2e/lab/managedtap"
)

// TestNSForTentativeGuest: a guest solicits DHCPv6 from its link-local
// address while that is still tentative (here dhclient -6 with
// net.ipv6.ip_nonlocal_bind=1, which lets it bind the tentative address;
// busybox udhcpc6 does the same with its packet socket). The pod's kernel
// must resolve the address before the stand-in's Advertise can leave.
// Without the uplink programs nothing answers until the guest's DAD ends;
// with them the egress program answers the pod's NS at once (well under
// 10 ms) with the VM's NA and the Advertise leaves. It logs both timings
// and the time to dhclient's BOUND6 (a Linux guest drops packets to its
// tentative address, RFC 4862 §5.4, so the early Advertise helps only a
// client that reads its own packet socket).
func TestNSForTentativeGuest(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the guest's DAD")
	}
	for _, programs := range []bool{false, true} {
		t.Run(map[bool]string{false: "without the programs", true: "with the programs"}[programs], func(t *testing.T) {
			l := lab.NewLab(t, lab.KubeOVN)
			if programs {
				unprivilegedPod(t, l)
			} else {
				plainManagedTap(t, l)
			}
			vmLLA := strings.Split(l.GatewayLLA(), "::")[0] + "::858:aff:fe10:5"
			l.Guest.Run(t, "sysctl", "-qw", "net.ipv6.conf."+l.GuestIf+".accept_dad=1",
				"net.ipv6.conf."+l.GuestIf+".dad_transmits=2", "net.ipv6.ip_nonlocal_bind=1")
			startStandIn(t, l, "v6 k6t-eth0")
			c := lab.StartCapture(t, l.Pod, "k6t-eth0", "icmp6 or udp port 547")
			up := time.Now()
			client := l.Dhclient(t, "-6", "")
			client.Env(t, 20*time.Second, "BOUND6")
			bound := time.Since(up)
			time.Sleep(1200 * time.Millisecond)
			c.Stop(t)
			ev := events(c.Read(t, "-tt", "-n"), vmLLA)
			solAdv, nsNA := ev["advertise"]-ev["solicit"], ev["na"]-ev["ns"]
			t.Logf("MEASURE tentative guest, programs %t: Solicit->Advertise %.1f ms, pod NS->NA %.3f ms, guest DAD ended %.0f ms after the Solicit, link up->BOUND6 %.2f s",
				programs, solAdv*1e3, nsNA*1e3, (ev["dad"]-ev["solicit"])*1e3, bound.Seconds())
			if ev["dad"] <= ev["solicit"] {
				t.Errorf("the guest's DAD ended before it solicited: not a tentative guest (events %v)", ev)
			}
			if programs && (nsNA <= 0 || nsNA > 0.010) {
				t.Errorf("the pod's NS for %s was answered in %.3f ms, want under 10 ms (events %v)", vmLLA, nsNA*1e3, ev)
			}
			if !programs && solAdv < 0.5 {
				t.Errorf("without the programs the Advertise left %.1f ms after the Solicit, want the guest's DAD (over 500 ms)", solAdv*1e3)
			}
		})
	}
}

// plainManagedTap is unprivilegedPod without the binding CNI: only the
// port sysctl the stand-in needs.
func plainManagedTap(t *testing.T, l *lab.Lab) {
	t.Helper()
	l.Pod.Run(t, "sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=0")
	managedtap.Build(t, l)
}

// events reads, from tcpdump -tt -n lines on the bridge, when the first
// Solicit, the pod's first NS for vmLLA, the first NA for it and the first
// Advertise passed, and when the guest's last DAD probe went plus the
// RetransTimer (1 s, RFC 4861 §10): its DAD's end. Seconds since the epoch.
func events(lines []string, vmLLA string) map[string]float64 {
	ev := map[string]float64{}
	first := func(k string, ts float64) {
		if _, ok := ev[k]; !ok {
			ev[k] = ts
		}
	}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		ts, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(l, "dhcp6 solicit"):
			first("solicit", ts)
		case strings.Contains(l, "dhcp6 advertise"):
			first("advertise", ts)
		case strings.Contains(l, "IP6 :: >") && strings.Contains(l, "who has "+vmLLA):
			ev["dad"] = ts + 1
		case strings.Contains(l, "neighbor solicitation, who has "+vmLLA):
			first("ns", ts)
		case strings.Contains(l, "neighbor advertisement, tgt is "+vmLLA):
			first("na", ts)
		}
	}
	return ev
}
