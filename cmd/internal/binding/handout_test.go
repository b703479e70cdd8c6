package binding

import (
	"net/netip"
	"testing"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/netsetup"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestHandoutOf pins what `dsbridge inspect` reports for a Calico-style pod
// (a /32 and a /128 with link-local gateways): the option 121 list with the
// server identifier's and the gateway's host routes first, the server id,
// no RA prefix.
func TestHandoutOf(t *testing.T) {
	t.Parallel()
	mac := frame.MAC{0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05}
	gwMAC := frame.MAC{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
	calico := &netsetup.Snapshot{
		PodIface: "eth0", MAC: mac, MTU: 1450, Hostname: "vm1",
		IPv4:     []netip.Prefix{netip.MustParsePrefix("10.244.1.5/32")},
		IPv6:     []netip.Prefix{netip.MustParsePrefix("fd00:10:244::5/128")},
		Gateway4: &netsetup.Gateway{IP: netip.MustParseAddr("169.254.1.1")},
		Gateway6: &netsetup.Gateway{IP: netip.MustParseAddr("fe80::ecee:eeff:feee:eeee"), MAC: gwMAC, LinkLocal: netip.MustParseAddr("fe80::ecee:eeff:feee:eeee")},
		DNS:      []netip.Addr{netip.MustParseAddr("10.96.0.10")},
		Search:   []string{"default.svc.cluster.local", "cluster.local"},
	}
	cfgs, err := ConfigsFor(Spec{Snapshot: calico, VMMAC: mac, Identity: "standalone", Network: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	want := Handout{
		DHCPv4: &DHCPv4Handout{Address: netip.MustParseAddr("10.244.1.5"), Mask: "255.255.255.255", Router: netip.MustParseAddr("169.254.1.1"),
			Routes: []HandoutRoute{{Dst: netip.MustParsePrefix("169.254.75.10/32")}, {Dst: netip.MustParsePrefix("169.254.1.1/32")},
				{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("169.254.1.1")}},
			DNS: []netip.Addr{netip.MustParseAddr("10.96.0.10")}, Search: calico.Search, Domain: "default.svc.cluster.local",
			Hostname: "vm1", MTU: 1450, ServerID: netip.MustParseAddr("169.254.75.10")},
		DHCPv6: &DHCPv6Handout{Address: netip.MustParseAddr("fd00:10:244::5"), Search: calico.Search},
		RA: &RAHandout{Mode: "gateway", Source: netip.MustParseAddr("fe80::ecee:eeff:feee:eeee"), SLLAO: "ee:ee:ee:ee:ee:ee",
			MTU: 1450, Search: calico.Search},
	}
	opts := cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})
	if diff := cmp.Diff(want, HandoutOf(cfgs), opts); diff != "" {
		t.Errorf("HandoutOf(calico) (-want +got):\n%s", diff)
	}
}
