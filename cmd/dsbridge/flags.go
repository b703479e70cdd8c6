package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"unicode"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// badInput is a flag, argument or environment value that failed
// validation, before the command changed anything: exit status 2, with a
// message naming the input.
type badInput struct{ err error }

func (e badInput) Error() string { return e.err.Error() }
func (e badInput) Unwrap() error { return e.err }

// invalid joins the validation errors of one command line into a badInput;
// nil when there are none.
func invalid(errs ...error) error {
	if err := errors.Join(errs...); err != nil {
		return badInput{err}
	}
	return nil
}

// newFlagSet returns a flag set whose usage starts with synopsis.
func newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// flagGiven reports whether name was set on the command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// flagError names the flag in err; nil stays nil.
func flagError(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}

// parseEthernetMAC parses a 48-bit MAC.
func parseEthernetMAC(flagName, s string) (frame.MAC, error) {
	mac, err := frame.ParseMAC(s)
	if err != nil {
		return frame.MAC{}, fmt.Errorf("%s %q is not an Ethernet MAC", flagName, s)
	}
	return mac, nil
}

// maxSocketPath is the longest path a unix socket can be bound at:
// sun_path holds 108 bytes, the terminating NUL included (unix(7)).
const maxSocketPath = 107

func checkSocketPath(what, path string) error {
	if len(path) > maxSocketPath {
		return fmt.Errorf("%s %q is %d bytes long; a unix socket path has at most %d (unix(7))", what, path, len(path), maxSocketPath)
	}
	return nil
}

// maxIfaceName is IFNAMSIZ (16) less the terminating NUL.
const maxIfaceName = 15

// checkIfaceName applies the kernel's rule for interface names
// (net/core/dev.c dev_valid_name): 1-15 bytes, not "." or "..", no "/",
// ":" or white space.
func checkIfaceName(flagName, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s is empty", flagName)
	case len(name) > maxIfaceName:
		return fmt.Errorf("%s %q is longer than %d bytes", flagName, name, maxIfaceName)
	case name == "." || name == "..":
		return fmt.Errorf("%s %q is not an interface name", flagName, name)
	case strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r == ':' || r == 0 || unicode.IsSpace(r) }):
		return fmt.Errorf("%s %q holds a \"/\", \":\", NUL or white space", flagName, name)
	}
	return nil
}

// checkHostname applies RFC 1123 section 2.1 (RFC 952 relaxed): dot-separated
// labels of letters, digits and hyphens, 1-63 bytes, no hyphen first or
// last, 253 bytes in all. The DHCPv4 host name option carries it (RFC 2132
// section 3.14).
func checkHostname(flagName, name string) error {
	bad := len(name) == 0 || len(name) > 253
	for label := range strings.SplitSeq(name, ".") {
		bad = bad || len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' ||
			strings.ContainsFunc(label, func(r rune) bool {
				return !(r == '-' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'))
			})
	}
	if bad {
		return fmt.Errorf("%s %q is not a host name (RFC 1123: labels of letters, digits and hyphens)", flagName, name)
	}
	return nil
}

// checkDir reports a path that is not an existing directory.
func checkDir(flagName, path string) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return fmt.Errorf("%s %q: %w", flagName, path, err)
	case !fi.IsDir():
		return fmt.Errorf("%s %q is not a directory", flagName, path)
	}
	return nil
}

// checkOptionalFile reports a path that exists but is not a readable
// regular file (a missing one is allowed, as for resolv.conf).
func checkOptionalFile(flagName, path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s %q: %w", flagName, path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s %q: %w", flagName, path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s %q is not a regular file", flagName, path)
	}
	return nil
}
