package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// clockTick is the kernel's USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat (proc(5)); 100 on every Linux this runs on.
const clockTick = 10 * time.Millisecond

// procUsage is what /proc says of a process: CPU time (user and system,
// every thread, exited ones too) and resident memory.
type procUsage struct {
	CPU      time.Duration
	RSS, HWM int64 // bytes
	Switches int64 // context switches of the live threads, voluntary or not
}

// readUsage reads pid's CPU time and memory.
func readUsage(pid int) (procUsage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procUsage{}, err
	}
	u, err := parseStatCPU(string(stat))
	if err != nil {
		return procUsage{}, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procUsage{}, err
	}
	u.RSS, u.HWM = statusKiB(string(status), "VmRSS")<<10, statusKiB(string(status), "VmHWM")<<10
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	for _, task := range tasks {
		if b, err := os.ReadFile(task); err == nil {
			u.Switches += statusCount(string(b), "voluntary_ctxt_switches") + statusCount(string(b), "nonvoluntary_ctxt_switches")
		}
	}
	return u, nil
}

// statusCount reads a "key:\tN" line of /proc/<pid>/status; 0 if none.
func statusCount(status, key string) int64 {
	for line := range strings.Lines(status) {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// parseStatCPU reads utime and stime (fields 14 and 15, proc(5)) from a
// /proc/<pid>/stat line; the command name in parentheses may hold spaces.
func parseStatCPU(stat string) (procUsage, error) {
	_, rest, ok := strings.Cut(stat, ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return procUsage{}, fmt.Errorf("unrecognised /proc/<pid>/stat %q", stat)
	}
	// rest starts at field 3 (state): utime is field 14, stime 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return procUsage{}, fmt.Errorf("unrecognised /proc/<pid>/stat %q", stat)
	}
	return procUsage{CPU: time.Duration(ut+st) * clockTick}, nil
}

// statusKiB reads a "Key:   123 kB" line of /proc/<pid>/status; 0 if none.
func statusKiB(status, key string) int64 {
	for line := range strings.Lines(status) {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// usage reads pid's usage, failing the test when it cannot.
func usage(t *testing.T, pid int) procUsage {
	t.Helper()
	u, err := readUsage(pid)
	if err != nil {
		t.Fatalf("usage of process %d: %v", pid, err)
	}
	return u
}

// gcLine is a GODEBUG=gctrace=1 line: "gc 12 @1.234s 1%: ...".
var gcLine = regexp.MustCompile(`(?m)^gc (\d+) @`)

// gcCycles is the number of the last garbage collection a gctrace output
// reports: the cycles run so far.
func gcCycles(out string) int {
	m := gcLine.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

// perfServer is a server under measurement in a lab's pod: dsbridge (serve
// or the sidecar) or dnsmasq.
type perfServer struct {
	name     string
	pid      int
	out      *lab.Buffer // its output: logs, and gctrace lines for dsbridge
	stateDir string      // dsbridge's: status.sock is there
	addr4    string      // where perfdhcp -4 sends: the server identifier or address
}

// serveOptions say how dsbridge serve runs.
type serveOptions struct {
	env       []string // e.g. GOMEMLIMIT=6MiB; GODEBUG=gctrace=1 is always set
	rateLimit bool
	bin       string // the dsbridge binary; "": dsbridgeBin
}

// startServe runs `dsbridge serve` (the packet tier: root) in l's pod at
// info level, tracing garbage collections, and waits until it serves.
func startServe(t *testing.T, l *lab.Lab, o serveOptions) *perfServer {
	t.Helper()
	s := &perfServer{name: "dsbridge", out: &lab.Buffer{}, stateDir: t.TempDir(), addr4: serverID4}
	bin := dsbridgeBin
	if o.bin != "" {
		bin = o.bin
	}
	cmd := exec.Command("ip", "netns", "exec", l.Pod.Name, bin, "serve",
		"--pod-iface", l.Spec.PodIface, "--tap", l.Tap, "--resolv-conf", l.ResolvConf, "--hostname", l.Hostname,
		"--state-dir", s.stateDir, "--log-level", "info", "--rate-limit="+strconv.FormatBool(o.rateLimit))
	cmd.Env = append(append(os.Environ(), "GODEBUG=gctrace=1"), o.env...)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dsbridge serve: %v", err)
	}
	s.pid = cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		<-exited
		if t.Failed() {
			t.Logf("dsbridge serve output:\n%s", s.out.String())
		}
	})
	lab.WaitFor(t, 15*time.Second, "dsbridge serve to serve", func() bool {
		select {
		case <-exited:
			t.Fatalf("dsbridge serve exited early:\n%s", s.out.String())
		default:
		}
		return strings.Contains(s.out.String(), `"msg":"serving interface`)
	})
	return s
}

// dnsmasqMAC is the pod uplink's MAC once it is a port of dnsmasq's bridge:
// the VM's MAC is the guest's alone.
const dnsmasqMAC = "0a:58:0a:10:00:04"

// dnsmasqAddr4 is the address of dnsmasq's bridge, where perfdhcp -4 sends.
const dnsmasqAddr4 = "10.16.0.4"

// startDnsmasq serves the lab's guest the way a plain bridge with dnsmasq
// would: the pod interface and the tap become ports of br0, which holds
// 10.16.0.4 and fd00:10:16::4; dnsmasq hands out 10.16.0.5 (static, by the
// VM's MAC) with the pod's gateway, and fd00:10:16::5 by DHCPv6 with Rapid
// Commit, and sends RAs from br0's own link-local address (so the guest's
// IPv6 default route points at the pod, not the gateway). It logs no
// transaction (--quiet-dhcp, --quiet-dhcp6, --quiet-ra: dsbridge at info
// level logs none either).
func startDnsmasq(t *testing.T, l *lab.Lab) *perfServer {
	t.Helper()
	p, dev, mtu := l.Pod, l.Spec.PodIface, strconv.Itoa(l.Spec.MTU)
	p.Run(t, "ip", "link", "set", dev, "down")
	p.Run(t, "ip", "addr", "flush", "dev", dev)
	p.Run(t, "ip", "link", "set", dev, "address", dnsmasqMAC)
	p.Run(t, "ip", "link", "add", "br0", "address", dnsmasqMAC, "mtu", mtu, "type", "bridge")
	p.Run(t, "sysctl", "-qw", "net.ipv6.conf.br0.accept_dad=0", "net.ipv6.conf.br0.accept_ra=0",
		"net.ipv6.conf.all.forwarding=1", "net.ipv4.ip_forward=1")
	p.Run(t, "ip", "link", "set", dev, "master", "br0", "up")
	p.Run(t, "ip", "link", "set", l.Tap, "master", "br0")
	p.Run(t, "ip", "link", "set", "br0", "up")
	p.Run(t, "ip", "addr", "add", dnsmasqAddr4+"/16", "dev", "br0")
	p.Run(t, "ip", "addr", "add", "fd00:10:16::4/112", "dev", "br0", "nodad")
	dir := t.TempDir()
	s := &perfServer{name: "dnsmasq", addr4: dnsmasqAddr4, out: &lab.Buffer{}} // its log is the command's
	cmd := p.Start(t, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--log-facility=-",
		"--user=root", "--group=root", "--interface=br0", "--bind-interfaces", "--quiet-dhcp", "--quiet-dhcp6", "--quiet-ra",
		"--pid-file="+dir+"/pid", "--dhcp-leasefile="+dir+"/leases", "--dhcp-authoritative", "--dhcp-rapid-commit",
		"--dhcp-range=10.16.0.5,static,255.255.0.0,12h", "--dhcp-host="+l.Spec.MAC+",10.16.0.5",
		"--dhcp-option=option:router,10.16.0.1", "--dhcp-option=option:dns-server,10.96.0.10",
		"--dhcp-option=option:mtu,"+mtu, "--dhcp-option=option6:dns-server,[fd00:10:96::a]",
		"--dhcp-range=fd00:10:16::5,fd00:10:16::5,112,12h", "--enable-ra")
	lab.WaitFor(t, 5*time.Second, "dnsmasq to start", func() bool {
		return strings.Contains(lab.Output(cmd), "DHCPv6, IP range")
	})
	s.pid = cmd.Process.Pid // ip netns exec execs dnsmasq
	return s
}

// statusCounters is what `dsbridge status --json` counts per protocol:
// packets received (every outcome) and replies sent.
type statusCounters struct{ Received, Replied uint64 }

// readCounters asks a running dsbridge for its counters, by protocol
// (dhcpv4, dhcpv6, ra).
func readCounters(t *testing.T, stateDir string) map[string]statusCounters {
	t.Helper()
	out, err := exec.Command(dsbridgeBin, "status", "--socket", filepath.Join(stateDir, "status.sock"), "--json").Output()
	if err != nil {
		t.Fatalf("dsbridge status: %v", err)
	}
	var doc struct {
		Interfaces []struct {
			Services []struct {
				Protocol string
				Received []struct {
					Outcome string
					Count   uint64
				}
			}
		}
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("dsbridge status --json: %v", err)
	}
	got := map[string]statusCounters{}
	for _, i := range doc.Interfaces {
		for _, s := range i.Services {
			c := got[s.Protocol]
			for _, r := range s.Received {
				c.Received += r.Count
				if r.Outcome == "replied" {
					c.Replied += r.Count
				}
			}
			got[s.Protocol] = c
		}
	}
	return got
}
