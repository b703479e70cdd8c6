// Command dsbridge is the dsbridge binary: the KubeVirt hook sidecar, the
// standalone server, the DHCP debug mode and the inspection tools.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/dsbridge/dsbridge/cmd/internal/cliflag"
)

// Stamped at build time by -ldflags.
var (
	version = "dev"
	commit  = "unknown"
	date    = "unknown"
)

const usage = `usage: dsbridge <command> [flags]

commands:
  sidecar    run as a KubeVirt network binding plugin sidecar (image entrypoint)
  serve      serve a VM in this network namespace without KubeVirt (root)
  dhcp       serve DHCPv4/DHCPv6/RA on an existing interface, for debugging
  inspect    print the pod's network snapshot, the plan and what would be served
  teardown   restore the pod interface to its snapshot
  status     print a running sidecar's status
  version    print version, commit and build date
`

// dsbridge sets no Go memory limit (GOMEMLIMIT still sets one): the
// servers answer and drop packets without allocating, so a flooding guest
// does not grow the heap (12.6 MiB peak RSS under a 5,000/s DISCOVER flood,
// in a 64 MB container, KubeVirt renderresources.go sidecarResources),
// while a limit below the runtime's own footprint made every allocation
// burst collect (a 6 MiB one ran 3,909 collections in 10 s of a 1,000/s
// Solicit flood when handling allocated).
func main() {
	// File capabilities are granted as permitted only (an effective bit
	// would make exec fail wherever the pod's bounding set lacks them):
	// raise what was granted before anything else runs.
	if _, err := raiseNetCaps(); err != nil {
		fmt.Fprintf(os.Stderr, "dsbridge: cannot raise permitted network capabilities: %v\n", err)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	err := dispatch(args[0], args[1:], stdout, stderr)
	var bad badInput
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, cliflag.ErrUsage):
		return 2
	case errors.As(err, &bad):
		fmt.Fprintf(stderr, "dsbridge %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "dsbridge %s: %v\n", args[0], err)
		return 1
	}
}

func dispatch(cmd string, args []string, stdout, stderr io.Writer) error {
	switch cmd {
	case "sidecar":
		return runSidecar(args, stdout, stderr)
	case "serve":
		return runServe(args, stdout, stderr)
	case "dhcp":
		return runDHCP(args, stdout, stderr)
	case "inspect":
		return runInspect(args, stdout, stderr)
	case "teardown":
		return runTeardown(args, stdout, stderr)
	case "status":
		return runStatus(args, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "dsbridge %s commit %s built %s\n", version, commit, date)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "dsbridge: unknown command %q\n%s", cmd, usage)
		return cliflag.ErrUsage
	}
}
