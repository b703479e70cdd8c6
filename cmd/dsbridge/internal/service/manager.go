package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/status"
	"github.com/dsbridge/dsbridge/dhcp/dhcp4"
	"github.com/dsbridge/dsbridge/dhcp/dhcp6"
	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/netsetup"
	"github.com/dsbridge/dsbridge/ra"
)

// Manager runs the services of every VM interface under one context, and
// records what they see into a status model.
type Manager struct {
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	opts   Options

	mu      sync.Mutex
	running map[string]*Running
}

// Running is one interface's services.
type Running struct {
	Spec    Spec
	Configs Configs
	DHCPv4  *dhcp4.Handler
	DHCPv6  *dhcp6.Handler
	RA      *ra.Advertiser
}

// runner is one service's blocking loop.
type runner interface{ Run(context.Context) error }

// Options change how a Manager runs its services.
type Options struct {
	// Status receives every service's events; nil: a model of its own.
	Status *status.Model
	// Listen opens the packet transport on the VM's port; nil: frame.Listen.
	// The dhcp debug mode wraps the transport to trace and to send nothing.
	Listen func(ifname string, f frame.Filter) (frame.Conn, error)
	// Observe, when set, is called with every event after Status recorded
	// it, on the service's goroutine.
	Observe func(ifname string, ev status.Event)
}

// NewManager returns a manager whose services stop when ctx ends or Stop
// is called.
func NewManager(ctx context.Context, log *slog.Logger) *Manager {
	return NewManagerWith(ctx, log, Options{})
}

// NewManagerWith is NewManager with options.
func NewManagerWith(ctx context.Context, log *slog.Logger, opts Options) *Manager {
	if opts.Status == nil {
		opts.Status = status.NewModel(status.Info{})
	}
	if opts.Listen == nil {
		opts.Listen = func(ifname string, f frame.Filter) (frame.Conn, error) { return frame.Listen(ifname, f) }
	}
	ctx, cancel := context.WithCancel(ctx)
	return &Manager{log: log, ctx: ctx, cancel: cancel, opts: opts, running: map[string]*Running{}}
}

// Status is the model the services record into.
func (m *Manager) Status() *status.Model { return m.opts.Status }

// record stores ev for interface name and passes it to the observer.
func (m *Manager) record(name string, ev status.Event) {
	m.opts.Status.Record(name, ev)
	if m.opts.Observe != nil {
		m.opts.Observe(name, ev)
	}
}

// Start starts the services the plan allows for s. Starting an interface
// that already runs with the same VM MAC does nothing, so a repeated
// OnDefineDomain changes nothing.
func (m *Manager) Start(s Spec) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.running[s.Name]; ok {
		if r.Spec.VMMAC.String() == s.VMMAC.String() {
			return nil
		}
		return fmt.Errorf("interface %q already serves VM MAC %s, not %s: restart the sidecar to change it", s.Name, r.Spec.VMMAC, s.VMMAC)
	}
	r, runners, err := m.prepare(s)
	if err != nil {
		m.opts.Status.Error(s.Name, "", err)
		return fmt.Errorf("interface %q: %w", s.Name, err)
	}
	m.opts.Status.AddInterface(describe(r))
	m.log.Info("serving interface "+s.Name, append([]any{"vmMAC", s.VMMAC.String(), "tap", s.Layout.Tap}, attrs(s.Plan)...)...)
	for name, run := range runners {
		m.opts.Status.SetRunning(s.Name, name, true)
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			err := run.Run(m.ctx)
			m.opts.Status.SetRunning(s.Name, name, false)
			if err != nil && m.ctx.Err() == nil {
				m.opts.Status.Error(s.Name, name, err)
				m.log.Error("service stopped", "interface", s.Name, "service", name, "error", err)
			}
		}()
	}
	m.running[s.Name] = r
	return nil
}

// describe is the status description of a prepared interface.
func describe(r *Running) status.Interface {
	s := r.Spec
	return status.Interface{Name: s.Name, PodIface: s.Layout.PodIface, Tap: s.Layout.Tap, Bridge: s.Layout.Bridge,
		VMMAC: s.VMMAC.String(), Plan: s.Plan, Offer: offerOf(s, r.Configs)}
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
func (m *Manager) prepare(s Spec) (*Running, map[string]runner, error) {
	cfgs, err := ConfigsFor(s)
	if err != nil {
		return nil, nil, err
	}
	r := &Running{Spec: s, Configs: cfgs}
	runners := map[string]runner{}
	var closers []func() error
	fail := func(err error) (*Running, map[string]runner, error) {
		for _, c := range closers {
			_ = c() // already failing; the first error is the one to report
		}
		return nil, nil, err
	}
	log := m.log.With("interface", s.Name)
	if sp, ok := on(s.Plan, netsetup.ServiceDHCPv4); ok && cfgs.DHCPv4 != nil {
		srv, closer, err := m.dhcpv4(r, sp, log)
		if err != nil {
			return fail(err)
		}
		runners[netsetup.ServiceDHCPv4], closers = srv, append(closers, closer)
	}
	if sp, ok := on(s.Plan, netsetup.ServiceDHCPv6); ok && cfgs.DHCPv6 != nil {
		srv, closer, err := m.dhcpv6(r, sp, log)
		if err != nil {
			return fail(err)
		}
		runners[netsetup.ServiceDHCPv6], closers = srv, append(closers, closer)
	}
	if sp, ok := on(s.Plan, netsetup.ServiceRA); ok && sp.Transport == netsetup.TransportPacket && cfgs.RA != nil && s.RAMode != ra.ModeOff {
		conn, err := m.opts.Listen(s.Layout.Tap, frame.Filter{SrcMAC: s.VMMAC, Kind: frame.KindICMPv6})
		if err != nil {
			return fail(fmt.Errorf("router advertisements: %w", err))
		}
		closers = append(closers, conn.Close)
		adv, err := ra.NewAdvertiser(*cfgs.RA, conn, log.With("service", "ra"))
		if err != nil {
			return fail(fmt.Errorf("router advertisements: %w", err))
		}
		adv.Observer = func(ev ra.Event) { m.record(s.Name, EventRA(ev)) }
		r.RA, runners[netsetup.ServiceRA] = adv, closeAfter(adv, conn.Close)
		// The cluster's own RAs from the same router arrive on the uplink:
		// watch them to warn once when their flags differ from ours. Not
		// being able to watch costs nothing but that warning.
		if up, err := m.opts.Listen(s.Layout.Uplink, frame.Filter{SrcMAC: cfgs.RA.GatewayMAC, Kind: frame.KindICMPv6}); err != nil {
			log.Debug("not watching the gateway's own router advertisements", "uplink", s.Layout.Uplink, "error", err.Error())
		} else {
			closers = append(closers, up.Close)
			runners["ra-upstream"] = closeAfter(upstreamWatcher{conn: up, adv: adv}, up.Close)
		}
	}
	return r, runners, nil
}

func (m *Manager) dhcpv4(r *Running, sp netsetup.ServicePlan, log *slog.Logger) (runner, func() error, error) {
	h, err := dhcp4.NewHandler(*r.Configs.DHCPv4, log.With("service", "dhcpv4"))
	if err != nil {
		return nil, nil, fmt.Errorf("dhcpv4: %w", err)
	}
	r.DHCPv4 = h
	cfg, name := r.Configs.DHCPv4, r.Spec.Name
	observe := func(ev dhcp4.Event) { m.record(name, Event4(ev, cfg)) }
	if sp.Transport == netsetup.TransportPacket {
		conn, err := m.opts.Listen(r.Spec.Layout.Tap, frame.Filter{SrcMAC: r.Spec.VMMAC, Kind: frame.KindDHCPv4})
		if err != nil {
			return nil, nil, fmt.Errorf("dhcpv4: %w", err)
		}
		srv := dhcp4.NewPacketServer(h, conn, log.With("service", "dhcpv4"))
		srv.Observer = observe
		return closeAfter(srv, conn.Close), conn.Close, nil
	}
	srv, err := dhcp4.NewUDPServer(h, r.Spec.Layout.Bridge, log.With("service", "dhcpv4"))
	if err != nil {
		return nil, nil, fmt.Errorf("dhcpv4: %w", err)
	}
	srv.Observer = observe
	return srv, srv.Close, nil
}

func (m *Manager) dhcpv6(r *Running, sp netsetup.ServicePlan, log *slog.Logger) (runner, func() error, error) {
	h, err := dhcp6.NewHandler(*r.Configs.DHCPv6, log.With("service", "dhcpv6"))
	if err != nil {
		return nil, nil, fmt.Errorf("dhcpv6: %w", err)
	}
	r.DHCPv6 = h
	cfg, name := h.Config(), r.Spec.Name
	observe := func(ev dhcp6.Event) { m.record(name, Event6(ev, &cfg)) }
	if sp.Transport == netsetup.TransportPacket {
		conn, err := m.opts.Listen(r.Spec.Layout.Tap, frame.Filter{SrcMAC: r.Spec.VMMAC, Kind: frame.KindDHCPv6})
		if err != nil {
			return nil, nil, fmt.Errorf("dhcpv6: %w", err)
		}
		srv := dhcp6.NewPacketServer(h, conn, log.With("service", "dhcpv6"))
		srv.Observer = observe
		return closeAfter(srv, conn.Close), conn.Close, nil
	}
	srv, err := dhcp6.NewUDPServer(h, r.Spec.Layout.Bridge, log.With("service", "dhcpv6"))
	if err != nil {
		return nil, nil, fmt.Errorf("dhcpv6: %w", err)
	}
	srv.Observer = observe
	return srv, func() error { return nil }, nil
}

// on returns the service's plan entry when it is to run.
func on(p netsetup.Plan, service string) (netsetup.ServicePlan, bool) {
	sp, ok := p.Service(service)
	return sp, ok && sp.On
}

// closeAfter runs r, then closes its transport.
func closeAfter(r runner, closer func() error) runner {
	return runFunc(func(ctx context.Context) error {
		err := r.Run(ctx)
		return errors.Join(err, ignoreClosed(closer()))
	})
}

type runFunc func(context.Context) error

func (f runFunc) Run(ctx context.Context) error { return f(ctx) }

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Lookup returns the running services of interface name.
func (m *Manager) Lookup(name string) (*Running, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.running[name]
	return r, ok
}

// Stop stops every service and waits for them.
func (m *Manager) Stop() {
	m.cancel()
	m.wg.Wait()
}
