package kernel

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/ra"
	"github.com/google/go-cmp/cmp"
)

// routerAlert is the Hop-by-Hop header an MLD report carries (RFC 3810 §5,
// RFC 2711 §2.1): next header ICMPv6, length 0, Router Alert (MLD), PadN.
var routerAlert = []byte{58, 0, 5, 2, 0, 0, 1, 0}

var (
	mldRouters = netip.MustParseAddr("ff02::16")     // RFC 3810 §5.2.14
	joined     = netip.MustParseAddr("ff02::1:2345") // the group the guest joins
)

// report is an MLD report body in an IPv6 packet from src (MAC) and sip to
// dst, hop limit 1, behind the Hop-by-Hop header hbh (its next header is
// the caller's).
func report(src frame.MAC, sip, dst netip.Addr, hbh, body []byte) []byte {
	const ip = frame.EthernetLen
	f := frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: frame.MulticastMAC(dst), Src: src},
		Src: sip, Dst: dst, HopLimit: 1, Payload: body})
	out := append(append(append([]byte{}, f[:ip+frame.IPv6Len]...), hbh...), f[ip+frame.IPv6Len:]...)
	out[ip+6] = 0
	plen := int(out[ip+4])<<8 | int(out[ip+5]) + len(hbh)
	out[ip+4], out[ip+5] = byte(plen>>8), byte(plen)
	return out
}

// vmMLD2 is the VM's MLDv2 report (RFC 3810 §5.2) from sip: one record,
// CHANGE_TO_EXCLUDE_MODE (4) for group, as Linux sends on a join.
func vmMLD2(src frame.MAC, sip netip.Addr, group netip.Addr) []byte {
	g := group.As16()
	body := append([]byte{143, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0}, g[:]...)
	return report(src, sip, mldRouters, routerAlert, body)
}

// vmMLD1 is the VM's MLDv1 report (RFC 2710 §3) for group.
func vmMLD1(src frame.MAC, group netip.Addr) []byte {
	g := group.As16()
	return report(src, vmLLA, group, routerAlert, append([]byte{131, 0, 0, 0, 0, 0, 0, 0}, g[:]...))
}

// mldVariants are the VM's reports and near misses for TestProgram.
func mldVariants() map[string][]byte {
	v2 := vmMLD2(vmMAC, vmLLA, joined)
	g := joined.As16()
	long := report(vmMAC, vmLLA, mldRouters, append(append([]byte{}, routerAlert[:1]...), 1, 5, 2, 0, 0, 1, 8, 0, 0, 0, 0, 0, 0, 0, 0),
		append([]byte{143, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0}, g[:]...))
	beyond := append([]byte{}, v2...) // Hdr Ext Len 3: 32 bytes, past the frame's end
	beyond[frame.EthernetLen+frame.IPv6Len+1] = 3
	tooLong := append([]byte{}, v2...) // Hdr Ext Len 4: over MAX_HBH_UNITS
	tooLong[frame.EthernetLen+frame.IPv6Len+1] = 4
	shortPayload := append([]byte{}, v2...) // IPv6 payload length ends inside the report's fixed part
	shortPayload[frame.EthernetLen+5] = 8 + 7
	padOnly := report(vmMAC, vmLLA, mldRouters, []byte{58, 0, 1, 4, 0, 0, 0, 0}, v2[frame.EthernetLen+frame.IPv6Len+8:])
	hops := append([]byte{}, v2...)
	hops[frame.EthernetLen+7] = 255
	toUDP := append([]byte{}, v2...)
	toUDP[frame.EthernetLen+frame.IPv6Len] = 17
	v1Short := vmMLD1(vmMAC, joined)[:frame.EthernetLen+frame.IPv6Len+8+16]
	v1Short[frame.EthernetLen+5] = 8 + 16
	return map[string][]byte{
		"v2": v2, "v2 during DAD": vmMLD2(vmMAC, netip.IPv6Unspecified(), joined), "v1": vmMLD1(vmMAC, joined),
		"v2, Hop-by-Hop of 16 bytes": long, "Hdr Ext Len past the end": beyond, "Hdr Ext Len 4": tooLong,
		"payload length short": shortPayload, "PadN without Router Alert": padOnly, "hop limit 255": hops,
		"Hop-by-Hop to UDP": toUDP, "v1 truncated": v1Short,
		"query (130)":      report(vmMAC, vmLLA, netip.MustParseAddr("ff02::1"), routerAlert, make([]byte, 24)),
		"done (132)":       report(vmMAC, vmLLA, netip.MustParseAddr("ff02::2"), routerAlert, append([]byte{132, 0, 0, 0, 0, 0, 0, 0}, g[:]...)),
		"echo behind HBH":  report(vmMAC, vmLLA, gwLLA, routerAlert, []byte{128, 0, 0, 0, 0, 1, 0, 1}),
		"no Hop-by-Hop":    frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: frame.MulticastMAC(mldRouters), Src: vmMAC}, Src: vmLLA, Dst: mldRouters, HopLimit: 1, Payload: v2[frame.EthernetLen+frame.IPv6Len+8:]}),
		"from a group MAC": vmMLD2(frame.MAC{0x0b, 0x58, 0x0a, 0x10, 0x00, 0x05}, vmLLA, joined),
	}
}

// TestMLDReport: the VM's MLD report brings it the RA an RS brings, at most
// once per second after the last RA; nothing else behind a Hop-by-Hop
// header does, and no report but one forwarded from the VM's tap.
func TestMLDReport(t *testing.T) {
	m := mldVariants()
	flags := kubeOVN()
	flags.RA.Mode = ra.ModeFlagsOnly
	off := kubeOVN()
	off.RA.Mode = ra.ModeOff
	for _, tc := range []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{name: "MLDv2 report", cfg: kubeOVN(), steps: []step{{m["v2"], tapIndex, true}}},
		{name: "MLDv2 report during DAD (source ::)", cfg: kubeOVN(), steps: []step{{m["v2 during DAD"], tapIndex, true}}},
		{name: "MLDv1 report", cfg: kubeOVN(), steps: []step{{m["v1"], tapIndex, true}}},
		{name: "Hop-by-Hop header of 16 bytes", cfg: kubeOVN(), steps: []step{{m["v2, Hop-by-Hop of 16 bytes"], tapIndex, true}}},
		{name: "flags-only", cfg: flags, steps: []step{{m["v2"], tapIndex, true}}},
		{name: "no RA responder", cfg: off, steps: []step{{m["v2"], tapIndex, false}}},
		{name: "a burst of reports", cfg: kubeOVN(), steps: []step{
			{m["v2"], tapIndex, true}, {m["v1"], tapIndex, false}, {m["v2"], tapIndex, false}, {m["v2 during DAD"], tapIndex, false}}},
		{name: "a report right after an RS", cfg: kubeOVN(), steps: []step{{rs(t, vmMAC), tapIndex, true}, {m["v2"], tapIndex, false}}},
		{name: "the pod stack's report", cfg: kubeOVN(), steps: []step{{vmMLD2(bridge, bridgeLLA, joined), 0, false}}},
		{name: "the pod stack's report with the VM's MAC", cfg: kubeOVN(), steps: []step{{m["v2"], 0, false}, {m["v2"], tapIndex, true}}},
		{name: "a report arriving on the uplink itself", cfg: kubeOVN(), steps: []step{{m["v2"], uplinkIndex, false}}},
		{name: "a report from a group MAC", cfg: kubeOVN(), steps: []step{{m["from a group MAC"], tapIndex, false}}},
		{name: "Hdr Ext Len past the frame's end", cfg: kubeOVN(), steps: []step{{m["Hdr Ext Len past the end"], tapIndex, false}}},
		{name: "Hdr Ext Len 4", cfg: kubeOVN(), steps: []step{{m["Hdr Ext Len 4"], tapIndex, false}}},
		{name: "payload length inside the report", cfg: kubeOVN(), steps: []step{{m["payload length short"], tapIndex, false}}},
		{name: "MLDv1 report truncated", cfg: kubeOVN(), steps: []step{{m["v1 truncated"], tapIndex, false}}},
		{name: "no Router Alert", cfg: kubeOVN(), steps: []step{{m["PadN without Router Alert"], tapIndex, false}}},
		{name: "hop limit 255", cfg: kubeOVN(), steps: []step{{m["hop limit 255"], tapIndex, false}}},
		{name: "Hop-by-Hop to UDP", cfg: kubeOVN(), steps: []step{{m["Hop-by-Hop to UDP"], tapIndex, false}}},
		{name: "query", cfg: kubeOVN(), steps: []step{{m["query (130)"], tapIndex, false}}},
		{name: "done", cfg: kubeOVN(), steps: []step{{m["done (132)"], tapIndex, false}}},
		{name: "echo request behind Hop-by-Hop", cfg: kubeOVN(), steps: []step{{m["echo behind HBH"], tapIndex, false}}},
		{name: "report without Hop-by-Hop", cfg: kubeOVN(), steps: []step{{m["no Hop-by-Hop"], tapIndex, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) { runSteps(t, tc.cfg, tc.steps) })
	}
}

// TestMLDReportModel: the Go model decides each variant as the program
// does, with nothing learned before and with the bridge and the VM known.
func TestMLDReportModel(t *testing.T) {
	p := newTestProgram(t, kubeOVN())
	for name, in := range mldVariants() {
		for _, before := range []learned{{}, vmKnown()} {
			p.forget(t)
			p.setState(t, before)
			st := before
			want := egress(in, p.v, &st, tapIndex, true)
			got := p.exec(t, egressProgram, in, skbContext{IngressIfindex: tapIndex, Ifindex: uplinkIndex})
			if want.out == nil {
				want.out = in
			}
			if got.act != want.act || !bytes.Equal(got.out, want.out) || got.mark != want.mark {
				t.Errorf("%s: verdict %d mark %#x frame\n%x\nwant (model) verdict %d mark %#x frame\n%x", name, got.act, got.mark, got.out, want.act, want.mark, want.out)
			}
			if diff := cmp.Diff(st, p.state(t), cmp.AllowUnexported(learned{})); diff != "" {
				t.Errorf("%s: learned (-want +got):\n%s", name, diff)
			}
		}
	}
	// A report the bridge forwarded with its own MAC teaches nothing and
	// brings nothing.
	p.forget(t)
	p.setState(t, vmKnown())
	in := vmMLD2(bridge, bridgeLLA, joined)
	p.check(t, egressProgram, guardRow{in: in, want: actOK}, skbContext{IngressIfindex: tapIndex, Ifindex: uplinkIndex})
}

// TestMLDReportRABytes pins the RA an MLDv2 report from the migrated VM's
// MAC brings, byte for byte: the stored RA to ff02::1 from the gateway's
// link-local at the reporter's MAC.
func TestMLDReportRABytes(t *testing.T) {
	p := newTestProgram(t, kubeOVN())
	got := p.exec(t, egressProgram, vmMLD2(movedMAC, netip.IPv6Unspecified(), joined), skbContext{IngressIfindex: tapIndex, Ifindex: uplinkIndex})
	if got.act != actRedirect || got.mark != ownMark {
		t.Fatalf("verdict %d mark %#x, want %d %#x", got.act, got.mark, actRedirect, ownMark)
	}
	want := "0a580a100077" + "0a580a100001" + "86dd" + // to the VM's MAC from the gateway's
		"6000000000a03aff" + // IPv6, payload 160, ICMPv6, hop limit 255
		"fe80000000000000" + "08580afffe100001" + // the gateway's link-local
		"ff020000000000000000000000000001" + // all-nodes
		"860065d5" + "40c00708" + "00000000" + "00000000" + // RA: hop limit 64, M and O, lifetime 1800 s
		"01010a580a100001" + // source link-layer address
		"0501000000000578" + // MTU 1400
		"0304708000000e1000000e1000000000fd000010001600000000000000000000" + // prefix fd00:10:16::/64
		"1903000000000708" + "fd00001000960000000000000000000a" + // RDNSS fd00:10:96::a, 1800 s
		// DNSSL, 1800 s: default.svc.cluster.local, svc.cluster.local, cluster.local
		"1f09000000000708" + "0764656661756c740373766307636c7573746572056c6f63616c00" +
		"0373766307636c7573746572056c6f63616c0007636c7573746572056c6f63616c00000000"
	if hex.EncodeToString(got.out) != want {
		t.Errorf("RA\n got %x\nwant %s", got.out, want)
	}
	if want != hex.EncodeToString(movedMAC[:])+hex.EncodeToString(p.v.frame[6:]) {
		t.Errorf("RA differs from the stored frame %x", p.v.frame)
	}
	f, err := frame.ParseICMP6(got.out) // verifies the checksum
	if err != nil {
		t.Fatalf("RA does not parse: %v", err)
	}
	gotHead := []any{f.Src.String(), f.Dst.String(), f.HopLimit, f.Eth.Dst.String()}
	wantHead := []any{gwLLA.String(), "ff02::1", uint8(255), movedMAC.String()}
	if diff := cmp.Diff(wantHead, gotHead); diff != "" {
		t.Errorf("source, destination, hop limit, Ethernet destination (-want +got):\n%s", diff)
	}
}
