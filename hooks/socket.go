package hooks

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
)

// DefaultHooksDir is where virt-launcher looks for hook sockets
// (HookSocketsSharedDirectory in KubeVirt's pkg/hooks/hooks.go).
const DefaultHooksDir = "/var/run/kubevirt-hooks"

// socketMode lets the compute container (uid 107) connect whatever uid the
// sidecar runs as.
const socketMode = 0o666

// SocketPath is the hook socket of plugin in dir: <dir>/<plugin>.sock. The
// plugin name keeps it unique, since virt-launcher keys sockets by base
// name across sidecars (KubeVirt pkg/hooks/manager.go collectSideCarSockets).
func SocketPath(dir, plugin string) string {
	return filepath.Join(dir, plugin+".sock")
}

// Listen opens the hook socket of plugin in dir, replacing a stale one from
// an earlier run, and makes it connectable by any uid. Closing the listener
// removes the socket; nothing else is created in dir.
func Listen(dir, plugin string) (*net.UnixListener, error) {
	if err := ValidatePluginName(plugin); err != nil {
		return nil, err
	}
	path := SocketPath(dir, plugin)
	if err := removeStale(path); err != nil {
		return nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("failed to listen on hook socket %q: %w", path, err)
	}
	if err := os.Chmod(path, socketMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("failed to make hook socket %q connectable: %w", path, err)
	}
	return l, nil
}

// removeStale removes whatever non-directory is left at path.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to inspect hook socket %q: %w", path, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("hook socket %q is a directory", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("failed to remove stale hook socket %q: %w", path, err)
	}
	return nil
}
