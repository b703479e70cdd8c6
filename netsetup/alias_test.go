package netsetup

import (
	"net/netip"
	"testing"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestGatewayAliasRoundTrip(t *testing.T) {
	t.Parallel()
	mac := frame.MustParseMAC
	for _, tc := range []struct {
		name string
		s    Snapshot
		want string
	}{
		{"kube-ovn dual stack", Snapshot{
			Gateway4: &Gateway{IP: netip.MustParseAddr("10.16.0.1"), MAC: mac("0a:58:0a:10:00:01")},
			Gateway6: &Gateway{IP: netip.MustParseAddr("fd00:10:16::1"), MAC: mac("0a:58:0a:10:00:01"), LinkLocal: netip.MustParseAddr("fe80::858:aff:fe10:1")},
		}, "dsbridge-gw/1 4=10.16.0.1,0a:58:0a:10:00:01 6=fd00:10:16::1,0a:58:0a:10:00:01,fe80::858:aff:fe10:1"},
		{"ipv6 gateway without a known MAC", Snapshot{
			Gateway6: &Gateway{IP: netip.MustParseAddr("fd00:10:16::1")},
		}, "dsbridge-gw/1 6=fd00:10:16::1,,"},
		{"no gateways", Snapshot{}, "dsbridge-gw/1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := gatewayAlias(&tc.s)
			if got != tc.want {
				t.Fatalf("gatewayAlias = %q, want %q", got, tc.want)
			}
			if len(got) > 255 {
				t.Fatalf("alias of %d bytes exceeds IFALIASZ", len(got))
			}
			gw4, gw6, ok := parseGatewayAlias(got)
			if !ok {
				t.Fatalf("parseGatewayAlias(%q) failed", got)
			}
			opt := cmpopts.EquateComparable(netip.Addr{})
			if diff := cmp.Diff(tc.s.Gateway4, gw4, opt); diff != "" {
				t.Errorf("gateway4 (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.s.Gateway6, gw6, opt); diff != "" {
				t.Errorf("gateway6 (-want +got):\n%s", diff)
			}
		})
	}
	for _, bad := range []string{"", "something else", "dsbridge-gw/1 4=notanip", "dsbridge-gw/1 5=10.0.0.1", "dsbridge-gw/1 4"} {
		if _, _, ok := parseGatewayAlias(bad); ok {
			t.Errorf("parseGatewayAlias(%q) accepted it", bad)
		}
	}
}
