package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// perfProfileHz is perf record's sampling rate (-F): one sample per ~1 ms
// of the server's CPU time, a thousand or so per run, and little of the
// profiler's own cost charged to the server.
const perfProfileHz = 999

// The parts of a request's CPU time, as perfProfile reports them.
const (
	partWait    = "waiting and being woken (poll, epoll_wait: the kernel's context switch)"
	partRecv    = "receiving the request (recvmsg, recvmmsg)"
	partSend    = "sending the reply, the kernel's delivery to the client included (sendmsg, write)"
	partOtherSC = "other system calls (ioctl, setsockopt, alarm...)"
	partKernel  = "the kernel otherwise (entering and leaving system calls, preemption)"
	partRuntime = "user space: the Go runtime and net poller (dsbridge), libc (dnsmasq)"
	partOwn     = "user space: the server's own code (dnsmasq's binary is stripped: its frames are unnamed)"
)

var profileParts = []string{partWait, partRecv, partSend, partOtherSC, partKernel, partRuntime, partOwn}

// syscallParts maps the kernel function that carries out a system call
// (the frame nearest the system call's entry) to its part.
var syscallParts = map[string]string{
	"do_epoll_wait": partWait, "__x64_sys_epoll_wait": partWait, "__x64_sys_epoll_pwait": partWait,
	"do_sys_poll": partWait, "__x64_sys_poll": partWait, "__x64_sys_ppoll": partWait,
	"core_sys_select": partWait, "do_select": partWait, "__x64_sys_pselect6": partWait,
	"__x64_sys_futex": partWait, "do_futex": partWait, "hrtimer_nanosleep": partWait, "do_nanosleep": partWait,
	"do_recvmmsg": partRecv, "__sys_recvmmsg": partRecv, "__sys_recvmsg": partRecv, "____sys_recvmsg": partRecv,
	"__x64_sys_recvmsg": partRecv, "__sys_recvfrom": partRecv, "__x64_sys_recvfrom": partRecv, "ksys_read": partRecv,
	"ksys_write": partSend, "__x64_sys_write": partSend, "__sys_sendmsg": partSend, "____sys_sendmsg": partSend,
	"__x64_sys_sendmsg": partSend, "__sys_sendto": partSend, "__x64_sys_sendto": partSend, "__sys_sendmmsg": partSend,
}

// classifySample assigns one perf script sample (its frames, leaf first:
// "function+0x12") to a part of profileParts.
func classifySample(frames []string, kernel bool) string {
	names := make([]string, len(frames))
	for i, f := range frames {
		names[i], _, _ = strings.Cut(f, "+")
	}
	if kernel {
		// The system call: the frame nearest its entry that names one.
		for i := len(names) - 1; i >= 0; i-- {
			if p, ok := syscallParts[names[i]]; ok {
				return p
			}
		}
		for _, n := range names {
			if strings.HasPrefix(n, "__x64_sys_") || strings.HasPrefix(n, "__do_sys_") || strings.HasPrefix(n, "ksys_") {
				return partOtherSC
			}
		}
		return partKernel
	}
	if len(names) == 0 {
		return partRuntime
	}
	leaf := names[0]
	if leaf == "[unknown]" { // a stripped binary's own code
		return partOwn
	}
	for _, p := range []string{"runtime.", "internal/", "syscall.", "os.", "sync.", "gogo", "aeshash", "memeqbody",
		"github.com/mdlayher/", "golang.org/x/sys/", "__", "_IO_"} { // the Go runtime and its wrappers; libc
		if strings.HasPrefix(leaf, p) {
			return partRuntime
		}
	}
	return partOwn
}

// profile is the server's CPU time by part of profileParts.
type profile map[string]time.Duration

// parsePerfScript reads `perf script` output (a header line per sample, then
// one "address function+off (object)" line per frame, leaf first; a blank
// line between samples) and adds each sample's period to its part.
func parsePerfScript(out string, period time.Duration) profile {
	p := profile{}
	var frames []string
	kernel, in := false, false
	flush := func() {
		if in {
			p[classifySample(frames, kernel)] += period
		}
		frames, kernel, in = frames[:0], false, false
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if line[0] != ' ' && line[0] != '\t' { // a sample's header
			flush()
			in = true
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if len(frames) == 0 {
			kernel = strings.Contains(line, "[kernel.kallsyms]")
		}
		frames = append(frames, f[1])
	}
	flush()
	return p
}

// profileServer records s's CPU profile while perfdhcp runs at rate for
// secs, and returns it with the requests perfdhcp sent.
func profileServer(t *testing.T, l *lab.Lab, s *perfServer, family string, rate, secs int) (profile, int) {
	t.Helper()
	data := filepath.Join(t.TempDir(), "perf.data")
	rec := exec.Command("perf", "record", "-q", "-g", "-F", strconv.Itoa(perfProfileHz), "-p", strconv.Itoa(s.pid), "-o", data)
	var recOut strings.Builder
	rec.Stdout, rec.Stderr = &recOut, &recOut
	if err := rec.Start(); err != nil {
		t.Fatalf("perf record: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // perf attaches
	r, _ := perfdhcp(t, l, s, family, rate, secs)
	_ = rec.Process.Signal(syscall.SIGINT)
	if err := rec.Wait(); err != nil && !interrupted(err) {
		t.Fatalf("perf record: %v\n%s", err, recOut.String())
	}
	out, err := exec.Command("perf", "script", "-i", data, "-F", "comm,tid,time,period,ip,sym,dso").Output()
	if err != nil {
		t.Fatalf("perf script: %v", err)
	}
	return parsePerfScript(string(out), time.Second/perfProfileHz), r.sent()
}

// unstrippedDsbridge builds dsbridge as released but with its symbols, so
// that perf can name the functions (the code is the same).
func unstrippedDsbridge(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dsbridge")
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := buildBinary(bin, "./cmd/dsbridge", false); err != nil {
		t.Fatal(err)
	}
	return bin
}

// perfProfile: where each server's CPU time per request goes, from a perf
// profile of one CPU-per-exchange run each (the same load as perfCPU).
func perfProfile(t *testing.T, cfg perfConfig, tab *perfTable) {
	if _, err := exec.LookPath("perf"); err != nil {
		t.Skip("perf (Debian's linux-perf) is not installed: make perf installs it")
	}
	bin := unstrippedDsbridge(t)
	servers := []addrServer{
		{"dsbridge", func(t *testing.T, l *lab.Lab) *perfServer { return startServe(t, l, serveOptions{bin: bin}) }},
		{"dnsmasq", startDnsmasq},
	}
	for _, family := range []string{"4", "6"} {
		per := map[string]profile{}
		for _, srv := range servers {
			t.Run("v"+family+"/"+srv.name, func(t *testing.T) {
				l := lab.NewLab(t, lab.KubeOVN)
				s := srv.start(t, l)
				perfdhcpLab(t, l, s, family)
				p, requests := profileServer(t, l, s, family, cfg.rate, cfg.secs)
				for k, v := range p {
					p[k] = v / time.Duration(max(requests, 1))
				}
				t.Logf("PERF profile family=%s server=%s requests=%d %v", family, srv.name, requests, p)
				per[srv.name] = p
			})
		}
		what := map[string]string{"4": "DHCPv4 (DORA)", "6": "DHCPv6 (SARR)"}[family]
		var dTotal, mTotal time.Duration
		for _, part := range profileParts {
			d, m := per["dsbridge"][part], per["dnsmasq"][part]
			dTotal, mTotal = dTotal+d, mTotal+m
			tab.row(fmt.Sprintf("CPU per %s request at %d/s, %s (µs, perf profile)", what, cfg.rate, part),
				usCell(d), usCell(m), "-", "-")
		}
		tab.row(fmt.Sprintf("CPU per %s request at %d/s, all (µs, perf profile)", what, cfg.rate),
			usCell(dTotal), usCell(mTotal), ratio(dTotal.Seconds(), mTotal.Seconds()), "<= 0.5")
	}
}

// interrupted reports perf record's exit on the SIGINT that ends it.
func interrupted(err error) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && (ws.Signaled() && ws.Signal() == syscall.SIGINT || ws.Exited() && ws.ExitStatus() == 130)
}

func usCell(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 1, 64)
}
