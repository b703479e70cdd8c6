// Package service runs the DHCPv4, DHCPv6 and router advertisement services
// of every VM interface under one context, keyed by the VM's port, and
// records what they see into a status model.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/status"
	"github.com/dsbridge/dsbridge/cmd/internal/binding"
	"github.com/dsbridge/dsbridge/dhcp/dhcp4"
	"github.com/dsbridge/dsbridge/dhcp/dhcp6"
	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
	"github.com/dsbridge/dsbridge/netsetup"
	"github.com/dsbridge/dsbridge/ra"
)

// Manager runs the services of every VM interface. Each VM port (the tap)
// has at most one set of services: a VM port served twice would answer
// every request twice, from two service MACs.
type Manager struct {
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	opts   Options

	mu      sync.Mutex
	running map[string]*running // by VM port
}

// running is one interface's services.
type running struct {
	spec   binding.Spec
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// runner is one service's blocking loop.
type runner interface{ Run(context.Context) error }

// Options change how a Manager runs its services.
type Options struct {
	// Status receives every service's events; nil: a model of its own.
	Status *status.Model
	// Listen opens the packet transport on a link; nil: frame.Listen. The
	// dhcp debug mode wraps the transport to trace and to send nothing.
	Listen func(ifname string, f frame.Filter) (frame.Conn, error)
	// Observe, when set, is called with every event after Status recorded
	// it, on the service's goroutine.
	Observe func(ifname string, ev status.Event)
	// NoRateLimit turns the DHCP servers' rate limits off (load tests only:
	// perfdhcp is one client sending far more than a guest ever does).
	NoRateLimit bool
}

// NewManager returns a manager whose services stop when ctx ends or Stop
// is called.
func NewManager(ctx context.Context, log *slog.Logger, opts Options) *Manager {
	if opts.Status == nil {
		opts.Status = status.NewModel(status.Info{})
	}
	if opts.Listen == nil {
		opts.Listen = func(ifname string, f frame.Filter) (frame.Conn, error) { return frame.Listen(ifname, f) }
	}
	ctx, cancel := context.WithCancel(ctx)
	return &Manager{log: log, ctx: ctx, cancel: cancel, opts: opts, running: map[string]*running{}}
}

// Serving returns the interface served on the VM port, if any.
func (m *Manager) Serving(port string) (binding.Spec, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.running[port]
	if !ok {
		return binding.Spec{}, false
	}
	return r.spec, true
}

// Same reports whether a and b describe the same interface to serve: a
// repeated OnDefineDomain changes nothing.
func Same(a, b binding.Spec) bool {
	return a.Name == b.Name && a.Index == b.Index && a.VMMAC == b.VMMAC && a.Identity == b.Identity &&
		a.Network == b.Network && a.Layout == b.Layout && a.RAMode == b.RAMode
}

// Start serves s on its VM port. The same interface again is a no-op;
// another interface on a port already served replaces the one there.
func (m *Manager) Start(s binding.Spec) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	port := s.Layout.Tap
	if r, ok := m.running[port]; ok {
		if Same(r.spec, s) {
			return nil
		}
		m.log.Info("another interface takes the VM port: stopping the services of the one it replaces",
			"port", port, "interface", s.Name, "replaced", r.spec.Name)
		m.stop(port)
	}
	cfgs, err := binding.ConfigsFor(s)
	if err != nil {
		return fmt.Errorf("interface %q: %w", s.Name, err)
	}
	runners, err := m.prepare(s, cfgs)
	if err != nil {
		m.opts.Status.Error(s.Name, "", err)
		return fmt.Errorf("interface %q: %w", s.Name, err)
	}
	m.opts.Status.AddInterface(status.Interface{Name: s.Name, PodIface: s.Layout.PodIface, Tap: s.Layout.Tap,
		Bridge: s.Layout.Bridge, VMMAC: s.VMMAC.String(), Plan: s.Plan, Offer: offerOf(s, cfgs)})
	m.log.Info("serving interface", append([]any{"interface", s.Name, "vmMAC", s.VMMAC.String(), "tap", port}, attrs(s.Plan)...)...)
	ctx, cancel := context.WithCancel(m.ctx)
	r := &running{spec: s, cancel: cancel}
	for name, run := range runners {
		m.opts.Status.SetRunning(s.Name, name, true)
		r.wg.Go(func() {
			err := run.Run(ctx)
			m.opts.Status.SetRunning(s.Name, name, false)
			if err != nil && ctx.Err() == nil {
				m.opts.Status.Error(s.Name, name, err)
				m.log.Error("service stopped", "interface", s.Name, "service", name, "error", err)
			}
		})
	}
	m.running[port] = r
	return nil
}

// Retain stops the services of every VM port not in ports: the interfaces
// that left the VMI.
func (m *Manager) Retain(ports []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	keep := map[string]bool{}
	for _, p := range ports {
		keep[p] = true
	}
	for port, r := range m.running {
		if !keep[port] {
			m.log.Info("interface no longer bound: stopping its services", "interface", r.spec.Name, "port", port)
			m.stop(port)
		}
	}
}

// stop ends the services on port and waits for them; m.mu is held.
func (m *Manager) stop(port string) {
	r := m.running[port]
	r.cancel()
	r.wg.Wait()
	m.opts.Status.RemoveInterface(r.spec.Name)
	delete(m.running, port)
}

// Stop stops every service and waits for them.
func (m *Manager) Stop() {
	m.cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.running {
		r.wg.Wait()
	}
}

func attrs(p netsetup.Plan) []any {
	var out []any
	for _, a := range p.LogAttrs() {
		out = append(out, a)
	}
	return out
}

// prepare builds handlers and opens transports; on error it closes what it
// opened.
func (m *Manager) prepare(s binding.Spec, cfgs binding.Configs) (map[string]runner, error) {
	runners := map[string]runner{}
	ok := false
	defer func() {
		if !ok {
			closeAll(runners)
		}
	}()
	log := m.log.With("interface", s.Name)
	// The advertiser, once made, hears what the DHCP servers learn of a
	// guest from another pod (ra.Advertiser.GuestStale); it is set before
	// any service runs.
	var adv *advertiser
	record := func(proto string, lease *status.Lease) func(serve.Event) {
		states := newLeases(lease)
		return func(ev serve.Event) {
			m.record(s.Name, statusEvent(proto, ev, states))
			if adv != nil && ev.Stale.IsValid() && proto != status.ProtoRA {
				adv.GuestStale(ev.Stale)
			}
		}
	}
	if sp, on := on(s.Plan, netsetup.ServiceDHCPv4); on && cfgs.DHCPv4 != nil {
		srv, err := m.dhcpv4(s, *cfgs.DHCPv4, sp, log.With("service", "dhcpv4"))
		if err != nil {
			return nil, fmt.Errorf("dhcpv4: %w", err)
		}
		srv.Observer = record(status.ProtoDHCPv4, lease4(cfgs.DHCPv4))
		m.unlimit(srv)
		runners[netsetup.ServiceDHCPv4] = srv
	}
	if sp, on := on(s.Plan, netsetup.ServiceDHCPv6); on && cfgs.DHCPv6 != nil {
		srv, err := m.dhcpv6(s, *cfgs.DHCPv6, sp, log.With("service", "dhcpv6"))
		if err != nil {
			return nil, fmt.Errorf("dhcpv6: %w", err)
		}
		srv.Observer = record(status.ProtoDHCPv6, lease6(cfgs.DHCPv6))
		m.unlimit(srv)
		runners[netsetup.ServiceDHCPv6] = srv
	}
	if sp, on := on(s.Plan, netsetup.ServiceRA); on && sp.Transport == netsetup.TransportPacket && cfgs.RA != nil && s.RAMode != ra.ModeOff {
		a, err := m.advertiser(s, *cfgs.RA, log.With("service", "ra"))
		if err != nil {
			return nil, fmt.Errorf("router advertisements: %w", err)
		}
		a.Observer = record(status.ProtoRA, nil)
		runners[netsetup.ServiceRA], adv = a, a
	}
	ok = true
	return runners, nil
}

// unlimit turns srv's rate limit off when the options say so.
func (m *Manager) unlimit(srv *serve.Server) {
	if m.opts.NoRateLimit {
		srv.Limit = serve.Limit{}
	}
}

func (m *Manager) dhcpv4(s binding.Spec, cfg dhcp4.Config, sp netsetup.ServicePlan, log *slog.Logger) (*serve.Server, error) {
	h, err := dhcp4.NewHandler(cfg, log)
	if err != nil {
		return nil, err
	}
	if sp.Transport == netsetup.TransportUDP {
		return dhcp4.NewUDPServer(h, s.Layout.Bridge, sp.Guarded, log)
	}
	conn, err := m.opts.Listen(s.Layout.Tap, frame.Filter{SrcMAC: s.VMMAC, Kind: frame.KindDHCPv4})
	if err != nil {
		return nil, err
	}
	return dhcp4.NewPacketServer(h, conn, log), nil
}

func (m *Manager) dhcpv6(s binding.Spec, cfg dhcp6.Config, sp netsetup.ServicePlan, log *slog.Logger) (*serve.Server, error) {
	h, err := dhcp6.NewHandler(cfg, log)
	if err != nil {
		return nil, err
	}
	if sp.Transport == netsetup.TransportUDP {
		return dhcp6.NewUDPServer(h, s.Layout.Bridge, sp.Guarded, log)
	}
	conn, err := m.opts.Listen(s.Layout.Tap, frame.Filter{SrcMAC: s.VMMAC, Kind: frame.KindDHCPv6})
	if err != nil {
		return nil, err
	}
	return dhcp6.NewPacketServer(h, conn, log), nil
}

// advertiser runs the RAs on the VM's tap and, when a packet socket on the
// uplink can be had, watches the gateway's own RAs there to warn once when
// their flags differ from ours (not watching costs nothing but the warning).
func (m *Manager) advertiser(s binding.Spec, cfg ra.Config, log *slog.Logger) (*advertiser, error) {
	conn, err := m.opts.Listen(s.Layout.Tap, frame.Filter{SrcMAC: s.VMMAC, Kind: frame.KindICMPv6})
	if err != nil {
		return nil, err
	}
	adv, err := ra.NewAdvertiser(cfg, conn, log)
	if err != nil {
		conn.Close()
		return nil, err
	}
	up, err := m.opts.Listen(s.Layout.Uplink, frame.Filter{SrcMAC: cfg.GatewayMAC, Kind: frame.KindICMPv6})
	if err != nil {
		log.Debug("not watching the gateway's own router advertisements", "uplink", s.Layout.Uplink, "error", err.Error())
	}
	return &advertiser{Advertiser: adv, conn: conn, upstream: up}, nil
}

// advertiser is an ra.Advertiser with its transports: it closes them when
// it stops.
type advertiser struct {
	*ra.Advertiser
	conn, upstream frame.Conn
}

func (a *advertiser) Run(ctx context.Context) error {
	defer a.Close()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if a.upstream != nil {
		wg.Go(func() { _ = a.WatchUpstream(ctx, a.upstream) }) // an error costs only the warning
	}
	err := a.Advertiser.Run(ctx)
	cancel()
	wg.Wait()
	return err
}

func (a *advertiser) Close() error {
	if a.upstream != nil {
		a.upstream.Close()
	}
	return a.conn.Close()
}

// closeAll releases the transports of runners that never ran.
func closeAll(runners map[string]runner) {
	for _, r := range runners {
		if c, ok := r.(interface{ Close() error }); ok {
			_ = c.Close() // already failing; the first error is the one to report
		}
	}
}

// on returns the service's plan entry when it is to run.
func on(p netsetup.Plan, service string) (netsetup.ServicePlan, bool) {
	sp, ok := p.Service(service)
	return sp, ok && sp.On
}

// record stores ev for interface name, logs a change of the guest's
// renumbering (one line when it is first seen using an address not served
// here, one when it took the served one), and passes ev to the observer.
func (m *Manager) record(name string, ev status.Event) {
	switch r := m.opts.Status.Record(name, ev); {
	case r.Stale != "":
		m.log.Info("guest still uses an address not served here; renumbering", "interface", name, "family", "IPv"+r.Family,
			"address", r.Stale, "served", r.Served, "protocol", ev.Protocol)
	case r.Converged:
		m.log.Info("guest renumbered: it took the served address", "interface", name, "family", "IPv"+r.Family,
			"address", r.Served, "after", r.Took.Round(time.Millisecond).String())
	}
	if m.opts.Observe != nil {
		m.opts.Observe(name, ev.Formatted())
	}
}
