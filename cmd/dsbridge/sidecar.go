package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/service"
	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/status"
	"github.com/dsbridge/dsbridge/cmd/internal/binding"
	"github.com/dsbridge/dsbridge/cmd/internal/cliflag"
	"github.com/dsbridge/dsbridge/hooks"
	"github.com/dsbridge/dsbridge/netsetup"
	"github.com/dsbridge/dsbridge/ra"
)

// pluginNameEnv is set by KubeVirt (v1.9+) on binding sidecars to the
// binding's name under spec.configuration.network.binding.
const pluginNameEnv = "NETWORK_BINDING_PLUGIN_NAME"

const defaultPluginName = "dsbridge"

// sidecarConfig is the validated command line of `dsbridge sidecar`.
type sidecarConfig struct {
	pluginName string
	hooksDir   string
	stateDir   string
	resolvConf string
	raMode     ra.Mode
	timers     binding.Timers
	logLevel   slog.Level
}

func parseSidecarFlags(args []string, stdout, stderr io.Writer) (sidecarConfig, error) {
	fs := newFlagSet("dsbridge sidecar", "[flags]")
	// Unset means the default name; set but empty is a mistake.
	defName, fromEnv := os.LookupEnv(pluginNameEnv)
	if !fromEnv {
		defName = defaultPluginName
	}
	cfg := sidecarConfig{}
	var raMode string
	fs.StringVar(&cfg.pluginName, "plugin-name", defName,
		"network binding plugin name: serve interfaces with this binding.name; names the socket (env "+pluginNameEnv+")")
	fs.StringVar(&cfg.hooksDir, "hooks-dir", hooks.DefaultHooksDir, "directory of the hook socket")
	fs.StringVar(&cfg.stateDir, "state-dir", "", "directory for saved network snapshots (default: <hooks-dir>/<plugin-name>, a sub-directory as KubeVirt requires)")
	fs.StringVar(&cfg.resolvConf, "resolv-conf", netsetup.DefaultResolvConf, "resolv.conf with the DNS servers and search domains to hand out")
	fs.StringVar(&raMode, "ra-mode", "gateway", "router advertisements: gateway, flags-only or off")
	registerTimers(fs, &cfg.timers)
	fs.TextVar(&cfg.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	if err := cliflag.Parse(fs, args, stdout, stderr); err != nil {
		return sidecarConfig{}, err
	}
	nameSource := "--plugin-name"
	if !flagGiven(fs, "plugin-name") && fromEnv {
		nameSource = pluginNameEnv
	}
	if err := hooks.ValidatePluginName(cfg.pluginName); err != nil {
		// Nothing else derived from a bad name is worth checking.
		return sidecarConfig{}, invalid(fmt.Errorf("%s: %w", nameSource, err))
	}
	if cfg.stateDir == "" {
		cfg.stateDir = filepath.Join(cfg.hooksDir, cfg.pluginName)
	}
	mode, err := ra.ParseMode(raMode)
	cfg.raMode = mode
	return cfg, invalid(flagError("--ra-mode", err),
		checkDir("--hooks-dir", cfg.hooksDir),
		checkSocketPath("hook socket", hooks.SocketPath(cfg.hooksDir, cfg.pluginName)),
		checkSocketPath("status socket", filepath.Join(cfg.stateDir, status.SocketName)),
		checkOptionalFile("--resolv-conf", cfg.resolvConf))
}

// runSidecar is the image entrypoint: record the pod interfaces, open the
// hook socket, serve virt-launcher until Shutdown or SIGTERM, exit 0.
func runSidecar(args []string, stdout, stderr io.Writer) error {
	cfg, err := parseSidecarFlags(args, stdout, stderr)
	if err != nil {
		return err
	}
	ident := newIdentityHandler(hooks.NewLogger(stderr, "dsbridge-sidecar", cfg.logLevel).Handler())
	log := slog.New(ident)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// The status socket lives in the plugin's own subdirectory: KubeVirt
	// takes every socket at the top of the hooks directory for a hook.
	priv, model, wait, err := startRuntime(ctx, "sidecar", cfg.stateDir, log)
	if err != nil {
		return err
	}
	defer wait()
	defer stop() // runs before wait: the status server ends with ctx
	mgr := service.NewManager(ctx, log, service.Options{Status: model})
	defer mgr.Stop()
	b := &binder{mgr: mgr, priv: priv, stateDir: cfg.stateDir, raMode: cfg.raMode, timers: cfg.timers, log: log,
		snap: netsetup.SnapshotOptions{ResolvConf: cfg.resolvConf}}
	// Before the socket opens: virt-launcher collects Info before KubeVirt
	// moves the pod interfaces, so this sees them as the CNI left them.
	facts, err := snapshotPodInterfaces(ctx, b)
	if err != nil {
		return err
	}
	srv, err := hooks.NewServer(hooks.Config{PluginName: cfg.pluginName, Facts: facts, Logger: log,
		Binder: &identifyingBinder{Binder: b, model: model, ident: ident}})
	if err != nil {
		return err
	}
	l, err := hooks.Listen(cfg.hooksDir, cfg.pluginName)
	if err != nil {
		return err
	}
	log.Info("serving KubeVirt hooks", "socket", hooks.SocketPath(cfg.hooksDir, cfg.pluginName),
		"plugin", cfg.pluginName, "version", version)
	if err := srv.Serve(ctx, l); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("hook server failed", "error", err.Error())
		return err
	}
	log.Info("sidecar stopped")
	return nil
}

// identifyingBinder records the VMI, once known, in the status and in every
// later log line, then binds its interfaces.
type identifyingBinder struct {
	hooks.Binder
	model *status.Model
	ident *identityHandler
}

// Bind implements hooks.Binder.
func (b *identifyingBinder) Bind(ctx context.Context, vmi hooks.VMIIdentity, ifaces []hooks.BoundInterface) error {
	b.model.SetVMI(status.VMI{Namespace: vmi.Namespace, Name: vmi.Name, UID: vmi.UID})
	b.ident.set(vmi)
	err := b.Binder.Bind(ctx, vmi, ifaces)
	if err != nil {
		b.model.Error("", "bind", err)
	}
	return err
}
