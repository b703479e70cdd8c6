package e2e

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// perfConfig is what one `make perf` run measures, from the environment.
type perfConfig struct {
	runs      int // DSBRIDGE_PERF_RUNS: runs per median (time to address, OnDefineDomain, CPU)
	secs      int // DSBRIDGE_PERF_SECS: seconds of each CPU-per-exchange and flood run
	rate      int // DSBRIDGE_PERF_RATE: exchanges/s of the CPU-per-exchange runs
	table     string
	only      string // DSBRIDGE_PERF_ONLY: comma-separated parts to run (default all)
	busybox   string
	floodSecs int
}

func perfConfigFromEnv() perfConfig {
	num := func(key string, def int) int {
		if n, err := strconv.Atoi(os.Getenv(key)); err == nil && n > 0 {
			return n
		}
		return def
	}
	return perfConfig{runs: num("DSBRIDGE_PERF_RUNS", 5), secs: num("DSBRIDGE_PERF_SECS", 10), rate: num("DSBRIDGE_PERF_RATE", 1000),
		table: os.Getenv("DSBRIDGE_PERF_TABLE"), only: os.Getenv("DSBRIDGE_PERF_ONLY"), busybox: udhcpc6Busybox(),
		floodSecs: num("DSBRIDGE_PERF_FLOOD_SECS", 10)}
}

// wants reports whether part is to run.
func (c perfConfig) wants(part string) bool {
	return c.only == "" || slices.Contains(strings.Split(c.only, ","), part)
}

// TestPerf measures dsbridge against dnsmasq on the same lab, alternating,
// and prints one table of every ratio of issue 17 (README, Performance). It
// asserts no timing: it measures. Only with DSBRIDGE_PERF=1 (make perf).
func TestPerf(t *testing.T) {
	if os.Getenv("DSBRIDGE_PERF") != "1" {
		t.Skip("set DSBRIDGE_PERF=1 to measure (make perf)")
	}
	lab.RequireRoot(t)
	cfg := perfConfigFromEnv()
	tab := &perfTable{}
	tab.note("load: %s", loadAverage())
	parts := []struct {
		name string
		run  func(*testing.T, perfConfig, *perfTable)
	}{
		{"cpu", perfCPU}, {"profile", perfProfile}, {"rate", perfSustained}, {"flood", perfFloods}, {"memlimit", perfMemLimit},
		{"footprint", perfFootprint}, {"define", perfDefine}, {"address", perfAddress},
	}
	for _, p := range parts {
		if cfg.wants(p.name) {
			t.Run(p.name, func(t *testing.T) { p.run(t, cfg, tab) })
		}
	}
	tab.note("load: %s", loadAverage())
	out := tab.String()
	fmt.Print("\n" + out)
	if cfg.table != "" {
		if err := os.WriteFile(cfg.table, []byte(out), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// loadAverage is /proc/loadavg's three averages: the machine's load while
// measuring (the build machines are shared).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// perfServers start dsbridge (packet tier, rate limit off: perfdhcp is one
// client sending far more than a guest) and dnsmasq, for the perfdhcp runs.
var perfServers = []addrServer{
	{"dsbridge", func(t *testing.T, l *lab.Lab) *perfServer { return startServe(t, l, serveOptions{}) }},
	{"dnsmasq", startDnsmasq},
}

// perfCPU: CPU time per 10,000 DORA and SARR at the same offered rate,
// dsbridge and dnsmasq alternating, median of cfg.runs.
func perfCPU(t *testing.T, cfg perfConfig, tab *perfTable) {
	for _, family := range []string{"4", "6"} {
		cpu := map[string][]time.Duration{}
		for i := range cfg.runs {
			for _, srv := range perfServers {
				t.Run(fmt.Sprintf("v%s/%s/%d", family, srv.name, i), func(t *testing.T) {
					l := lab.NewLab(t, lab.KubeOVN)
					s := srv.start(t, l)
					perfdhcpLab(t, l, s, family)
					r, c := perfdhcp(t, l, s, family, cfg.rate, cfg.secs)
					t.Logf("PERF cpu family=%s server=%s rate=%d completed=%d drops=%.3f%% cpu=%v per10k=%v",
						family, srv.name, cfg.rate, r.Completed(), 100*r.DropRatio(), c, cpuPer10k(c, r.Completed()))
					cpu[srv.name] = append(cpu[srv.name], cpuPer10k(c, r.Completed()))
				})
			}
		}
		what := map[string]string{"4": "DORA", "6": "SARR"}[family]
		d, m := medianDur(cpu["dsbridge"]), medianDur(cpu["dnsmasq"])
		tab.row(fmt.Sprintf("CPU per 10,000 %s at %d/s (s, median of %d)", what, cfg.rate, cfg.runs),
			secs(d), secs(m), ratio(d.Seconds(), m.Seconds()), "<= 0.5")
	}
}

// perfSustained: the highest perfdhcp rate each server answers with under
// 0.1 % drops, or the rate perfdhcp itself could not exceed.
func perfSustained(t *testing.T, cfg perfConfig, tab *perfTable) {
	for _, family := range []string{"4", "6"} {
		got := map[string]sustained{}
		for _, srv := range perfServers {
			t.Run("v"+family+"/"+srv.name, func(t *testing.T) {
				got[srv.name] = sustainedRate(t, srv, family, 1000, 64000, 3)
				t.Logf("PERF sustained family=%s server=%s %+v", family, srv.name, got[srv.name])
			})
		}
		d, m := got["dsbridge"], got["dnsmasq"]
		r := ratio(float64(d.Rate), float64(m.Rate))
		if d.GeneratorLimited {
			r = "perfdhcp first"
		}
		tab.row(fmt.Sprintf("Highest DHCPv%s rate with under 0.1 %% of requests unanswered (exchanges/s)", family),
			rateCell(d), rateCell(m), r, ">= 2 (or perfdhcp saturates)")
	}
}

func rateCell(s sustained) string {
	cell := strconv.Itoa(s.Rate)
	if s.GeneratorLimited {
		cell = fmt.Sprintf(">= %d (perfdhcp could not send faster)", s.Rate)
	}
	if s.ClientLost > 0 {
		cell += fmt.Sprintf("; perfdhcp itself lost %.2f %% of the replies at its full socket", 100*s.ClientLost)
	}
	if s.FailRate > 0 && !s.GeneratorLimited {
		cell += fmt.Sprintf(" (at %d/s: %.2f %% unanswered, %.2f of %d cores busy)", s.FailRate, 100*s.FailLoss, s.FailBusy, runtime.NumCPU())
	}
	return cell
}

// perfFloods: each flood at the highest rate the guest's packet socket
// reaches, against dsbridge (packet tier, rate limits on: the product) and
// dnsmasq.
func perfFloods(t *testing.T, cfg perfConfig, tab *perfTable) {
	servers := []addrServer{{"dsbridge", func(t *testing.T, l *lab.Lab) *perfServer { return startServe(t, l, serveOptions{rateLimit: true}) }},
		{"dnsmasq", startDnsmasq}}
	for _, kind := range floodKinds {
		got := map[string]floodCost{}
		for _, srv := range servers {
			t.Run(kind.name+"/"+srv.name, func(t *testing.T) {
				l := lab.NewLab(t, lab.KubeOVN)
				s := srv.start(t, l)
				got[srv.name] = measureFlood(t, l, s, kind, 0, time.Duration(cfg.floodSecs)*time.Second)
				t.Logf("PERF flood server=%s %+v", srv.name, got[srv.name])
			})
		}
		d, m := got["dsbridge"], got["dnsmasq"]
		tab.row(fmt.Sprintf("%s flood, %.0f frames/s: core, peak RSS, next request", kind.name, d.FramesPerSec),
			floodCell(d), floodCell(m), ratio(d.Cores, m.Cores), "< 0.2 core, < 20 MiB, <= 10 ms")
	}
}

func floodCell(f floodCost) string {
	next := "none in 2 s"
	if f.NextAnswered {
		next = fmt.Sprintf("%.1f ms", ms(f.NextRequest))
	}
	return fmt.Sprintf("%.2f, %.1f MiB, %s", f.Cores, mib(f.PeakRSS), next)
}

// perfMemLimit: a Solicit flood at 1,000/s and a DISCOVER flood at
// 5,000/s, with a 6 MiB Go memory limit and with none: garbage
// collections, CPU and the packets handled.
func perfMemLimit(t *testing.T, cfg perfConfig, tab *perfTable) {
	for _, f := range []struct {
		kind floodKind
		rate int
	}{{floodKinds[1], 1000}, {floodKinds[0], 5000}} {
		got := map[string]floodCost{}
		for _, limit := range []string{"6MiB", "off"} {
			t.Run(f.kind.name+"/"+limit, func(t *testing.T) {
				l := lab.NewLab(t, lab.KubeOVN)
				s := startServe(t, l, serveOptions{rateLimit: true, env: []string{"GOMEMLIMIT=" + limit}})
				got[limit] = measureFlood(t, l, s, f.kind, f.rate, time.Duration(cfg.floodSecs)*time.Second)
				t.Logf("PERF memlimit GOMEMLIMIT=%s %+v", limit, got[limit])
			})
		}
		with, without := got["6MiB"], got["off"]
		cell := func(c floodCost) string {
			return fmt.Sprintf("%d GC, %.2f core, %d handled, %.1f MiB", c.GCCycles, c.Cores, c.Handled, mib(c.PeakRSS))
		}
		tab.row(fmt.Sprintf("%s flood %d/s x %d s: GOMEMLIMIT=6MiB vs none (reference)", f.kind.name, f.rate, cfg.floodSecs),
			cell(with), cell(without), ratio(float64(with.GCCycles), float64(max(without.GCCycles, 1))), "GC within 2x of no limit")
	}
}

// perfFootprint: idle memory of the sidecar after OnDefineDomain (full and
// unprivileged tiers) and of dnsmasq, and the binaries' sizes.
func perfFootprint(t *testing.T, cfg perfConfig, tab *perfTable) {
	rss := map[string]int64{}
	for _, tier := range []sidecarTier{tierFull, tierUnprivileged} {
		t.Run(tier.name, func(t *testing.T) {
			l := lab.NewLab(t, lab.KubeOVN)
			s, _ := startSidecarTier(t, l, tier)
			time.Sleep(2 * time.Second)
			rss[tier.name] = usage(t, s.pid).RSS
		})
	}
	t.Run("dnsmasq", func(t *testing.T) {
		l := lab.NewLab(t, lab.KubeOVN)
		s := startDnsmasq(t, l)
		time.Sleep(2 * time.Second)
		rss["dnsmasq"] = usage(t, s.pid).RSS
	})
	for _, tier := range []string{"full", "unprivileged"} {
		tab.row("Idle RSS after OnDefineDomain, "+tier+" tier (MiB)", fmt.Sprintf("%.1f", mib(rss[tier])),
			fmt.Sprintf("%.1f", mib(rss["dnsmasq"])), ratio(float64(rss[tier]), float64(rss["dnsmasq"])), "<= 15 MiB")
	}
	size := func(path string) int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	d, m := size(dsbridgeBin), size(dnsmasqPath(t))
	tab.row("Binary size, stripped (MB)", fmt.Sprintf("%.2f", float64(d)/1e6), fmt.Sprintf("%.2f", float64(m)/1e6),
		ratio(float64(d), float64(m)), "stated; CNI-only packages out")
}

func dnsmasqPath(t *testing.T) string {
	for _, p := range []string{"/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("no dnsmasq binary")
	return ""
}

// perfDefine: OnDefineDomain pass 1 (adopting the plumbing and starting
// the services) in the full and unprivileged tiers, median of cfg.runs.
func perfDefine(t *testing.T, cfg perfConfig, tab *perfTable) {
	for _, tier := range []sidecarTier{tierFull, tierUnprivileged} {
		var took []time.Duration
		for i := range cfg.runs {
			t.Run(fmt.Sprintf("%s/%d", tier.name, i), func(t *testing.T) {
				l := lab.NewLab(t, lab.KubeOVN)
				_, d := startSidecarTier(t, l, tier)
				took = append(took, d)
			})
		}
		slices.Sort(took)
		tab.row(fmt.Sprintf("OnDefineDomain pass 1, %s tier (ms, median of %d; all)", tier.name, len(took)),
			fmt.Sprintf("%.1f (%s)", ms(medianDur(took)), msList(took)), "-", "-", "< 50 ms")
	}
}

// perfAddress: time from the guest's link up to both families configured,
// per client, with dsbridge in the packet and the unprivileged tier and
// with dnsmasq, alternating, median of cfg.runs; and, from a capture on
// the VM's port, how much of it the server took to answer.
func perfAddress(t *testing.T, cfg perfConfig, tab *perfTable) {
	clients := addrClients(cfg.busybox)
	if cfg.busybox == "" {
		tab.note("udhcpc6 not timed: no busybox with udhcpc6 (set DSBRIDGE_BUSYBOX, or build the e2e/kubevirt guest)")
	}
	for _, c := range clients {
		got := map[string][]addrTiming{}
		for i := range cfg.runs {
			for _, srv := range addrServers {
				t.Run(fmt.Sprintf("%s/%s/%d", c.name, srv.name, i), func(t *testing.T) {
					tm := timeToAddress(t, c, srv)
					t.Logf("PERF address client=%s server=%s %+v", c.name, srv.name, tm)
					got[srv.name] = append(got[srv.name], tm)
				})
			}
		}
		ref := summarize(got["dnsmasq"])
		for _, srv := range addrServers[:2] {
			s := summarize(got[srv.name])
			tab.row(fmt.Sprintf("Time to address, %s, %s (ms, median of %d: both families [IPv4/IPv6]; server's share)",
				c.name, strings.TrimPrefix(srv.name, "dsbridge-"), len(got[srv.name])),
				s.cell(), ref.cell(), ratio(s.both, ref.both), "<= 0.8, or the guest's own delays")
		}
	}
}

// addrSummary is the medians of a series of timings, in ms.
type addrSummary struct{ both, v4, v6, server, rsWait float64 }

func summarize(ts []addrTiming) addrSummary {
	pick := func(f func(addrTiming) time.Duration) float64 {
		var d []time.Duration
		for _, t := range ts {
			d = append(d, f(t))
		}
		return ms(medianDur(d))
	}
	return addrSummary{both: pick(func(t addrTiming) time.Duration { return t.Both }),
		v4: pick(func(t addrTiming) time.Duration { return t.V4 }), v6: pick(func(t addrTiming) time.Duration { return t.V6 }),
		server: pick(func(t addrTiming) time.Duration { return t.Server }),
		rsWait: pick(func(t addrTiming) time.Duration { return max(t.RSWait, 0) })}
}

func (s addrSummary) cell() string {
	fam := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return fmt.Sprintf("%s [%s/%s]; server %.1f", fam(s.both), fam(s.v4), fam(s.v6), s.server)
}

// perfTable is the one table make perf prints: a row per measure, dsbridge
// against a reference (dnsmasq unless the row says otherwise), and notes.
type perfTable struct {
	rows  [][5]string
	notes []string
}

func (p *perfTable) row(measure, dsbridge, reference, ratio, goal string) {
	p.rows = append(p.rows, [5]string{measure, dsbridge, reference, ratio, goal})
}

func (p *perfTable) note(format string, args ...any) {
	p.notes = append(p.notes, fmt.Sprintf(format, args...))
}

// String is the table in Markdown, then the notes.
func (p *perfTable) String() string {
	var b strings.Builder
	b.WriteString("| Measure | dsbridge | dnsmasq (or as stated) | ratio | goal |\n|---|---|---|---|---|\n")
	for _, r := range p.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r[0], r[1], r[2], r[3], r[4])
	}
	for _, n := range p.notes {
		fmt.Fprintf(&b, "\n%s", n)
	}
	b.WriteString("\n")
	return b.String()
}

// ratio is a/b with two decimals, "-" when b is 0.
func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64)
}

// medianDur is the median of d (the mean of the middle two for an even
// count); 0 for none.
func medianDur(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func msList(d []time.Duration) string {
	var s []string
	for _, x := range d {
		s = append(s, strconv.FormatFloat(ms(x), 'f', 0, 64))
	}
	return strings.Join(s, ", ")
}
