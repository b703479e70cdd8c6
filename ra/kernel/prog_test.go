package kernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/ra"
	"github.com/mdlayher/ndp"
)

// tc verdicts (include/uapi/linux/pkt_cls.h).
const (
	actOK       = 0
	actShot     = 2
	actRedirect = 7
)

// Interface indexes in BPF_PROG_TEST_RUN: the program runs on lo (1), and
// frames from the VM arrived on the tap (any other index).
const (
	uplinkIndex = 1
	tapIndex    = 7
)

// skbContext is the prefix of struct __sk_buff that BPF_PROG_TEST_RUN
// accepts: ingress_ifindex and ifindex (the device the program runs on).
type skbContext struct {
	Len, PktType, Mark, QueueMapping, Protocol, VlanPresent, VlanTCI, VlanProto, Priority uint32
	IngressIfindex, Ifindex                                                               uint32
}

var (
	vmMAC  = frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x05}
	vmLLA  = netip.MustParseAddr("fe80::858:aff:fe10:5")
	gwLLA  = netip.MustParseAddr("fe80::858:aff:fe10:1")
	gwMAC  = frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x01}
	bridge = frame.MAC{0x02, 0x00, 0x00, 0x00, 0x00, 0x99}
)

// ndFrame is an ND message in a frame: src MAC, IPv6 source and
// destination, hop limit.
func ndFrame(t testing.TB, src frame.MAC, ip, dst netip.Addr, hops uint8, m ndp.Message) []byte {
	t.Helper()
	b, err := ndp.MarshalMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	return frame.AppendICMP6(nil, frame.ICMP6{
		Eth: frame.Ethernet{Dst: frame.MulticastMAC(dst), Src: src},
		Src: ip, Dst: dst, HopLimit: hops, Payload: b,
	})
}

func rs(t testing.TB, src frame.MAC) []byte {
	return ndFrame(t, src, vmLLA, netip.MustParseAddr("ff02::2"), 255, &ndp.RouterSolicitation{
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: src.HardwareAddr()}},
	})
}

func ns(t testing.TB, target netip.Addr) []byte {
	return ndFrame(t, vmMAC, vmLLA, target, 255, &ndp.NeighborSolicitation{TargetAddress: target})
}

// testProgram loads the programs for cfg in a fresh network namespace; run
// executes one there with BPF_PROG_TEST_RUN (a clone it sends goes out that
// namespace's lo).
type testProgram struct {
	ns   *lab.NS
	coll *ebpf.Collection
	v    vars
}

func newTestProgram(t testing.TB, cfg Config) *testProgram {
	t.Helper()
	v, err := compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	coll, err := load(v, ebpf.ProgramOptions{})
	if errors.Is(err, os.ErrPermission) {
		t.Skipf("loading BPF programs needs CAP_BPF and CAP_NET_ADMIN: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { coll.Close() })
	return &testProgram{ns: lab.NewNS(t), coll: coll, v: v}
}

// run runs the egress program on a frame that arrived on ingress.
func (p *testProgram) run(t testing.TB, in []byte, ingress uint32) (uint32, []byte) {
	t.Helper()
	v := p.exec(t, egressProgram, in, skbContext{IngressIfindex: ingress, Ifindex: uplinkIndex})
	return v.act, v.out
}

// exec runs program name on in with ctx and returns the verdict, the frame
// and the mark it leaves.
func (p *testProgram) exec(t testing.TB, name string, in []byte, ctx skbContext) verdict {
	t.Helper()
	var ret uint32
	// The kernel writes all of struct __sk_buff back (ENOSPC if it does not fit).
	var out struct {
		skbContext
		_ [256]byte
	}
	opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, 2*maxFrame), Context: ctx, ContextOut: &out}
	err := p.ns.Do(func() error {
		var err error
		ret, err = p.coll.Programs[name].Run(opts)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return verdict{act: ret, out: opts.DataOut, mark: out.Mark}
}

// forget resets the time of the last advertisement.
func (p *testProgram) forget(t testing.TB) {
	t.Helper()
	if err := p.coll.Variables["last_ra_ns"].Set(uint64(0)); err != nil {
		t.Fatal(err)
	}
}

// state reads what the programs learned.
func (p *testProgram) state(t testing.TB) learned {
	t.Helper()
	var s learned
	for name, v := range map[string]any{"vm_lla_iid": &s.iid, "pod_mac": &s.podMAC, "vm_seen": &s.vmMAC, "vm_port": &s.port} {
		if err := p.coll.Variables[name].Get(v); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// setState sets what the programs learned.
func (p *testProgram) setState(t testing.TB, s learned) {
	t.Helper()
	for name, v := range map[string]any{"vm_lla_iid": s.iid, "pod_mac": s.podMAC, "vm_seen": s.vmMAC, "vm_port": s.port} {
		if err := p.coll.Variables[name].Set(v); err != nil {
			t.Fatal(err)
		}
	}
}

type step struct {
	in      []byte
	ingress uint32
	answer  bool // redirected as the RA to the frame's source, else passed unchanged
}

// runSteps feeds the steps in order to one program built from cfg and
// checks each verdict and the frame that leaves.
func runSteps(t *testing.T, cfg Config, steps []step) {
	t.Helper()
	p := newTestProgram(t, cfg)
	for i, s := range steps {
		ret, out := p.run(t, s.in, s.ingress)
		want, wantOut := uint32(actOK), s.in
		if s.answer {
			want, wantOut = actRedirect, raTo(p.v.frame, frame.MAC(s.in[6:12]))
		}
		if ret != want || !bytes.Equal(out, wantOut) {
			t.Errorf("step %d: verdict %d, frame:\n%x\nwant verdict %d, frame:\n%x", i, ret, out, want, wantOut)
		}
	}
}

func TestProgram(t *testing.T) {
	flags := kubeOVN()
	flags.RA.Mode = ra.ModeFlagsOnly
	withVLANType := rs(t, vmMAC)
	withVLANType[12], withVLANType[13] = 0x81, 0x00
	hops := ndFrame(t, vmMAC, vmLLA, netip.MustParseAddr("ff02::2"), 254, &ndp.RouterSolicitation{})
	code := rs(t, vmMAC)
	code[frame.EthernetLen+frame.IPv6Len+1] = 1
	echo := frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: gwMAC, Src: vmMAC}, Src: vmLLA, Dst: gwLLA,
		HopLimit: 255, Payload: []byte{128, 0, 0, 0, 0, 1, 0, 1}})
	udp := frame.AppendUDP6(nil, frame.UDP6{Eth: frame.Ethernet{Dst: gwMAC, Src: vmMAC}, Src: vmLLA, Dst: gwLLA,
		SrcPort: 546, DstPort: 547, HopLimit: 255, Payload: make([]byte, 60)})
	for _, tc := range []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{name: "RS from the VM", cfg: kubeOVN(), steps: []step{{rs(t, vmMAC), tapIndex, true}}},
		{name: "RS from the VM without options", cfg: kubeOVN(), steps: []step{
			{ndFrame(t, vmMAC, netip.IPv6Unspecified(), netip.MustParseAddr("ff02::2"), 255, &ndp.RouterSolicitation{}), tapIndex, true}}},
		{name: "every RS answered", cfg: kubeOVN(), steps: []step{
			{rs(t, vmMAC), tapIndex, true}, {rs(t, vmMAC), tapIndex, true}, {rs(t, vmMAC), tapIndex, true}}},
		// The pod's own stack sends with the VM's MAC before plumbing
		// (it is the pod's MAC): no ingress interface tells them apart.
		{name: "pod's own RS", cfg: kubeOVN(), steps: []step{{rs(t, vmMAC), 0, false}}},
		{name: "RS from the bridge", cfg: kubeOVN(), steps: []step{{rs(t, bridge), 0, false}}},
		// KubeVirt keeps the VM's MAC across a migration: on the target
		// it is not the pod's, and the program learns it.
		{name: "RS from a MAC other than the pod's", cfg: kubeOVN(), steps: []step{{rs(t, bridge), tapIndex, true}}},
		{name: "RS from a group MAC", cfg: kubeOVN(), steps: []step{{rs(t, frame.MAC{0x0b, 0x58, 0x0a, 0x10, 0x00, 0x05}), tapIndex, false}}},
		{name: "RS from the zero MAC", cfg: kubeOVN(), steps: []step{{rs(t, frame.MAC{}), tapIndex, false}}},
		{name: "RS arriving on the uplink itself", cfg: kubeOVN(), steps: []step{{rs(t, vmMAC), uplinkIndex, false}}},
		{name: "RS hop limit 254", cfg: kubeOVN(), steps: []step{{hops, tapIndex, false}}},
		{name: "RS code 1", cfg: kubeOVN(), steps: []step{{code, tapIndex, false}}},
		{name: "RS behind a VLAN tag", cfg: kubeOVN(), steps: []step{{withVLANType, tapIndex, false}}},
		{name: "RS truncated", cfg: kubeOVN(), steps: []step{{rs(t, vmMAC)[:RSFrameLen-1], tapIndex, false}}},
		{name: "echo request to the gateway", cfg: kubeOVN(), steps: []step{{echo, tapIndex, false}}},
		{name: "DHCPv6 to the gateway", cfg: kubeOVN(), steps: []step{{udp, tapIndex, false}}},
		{name: "flags-only RS", cfg: flags, steps: []step{{rs(t, vmMAC), tapIndex, true}}},
		{name: "NS for the gateway", cfg: kubeOVN(), steps: []step{{ns(t, gwLLA), tapIndex, true}}},
		{name: "NS for the gateway, twice within the interval", cfg: kubeOVN(), steps: []step{
			{ns(t, gwLLA), tapIndex, true}, {ns(t, gwLLA), tapIndex, false}}},
		{name: "NS for the gateway right after an RS", cfg: kubeOVN(), steps: []step{
			{rs(t, vmMAC), tapIndex, true}, {ns(t, gwLLA), tapIndex, false}, {rs(t, vmMAC), tapIndex, true}}},
		{name: "NS for another address", cfg: kubeOVN(), steps: []step{{ns(t, netip.MustParseAddr("fe80::1")), tapIndex, false}}},
		{name: "NS from the pod", cfg: kubeOVN(), steps: []step{{ns(t, gwLLA), 0, false}}},
		{name: "NS truncated", cfg: kubeOVN(), steps: []step{{ns(t, gwLLA)[:NSFrameLen-1], tapIndex, false}}},
		{name: "flags-only NS", cfg: flags, steps: []step{{ns(t, gwLLA), tapIndex, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) { runSteps(t, tc.cfg, tc.steps) })
	}
}

// Frame lengths of the shortest RS and NS (RFC 4861 §4.1, §4.3).
const (
	RSFrameLen = frame.EthernetLen + frame.IPv6Len + 8
	NSFrameLen = frame.EthernetLen + frame.IPv6Len + 24
)

// testRunnable: BPF_PROG_TEST_RUN refuses (EINVAL) frames shorter than an
// Ethernet header, and IPv4 or IPv6 frames shorter than their IP header,
// before the program runs (net/bpf/test_run.c). Neither reaches tc egress.
func testRunnable(in []byte) bool {
	if len(in) < frame.EthernetLen || len(in) > maxFrame {
		return false
	}
	switch binary.BigEndian.Uint16(in[12:]) {
	case frame.EtherTypeIPv4:
		return len(in) >= frame.EthernetLen+frame.IPv4Len
	case frame.EtherTypeIPv6:
		return len(in) >= frame.EthernetLen+frame.IPv6Len
	}
	return true
}

// BenchmarkProgramPass: what every other frame the VM sends pays, from the
// kernel running the program b.N times on one skb (ns/run).
func BenchmarkProgramPass(b *testing.B) {
	p := newTestProgram(b, kubeOVN())
	echo := frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: gwMAC, Src: vmMAC}, Src: vmLLA, Dst: gwLLA,
		HopLimit: 64, Payload: []byte{128, 0, 0, 0, 0, 1, 0, 1}})
	b.ReportAllocs()
	start := time.Now()
	err := p.ns.Do(func() error {
		opts := &ebpf.RunOptions{Data: echo, Context: skbContext{IngressIfindex: tapIndex, Ifindex: uplinkIndex}, Repeat: uint32(b.N)}
		_, err := p.coll.Programs[egressProgram].Run(opts)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/run")
}

// BenchmarkProgramAnswer: an RS rewritten into the RA, one BPF_PROG_TEST_RUN
// per op (the rewrite changes the skb, so runs cannot repeat on it): ns/op
// includes the syscall and the skb's allocation.
func BenchmarkProgramAnswer(b *testing.B) {
	p := newTestProgram(b, kubeOVN())
	in, out := rs(b, vmMAC), make([]byte, 2*maxFrame)
	prog := p.coll.Programs[egressProgram]
	b.ReportAllocs()
	err := p.ns.Do(func() error {
		for b.Loop() {
			opts := &ebpf.RunOptions{Data: in, DataOut: out, Context: skbContext{IngressIfindex: tapIndex, Ifindex: uplinkIndex}}
			if ret, err := prog.Run(opts); err != nil || ret != actRedirect {
				return fmt.Errorf("verdict %d: %v", ret, err)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

func BenchmarkCompile(b *testing.B) {
	cfg := kubeOVN()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := compile(cfg); err != nil {
			b.Fatal(err)
		}
	}
}
