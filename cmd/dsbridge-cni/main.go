// Command dsbridge-cni is dsbridge's binding CNI plugin. KubeVirt adds it to
// a VM pod as an extra Multus network-selection element (the binding's
// networkAttachmentDefinition) with cni-arg logicNetworkName. In the pod's
// network namespace it lowers net.ipv4.ip_unprivileged_port_start to 0 (so
// the uid-107 sidecar can bind UDP 67 and 547) and sets
// net.ipv4.conf.all.arp_ignore to 1; with "plumbing": true it also builds
// the managedTap layout for KubeVirt older than 1.4. DEL undoes only what
// ADD changed.
//
// Run as "dsbridge-cni install" it copies itself into a CNI bin directory
// (the installer DaemonSet).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	cniversion "github.com/containernetworking/cni/pkg/version"

	"github.com/dsbridge/dsbridge/cmd/internal/cliflag"
)

// Stamped at build time by -ldflags.
var (
	version = "dev"
	commit  = "unknown"
	date    = "unknown"
)

// supportedVersions: CNI spec 1.0.0 (ADD, DEL, CHECK, VERSION) and 1.1.0
// (adds GC and STATUS).
var supportedVersions = cniversion.PluginSupports("1.0.0", "1.1.0")

func main() {
	if len(os.Args) > 1 && os.Getenv("CNI_COMMAND") == "" {
		os.Exit(runTool(os.Args[1:], os.Stdout, os.Stderr))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p := &plugin{stdout: os.Stdout, log: log}
	skel.PluginMainFuncs(p.funcs(), supportedVersions, about())
}

func about() string {
	return fmt.Sprintf("dsbridge-cni %s commit %s built %s", version, commit, date)
}

// toolUsage is the usage of the commands run without CNI_COMMAND.
const toolUsage = `usage: dsbridge-cni install [-dest dir] [-name name] [-wait]
       dsbridge-cni version
(as a CNI plugin it is run with CNI_COMMAND set)
`

// runTool runs the non-CNI commands: install, version and help (-h,
// --help: the usage on stdout, exit 0, as Go's flag package does).
func runTool(args []string, stdout, stderr io.Writer) int {
	switch args[0] {
	case "install":
		err := runInstall(args[1:], stdout, stderr)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, cliflag.ErrUsage):
			return 2
		}
		fmt.Fprintf(stderr, "dsbridge-cni install: %v\n", err)
		return 1
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, about())
		fmt.Fprintf(stdout, "CNI protocol versions supported: %s\n", strings.Join(supportedVersions.SupportedVersions(), ", "))
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, toolUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "dsbridge-cni: unknown command %q\n%s", args[0], toolUsage)
		return 2
	}
}
