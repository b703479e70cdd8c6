// Package hookstest is a fake virt-launcher: it finds a hook sidecar's
// socket and drives it the way virt-launcher's hooks manager does
// (KubeVirt pkg/hooks/manager.go: Collect, OnDefineDomain, Shutdown, and
// their timeouts), for tests of the hooks package and the e2e suite.
package hookstest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	infopb "github.com/dsbridge/dsbridge/hooks/proto/info"
	"github.com/dsbridge/dsbridge/hooks/proto/v1alpha2"
	"github.com/dsbridge/dsbridge/hooks/proto/v1alpha3"
)

// virt-launcher's limits (pkg/util/net/grpc, pkg/hooks/manager.go).
const (
	DialTimeout     = 3 * time.Second
	InfoTimeout     = time.Second
	CallbackTimeout = time.Minute
	PollInterval    = 300 * time.Millisecond
)

// versions virt-launcher understands, newest first.
var versions = []string{"v1alpha3", "v1alpha2"}

// Launcher is a connected fake virt-launcher.
type Launcher struct {
	Socket      string
	Info        *infopb.InfoResult
	Version     string        // the newest version both sides know
	InfoLatency time.Duration // dial excluded
}

// WaitForSocket polls until path exists and is a socket.
func WaitForSocket(ctx context.Context, path string) error {
	t := time.NewTicker(PollInterval / 10)
	defer t.Stop()
	for {
		fi, err := os.Stat(path)
		if err == nil && fi.Mode().Type() == fs.ModeSocket {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hook socket %q did not appear: %w", path, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// Dial connects to the socket and waits for the connection to be ready,
// like virt-launcher's blocking dial, within DialTimeout.
func Dial(ctx context.Context, socket string) (*grpc.ClientConn, error) {
	ctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("localhost"))
	if err != nil {
		return nil, fmt.Errorf("failed to dial hook socket %q: %w", socket, err)
	}
	conn.Connect()
	for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
		if s == connectivity.TransientFailure {
			conn.Close()
			return nil, fmt.Errorf("failed to connect to hook socket %q: %w", socket, errNotReady)
		}
		if !conn.WaitForStateChange(ctx, s) {
			conn.Close()
			return nil, fmt.Errorf("failed to connect to hook socket %q: %w", socket, ctx.Err())
		}
	}
	return conn, nil
}

// errNotReady: nothing accepts on the socket (yet), e.g. a stale socket.
var errNotReady = errors.New("hook socket not accepting")

// dialReady retries Dial every PollInterval until it succeeds or ctx ends,
// as virt-launcher retries a sidecar that is "not ready".
func dialReady(ctx context.Context, socket string) (*grpc.ClientConn, error) {
	for {
		conn, err := Dial(ctx, socket)
		if err == nil || !errors.Is(err, errNotReady) {
			return conn, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("hook socket %q never accepted: %w", socket, context.Cause(ctx))
		case <-time.After(PollInterval):
		}
	}
}

// Connect waits for the socket, dials (retrying while nothing accepts, as
// virt-launcher does for a sidecar that is not ready), calls Info with
// virt-launcher's 1 s deadline and picks the newest common version.
func Connect(ctx context.Context, socket string) (*Launcher, error) {
	if err := WaitForSocket(ctx, socket); err != nil {
		return nil, err
	}
	conn, err := dialReady(ctx, socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	infoCtx, cancel := context.WithTimeout(ctx, InfoTimeout)
	defer cancel()
	start := time.Now()
	info, err := infopb.NewInfoClient(conn).Info(infoCtx, &infopb.InfoParams{})
	if err != nil {
		return nil, fmt.Errorf("failed to call Info on %q: %w", socket, err)
	}
	l := &Launcher{Socket: socket, Info: info, InfoLatency: time.Since(start)}
	for _, v := range versions {
		if slices.Contains(info.GetVersions(), v) {
			l.Version = v
			break
		}
	}
	if l.Version == "" {
		return nil, fmt.Errorf("hook %q offers no known version: %v", socket, info.GetVersions())
	}
	return l, nil
}

// Subscribed reports whether the sidecar listed hookPoint in Info.
func (l *Launcher) Subscribed(hookPoint string) bool {
	return slices.ContainsFunc(l.Info.GetHookPoints(), func(h *infopb.HookPoint) bool {
		return h.GetName() == hookPoint
	})
}

// OnDefineDomain calls the callback over a fresh connection, as
// virt-launcher does, and returns the domain XML the sidecar answered.
func (l *Launcher) OnDefineDomain(ctx context.Context, domainXML, vmiJSON []byte) ([]byte, error) {
	conn, err := Dial(ctx, l.Socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, CallbackTimeout)
	defer cancel()
	switch l.Version {
	case "v1alpha3":
		res, err := v1alpha3.NewCallbacksClient(conn).OnDefineDomain(ctx,
			&v1alpha3.OnDefineDomainParams{DomainXML: domainXML, Vmi: vmiJSON})
		return res.GetDomainXML(), err
	default:
		res, err := v1alpha2.NewCallbacksClient(conn).OnDefineDomain(ctx,
			&v1alpha2.OnDefineDomainParams{DomainXML: domainXML, Vmi: vmiJSON})
		return res.GetDomainXML(), err
	}
}

// Shutdown calls the v1alpha3 Shutdown callback.
func (l *Launcher) Shutdown(ctx context.Context) error {
	if l.Version != "v1alpha3" {
		return errors.New("shutdown needs v1alpha3, hook offers " + l.Version)
	}
	conn, err := Dial(ctx, l.Socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, CallbackTimeout)
	defer cancel()
	_, err = v1alpha3.NewCallbacksClient(conn).Shutdown(ctx, &v1alpha3.ShutdownParams{})
	return err
}
