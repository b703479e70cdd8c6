package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/service"
	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/status"
	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/trace"
	"github.com/dsbridge/dsbridge/cmd/internal/binding"
	"github.com/dsbridge/dsbridge/cmd/internal/cliflag"
	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/hooks"
	"github.com/dsbridge/dsbridge/netsetup"
	"github.com/dsbridge/dsbridge/ra"
)

// dhcpConfig is the validated command line of `dsbridge dhcp`.
type dhcpConfig struct {
	iface        string
	vmMAC        frame.MAC // zero: the snapshot's
	snapshot     *netsetup.Snapshot
	services     []string
	raMode       ra.Mode
	identity     string
	index        int
	trace        bool
	dryRun       bool
	statusSocket string
	timers       binding.Timers
	logLevel     slog.Level
}

// dhcpFlags are the raw flags, before validation.
type dhcpFlags struct {
	iface, vmMAC, ipv4, gateway4, ipv6, gateway6, gateway6MAC string
	dns, search, hostname, services, raMode, snapshot         string
	identity, statusSocket                                    string
	mtu, index                                                int
	trace, dryRun                                             bool
	timers                                                    binding.Timers
	logLevel                                                  slog.Level
}

const allServices = netsetup.ServiceDHCPv4 + "," + netsetup.ServiceDHCPv6 + "," + netsetup.ServiceRA

func parseDHCPFlags(args []string, stdout, stderr io.Writer) (dhcpConfig, error) {
	fs := newFlagSet("dsbridge dhcp", "--iface X (--snapshot FILE | --vm-mac M --ipv4 P --ipv6 P ...) [flags]")
	var f dhcpFlags
	fs.StringVar(&f.iface, "iface", "", "the interface facing the guest (a tap, or a veth whose peer is the guest); required")
	fs.StringVar(&f.vmMAC, "vm-mac", "", "the guest's MAC: the only client answered (default with --snapshot: the snapshot's MAC)")
	fs.StringVar(&f.ipv4, "ipv4", "", "IPv4 address and prefix to hand out, e.g. 10.16.0.5/16")
	fs.StringVar(&f.gateway4, "gateway4", "", "IPv4 default gateway to hand out")
	fs.StringVar(&f.ipv6, "ipv6", "", "IPv6 address and prefix to hand out, e.g. fd00:10:16::5/112")
	fs.StringVar(&f.gateway6, "gateway6", "", "IPv6 gateway: a link-local address, or a global one with --gateway6-mac")
	fs.StringVar(&f.gateway6MAC, "gateway6-mac", "", "the IPv6 gateway's MAC: the RA's source link-layer address (and its link-local address for a global --gateway6)")
	fs.StringVar(&f.dns, "dns", "", "comma-separated DNS servers, both families")
	fs.StringVar(&f.search, "search", "", "comma-separated search domains")
	fs.IntVar(&f.mtu, "mtu", 0, "MTU to hand out (0: none)")
	fs.StringVar(&f.hostname, "hostname", "", "hostname to hand out")
	fs.StringVar(&f.services, "services", allServices, "services to run: a comma-separated subset of "+allServices)
	fs.StringVar(&f.raMode, "ra-mode", "gateway", "router advertisements: gateway or flags-only")
	fs.StringVar(&f.snapshot, "snapshot", "", "serve what a saved snapshot (from dsbridge inspect or a state directory) describes, instead of the address flags")
	fs.StringVar(&f.identity, "identity", "", "seed of the server identities (DHCPv6 DUID, service MAC); default: from the VM MAC")
	fs.IntVar(&f.index, "index", 0, "interface index: the DHCPv4 server identifier is 169.254.75.1<index>")
	fs.BoolVar(&f.trace, "trace", false, "print one decoded line per request received, reply sent and packet dropped (with why) on stdout")
	fs.BoolVar(&f.dryRun, "dry-run", false, "decode and print the replies that would be sent, and send nothing (implies --trace)")
	fs.StringVar(&f.statusSocket, "status-socket", "", "serve /status and /metrics on this unix socket (default: none)")
	registerTimers(fs, &f.timers)
	fs.TextVar(&f.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	if err := cliflag.Parse(fs, args, stdout, stderr); err != nil {
		return dhcpConfig{}, err
	}
	c, err := f.validate()
	if err != nil {
		return dhcpConfig{}, badInput{err}
	}
	return c, nil
}

// validate turns the flags into a config, reporting every problem.
func (f dhcpFlags) validate() (dhcpConfig, error) {
	c := dhcpConfig{iface: f.iface, identity: f.identity, index: f.index, timers: f.timers, trace: f.trace || f.dryRun,
		dryRun: f.dryRun, statusSocket: f.statusSocket, logLevel: f.logLevel}
	var errs []error
	bad := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if f.iface == "" {
		bad(errors.New("--iface is required"))
	} else {
		bad(checkIfaceName("--iface", f.iface))
	}
	var err error
	if f.vmMAC != "" {
		c.vmMAC, err = parseEthernetMAC("--vm-mac", f.vmMAC)
		bad(err)
	}
	c.raMode, err = ra.ParseMode(f.raMode)
	bad(flagError("--ra-mode", err))
	c.services, err = parseServices(f.services)
	bad(err)
	errs = append(errs, f.checkNumbers()...)
	if f.statusSocket != "" {
		bad(checkSocketPath("--status-socket", f.statusSocket))
	}
	switch {
	case f.snapshot != "":
		// A snapshot that cannot be read says so; the MAC it would have
		// given is not missing on top of that.
		if c.snapshot, err = netsetup.Load(f.snapshot); err != nil {
			bad(err)
		}
	default:
		s, serr := f.snapshotFromFlags()
		errs = append(errs, serr...)
		c.snapshot = s
		if f.vmMAC == "" {
			bad(errors.New("--vm-mac is required without --snapshot"))
		}
	}
	return c, errors.Join(errs...)
}

// checkNumbers checks --index (KubeVirt's server identifiers cover 0-99,
// dhcp4.ServerIDForIndex), --mtu (0, or 68-65535 as RFC 2132 section 5.1
// allows) and --hostname.
func (f dhcpFlags) checkNumbers() []error {
	var errs []error
	if f.index < 0 || f.index > 99 {
		errs = append(errs, fmt.Errorf("--index %d is outside 0-99", f.index))
	}
	if f.mtu != 0 && (f.mtu < 68 || f.mtu > 65535) {
		errs = append(errs, fmt.Errorf("--mtu %d is outside 68-65535 (RFC 2132 section 5.1)", f.mtu))
	}
	if f.hostname != "" {
		errs = append(errs, checkHostname("--hostname", f.hostname))
	}
	return errs
}

func parseServices(s string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		switch name {
		case netsetup.ServiceDHCPv4, netsetup.ServiceDHCPv6, netsetup.ServiceRA:
			out = append(out, name)
		case "":
		default:
			return nil, fmt.Errorf("--services: unknown service %q (want %s)", name, allServices)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--services names no service")
	}
	return out, nil
}

// snapshotFromFlags describes the network the flags give, as a snapshot
// would.
func (f dhcpFlags) snapshotFromFlags() (*netsetup.Snapshot, []error) {
	var errs []error
	s := &netsetup.Snapshot{Version: netsetup.SnapshotVersion, PodIface: f.iface, MTU: f.mtu, Hostname: f.hostname}
	if f.ipv4 == "" && f.ipv6 == "" {
		errs = append(errs, errors.New("give --ipv4, --ipv6 or both (or --snapshot)"))
	}
	if f.ipv4 != "" {
		p, err := netip.ParsePrefix(f.ipv4)
		if err != nil || !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("--ipv4 %q is not an IPv4 address/prefix", f.ipv4))
		}
		s.IPv4 = []netip.Prefix{p}
	}
	if f.gateway4 != "" {
		a, err := netip.ParseAddr(f.gateway4)
		if err != nil || !a.Is4() {
			errs = append(errs, fmt.Errorf("--gateway4 %q is not an IPv4 address", f.gateway4))
		}
		s.Gateway4 = &netsetup.Gateway{IP: a}
	}
	if f.ipv6 != "" {
		p, err := netip.ParsePrefix(f.ipv6)
		if err != nil || !p.Addr().Is6() {
			errs = append(errs, fmt.Errorf("--ipv6 %q is not an IPv6 address/prefix", f.ipv6))
		}
		s.IPv6 = []netip.Prefix{p}
	}
	gw6, err := f.gateway6Of()
	if err != nil {
		errs = append(errs, err)
	}
	s.Gateway6 = gw6
	for _, d := range splitList(f.dns) {
		a, err := netip.ParseAddr(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("--dns %q is not an IP address", d))
		}
		s.DNS = append(s.DNS, a)
	}
	s.Search = splitList(f.search)
	return s, errs
}

// gateway6Of is the IPv6 gateway with the link-local address RAs come from:
// the gateway itself when link-local, else fe80:: + EUI-64 of its MAC.
func (f dhcpFlags) gateway6Of() (*netsetup.Gateway, error) {
	if f.gateway6 == "" {
		return nil, nil
	}
	a, err := netip.ParseAddr(f.gateway6)
	if err != nil || !a.Is6() {
		return nil, fmt.Errorf("--gateway6 %q is not an IPv6 address", f.gateway6)
	}
	gw := &netsetup.Gateway{IP: a}
	if f.gateway6MAC != "" {
		mac, err := frame.ParseMAC(f.gateway6MAC)
		if err != nil {
			return nil, fmt.Errorf("--gateway6-mac %q is not an Ethernet MAC", f.gateway6MAC)
		}
		gw.MAC = mac
	}
	switch {
	case a.IsLinkLocalUnicast():
		gw.LinkLocal = a
	case !gw.MAC.IsZero():
		gw.LinkLocal = frame.LinkLocalFromMAC(gw.MAC)
	}
	return gw, nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// debugSpec is the interface to serve: the snapshot's values on --iface
// itself, each selected service over the packet transport when the
// privileges allow it and the snapshot has something for it to hand out.
func (c dhcpConfig) debugSpec(priv netsetup.Privileges) binding.Spec {
	snap := c.snapshot
	off := map[string]string{netsetup.ServicePlumbing: "the dhcp debug mode builds nothing: it serves on --iface as it is"}
	for _, name := range []string{netsetup.ServiceDHCPv4, netsetup.ServiceDHCPv6, netsetup.ServiceRA} {
		if !slices.Contains(c.services, name) {
			off[name] = "not selected by --services"
		}
	}
	if gw := snap.Gateway6; off[netsetup.ServiceRA] == "" && len(snap.IPv6) > 0 && (gw == nil || gw.MAC.IsZero()) {
		off[netsetup.ServiceRA] = "router advertisements need --gateway6 and --gateway6-mac"
	}
	plan := netsetup.PlanFor(priv, snap, netsetup.PlanOptions{Off: off, PacketOnly: true})
	plan.PodIface = c.iface
	vmMAC := binding.VMMAC(c.vmMAC, snap)
	identity := c.identity
	if identity == "" {
		identity = "debug/" + vmMAC.String()
	}
	return binding.Spec{
		Name: c.iface, Index: c.index, Snapshot: snap, VMMAC: vmMAC,
		Layout:   netsetup.Layout{PodIface: c.iface, Tap: c.iface, TapStandIn: true},
		Identity: identity, Network: c.iface, RAMode: c.raMode, Timers: c.timers, Plan: plan,
	}
}

// anyOn reports whether a plan runs any service; else why none runs.
func anyOn(p netsetup.Plan) error {
	for _, sp := range p.Services {
		if sp.On && sp.Service != netsetup.ServicePlumbing {
			return nil
		}
	}
	return fmt.Errorf("no service can run: %s", p.LogLine())
}

// runDHCP serves DHCPv4, DHCPv6 and RA on an existing interface from flags
// or a snapshot, without KubeVirt and without building anything, until
// SIGINT or SIGTERM: a debugging tool to run against a real client.
func runDHCP(args []string, stdout, stderr io.Writer) error {
	c, err := parseDHCPFlags(args, stdout, stderr)
	if err != nil {
		return err
	}
	// The interface must exist before the status socket is created.
	if _, err := net.InterfaceByName(c.iface); err != nil {
		return invalid(fmt.Errorf("--iface %q: %w", c.iface, err))
	}
	log := hooks.NewLogger(stderr, "dsbridge-dhcp", c.logLevel)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	priv, err := netsetup.Probe()
	if err != nil {
		return err
	}
	spec := c.debugSpec(priv)
	if err := anyOn(spec.Plan); err != nil {
		return err
	}
	model := status.NewModel(status.Info{Version: version, Commit: commit, Mode: "dhcp"})
	model.SetTier(string(spec.Plan.Tier))
	opts := service.Options{Status: model}
	if c.trace {
		p := trace.NewPrinter(stdout)
		opts.Listen = tracingListen(p, c.dryRun)
		opts.Observe = func(_ string, ev status.Event) { traceOutcome(p, ev) }
	}
	if c.statusSocket != "" {
		wait, err := startStatusServer(ctx, c.statusSocket, model, log)
		if err != nil {
			return err
		}
		defer wait()
	}
	m := service.NewManager(ctx, log, opts)
	if err := m.Start(spec); err != nil {
		m.Stop()
		return err
	}
	if c.dryRun {
		log.Info("dry run: replies are printed, never sent")
	}
	<-ctx.Done()
	m.Stop()
	return nil
}

// tracingListen opens the packet transport and wraps it to print every
// frame; with dryRun nothing is sent.
func tracingListen(p *trace.Printer, dryRun bool) func(string, frame.Filter) (frame.Conn, error) {
	return func(ifname string, f frame.Filter) (frame.Conn, error) {
		conn, err := frame.Listen(ifname, f)
		if err != nil {
			return nil, err
		}
		return &trace.Conn{Conn: conn, P: p, DryRun: dryRun}, nil
	}
}

// traceOutcome prints why a packet got no reply; replies were printed as
// they were sent.
func traceOutcome(p *trace.Printer, ev status.Event) {
	var verb string
	switch ev.Outcome {
	case status.OutcomeDropped:
		verb = trace.VerbDrop
	case status.OutcomeUnanswered:
		verb = trace.VerbNoReply
	default:
		return
	}
	typ := ev.Request
	if !ev.Received {
		typ = ev.Reply
	}
	if typ == "" {
		typ = "packet"
	}
	line := typ
	if ev.XID != "" {
		line += " xid=" + ev.XID
	}
	if ev.Reason != "" {
		line += " reason=" + ev.Reason
	}
	if ev.Detail != "" {
		line += fmt.Sprintf(" (%s)", ev.Detail)
	}
	if ev.Latency > 0 {
		line += " after " + ev.Latency.Round(time.Microsecond).String()
	}
	p.Line(verb, ev.Protocol, line)
}
