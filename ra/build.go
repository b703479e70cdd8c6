package ra

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/mdlayher/ndp"
)

// Values of the advertisement itself (RFC 4861 §6.2.1 router configuration
// variables, as dsbridge sets them).
const (
	// advCurHopLimit is AdvCurHopLimit: the IANA default hop limit.
	advCurHopLimit = 64
	// DefaultRouterLifetime is AdvDefaultLifetime's default, 3 ×
	// MaxRtrAdvInterval (RFC 4861 §6.2.1).
	DefaultRouterLifetime = 3 * MaxRtrAdvInterval
	// DefaultPrefixLifetime is the on-link prefix's valid and preferred
	// lifetime: finite, so that a prefix a guest took along from another
	// pod (a live migration to other addresses) ends even when nothing
	// withdraws it, and twice the router lifetime, so that every RA that
	// keeps the default route also keeps the prefix.
	DefaultPrefixLifetime = 2 * DefaultRouterLifetime
	// maxRouterLifetime: RFC 8319 §4 raises AdvDefaultLifetime's limit to
	// 65535 s, the most the 16-bit field holds (ndp writes it as uint16:
	// anything larger wraps).
	maxRouterLifetime = 65535 * time.Second
	// dnsLifetime for RDNSS and DNSSL: RFC 8106 §5.1 and §5.2 say it
	// SHOULD be at least 3 × MaxRtrAdvInterval, so 1800 s.
	dnsLifetime = 3 * MaxRtrAdvInterval
	// minIPv6MTU is the IPv6 minimum link MTU (RFC 8200 §5); Linux ignores
	// smaller MTU options. maxMTU is the largest non-jumbogram packet.
	minIPv6MTU = 1280
	maxMTU     = 65535
	// maxRALen is the most an RA may take so that it fits the minimum MTU
	// unfragmented: 1280 minus the IPv6 header.
	maxRALen = minIPv6MTU - 40
)

// Build returns the advertisement cfg describes (RFC 4861 §4.2). It is pure:
// the same cfg always gives the same message.
//
// ModeGateway: CurHopLimit 64, M=1, O=1, router lifetime cfg.RouterLifetime
// (default 1800 s), reachable time and retrans timer 0 (unspecified), SLLAO
// = gateway MAC, MTU, PIO (L=1 A=0, lifetimes cfg.PrefixLifetime, default
// 3600 s), RDNSS and DNSSL.
// ModeFlagsOnly: router lifetime 0, M=1, O=1 and the PIO only.
func Build(cfg Config) (*ndp.RouterAdvertisement, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("invalid router advertisement config: %w", err)
	}
	ra := &ndp.RouterAdvertisement{
		CurrentHopLimit:      advCurHopLimit,
		ManagedConfiguration: true,
		OtherConfiguration:   true,
	}
	if cfg.Mode == ModeFlagsOnly {
		ra.Options = prefixOption(cfg)
		return checkLen(ra)
	}
	ra.RouterLifetime = cfg.RouterLifetime.Truncate(time.Second)
	if ra.RouterLifetime == 0 {
		ra.RouterLifetime = DefaultRouterLifetime
	}
	ra.Options = append(ra.Options, &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: cfg.GatewayMAC.HardwareAddr()})
	if cfg.MTU != 0 {
		ra.Options = append(ra.Options, ndp.NewMTU(uint32(cfg.MTU)))
	}
	ra.Options = append(ra.Options, prefixOption(cfg)...)
	dns, err := dnsOptions(cfg)
	if err != nil {
		return nil, err
	}
	ra.Options = append(ra.Options, dns...)
	return checkLen(ra)
}

// prefixOption is the PIO for the pod prefix: on-link, no SLAAC (the address
// comes from DHCPv6), finite lifetimes every RA refreshes. None for a /128.
func prefixOption(cfg Config) []ndp.Option {
	p := cfg.Prefix
	if p == (netip.Prefix{}) || p.Bits() == 128 {
		return nil
	}
	lifetime := cfg.PrefixLifetime.Truncate(time.Second)
	if lifetime == 0 {
		lifetime = DefaultPrefixLifetime
	}
	return []ndp.Option{onLink(p, lifetime)}
}

// onLink is a PIO with L=1 A=0 and equal valid and preferred lifetimes.
func onLink(p netip.Prefix, lifetime time.Duration) *ndp.PrefixInformation {
	p = p.Masked() // ndp refuses a prefix with host bits set
	return &ndp.PrefixInformation{
		PrefixLength:      uint8(p.Bits()),
		OnLink:            true,
		ValidLifetime:     lifetime,
		PreferredLifetime: lifetime,
		Prefix:            p.Addr(),
	}
}

// BuildDeprecation is cfg's advertisement with, for each prefix in stale,
// a PIO of lifetime 0: a guest that still has one of them on-link (brought
// along from another pod) drops it at once (RFC 4861 §6.3.4: a valid
// lifetime of zero times the prefix out; the two-hour rule of RFC 4862
// §5.5.3 e) guards SLAAC addresses, not on-link prefixes). A guest without
// them ignores the PIO.
func BuildDeprecation(cfg Config, stale []netip.Prefix) (*ndp.RouterAdvertisement, error) {
	ra, err := Build(cfg)
	if err != nil {
		return nil, err
	}
	for _, p := range stale {
		ra.Options = append(ra.Options, onLink(p, 0))
	}
	return checkLen(ra)
}

// BuildWithdrawal is the advertisement that takes a router out of a
// guest's Default Router List at once: router lifetime 0 (RFC 4861 §6.3.4),
// the same M and O flags as dsbridge's (so the guest's DHCPv6 goes on), no
// options (no SLLAO: it would rewrite the guest's neighbour entry of that
// router). It is sent from that router's link-local address.
func BuildWithdrawal() *ndp.RouterAdvertisement {
	return &ndp.RouterAdvertisement{CurrentHopLimit: advCurHopLimit, ManagedConfiguration: true, OtherConfiguration: true}
}

// dnsOptions are RDNSS for the IPv6 nameservers and DNSSL for the search
// domains (RFC 8106 §5), omitted when empty, split over several options
// when one would be too long (hosts merge them, RFC 8106 §5.3.1).
func dnsOptions(cfg Config) ([]ndp.Option, error) {
	var opts []ndp.Option
	var servers []netip.Addr
	for _, a := range cfg.DNS {
		if a.Is6() && !a.Is4In6() {
			servers = append(servers, a.WithZone(""))
		}
	}
	for len(servers) > 0 {
		n := min(len(servers), maxRDNSSServers)
		opts = append(opts, &ndp.RecursiveDNSServer{Lifetime: dnsLifetime, Servers: servers[:n]})
		servers = servers[n:]
	}
	var names []string
	size := dnsslHeaderLen
	for _, s := range cfg.Search {
		name := strings.TrimSuffix(s, ".")
		if err := checkDomain(name); err != nil {
			return nil, err
		}
		if len(names) > 0 && size+len(name)+2 > maxOptionLen {
			opts = append(opts, &ndp.DNSSearchList{Lifetime: dnsLifetime, DomainNames: names})
			names, size = nil, dnsslHeaderLen
		}
		names = append(names, name)
		size += len(name) + 2 // a length octet per label for the dots, one before the first, the root's 0
	}
	if len(names) > 0 {
		opts = append(opts, &ndp.DNSSearchList{Lifetime: dnsLifetime, DomainNames: names})
	}
	return opts, nil
}

// Option size limits. ndp v1.1.0 computes an option's byte length as
// uint8(length × 8), so an option of 256 bytes or more wraps and fails to
// encode: keep each below that.
const (
	maxOptionLen    = 248
	dnsslHeaderLen  = 8
	maxRDNSSServers = (maxOptionLen - 8) / 16 // 15
	maxDomainLen    = maxOptionLen - dnsslHeaderLen - 2
)

// checkDomain rejects names ndp would encode wrongly: empty labels, labels
// over 63 octets (RFC 1035 §2.3.4), names too long for one option.
func checkDomain(name string) error {
	if name == "" || len(name) > maxDomainLen {
		return fmt.Errorf("search domain %q is not a valid domain name", name)
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("search domain %q is not a valid domain name", name)
		}
	}
	return nil
}

// checkLen marshals ra once, so that an unencodable message fails here and
// not at the first send, and checks it fits the IPv6 minimum MTU.
func checkLen(ra *ndp.RouterAdvertisement) (*ndp.RouterAdvertisement, error) {
	b, err := ndp.MarshalMessage(ra)
	if err != nil {
		return nil, fmt.Errorf("failed to encode router advertisement: %w", err)
	}
	if len(b) > maxRALen {
		return nil, fmt.Errorf("router advertisement of %d bytes exceeds %d (too many DNS options)", len(b), maxRALen)
	}
	return ra, nil
}
