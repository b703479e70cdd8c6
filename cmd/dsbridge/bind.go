package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/service"
	"github.com/dsbridge/dsbridge/cmd/internal/binding"
	"github.com/dsbridge/dsbridge/dhcp/dhcp4"
	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/hooks"
	"github.com/dsbridge/dsbridge/hooks/naming"
	"github.com/dsbridge/dsbridge/netsetup"
	"github.com/dsbridge/dsbridge/ra"
)

// binder makes every interface bound to the plugin ready and serves it:
// plumbing adopted or built, DHCPv4, DHCPv6 and RA started. It runs on
// every OnDefineDomain (1-3 times per start, once on a migration target):
// an interface already served as asked is left as it is, and the services
// of VM ports no longer bound stop.
type binder struct {
	mgr      *service.Manager
	priv     netsetup.Privileges
	stateDir string
	snap     netsetup.SnapshotOptions
	raMode   ra.Mode
	timers   binding.Timers
	log      *slog.Logger
	// snaps are the pod interfaces as recorded at start, by name; read-only
	// once the hook socket is open.
	snaps map[string]*netsetup.Snapshot
}

var _ hooks.Binder = (*binder)(nil)

// Bind implements hooks.Binder.
func (b *binder) Bind(ctx context.Context, vmi hooks.VMIIdentity, ifaces []hooks.BoundInterface) error {
	timers, err := timersFor(b.timers, vmi.Annotations)
	if err != nil {
		return fmt.Errorf("VMI %s/%s: %w", vmi.Namespace, vmi.Name, err)
	}
	var ports []string
	for _, in := range ifaces {
		req := binding.Request{
			Name: in.Name, Index: in.Index, PodIface: in.PodIface, Tap: in.Tap, VMMAC: in.MAC,
			Identity: vmi.UID, Network: in.Network, Extra: dhcpExtras(in.DHCPOptions, b.log),
			RAMode: b.raMode, Timers: timers, StateDir: b.stateDir, Snapshot: b.snap, Known: b.snaps[in.PodIface], Privileges: b.priv,
			Log: b.log.With("interface", in.Name),
		}
		port := netsetup.LayoutFor(req.PodIface, req.Tap).Tap
		ports = append(ports, port)
		if running, ok := b.mgr.Serving(port); ok && sameRequest(running, req) {
			continue
		}
		spec, err := binding.Prepare(ctx, req)
		if err != nil {
			return fmt.Errorf("interface %q: %w", in.Name, err)
		}
		if err := b.mgr.Start(spec); err != nil {
			return err
		}
	}
	b.mgr.Retain(ports)
	return nil
}

// sameRequest reports whether the interface served asks for nothing new:
// then a repeated OnDefineDomain neither re-plans nor touches the plumbing.
func sameRequest(s binding.Spec, r binding.Request) bool {
	return s.Name == r.Name && s.Index == r.Index && s.VMMAC == binding.VMMAC(r.VMMAC, s.Snapshot) &&
		s.Identity == r.Identity && s.Network == r.Network && s.Layout.PodIface == r.PodIface && s.RAMode == r.RAMode &&
		s.Timers == r.Timers
}

// dhcpExtras turns the VMI's dhcpOptions into raw DHCPv4 options, as
// KubeVirt's own server does (pkg/network/dhcp/server/server.go): NTP
// servers (IPv4 only), TFTP server name, boot file name, private options
// 224-254. An option the DHCPv4 server would refuse is dropped with a
// warning, so that one bad option does not cost the guest its address.
func dhcpExtras(o *hooks.DHCPOptions, log *slog.Logger) []dhcp4.Option {
	if o == nil {
		return nil
	}
	var out []dhcp4.Option
	if o.TFTPServerName != "" {
		out = append(out, dhcp4.Option{Code: dhcp4.OptionTFTPServerName, Value: []byte(o.TFTPServerName)})
	}
	if o.BootFileName != "" {
		out = append(out, dhcp4.Option{Code: dhcp4.OptionBootFileName, Value: []byte(o.BootFileName)})
	}
	var ntp []byte
	for _, s := range o.NTPServers {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			log.Warn("ignoring an NTP server that is not an IPv4 address", "ntpServer", s)
			continue
		}
		ntp = append(ntp, a.AsSlice()...)
	}
	if len(ntp) > 0 {
		out = append(out, dhcp4.Option{Code: dhcp4.OptionNTPServers, Value: ntp})
	}
	for _, p := range o.PrivateOptions {
		if p.Option < 0 || p.Option > 255 || !dhcp4.ExtraAllowed(uint8(p.Option)) {
			log.Warn("ignoring a private DHCP option outside 224-254", "option", p.Option)
			continue
		}
		out = append(out, dhcp4.Option{Code: uint8(p.Option), Value: []byte(p.Value)})
	}
	return out
}

// snapshotPodInterfaces records every pod interface before the hook socket
// opens (before KubeVirt moves them), saving each snapshot in the state
// directory, and returns their MAC and MTU for the domain editor.
func snapshotPodInterfaces(ctx context.Context, b *binder) (hooks.StaticFacts, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("failed to list the pod interfaces: %w", err)
	}
	facts := hooks.StaticFacts{}
	b.snaps = map[string]*netsetup.Snapshot{}
	for _, ifi := range ifs {
		if !naming.IsPodInterface(ifi.Name) {
			continue
		}
		mac, _ := frame.MACFrom(ifi.HardwareAddr)
		facts[ifi.Name] = hooks.IfaceFacts{MAC: mac, MTU: ifi.MTU}
		s, err := binding.Snapshot(ctx, binding.Request{PodIface: ifi.Name, StateDir: b.stateDir, Snapshot: b.snap,
			Log: b.log.With("podIface", ifi.Name)})
		if err != nil {
			b.log.Warn("cannot record the pod interface's network", "podIface", ifi.Name, "error", err.Error())
			continue
		}
		facts[ifi.Name] = hooks.IfaceFacts{MAC: s.MAC, MTU: s.MTU}
		b.snaps[ifi.Name] = s
		b.log.Info("recorded pod interface", "podIface", ifi.Name, "mac", s.MAC.String(), "mtu", s.MTU,
			"ipv4", s.IPv4, "ipv6", s.IPv6)
	}
	return facts, nil
}
