package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/service"
	"github.com/dsbridge/dsbridge/cmd/internal/binding"
	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/hooks"
	"github.com/dsbridge/dsbridge/netsetup"
	"github.com/dsbridge/dsbridge/ra"
)

type serveConfig struct {
	podIface, tap, vmMAC string
	resolvConf, hostname string
	stateDir, identity   string
	raMode               string
	teardownOnExit       bool
	rateLimit            bool
	timers               binding.Timers
	logLevel             slog.Level
}

func parseServeFlags(args []string, stderr io.Writer) (serveConfig, error) {
	fs := flag.NewFlagSet("dsbridge serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c serveConfig
	fs.StringVar(&c.podIface, "pod-iface", netsetup.DefaultPodIface, "the pod interface whose addresses the VM gets")
	fs.StringVar(&c.tap, "tap", "", "the VM's port: an existing tap (or a veth standing in for one) is used, else a tap is created (default: KubeVirt's name, tap0 for eth0)")
	fs.StringVar(&c.vmMAC, "vm-mac", "", "the VM's MAC (default: the pod interface's original MAC, as in KubeVirt)")
	fs.StringVar(&c.resolvConf, "resolv-conf", netsetup.DefaultResolvConf, "resolv.conf with the DNS servers and search domains to hand out")
	fs.StringVar(&c.hostname, "hostname", "", "hostname to hand out (default: this host's name)")
	fs.StringVar(&c.stateDir, "state-dir", netsetup.DefaultStateDir, "directory for the saved network snapshot")
	fs.StringVar(&c.identity, "identity", "", "seed of the server identities (DHCPv6 DUID, service MAC); default: from the pod's MAC")
	fs.StringVar(&c.raMode, "ra-mode", "gateway", "router advertisements: gateway, flags-only or off")
	fs.BoolVar(&c.teardownOnExit, "teardown-on-exit", false, "restore the pod interface to its snapshot on exit")
	fs.BoolVar(&c.rateLimit, "rate-limit", true, "limit the DHCP requests answered per second (=false only for load tests such as perfdhcp)")
	registerTimers(fs, &c.timers)
	fs.TextVar(&c.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return c, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dsbridge serve: unexpected arguments %q\n", fs.Args())
		return c, errUsage
	}
	return c, nil
}

// runServe serves one VM in this network namespace without KubeVirt: take
// or reload the snapshot, build or adopt the plumbing, run DHCPv4, DHCPv6
// and RA until SIGTERM or SIGINT.
func runServe(args []string, stderr io.Writer) error {
	c, err := parseServeFlags(args, stderr)
	if err != nil {
		return err
	}
	mode, err := ra.ParseMode(c.raMode)
	if err != nil {
		return err
	}
	var mac frame.MAC
	if c.vmMAC != "" {
		if mac, err = frame.ParseMAC(c.vmMAC); err != nil {
			return fmt.Errorf("--vm-mac: %w", err)
		}
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
		Name: c.podIface, PodIface: c.podIface, Tap: c.tap, VMMAC: mac, Identity: c.identity,
		RAMode: mode, Timers: c.timers, StateDir: c.stateDir, Privileges: priv, Log: log,
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
