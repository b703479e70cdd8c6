// Command mkimage builds dsbridge's sidecar and CNI installer images as
// reproducible OCI archives without a registry (make image runs it, then
// loads the archives into podman). It prints one line per image: reference,
// archive, image ID (the config digest) and manifest digest.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/dsbridge/dsbridge/cmd/internal/image"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	o := image.BuildOptions{Module: "."}
	var date string
	fs.StringVar(&o.OutDir, "out", "bin/image", "output `directory`")
	fs.StringVar(&o.Arch, "arch", "amd64", "target architecture (GOARCH)")
	fs.StringVar(&o.Stamp.Version, "version", "dev", "version stamp")
	fs.StringVar(&o.Stamp.Commit, "commit", "unknown", "commit stamp")
	fs.StringVar(&date, "date", "1970-01-01T00:00:00Z", "build date stamp and image creation time (the commit's time)")
	fs.StringVar(&o.SidecarRef, "sidecar-ref", "ghcr.io/dsbridge/dsbridge:dev", "sidecar image reference")
	fs.StringVar(&o.CNIRef, "cni-ref", "ghcr.io/dsbridge/dsbridge-cni:dev", "CNI installer image reference")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := image.ParseDate(date)
	if err != nil {
		return err
	}
	o.Stamp.Date = d
	if o.Arch != "amd64" && o.Arch != "arm64" {
		return fmt.Errorf("unsupported architecture %q (amd64 or arm64)", o.Arch)
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	built, err := image.Build(ctx, o)
	if err != nil {
		return err
	}
	for _, b := range built {
		fmt.Printf("%s %s id %s manifest %s\n", b.Spec.Ref, b.Archive, b.Image.ID(), b.Image.Manifest.Digest)
	}
	return nil
}
