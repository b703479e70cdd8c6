package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	infopb "github.com/dsbridge/dsbridge/hooks/proto/info"
	"github.com/dsbridge/dsbridge/hooks/proto/v1alpha2"
	"github.com/dsbridge/dsbridge/hooks/proto/v1alpha3"
)

// Hook point names and callback versions (KubeVirt pkg/hooks/info).
const (
	OnDefineDomainHookPoint  = "OnDefineDomain"
	PreCloudInitIsoHookPoint = "PreCloudInitIso"
	ShutdownHookPoint        = "Shutdown"
	VersionV1alpha2          = "v1alpha2"
	VersionV1alpha3          = "v1alpha3"
)

// gracefulStopLimit bounds how long Serve waits for RPCs in flight before
// it cuts them, so the process exits within a second of Shutdown/SIGTERM.
const gracefulStopLimit = 500 * time.Millisecond

// Binder is told, after every successful OnDefineDomain edit, which
// interfaces the plugin serves and how the domain now has them (tap, VM
// MAC). It must be idempotent: OnDefineDomain runs 1-3 times per start and
// once on a migration target. An error fails the RPC, so virt-launcher
// fails the VMI sync and virt-handler retries.
type Binder interface {
	Bind(ctx context.Context, vmi VMIIdentity, ifaces []BoundInterface) error
}

// Config is what a Server needs.
type Config struct {
	// PluginName is the binding name (spec.configuration.network.binding
	// key, $NETWORK_BINDING_PLUGIN_NAME): interfaces with binding.name equal
	// to it are served. It also names the socket.
	PluginName string
	// Facts holds the pod interfaces as they were before KubeVirt moved them.
	Facts PodFacts
	// Binder, if not nil, is called after every OnDefineDomain edit.
	Binder Binder
	// Logger receives one line per RPC (debug for Info).
	Logger *slog.Logger
}

// Server serves KubeVirt's Info and Callbacks (v1alpha2, v1alpha3).
type Server struct {
	cfg          Config
	shutdown     chan struct{}
	shutdownOnce sync.Once
}

// NewServer validates cfg.
func NewServer(cfg Config) (*Server, error) {
	var errs []error
	if err := ValidatePluginName(cfg.PluginName); err != nil {
		errs = append(errs, err)
	}
	if cfg.Facts == nil {
		errs = append(errs, errors.New("pod facts missing"))
	}
	if cfg.Logger == nil {
		errs = append(errs, errors.New("logger missing"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("invalid hooks server config: %w", err)
	}
	return &Server{cfg: cfg, shutdown: make(chan struct{})}, nil
}

// maxPluginName keeps "<name>.sock" within a file name's 255 bytes
// (NAME_MAX).
const maxPluginName = 255 - len(".sock")

// ValidatePluginName accepts a name usable as the socket's file name in the
// hooks directory and as the name of a sub-directory there: not empty,
// "." or "..", no "/" or NUL, at most maxPluginName bytes.
func ValidatePluginName(name string) error {
	switch {
	case name == "":
		return errors.New("plugin name is empty")
	case name == "." || name == "..":
		return fmt.Errorf("plugin name %q names a directory, not a file", name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("plugin name %q holds a \"/\" or NUL: it must be a file name in the hooks directory", name)
	case len(name) > maxPluginName:
		return fmt.Errorf("plugin name of %d bytes is longer than %d", len(name), maxPluginName)
	}
	return nil
}

// Serve answers hook RPCs on l until ctx is cancelled or virt-launcher calls
// Shutdown, then stops (graceful for at most gracefulStopLimit) and returns
// nil. It closes l.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	gs := grpc.NewServer(grpc.UnaryInterceptor(s.recoverPanic), grpc.MaxRecvMsgSize(maxHookMessageBytes),
		grpc.ForceServerCodecV2(newHookCodec()))
	infopb.RegisterInfoServer(gs, infoServer{s: s})
	v1alpha2.RegisterCallbacksServer(gs, v1alpha2Server{s: s})
	v1alpha3.RegisterCallbacksServer(gs, v1alpha3Server{s: s})
	served := make(chan error, 1)
	go func() { served <- gs.Serve(l) }()
	select {
	case <-ctx.Done():
		s.cfg.Logger.Info("stopping hook server", "reason", context.Cause(ctx).Error())
	case <-s.shutdown:
		s.cfg.Logger.Info("stopping hook server", "reason", "Shutdown called")
	case err := <-served:
		return fmt.Errorf("failed to serve hooks on %q: %w", l.Addr(), err)
	}
	stopGracefully(gs, gracefulStopLimit)
	<-served
	return nil
}

func stopGracefully(gs *grpc.Server, limit time.Duration) {
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(limit):
		gs.Stop()
		<-stopped
	}
}

// recoverPanic turns a panic in a handler into an Internal error, so one bad
// request never kills the sidecar (a dead sidecar is never restarted).
func (s *Server) recoverPanic(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.cfg.Logger.Error("recovered panic in hook RPC", "method", info.FullMethod,
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			resp, err = nil, status.Errorf(codes.Internal, "panic in %s: %v", info.FullMethod, r)
		}
	}()
	return handler(ctx, req)
}

// info is the InfoResult: newest version first; not PreCloudInitIso, which
// only the first subscribed sidecar gets and which can crash virt-launcher
// without a cloud-init volume (KubeVirt pkg/hooks/manager.go PreCloudInitIso
// dereferences the cloud-init data it may not have).
func (s *Server) info() *infopb.InfoResult {
	return &infopb.InfoResult{
		Name:     s.cfg.PluginName,
		Versions: []string{VersionV1alpha3, VersionV1alpha2},
		HookPoints: []*infopb.HookPoint{
			{Name: OnDefineDomainHookPoint},
			{Name: ShutdownHookPoint},
		},
	}
}

// OnDefineDomain is the callback without its gRPC wrapping: decode the VMI,
// edit the domain, tell the Binder. Errors name what is wrong in the input.
func (s *Server) OnDefineDomain(ctx context.Context, domainXML, vmiJSON []byte) ([]byte, error) {
	start := time.Now()
	vmi, err := DecodeVMI(vmiJSON)
	if err != nil {
		return nil, err
	}
	id := vmi.Identity()
	log := s.cfg.Logger.With("namespace", id.Namespace, "name", id.Name, "uid", id.UID)
	out, bound, err := EditDomain(domainXML, vmi, s.cfg.PluginName, s.cfg.Facts)
	if err != nil {
		log.Error("OnDefineDomain failed", "error", err.Error())
		return nil, err
	}
	if s.cfg.Binder != nil {
		if err := s.cfg.Binder.Bind(ctx, id, bound); err != nil {
			log.Error("OnDefineDomain bind failed", "error", err.Error())
			return nil, fmt.Errorf("failed to bind interfaces of VMI %s/%s: %w", id.Namespace, id.Name, err)
		}
	}
	log.Info("OnDefineDomain", "interfaces", boundNames(bound), "changed", !bytes.Equal(out, domainXML),
		"duration", time.Since(start).String())
	return out, nil
}

func boundNames(bound []BoundInterface) []string {
	names := make([]string, len(bound))
	for i, b := range bound {
		names[i] = b.Name + "=" + b.Tap + "/" + b.MAC.String()
	}
	return names
}

// onDefineDomainRPC maps handler errors to gRPC codes.
func (s *Server) onDefineDomainRPC(ctx context.Context, domainXML, vmiJSON []byte) ([]byte, error) {
	out, err := s.OnDefineDomain(ctx, domainXML, vmiJSON)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return out, nil
}

func (s *Server) stop() {
	s.shutdownOnce.Do(func() { close(s.shutdown) })
}

type infoServer struct {
	infopb.UnimplementedInfoServer
	s *Server
}

func (i infoServer) Info(context.Context, *infopb.InfoParams) (*infopb.InfoResult, error) {
	i.s.cfg.Logger.Debug("Info called")
	return i.s.info(), nil
}

type v1alpha2Server struct {
	v1alpha2.UnimplementedCallbacksServer
	s *Server
}

func (v v1alpha2Server) OnDefineDomain(ctx context.Context, p *v1alpha2.OnDefineDomainParams) (*v1alpha2.OnDefineDomainResult, error) {
	out, err := v.s.onDefineDomainRPC(ctx, p.GetDomainXML(), p.GetVmi())
	if err != nil {
		return nil, err
	}
	return &v1alpha2.OnDefineDomainResult{DomainXML: out}, nil
}

// PreCloudInitIso is not subscribed to; called anyway, it changes nothing.
func (v v1alpha2Server) PreCloudInitIso(_ context.Context, p *v1alpha2.PreCloudInitIsoParams) (*v1alpha2.PreCloudInitIsoResult, error) {
	return &v1alpha2.PreCloudInitIsoResult{
		CloudInitNoCloudSource: p.GetCloudInitNoCloudSource(), CloudInitData: p.GetCloudInitData(),
	}, nil
}

type v1alpha3Server struct {
	v1alpha3.UnimplementedCallbacksServer
	s *Server
}

func (v v1alpha3Server) OnDefineDomain(ctx context.Context, p *v1alpha3.OnDefineDomainParams) (*v1alpha3.OnDefineDomainResult, error) {
	out, err := v.s.onDefineDomainRPC(ctx, p.GetDomainXML(), p.GetVmi())
	if err != nil {
		return nil, err
	}
	return &v1alpha3.OnDefineDomainResult{DomainXML: out}, nil
}

// PreCloudInitIso is not subscribed to; called anyway, it changes nothing.
func (v v1alpha3Server) PreCloudInitIso(_ context.Context, p *v1alpha3.PreCloudInitIsoParams) (*v1alpha3.PreCloudInitIsoResult, error) {
	return &v1alpha3.PreCloudInitIsoResult{
		CloudInitNoCloudSource: p.GetCloudInitNoCloudSource(), CloudInitData: p.GetCloudInitData(),
	}, nil
}

// Shutdown answers, then Serve stops the server.
func (v v1alpha3Server) Shutdown(context.Context, *v1alpha3.ShutdownParams) (*v1alpha3.ShutdownResult, error) {
	v.s.cfg.Logger.Info("Shutdown called")
	v.s.stop()
	return &v1alpha3.ShutdownResult{}, nil
}
