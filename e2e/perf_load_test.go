package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// perfdhcpRun is what perfdhcp 2.2 reports for one run: the 4-way
// exchange rate achieved and offered, and per exchange (DISCOVER-OFFER and
// REQUEST-ACK, or SOLICIT-ADVERTISE and REQUEST-REPLY) the packets sent and
// received, the drops and the average delay.
type perfdhcpRun struct {
	Rate, Offered float64
	Exchanges     [2]perfdhcpExchange
	// Sending is how long perfdhcp took to send its exchanges (its run
	// less the final wait); Planned how long at the offered rate.
	Sending, Planned time.Duration
	// MachineBusy is how many of the machine's cores were busy while
	// perfdhcp sent (/proc/stat: all but idle and iowait, over the sending
	// time: the final wait is quiet), perfdhcp's own work included.
	MachineBusy float64
	// Replied is the replies the server sent meanwhile (dsbridge's
	// counters; the pod's UDP datagrams sent, for dnsmasq), and
	// Overflowed the replies the guest's kernel dropped because
	// perfdhcp's socket was full (UDP receive buffer errors).
	Replied, Overflowed int
}

type perfdhcpExchange struct {
	Name                  string
	Sent, Received, Drops int
	AvgMS                 float64
}

var (
	perfdhcpRateRE  = regexp.MustCompile(`Rate: ([0-9.]+) 4-way exchanges/second, expected rate: ([0-9.]+)`)
	perfdhcpBlockRE = regexp.MustCompile(`(?s)Statistics for: ([A-Z]+-[A-Z]+).*?sent packets: (\d+).*?received packets: (\d+).*?drops: (\d+).*?avg delay: ([0-9.]+) ms`)
)

// parsePerfdhcp reads perfdhcp's report.
func parsePerfdhcp(out string) (perfdhcpRun, error) {
	var r perfdhcpRun
	m := perfdhcpRateRE.FindStringSubmatch(out)
	blocks := perfdhcpBlockRE.FindAllStringSubmatch(out, -1)
	if m == nil || len(blocks) != 2 {
		return r, fmt.Errorf("unrecognised perfdhcp report (%d exchange statistics):\n%s", len(blocks), out)
	}
	r.Rate, _ = strconv.ParseFloat(m[1], 64) // the expressions admit only numbers
	r.Offered, _ = strconv.ParseFloat(m[2], 64)
	for i, b := range blocks {
		e := perfdhcpExchange{Name: b[1]}
		e.Sent, _ = strconv.Atoi(b[2])
		e.Received, _ = strconv.Atoi(b[3])
		e.Drops, _ = strconv.Atoi(b[4])
		e.AvgMS, _ = strconv.ParseFloat(b[5], 64)
		r.Exchanges[i] = e
	}
	return r, nil
}

// Completed is the number of 4-way exchanges completed: the second
// exchange's replies.
func (r perfdhcpRun) Completed() int { return r.Exchanges[1].Received }

// DropRatio is the share of requests of either exchange left unanswered.
func (r perfdhcpRun) DropRatio() float64 {
	sent := r.Exchanges[0].Sent + r.Exchanges[1].Sent
	if sent == 0 {
		return 1
	}
	return float64(r.Exchanges[0].Drops+r.Exchanges[1].Drops) / float64(sent)
}

// sent is the requests perfdhcp sent, both exchanges.
func (r perfdhcpRun) sent() int { return r.Exchanges[0].Sent + r.Exchanges[1].Sent }

// ServerLossRatio is the share of the requests perfdhcp sent that the
// server did not answer. perfdhcp's own drops (DropRatio) also count the
// replies the guest's kernel dropped because perfdhcp did not read its
// socket in time (Overflowed): those are the load generator's.
func (r perfdhcpRun) ServerLossRatio() float64 {
	if r.sent() == 0 {
		return 1
	}
	return float64(max(r.sent()-r.Replied, 0)) / float64(r.sent())
}

// GeneratorLimited reports a run in which perfdhcp took over 10 % longer
// than planned to send its exchanges while the server answered them: the
// load generator, not the server, set the rate.
func (r perfdhcpRun) GeneratorLimited() bool {
	return r.Sending > r.Planned*11/10 && r.ServerLossRatio() < maxDropRatio
}

// perfdhcpWait is perfdhcp's -W: how long it waits for the last replies.
const perfdhcpWait = time.Second

// maxDropRatio is the sustained-rate criterion: under 0.1 % drops.
const maxDropRatio = 0.001

// perfdhcpLab prepares l's guest for perfdhcp against s: for DHCPv4 an
// address (perfdhcp always acts as a relay, giaddr = its address) and a
// route to the server's address, and a second of warm-up DHCPv4 exchanges,
// so that ARP for the server's address is not measured. (A DHCPv6 warm-up
// would leave dnsmasq's one address bound to the warm-up's IAID: the next
// perfdhcp run, with others, would get NoAddrsAvail.)
func perfdhcpLab(t *testing.T, l *lab.Lab, s *perfServer, family string) {
	t.Helper()
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "up")
	l.Guest.Run(t, "ip", "addr", "replace", "10.16.0.50/16", "dev", l.GuestIf)
	if s.addr4 == serverID4 {
		l.Guest.Run(t, "ip", "route", "replace", serverID4+"/32", "dev", l.GuestIf)
	}
	waitLinkLocal(t, l)
	if family == "4" {
		perfdhcp(t, l, s, family, 20, 1)
	}
}

// waitLinkLocal waits for the guest's link-local address (perfdhcp -6 and
// DHCPv6 clients send from it).
func waitLinkLocal(t *testing.T, l *lab.Lab) {
	t.Helper()
	lab.WaitFor(t, 5*time.Second, "the guest's link-local address", func() bool {
		out, _ := l.Guest.Exec("ip", "-6", "addr", "show", "dev", l.GuestIf, "scope", "link")
		return strings.Contains(out, "fe80::") && !strings.Contains(out, "tentative")
	})
}

// perfdhcp runs one perfdhcp load from the guest: family "4" or "6", one
// client (the VM's MAC), rate exchanges/s for secs seconds, and returns the
// report and the server's CPU time spent meanwhile.
func perfdhcp(t *testing.T, l *lab.Lab, s *perfServer, family string, rate, secs int) (perfdhcpRun, time.Duration) {
	t.Helper()
	args := []string{"perfdhcp", "-" + family, "-l", l.GuestIf, "-R", "1", "-b", "mac=" + l.Spec.MAC,
		"-r", strconv.Itoa(rate), "-n", strconv.Itoa(rate * secs), "-W", "1000000"}
	if family == "4" {
		args[3] = "10.16.0.50"
		args = append(args, s.addr4)
	}
	before, replied0, overflowed0 := usage(t, s.pid), serverReplies(t, l, s, family), udpCounter(t, l.Guest, family, "RcvbufErrors")
	busy0 := machineTicks(t)
	start := time.Now()
	out, err := l.Guest.Exec(args...)
	took := time.Since(start)
	busy1 := machineTicks(t)
	after := usage(t, s.pid)
	cpu := after.CPU - before.CPU
	r, perr := parsePerfdhcp(out)
	if perr != nil {
		t.Fatalf("perfdhcp -%s at %d/s against %s: %v (%v)", family, rate, s.name, perr, err)
	}
	r.Sending, r.Planned = took-perfdhcpWait, time.Duration(secs)*time.Second
	r.Replied = int(serverReplies(t, l, s, family) - replied0)
	r.Overflowed = int(udpCounter(t, l.Guest, family, "RcvbufErrors") - overflowed0)
	if r.Sending > 0 {
		r.MachineBusy = min(float64(busy1-busy0)*clockTick.Seconds()/r.Sending.Seconds(), float64(runtime.NumCPU()))
	}
	t.Logf("PERF perfdhcp -%s server=%s rate=%d: %d context switches, CPU %v; %d requests sent, %d replied, %d missed, %d replies dropped at perfdhcp's socket",
		family, s.name, rate, after.Switches-before.Switches, cpu, r.sent(), r.Replied, r.Exchanges[0].Drops+r.Exchanges[1].Drops, r.Overflowed)
	return r, cpu
}

// machineTicks reads /proc/stat's first line: the ticks all cores spent
// busy (all but idle and iowait).
func machineTicks(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	busy, err := parseCPUTicks(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return busy
}

// parseCPUTicks reads the busy ticks of the "cpu  user nice system idle
// iowait irq softirq steal ..." line of /proc/stat (proc(5)): all of the
// first eight but idle and iowait (guest and guest_nice are already in
// user and nice).
func parseCPUTicks(stat string) (busy uint64, err error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("unrecognised /proc/stat line %q", line)
	}
	for i, v := range f[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unrecognised /proc/stat line %q", line)
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, nil
}

// serverReplies is the replies s has sent in family "4" or "6" so far:
// dsbridge's own counters, or, for dnsmasq (the pod's only UDP sender), the
// pod's UDP datagrams sent.
func serverReplies(t *testing.T, l *lab.Lab, s *perfServer, family string) uint64 {
	t.Helper()
	if s.stateDir == "" {
		return udpCounter(t, l.Pod, family, "OutDatagrams")
	}
	return readCounters(t, s.stateDir)["dhcpv"+family].Replied
}

// udpCounter reads one of ns's UDP counters (/proc/net/snmp for "4",
// /proc/net/snmp6 for "6"), e.g. RcvbufErrors.
func udpCounter(t *testing.T, ns *lab.NS, family, name string) uint64 {
	t.Helper()
	file := map[string]string{"4": "/proc/net/snmp", "6": "/proc/net/snmp6"}[family]
	out := ns.Run(t, "cat", file)
	v, err := parseUDPCounter(out, family, name)
	if err != nil {
		t.Fatalf("%s in %s: %v", file, ns.Name, err)
	}
	return v
}

// parseUDPCounter finds counter name in /proc/net/snmp ("Udp:" header and
// value lines) or /proc/net/snmp6 ("Udp6<name> <value>" lines).
func parseUDPCounter(out, family, name string) (uint64, error) {
	if family == "6" {
		for line := range strings.Lines(out) {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "Udp6"+name {
				return strconv.ParseUint(f[1], 10, 64)
			}
		}
		return 0, fmt.Errorf("no Udp6%s", name)
	}
	var header []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		if i := slices.Index(header, name); i > 0 && i < len(f) {
			return strconv.ParseUint(f[i], 10, 64)
		}
	}
	return 0, fmt.Errorf("no Udp %s", name)
}

// cpuPer10k is the CPU time per 10,000 completed exchanges.
func cpuPer10k(cpu time.Duration, completed int) time.Duration {
	if completed == 0 {
		return 0
	}
	return cpu * 10000 / time.Duration(completed)
}

// sustained is the highest rate a server answered with under 0.1 % of
// perfdhcp's requests unanswered, and what stopped the next rate tried: the
// server, or perfdhcp itself.
type sustained struct {
	Rate int // highest passing offered rate
	// GeneratorLimited: the lowest failing rate failed because perfdhcp
	// could not send at it, not because of the server.
	GeneratorLimited bool
	// ClientLost is the share of replies perfdhcp itself lost at Rate
	// (its socket overflowed), though the server sent them.
	ClientLost float64
	// The lowest failing rate, the share of its requests left unanswered,
	// and the machine's busy cores meanwhile (0 rate: none failed).
	FailRate           int
	FailLoss, FailBusy float64
	Tried              []string
}

// sustainedRate doubles perfdhcp's rate from start until the server leaves
// 0.1 % or more of the requests unanswered (by its own count: replies sent
// against requests perfdhcp sent), or perfdhcp cannot send at the rate, in
// two runs in a row, then bisects twice between the last passing and the
// first failing rate.
// Replies the server sent but perfdhcp lost at its own full socket are the
// generator's loss, not the server's: they are reported, not counted. Each
// run has a fresh lab and server: dnsmasq keeps its one address bound to
// the last run's client.
func sustainedRate(t *testing.T, srv addrServer, family string, start, ceiling, secs int) sustained {
	t.Helper()
	var res sustained
	clientLost := map[int]float64{} // passing rates: perfdhcp's own losses
	failed := map[int]perfdhcpRun{} // failing rates' last run
	once := func(rate, attempt int) bool {
		var r perfdhcpRun
		t.Run(fmt.Sprintf("%d/%d", rate, attempt), func(t *testing.T) {
			l := lab.NewLab(t, lab.KubeOVN)
			s := srv.start(t, l)
			perfdhcpLab(t, l, s, family)
			r, _ = perfdhcp(t, l, s, family, rate, secs)
		})
		res.Tried = append(res.Tried, fmt.Sprintf("%d/s: %d of %d requests answered (%.2f%% not), sent in %v; perfdhcp missed %.2f%%, %d at its full socket; %.2f cores busy",
			rate, r.Replied, r.sent(), 100*r.ServerLossRatio(), r.Sending.Round(10*time.Millisecond), 100*r.DropRatio(), r.Overflowed, r.MachineBusy))
		if r.GeneratorLimited() || r.ServerLossRatio() >= maxDropRatio {
			failed[rate] = r
			return false
		}
		clientLost[rate] = float64(r.Overflowed) / float64(max(r.Replied, 1))
		return true
	}
	// A rate fails when two runs in a row fail: one run's losses are as
	// often the shared machine's hiccup (the same rate passes the next
	// time) as the server's limit.
	try := func(rate int) bool { return once(rate, 1) || once(rate, 2) }
	fail := 0
	for rate := start; rate <= ceiling; rate *= 2 {
		if !try(rate) {
			fail = rate
			break
		}
		res.Rate = rate
	}
	if fail != 0 {
		lo, hi := res.Rate, fail
		for range 2 {
			mid := (lo + hi) / 2
			if mid <= lo {
				break
			}
			if try(mid) {
				lo = mid
			} else {
				hi = mid
			}
		}
		f := failed[hi]
		res.Rate, res.GeneratorLimited = lo, f.GeneratorLimited()
		res.FailRate, res.FailLoss, res.FailBusy = hi, f.ServerLossRatio(), f.MachineBusy
	}
	res.ClientLost = clientLost[res.Rate]
	return res
}

// floodKind is one kind of guest flood.
type floodKind struct {
	name   string
	frames func(l *lab.Lab) [][]byte
}

var floodKinds = []floodKind{
	{"DISCOVER", func(l *lab.Lab) [][]byte {
		return each(256, func(i int) []byte { return discoverFrame(l.VMMAC(), uint32(i)) })
	}},
	{"Solicit", func(l *lab.Lab) [][]byte {
		return each(256, func(i int) []byte { return solicitFrame(l.VMMAC(), uint32(i)) })
	}},
	{"RS", func(l *lab.Lab) [][]byte { return [][]byte{rsFrame(l.VMMAC(), rsBody(l.VMMAC()))} }},
	{"mixed", func(l *lab.Lab) [][]byte { return floodFrames(l.VMMAC(), 256) }},
}

func each(n int, f func(int) []byte) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

// floodCost is what a flood cost the server.
type floodCost struct {
	Kind         string
	FramesPerSec float64
	Cores        float64 // CPU time over wall time
	PeakRSS      int64   // bytes: the larger of the sampled VmRSS and VmHWM
	GCCycles     int     // dsbridge only
	Handled      uint64  // packets the servers received (dsbridge only)
	NextRequest  time.Duration
	NextAnswered bool
}

// measureFlood floods s from the guest with kind's frames at rate frames/s
// (0: as fast as the guest's packet socket takes them) for d, then times the
// VM's next requests (a DISCOVER and a Solicit).
func measureFlood(t *testing.T, l *lab.Lab, s *perfServer, kind floodKind, rate int, d time.Duration) floodCost {
	t.Helper()
	inj := newInjector(t, l)
	probe := newProber(t, l)
	var before map[string]statusCounters
	if s.stateDir != "" {
		before = readCounters(t, s.stateDir)
	}
	gcBefore := gcCycles(s.out.String())
	u0 := usage(t, s.pid)
	mem := memory{}
	sample := func() {
		if u, err := readUsage(s.pid); err == nil {
			mem.peak(memory{rss: u.RSS})
		}
	}
	start := time.Now()
	var res floodCost
	if rate == 0 {
		r := inj.flood(d, kind.frames(l), sample)
		res.FramesPerSec = float64(r.sent) / r.took.Seconds()
	} else {
		sent := inj.paced(d, rate, kind.frames(l), sample)
		res.FramesPerSec = float64(sent) / d.Seconds()
	}
	wall := time.Since(start)
	u1 := usage(t, s.pid)
	res.Kind = kind.name
	res.Cores = (u1.CPU - u0.CPU).Seconds() / wall.Seconds()
	res.PeakRSS = max(mem.max, u1.HWM)
	res.GCCycles = gcCycles(s.out.String()) - gcBefore
	if before != nil {
		after := readCounters(t, s.stateDir)
		for proto, c := range after {
			res.Handled += c.Received - before[proto].Received
		}
	}
	res.NextRequest, res.NextAnswered = probe.next(t, l)
	return res
}

// paced writes frames round-robin at rate frames/s for d, calling sample
// every 100 ms; it returns how many it sent.
func (i *injector) paced(d time.Duration, rate int, frames [][]byte, sample func()) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for tick := time.NewTicker(100 * time.Millisecond); ctx.Err() == nil; <-tick.C {
			sample()
		}
	}()
	start, sent := time.Now(), 0
	for now := start; now.Sub(start) < d; now = time.Now() {
		due := int(now.Sub(start).Seconds() * float64(rate))
		for ; sent < due; sent++ {
			_ = i.c.WriteFrame(frames[sent%len(frames)]) // ENOBUFS only drops the frame
		}
		time.Sleep(200 * time.Microsecond)
	}
	cancel()
	<-done
	return sent
}
