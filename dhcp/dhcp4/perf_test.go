package dhcp4

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
)

// perfResult is what perfdhcp -4 reports for one run.
type perfResult struct {
	Rate       float64 // 4-way exchanges per second
	Drops      int     // DISCOVER-OFFER plus REQUEST-ACK drops
	DelayDO    float64 // average DISCOVER-OFFER delay, ms
	DelayRA    float64 // average REQUEST-ACK delay, ms
	ExitStatus int
}

var (
	perfRateRE  = regexp.MustCompile(`Rate: ([0-9.]+) 4-way exchanges/second`)
	perfDropsRE = regexp.MustCompile(`(?m)^drops: ([0-9]+)`)
	perfDelayRE = regexp.MustCompile(`(?m)^avg delay: ([0-9.]+) ms`)
)

// parsePerfdhcp reads perfdhcp 2.2's report: the rate line, then one
// statistics block per exchange (DISCOVER-OFFER first, REQUEST-ACK second).
func parsePerfdhcp(out string) (perfResult, error) {
	var r perfResult
	m := perfRateRE.FindStringSubmatch(out)
	drops := perfDropsRE.FindAllStringSubmatch(out, -1)
	delays := perfDelayRE.FindAllStringSubmatch(out, -1)
	if m == nil || len(drops) < 2 || len(delays) < 2 {
		return r, fmt.Errorf("unrecognised perfdhcp report:\n%s", out)
	}
	r.Rate, _ = strconv.ParseFloat(m[1], 64) // the regexp admits only numbers
	for _, d := range drops[:2] {
		n, _ := strconv.Atoi(d[1])
		r.Drops += n
	}
	r.DelayDO, _ = strconv.ParseFloat(delays[0][1], 64)
	r.DelayRA, _ = strconv.ParseFloat(delays[1][1], 64)
	return r, nil
}

// perfdhcp runs a single-client DHCPv4 load from the guest (perfdhcp -4 -R 1
// -b mac=<vm mac>): perfdhcp always acts as a relay, here from 10.16.0.50 to
// the server id.
func (l *testLab) perfdhcp(t *testing.T, rate, n int) perfResult {
	t.Helper()
	out, err := l.guest.Exec("perfdhcp", "-4", "-l", "vm0", "-R", "1", "-b", "mac="+labVMMAC,
		"-r", strconv.Itoa(rate), "-n", strconv.Itoa(n), "-W", "1000000", serverID.String())
	r, perr := parsePerfdhcp(out)
	if perr != nil {
		t.Fatalf("perfdhcp: %v (%v)", perr, err)
	}
	if err != nil {
		r.ExitStatus = 1
		if strings.Contains(err.Error(), "exit status 3") {
			r.ExitStatus = 3
		}
	}
	return r
}

// TestPerfdhcpVsDnsmasq measures dsbridge's packet server and dnsmasq with
// perfdhcp -4 on the same lab in the same run. Only with DSBRIDGE_PERF=1.
// dsbridge runs with its rate limit off: perfdhcp is one client sending far
// more than DefaultRate allows.
func TestPerfdhcpVsDnsmasq(t *testing.T) {
	if os.Getenv("DSBRIDGE_PERF") != "1" {
		t.Skip("set DSBRIDGE_PERF=1 to run perfdhcp against dsbridge and dnsmasq")
	}
	l := newLab(t)
	l.guest.Run(t, "ip", "addr", "add", "10.16.0.50/16", "dev", "vm0")
	l.guest.Run(t, "ip", "route", "add", serverID.String()+"/32", "dev", "vm0")
	runs := []struct{ rate, n int }{{200, 1000}, {2000, 10000}}

	results := map[string][]perfResult{}
	stop := l.startStoppablePacketServer(t, labConfig())
	for _, run := range runs {
		results["dsbridge"] = append(results["dsbridge"], l.perfdhcp(t, run.rate, run.n))
	}
	stop()

	l.startDnsmasq(t)
	for _, run := range runs {
		results["dnsmasq"] = append(results["dnsmasq"], l.perfdhcp(t, run.rate, run.n))
	}

	for i, run := range runs {
		for _, server := range []string{"dsbridge", "dnsmasq"} {
			r := results[server][i]
			t.Logf("PERFDHCP server=%s rate=%d n=%d exch_per_s=%.1f drops=%d avg_delay_do_ms=%.3f avg_delay_ra_ms=%.3f exit=%d",
				server, run.rate, run.n, r.Rate, r.Drops, r.DelayDO, r.DelayRA, r.ExitStatus)
		}
		d, m := results["dsbridge"][i], results["dnsmasq"][i]
		t.Logf("PERFDHCP_RATIO rate=%d dsbridge/dnsmasq exch_per_s=%.2f avg_delay_do=%.2f avg_delay_ra=%.2f",
			run.rate, d.Rate/m.Rate, d.DelayDO/m.DelayDO, d.DelayRA/m.DelayRA)
	}
	// A measurement, not a timed assertion: the numbers and the ratio are
	// reported (README, performance section); only a run that produced no
	// exchanges at all fails.
	if d := results["dsbridge"][0]; d.Rate == 0 {
		t.Errorf("dsbridge answered no exchange at 200/s: %+v", d)
	}
}

// startStoppablePacketServer runs the packet server with no rate limit until
// the returned stop is called (or the test ends).
func (l *testLab) startStoppablePacketServer(t *testing.T, cfg Config) (stop func()) {
	t.Helper()
	var conn *frame.PacketConn
	if err := l.pod.Do(func() error {
		var err error
		conn, err = frame.Listen("tap0", frame.Filter{SrcMAC: cfg.VMMAC, Kind: frame.KindDHCPv4})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s := NewPacketServer(newTestHandler(t, cfg), conn, discardLogger())
	s.Limit = serve.Limit{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v after cancel", err)
		}
		conn.Close()
	}
	t.Cleanup(stop)
	return stop
}

// startDnsmasq runs dnsmasq in the pod ns on br0, holding the server id, with
// one host reservation for the VM MAC, and waits until it listens.
func (l *testLab) startDnsmasq(t *testing.T) {
	t.Helper()
	l.pod.Run(t, "ip", "addr", "add", serverID.String()+"/32", "dev", "br0")
	l.pod.Run(t, "ip", "route", "add", "10.16.0.0/16", "dev", "br0")
	l.guest.Run(t, "ip", "neigh", "flush", "dev", "vm0") // forget the service MAC
	l.pod.Start(t, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
		"--interface=br0", "--bind-interfaces", "--quiet-dhcp", "--dhcp-authoritative",
		"--dhcp-range=10.16.0.5,10.16.0.5,255.255.0.0,24h", "--dhcp-host="+labVMMAC+",10.16.0.5",
		"--pid-file="+filepath.Join(l.dir, "dnsmasq.pid"), "--dhcp-leasefile="+filepath.Join(l.dir, "dnsmasq.leases"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if out, _ := l.pod.Exec("ss", "-uln", "sport = :67"); strings.Contains(out, ":67") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("dnsmasq does not listen on port 67 after 5 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
