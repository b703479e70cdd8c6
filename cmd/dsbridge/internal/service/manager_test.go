package service

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/mdlayher/ndp"

	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/status"
	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/status/statustest"
	"github.com/dsbridge/dsbridge/cmd/internal/binding"
	"github.com/dsbridge/dsbridge/dhcp/dhcp4"
	"github.com/dsbridge/dsbridge/dhcp/dhcp6"
	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
	"github.com/dsbridge/dsbridge/netsetup"
	"github.com/dsbridge/dsbridge/ra"
)

var (
	vmMAC    = frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x05}
	otherMAC = frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x99}
	gwMAC    = frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x01}
)

func testSpec() binding.Spec {
	snap := &netsetup.Snapshot{
		PodIface: "eth0", MAC: vmMAC, MTU: 1400,
		IPv4:     []netip.Prefix{netip.MustParsePrefix("10.16.0.5/16")},
		IPv6:     []netip.Prefix{netip.MustParsePrefix("fd00:10:16::5/112")},
		Gateway4: &netsetup.Gateway{IP: netip.MustParseAddr("10.16.0.1")},
		Gateway6: &netsetup.Gateway{IP: netip.MustParseAddr("fd00:10:16::1"), MAC: gwMAC,
			LinkLocal: frame.LinkLocalFromMAC(gwMAC)},
		DNS:    []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00:10:96::a")},
		Search: []string{"default.svc.cluster.local"}, Hostname: "vm",
	}
	plan := netsetup.Plan{PodIface: "eth0", Tier: netsetup.TierFull}
	for _, s := range []string{netsetup.ServiceDHCPv4, netsetup.ServiceDHCPv6, netsetup.ServiceRA} {
		plan.Services = append(plan.Services, netsetup.ServicePlan{Service: s, On: true, Transport: netsetup.TransportPacket})
	}
	return binding.Spec{Name: "default", Snapshot: snap, VMMAC: vmMAC, Identity: "uid", Network: "default",
		Layout: netsetup.Layout{PodIface: "eth0", Tap: "tap0"}, Plan: plan}
}

// pipes hands out in-memory transports and keeps the guest's ends.
type pipes struct {
	mu    sync.Mutex
	guest map[frame.Kind]*frame.PipeConn
}

func (p *pipes) listen(_ string, f frame.Filter) (frame.Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tap, guest := frame.Pipe()
	p.guest[f.Kind] = guest
	return tap, nil
}

func discover4(t *testing.T, src frame.MAC, mt dhcpv4.MessageType, xid byte) []byte {
	t.Helper()
	m, err := dhcpv4.New(dhcpv4.WithHwAddr(src.HardwareAddr()), dhcpv4.WithMessageType(mt),
		dhcpv4.WithTransactionID(dhcpv4.TransactionID{0, 0, 0, xid}))
	if err != nil {
		t.Fatal(err)
	}
	if mt == dhcpv4.MessageTypeRequest {
		m.UpdateOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 16, 0, 5)))
	}
	return frame.AppendUDP4(nil, frame.UDP4{Eth: frame.Ethernet{Dst: frame.Broadcast, Src: src},
		Src: netip.IPv4Unspecified(), Dst: netip.AddrFrom4([4]byte{255, 255, 255, 255}),
		SrcPort: 68, DstPort: 67, TTL: 64, Payload: m.ToBytes()})
}

func solicit6(t *testing.T) []byte {
	t.Helper()
	m, err := dhcpv6.NewSolicit(vmMAC.HardwareAddr())
	if err != nil {
		t.Fatal(err)
	}
	all := netip.MustParseAddr("ff02::1:2")
	return frame.AppendUDP6(nil, frame.UDP6{Eth: frame.Ethernet{Dst: frame.MulticastMAC(all), Src: vmMAC},
		Src: frame.LinkLocalFromMAC(vmMAC), Dst: all, SrcPort: 546, DstPort: 547, HopLimit: 1, Payload: m.ToBytes()})
}

// readReply waits for one frame to the guest.
func readReply(t *testing.T, c *frame.PipeConn) {
	t.Helper()
	buf := make([]byte, 2048)
	if err := c.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadFrame(buf); err != nil {
		t.Fatalf("no reply: %v", err)
	}
}

// TestManagerRecords: the counters on /metrics and the lease in /status
// match exactly the exchanges the test made.
func TestManagerRecords(t *testing.T) {
	p := &pipes{guest: map[frame.Kind]*frame.PipeConn{}}
	model := status.NewModel(status.Info{Version: "test"})
	var mu sync.Mutex
	var observed []string
	m := NewManager(context.Background(), slog.New(slog.DiscardHandler), Options{Status: model, Listen: p.listen,
		Observe: func(name string, ev status.Event) {
			mu.Lock()
			defer mu.Unlock()
			observed = append(observed, name+" "+ev.Protocol+" "+ev.Request+">"+ev.Reply+" "+ev.Outcome)
		}})
	defer m.Stop()
	spec := testSpec()
	spec.RAMode = ra.ModeOff // the RA schedule is tested in ra; here only DHCP counts
	if err := m.Start(spec); err != nil {
		t.Fatal(err)
	}
	g4, g6 := p.guest[frame.KindDHCPv4], p.guest[frame.KindDHCPv6]
	for _, f := range [][]byte{discover4(t, vmMAC, dhcpv4.MessageTypeDiscover, 1), discover4(t, vmMAC, dhcpv4.MessageTypeDiscover, 2),
		discover4(t, vmMAC, dhcpv4.MessageTypeRequest, 2)} {
		if err := g4.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
		readReply(t, g4)
	}
	if err := g4.WriteFrame(discover4(t, otherMAC, dhcpv4.MessageTypeDiscover, 3)); err != nil {
		t.Fatal(err)
	}
	if err := g6.WriteFrame(solicit6(t)); err != nil {
		t.Fatal(err)
	}
	readReply(t, g6)
	wantObserved := []string{
		"default dhcpv4 DISCOVER>OFFER replied", "default dhcpv4 DISCOVER>OFFER replied", "default dhcpv4 REQUEST>ACK replied",
		"default dhcpv4 > dropped", "default dhcpv6 SOLICIT>ADVERTISE replied",
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		mu.Lock()
		n := len(observed)
		mu.Unlock()
		if n >= len(wantObserved) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	got := append([]string(nil), observed...)
	mu.Unlock()
	// The foreign frame and the Solicit race on two goroutines.
	if diff := cmp.Diff(wantObserved, got, cmpSorted()); diff != "" {
		t.Errorf("observed (-want +got):\n%s", diff)
	}

	var buf bytes.Buffer
	if err := model.WriteMetrics(&buf); err != nil {
		t.Fatal(err)
	}
	fams, err := statustest.Parse(&buf)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	counts := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"dsbridge_packets_received_total", map[string]string{"protocol": "dhcpv4", "type": "DISCOVER", "outcome": "replied"}, 2},
		{"dsbridge_packets_received_total", map[string]string{"protocol": "dhcpv4", "type": "REQUEST", "outcome": "replied"}, 1},
		{"dsbridge_packets_received_total", map[string]string{"protocol": "dhcpv4", "type": "unparsed", "outcome": "dropped"}, 1},
		{"dsbridge_packets_dropped_total", map[string]string{"protocol": "dhcpv4", "reason": "not-vm"}, 1},
		{"dsbridge_replies_sent_total", map[string]string{"protocol": "dhcpv4", "type": "OFFER"}, 2},
		{"dsbridge_replies_sent_total", map[string]string{"protocol": "dhcpv4", "type": "ACK"}, 1},
		{"dsbridge_replies_sent_total", map[string]string{"protocol": "dhcpv6", "type": "ADVERTISE"}, 1},
		{"dsbridge_handler_latency_seconds_count", map[string]string{"protocol": "dhcpv4"}, 4},
		{"dsbridge_handler_latency_seconds_count", map[string]string{"protocol": "dhcpv6"}, 1},
		{"dsbridge_lease_bound", map[string]string{"protocol": "dhcpv4"}, 1},
		{"dsbridge_lease_bound", map[string]string{"protocol": "dhcpv6"}, 0},
		{"dsbridge_service_up", map[string]string{"service": "dhcpv6"}, 1},
	}
	for _, c := range counts {
		if got, ok := statustest.Value(fams, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	doc := model.Status()
	svc := doc.Interfaces[0].Services
	if svc[0].Lease == nil || svc[0].Lease.State != status.LeaseBound || svc[0].Lease.Address != "10.16.0.5/16" {
		t.Errorf("DHCPv4 lease = %+v, want bound 10.16.0.5/16", svc[0].Lease)
	}
	if svc[1].Lease == nil || svc[1].Lease.State != status.LeaseOffered || svc[1].Lease.Address != "fd00:10:16::5" {
		t.Errorf("DHCPv6 lease = %+v, want offered fd00:10:16::5", svc[1].Lease)
	}
	if got, want := doc.Interfaces[0].Offer.IPv4, "10.16.0.5/16"; got != want {
		t.Errorf("offer IPv4 %q, want %q", got, want)
	}
	m.Stop()
	if got := model.Status().Interfaces[0].Services[0].Running; got {
		t.Error("DHCPv4 still running after Stop")
	}
}

// tapHub stands in for one tap with several packet sockets: every socket
// opened on it (per kind) is a pipe, a frame the guest sends reaches all of
// them, and the guest hears what any of them sends.
type tapHub struct {
	mu    sync.Mutex
	guest map[frame.Kind][]*frame.PipeConn
}

func (h *tapHub) listen(_ string, f frame.Filter) (frame.Conn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	srv, guest := frame.Pipe()
	h.guest[f.Kind] = append(h.guest[f.Kind], guest)
	return srv, nil
}

// exchange sends b to every open socket of kind and counts the replies the
// guest hears within wait.
func (h *tapHub) exchange(t *testing.T, kind frame.Kind, b []byte, wait time.Duration) int {
	t.Helper()
	h.mu.Lock()
	ends := append([]*frame.PipeConn(nil), h.guest[kind]...)
	h.mu.Unlock()
	replies := 0
	for _, g := range ends {
		if g.WriteFrame(b) != nil {
			continue // a socket closed with its service
		}
		buf := make([]byte, 2048)
		g.SetReadDeadline(time.Now().Add(wait))
		for {
			if _, err := g.ReadFrame(buf); err != nil {
				break
			}
			replies++
		}
	}
	return replies
}

// TestOneServerPerPort: a later OnDefineDomain naming another interface for
// the same tap replaces the first's services (one OFFER per DISCOVER, not
// two from two service MACs); the same interface again changes nothing;
// and a port no longer bound stops.
func TestOneServerPerPort(t *testing.T) {
	hub := &tapHub{guest: map[frame.Kind][]*frame.PipeConn{}}
	model := status.NewModel(status.Info{Version: "test"})
	m := NewManager(context.Background(), slog.New(slog.DiscardHandler), Options{Status: model, Listen: hub.listen})
	defer m.Stop()
	first := testSpec()
	first.RAMode = ra.ModeOff
	second := first
	second.Name, second.Identity = "renamed", "another-uid"
	discover := discover4(t, vmMAC, dhcpv4.MessageTypeDiscover, 1)

	for _, step := range []struct {
		name        string
		spec        binding.Spec
		wantOffers  int
		wantServing string
	}{
		{"first interface", first, 1, "default"},
		{"the same again", first, 1, "default"},
		{"another name for the same tap", second, 1, "renamed"},
	} {
		if err := m.Start(step.spec); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := hub.exchange(t, frame.KindDHCPv4, discover, 200*time.Millisecond); got != step.wantOffers {
			t.Errorf("%s: %d OFFERs to one DISCOVER, want %d", step.name, got, step.wantOffers)
		}
		if s, ok := m.Serving("tap0"); !ok || s.Name != step.wantServing {
			t.Errorf("%s: tap0 serves %q (%v), want %q", step.name, s.Name, ok, step.wantServing)
		}
		if n := len(model.Status().Interfaces); n != 1 {
			t.Errorf("%s: the status lists %d interfaces, want 1", step.name, n)
		}
	}
	m.Retain(nil)
	if _, ok := m.Serving("tap0"); ok {
		t.Error("tap0 still served after its interface left the VMI")
	}
	if got := hub.exchange(t, frame.KindDHCPv4, discover, 200*time.Millisecond); got != 0 {
		t.Errorf("%d OFFERs after the interface left, want none", got)
	}
}

// TestStaleEvidenceReachesAdvertiser: once the DHCPv4 server NAKed the
// guest's INIT-REBOOT for an address of another pod, the router
// advertisements take the next link-local neighbour the guest solicits
// (not our gateway) for its old router and withdraw it (router lifetime 0
// from that address, to the VM); without that evidence, nothing is
// withdrawn.
func TestStaleEvidenceReachesAdvertiser(t *testing.T) {
	oldMAC := frame.MAC{0x0a, 0x58, 0x0a, 0x11, 0x00, 0x01}
	oldLLA := frame.LinkLocalFromMAC(oldMAC)
	for _, row := range []struct {
		name      string
		requested netip.Addr // INIT-REBOOT first, when valid
		want      []string
	}{
		{name: "guest of this pod"},
		{name: "guest from another pod", requested: netip.MustParseAddr("10.17.0.9"), want: []string{oldLLA.String() + " lifetime 0s"}},
	} {
		t.Run(row.name, func(t *testing.T) {
			h := &tapHub{guest: map[frame.Kind][]*frame.PipeConn{}}
			m := NewManager(context.Background(), slog.New(slog.DiscardHandler), Options{Listen: h.listen})
			defer m.Stop()
			if err := m.Start(testSpec()); err != nil {
				t.Fatal(err)
			}
			if row.requested.IsValid() {
				if n := h.exchange(t, frame.KindDHCPv4, initReboot(t, row.requested), 300*time.Millisecond); n != 1 {
					t.Fatalf("INIT-REBOOT for %v: %d replies, want 1 (a NAK)", row.requested, n)
				}
			}
			icmp := h.guest[frame.KindICMPv6][0] // the tap's; [1] is the uplink watch
			if err := icmp.WriteFrame(nudProbe(t, oldLLA, oldMAC)); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(row.want, withdrawals(t, icmp, time.Second)); diff != "" {
				t.Errorf("withdrawals the guest heard (-want +got):\n%s", diff)
			}
		})
	}
}

// initReboot is a DHCPREQUEST in INIT-REBOOT state (no server identifier,
// requested address, ciaddr 0) from the VM.
func initReboot(t *testing.T, requested netip.Addr) []byte {
	t.Helper()
	m, err := dhcpv4.New(dhcpv4.WithHwAddr(vmMAC.HardwareAddr()), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithTransactionID(dhcpv4.TransactionID{0, 0, 0, 9}), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(requested.AsSlice())))
	if err != nil {
		t.Fatal(err)
	}
	return frame.AppendUDP4(nil, frame.UDP4{Eth: frame.Ethernet{Dst: frame.Broadcast, Src: vmMAC},
		Src: netip.IPv4Unspecified(), Dst: netip.AddrFrom4([4]byte{255, 255, 255, 255}),
		SrcPort: 68, DstPort: 67, TTL: 64, Payload: m.ToBytes()})
}

// nudProbe is the guest's unicast neighbour solicitation for target at mac,
// from its link-local address.
func nudProbe(t *testing.T, target netip.Addr, mac frame.MAC) []byte {
	t.Helper()
	b, err := ndp.MarshalMessage(&ndp.NeighborSolicitation{TargetAddress: target})
	if err != nil {
		t.Fatal(err)
	}
	return frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: mac, Src: vmMAC},
		Src: frame.LinkLocalFromMAC(vmMAC), Dst: target, HopLimit: 255, Payload: b})
}

// withdrawals reads what the guest hears within d and returns the RAs with
// router lifetime 0, as "source lifetime 0s".
func withdrawals(t *testing.T, c *frame.PipeConn, d time.Duration) []string {
	t.Helper()
	var out []string
	buf := make([]byte, 1<<16)
	c.SetReadDeadline(time.Now().Add(d))
	for {
		n, err := c.ReadFrame(buf)
		if err != nil {
			return out
		}
		p, err := frame.ParseICMP6(buf[:n])
		if err != nil || len(p.Payload) == 0 || p.Payload[0] != frame.ICMPv6RouterAdvertisement {
			continue
		}
		msg, err := ndp.ParseMessage(p.Payload)
		if err != nil {
			t.Fatalf("RA does not parse: %v", err)
		}
		if ra := msg.(*ndp.RouterAdvertisement); ra.RouterLifetime == 0 && p.Eth.Dst == vmMAC {
			out = append(out, fmt.Sprintf("%s lifetime %v", p.Src, ra.RouterLifetime))
		}
	}
}

// TestNoRateLimit: the DHCP servers keep their protocol's rate limit unless
// the options turn it off (dsbridge serve --rate-limit=false, for
// perfdhcp).
func TestNoRateLimit(t *testing.T) {
	t.Parallel()
	spec := testSpec()
	cfgs, err := binding.ConfigsFor(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []bool{false, true} {
		p := &pipes{guest: map[frame.Kind]*frame.PipeConn{}}
		m := NewManager(context.Background(), slog.New(slog.DiscardHandler), Options{Listen: p.listen, NoRateLimit: off})
		runners, err := m.prepare(spec, cfgs)
		if err != nil {
			t.Fatal(err)
		}
		want4, want6 := dhcp4.DefaultLimit, dhcp6.DefaultLimit
		if off {
			want4, want6 = serve.Limit{}, serve.Limit{}
		}
		got := []serve.Limit{runners[netsetup.ServiceDHCPv4].(*serve.Server).Limit, runners[netsetup.ServiceDHCPv6].(*serve.Server).Limit}
		if diff := cmp.Diff([]serve.Limit{want4, want6}, got); diff != "" {
			t.Errorf("NoRateLimit %v: limits (-want +got):\n%s", off, diff)
		}
		closeAll(runners)
	}
}
