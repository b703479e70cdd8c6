package dhcp6

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/insomniacslk/dhcp/dhcpv6"
)

func TestNewHandlerDefaults(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t)
	got := h.Config()
	want := []any{DefaultPreferredLifetime, DefaultValidLifetime, time.Minute, 2 * time.Minute, 86400 * time.Second, serverLLA}
	if diff := cmp.Diff(want, []any{got.PreferredLifetime, got.ValidLifetime, got.T1, got.T2, got.InfoRefresh, got.ServerLinkLocal},
		cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestNewHandlerValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"trailing dot in search domain is dropped", func(c *Config) { c.Search = []string{"cluster.local."} }, ""},
		{"explicit link-local", func(c *Config) { c.ServerLinkLocal = netip.MustParseAddr("fe80::1") }, ""},
		{"no VM MAC", func(c *Config) { c.VMMAC = frame.MAC{} }, "VM MAC"},
		{"multicast VM MAC", func(c *Config) { c.VMMAC = frame.MAC{1, 0, 0x5e, 0, 0, 1} }, "VM MAC"},
		{"no service MAC", func(c *Config) { c.ServiceMAC = frame.MAC{} }, "service MAC"},
		{"global server address", func(c *Config) { c.ServerLinkLocal = podAddr }, "not an IPv6 link-local"},
		{"no DUID", func(c *Config) { c.ServerDUID = nil }, "server DUID"},
		{"no address", func(c *Config) { c.Address = netip.Addr{} }, "not a global IPv6"},
		{"IPv4 address", func(c *Config) { c.Address = netip.MustParseAddr("10.16.0.5") }, "not a global IPv6"},
		{"link-local address", func(c *Config) { c.Address = vmLLA }, "not a global IPv6"},
		{"IPv4 DNS", func(c *Config) { c.DNS = []netip.Addr{netip.MustParseAddr("10.96.0.10")} }, "DNS server"},
		{"empty search domain", func(c *Config) { c.Search = []string{""} }, "search domain"},
		{"empty label", func(c *Config) { c.Search = []string{"a..b"} }, "search domain"},
		{"64-byte label", func(c *Config) { c.Search = []string{strings.Repeat("a", 64) + ".com"} }, "search domain"},
		{"T1 above T2", func(c *Config) { c.T1, c.T2 = 3*time.Hour, 2*time.Hour }, "increasing order"},
		{"T2 above preferred", func(c *Config) { c.PreferredLifetime, c.ValidLifetime = time.Minute, time.Minute }, "increasing order"},
		{"preferred above valid", func(c *Config) { c.ValidLifetime = 24 * time.Hour }, "increasing order"},
		{"lifetime beyond 32 bits", func(c *Config) {
			c.PreferredLifetime, c.ValidLifetime = 200*365*24*time.Hour, 200*365*24*time.Hour
		}, "not between"},
		{"short information refresh", func(c *Config) { c.InfoRefresh = time.Minute }, "information refresh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			tt.edit(&cfg)
			_, err := NewHandler(cfg, discard())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("NewHandler: %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("NewHandler error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseDUID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"00:03:00:01:0a:58:0a:10:00:05", "000300010a580a100005", false},
		{"0004578dacdfb4b25e0bbb16113852de0175", wantServerDUIDHex, false},
		{"00-02-00-00-ab-11-01", "00020000ab1101", false},
		{"00:04:01", "", true}, // DUID-UUID must hold 16 bytes
		{"zz", "", true},
		{"00:01", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d, err := ParseDUID(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseDUID(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err == nil {
				if diff := cmp.Diff(tt.want, hexOf(d.ToBytes())); diff != "" {
					t.Errorf("DUID (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestVMFilter(t *testing.T) {
	t.Parallel()
	duidLL := func(mac frame.MAC) dhcpv6.Option {
		return dhcpv6.OptClientID(&dhcpv6.DUIDLL{HWType: 1, LinkLayerAddr: mac.HardwareAddr()})
	}
	duidEN := dhcpv6.OptClientID(&dhcpv6.DUIDEN{EnterpriseNumber: 43793, EnterpriseIdentifier: []byte{1, 2, 3, 4}})
	stablePrivacy := netip.MustParseAddr("fe80::1c2d:3e4f:5a6b:7c8d")
	otherLLA := netip.MustParseAddr("fe80::858:aff:fe10:99")
	tests := []struct {
		name string
		src  netip.Addr
		msg  dhcpv6.DHCPv6
		want bool
	}{
		{"DUID-LLT and EUI-64 source of the VM", vmLLA, msg(t, dhcpv6.MessageTypeSolicit, cid()), true},
		{"DUID-LL of the VM, stable-privacy source", stablePrivacy, msg(t, dhcpv6.MessageTypeSolicit, duidLL(vmMAC)), true},
		{"DUID-EN, EUI-64 source of the VM", vmLLA, msg(t, dhcpv6.MessageTypeSolicit, duidEN), true},
		{"DUID-EN, stable-privacy source: ambiguous", stablePrivacy, msg(t, dhcpv6.MessageTypeSolicit, duidEN), false},
		{"no client ID, stable-privacy source: ambiguous", stablePrivacy, msg(t, dhcpv6.MessageTypeInformationRequest), false},
		{"uplink host: other DUID and source", otherLLA, msg(t, dhcpv6.MessageTypeSolicit, duidLL(otherMAC)), false},
		{"VM's DUID from another host's EUI-64 source: conflict", otherLLA, msg(t, dhcpv6.MessageTypeSolicit, cid()), false},
		{"relay whose peer is the VM", netip.MustParseAddr("fd00:10:16::1"),
			reparse(t, relayForward(t, 0, msg(t, dhcpv6.MessageTypeSolicit, duidEN))), true},
		{"relay with the VM's Client Link-Layer Address", netip.MustParseAddr("fd00:10:16::1"), reparse(t, func() dhcpv6.DHCPv6 {
			r := relayForward(t, 0, msg(t, dhcpv6.MessageTypeSolicit, duidEN), dhcpv6.OptClientLinkLayerAddress(1, vmMAC.HardwareAddr()))
			r.PeerAddr = net.IP(stablePrivacy.AsSlice())
			return r
		}()), true},
		{"relay for another host", netip.MustParseAddr("fd00:10:16::1"),
			reparse(t, relayForward(t, 0, msg(t, dhcpv6.MessageTypeSolicit, duidLL(otherMAC)))), false},
	}
	f := vmFilter{mac: vmMAC}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r request
			if err := r.parse(tt.msg.ToBytes()); err != nil {
				t.Fatal(err)
			}
			if got, reason := f.fromVM(tt.src, &r); got != tt.want {
				t.Errorf("fromVM = %v (%s), want %v", got, reason, tt.want)
			}
		})
	}
}
