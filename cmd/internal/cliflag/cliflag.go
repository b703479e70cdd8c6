// Package cliflag parses a command's flags the way both dsbridge binaries
// answer their users: -h or --help prints the usage on stdout and is not
// an error to the shell (exit 0, as Go's flag package with ExitOnError,
// ip and kubectl do); a flag mistake is explained on stderr with the usage.
package cliflag

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
)

// ErrUsage marks a command-line mistake already explained on stderr: exit
// status 2.
var ErrUsage = errors.New("usage error")

// Parse parses args with fs. -h or --help prints the usage on stdout and
// returns flag.ErrHelp; a flag error or a positional argument, which no
// command takes, is explained on stderr with the usage and returns
// ErrUsage. fs's output is stderr afterwards.
func Parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	var out bytes.Buffer
	fs.SetOutput(&out)
	defer fs.SetOutput(stderr)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		_, _ = stdout.Write(out.Bytes()) // nothing to do if the terminal is gone
		return err
	case err != nil:
		err = ErrUsage
	case fs.NArg() > 0:
		fmt.Fprintf(&out, "%s: unexpected arguments %q\n", fs.Name(), fs.Args())
		fs.Usage()
		err = ErrUsage
	}
	_, _ = stderr.Write(out.Bytes())
	return err
}
