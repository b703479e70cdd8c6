package e2e

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// tierGuest is a guest setup to time against each tier.
type tierGuest struct {
	name  string
	dad   bool // the guest runs DAD on its link-local address, as a VM does
	start func(t *testing.T, l *lab.Lab)
}

var tierGuests = []tierGuest{
	{"dhclient", false, func(t *testing.T, l *lab.Lab) { l.Dhclient(t, "-4", ""); l.Dhclient(t, "-6", "") }},
	{"dhclient", true, func(t *testing.T, l *lab.Lab) { l.Dhclient(t, "-4", ""); l.Dhclient6AfterDAD(t) }},
	{"dhcpcd", false, func(t *testing.T, l *lab.Lab) { l.Dhcpcd(t) }},
	{"dhcpcd", true, func(t *testing.T, l *lab.Lab) { l.Dhcpcd(t) }},
}

// TestMeasureTiers times the guest's link up to both families configured
// (address and default route in each) in the unprivileged tier (binding
// CNI, managedTap, uid-107 sidecar without capabilities: UDP sockets and
// the CNI's kernel RA) and in the root gate tier (the sidecar as root with
// NET_RAW: packet sockets), in the same lab and the same run, alternating,
// with dhclient and with dhcpcd, each with the guest's DAD off (the lab's
// default) and on (a VM's). A capture on the VM's port gives each run's
// phases from the link up: the guest's first RS and the RA, its DAD
// probe, Solicit and Advertise (or Reply), DISCOVER and OFFER. It asserts
// no timing: it prints one MEASURE line per run and per guest and tier
// (medians, all values), and the ratio of the medians. Run it with
// DSBRIDGE_MEASURE=1 (and DSBRIDGE_MEASURE_RUNS=n, default 5).
func TestMeasureTiers(t *testing.T) {
	if os.Getenv("DSBRIDGE_MEASURE") != "1" {
		t.Skip("set DSBRIDGE_MEASURE=1 to measure")
	}
	runs := 5
	if n, err := strconv.Atoi(os.Getenv("DSBRIDGE_MEASURE_RUNS")); err == nil && n > 0 {
		runs = n
	}
	tiers := []tierRow{unprivilegedTier(), rootGateTier()}
	type key struct{ guest, tier string }
	got := map[key][]tierTiming{}
	var lines []string
	for i := range runs {
		for _, g := range tierGuests {
			for _, tier := range tiers {
				k := key{g.label(), tier.name}
				t.Run(fmt.Sprintf("%s/%s/%d", k.guest, tier.name, i), func(t *testing.T) {
					tm := timeTier(t, g, tier)
					got[k] = append(got[k], tm)
					lines = append(lines, fmt.Sprintf("MEASURE tier-run guest=%s tier=%q run=%d %s", k.guest, tier.name, i, tm))
				})
			}
		}
	}
	for _, g := range tierGuests {
		var both []int64
		for _, tier := range tiers {
			ts := got[key{g.label(), tier.name}]
			lines = append(lines, summary(g.label(), strings.ReplaceAll(tier.name, " ", "-"), timings(ts)), phaseSummary(g.label(), tier.name, ts))
			both = append(both, medianDur(bothOf(ts)).Milliseconds())
		}
		if len(both) == 2 && both[1] > 0 {
			lines = append(lines, fmt.Sprintf("MEASURE tier-ratio guest=%s unprivileged_over_root_gate=%.3f (medians %d ms / %d ms)",
				g.label(), float64(both[0])/float64(both[1]), both[0], both[1]))
		}
	}
	t.Log("\n" + strings.Join(lines, "\n"))
}

func (g tierGuest) label() string {
	return g.name + map[bool]string{false: "/dad-off", true: "/dad-on"}[g.dad]
}

// tierTiming is one run: when each family was configured, and the phases
// the capture on the VM's port shows, all from the link up.
type tierTiming struct {
	timing
	phases map[string]time.Duration // first occurrence of each event
}

// The events timeTier looks for, in the order they print.
var tierEvents = []string{"dad", "rs", "ra", "solicit", "advertise", "reply6", "discover", "offer", "ack"}

func (tm tierTiming) String() string {
	s := fmt.Sprintf("both_ms=%d v4_ms=%d v6_ms=%d", tm.both.Milliseconds(), tm.v4.Milliseconds(), tm.v6.Milliseconds())
	for _, e := range tierEvents {
		if d, ok := tm.phases[e]; ok {
			s += fmt.Sprintf(" %s_ms=%d", e, d.Milliseconds())
		} else {
			s += fmt.Sprintf(" %s_ms=-", e)
		}
	}
	return s
}

func timings(ts []tierTiming) []timing {
	out := make([]timing, len(ts))
	for i, t := range ts {
		out[i] = t.timing
	}
	return out
}

func bothOf(ts []tierTiming) []time.Duration {
	var out []time.Duration
	for _, t := range ts {
		out = append(out, t.both)
	}
	slices.Sort(out)
	return out
}

// phaseSummary is the median, over the runs, of each phase's interval:
// link up to the guest's DAD probe and first RS, RS to RA, link up to the
// Solicit, Solicit to Advertise (or Reply, with Rapid Commit), link up to
// the DISCOVER, DISCOVER to OFFER; and dsbridge's whole share, from the
// guest's first Solicit (DISCOVER) to IPv6 (IPv4) configured, which
// leaves out the guests' own random delays before they ask.
func phaseSummary(guest, tier string, ts []tierTiming) string {
	interval := func(from, to string) string {
		var d []time.Duration
		for _, t := range ts {
			a, okA := t.at(from)
			b, okB := t.at(to)
			if okA && okB {
				d = append(d, b-a)
			}
		}
		if len(d) == 0 {
			return "-"
		}
		slices.Sort(d)
		return strconv.FormatInt(medianDur(d).Milliseconds(), 10)
	}
	// With Rapid Commit (dhcpcd) the Solicit is answered with a Reply.
	reply := "reply6"
	if slices.ContainsFunc(ts, func(t tierTiming) bool { _, ok := t.phases["advertise"]; return ok }) {
		reply = "advertise"
	}
	return fmt.Sprintf("MEASURE tier-phases guest=%s tier=%q median_ms: up_to_dad=%s up_to_rs=%s rs_to_ra=%s up_to_solicit=%s solicit_to_%s=%s up_to_discover=%s discover_to_offer=%s solicit_to_v6=%s discover_to_v4=%s",
		guest, tier, interval("up", "dad"), interval("up", "rs"), interval("rs", "ra"), interval("up", "solicit"), reply,
		interval("solicit", reply), interval("up", "discover"), interval("discover", "offer"),
		interval("solicit", "v6"), interval("discover", "v4"))
}

// at is when event happened from the link up: "up", a phase, or "v4" and
// "v6" (configured).
func (tm tierTiming) at(event string) (time.Duration, bool) {
	switch event {
	case "up":
		return 0, true
	case "v4":
		return tm.v4, tm.v4 > 0
	case "v6":
		return tm.v6, tm.v6 > 0
	}
	d, ok := tm.phases[event]
	return d, ok
}

// timeTier builds a fresh lab, sets the pod up as tier runs it, captures
// on the VM's port, brings the guest's link up, starts the client and
// waits for both families.
func timeTier(t *testing.T, g tierGuest, tier tierRow) tierTiming {
	l := lab.NewLab(t, lab.KubeOVN)
	tier.args = []string{"--log-level", "info"} // per-packet debug lines would measure the logger
	startTier(t, l, tier)
	if g.dad {
		l.DuplicateAddressDetection(t)
	}
	c := lab.StartCapture(t, l.Pod, l.Tap, "icmp6 or udp port 67 or udp port 68 or udp port 546 or udp port 547")
	w := watchNet(t, l)
	var tm tierTiming
	t0 := time.Now()
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "up")
	g.start(t, l)
	for deadline := t0.Add(30 * time.Second); tm.v4 == 0 || tm.v6 == 0; time.Sleep(5 * time.Millisecond) {
		v4, v6 := w.configured()
		now := time.Since(t0)
		if v4 && tm.v4 == 0 {
			tm.v4 = now
		}
		if v6 && tm.v6 == 0 {
			tm.v6 = now
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: guest not configured within 30 s (IPv4 %v, IPv6 %v)", g.label(), tm.v4, tm.v6)
		}
	}
	tm.both = max(tm.v4, tm.v6)
	c.Stop(t)
	tm.phases = phases(c.Packets(t, "-tt"), t0, l.VMMAC().String())
	return tm
}

// phases finds, in a capture on the VM's port decoded with -tt -e -v
// (Capture.Packets), the first of each event after t0: the guest's DAD
// probe for its link-local address (from ::), its RS and the RA it got,
// its Solicit and the Advertise or Reply, its DISCOVER and the OFFER and
// ACK.
func phases(pkts []string, t0 time.Time, vmMAC string) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, p := range pkts {
		f := strings.Fields(p)
		if len(f) < 2 {
			continue
		}
		sec, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		at := time.Unix(0, int64(sec*1e9)).Sub(t0)
		fromVM := f[1] == vmMAC
		for ev, match := range map[string]bool{
			"dad":       fromVM && strings.Contains(p, " :: > ") && strings.Contains(p, "neighbor solicitation"),
			"rs":        fromVM && strings.Contains(p, "router solicitation"),
			"ra":        !fromVM && strings.Contains(p, "router advertisement"),
			"solicit":   fromVM && strings.Contains(p, "dhcp6 solicit"),
			"advertise": !fromVM && strings.Contains(p, "dhcp6 advertise"),
			"reply6":    !fromVM && strings.Contains(p, "dhcp6 reply"),
			"discover":  fromVM && strings.Contains(p, "DHCP-Message (53), length 1: Discover"),
			"offer":     !fromVM && strings.Contains(p, "DHCP-Message (53), length 1: Offer"),
			"ack":       !fromVM && strings.Contains(p, "DHCP-Message (53), length 1: ACK"),
		} {
			if _, seen := out[ev]; match && !seen {
				out[ev] = at
			}
		}
	}
	return out
}

// timing is one run: when each family was configured, from the link up.
type timing struct{ v4, v6, both time.Duration }

// summary is one parsable line for a client and server.
func summary(client, server string, ts []timing) string {
	pick := func(f func(timing) time.Duration) []time.Duration {
		var out []time.Duration
		for _, t := range ts {
			out = append(out, f(t))
		}
		slices.Sort(out)
		return out
	}
	both := pick(func(t timing) time.Duration { return t.both })
	if len(both) == 0 {
		return fmt.Sprintf("MEASURE configure client=%s server=%s runs=0", client, server)
	}
	v6 := "-" // an IPv4-only client
	if ts[0].v6 > 0 {
		v6 = strconv.FormatInt(medianDur(pick(func(t timing) time.Duration { return t.v6 })).Milliseconds(), 10)
	}
	return fmt.Sprintf("MEASURE configure client=%s server=%s runs=%d median_ms=%d min_ms=%d max_ms=%d median_v4_ms=%d median_v6_ms=%s all_ms=%s",
		client, server, len(both), medianDur(both).Milliseconds(), both[0].Milliseconds(), both[len(both)-1].Milliseconds(),
		medianDur(pick(func(t timing) time.Duration { return t.v4 })).Milliseconds(), v6, msList(both))
}

// median is medianDur in whole milliseconds.
func median(d []time.Duration) int64 { return medianDur(d).Milliseconds() }
