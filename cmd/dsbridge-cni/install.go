package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/dsbridge/dsbridge/cmd/internal/cliflag"
)

// Defaults of "dsbridge-cni install": the DaemonSet mounts the node's
// /opt/cni/bin at /host/opt/cni/bin.
const (
	defaultInstallDir  = "/host/opt/cni/bin"
	defaultInstallName = "dsbridge-cni"
)

// runInstall copies this executable into the CNI bin directory atomically
// (a runtime never sees a half-written plugin) and, with -wait, blocks until
// SIGTERM so a DaemonSet pod stays running.
func runInstall(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dsbridge-cni install", flag.ContinueOnError)
	dir := fs.String("dest", defaultInstallDir, "CNI bin `directory` to install into")
	name := fs.String("name", defaultInstallName, "file `name` of the plugin (the NAD's \"type\")")
	wait := fs.Bool("wait", false, "after installing, wait for SIGTERM")
	if err := cliflag.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("failed to find this executable: %w", err)
	}
	dst := filepath.Join(*dir, *name)
	if err := installFile(self, dst); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "installed %s (%s)\n", dst, about())
	if *wait {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		<-ctx.Done()
	}
	return nil
}

// installFile copies src to dst through a temporary file in dst's
// directory, mode 0755, synced, then renamed over dst.
func installFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("failed to open %q: %w", src, err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+"-*")
	if err != nil {
		return fmt.Errorf("failed to install %q: %w", dst, err)
	}
	defer os.Remove(tmp.Name()) // ENOENT after a successful rename
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return fmt.Errorf("failed to install %q: %w", dst, err)
	}
	for _, step := range []func() error{func() error { return tmp.Chmod(0o755) }, tmp.Sync, tmp.Close} {
		if err := step(); err != nil {
			return fmt.Errorf("failed to install %q: %w", dst, err)
		}
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("failed to install %q: %w", dst, err)
	}
	return nil
}
