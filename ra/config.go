package ra

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// Mode says what the advertiser tells the guest.
type Mode int

// Modes. The zero value is ModeGateway.
const (
	// ModeGateway advertises the pod's gateway as the guest's default
	// router, with M=1, O=1, the on-link prefix, MTU and DNS options.
	ModeGateway Mode = iota
	// ModeFlagsOnly advertises router lifetime 0 with M=1, O=1 and the
	// on-link prefix only, for clusters whose own router advertises the
	// default route.
	ModeFlagsOnly
	// ModeOff sends nothing.
	ModeOff
)

// String returns the name ParseMode accepts.
func (m Mode) String() string {
	switch m {
	case ModeGateway:
		return "gateway"
	case ModeFlagsOnly:
		return "flags-only"
	case ModeOff:
		return "off"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ParseMode parses "gateway", "flags-only" or "off".
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{ModeGateway, ModeFlagsOnly, ModeOff} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown router advertisement mode %q (want gateway, flags-only or off)", s)
}

// Config is what the advertiser advertises, taken from the pod's network
// snapshot.
type Config struct {
	Mode Mode
	// GatewayLLA is the pod gateway's IPv6 link-local address: the RA source
	// and so the guest's default router. Never an address of the pod.
	GatewayLLA netip.Addr
	// GatewayMAC is the Ethernet source of every RA and, in ModeGateway,
	// the source link-layer address option.
	GatewayMAC frame.MAC
	// Prefix is the pod's IPv6 prefix, advertised on-link (L=1 A=0). The
	// zero Prefix or a /128 advertises no prefix.
	Prefix netip.Prefix
	// MTU is the pod link's MTU; 0 sends no MTU option.
	MTU int
	// DNS are the pod's nameservers; only IPv6 ones go into RDNSS.
	DNS []netip.Addr
	// Search are the pod's search domains, sent as DNSSL.
	Search []string
	// RouterLifetime in ModeGateway; 0 means DefaultRouterLifetime. Whole
	// seconds are sent. ModeFlagsOnly always sends 0.
	RouterLifetime time.Duration
	// PrefixLifetime is the valid and preferred lifetime of the on-link
	// prefix; 0 means DefaultPrefixLifetime. Every RA refreshes it.
	PrefixLifetime time.Duration
	// VMMAC is the VM's MAC: only frames it sent are served.
	VMMAC frame.MAC
	// DHCPServer is the DHCPv6 server's link-local address, a neighbour
	// the guest solicits (a client that unicasts its Renew) that is never
	// its old router; the zero Addr when there is none.
	DHCPServer netip.Addr
}

// ErrNoTransport is returned by NewAdvertiser when an advertising mode has
// no frame transport (no CAP_NET_RAW for a packet socket on the tap).
var ErrNoTransport = errors.New("router advertisements need a packet socket on the VM's tap (CAP_NET_RAW)")

// validate checks cfg for an advertising mode, one error per bad field.
func (cfg Config) validate() error {
	var errs []error
	if cfg.Mode != ModeGateway && cfg.Mode != ModeFlagsOnly {
		errs = append(errs, fmt.Errorf("mode %v does not advertise", cfg.Mode))
	}
	if !cfg.GatewayLLA.Is6() || !cfg.GatewayLLA.IsLinkLocalUnicast() {
		errs = append(errs, fmt.Errorf("gateway address %q is not an IPv6 link-local address", cfg.GatewayLLA))
	}
	if err := checkUnicastMAC("gateway", cfg.GatewayMAC); err != nil {
		errs = append(errs, err)
	}
	if err := checkUnicastMAC("VM", cfg.VMMAC); err != nil {
		errs = append(errs, err)
	}
	if err := checkPrefix(cfg.Prefix); err != nil {
		errs = append(errs, err)
	}
	if cfg.MTU != 0 && (cfg.MTU < minIPv6MTU || cfg.MTU > maxMTU) {
		errs = append(errs, fmt.Errorf("MTU %d is outside [%d, %d]", cfg.MTU, minIPv6MTU, maxMTU))
	}
	if cfg.Mode == ModeGateway && cfg.RouterLifetime != 0 &&
		(cfg.RouterLifetime < MaxRtrAdvInterval || cfg.RouterLifetime > maxRouterLifetime) {
		errs = append(errs, fmt.Errorf("router lifetime %v is outside [%v, %v]", cfg.RouterLifetime, MaxRtrAdvInterval, maxRouterLifetime))
	}
	return errors.Join(errs...)
}

func checkUnicastMAC(who string, mac frame.MAC) error {
	if !mac.IsUnicast() {
		return fmt.Errorf("%s MAC %q is not a unicast Ethernet address", who, mac)
	}
	return nil
}

func checkPrefix(p netip.Prefix) error {
	if p == (netip.Prefix{}) || p.Bits() == 128 {
		return nil
	}
	a := p.Addr()
	if !p.IsValid() || !a.Is6() || a.Is4In6() || p.Bits() == 0 {
		return fmt.Errorf("pod prefix %q is not an IPv6 prefix", p)
	}
	if a.IsLinkLocalUnicast() || a.IsMulticast() {
		return fmt.Errorf("pod prefix %q is link-local or multicast", p)
	}
	return nil
}
