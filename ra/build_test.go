package ra

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/ndp"
)

var (
	kubeOVNGatewayMAC = frame.MustParseMAC("0a:58:0a:10:00:01")
	kubeOVNGatewayLLA = netip.MustParseAddr("fe80::858:aff:fe10:1")
	calicoGatewayMAC  = frame.MustParseMAC("ee:ee:ee:ee:ee:ee")
	calicoGatewayLLA  = netip.MustParseAddr("fe80::ecee:eeff:feee:eeee")
	vmMAC             = frame.MustParseMAC("52:54:00:12:34:56")
	k8sSearch         = []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}
)

// unhex decodes hex written with spaces, newlines and "#" comments.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		b.WriteString(strings.Join(strings.Fields(line), ""))
	}
	out, err := hex.DecodeString(b.String())
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return out
}

func kubeOVN112() Config {
	return Config{
		GatewayLLA: kubeOVNGatewayLLA,
		GatewayMAC: kubeOVNGatewayMAC,
		Prefix:     netip.MustParsePrefix("fd00:10:16::5/112"), // unmasked, as the pod address is
		MTU:        1400,
		DNS:        []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00:10:96::a")},
		Search:     k8sSearch,
		VMMAC:      vmMAC,
	}
}

// Wire pieces shared by the rows.
const (
	raHeaderMOLifetime1800 = `
		86 00 0000          # type 134, code 0, checksum (left to the frame)
		40 c0 0708          # hop limit 64, M=1 O=1 Prf=medium, router lifetime 1800 s
		00000000 00000000   # reachable time, retrans timer: unspecified`
	kubeOVNSLLA = `
		01 01 0a580a100001 # SLLAO: gateway MAC`
	mtu1400 = `
		05 01 0000 00000578 # MTU 1400`
	pio112 = `
		03 04 70 80         # PIO /112, L=1 A=0
		00000e10 00000e10   # valid, preferred: 3600 s
		00000000            # reserved
		fd000010001600000000000000000000`
	rdnss = `
		19 03 0000 00000708 # RDNSS, lifetime 1800 s
		fd00001000960000000000000000000a`
	dnssl = `
		1f 09 0000 00000708 # DNSSL, lifetime 1800 s
		07 64656661756c74 03 737663 07 636c7573746572 05 6c6f63616c 00 # default.svc.cluster.local
		03 737663 07 636c7573746572 05 6c6f63616c 00                   # svc.cluster.local
		07 636c7573746572 05 6c6f63616c 00                              # cluster.local
		000000                                                          # padding to 8 octets`
)

func TestBuild(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  func() Config
		want string
	}{
		{
			name: "Kube-OVN /112",
			cfg:  kubeOVN112,
			want: raHeaderMOLifetime1800 + kubeOVNSLLA + mtu1400 + pio112 + rdnss + dnssl,
		},
		{
			name: "Kube-OVN /64, MTU 1500, no search",
			cfg: func() Config {
				c := kubeOVN112()
				c.Prefix = netip.MustParsePrefix("fd00:10:16:0:1::5/64")
				c.MTU = 1500
				c.Search = nil
				return c
			},
			want: raHeaderMOLifetime1800 + kubeOVNSLLA + `
				05 01 0000 000005dc # MTU 1500
				03 04 40 80 00000e10 00000e10 00000000 # PIO /64 L=1 A=0, 3600 s
				fd000010001600000000000000000000` + rdnss,
		},
		{
			name: "Calico /128: no PIO",
			cfg: func() Config {
				return Config{
					GatewayLLA: calicoGatewayLLA,
					GatewayMAC: calicoGatewayMAC,
					Prefix:     netip.MustParsePrefix("fd00:10:244::7/128"),
					MTU:        1480,
					DNS:        []netip.Addr{netip.MustParseAddr("fd00:10:96::a")},
					Search:     []string{"cluster.local."},
					VMMAC:      vmMAC,
				}
			},
			want: raHeaderMOLifetime1800 + `
				01 01 eeeeeeeeeeee  # SLLAO
				05 01 0000 000005c8 # MTU 1480` + rdnss + `
				1f 03 0000 00000708 07 636c7573746572 05 6c6f63616c 00 00 # DNSSL cluster.local, 1 octet padding`,
		},
		{
			name: "no DNS: only IPv4 nameservers, no search",
			cfg: func() Config {
				c := kubeOVN112()
				c.DNS = []netip.Addr{netip.MustParseAddr("10.96.0.10")}
				c.Search = nil
				return c
			},
			want: raHeaderMOLifetime1800 + kubeOVNSLLA + mtu1400 + pio112,
		},
		{
			name: "no prefix, no MTU, router lifetime 9000 s",
			cfg: func() Config {
				c := kubeOVN112()
				c.Prefix, c.MTU, c.DNS, c.Search = netip.Prefix{}, 0, nil, nil
				c.RouterLifetime = 9000*time.Second + 300*time.Millisecond
				return c
			},
			want: `86 00 0000 40 c0 2328 00000000 00000000 # lifetime 9000 s` + kubeOVNSLLA,
		},
		{
			name: "flags-only: lifetime 0, PIO only",
			cfg: func() Config {
				c := kubeOVN112()
				c.Mode = ModeFlagsOnly
				c.RouterLifetime = time.Hour // ignored
				return c
			},
			want: `86 00 0000 40 c0 0000 00000000 00000000 # lifetime 0` + pio112,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ra, err := Build(tt.cfg())
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			got, err := ndp.MarshalMessage(ra)
			if err != nil {
				t.Fatalf("MarshalMessage: %v", err)
			}
			want := unhex(t, tt.want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("wire bytes (-want +got):\n%s\nwant %x\ngot  %x", diff, want, got)
			}
			back, err := ndp.ParseMessage(got)
			if err != nil {
				t.Fatalf("ParseMessage: %v", err)
			}
			if diff := cmp.Diff(ra, back, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("parsed back (-built +parsed):\n%s", diff)
			}
		})
	}
}

func TestBuildRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"mode off", func(c *Config) { c.Mode = ModeOff }, "mode off does not advertise"},
		{"global gateway", func(c *Config) { c.GatewayLLA = netip.MustParseAddr("fd00:10:16::1") }, `gateway address "fd00:10:16::1" is not an IPv6 link-local address`},
		{"missing gateway", func(c *Config) { c.GatewayLLA = netip.Addr{} }, `gateway address "invalid IP" is not an IPv6 link-local address`},
		{"multicast gateway MAC", func(c *Config) { c.GatewayMAC = frame.MustParseMAC("33:33:00:00:00:01") }, `gateway MAC "33:33:00:00:00:01" is not a unicast Ethernet address`},
		{"missing VM MAC", func(c *Config) { c.VMMAC = frame.MAC{} }, `VM MAC "" is not a unicast Ethernet address`},
		{"IPv4 prefix", func(c *Config) { c.Prefix = netip.MustParsePrefix("10.16.0.0/16") }, `pod prefix "10.16.0.0/16" is not an IPv6 prefix`},
		{"link-local prefix", func(c *Config) { c.Prefix = netip.MustParsePrefix("fe80::/64") }, `pod prefix "fe80::/64" is link-local or multicast`},
		{"MTU below IPv6 minimum", func(c *Config) { c.MTU = 1279 }, "MTU 1279 is outside [1280, 65535]"},
		{"router lifetime over 16 bits", func(c *Config) { c.RouterLifetime = ndp.Infinity }, "router lifetime 1193046h28m15s is outside [10m0s, 18h12m15s]"},
		{"router lifetime below MaxRtrAdvInterval", func(c *Config) { c.RouterLifetime = time.Minute }, "router lifetime 1m0s is outside [10m0s, 18h12m15s]"},
		{"empty label", func(c *Config) { c.Search = []string{"svc..local"} }, `search domain "svc..local" is not a valid domain name`},
		{"domain too long for one option", func(c *Config) { c.Search = []string{strings.Repeat("a.", 119) + "bb"} }, "is not a valid domain name"},
		{"too long for 1280", func(c *Config) {
			c.Search = nil
			for i := range 30 {
				c.Search = append(c.Search, strings.Repeat("a", 40)+"."+strings.Repeat("b", i+1))
			}
		}, "router advertisement of 1960 bytes exceeds 1240 (too many DNS options)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := kubeOVN112()
			tt.edit(&cfg)
			_, err := Build(cfg)
			if err == nil {
				t.Fatal("Build succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestBuildReportsEveryBadField(t *testing.T) {
	t.Parallel()
	_, err := Build(Config{})
	want := "invalid router advertisement config: " +
		`gateway address "invalid IP" is not an IPv6 link-local address` + "\n" +
		`gateway MAC "" is not a unicast Ethernet address` + "\n" +
		`VM MAC "" is not a unicast Ethernet address`
	if err == nil || err.Error() != want {
		t.Errorf("Build(Config{}) error:\n%v\nwant:\n%s", err, want)
	}
}

func TestSource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode Mode
		lla  netip.Addr
		want netip.Addr
	}{
		{ModeGateway, kubeOVNGatewayLLA, kubeOVNGatewayLLA},
		{ModeGateway, netip.MustParseAddr("fe80::858:aff:fe10:1%eth0"), kubeOVNGatewayLLA},
		{ModeFlagsOnly, kubeOVNGatewayLLA, netip.MustParseAddr("fe80::a58:aff:fe10:1")},
		{ModeFlagsOnly, calicoGatewayLLA, netip.MustParseAddr("fe80::eeee:eeff:feee:eeee")},
	}
	for _, tt := range tests {
		if got := Source(Config{Mode: tt.mode, GatewayLLA: tt.lla}); got != tt.want {
			t.Errorf("Source(%v, %v) = %v, want %v", tt.mode, tt.lla, got, tt.want)
		}
	}
}

func TestParseMode(t *testing.T) {
	t.Parallel()
	for _, m := range []Mode{ModeGateway, ModeFlagsOnly, ModeOff} {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMode("radvd"); err == nil {
		t.Error(`ParseMode("radvd") succeeded`)
	}
}

// A long search list is split over several DNSSL options, each short enough
// for ndp to encode, in order.
func TestBuildSplitsLongSearchList(t *testing.T) {
	t.Parallel()
	cfg := kubeOVN112()
	cfg.Search = nil
	for i := range 12 {
		cfg.Search = append(cfg.Search, fmt.Sprintf("ns%02d.svc.cluster.local", i)) // 24 bytes encoded each
	}
	ra, err := Build(cfg)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	b, err := ndp.MarshalMessage(ra)
	if err != nil {
		t.Fatalf("MarshalMessage: %v", err)
	}
	back, err := ndp.ParseMessage(b)
	if err != nil {
		t.Fatalf("ParseMessage: %v", err)
	}
	var got [][]string
	for _, o := range back.(*ndp.RouterAdvertisement).Options {
		if d, ok := o.(*ndp.DNSSearchList); ok {
			got = append(got, d.DomainNames)
		}
	}
	want := [][]string{cfg.Search[:10], cfg.Search[10:]} // 8 + 10×24 = 248, the most ndp encodes
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DNSSL options (-want +got):\n%s", diff)
	}
}
