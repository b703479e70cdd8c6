package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/status"
	"github.com/dsbridge/dsbridge/cmd/internal/cliflag"
	"github.com/dsbridge/dsbridge/hooks"
	"github.com/dsbridge/dsbridge/netsetup"
)

// startStatusServer serves the model on the unix socket at path until ctx
// ends; wait blocks until the server has stopped.
func startStatusServer(ctx context.Context, path string, m *status.Model, log *slog.Logger) (wait func(), err error) {
	l, err := status.Listen(path)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := status.Serve(ctx, l, status.Handler(m, log)); err != nil {
			log.Error("status server failed", "socket", path, "error", err.Error())
		}
	}()
	log.Info("serving status", "socket", path)
	return func() { <-done }, nil
}

// defaultStatusSockets are where `dsbridge status` looks without --socket:
// the sidecar's (in its subdirectory of the hooks directory), then serve's.
func defaultStatusSockets() []string {
	name := os.Getenv(pluginNameEnv)
	if name == "" {
		name = defaultPluginName
	}
	return []string{
		filepath.Join(hooks.DefaultHooksDir, name, status.SocketName),
		filepath.Join(netsetup.DefaultStateDir, status.SocketName),
	}
}

// runStatus prints a running sidecar's (or serve's, or dhcp's) status.
func runStatus(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dsbridge status", "[--socket P] [--json | --metrics]")
	socket := fs.String("socket", "", "the status socket (default: the sidecar's "+strings.Join(defaultStatusSockets(), ", then ")+")")
	asJSON := fs.Bool("json", false, "print the /status JSON document as served")
	metrics := fs.Bool("metrics", false, "print /metrics (Prometheus text format)")
	if err := cliflag.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	path := *socket
	if path == "" {
		path = firstExisting(defaultStatusSockets())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	endpoint := "/status"
	if *metrics {
		endpoint = "/metrics"
	}
	b, err := status.Fetch(ctx, path, endpoint)
	if err != nil {
		return err
	}
	if *metrics || *asJSON {
		_, err := stdout.Write(b)
		return err
	}
	var doc status.Status
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("failed to decode the status from %q: %w", path, err)
	}
	return printStatus(stdout, doc)
}

func firstExisting(paths []string) string {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return paths[0]
}

// printStatus writes the status for a person: what runs, what the guest
// holds, what it asked last and what it got, what went wrong.
func printStatus(w io.Writer, doc status.Status) error {
	p := &printer{w: w, now: doc.Now}
	p.f("dsbridge %s (%s), up %s, tier %s\n", doc.Version, doc.Mode, ago(doc.StartedAt, doc.Now), orNone(doc.Tier))
	if doc.VMI != nil {
		p.f("VMI %s/%s uid %s\n", doc.VMI.Namespace, doc.VMI.Name, doc.VMI.UID)
	}
	if len(doc.Interfaces) == 0 {
		p.f("no interface served yet (the VMI has not been defined, or no interface uses this binding)\n")
	}
	for _, in := range doc.Interfaces {
		p.iface(in)
	}
	p.errors("", doc.Errors)
	return p.err
}

type printer struct {
	w   io.Writer
	now time.Time
	err error
}

func (p *printer) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

func (p *printer) iface(in status.Interface) {
	p.f("\ninterface %s: VM MAC %s, pod interface %s, tap %s, bridge %s\n",
		in.Name, in.VMMAC, orNone(in.PodIface), orNone(in.Tap), orNone(in.Bridge))
	p.offer(in.Offer)
	p.observed(in.Observed)
	tw := tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  service\tplan\trunning\tlease\n")
	for _, sp := range in.Plan.Services {
		plan := "off: " + sp.Reason
		if sp.On {
			plan = "on (" + sp.Transport + ")"
		}
		svc := findService(in.Services, sp.Service)
		running, lease := "-", "-"
		if svc != nil {
			running = yesNo(svc.Running)
			lease = p.lease(svc.Lease)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", sp.Service, plan, running, lease)
	}
	if err := tw.Flush(); err != nil && p.err == nil {
		p.err = err
	}
	for _, sp := range in.Plan.Services {
		if !sp.On && sp.Remedy != "" {
			p.f("  %s remedy: %s\n", sp.Service, sp.Remedy)
		}
	}
	for _, s := range in.Services {
		p.service(s)
	}
	p.errors("  ", in.Errors)
}

func (p *printer) offer(o status.Offer) {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+" "+v)
		}
	}
	add("ipv4", o.IPv4)
	add("gw", o.Gateway4)
	add("ipv6", o.IPv6)
	add("ipv6 router", o.GatewayLLA)
	add("dns", strings.Join(o.DNS, ","))
	add("search", strings.Join(o.Search, ","))
	if o.MTU != 0 {
		add("mtu", fmt.Sprint(o.MTU))
	}
	add("hostname", o.Hostname)
	add("server id", o.ServerID)
	p.f("  offers: %s\n", orNone(strings.Join(parts, ", ")))
}

// observed prints the addresses the guest was seen using, the served ones
// and those it brought from another pod.
func (p *printer) observed(obs []status.Observed) {
	if len(obs) == 0 {
		return
	}
	var parts []string
	for _, o := range obs {
		what := "served"
		if !o.Served {
			what = "not served here"
		}
		parts = append(parts, fmt.Sprintf("%s (%s, last %s ago)", o.Address, what, ago(o.LastSeen, p.now)))
	}
	p.f("  guest uses: %s\n", strings.Join(parts, ", "))
}

func (p *printer) lease(l *status.Lease) string {
	if l == nil {
		return "-"
	}
	return fmt.Sprintf("%s %s (%s ago)", l.State, l.Address, ago(l.Since, p.now))
}

func (p *printer) service(s status.Service) {
	p.f("  %s:\n", s.Protocol)
	if m := s.LastRequest; m != nil {
		p.f("    last request: %s\n", p.message(m, true))
	}
	if m := s.LastReply; m != nil {
		p.f("    last reply:   %s\n", p.message(m, false))
	}
	if m := s.LastDrop; m != nil {
		p.f("    last drop:    %s\n", p.message(m, false))
	}
	if len(s.Received) > 0 {
		p.f("    received:     %s\n", counters(s.Received, func(c status.Counter) string { return c.Type + " " + c.Outcome }))
	}
	if len(s.Replies) > 0 {
		p.f("    sent:         %s\n", counters(s.Replies, func(c status.Counter) string { return c.Type }))
	}
	if len(s.Dropped) > 0 {
		p.f("    dropped:      %s\n", counters(s.Dropped, func(c status.Counter) string { return c.Reason }))
	}
	if s.Received == nil && s.Replies == nil && s.Dropped == nil {
		p.f("    nothing received from the guest yet\n")
	}
}

func (p *printer) message(m *status.Message, request bool) string {
	s := m.Type
	if m.XID != "" {
		s += " xid " + m.XID
	}
	if m.Peer != "" {
		s += " peer " + m.Peer
	}
	switch {
	case request && m.Reply != "":
		s += " -> " + m.Reply
	case request:
		s += " -> " + orNone(m.Outcome)
	}
	if m.Reason != "" {
		s += " (" + m.Reason + ")"
	}
	if m.Detail != "" {
		s += ": " + m.Detail
	}
	if m.LatencyMicros > 0 {
		s += fmt.Sprintf(" in %.0fµs", m.LatencyMicros)
	}
	return s + fmt.Sprintf(", %s ago", ago(m.Time, p.now))
}

func (p *printer) errors(indent string, recs []status.ErrorRecord) {
	for _, e := range recs {
		svc := e.Service
		if svc == "" {
			svc = "dsbridge"
		}
		p.f("%serror %s ago in %s: %s\n", indent, ago(e.Time, p.now), svc, e.Error)
	}
}

func counters(cs []status.Counter, label func(status.Counter) string) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s %d", label(c), c.Count)
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func findService(ss []status.Service, name string) *status.Service {
	for i := range ss {
		if ss[i].Protocol == name {
			return &ss[i]
		}
	}
	return nil
}

// ago is how long before now t was, rounded for a person.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "?"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
