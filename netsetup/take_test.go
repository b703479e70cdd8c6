package netsetup

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/hooks/naming"
)

func TestTake(t *testing.T) {
	ovnGW := frame.MustParseMAC("0a:58:0a:10:00:01")
	ovnLLA := netip.MustParseAddr("fe80::858:aff:fe10:1")
	calicoGW := frame.MustParseMAC("ee:ee:ee:ee:ee:ee")
	multus := lab.KubeOVN
	multus.Name, multus.PodIface = "multus", naming.HashedPodInterface("network1")
	v4only := lab.KubeOVN
	v4only.Name, v4only.IPv6, v4only.Gateway6 = "ipv4-only", "", ""
	v6only := lab.KubeOVN
	v6only.Name, v6only.IPv4, v6only.Gateway4 = "ipv6-only", "", ""
	v6only.DNS = []string{"fd00:10:96::a", "fd00:10:96::b", "fd00:10:96::c"}
	jumbo := lab.KubeOVN
	jumbo.Name, jumbo.MTU = "mtu-9000", 9000
	jumbo.Search = []string{"ns1.svc.cluster.local", "svc.cluster.local", "cluster.local", "example.com"}

	ovn := func(spec lab.PodSpec) *Snapshot {
		s := &Snapshot{
			Version: SnapshotVersion, PodIface: spec.PodIface, MAC: frame.MustParseMAC(spec.MAC), MTU: spec.MTU,
			Hostname: "vm-" + spec.Name, Search: spec.Search,
		}
		for _, d := range spec.DNS {
			s.DNS = append(s.DNS, netip.MustParseAddr(d))
		}
		if spec.IPv4 != "" {
			s.IPv4 = []netip.Prefix{netip.MustParsePrefix(spec.IPv4)}
			s.Gateway4 = &Gateway{IP: netip.MustParseAddr(spec.Gateway4), MAC: ovnGW,
				Route: RouteAttrs{Protocol: 3, OnLink: true}}
		}
		if spec.IPv6 != "" {
			s.IPv6 = []netip.Prefix{netip.MustParsePrefix(spec.IPv6)}
			s.Gateway6 = &Gateway{IP: netip.MustParseAddr(spec.Gateway6), MAC: ovnGW, LinkLocal: ovnLLA,
				Route: RouteAttrs{Protocol: 3, Metric: 1024}}
		}
		return s
	}
	calico := &Snapshot{
		Version: SnapshotVersion, PodIface: "eth0", MAC: frame.MustParseMAC(lab.Calico.MAC), MTU: 1450, Hostname: "vm-calico",
		IPv4:     []netip.Prefix{netip.MustParsePrefix("10.244.1.5/32")},
		IPv6:     []netip.Prefix{netip.MustParsePrefix("fd00:10:244::5/128")},
		Gateway4: &Gateway{IP: netip.MustParseAddr("169.254.1.1"), MAC: calicoGW, Route: RouteAttrs{Protocol: 3, OnLink: true}},
		Gateway6: &Gateway{IP: netip.MustParseAddr("fe80::ecee:eeff:feee:eeee"), MAC: calicoGW,
			LinkLocal: netip.MustParseAddr("fe80::ecee:eeff:feee:eeee"), Route: RouteAttrs{Protocol: 3, Metric: 1024}},
		DNS:    []netip.Addr{netip.MustParseAddr("10.96.0.10")},
		Search: []string{"default.svc.cluster.local"},
	}

	tests := []struct {
		spec lab.PodSpec
		want *Snapshot
	}{
		{lab.KubeOVN, ovn(lab.KubeOVN)},
		{lab.Calico, calico},
		{v4only, ovn(v4only)},
		{v6only, ovn(v6only)},
		{jumbo, ovn(jumbo)},
		{multus, ovn(multus)},
	}
	for _, tt := range tests {
		t.Run(tt.spec.Name, func(t *testing.T) {
			l := newLab(t, tt.spec)
			got := takeIn(t, l)
			opts := []cmp.Option{
				cmpopts.IgnoreFields(Snapshot{}, "TakenAt", "Restore"),
				cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}),
			}
			if diff := cmp.Diff(tt.want, got, opts...); diff != "" {
				t.Errorf("Take (-want +got):\n%s", diff)
			}
			if got.Plumbed {
				t.Error("Plumbed = true on a pristine pod")
			}
			if n := len(got.Restore.Addrs); n != len(got.IPv4)+len(got.IPv6) {
				t.Errorf("Restore.Addrs has %d entries, want %d", n, len(got.IPv4)+len(got.IPv6))
			}
		})
	}
}
