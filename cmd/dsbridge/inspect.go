package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/dsbridge/dsbridge/cmd/internal/binding"
	"github.com/dsbridge/dsbridge/cmd/internal/cliflag"
	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/netsetup"
)

// inspectFlags are the flags shared by inspect and teardown.
type inspectFlags struct {
	podIface, resolvConf, hostname, stateDir, output string
}

// register adds the flags that name a saved snapshot: inspect's and
// teardown's.
func (f *inspectFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.podIface, "pod-iface", netsetup.DefaultPodIface, "pod interface (eth0, pod<hash>, net<i>)")
	fs.StringVar(&f.stateDir, "state-dir", netsetup.DefaultStateDir, "directory of saved snapshots (snapshot-<pod-iface>.json)")
}

// registerLive adds the flags a live snapshot reads: inspect's only.
func (f *inspectFlags) registerLive(fs *flag.FlagSet) {
	fs.StringVar(&f.resolvConf, "resolv-conf", netsetup.DefaultResolvConf, "resolver configuration to read DNS servers and search domains from")
	fs.StringVar(&f.hostname, "hostname", "", "hostname to hand out (default: this host's)")
}

func (f *inspectFlags) snapshotOptions() netsetup.SnapshotOptions {
	return netsetup.SnapshotOptions{PodIface: f.podIface, ResolvConf: f.resolvConf, Hostname: f.hostname}
}

// inspection is what `dsbridge inspect -o json` prints.
type inspection struct {
	Snapshot *netsetup.Snapshot `json:"snapshot"`
	Source   string             `json:"source"` // "live" or the saved file
	Warning  string             `json:"warning,omitempty"`
	Handout  binding.Handout    `json:"handout"`
	Plan     netsetup.Plan      `json:"plan"`
}

// runInspect prints the pod interface's snapshot, what each service would
// hand out and the privilege plan. It changes nothing: a saved snapshot is
// shown when it still matches the pod, otherwise the live one.
func runInspect(args []string, stdout, stderr io.Writer) error {
	var f inspectFlags
	fs := newFlagSet("dsbridge inspect", "[--pod-iface X] [--resolv-conf F] [--hostname H] [--state-dir D] [-o text|json]")
	f.register(fs)
	f.registerLive(fs)
	fs.StringVar(&f.output, "o", "text", "output format: text or json")
	if err := cliflag.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	errs := []error{checkIfaceName("--pod-iface", f.podIface)}
	if f.output != "text" && f.output != "json" {
		errs = append(errs, fmt.Errorf("-o %q: want text or json", f.output))
	}
	if f.hostname != "" {
		errs = append(errs, checkHostname("--hostname", f.hostname))
	}
	if err := invalid(errs...); err != nil {
		return err
	}
	in, err := inspect(f)
	if err != nil {
		return err
	}
	if f.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(in)
	}
	printInspection(stdout, in)
	return nil
}

func inspect(f inspectFlags) (*inspection, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	path := netsetup.StatePath(f.stateDir, f.podIface)
	in := &inspection{Source: "live"}
	live, liveErr := netsetup.Take(ctx, f.snapshotOptions())
	saved, err := netsetup.Load(path)
	switch {
	case err == nil && liveErr != nil:
		in.Snapshot, in.Source = saved, path
		in.Warning = liveErr.Error()
	case err == nil:
		in.Snapshot = live
		if merr := netsetup.CheckMatches(path, saved, live); merr != nil {
			in.Warning = merr.Error()
		} else {
			in.Snapshot, in.Source = saved, path
		}
	case liveErr != nil:
		return nil, liveErr
	case !errors.Is(err, os.ErrNotExist):
		in.Snapshot, in.Warning = live, err.Error()
	default:
		in.Snapshot = live
	}
	priv, err := netsetup.Probe()
	if err != nil {
		return nil, err
	}
	// The same plan and configurations the sidecar and serve run with, for
	// this pod interface and the standalone identity.
	in.Plan = binding.PlanFor(priv, in.Snapshot, netsetup.LayoutFor(f.podIface, ""), slog.New(slog.DiscardHandler))
	cfgs, err := binding.ConfigsFor(binding.Spec{Snapshot: in.Snapshot, VMMAC: binding.VMMAC(frame.MAC{}, in.Snapshot),
		Identity: binding.StandaloneIdentity(in.Snapshot), Network: f.podIface})
	if err != nil {
		return nil, err
	}
	in.Handout = binding.HandoutOf(cfgs)
	return in, nil
}

func printInspection(w io.Writer, in *inspection) {
	s := in.Snapshot
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("snapshot of %s (from %s, taken %s)", s.PodIface, in.Source, s.TakenAt.Format(time.RFC3339))
	if in.Warning != "" {
		p("  warning:   %s", in.Warning)
	}
	if s.Plumbed {
		p("  note:      read from existing plumbing: gateways and routes unknown")
	}
	p("  mac:       %s", s.MAC)
	p("  mtu:       %d", s.MTU)
	p("  ipv4:      %s", join(s.IPv4))
	p("  ipv6:      %s", join(s.IPv6))
	p("  gateway4:  %s", gatewayText(s.Gateway4))
	p("  gateway6:  %s", gatewayText(s.Gateway6))
	for _, r := range s.Routes {
		via := "on-link"
		if r.Via.IsValid() {
			via = "via " + r.Via.String()
		}
		p("  route:     %s %s", r.Dst, via)
	}
	p("  dns:       %s", join(s.DNS))
	p("  search:    %s", strings.Join(s.Search, " "))
	p("  hostname:  %s", s.Hostname)
	printHandout(w, in.Handout)
	p("plan: %s", in.Plan.LogLine())
}

func printHandout(w io.Writer, h binding.Handout) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	if d := h.DHCPv4; d != nil {
		p("dhcpv4: address %s mask %s router %s mtu %d hostname %q server id %s", d.Address, d.Mask, addrText(d.Router), d.MTU, d.Hostname, d.ServerID)
		for _, r := range d.Routes {
			p("  classless route %s via %s", r.Dst, addrText(r.Via))
		}
		p("  dns %s; search %s; domain %s", join(d.DNS), strings.Join(d.Search, " "), d.Domain)
	}
	if d := h.DHCPv6; d != nil {
		p("dhcpv6: address %s; dns %s; search %s", d.Address, join(d.DNS), strings.Join(d.Search, " "))
	}
	if ra := h.RA; ra != nil {
		prefix := "none (/128)"
		if ra.Prefix.IsValid() {
			prefix = ra.Prefix.String() + " L=1 A=0"
		}
		p("ra (%s): source %s sllao %s prefix %s mtu %d; rdnss %s; dnssl %s", ra.Mode, addrText(ra.Source), ra.SLLAO, prefix, ra.MTU,
			join(ra.DNS), strings.Join(ra.Search, " "))
	}
}

func gatewayText(gw *netsetup.Gateway) string {
	if gw == nil {
		return "none"
	}
	s := fmt.Sprintf("%s mac %s", gw.IP, gw.MAC)
	if len(gw.MAC) == 0 {
		s = fmt.Sprintf("%s mac unresolved", gw.IP)
	}
	if gw.LinkLocal.IsValid() {
		s += " link-local " + gw.LinkLocal.String()
	}
	return s
}

func addrText[T interface{ IsValid() bool }](a T) string {
	if !a.IsValid() {
		return "0.0.0.0"
	}
	return fmt.Sprint(a)
}

func join[T fmt.Stringer](list []T) string {
	if len(list) == 0 {
		return "-"
	}
	parts := make([]string, len(list))
	for i, v := range list {
		parts[i] = v.String()
	}
	return strings.Join(parts, " ")
}
