package netsetup

import (
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseResolvConf(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		wantDNS    []string
		wantSearch []string
	}{
		{"kubernetes", "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\nnameserver fd00:10:96::a\noptions ndots:5\n",
			[]string{"10.96.0.10", "fd00:10:96::a"}, []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}},
		{"comments and junk", "# comment\n; other\nnameserver 1.1.1.1 # trailing\nnameserver not-an-ip\nnameserver\nbogus line\n",
			[]string{"1.1.1.1"}, nil},
		{"last search wins", "search a b\ndomain c\nsearch d e d\n", nil, []string{"d", "e"}},
		{"domain last", "search a b\ndomain c\n", nil, []string{"c"}},
		{"duplicates and zone", "nameserver 10.0.0.1\nnameserver 10.0.0.1\nnameserver fe80::1%eth0\n", []string{"10.0.0.1", "fe80::1%eth0"}, nil},
		{"empty", "", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dns, search := ParseResolvConf([]byte(tt.in))
			var got []string
			for _, a := range dns {
				got = append(got, a.String())
			}
			if diff := cmp.Diff(tt.wantDNS, got); diff != "" {
				t.Errorf("dns (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSearch, search); diff != "" {
				t.Errorf("search (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseResolvConf(f *testing.F) {
	f.Add([]byte("search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"))
	f.Add([]byte("domain x\nnameserver fe80::1%eth0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dns, _ := ParseResolvConf(b)
		for _, a := range dns {
			if !a.IsValid() {
				t.Fatalf("invalid address returned from %q", b)
			}
		}
	})
}

func TestParseCapEff(t *testing.T) {
	status := "Name:\tdsbridge\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t0000000000003400\nCapBnd:\t00000000a80425fb\n"
	got, err := parseCapEff([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if got != 0x3400 {
		t.Errorf("CapEff = %#x, want 0x3400", got)
	}
	want := Privileges{NetAdmin: true, NetRaw: true, NetBindService: true, CapEff: 0x3400}
	if diff := cmp.Diff(want, PrivilegesFromCaps(got)); diff != "" {
		t.Errorf("PrivilegesFromCaps (-want +got):\n%s", diff)
	}
	if _, err := parseCapEff([]byte("Name:\tx\n")); err == nil {
		t.Error("parseCapEff without CapEff: want error")
	}
}

// kubeOVN is a Kube-OVN dual-stack pod's snapshot.
func kubeOVN() *Snapshot {
	gwMAC := frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x01}
	return &Snapshot{
		Version: SnapshotVersion, PodIface: "eth0", MAC: frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x05}, MTU: 1400,
		IPv4:     []netip.Prefix{netip.MustParsePrefix("10.16.0.5/16")},
		IPv6:     []netip.Prefix{netip.MustParsePrefix("fd00:10:16::5/112")},
		Gateway4: &Gateway{IP: netip.MustParseAddr("10.16.0.1"), MAC: gwMAC},
		Gateway6: &Gateway{IP: netip.MustParseAddr("fd00:10:16::1"), MAC: gwMAC, LinkLocal: netip.MustParseAddr("fe80::858:aff:fe10:1")},
		DNS:      []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00:10:96::a")},
		Search:   []string{"default.svc.cluster.local"},
		Hostname: "vm1",
	}
}

// guarded and unguarded are a DHCP service on UDP with and without the
// binding CNI's uplink guard.
func guarded(service string) ServicePlan {
	return ServicePlan{Service: service, On: true, Transport: TransportUDP, Guarded: true,
		Reason: "UDP on the bridge; the binding CNI's uplink guard keeps the uplink out"}
}

func unguarded(service string) ServicePlan {
	return ServicePlan{Service: service, On: true, Transport: TransportUDP, Remedy: remedyGuard,
		Reason: "UDP on the bridge without an uplink guard: neighbours on the uplink reach the socket and broadcast replies reach the uplink"}
}

func TestPlanFor(t *testing.T) {
	full := Privileges{NetAdmin: true, NetRaw: true, NetBindService: true, UnprivilegedPortStart: 1024}
	unpriv := Privileges{UnprivilegedPortStart: 1024}
	lowered := Privileges{UnprivilegedPortStart: 0}
	rootGate := Privileges{NetRaw: true, NetBindService: true, UnprivilegedPortStart: 1024}
	noGwMAC := kubeOVN()
	noGwMAC.Gateway6 = &Gateway{IP: netip.MustParseAddr("fd00:10:16::1")}
	v4only := kubeOVN()
	v4only.IPv6, v4only.Gateway6 = nil, nil

	on := func(svc, tr string) ServicePlan { return ServicePlan{Service: svc, On: true, Transport: tr} }
	tests := []struct {
		name     string
		p        Privileges
		s        *Snapshot
		opts     PlanOptions
		wantTier Tier
		want     []ServicePlan
	}{
		{"full", full, kubeOVN(), PlanOptions{}, TierFull, []ServicePlan{
			on(ServicePlumbing, TransportBuild), on(ServiceDHCPv4, TransportPacket), on(ServiceDHCPv6, TransportPacket), on(ServiceRA, TransportPacket)}},
		{"root gate", rootGate, kubeOVN(), PlanOptions{LayoutExists: true}, TierRootGate, []ServicePlan{
			{Service: ServicePlumbing, On: true, Transport: TransportAdopt, Reason: "no CAP_NET_ADMIN: adopting the existing bridge and tap"},
			on(ServiceDHCPv4, TransportPacket), on(ServiceDHCPv6, TransportPacket), on(ServiceRA, TransportPacket)}},
		{"unprivileged, port start 1024", unpriv, kubeOVN(), PlanOptions{}, TierUnprivileged, []ServicePlan{
			{Service: ServicePlumbing, Reason: "no CAP_NET_ADMIN and no bridge and tap to adopt", Remedy: remedyPlumbing},
			{Service: ServiceDHCPv4, Reason: "no CAP_NET_RAW or CAP_NET_BIND_SERVICE, and net.ipv4.ip_unprivileged_port_start=1024 does not allow UDP port 67", Remedy: remedyPorts},
			{Service: ServiceDHCPv6, Reason: "no CAP_NET_RAW or CAP_NET_BIND_SERVICE, and net.ipv4.ip_unprivileged_port_start=1024 does not allow UDP port 547", Remedy: remedyPorts},
			{Service: ServiceRA, Reason: "no CAP_NET_RAW: an RA from the gateway's link-local address needs a packet socket", Remedy: remedyRAPriv}}},
		{"unprivileged, port start 0, CNI responder and guard", lowered, kubeOVN(), PlanOptions{LayoutExists: true, RAResponder: true, UplinkGuard: true},
			TierUnprivileged, []ServicePlan{
				{Service: ServicePlumbing, On: true, Transport: TransportAdopt, Reason: "no CAP_NET_ADMIN: adopting the existing bridge and tap"},
				guarded(ServiceDHCPv4), guarded(ServiceDHCPv6), on(ServiceRA, TransportBPF)}},
		{"unprivileged, port start 0, no guard", lowered, kubeOVN(), PlanOptions{LayoutExists: true}, TierUnprivileged, []ServicePlan{
			{Service: ServicePlumbing, On: true, Transport: TransportAdopt, Reason: "no CAP_NET_ADMIN: adopting the existing bridge and tap"},
			unguarded(ServiceDHCPv4), unguarded(ServiceDHCPv6),
			{Service: ServiceRA, Reason: "no CAP_NET_RAW: an RA from the gateway's link-local address needs a packet socket", Remedy: remedyRAPriv}}},
		{"gateway MAC unknown", full, noGwMAC, PlanOptions{}, TierFull, []ServicePlan{
			on(ServicePlumbing, TransportBuild), on(ServiceDHCPv4, TransportPacket), on(ServiceDHCPv6, TransportPacket),
			{Service: ServiceRA, Reason: "the MAC of IPv6 gateway fd00:10:16::1 is unknown, so its link-local address is too", Remedy: remedyRAGw}}},
		{"IPv4 only, DHCPv4 disabled", full, v4only, PlanOptions{Off: map[string]string{ServiceDHCPv4: "disabled by configuration"}}, TierFull, []ServicePlan{
			on(ServicePlumbing, TransportBuild),
			{Service: ServiceDHCPv4, Reason: "disabled by configuration"},
			{Service: ServiceDHCPv6, Reason: "the pod interface has no IPv6 address to hand out"},
			{Service: ServiceRA, Reason: "the pod interface has no IPv6 address"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PlanFor(tt.p, tt.s, tt.opts)
			if got.Tier != tt.wantTier {
				t.Errorf("tier = %q, want %q", got.Tier, tt.wantTier)
			}
			if diff := cmp.Diff(tt.want, got.Services); diff != "" {
				t.Errorf("services (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanLogLine(t *testing.T) {
	p := PlanFor(Privileges{NetRaw: true, UnprivilegedPortStart: 1024}, kubeOVN(), PlanOptions{})
	want := "eth0: tier Root gate; plumbing off: no CAP_NET_ADMIN and no bridge and tap to adopt; remedy: " + remedyPlumbing +
		"; dhcpv4 on (packet); dhcpv6 on (packet); ra on (packet)"
	if got := p.LogLine(); got != want {
		t.Errorf("LogLine:\n got %s\nwant %s", got, want)
	}
	if n := len(p.LogAttrs()); n != 6 {
		t.Errorf("LogAttrs has %d attributes, want 6", n)
	}
}

func TestSnapshotJSONRoundTrip(t *testing.T) {
	s := kubeOVN()
	s.TakenAt = time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)
	s.Routes = []Route{{Dst: netip.MustParsePrefix("10.96.0.0/12"), Via: netip.MustParseAddr("10.16.0.1"), RouteAttrs: RouteAttrs{Protocol: 4, Metric: 100}}}
	s.Restore = Restore{Addrs: []Addr{{Prefix: netip.MustParsePrefix("fd00:10:16::5/112"), Flags: 2}}, Up: true, ArpIgnore: 0, AddrGenMode: 0}
	path := t.TempDir() + "/snapshot-eth0.json"
	if err := Save(s, path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, got, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	b, _ := json.Marshal(s.Gateway6)
	if want := `{"ip":"fd00:10:16::1","mac":"0a:58:0a:10:00:01","linkLocal":"fe80::858:aff:fe10:1","route":{}}`; string(b) != want {
		t.Errorf("gateway JSON = %s, want %s", b, want)
	}
}

func TestCheckMatches(t *testing.T) {
	a, b := kubeOVN(), kubeOVN()
	b.IPv4, b.IPv6 = b.IPv6, b.IPv4 // same set, other fields
	if err := CheckMatches("p", a, b); err != nil {
		t.Errorf("same addresses: %v", err)
	}
	b.IPv4 = []netip.Prefix{netip.MustParsePrefix("10.16.0.6/16")}
	var me *MismatchError
	if err := CheckMatches("p", a, b); !errors.As(err, &me) {
		t.Fatalf("different addresses: got %v, want *MismatchError", err)
	}
}

func BenchmarkParseResolvConf(b *testing.B) {
	in := []byte("search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\nnameserver fd00:10:96::a\noptions ndots:5\n")
	b.ReportAllocs()
	for b.Loop() {
		ParseResolvConf(in)
	}
}

func BenchmarkPlanForLogLine(b *testing.B) {
	s := kubeOVN()
	p := Privileges{NetRaw: true, UnprivilegedPortStart: 1024}
	b.ReportAllocs()
	for b.Loop() {
		_ = PlanFor(p, s, PlanOptions{}).LogLine()
	}
}
