package kernel

import (
	"encoding/hex"
	"net/netip"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/ra"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/ndp"
)

// TestCompileFrame: the frame the program sends is ra.Build's message from
// the gateway to the VM, checksummed, parsed back exactly.
func TestCompileFrame(t *testing.T) {
	cfg := kubeOVN()
	v, err := compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Ethernet: VM MAC <- gateway MAC, IPv6. IPv6: payload length 160,
	// next header 58, hop limit 255, fe80::858:aff:fe10:1 -> ff02::1.
	// ICMPv6: type 134, code 0, checksum, hop limit 64, M|O, lifetime 1800.
	const head = "0a580a100005" + "0a580a100001" + "86dd" +
		"60000000" + "00a0" + "3a" + "ff" +
		"fe8000000000000008580afffe100001" + "ff020000000000000000000000000001" +
		"8600" + "65d5" + "40" + "c0" + "0708"
	if got := hex.EncodeToString(v.frame[:len(head)/2]); got != head {
		t.Errorf("frame head:\nwant %s\n got %s", head, got)
	}
	p, err := frame.ParseICMP6(v.frame) // verifies the checksum
	if err != nil {
		t.Fatal(err)
	}
	msg, err := ndp.ParseMessage(p.Payload)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ra.Build(cfg.RA)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, msg, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("advertisement (-want +got):\n%s", diff)
	}
	gotVars := []any{v.vmMAC, v.gwLLA, v.refreshNS, len(v.frame)}
	wantVars := []any{[6]byte{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x05},
		netip.MustParseAddr("fe80::858:aff:fe10:1").As16(), uint64(60 * time.Second), frame.EthernetLen + frame.IPv6Len + 160}
	if diff := cmp.Diff(wantVars, gotVars); diff != "" {
		t.Errorf("vm_mac, gw_lla, refresh_ns, frame_len (-want +got):\n%s", diff)
	}
}

func TestCompile(t *testing.T) {
	flags := kubeOVN()
	flags.RA.Mode = ra.ModeFlagsOnly
	refresh := kubeOVN()
	refresh.Refresh = 5 * time.Second
	off := kubeOVN()
	off.RA.Mode = ra.ModeOff
	fast := kubeOVN()
	fast.Refresh = time.Second
	noVM := kubeOVN()
	noVM.RA.VMMAC = frame.MAC{}
	for _, tc := range []struct {
		name    string
		cfg     Config
		refresh time.Duration
		src     string // IPv6 source of the RA
		err     string
	}{
		{name: "gateway, default refresh", cfg: kubeOVN(), refresh: DefaultRefresh, src: "fe80::858:aff:fe10:1"},
		{name: "gateway, refresh 5s", cfg: refresh, refresh: 5 * time.Second, src: "fe80::858:aff:fe10:1"},
		// flags-only advertises no router: no refresh, ra.Source's address.
		{name: "flags-only", cfg: flags, refresh: 0, src: "fe80::a58:aff:fe10:1"},
		// off: the guard alone, no RA frame (checked below).
		{name: "off", cfg: off, refresh: 0},
		{name: "refresh below 3s", cfg: fast, err: "refresh interval 1s is below 3s"},
		{name: "no VM MAC", cfg: noVM, err: `VM MAC "" is not a unicast Ethernet address`},
		{name: "multicast VM MAC", cfg: Config{VMMAC: frame.MAC{0x33, 0x33, 0, 0, 0, 1}, RA: off.RA},
			err: `VM MAC "33:33:00:00:00:01" is not a unicast Ethernet address`},
		{name: "two VM MACs", cfg: Config{VMMAC: frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x06}, RA: kubeOVN().RA},
			err: "RA VM MAC 0a:58:0a:10:00:05 differs from the VM MAC 0a:58:0a:10:00:06"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := compile(tc.cfg)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("compile: got error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.cfg.RA.Mode == ra.ModeOff {
				got := []any{len(v.frame), v.refreshNS, v.vmMAC, v.sidNet, v.sidMask}
				want := []any{0, uint64(0), [6]byte(tc.cfg.RA.VMMAC), [4]byte{169, 254, 75, 0}, [4]byte{255, 255, 255, 0}}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("frame length, refresh, VM MAC, server net, mask (-want +got):\n%s", diff)
				}
				return
			}
			p, err := frame.ParseICMP6(v.frame)
			if err != nil {
				t.Fatal(err)
			}
			got := []any{time.Duration(v.refreshNS), p.Src.String(), p.Dst.String(), p.HopLimit, p.Eth.Dst.String()}
			want := []any{tc.refresh, tc.src, "ff02::1", uint8(255), tc.cfg.RA.VMMAC.String()}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("refresh, source, destination, hop limit, Ethernet destination (-want +got):\n%s", diff)
			}
		})
	}
}
