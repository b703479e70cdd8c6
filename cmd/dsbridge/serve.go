package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/service"
	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/status"
	"github.com/dsbridge/dsbridge/cmd/internal/binding"
	"github.com/dsbridge/dsbridge/cmd/internal/cliflag"
	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/hooks"
	"github.com/dsbridge/dsbridge/netsetup"
	"github.com/dsbridge/dsbridge/ra"
)

// serveConfig is the validated command line of `dsbridge serve`.
type serveConfig struct {
	podIface, tap        string
	vmMAC                frame.MAC
	resolvConf, hostname string
	stateDir, identity   string
	raMode               ra.Mode
	teardownOnExit       bool
	rateLimit            bool
	timers               binding.Timers
	logLevel             slog.Level
}

func parseServeFlags(args []string, stdout, stderr io.Writer) (serveConfig, error) {
	fs := newFlagSet("dsbridge serve", "[--pod-iface eth0] [--tap tap0] [flags]")
	var c serveConfig
	var vmMAC, raMode string
	fs.StringVar(&c.podIface, "pod-iface", netsetup.DefaultPodIface, "the pod interface whose addresses the VM gets")
	fs.StringVar(&c.tap, "tap", "", "the VM's port: an existing tap (or a veth standing in for one) is used, else a tap is created (default: KubeVirt's name, tap0 for eth0)")
	fs.StringVar(&vmMAC, "vm-mac", "", "the VM's MAC (default: the pod interface's original MAC, as in KubeVirt)")
	fs.StringVar(&c.resolvConf, "resolv-conf", netsetup.DefaultResolvConf, "resolv.conf with the DNS servers and search domains to hand out")
	fs.StringVar(&c.hostname, "hostname", "", "hostname to hand out (default: this host's name)")
	fs.StringVar(&c.stateDir, "state-dir", netsetup.DefaultStateDir, "directory for the saved network snapshot")
	fs.StringVar(&c.identity, "identity", "", "seed of the server identities (DHCPv6 DUID, service MAC); default: from the pod's MAC")
	fs.StringVar(&raMode, "ra-mode", "gateway", "router advertisements: gateway, flags-only or off")
	fs.BoolVar(&c.teardownOnExit, "teardown-on-exit", false, "restore the pod interface to its snapshot on exit")
	fs.BoolVar(&c.rateLimit, "rate-limit", true, "limit the DHCP requests answered per second (=false only for load tests such as perfdhcp)")
	registerTimers(fs, &c.timers)
	fs.TextVar(&c.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	if err := cliflag.Parse(fs, args, stdout, stderr); err != nil {
		return c, err
	}
	errs := []error{checkIfaceName("--pod-iface", c.podIface),
		checkSocketPath("status socket", filepath.Join(c.stateDir, status.SocketName)),
		checkOptionalFile("--resolv-conf", c.resolvConf)}
	if c.tap != "" {
		errs = append(errs, checkIfaceName("--tap", c.tap))
	}
	if c.hostname != "" {
		errs = append(errs, checkHostname("--hostname", c.hostname))
	}
	var err error
	if vmMAC != "" {
		c.vmMAC, err = parseEthernetMAC("--vm-mac", vmMAC)
		errs = append(errs, err)
	}
	c.raMode, err = ra.ParseMode(raMode)
	return c, invalid(append(errs, flagError("--ra-mode", err))...)
}

// runServe serves one VM in this network namespace without KubeVirt: take
// or reload the snapshot, build or adopt the plumbing, run DHCPv4, DHCPv6
// and RA until SIGTERM or SIGINT.
func runServe(args []string, stdout, stderr io.Writer) error {
	c, err := parseServeFlags(args, stdout, stderr)
	if err != nil {
		return err
	}
	// The pod interface must exist (as itself, or as the dummy of an
	// earlier run's plumbing) before the status socket and the snapshot
	// are written.
	if _, err := net.InterfaceByName(c.podIface); err != nil {
		return invalid(fmt.Errorf("--pod-iface %q: %w", c.podIface, err))
	}
	log := hooks.NewLogger(stderr, "dsbridge-serve", c.logLevel)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	priv, model, wait, err := startRuntime(ctx, "serve", c.stateDir, log)
	if err != nil {
		return err
	}
	defer wait()
	defer stop() // before wait: the status server stops with ctx
	spec, err := binding.Prepare(ctx, binding.Request{
		Name: c.podIface, PodIface: c.podIface, Tap: c.tap, VMMAC: c.vmMAC, Identity: c.identity,
		RAMode: c.raMode, Timers: c.timers, StateDir: c.stateDir, Privileges: priv, Log: log,
		Snapshot: netsetup.SnapshotOptions{ResolvConf: c.resolvConf, Hostname: c.hostname},
	})
	if err != nil {
		model.Error("", "prepare", err)
		return err
	}
	m := service.NewManager(ctx, log, service.Options{Status: model, NoRateLimit: !c.rateLimit})
	if err := m.Start(spec); err != nil {
		m.Stop()
		return err
	}
	<-ctx.Done()
	log.Info("stopping")
	m.Stop()
	if c.teardownOnExit {
		if err := netsetup.Teardown(spec.Snapshot, spec.Layout); err != nil {
			return fmt.Errorf("failed to restore %q: %w", c.podIface, err)
		}
		log.Info("restored the pod interface", "podIface", c.podIface)
	}
	return nil
}
