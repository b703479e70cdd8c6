package kernel

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
)

// movedMAC is the VM's MAC on a migration target: KubeVirt keeps it, while
// the target pod's interface (whose MAC the loader configured, vmMAC in
// these tests) got another from the CNI.
var movedMAC = frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x77}

// learnStep is one frame through one program: from is the interface it
// arrived on (0: the pod stack; uplinkIndex at the ingress hook).
type learnStep struct {
	prog string
	from uint32
	in   []byte
	want uint32
	out  []byte // nil: unchanged
	mark uint32
}

func fromTap(in []byte, want uint32, out []byte, mark uint32) learnStep {
	return learnStep{egressProgram, tapIndex, in, want, out, mark}
}

func fromPod(in []byte, want uint32, out []byte, mark uint32) learnStep {
	return learnStep{egressProgram, 0, in, want, out, mark}
}

func fromUplink(in []byte, want uint32) learnStep {
	return learnStep{ingressProgram, uplinkIndex, in, want, nil, 0}
}

// hairpin is a frame from the uplink seen at its own egress (a bridge in
// hairpin mode would send one back).
func hairpin(in []byte) learnStep {
	return learnStep{egressProgram, uplinkIndex, in, actOK, nil, 0}
}

// TestLearnVMMAC: which frames teach the programs the VM's MAC, and that
// every answer goes to the MAC learned. Each row runs its steps through
// the kernel and the Go model from the same state, and compares both
// verdicts and frames, and the learned state after each step.
func TestLearnVMMAC(t *testing.T) {
	podOnly := learned{podMAC: macBits(bridge)}
	moved := learned{iid: iidOf(vmLLA.AsSlice()), podMAC: macBits(bridge), vmMAC: macBits(movedMAC), port: tapIndex}
	group := frame.MAC{0x0b, 0x58, 0x0a, 0x10, 0x00, 0x77}
	solicit := func(src frame.MAC) []byte { return udp6(src, vmLLA, dhcpGroup, 546, 547) }
	arpReply := frame.AppendARP(nil, frame.Ethernet{Dst: movedMAC, Src: bridge},
		frame.ARP{Op: frame.ARPReply, SenderMAC: bridge, SenderIP: sid, TargetMAC: movedMAC, TargetIP: vmIP})
	ackTo := func(dst frame.MAC) []byte {
		return frame.AppendUDP4(nil, frame.UDP4{Eth: frame.Ethernet{Dst: dst, Src: bridge}, Src: sid, Dst: vmIP,
			SrcPort: 67, DstPort: 68, TTL: 64, Payload: bootReply(dst, vmIP)})
	}
	// A neighbour sends what a VM would, from its own MAC and from the
	// VM's (it cannot know it, but may guess), with the ingress verdicts.
	var uplinkSteps []learnStep
	for _, f := range []struct {
		in   []byte
		want uint32
	}{
		{solicit(neighbour), actShot}, {rs(t, neighbour), actShot}, {arp(neighbour, frame.ARPRequest, vmIP, sid), actOK},
		{udp4(neighbour, frame.Broadcast, netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255"), 68, 67), actShot},
		{solicit(movedMAC), actShot}, {rs(t, movedMAC), actShot}, {arp(movedMAC, frame.ARPRequest, vmIP, sid), actOK},
	} {
		uplinkSteps = append(uplinkSteps, fromUplink(f.in, f.want), hairpin(f.in))
	}
	for _, r := range []struct {
		name          string
		before, after learned
		steps         []learnStep
	}{
		{name: "a forwarded frame teaches, then the RS from that MAC is answered to it", before: podOnly, after: moved,
			steps: []learnStep{fromTap(solicit(movedMAC), actOK, nil, 0), fromTap(rs(t, movedMAC), actRedirect, nil, ownMark)}},
		{name: "the VM's first RS teaches and is answered", before: learned{},
			after: learned{iid: iidOf(vmLLA.AsSlice()), vmMAC: macBits(movedMAC), port: tapIndex},
			steps: []learnStep{fromTap(rs(t, movedMAC), actRedirect, nil, ownMark)}},
		{name: "frames from the uplink cannot teach", before: podOnly, after: podOnly, steps: uplinkSteps},
		{name: "frames from the uplink cannot change it", before: moved, after: moved, steps: uplinkSteps},
		{name: "the pod stack cannot teach", before: podOnly, after: learned{podMAC: macBits(neighbour)},
			steps: []learnStep{fromPod(icmp6(neighbour, gwMAC, neighLLA, gwLLA, 129, nil), actOK, nil, 0)}},
		{name: "the pod stack with the pod's MAC (before plumbing) cannot teach", before: learned{}, after: learned{},
			steps: []learnStep{fromPod(rs(t, vmMAC), actOK, nil, 0), fromPod(solicit(vmMAC), actOK, nil, 0)}},
		{name: "a group source cannot", before: moved, after: moved,
			steps: []learnStep{fromTap(rs(t, group), actOK, nil, 0), fromTap(solicit(group), actOK, nil, 0)}},
		{name: "the zero source cannot", before: moved, after: moved,
			steps: []learnStep{fromTap(rs(t, frame.MAC{}), actOK, nil, 0), fromTap(solicit(frame.MAC{}), actOK, nil, 0)}},
		{name: "the bridge's MAC cannot", before: moved, after: moved,
			steps: []learnStep{fromTap(rs(t, bridge), actOK, nil, 0), fromTap(arp(bridge, frame.ARPRequest, vmIP, sid), actOK, nil, 0)}},
		{name: "the bridge's MAC, learned before the bridge spoke, is forgotten when it does",
			before: learned{vmMAC: macBits(bridge), port: tapIndex}, after: learned{podMAC: macBits(bridge), port: tapIndex},
			steps: []learnStep{fromPod(mld1(solicitedNode(bridgeLLA)), actOK, nil, 0)}},
		{name: "the VM's next MAC replaces it", before: moved, after: learned{iid: moved.iid, podMAC: moved.podMAC, vmMAC: macBits(vmMAC), port: tapIndex},
			steps: []learnStep{fromTap(rs(t, vmMAC), actRedirect, nil, ownMark)}},
		{name: "the NA for the VM carries the learned MAC", before: moved, after: moved,
			steps: []learnStep{fromPod(podNSFor(t, bridgeLLA, vmLLA), actRedirect, neighborAdvert(bridge, movedMAC, bridgeLLA, vmLLA), ownMark)}},
		{name: "the ARP answer goes to the learned MAC", before: moved, after: moved,
			steps: []learnStep{fromTap(arp(movedMAC, frame.ARPRequest, vmIP, sid), actRedirect, arpReply, 0)}},
		{name: "the DHCPv4 unicast goes to the learned MAC", before: moved, after: moved,
			steps: []learnStep{fromPod(dhcpReply(movedMAC, vmIP), actRedirect, ackTo(movedMAC), 0),
				fromPod(dhcpReply(vmMAC, vmIP), actShot, nil, 0)}},
		{name: "the ingress guard lets unicast to the learned MAC pass, no longer to the pod's", before: moved, after: moved,
			steps: []learnStep{fromUplink(udp4(neighbour, movedMAC, netip.MustParseAddr("10.16.0.99"), vmIP, 68, 67), actOK),
				fromUplink(udp4(neighbour, vmMAC, netip.MustParseAddr("10.16.0.99"), vmIP, 68, 67), actShot)}},
	} {
		t.Run(r.name, func(t *testing.T) {
			p := newTestProgram(t, kubeOVN())
			p.setState(t, r.before)
			st := r.before
			for i, s := range r.steps {
				p.forget(t)
				p.learnStep(t, i, s, &st)
			}
			if diff := cmp.Diff(r.after, p.state(t), cmp.AllowUnexported(learned{})); diff != "" {
				t.Errorf("learned (-want +got):\n%s", diff)
			}
		})
	}
}

// learnStep runs s through the kernel and the model (state st) and checks
// both against s and each other.
func (p *testProgram) learnStep(t *testing.T, i int, s learnStep, st *learned) {
	t.Helper()
	var model verdict
	if s.prog == ingressProgram {
		model = ingress(s.in, p.v, *st, 0)
	} else {
		model = egress(s.in, p.v, st, s.from, true)
	}
	got := p.exec(t, s.prog, s.in, skbContext{IngressIfindex: s.from, Ifindex: uplinkIndex})
	want := verdict{act: s.want, out: s.in, mark: s.mark}
	switch {
	case s.out != nil:
		want.out = s.out
	case s.want == actRedirect && s.mark == ownMark: // the RA, to the frame's source
		want.out = raTo(p.v.frame, frame.MAC(s.in[6:12]))
	}
	if model.out == nil {
		model.out = s.in
	}
	if got.act != want.act || string(got.out) != string(want.out) || got.mark != want.mark {
		t.Errorf("step %d: verdict %d mark %#x frame\n%x\nwant verdict %d mark %#x frame\n%x", i, got.act, got.mark, got.out, want.act, want.mark, want.out)
	}
	if model.act != want.act || string(model.out) != string(want.out) || model.mark != want.mark {
		t.Errorf("step %d: model verdict %d mark %#x frame\n%x", i, model.act, model.mark, model.out)
	}
	if diff := cmp.Diff(*st, p.state(t), cmp.AllowUnexported(learned{})); diff != "" {
		t.Errorf("step %d: learned, model -kernel +:\n%s", i, diff)
	}
}

// TestRABytesToLearnedMAC pins the RA to a learned MAC byte for byte: the
// configured frame with the Ethernet destination replaced, nothing else.
func TestRABytesToLearnedMAC(t *testing.T) {
	p := newTestProgram(t, kubeOVN())
	got := p.exec(t, egressProgram, rs(t, movedMAC), skbContext{IngressIfindex: tapIndex, Ifindex: uplinkIndex})
	want := hex.EncodeToString(movedMAC[:]) + hex.EncodeToString(p.v.frame[6:])
	if got.act != actRedirect || got.mark != ownMark || hex.EncodeToString(got.out) != want {
		t.Errorf("verdict %d mark %#x\n got %x\nwant %s", got.act, got.mark, got.out, want)
	}
	if hex.EncodeToString(p.v.frame[:6]) != hex.EncodeToString(vmMAC[:]) {
		t.Errorf("configured RA to %x, want the configured VM MAC %v", p.v.frame[:6], vmMAC)
	}
	if _, err := frame.ParseICMP6(got.out); err != nil { // verifies the checksum
		t.Errorf("RA does not parse: %v", err)
	}
}

// TestVMMACLearnedInPod: a real kernel, KubeVirt's managedTap layout, and a
// guest whose MAC is not the pod's (a migration target): the guest's own
// RS gets the RA, addressed to its MAC, and the programs learned its MAC
// and port from the frames the bridge forwarded (skb->ingress_ifindex =
// the tap's) while the pod stack's frames (ingress_ifindex 0) taught the
// bridge's MAC only. Frames a neighbour sends from the uplink teach
// nothing.
func TestVMMACLearnedInPod(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a lab")
	}
	l := lab.NewLab(t, lab.KubeOVN)
	cfg := labConfig(t, l, minRefresh)
	v, err := compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Pod.Do(func() error { return Attach(l.Spec.PodIface, cfg) }); err != nil {
		t.Fatalf("%+v", err)
	}
	plumbManagedTap(t, l)
	toVM := startPcap(t, l.Pod, l.Tap, "icmp6 and ip6[40] == 134")
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "address", movedMAC.String())
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "up")
	lab.WaitFor(t, 10*time.Second, "the guest's IPv6 default route", func() bool {
		return lab.DefaultVia(t, l.Guest, "-6") == l.GatewayLLA()
	})
	var ras [][]byte
	lab.WaitFor(t, 3*time.Second, "the RA in the tap's capture", func() bool {
		ras = toVM.frames(t)
		return len(ras) > 0
	})
	for i, f := range ras {
		if diff := cmp.Diff(raTo(v.frame, movedMAC), f); diff != "" {
			t.Errorf("RA %d to the guest (-want +got):\n%s", i, diff)
		}
	}
	// A neighbour on the uplink: multicast echo requests reach the bridge,
	// its stack and the guest, which answer through the uplink.
	l.Node.Run(t, "ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "1", "ff02::1%"+l.NodeIf)
	var tap int
	if err := l.Pod.Do(func() error {
		link, err := netlink.LinkByName(l.Tap)
		if err == nil {
			tap = link.Attrs().Index
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want := learned{podMAC: macBits(frame.MustParseMAC(bridgeMAC)), vmMAC: macBits(movedMAC), port: uint32(tap)}
	got := attachedState(t, l.Pod, v)
	got.iid = 0 // the guest's link-local address: whatever its kernel chose
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(learned{})); diff != "" {
		t.Errorf("learned (-want +got):\n%s", diff)
	}
}

// attachedState reads the learned state (.bss) of the egress program
// attached to the uplink in ns.
func attachedState(t *testing.T, ns *lab.NS, v vars) learned {
	t.Helper()
	prog, err := ebpf.NewProgramFromID(programID(t, ns, uplinkName))
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := info.MapIDs()
	s, err := spec(v)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		mi, err := m.Info()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(mi.Name, ".bss") {
			continue
		}
		val := make([]byte, m.ValueSize())
		if err := m.Lookup(uint32(0), &val); err != nil {
			t.Fatal(err)
		}
		u64 := func(name string) uint64 { return binary.NativeEndian.Uint64(val[s.Variables[name].Offset:]) }
		return learned{iid: u64("vm_lla_iid"), podMAC: u64("pod_mac"), vmMAC: u64("vm_seen"),
			port: binary.NativeEndian.Uint32(val[s.Variables["vm_port"].Offset:])}
	}
	t.Fatalf("no .bss map among the program's maps %v", ids)
	return learned{}
}
