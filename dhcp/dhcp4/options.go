package dhcp4

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// DHCPv4 option codes this server writes or reads (RFC 2132 unless noted).
const (
	optSubnetMask       = 1
	optRouter           = 3
	optDNS              = 6
	optHostName         = 12
	optDomainName       = 15
	optInterfaceMTU     = 26
	optRequestedIP      = 50
	optLeaseTime        = 51
	optMessageType      = 53
	optServerID         = 54
	optParamRequestList = 55
	optMessage          = 56
	optRenewalTime      = 58
	optRebindingTime    = 59
	optClientID         = 61
	optRelayAgentInfo   = 82  // RFC 3046
	optDomainSearch     = 119 // RFC 3397
	optClasslessRoutes  = 121 // RFC 3442
)

// maxOptionLen is the most one option instance carries (RFC 2132 section 2).
const maxOptionLen = 255

// defaultGateway is the gateway from cfg: Gateway, else the next hop of a
// default route among Routes, else none.
func defaultGateway(cfg *Config) netip.Addr {
	if cfg.Gateway.IsValid() {
		return cfg.Gateway
	}
	for _, r := range cfg.Routes {
		if r.Dst.Bits() == 0 && r.Via.IsValid() {
			return r.Via
		}
	}
	return netip.Addr{}
}

// classlessRoutes lists the routes of option 121 in the order the guest needs
// them: the server identifier on-link, so that a renewal (unicast to it, RFC
// 2131 section 4.4.5) reaches the pod whatever became of the guest's gateway
// (after a live migration to a pod with other addresses the old one may be
// gone); a host route to a gateway outside the pod prefix (the /32 pod case:
// Calico's 169.254.1.1); then the pod routes; then the default route last
// (RFC 3442 section 1: a client that gets option 121 ignores option 3, so the
// default route must be in it). Default and connected-prefix routes in
// cfg.Routes are folded into these.
func classlessRoutes(cfg *Config, gw netip.Addr) []Route {
	connected := cfg.Address.Masked()
	out := []Route{{Dst: netip.PrefixFrom(cfg.ServerID, 32)}}
	hostRoute := Route{Dst: netip.PrefixFrom(gw, 32)}
	offLink := gw.IsValid() && !connected.Contains(gw)
	if offLink && hostRoute != out[0] {
		out = append(out, hostRoute)
	}
	for _, r := range cfg.Routes {
		r.Dst = r.Dst.Masked()
		switch {
		case r.Dst.Bits() == 0: // the default route goes last
		case r.Dst == connected && !r.Via.IsValid(): // the mask already says it
		case slices.Contains(out, r): // already listed
		default:
			out = append(out, r)
		}
	}
	if gw.IsValid() {
		out = append(out, Route{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Via: gw})
	}
	return out
}

// encodeClasslessRoutes encodes routes as RFC 3442 section 1 describes: the
// prefix length, the significant octets of the destination, the router
// (0.0.0.0 for on-link).
func encodeClasslessRoutes(routes []Route) ([]byte, error) {
	var b []byte
	for _, r := range routes {
		bits := r.Dst.Bits()
		dst := r.Dst.Addr().As4()
		b = append(b, byte(bits))
		b = append(b, dst[:(bits+7)/8]...)
		via := [4]byte{}
		if r.Via.IsValid() {
			via = r.Via.As4()
		}
		b = append(b, via[:]...)
	}
	if len(b) > maxOptionLen {
		return nil, fmt.Errorf("%d routes take %d bytes, more than one option holds", len(routes), len(b))
	}
	return b, nil
}

// encodeSearch encodes domains as RFC 3397 option 119: RFC 1035 names without
// compression. Domains that would take the option past 255 bytes are left out
// and returned in dropped (KubeVirt also caps the option at 255 bytes).
func encodeSearch(domains []string) (b []byte, dropped []string, err error) {
	for _, d := range domains {
		name, err := encodeName(d)
		if err != nil {
			return nil, nil, err
		}
		if len(b)+len(name) > maxOptionLen {
			dropped = append(dropped, d)
			continue
		}
		b = append(b, name...)
	}
	return b, dropped, nil
}

// encodeName encodes one domain name in RFC 1035 section 3.1 wire format.
func encodeName(domain string) ([]byte, error) {
	d := strings.TrimSuffix(domain, ".")
	if d == "" || len(d) > 253 {
		return nil, fmt.Errorf("search domain %q is empty or longer than 253 bytes", domain)
	}
	var b []byte
	for _, label := range strings.Split(d, ".") {
		if len(label) == 0 || len(label) > 63 {
			return nil, fmt.Errorf("search domain %q has a label of %d bytes, want 1-63", domain, len(label))
		}
		b = append(b, byte(len(label)))
		b = append(b, label...)
	}
	return append(b, 0), nil
}

// seconds encodes d as the 32-bit seconds of RFC 2132 sections 9.2, 9.11, 9.12.
func seconds(d time.Duration) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(d/time.Second))
}

// ipList encodes addresses as consecutive 4-byte values (options 3, 6, 42).
func ipList(addrs ...netip.Addr) []byte {
	b := make([]byte, 0, 4*len(addrs))
	for _, a := range addrs {
		v := a.As4()
		b = append(b, v[:]...)
	}
	return b
}

// netmask encodes the prefix length bits as a subnet mask (option 1).
func netmask(bits int) []byte {
	return binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-bits))
}
