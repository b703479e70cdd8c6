package kernel

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/ra"
	"github.com/mdlayher/ndp"
)

// DefaultRefresh is Config.Refresh's default: while the guest keeps checking
// its default router (NUD every 15 to 45 s when it sends traffic, RFC 4861
// §6.3.2 REACHABLE_TIME), its route is refreshed about once a minute, far
// inside the 1800 s router lifetime.
const DefaultRefresh = 60 * time.Second

// minRefresh is MIN_DELAY_BETWEEN_RAS (RFC 4861 §10). The program also
// relies on a non-zero interval to let its own clone of the NS go upstream.
const minRefresh = 3 * time.Second

// Frame sizes the program accepts (bpf/responder.c MIN_FRAME, MAX_FRAME).
const (
	minFrame = frame.EthernetLen + frame.IPv6Len + 16
	maxFrame = 1296
)

// allNodes is the RA's IPv6 destination (RFC 4861 §6.2.6): fixed, so the
// checksum is computed once. The Ethernet destination is the VM's MAC
// (the program puts the learned one there), so the bridge forwards the RA
// to the VM's tap only.
var allNodes = netip.MustParseAddr("ff02::1")

// ServerIDNet holds every DHCPv4 server identifier dsbridge uses,
// 169.254.75.1<index> (KubeVirt's bridge binding numbering, index = the VMI
// interface's position). The binding CNI makes the whole net local to the
// pod (a local route on lo), so the sidecar's UDP socket can send from the
// server identifier and receive a unicast Renew to it, and the egress
// program answers the VM's ARP requests for it with the bridge's MAC.
var ServerIDNet = netip.MustParsePrefix("169.254.75.0/24")

// Config is what the uplink programs serve.
type Config struct {
	// VMMAC is the VM's MAC as far as the pod knows it (the pod
	// interface's original MAC): the programs serve it, and frames to it
	// pass the ingress guard, until the VM's own frames, forwarded from
	// its tap, teach them its actual MAC (a migration target's VM keeps
	// the MAC it had in the source pod). Zero: RA.VMMAC.
	VMMAC frame.MAC
	// RA is the advertisement, as for the userspace advertiser:
	// ModeGateway or ModeFlagsOnly attach the RS->RA responder, ModeOff
	// (a pod without an IPv6 default gateway) none; the guard, the NS
	// answers and the ARP answers work in every mode.
	RA ra.Config
	// Refresh is the least time between two advertisements sent because
	// the VM solicited the gateway's link-local address; 0 means
	// DefaultRefresh. ModeFlagsOnly advertises no router, so it never
	// refreshes.
	Refresh time.Duration
}

// vars are the values of the programs' read-only globals.
type vars struct {
	vmMAC     [6]byte
	gwLLA     [16]byte
	refreshNS uint64
	frame     []byte // empty: no RS->RA responder
	sidNet    [4]byte
	sidMask   [4]byte
}

// compile validates cfg and computes the programs' globals: the whole RA
// frame with its checksum, and the match keys. It is pure.
func compile(cfg Config) (vars, error) {
	mac := cfg.VMMAC
	if mac.IsZero() {
		mac = cfg.RA.VMMAC
	}
	if !mac.IsUnicast() {
		return vars{}, fmt.Errorf("VM MAC %q is not a unicast Ethernet address", mac)
	}
	if !cfg.RA.VMMAC.IsZero() && cfg.RA.VMMAC != mac {
		return vars{}, fmt.Errorf("RA VM MAC %v differs from the VM MAC %v", cfg.RA.VMMAC, mac)
	}
	v := vars{vmMAC: mac, sidNet: ServerIDNet.Masked().Addr().As4(),
		sidMask: [4]byte(net.CIDRMask(ServerIDNet.Bits(), 32))}
	if cfg.RA.Mode == ra.ModeOff {
		return v, nil
	}
	cfg.RA.VMMAC = mac
	return compileRA(cfg, v)
}

// compileRA adds the RA frame and the refresh keys to v.
func compileRA(cfg Config, v vars) (vars, error) {
	if cfg.Refresh != 0 && cfg.Refresh < minRefresh {
		return vars{}, fmt.Errorf("refresh interval %v is below %v", cfg.Refresh, minRefresh)
	}
	msg, err := ra.Build(cfg.RA)
	if err != nil {
		return vars{}, err
	}
	body, err := ndp.MarshalMessage(msg)
	if err != nil {
		return vars{}, fmt.Errorf("failed to encode router advertisement: %w", err)
	}
	f := frame.AppendICMP6(make([]byte, 0, maxFrame), frame.ICMP6{
		Eth:      frame.Ethernet{Dst: cfg.RA.VMMAC, Src: cfg.RA.GatewayMAC, Type: frame.EtherTypeIPv6},
		Src:      ra.Source(cfg.RA),
		Dst:      allNodes,
		HopLimit: frame.NDPHopLimit,
		Payload:  body,
	})
	if len(f) < minFrame || len(f) > maxFrame {
		return vars{}, fmt.Errorf("router advertisement frame of %d bytes is outside [%d, %d]", len(f), minFrame, maxFrame)
	}
	v.gwLLA = cfg.RA.GatewayLLA.WithZone("").As16()
	v.frame = f
	if cfg.RA.Mode == ra.ModeGateway {
		v.refreshNS = uint64(orDefault(cfg.Refresh, DefaultRefresh))
	}
	return v, nil
}

// orDefault returns d, or def when d is 0.
func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
