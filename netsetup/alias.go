package netsetup

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// gatewayAliasPrefix starts the dummy <x>'s alias in which plumbing records
// the pod's default gateways. A process that finds the pod already plumbed
// and has no saved snapshot (the sidecar in the legacy tier, where the
// binding CNI plumbs the pod before any container starts) reads them back
// from there: the alias lives in the pod's network namespace and needs no
// privilege to read. Other routes do not fit in an alias (IFALIASZ, 256
// bytes) and are not recorded.
const gatewayAliasPrefix = "dsbridge-gw/1"

// gatewayAlias encodes s's gateways:
// "dsbridge-gw/1 4=<ip>,<mac> 6=<ip>,<mac>,<link-local>".
func gatewayAlias(s *Snapshot) string {
	var b strings.Builder
	b.WriteString(gatewayAliasPrefix)
	if g := s.Gateway4; g != nil {
		fmt.Fprintf(&b, " 4=%s,%s", g.IP, g.MAC)
	}
	if g := s.Gateway6; g != nil {
		fmt.Fprintf(&b, " 6=%s,%s,%s", g.IP, g.MAC, addrText(g.LinkLocal))
	}
	return b.String()
}

// addrText is a's text, empty for the zero Addr.
func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// parseGatewayAlias decodes what gatewayAlias wrote; ok is false for any
// other alias.
func parseGatewayAlias(alias string) (gw4, gw6 *Gateway, ok bool) {
	fields := strings.Fields(alias)
	if len(fields) == 0 || fields[0] != gatewayAliasPrefix {
		return nil, nil, false
	}
	for _, f := range fields[1:] {
		fam, val, found := strings.Cut(f, "=")
		if !found {
			return nil, nil, false
		}
		g, err := parseGateway(val)
		if err != nil {
			return nil, nil, false
		}
		switch fam {
		case "4":
			gw4 = g
		case "6":
			gw6 = g
		default:
			return nil, nil, false
		}
	}
	return gw4, gw6, true
}

func parseGateway(val string) (*Gateway, error) {
	parts := strings.Split(val, ",")
	ip, err := netip.ParseAddr(parts[0])
	if err != nil {
		return nil, err
	}
	g := &Gateway{IP: ip}
	if len(parts) > 1 && parts[1] != "" {
		mac, err := frame.ParseMAC(parts[1])
		if err != nil {
			return nil, err
		}
		g.MAC = mac
	}
	if len(parts) > 2 && parts[2] != "" {
		if g.LinkLocal, err = netip.ParseAddr(parts[2]); err != nil {
			return nil, err
		}
	}
	return g, nil
}
