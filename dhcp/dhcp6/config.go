package dhcp6

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/insomniacslk/dhcp/dhcpv6"
)

// Default lifetimes. The address is the pod's for the pod's whole life, and a
// dead sidecar is never restarted, so the lifetimes are long (KubeVirt's
// built-in server uses 999 days): a guest keeps its address even when nobody
// answers its renewals any more. T1 and T2 are short instead, so a live guest
// talks to the server every minute and learns of a changed address (after a
// migration that changed it) within T1: the old one is returned with
// lifetimes 0 (RFC 8415 §18.3.4). busybox udhcpc6 ignores T1 and renews at
// half the valid lifetime (its networking/udhcp/d6_dhcpc.c). Renewals never
// leave the pod.
const (
	DefaultPreferredLifetime = 999 * 24 * time.Hour
	DefaultValidLifetime     = 999 * 24 * time.Hour
	DefaultT1                = time.Minute
	DefaultT2                = 2 * time.Minute
	// DefaultInfoRefresh is IRT_DEFAULT (RFC 8415 §7.6, §21.23).
	DefaultInfoRefresh = 86400 * time.Second
)

// RFC 8415 numbers.
const (
	// minInfoRefresh is IRT_MINIMUM (RFC 8415 §7.6).
	minInfoRefresh = 600 * time.Second
	// maxLifetime is the largest lifetime on the wire: 0xffffffff seconds
	// means infinity (RFC 8415 §7.7).
	maxLifetime = time.Duration(0xffffffff) * time.Second
	// preferenceMax makes the client stop collecting Advertises and send
	// its Request at once (RFC 8415 §18.2.1).
	preferenceMax = 255
	// fqdnS, fqdnO and fqdnN are the Client FQDN option flags (RFC 4704 §4.1).
	fqdnS = 0x01
	fqdnO = 0x02
	fqdnN = 0x04
	// maxRelayDepth is HOP_COUNT_LIMIT (RFC 8415 §7.6): deeper nesting is
	// not a relay chain we answer.
	maxRelayDepth = 8
	// maxIAs bounds the IAs of each kind (IA_NA, IA_TA, IA_PD) a reply
	// answers, and the addresses it returns per IA. A guest's client asks
	// for one IA_NA (and perhaps one IA_PD); answering every one of 150
	// IA_TA would turn a request into a reply several times its size, an
	// amplifier. The rest go unanswered (RFC 8415 §21.4 lets a client do
	// without them).
	maxIAs = 4
)

// Config is everything the server says to the VM.
type Config struct {
	// VMMAC is the VM's MAC address: the only client answered.
	VMMAC frame.MAC
	// ServiceMAC is the Ethernet source of replies on the packet transport
	// (unused by the UDP transport).
	ServiceMAC frame.MAC
	// ServerLinkLocal is the IPv6 source of replies on the packet transport;
	// fe80:: + EUI-64(ServiceMAC) when unset.
	ServerLinkLocal netip.Addr
	// ServerDUID identifies the server; see ServerDUID.
	ServerDUID dhcpv6.DUID
	// Address is the pod's IPv6 address, leased to the VM.
	Address netip.Addr
	// DNS are the recursive name servers (option 23); IPv6 only.
	DNS []netip.Addr
	// Search is the domain search list (option 24).
	Search []string
	// PreferredLifetime, ValidLifetime, T1, T2 and InfoRefresh take the
	// Default values when zero.
	PreferredLifetime, ValidLifetime, T1, T2, InfoRefresh time.Duration
}

// withDefaults fills zero durations and the derived link-local address.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.PreferredLifetime, DefaultPreferredLifetime)
	def(&c.ValidLifetime, DefaultValidLifetime)
	def(&c.T1, DefaultT1)
	def(&c.T2, DefaultT2)
	def(&c.InfoRefresh, DefaultInfoRefresh)
	c.Search = trimDots(c.Search)
	if !c.ServerLinkLocal.IsValid() && c.ServiceMAC.IsUnicast() {
		c.ServerLinkLocal = frame.LinkLocalFromMAC(c.ServiceMAC)
	}
	return c
}

// validate reports every problem of a Config with defaults applied.
func (c Config) validate() error {
	var errs []error
	if !c.VMMAC.IsUnicast() {
		errs = append(errs, fmt.Errorf("VM MAC %q is not a unicast Ethernet address", c.VMMAC))
	}
	if !c.ServiceMAC.IsUnicast() {
		errs = append(errs, fmt.Errorf("service MAC %q is not a unicast Ethernet address", c.ServiceMAC))
	}
	if c.ServerLinkLocal.IsValid() && (!c.ServerLinkLocal.Is6() || !c.ServerLinkLocal.IsLinkLocalUnicast()) {
		errs = append(errs, fmt.Errorf("server address %s is not an IPv6 link-local address", c.ServerLinkLocal))
	}
	if c.ServerDUID == nil || len(c.ServerDUID.ToBytes()) < 3 || len(c.ServerDUID.ToBytes()) > 130 {
		errs = append(errs, errors.New("server DUID is missing or not 3 to 130 bytes long (RFC 8415 §11.1)"))
	}
	if !isGlobalIPv6(c.Address) {
		errs = append(errs, fmt.Errorf("address %s is not a global IPv6 unicast address", c.Address))
	}
	for _, a := range c.DNS {
		if !a.Is6() || a.Is4In6() || a.IsUnspecified() || a.IsMulticast() {
			errs = append(errs, fmt.Errorf("DNS server %s is not an IPv6 unicast address", a))
		}
	}
	for _, s := range c.Search {
		if err := checkDomain(s); err != nil {
			errs = append(errs, fmt.Errorf("search domain %q: %w", s, err))
		}
	}
	errs = append(errs, c.validateTimes()...)
	return errors.Join(errs...)
}

// validateTimes checks T1 <= T2 <= preferred <= valid (RFC 8415 §21.4, §21.6).
func (c Config) validateTimes() []error {
	var errs []error
	for _, d := range []time.Duration{c.PreferredLifetime, c.ValidLifetime, c.T1, c.T2, c.InfoRefresh} {
		if d < time.Second || d > maxLifetime {
			errs = append(errs, fmt.Errorf("duration %s is not between 1s and %s", d, maxLifetime))
		}
	}
	if c.T1 > c.T2 || c.T2 > c.PreferredLifetime || c.PreferredLifetime > c.ValidLifetime {
		errs = append(errs, fmt.Errorf("times T1 %s, T2 %s, preferred %s, valid %s are not in increasing order",
			c.T1, c.T2, c.PreferredLifetime, c.ValidLifetime))
	}
	if c.InfoRefresh < minInfoRefresh {
		errs = append(errs, fmt.Errorf("information refresh time %s is below %s (RFC 8415 §21.23)", c.InfoRefresh, minInfoRefresh))
	}
	return errs
}

func isGlobalIPv6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && a.IsGlobalUnicast()
}

// checkDomain accepts a DNS name the search list option can carry
// (RFC 1035 §2.3.4: labels of 1 to 63 bytes, 255 bytes in all).
func checkDomain(s string) error {
	if len(s)+2 > 255 {
		return errors.New("longer than 255 bytes")
	}
	for _, l := range strings.Split(s, ".") {
		if len(l) == 0 || len(l) > 63 {
			return fmt.Errorf("label %q is not 1 to 63 bytes long", l)
		}
	}
	return nil
}

// trimDots drops the root label's dot: "example.com." is "example.com".
func trimDots(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if len(n) > 1 {
			n = strings.TrimSuffix(n, ".")
		}
		out = append(out, n)
	}
	return out
}
