package dhcp4

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// Default lease timing. The lease is long, as KubeVirt's bridge binding's:
// the address is the pod's for the pod's whole life, and a guest keeps it
// even if nobody answers its renewals any more (a dead sidecar is never
// restarted). The renewal time (T1) is short instead: a live guest asks
// again every minute, so after a live migration to a pod with other
// addresses, a client that ignores the link flap but honours T1 (ISC
// dhclient) is told within a minute (a NAK for its old address, RFC 2131
// section 4.3.2) and takes the new one. busybox udhcpc ignores T1 and
// renews at half the lease (its networking/udhcp/dhcpc.c): only a shorter
// lease moves it. The rebinding time (T2) follows, for a renewal that
// found no server. Renewals never leave the pod.
const (
	DefaultLeaseTime  = 999 * 24 * time.Hour
	DefaultRenewTime  = time.Minute
	DefaultRebindTime = 2 * time.Minute
)

// Lease time bounds. RFC 2132 section 9.2 encodes the lease as 32-bit seconds
// and reserves 0xffffffff for "infinity", which dsbridge never hands out.
// The shortest lease is 30 s: busybox udhcpc takes any shorter lease for
// 30 s (networking/udhcp/dhcpc.c) and renews at half the lease, so 30 s is
// the shortest that every client measured here honours; it renumbers a
// busybox guest within about 18 s of a migration to other addresses
// (README "Migration"). T1 (at least 1 s) and T2 fall inside it.
const (
	minLeaseTime = 30 * time.Second
	maxLeaseTime = (1<<32 - 2) * time.Second
)

// Message size. RFC 2131 section 2: every DHCP participant accepts 576-byte
// IP datagrams, so a reply's DHCP payload (fixed header, cookie, options)
// stays within 576 - 20 (IPv4) - 8 (UDP) bytes.
const (
	maxReplySize = 548
	headerSize   = 240 // 236-byte BOOTP header + 4-byte magic cookie (RFC 2131 section 3)
)

// Route is one IPv4 route the guest installs through option 121.
type Route struct {
	Dst netip.Prefix
	Via netip.Addr // zero: on-link (0.0.0.0 in RFC 3442)
}

// Option is a raw DHCPv4 option sent as given: the VMI's dhcpOptions extras.
type Option struct {
	Code  uint8
	Value []byte
}

// Config is everything the server tells the VM, taken from the pod's network
// snapshot and the VMI.
type Config struct {
	VMMAC      frame.MAC     // the only client ever answered
	ServiceMAC frame.MAC     // source MAC of crafted frames and ARP replies
	ServerID   netip.Addr    // option 54 and the source of replies, see ServerIDForIndex
	Address    netip.Prefix  // the pod's address and prefix: yiaddr and option 1
	Gateway    netip.Addr    // option 3 and the default route of option 121
	Routes     []Route       // further pod routes for option 121
	DNS        []netip.Addr  // option 6
	Search     []string      // option 119
	Hostname   string        // option 12
	DomainName string        // option 15
	MTU        int           // option 26; zero: not sent
	LeaseTime  time.Duration // option 51; zero: DefaultLeaseTime
	RenewTime  time.Duration // option 58 (T1); zero: DefaultRenewTime
	RebindTime time.Duration // option 59 (T2); zero: DefaultRebindTime
	Extra      []Option      // 42, 66, 67 and 224-254 from the VMI's dhcpOptions
}

// ServerIDForIndex is the server identifier KubeVirt's bridge binding uses for
// the interface with index i: 169.254.75.1<i> (10-19 for i < 10, 110-199 for
// i < 100). It is the same on every node, so a guest's renewal still matches
// after a live migration. It returns the zero Addr when i is out of range.
func ServerIDForIndex(i int) netip.Addr {
	var last int
	switch {
	case i >= 0 && i < 10:
		last = 10 + i
	case i >= 10 && i < 100:
		last = 100 + i
	default:
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte{169, 254, 75, byte(last)})
}

// Options a VMI's dhcpOptions may add (RFC 2132 §8.3, §9.4, §9.5).
const (
	OptionNTPServers     = 42
	OptionTFTPServerName = 66
	OptionBootFileName   = 67
)

// ExtraAllowed reports whether a VMI dhcpOptions extra may carry code: NTP
// servers (42), TFTP server name (66), boot file name (67) and the site-specific
// range 224-254 (RFC 2132 section 2; RFC 3942).
func ExtraAllowed(code uint8) bool {
	return code == OptionNTPServers || code == OptionTFTPServerName || code == OptionBootFileName || (code >= 224 && code <= 254)
}

// withDefaults fills the zero timers.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.LeaseTime, DefaultLeaseTime)
	def(&c.RenewTime, DefaultRenewTime)
	def(&c.RebindTime, DefaultRebindTime)
	return c
}

// validate checks cfg once and returns every problem found.
func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !c.VMMAC.IsUnicast() {
		bad("VM MAC %q is not a unicast Ethernet address", c.VMMAC)
	}
	if !c.ServiceMAC.IsUnicast() {
		bad("service MAC %q is not a unicast Ethernet address", c.ServiceMAC)
	}
	if !c.ServerID.Is4() || c.ServerID.IsUnspecified() {
		bad("server identifier %v is not an IPv4 unicast address", c.ServerID)
	}
	if !c.Address.IsValid() || !c.Address.Addr().Is4() || c.Address.Addr().IsUnspecified() {
		bad("address %v is not an IPv4 prefix", c.Address)
	}
	if c.Gateway.IsValid() && (!c.Gateway.Is4() || c.Gateway.IsUnspecified()) {
		bad("gateway %v is not an IPv4 address", c.Gateway)
	}
	for _, r := range c.Routes {
		if !r.Dst.IsValid() || !r.Dst.Addr().Is4() || (r.Via.IsValid() && !r.Via.Is4()) {
			bad("route %v via %v is not an IPv4 route", r.Dst, r.Via)
		}
	}
	for _, a := range c.DNS {
		if !a.Is4() {
			bad("DNS server %v is not an IPv4 address", a)
		}
	}
	if len(c.DNS) > 63 {
		bad("%d DNS servers do not fit one option", len(c.DNS))
	}
	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
		bad("MTU %d is outside 68-65535 (RFC 2132 section 5.1)", c.MTU)
	}
	if c.LeaseTime < minLeaseTime || c.LeaseTime > maxLeaseTime {
		bad("lease time %v is outside %v-%v", c.LeaseTime, minLeaseTime, maxLeaseTime)
	}
	if c.RenewTime < time.Second || c.RenewTime >= c.RebindTime || c.RebindTime >= c.LeaseTime {
		bad("renewal time %v, rebinding time %v and lease %v are not in increasing order (RFC 2131 section 4.4.5)",
			c.RenewTime, c.RebindTime, c.LeaseTime)
	}
	for _, s := range []struct{ name, v string }{{"hostname", c.Hostname}, {"domain name", c.DomainName}} {
		if len(s.v) > 255 || strings.ContainsRune(s.v, 0) {
			bad("%s %q is longer than 255 bytes or holds a NUL", s.name, s.v)
		}
	}
	seen := map[uint8]bool{}
	for _, o := range c.Extra {
		switch {
		case !ExtraAllowed(o.Code):
			bad("extra option %d is not one of 42, 66, 67, 224-254", o.Code)
		case seen[o.Code]:
			bad("extra option %d is given twice", o.Code)
		case len(o.Value) == 0 || len(o.Value) > 255:
			bad("extra option %d has %d bytes, want 1-255", o.Code, len(o.Value))
		}
		seen[o.Code] = true
	}
	return errors.Join(errs...)
}

// ClasslessRoutes is the option 121 route list (RFC 3442) the server hands
// out for c: a host route to a gateway outside the pod prefix first, the
// pod's other routes, the default route last.
func (c Config) ClasslessRoutes() []Route { return classlessRoutes(&c, defaultGateway(&c)) }
