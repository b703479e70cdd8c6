package netsetup

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// Tier is the deployment tier (README "Which tier are you in?") that the privileges
// allow. Legacy (KubeVirt < 1.4) is a deployment variant of Unprivileged and
// is not told apart here.
type Tier string

// Tiers, best first.
const (
	// TierFull: NET_ADMIN and NET_RAW; dsbridge builds or adopts the
	// plumbing and serves everything over the packet transport.
	TierFull Tier = "Full"
	// TierRootGate: NET_RAW without NET_ADMIN (KubeVirt's Root feature gate
	// with the runtime's default capabilities); KubeVirt's managedTap builds
	// the plumbing.
	TierRootGate Tier = "Root gate"
	// TierUnprivileged: no NET_RAW; DHCP over UDP when the port sysctl
	// allows it, RA only from the binding CNI's responder.
	TierUnprivileged Tier = "Unprivileged"
)

// Services and transports a plan names.
const (
	ServicePlumbing = "plumbing"
	ServiceDHCPv4   = "dhcpv4"
	ServiceDHCPv6   = "dhcpv6"
	ServiceRA       = "ra"

	TransportPacket = "packet" // AF_PACKET on the tap (NET_RAW)
	TransportUDP    = "udp"    // UDP sockets, MAC-filtered
	TransportBPF    = "tc-bpf" // the binding CNI's kernel RS->RA responder
	TransportBuild  = "build"  // plumbing: build or adopt (NET_ADMIN)
	TransportAdopt  = "adopt"  // plumbing: verify what KubeVirt built
)

// ServicePlan says whether one service runs and how, or why not and what the
// administrator can change.
type ServicePlan struct {
	Service   string `json:"service"`
	On        bool   `json:"on"`
	Transport string `json:"transport,omitempty"`
	// Guarded: a UDP transport whose bridge the binding CNI's uplink
	// guard closes to the uplink, so what arrives came from the VM's port.
	Guarded bool   `json:"guarded,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Remedy  string `json:"remedy,omitempty"`
}

// Plan is what dsbridge runs for one pod interface.
type Plan struct {
	PodIface   string        `json:"podIface"`
	Tier       Tier          `json:"tier"`
	Privileges Privileges    `json:"privileges"`
	Services   []ServicePlan `json:"services"`
}

// PlanOptions are facts beyond privileges and the snapshot.
type PlanOptions struct {
	// LayoutExists: the bridge and tap are already there (KubeVirt's
	// managedTap or an earlier run), so plumbing can be adopted without
	// NET_ADMIN.
	LayoutExists bool
	// RAResponder: the binding CNI attached the kernel RS->RA responder.
	RAResponder bool
	// UplinkGuard: the binding CNI attached the uplink guard (ra/kernel):
	// client messages from the uplink never reach the bridge's sockets,
	// and what the pod sends on the sidecar's behalf never leaves by it.
	UplinkGuard bool
	// Off switches services off by configuration, keyed by Service* name,
	// with the reason the plan gives (the dhcp debug mode builds nothing
	// and runs only the services --services selects).
	Off map[string]string
	// PacketOnly: services run only over the packet transport on the VM's
	// port (the dhcp debug mode has no bridge to open UDP sockets on).
	PacketOnly bool
}

// Remedies, one sentence each, for the administrator.
const (
	remedyPlumbing = "register the binding with domainAttachmentType: managedTap so virt-handler builds the bridge and tap, or grant the sidecar NET_ADMIN"
	remedyPorts    = "attach the dsbridge binding CNI (it sets net.ipv4.ip_unprivileged_port_start=0 in the pod) or grant NET_RAW"
	remedyRAPriv   = "grant NET_RAW (KubeVirt Root feature gate on containerd, or the dsbridge capability policy), or let the cluster send RAs (Kube-OVN enableIPv6RA: true)"
	remedyRAGw     = "give the pod an IPv6 default gateway that answers neighbour solicitations when dsbridge starts, or let the cluster send RAs (Kube-OVN enableIPv6RA: true)"
	remedyNetRaw   = "run it with CAP_NET_RAW (as root)"
	remedyGuard    = "attach the dsbridge binding CNI (Linux 5.2 or later), whose uplink guard keeps the uplink out"
)

// PlanFor decides the tier and, per service, whether and how it runs. s may
// be nil (nothing to serve).
func PlanFor(p Privileges, s *Snapshot, opts PlanOptions) Plan {
	if s == nil {
		s = &Snapshot{}
	}
	return Plan{
		PodIface:   s.PodIface,
		Tier:       TierFor(p),
		Privileges: p,
		Services: []ServicePlan{
			planPlumbing(p, opts),
			planDHCP(ServiceDHCPv4, p, len(s.IPv4) > 0, frame.PortDHCPv4Server, opts),
			planDHCP(ServiceDHCPv6, p, len(s.IPv6) > 0, frame.PortDHCPv6Server, opts),
			planRA(p, s, opts),
		},
	}
}

// TierFor is the tier the privileges allow.
func TierFor(p Privileges) Tier {
	switch {
	case p.NetAdmin && p.NetRaw:
		return TierFull
	case p.NetRaw:
		return TierRootGate
	default:
		return TierUnprivileged
	}
}

func planPlumbing(p Privileges, opts PlanOptions) ServicePlan {
	sp := ServicePlan{Service: ServicePlumbing}
	switch {
	case opts.Off[ServicePlumbing] != "":
		sp.Reason = opts.Off[ServicePlumbing]
	case p.NetAdmin:
		sp.On, sp.Transport = true, TransportBuild
	case opts.LayoutExists:
		sp.On, sp.Transport = true, TransportAdopt
		sp.Reason = "no CAP_NET_ADMIN: adopting the existing bridge and tap"
	default:
		sp.Reason = "no CAP_NET_ADMIN and no bridge and tap to adopt"
		sp.Remedy = remedyPlumbing
	}
	return sp
}

func planDHCP(service string, p Privileges, haveAddr bool, port int, opts PlanOptions) ServicePlan {
	sp := ServicePlan{Service: service}
	switch {
	case opts.Off[service] != "":
		sp.Reason = opts.Off[service]
	case !haveAddr:
		sp.Reason = "the pod interface has no " + familyOf(service) + " address to hand out"
	case p.NetRaw:
		sp.On, sp.Transport = true, TransportPacket
	case opts.PacketOnly:
		sp.Reason, sp.Remedy = "no CAP_NET_RAW for a packet socket on the VM's port", remedyNetRaw
	case p.CanBind(port) && opts.UplinkGuard:
		sp.On, sp.Transport, sp.Guarded = true, TransportUDP, true
		sp.Reason = "UDP on the bridge; the binding CNI's uplink guard keeps the uplink out"
	case p.CanBind(port):
		sp.On, sp.Transport = true, TransportUDP
		sp.Reason = "UDP on the bridge without an uplink guard: neighbours on the uplink reach the socket and broadcast replies reach the uplink"
		sp.Remedy = remedyGuard
	default:
		sp.Reason = fmt.Sprintf("no CAP_NET_RAW or CAP_NET_BIND_SERVICE, and net.ipv4.ip_unprivileged_port_start=%d does not allow UDP port %d",
			p.UnprivilegedPortStart, port)
		sp.Remedy = remedyPorts
	}
	return sp
}

func familyOf(service string) string {
	if service == ServiceDHCPv4 {
		return "IPv4"
	}
	return "IPv6"
}

func planRA(p Privileges, s *Snapshot, opts PlanOptions) ServicePlan {
	sp := ServicePlan{Service: ServiceRA}
	gw := s.Gateway6
	switch {
	case opts.Off[ServiceRA] != "":
		sp.Reason = opts.Off[ServiceRA]
	case len(s.IPv6) == 0:
		sp.Reason = "the pod interface has no IPv6 address"
	case gw == nil:
		sp.Reason = "the pod interface has no IPv6 default gateway to advertise"
		sp.Remedy = remedyRAGw
	case gw.MAC.IsZero() || !gw.LinkLocal.IsValid():
		sp.Reason = fmt.Sprintf("the MAC of IPv6 gateway %s is unknown, so its link-local address is too", gw.IP)
		sp.Remedy = remedyRAGw
	case p.NetRaw:
		sp.On, sp.Transport = true, TransportPacket
	case opts.RAResponder:
		sp.On, sp.Transport = true, TransportBPF
	default:
		sp.Reason = "no CAP_NET_RAW: an RA from the gateway's link-local address needs a packet socket"
		sp.Remedy = remedyRAPriv
	}
	return sp
}

// LogLine renders the plan as the one log line per interface:
//
//	eth0: tier Full; plumbing on (build); dhcpv4 on (packet); ...; ra off: <reason>; remedy: <remedy>
func (p Plan) LogLine() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: tier %s", p.PodIface, p.Tier)
	for _, sp := range p.Services {
		b.WriteString("; ")
		b.WriteString(sp.String())
	}
	return b.String()
}

// String renders one service: "dhcpv4 on (udp)" or "ra off: <reason>; remedy: <remedy>".
func (sp ServicePlan) String() string {
	if sp.On {
		if sp.Transport == "" {
			return sp.Service + " on"
		}
		return fmt.Sprintf("%s on (%s)", sp.Service, sp.Transport)
	}
	s := sp.Service + " off: " + sp.Reason
	if sp.Remedy != "" {
		s += "; remedy: " + sp.Remedy
	}
	return s
}

// LogAttrs returns the plan as slog attributes: podIface, tier and one group
// per service (on, transport, reason, remedy).
func (p Plan) LogAttrs() []slog.Attr {
	attrs := []slog.Attr{slog.String("podIface", p.PodIface), slog.String("tier", string(p.Tier))}
	for _, sp := range p.Services {
		g := []any{slog.Bool("on", sp.On)}
		for _, kv := range [][2]string{{"transport", sp.Transport}, {"reason", sp.Reason}, {"remedy", sp.Remedy}} {
			if kv[1] != "" {
				g = append(g, slog.String(kv[0], kv[1]))
			}
		}
		attrs = append(attrs, slog.Group(sp.Service, g...))
	}
	return attrs
}

// Service returns the plan entry for a Service* name.
func (p Plan) Service(name string) (ServicePlan, bool) {
	for _, sp := range p.Services {
		if sp.Service == name {
			return sp, true
		}
	}
	return ServicePlan{}, false
}
