package e2e

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/mdlayher/ndp"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/e2e/lab"
)

// rssBudget is the sidecar's memory target serving one interface under
// load.
const rssBudget = 20 << 20

// TestFloodLeavesServerResponsive: a guest flooding DISCOVER, Solicit and
// RS from its own MAC at line rate for 10 s leaves dsbridge alive, within
// its memory budget, and serving: clients started right after the flood get
// both leases and an RA. Whether clients started during the flood get
// theirs is logged, not asserted: the flood and the guest's own client
// share the VM's rate limit, by design.
func TestFloodLeavesServerResponsive(t *testing.T) {
	if testing.Short() {
		t.Skip("a 10 s flood in -short mode")
	}
	l := lab.NewLab(t, lab.KubeOVN)
	// Info level: per-packet debug lines would measure the logger.
	s := serve(t, l, "", "--log-level", "info")
	pid := dsbridgePID(t, s)
	inj := newInjector(t, l)
	mem := readRSS(t, pid)

	during4 := l.Dhclient(t, "-4", "")
	during6 := l.Dhclient(t, "-6", "")
	res := inj.flood(10*time.Second, floodFrames(l.VMMAC(), 256), func() { mem.peak(readRSS(t, pid)) })
	alive(t, s, pid)
	end := time.Now()
	t.Logf("flood: %d frames in %v (%.0f frames/s) from %s", res.sent, res.took, float64(res.sent)/res.took.Seconds(), l.Spec.MAC)
	t.Logf("dsbridge VmRSS idle %d KiB (VmHWM %d), sampled peak while flooded %d KiB (anon %d, file %d), VmHWM %d KiB (budget %d KiB)",
		mem.first>>10, mem.hwm>>10, mem.max>>10, mem.anon>>10, mem.file>>10, readRSS(t, pid).hwm>>10, rssBudget>>10)
	// VmHWM lags VmRSS: the peak is the larger of it and the samples.
	if peak := max(mem.max, readRSS(t, pid).hwm); peak > rssBudget {
		t.Errorf("dsbridge's peak VmRSS is %d KiB, over the %d KiB budget", peak>>10, rssBudget>>10)
	}
	for _, c := range []struct {
		client *lab.Client
		reason string
	}{{during4, "BOUND"}, {during6, "BOUND6"}} {
		if _, err := os.Stat(c.client.Dir + "/" + c.reason + ".env"); err == nil {
			t.Logf("a dhclient started during the flood got its lease (%s) during it", c.reason)
		} else {
			t.Logf("a dhclient started during the flood had no lease (%s) when it ended", c.reason)
		}
		c.client.Stop()
	}

	// Right after: fresh clients get both leases, and an RS is answered.
	l.Guest.Run(t, "ip", "addr", "flush", "dev", l.GuestIf, "scope", "global")
	c4 := l.Dhclient(t, "-4", "")
	c6 := l.Dhclient(t, "-6", "")
	envHas(t, c4.Env(t, 10*time.Second, "BOUND"), "new_ip_address", "10.16.0.5")
	envHas(t, c6.Env(t, 10*time.Second, "BOUND6"), "new_ip6_address", "fd00:10:16::5")
	t.Logf("both leases %v after the flood", time.Since(end).Round(time.Millisecond))
	if ra := rdisc6(t, l); !strings.Contains(ra, "from "+l.GatewayLLA()) {
		t.Errorf("rdisc6 after the flood: no RA from %s:\n%s", l.GatewayLLA(), ra)
	}
	noPanic(t, s)
}

// TestMalformedFromGuest: truncated and garbage DHCPv4, DHCPv6, ICMPv6 and
// ARP frames from the guest's MAC (hand-made cases, then random mutations
// of valid requests inside valid headers, paced under the rate limits so
// they reach the parsers) are dropped: dsbridge stays up, logs no panic or
// error, and still serves real clients.
func TestMalformedFromGuest(t *testing.T) {
	l := lab.NewLab(t, lab.KubeOVN)
	s := serve(t, l, "")
	pid := dsbridgePID(t, s)
	inj := newInjector(t, l)
	mac := l.VMMAC()
	cases := malformedFrames(mac)
	for _, f := range cases {
		inj.send(t, f)
		time.Sleep(25 * time.Millisecond) // 40/s: under the DHCPv4 limit
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const mutants = 200
	start := time.Now()
	for i := range mutants {
		inj.send(t, mutant(rng, mac, i))
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("sent %d hand-made and %d mutated frames in %v", len(cases), mutants, time.Since(start).Round(time.Millisecond))
	time.Sleep(time.Second) // let the rate limits refill
	alive(t, s, pid)
	noPanic(t, s)
	// The garbage reached every parser: each logged a drop at debug level.
	for _, drop := range [][]string{
		{`"msg":"dropped a request"`, `"server":"DHCPv4"`, `"reason":"malformed"`},
		{`"msg":"dropped a request"`, `"server":"DHCPv6"`, `"reason":"malformed"`},
		{"ignoring frame from the VM"},
	} {
		if !hasLine(s.out.String(), drop...) {
			t.Errorf("dsbridge's debug log has no line with %q: the garbage never reached that parser", drop)
		}
	}

	l.Guest.Run(t, "ip", "addr", "flush", "dev", l.GuestIf, "scope", "global")
	c4 := l.Dhclient(t, "-4", "")
	c6 := l.Dhclient(t, "-6", "")
	envHas(t, c4.Env(t, 10*time.Second, "BOUND"), "new_ip_address", "10.16.0.5")
	envHas(t, c6.Env(t, 10*time.Second, "BOUND6"), "new_ip6_address", "fd00:10:16::5")
	waitConfigured(t, l)
	alive(t, s, pid)
}

// injector writes whole frames out of the guest's NIC.
type injector struct{ c *frame.PacketConn }

// newInjector brings the guest's link up and opens a packet socket on it
// (its receive filter matches nothing: it only sends).
func newInjector(t *testing.T, l *lab.Lab) *injector {
	t.Helper()
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "up")
	var c *frame.PacketConn
	err := l.Guest.Do(func() error {
		var err error
		c, err = frame.Listen(l.GuestIf, frame.Filter{SrcMAC: frame.MAC{2, 0, 0, 0, 0, 0x99}, Kind: frame.KindDHCPv4})
		return err
	})
	if err != nil {
		t.Fatalf("packet socket in the guest: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &injector{c: c}
}

func (i *injector) send(t *testing.T, f []byte) {
	t.Helper()
	if err := i.c.WriteFrame(f); err != nil {
		t.Fatalf("send %d-byte frame from the guest: %v", len(f), err)
	}
}

type floodResult struct {
	sent int
	took time.Duration
}

// flood writes frames round-robin as fast as the socket takes them for d,
// calling sample every 100 ms from another goroutine.
func (i *injector) flood(d time.Duration, frames [][]byte, sample func()) floodResult {
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for tick := time.NewTicker(100 * time.Millisecond); !stop.Load(); <-tick.C {
			sample()
		}
	}()
	start, sent := time.Now(), 0
	for deadline := start.Add(d); time.Now().Before(deadline); {
		for range 64 {
			// ENOBUFS under load only means the frame was dropped.
			if err := i.c.WriteFrame(frames[sent%len(frames)]); err == nil {
				sent++
			}
		}
	}
	took := time.Since(start)
	stop.Store(true)
	<-done
	return floodResult{sent: sent, took: took}
}

// floodFrames are n each of DISCOVER, Solicit and RS from mac, with
// distinct transaction IDs, interleaved.
func floodFrames(mac frame.MAC, n int) [][]byte {
	var out [][]byte
	for i := range n {
		out = append(out, discoverFrame(mac, uint32(i)), solicitFrame(mac, uint32(i)), rsFrame(mac, rsBody(mac)))
	}
	return out
}

var (
	allDHCP6   = netip.MustParseAddr("ff02::1:2")
	allRouters = netip.MustParseAddr("ff02::2")
)

func discoverPayload(mac frame.MAC, xid uint32) []byte {
	var id dhcpv4.TransactionID
	binary.BigEndian.PutUint32(id[:], xid)
	m, err := dhcpv4.NewDiscovery(mac.HardwareAddr(), dhcpv4.WithTransactionID(id))
	if err != nil {
		panic(err) // programmer invariant: constant, valid input
	}
	return m.ToBytes()
}

func udp4Frame(mac frame.MAC, payload []byte) []byte {
	return frame.AppendUDP4(nil, frame.UDP4{Eth: frame.Ethernet{Dst: frame.Broadcast, Src: mac},
		Src: netip.IPv4Unspecified(), Dst: netip.AddrFrom4([4]byte{255, 255, 255, 255}),
		SrcPort: 68, DstPort: 67, TTL: 64, Payload: payload})
}

func discoverFrame(mac frame.MAC, xid uint32) []byte {
	return udp4Frame(mac, discoverPayload(mac, xid))
}

func solicitPayload(mac frame.MAC, xid uint32) []byte {
	m, err := dhcpv6.NewSolicit(mac.HardwareAddr())
	if err != nil {
		panic(err) // programmer invariant: constant, valid input
	}
	m.TransactionID = dhcpv6.TransactionID{byte(xid >> 16), byte(xid >> 8), byte(xid)}
	return m.ToBytes()
}

func udp6Frame(mac frame.MAC, payload []byte) []byte {
	return frame.AppendUDP6(nil, frame.UDP6{Eth: frame.Ethernet{Dst: frame.MulticastMAC(allDHCP6), Src: mac},
		Src: frame.LinkLocalFromMAC(mac), Dst: allDHCP6, SrcPort: 546, DstPort: 547, HopLimit: 1, Payload: payload})
}

func solicitFrame(mac frame.MAC, xid uint32) []byte {
	return udp6Frame(mac, solicitPayload(mac, xid))
}

func rsBody(mac frame.MAC) []byte {
	b, err := ndp.MarshalMessage(&ndp.RouterSolicitation{
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: mac.HardwareAddr()}}})
	if err != nil {
		panic(err) // programmer invariant: constant, valid input
	}
	return b
}

func rsFrame(mac frame.MAC, body []byte) []byte {
	return frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: frame.MulticastMAC(allRouters), Src: mac},
		Src: frame.LinkLocalFromMAC(mac), Dst: allRouters, HopLimit: 255, Payload: body})
}

// malformedFrames are hand-made bad frames from mac: broken headers, and
// well-framed garbage for each parser.
func malformedFrames(mac frame.MAC) [][]byte {
	disc, sol, rs := discoverFrame(mac, 7), solicitFrame(mac, 7), rsFrame(mac, rsBody(mac))
	dp, sp := discoverPayload(mac, 7), solicitPayload(mac, 7)
	var out [][]byte
	// Truncated frames: every header cut short.
	for _, f := range [][]byte{disc, sol, rs} {
		for _, n := range []int{14, 15, 20, 33, 34, 41, 42, 53, 54, 61, 62, 100, len(f) - 1} {
			if n < len(f) {
				out = append(out, pad(f[:n]))
			}
		}
	}
	// IPv4 header checksum broken, total length beyond the frame, IHL
	// below 5 and beyond the frame, a fragment, UDP length beyond the
	// datagram.
	for _, edit := range []func(b []byte){
		func(b []byte) { b[24] ^= 0xff },
		func(b []byte) { binary.BigEndian.PutUint16(b[16:], 0xffff) },
		func(b []byte) { b[14] = 0x41 },
		func(b []byte) { b[14] = 0x4f },
		func(b []byte) { b[20] |= 0x20 },
		func(b []byte) { binary.BigEndian.PutUint16(b[38:], 0xffff) },
	} {
		f := append([]byte(nil), disc...)
		edit(f)
		out = append(out, f)
	}
	// Well-framed DHCPv4 garbage: empty, short, bad cookie, option running
	// past the end, no message type, unknown message type, no end option.
	badCookie := append([]byte(nil), dp...)
	copy(badCookie[236:], []byte{1, 2, 3, 4})
	out = append(out, udp4Frame(mac, nil), udp4Frame(mac, dp[:10]), udp4Frame(mac, dp[:239]), udp4Frame(mac, badCookie),
		udp4Frame(mac, append(append([]byte(nil), dp[:240]...), 53, 200, 1)),
		udp4Frame(mac, append(append([]byte(nil), dp[:240]...), 255)),
		udp4Frame(mac, append(append([]byte(nil), dp[:240]...), 53, 1, 99, 255)),
		udp4Frame(mac, append(append([]byte(nil), dp[:240]...), 53, 1, 1, 50, 4, 10)))
	// Well-framed DHCPv6 garbage: empty, type only, unknown type, an
	// option longer than the message, Relay-Forward with a truncated
	// relay message, nested Relay-Forwards.
	relay := append([]byte{12, 0}, make([]byte, 32)...)
	relay = append(relay, 0, 9, 0xff, 0xff, 1)
	nested := sp
	for range 30 {
		nested = append(append(append([]byte{12, 0}, make([]byte, 32)...), 0, 9, byte(len(nested)>>8), byte(len(nested))), nested...)
	}
	out = append(out, udp6Frame(mac, nil), udp6Frame(mac, sp[:1]), udp6Frame(mac, []byte{255, 1, 2, 3}),
		udp6Frame(mac, append(append([]byte(nil), sp[:4]...), 0, 1, 0xff, 0xff, 1)), udp6Frame(mac, relay), udp6Frame(mac, nested))
	// ICMPv6: RS with a bad checksum, a hop limit of 64, code 1, a
	// zero-length option, an option past the end, and a 2-byte message.
	badSum := append([]byte(nil), rs...)
	badSum[len(badSum)-1] ^= 0xff
	hop := append([]byte(nil), rs...)
	hop[21] = 64
	code1 := rsBody(mac)
	code1[1] = 1
	zeroOpt := append(append([]byte(nil), rsBody(mac)[:8]...), 1, 0, 0, 0, 0, 0, 0, 0)
	longOpt := append(append([]byte(nil), rsBody(mac)[:8]...), 1, 9, 0, 0)
	out = append(out, badSum, hop, rsFrame(mac, code1), rsFrame(mac, zeroOpt), rsFrame(mac, longOpt), rsFrame(mac, []byte{133, 0}))
	// ARP: truncated, and a request with nonsense lengths.
	arp := frame.AppendARP(nil, frame.Ethernet{Dst: frame.Broadcast, Src: mac}, frame.ARP{Op: 1, SenderMAC: mac,
		TargetMAC: frame.MAC{}, SenderIP: netip.MustParseAddr("10.16.0.5"), TargetIP: netip.MustParseAddr(serverID4)})
	arpBad := append([]byte(nil), arp...)
	arpBad[18], arpBad[19] = 200, 200
	out = append(out, pad(arp[:20]), arpBad)
	return out
}

// mutant is a valid DISCOVER, Solicit or RS (by i) with random bytes of
// its payload changed and a random tail cut off, inside valid headers, so
// it reaches the protocol parser.
func mutant(rng *rand.Rand, mac frame.MAC, i int) []byte {
	var p []byte
	switch i % 3 {
	case 0:
		p = discoverPayload(mac, rng.Uint32())
	case 1:
		p = solicitPayload(mac, rng.Uint32())
	default:
		p = rsBody(mac)
	}
	for range 1 + rng.IntN(8) {
		p[rng.IntN(len(p))] = byte(rng.Uint32())
	}
	p = p[:1+rng.IntN(len(p))]
	switch i % 3 {
	case 0:
		return udp4Frame(mac, p)
	case 1:
		return udp6Frame(mac, p)
	default:
		p[0] = 133 // keep it an RS, so the RA parser sees it
		return rsFrame(mac, p)
	}
}

// pad extends a frame to Ethernet's 60-byte minimum with zeros, as a NIC
// would.
func pad(b []byte) []byte {
	out := append([]byte(nil), b...)
	for len(out) < 60 {
		out = append(out, 0)
	}
	return out
}

// dsbridgePID is the server's PID: `ip netns exec` execs dsbridge.
func dsbridgePID(t *testing.T, s *server) int {
	t.Helper()
	pid := s.cmd.Process.Pid
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "dsbridge" {
		t.Fatalf("process %d is %q, not dsbridge: %v", pid, comm, err)
	}
	return pid
}

// alive fails the test when dsbridge has exited.
func alive(t *testing.T, s *server, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) || procState(pid) == "Z" {
		t.Fatalf("dsbridge (pid %d) died:\n%s", pid, s.out.String())
	}
}

// noPanic fails the test when dsbridge logged a recovered panic or an
// error.
func noPanic(t *testing.T, s *server) {
	t.Helper()
	for _, line := range strings.Split(s.out.String(), "\n") {
		if strings.Contains(line, "panic") || strings.Contains(line, `"level":"error"`) {
			t.Errorf("dsbridge logged: %s", line)
		}
	}
}

// memory is a process's VmRSS and VmHWM in bytes, with the first and
// largest VmRSS of a series of samples.
type memory struct {
	rss, hwm, anon, file int64
	first, max           int64
}

func (m *memory) peak(s memory) {
	if s.rss > m.max {
		m.max, m.anon, m.file = s.rss, s.anon, s.file
	}
}

// readRSS reads VmRSS and VmHWM from /proc/<pid>/status.
func readRSS(t *testing.T, pid int) memory {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Errorf("read dsbridge's memory: %v", err)
		return memory{}
	}
	defer f.Close()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kib int64
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kib); err == nil {
				switch k {
				case "VmRSS":
					m.rss = kib << 10
				case "VmHWM":
					m.hwm = kib << 10
				case "RssAnon":
					m.anon = kib << 10
				case "RssFile":
					m.file = kib << 10
				}
			}
		}
	}
	m.first, m.max = m.rss, m.rss
	return m
}

// procState is the one-letter state of pid ("Z" for a zombie), or "".
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return strings.SplitN(after, " ", 2)[0]
}
