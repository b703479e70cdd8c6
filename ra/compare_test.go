package ra

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/ndp"
)

func TestDifferences(t *testing.T) {
	t.Parallel()
	ours, err := Build(kubeOVN112())
	if err != nil {
		t.Fatal(err)
	}
	ovn := func(edit func(*ndp.RouterAdvertisement)) *ndp.RouterAdvertisement {
		// OVN's own RA for dhcpv6_stateful: M=1 O=1, lifetime 65535 s, hop limit 255.
		ra := &ndp.RouterAdvertisement{
			CurrentHopLimit: 255, ManagedConfiguration: true, OtherConfiguration: true, RouterLifetime: 65535 * time.Second,
			Options: []ndp.Option{
				&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: kubeOVNGatewayMAC.HardwareAddr()},
				ndp.NewMTU(1400),
				&ndp.PrefixInformation{PrefixLength: 112, OnLink: true, ValidLifetime: ndp.Infinity, PreferredLifetime: ndp.Infinity, Prefix: netip.MustParseAddr("fd00:10:16::")},
			},
		}
		if edit != nil {
			edit(ra)
		}
		return ra
	}
	tests := []struct {
		name     string
		observed *ndp.RouterAdvertisement
		want     []string
	}{
		{"OVN dhcpv6_stateful: same for the guest", ovn(nil), nil},
		{"OVN slaac", ovn(func(ra *ndp.RouterAdvertisement) {
			ra.ManagedConfiguration, ra.OtherConfiguration = false, false
			ra.Options[2].(*ndp.PrefixInformation).AutonomousAddressConfiguration = true
		}), []string{
			"M flag: ours 1, observed 0",
			"O flag: ours 1, observed 0",
			"prefix fd00:10:16::/112: observed A=1, guests would autoconfigure an address",
		}},
		{"OVN dhcpv6_stateless, MTU 1500, another /64", ovn(func(ra *ndp.RouterAdvertisement) {
			ra.ManagedConfiguration = false
			ra.Options[1] = ndp.NewMTU(1500)
			ra.Options = append(ra.Options, &ndp.PrefixInformation{PrefixLength: 64, AutonomousAddressConfiguration: true, Prefix: netip.MustParseAddr("2001:db8::")})
		}), []string{
			"M flag: ours 1, observed 0",
			"prefix 2001:db8::/64: observed A=1, guests would autoconfigure an address",
			"MTU: ours 1400, observed 1500",
		}},
		{"lifetime 0, prefix off-link", ovn(func(ra *ndp.RouterAdvertisement) {
			ra.RouterLifetime = 0
			ra.Options[2].(*ndp.PrefixInformation).OnLink = false
		}), []string{
			"router lifetime: observed 0 withdraws the default router",
			"prefix fd00:10:16::/112: ours L=1, observed L=0",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Differences(ours, tt.observed)); diff != "" {
				t.Errorf("Differences (-want +got):\n%s", diff)
			}
		})
	}
}

func TestObserveUpstreamLogsOnce(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	a, err := NewAdvertiser(kubeOVN112(), nopConn{}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	slaac := &ndp.RouterAdvertisement{RouterLifetime: time.Hour}
	a.ObserveUpstream(netip.MustParseAddr("fe80::1"), slaac) // another router: not ours to judge
	a.ObserveUpstream(kubeOVNGatewayLLA.WithZone("eth0"), slaac)
	a.ObserveUpstream(kubeOVNGatewayLLA, slaac)
	if n := strings.Count(logs.String(), "differ from dsbridge's"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `source=fe80::858:aff:fe10:1%eth0`) || !strings.Contains(logs.String(), "M flag: ours 1, observed 0") {
		t.Errorf("log lacks the source or the difference:\n%s", logs.String())
	}
}

// FuzzDifferences parses arbitrary bytes as an upstream RA and compares it
// with ours: no panic whatever the uplink sends.
func FuzzDifferences(f *testing.F) {
	ours, err := Build(kubeOVN112())
	if err != nil {
		f.Fatal(err)
	}
	seed, err := ndp.MarshalMessage(ours)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ndp.ParseMessage(b)
		if err != nil {
			return
		}
		if ra, ok := m.(*ndp.RouterAdvertisement); ok {
			_ = Differences(ours, ra)
		}
	})
}
