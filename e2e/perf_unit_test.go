package e2e

import (
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// The tests of make perf's own machinery: cheap, no root, in make test.

func TestParsePerfdhcp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want perfdhcpRun
	}{
		{"perfdhcp-4.txt", perfdhcpRun{Rate: 49.9795, Offered: 100, Exchanges: [2]perfdhcpExchange{
			{Name: "DISCOVER-OFFER", Sent: 100, Received: 100, AvgMS: 0.260},
			{Name: "REQUEST-ACK", Sent: 100, Received: 100, AvgMS: 0.087}}}},
		{"perfdhcp-6.txt", perfdhcpRun{Rate: 49.9649, Offered: 100, Exchanges: [2]perfdhcpExchange{
			{Name: "SOLICIT-ADVERTISE", Sent: 100, Received: 100, AvgMS: 0.254},
			{Name: "REQUEST-REPLY", Sent: 100, Received: 100, AvgMS: 0.095}}}},
	}
	for _, tt := range tests {
		b, err := os.ReadFile(filepath.Join("testdata", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		got, err := parsePerfdhcp(string(b))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.file, diff)
		}
		if got.Completed() != 100 || got.DropRatio() != 0 {
			t.Errorf("%s: completed %d, drop ratio %v; want 100, 0", tt.file, got.Completed(), got.DropRatio())
		}
	}
	if _, err := parsePerfdhcp("Rate: 1 4-way exchanges/second, expected rate: 1\n"); err == nil {
		t.Error("a report without exchange statistics parsed")
	}
}

func TestGeneratorLimited(t *testing.T) {
	t.Parallel()
	ex := func(sent, drops int) [2]perfdhcpExchange {
		return [2]perfdhcpExchange{{Sent: sent, Drops: drops}, {Sent: sent}}
	}
	tests := []struct {
		name string
		run  perfdhcpRun
		want bool
	}{
		{"on time", perfdhcpRun{Exchanges: ex(3000, 0), Replied: 6000, Sending: 3010 * time.Millisecond, Planned: 3 * time.Second}, false},
		{"late, all answered", perfdhcpRun{Exchanges: ex(3000, 0), Replied: 6000, Sending: 4 * time.Second, Planned: 3 * time.Second}, true},
		{"late, all answered, perfdhcp lost some", perfdhcpRun{Exchanges: ex(3000, 30), Replied: 6000, Sending: 4 * time.Second, Planned: 3 * time.Second}, true},
		{"late with drops: the server", perfdhcpRun{Exchanges: ex(3000, 30), Replied: 5970, Sending: 4 * time.Second, Planned: 3 * time.Second}, false},
	}
	for _, tt := range tests {
		if got := tt.run.GeneratorLimited(); got != tt.want {
			t.Errorf("%s: GeneratorLimited = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestServerLossRatio(t *testing.T) {
	t.Parallel()
	run := func(sent, replied int) perfdhcpRun {
		return perfdhcpRun{Exchanges: [2]perfdhcpExchange{{Sent: sent}, {Sent: sent}}, Replied: replied}
	}
	tests := []struct {
		name string
		run  perfdhcpRun
		want float64
	}{
		{"all answered", run(3000, 6000), 0},
		{"one in a hundred not", run(3000, 5940), 0.01},
		{"more replies than requests (a retransmission answered twice)", run(3000, 6010), 0},
		{"nothing sent", run(0, 0), 1},
	}
	for _, tt := range tests {
		if got := tt.run.ServerLossRatio(); got != tt.want {
			t.Errorf("%s: ServerLossRatio = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestParseUDPCounter(t *testing.T) {
	t.Parallel()
	snmp := "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 1633 0 0 1635 17 0\n" +
		"UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdpLite: 0 0 0 0 0 0\n"
	snmp6 := "Udp6InDatagrams                 \t808\nUdp6OutDatagrams \t809\nUdp6RcvbufErrors  \t5\n"
	tests := []struct {
		out, family, name string
		want              uint64
	}{
		{snmp, "4", "RcvbufErrors", 17},
		{snmp, "4", "OutDatagrams", 1635},
		{snmp6, "6", "RcvbufErrors", 5},
		{snmp6, "6", "OutDatagrams", 809},
	}
	for _, tt := range tests {
		got, err := parseUDPCounter(tt.out, tt.family, tt.name)
		if err != nil || got != tt.want {
			t.Errorf("parseUDPCounter(%s, %s) = %d, %v; want %d", tt.family, tt.name, got, err, tt.want)
		}
	}
	if _, err := parseUDPCounter(snmp, "4", "Nope"); err == nil {
		t.Error("parseUDPCounter found a counter that is not there")
	}
}

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	// proc(5): pid (comm) state ppid ... utime (14) stime (15) ...
	stat := "4242 (dsbridge x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 37 5 0 0 20 0 9 0 123 456 789"
	got, err := parseStatCPU(stat)
	if err != nil || got.CPU != 420*time.Millisecond {
		t.Errorf("parseStatCPU = %v, %v; want 420ms (42 ticks)", got.CPU, err)
	}
	if _, err := parseStatCPU("4242 (x) S 1"); err == nil {
		t.Error("a short stat line parsed")
	}
}

func TestGCCycles(t *testing.T) {
	t.Parallel()
	out := `{"level":"info"}
gc 1 @0.011s 2%: 0.010+0.50+0.003 ms clock, 0.021+0.1/0.2/0+0.007 ms cpu, 3->3->0 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P
gc 2 @1.500s 0%: 0.011+0.40+0.004 ms clock, 0.022+0.1/0.2/0+0.008 ms cpu, 3->3->0 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P
`
	if got := gcCycles(out); got != 2 {
		t.Errorf("gcCycles = %d, want 2", got)
	}
	if got := gcCycles("no trace"); got != 0 {
		t.Errorf("gcCycles without a trace = %d, want 0", got)
	}
}

// writePcap writes frames as a little-endian, microsecond pcap file.
func writePcap(t *testing.T, frames []pcapFrame) string {
	t.Helper()
	b := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)
	b = binary.LittleEndian.AppendUint32(b, 65535)
	b = binary.LittleEndian.AppendUint32(b, 1) // Ethernet
	for _, f := range frames {
		b = binary.LittleEndian.AppendUint32(b, uint32(f.At.Unix()))
		b = binary.LittleEndian.AppendUint32(b, uint32(f.At.Nanosecond()/1000))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Data)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Data)))
		b = append(b, f.Data...)
	}
	path := filepath.Join(t.TempDir(), "capture.pcap")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBreakdown: from a capture of a guest's link up, the server's answer
// times are summed (a DHCPv4 DORA, a DHCPv6 Solicit answered by Rapid
// Commit, an RS and its RA; an unsolicited RA costs nothing) and the first
// request of each protocol is timed from the link up.
func TestBreakdown(t *testing.T) {
	t.Parallel()
	vm, srv := frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x05}, frame.MAC{0x02, 0, 0, 0, 0, 1}
	up := time.Unix(1000, 0)
	at := func(ms float64) time.Time { return up.Add(time.Duration(ms * float64(time.Millisecond))) }
	v4 := func(src, dst frame.MAC, typ byte) []byte {
		p := make([]byte, 244)
		p[0] = 1
		binary.BigEndian.PutUint32(p[4:], 0xabcd)
		copy(p[236:], []byte{99, 130, 83, 99})
		p = append(p, 53, 1, typ, 255)
		dport := uint16(67)
		if src != vm {
			dport = 68
		}
		return frame.AppendUDP4(nil, frame.UDP4{Eth: frame.Ethernet{Dst: dst, Src: src}, Src: netip.IPv4Unspecified(),
			Dst: netip.MustParseAddr("255.255.255.255"), SrcPort: 68, DstPort: dport, Payload: p})
	}
	v6 := func(src frame.MAC, typ byte) []byte {
		dport := uint16(547)
		if src != vm {
			dport = 546
		}
		return frame.AppendUDP6(nil, frame.UDP6{Eth: frame.Ethernet{Dst: vm, Src: src}, Src: frame.LinkLocalFromMAC(src),
			Dst: netip.MustParseAddr("ff02::1:2"), SrcPort: 546, DstPort: dport, Payload: []byte{typ, 0x12, 0x34, 0x56}})
	}
	nd := func(src frame.MAC, typ byte) []byte {
		return frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: vm, Src: src}, Src: frame.LinkLocalFromMAC(src),
			Dst: netip.MustParseAddr("ff02::2"), HopLimit: 255, Payload: []byte{typ, 0, 0, 0, 0, 0, 0, 0}})
	}
	path := writePcap(t, []pcapFrame{
		{at(1), nd(srv, 134)}, // an unsolicited RA: no one waits
		{at(5), nd(vm, 133)},
		{at(40), v4(vm, frame.Broadcast, 1)},
		{at(40.5), v4(srv, vm, 2)},
		{at(41), v4(vm, frame.Broadcast, 3)},
		{at(41.25), v4(srv, vm, 5)},
		{at(105), nd(srv, 134)},
		{at(300), v6(vm, 1)},
		{at(300.25), v6(srv, 7)},
		{at(900), v4(vm, frame.Broadcast, 1)}, // after the guest was configured: not counted
	})
	frames, err := readPcap(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 10 || !frames[2].At.Equal(at(40)) {
		t.Fatalf("read %d frames, the third at %v; want 10, at %v", len(frames), frames[2].At, at(40))
	}
	got := breakdownOf(classifyFrames(frames, vm), up, at(400))
	want := breakdown{Server: 101 * time.Millisecond, FirstV4: 40 * time.Millisecond, FirstV6: 300 * time.Millisecond,
		FirstRS: 5 * time.Millisecond, RSWait: 100 * time.Millisecond, Replies: 4}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("breakdown (-want +got):\n%s", diff)
	}
}

func TestPerfTable(t *testing.T) {
	t.Parallel()
	var p perfTable
	p.row("CPU", "0.5", "1.0", ratio(0.5, 1), "<= 0.5")
	p.row("rate", "8000", "0", ratio(8000, 0), ">= 2")
	p.note("load: 1 2 3")
	want := "| Measure | dsbridge | dnsmasq (or as stated) | ratio | goal |\n|---|---|---|---|---|\n" +
		"| CPU | 0.5 | 1.0 | 0.50 | <= 0.5 |\n| rate | 8000 | 0 | - | >= 2 |\n\nload: 1 2 3\n"
	if diff := cmp.Diff(want, p.String()); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
	if got := medianDur([]time.Duration{3, 1, 2, 10}); got != 2 {
		t.Errorf("median of 1, 2, 3, 10 = %v, want 2 (the mean of 2 and 3, truncated)", got)
	}
	if got := medianDur(nil); got != 0 {
		t.Errorf("median of nothing = %v, want 0", got)
	}
}

func TestParsePerfScript(t *testing.T) {
	t.Parallel()
	out := `dsbridge 101 10.000001:    1000000 cpu-clock:ppp:
	ffffffff82242009 pvm_irq_enable+0x19 ([kernel.kallsyms])
	ffffffff8223c33a schedule_hrtimeout_range_clock+0xba ([kernel.kallsyms])
	ffffffff81733a10 do_epoll_wait+0x4d0 ([kernel.kallsyms])
	ffffffff8223c951 do_syscall_64+0x71 ([kernel.kallsyms])
	            aa0e internal/runtime/syscall/linux.Syscall6+0xe (/tmp/dsbridge)
	           55690 runtime.findRunnable+0x650 (/tmp/dsbridge)

dsbridge 101 10.000002:    1000000 cpu-clock:ppp:
	ffffffff81ea383f sock_def_readable+0x25f ([kernel.kallsyms])
	ffffffff8219a371 packet_sendmsg+0xb21 ([kernel.kallsyms])
	ffffffff816dcb43 ksys_write+0xc3 ([kernel.kallsyms])
	ffffffff8223c951 do_syscall_64+0x71 ([kernel.kallsyms])
	            aa0e internal/runtime/syscall/linux.Syscall6+0xe (/tmp/dsbridge)

dsbridge 101 10.000003:    1000000 cpu-clock:ppp:
	ffffffff8223c925 pvm_irq_enable+0x45 ([kernel.kallsyms])
	ffffffff8223c951 exit_to_user_mode_loop+0x71 ([kernel.kallsyms])
	ffffffff8223c951 do_syscall_64+0x71 ([kernel.kallsyms])

dsbridge 102 10.000004:    1000000 cpu-clock:ppp:
	          1c06a6 github.com/dsbridge/dsbridge/dhcp/dhcp4.appendReply+0x46 (/tmp/dsbridge)
	          33fc53 github.com/dsbridge/dsbridge/dhcp/serve.(*Server).Run+0x4b3 (/tmp/dsbridge)

dsbridge 102 10.000005:    1000000 cpu-clock:ppp:
	           55690 runtime.findRunnable+0x650 (/tmp/dsbridge)

dnsmasq 103 10.000006:    1000000 cpu-clock:ppp:
	ffffffff816dcb43 __x64_sys_ioctl+0xc3 ([kernel.kallsyms])
	ffffffff8223c951 do_syscall_64+0x71 ([kernel.kallsyms])

dnsmasq 103 10.000007:    1000000 cpu-clock:ppp:
	           2a0e3 [unknown] (/usr/sbin/dnsmasq)

dnsmasq 103 10.000008:    1000000 cpu-clock:ppp:
	           fe0e3 __libc_recvmsg+0x13 (/usr/lib/x86_64-linux-gnu/libc.so.6)
`
	got := parsePerfScript(out, time.Millisecond)
	want := profile{partWait: time.Millisecond, partSend: time.Millisecond, partKernel: time.Millisecond,
		partOwn: 2 * time.Millisecond, partRuntime: 2 * time.Millisecond, partOtherSC: time.Millisecond}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parsePerfScript (-want +got):\n%s", diff)
	}
}

func TestParseCPUTicks(t *testing.T) {
	t.Parallel()
	busy, err := parseCPUTicks("cpu  100 5 50 800 20 3 7 2 9 1\ncpu0 50 2 25 400 10 1 3 1 0 0\n")
	if err != nil || busy != 167 {
		t.Errorf("parseCPUTicks = %d, %v; want 167", busy, err)
	}
	if _, err := parseCPUTicks("intr 1 2 3\n"); err == nil {
		t.Error("parseCPUTicks read a line that is not cpu's")
	}
}
