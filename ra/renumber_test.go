package ra

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/ndp"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
)

// The old pod of the migration rows: another /112, another gateway.
var (
	oldAddr      = netip.MustParseAddr("fd00:10:17::9")
	oldRouterLLA = netip.MustParseAddr("fe80::858:aff:fe11:1")
	oldRouterMAC = frame.MustParseMAC("0a:58:0a:11:00:01")
)

// TestBuildDeprecationBytes pins the deprecating RA: our advertisement, then
// a PIO of lifetime 0 (L=1 A=0) per stale prefix.
func TestBuildDeprecationBytes(t *testing.T) {
	t.Parallel()
	cfg := kubeOVN112()
	cfg.DNS, cfg.Search = nil, nil
	ra, err := BuildDeprecation(cfg, []netip.Prefix{netip.MustParsePrefix("fd00:10:17::/112"), netip.MustParsePrefix("fd00:10:17::/64")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ndp.MarshalMessage(ra)
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, raHeaderMOLifetime1800+kubeOVNSLLA+mtu1400+pio112+`
		03 04 70 80 00000000 00000000 00000000 # PIO /112 L=1 A=0, lifetime 0
		fd000010001700000000000000000000
		03 04 40 80 00000000 00000000 00000000 # PIO /64 L=1 A=0, lifetime 0
		fd000010001700000000000000000000`)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deprecating RA (-want +got):\n%s", diff)
	}
}

// TestBuildWithdrawalBytes pins the withdrawing RA: router lifetime 0, our
// M and O flags, no options.
func TestBuildWithdrawalBytes(t *testing.T) {
	t.Parallel()
	got, err := ndp.MarshalMessage(BuildWithdrawal())
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, `
		86 00 0000          # type 134, code 0, checksum (left to the frame)
		40 c0 0000          # hop limit 64, M=1 O=1, router lifetime 0
		00000000 00000000   # reachable time, retrans timer`)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("withdrawing RA (-want +got):\n%s", diff)
	}
}

// echoFrame is an ICMPv6 echo request from the VM with source src.
func echoFrame(src netip.Addr) []byte {
	return frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: kubeOVNGatewayMAC, Src: vmMAC},
		Src: src, Dst: netip.MustParseAddr("fd00:10:96::a"), HopLimit: 64, Payload: []byte{128, 0, 0, 0, 0, 1, 0, 1}})
}

// nsFrame is a neighbour solicitation from the VM (its link-local) for
// target, in a frame to dstMAC (unicast NUD) at IPv6 destination dst.
func nsFrame(t *testing.T, target, dst netip.Addr, dstMAC frame.MAC) []byte {
	t.Helper()
	b, err := ndp.MarshalMessage(&ndp.NeighborSolicitation{TargetAddress: target})
	if err != nil {
		t.Fatal(err)
	}
	return frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: dstMAC, Src: vmMAC},
		Src: guestLLA, Dst: dst, HopLimit: 255, Payload: b})
}

// heard is one RA the guest received: from whom, and what it says.
type heard struct {
	EthSrc, EthDst frame.MAC
	Src            netip.Addr
	RouterLifetime time.Duration
	Zeroed         []string // prefixes with lifetime 0
}

// listen reads the RAs the guest gets within d.
func listenRAs(t *testing.T, guest frame.Conn, d time.Duration) []heard {
	t.Helper()
	var out []heard
	buf := make([]byte, 1<<16)
	guest.SetReadDeadline(time.Now().Add(d))
	for {
		n, err := guest.ReadFrame(buf)
		if err != nil {
			return out
		}
		p, err := frame.ParseICMP6(buf[:n])
		if err != nil || p.Payload[0] != frame.ICMPv6RouterAdvertisement {
			continue
		}
		m, err := ndp.ParseMessage(p.Payload)
		if err != nil {
			t.Fatalf("RA does not parse: %v", err)
		}
		ra := m.(*ndp.RouterAdvertisement)
		h := heard{EthSrc: p.Eth.Src, EthDst: p.Eth.Dst, Src: p.Src, RouterLifetime: ra.RouterLifetime}
		for _, o := range ra.Options {
			if pi, ok := o.(*ndp.PrefixInformation); ok && pi.ValidLifetime == 0 {
				h.Zeroed = append(h.Zeroed, netip.PrefixFrom(pi.Prefix, int(pi.PrefixLength)).String())
			}
		}
		out = append(out, h)
	}
}

// TestRenumberStaleGuest: a guest with the pod's addresses hears nothing of
// renumbering; once it uses an address from another pod, its old prefix is
// deprecated and the old router it solicits is withdrawn, each once per
// retellAfter.
func TestRenumberStaleGuest(t *testing.T) {
	tap, guest := frame.Pipe()
	cfg := kubeOVN112()
	a, err := NewAdvertiser(cfg, tap, nil)
	if err != nil {
		t.Fatal(err)
	}
	stale := make(chan serve.Event, 8)
	a.Observer = func(ev serve.Event) {
		if ev.Stale.IsValid() {
			stale <- ev
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer guest.Close()

	send := func(f []byte) {
		if err := guest.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	// The guest speaks with its own address: the first frame gets the
	// usual multicast RA, and no withdrawal follows its NS for a neighbour.
	send(echoFrame(netip.MustParseAddr("fd00:10:16::5")))
	send(nsFrame(t, oldRouterLLA, oldRouterLLA, oldRouterMAC))
	if diff := cmp.Diff([]heard{{EthSrc: kubeOVNGatewayMAC, EthDst: allNodesMAC, Src: kubeOVNGatewayLLA, RouterLifetime: DefaultRouterLifetime}},
		listenRAs(t, guest, 300*time.Millisecond), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Fatalf("a guest with the pod's address heard (-want +got):\n%s", diff)
	}

	// Now it uses the old pod's address, and solicits the old router.
	send(echoFrame(oldAddr))
	send(nsFrame(t, oldRouterLLA, oldRouterLLA, oldRouterMAC))
	send(echoFrame(oldAddr)) // again within retellAfter: nothing more
	want := []heard{
		{EthSrc: kubeOVNGatewayMAC, EthDst: vmMAC, Src: kubeOVNGatewayLLA, RouterLifetime: DefaultRouterLifetime,
			Zeroed: []string{"fd00:10:17::/112", "fd00:10:17::/64"}},
		{EthSrc: oldRouterMAC, EthDst: vmMAC, Src: oldRouterLLA, RouterLifetime: 0},
	}
	if diff := cmp.Diff(want, listenRAs(t, guest, 500*time.Millisecond), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("a stale guest heard (-want +got):\n%s", diff)
	}
	cancel()
	<-done
	close(stale)
	var got []netip.Addr
	for ev := range stale {
		got = append(got, ev.Stale)
	}
	if diff := cmp.Diff([]netip.Addr{oldAddr, oldRouterLLA}, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("stale events (-want +got):\n%s", diff)
	}
}

// TestRenumberGuestStale: evidence from another service (GuestStale) that
// the guest uses an address from another pod makes the next link-local
// neighbour it solicits, other than our gateway, its old router: withdrawn
// as after a stale source address of its own. An old IPv6 address also has
// its prefix deprecated at once. Without evidence, nothing.
func TestRenumberGuestStale(t *testing.T) {
	deprecation := heard{EthSrc: kubeOVNGatewayMAC, EthDst: vmMAC, Src: kubeOVNGatewayLLA, RouterLifetime: DefaultRouterLifetime,
		Zeroed: []string{"fd00:10:17::/112", "fd00:10:17::/64"}}
	withdrawal := heard{EthSrc: oldRouterMAC, EthDst: vmMAC, Src: oldRouterLLA, RouterLifetime: 0}
	for _, row := range []struct {
		name         string
		hint         netip.Addr
		onHint, onNS []heard
	}{
		{name: "none"},
		{name: "DHCPv4 or ARP from the old IPv4 address", hint: netip.MustParseAddr("10.17.0.9"), onNS: []heard{withdrawal}},
		{name: "DHCPv6 Renew for the old IPv6 address", hint: oldAddr, onHint: []heard{deprecation}, onNS: []heard{withdrawal}},
		{name: "an address of this pod", hint: netip.MustParseAddr("fd00:10:16::5")},
	} {
		t.Run(row.name, func(t *testing.T) {
			tap, guest := frame.Pipe()
			a, err := NewAdvertiser(kubeOVN112(), tap, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			defer func() { cancel(); <-done; guest.Close() }()
			// The guest speaks from the pod's address: the usual RA only.
			if err := guest.WriteFrame(echoFrame(netip.MustParseAddr("fd00:10:16::5"))); err != nil {
				t.Fatal(err)
			}
			listenRAs(t, guest, 300*time.Millisecond)
			if row.hint.IsValid() {
				a.GuestStale(row.hint)
			}
			eq := cmpopts.EquateComparable(netip.Addr{})
			if diff := cmp.Diff(row.onHint, listenRAs(t, guest, 300*time.Millisecond), eq, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("after the evidence the guest heard (-want +got):\n%s", diff)
			}
			if err := guest.WriteFrame(nsFrame(t, oldRouterLLA, oldRouterLLA, oldRouterMAC)); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(row.onNS, listenRAs(t, guest, 300*time.Millisecond), eq, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("after its NS for the old router the guest heard (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRenumberSparesDHCPServer: a stale guest that solicits the DHCPv6
// server's link-local address (busybox udhcpc6 unicasts its Renew there)
// is not told to drop it as a router; its old router still is withdrawn.
func TestRenumberSparesDHCPServer(t *testing.T) {
	server := netip.MustParseAddr("fe80::24e9:b2ff:fed4:ba8")
	serverMAC := frame.MustParseMAC("26:e9:b2:d4:0b:a8")
	tap, guest := frame.Pipe()
	cfg := kubeOVN112()
	cfg.DHCPServer = server
	a, err := NewAdvertiser(cfg, tap, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done; guest.Close() }()
	eq := cmpopts.EquateComparable(netip.Addr{})
	if err := guest.WriteFrame(echoFrame(oldAddr)); err != nil { // stale: deprecation, and the first RA
		t.Fatal(err)
	}
	listenRAs(t, guest, 300*time.Millisecond)
	if err := guest.WriteFrame(nsFrame(t, server, server, serverMAC)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]heard(nil), listenRAs(t, guest, 300*time.Millisecond), eq, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("after its NS for the DHCPv6 server the guest heard (-want +got):\n%s", diff)
	}
	if err := guest.WriteFrame(nsFrame(t, oldRouterLLA, oldRouterLLA, oldRouterMAC)); err != nil {
		t.Fatal(err)
	}
	want := []heard{{EthSrc: oldRouterMAC, EthDst: vmMAC, Src: oldRouterLLA, RouterLifetime: 0}}
	if diff := cmp.Diff(want, listenRAs(t, guest, 300*time.Millisecond), eq, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("after its NS for the old router the guest heard (-want +got):\n%s", diff)
	}
}
