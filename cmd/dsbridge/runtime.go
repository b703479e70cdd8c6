package main

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/status"
	"github.com/dsbridge/dsbridge/netsetup"
)

// startRuntime probes this process's privileges, creates the status model
// with the tier they allow, and serves it on <stateDir>/status.sock until
// ctx ends; wait blocks until the status server has stopped.
func startRuntime(ctx context.Context, mode, stateDir string, log *slog.Logger) (netsetup.Privileges, *status.Model, func(), error) {
	priv, err := netsetup.Probe()
	if err != nil {
		return priv, nil, nil, err
	}
	model := status.NewModel(status.Info{Version: version, Commit: commit, Mode: mode})
	model.SetTier(string(netsetup.TierFor(priv)))
	wait, err := startStatusServer(ctx, filepath.Join(stateDir, status.SocketName), model, log)
	if err != nil {
		return priv, nil, nil, err
	}
	return priv, model, wait, nil
}
