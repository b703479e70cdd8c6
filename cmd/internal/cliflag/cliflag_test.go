package cliflag

import (
	"bytes"
	"errors"
	"flag"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		args           []string
		wantErr        error
		stdout, stderr string
	}{
		{[]string{"-n", "3"}, nil, "", ""},
		{[]string{"-h"}, flag.ErrHelp, "Usage of cmd:\n  -n int\n    \tcount\n", ""},
		{[]string{"--help"}, flag.ErrHelp, "Usage of cmd:\n  -n int\n    \tcount\n", ""},
		{[]string{"-x"}, ErrUsage, "", "flag provided but not defined: -x\nUsage of cmd:\n  -n int\n    \tcount\n"},
		{[]string{"-n", "3", "extra"}, ErrUsage, "", "cmd: unexpected arguments [\"extra\"]\nUsage of cmd:\n  -n int\n    \tcount\n"},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
		fs.Int("n", 0, "count")
		var stdout, stderr bytes.Buffer
		err := Parse(fs, tt.args, &stdout, &stderr)
		if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) || stdout.String() != tt.stdout || stderr.String() != tt.stderr {
			t.Errorf("Parse(%q) = %v, stdout %q, stderr %q; want %v, %q, %q", tt.args, err, stdout.String(), stderr.String(), tt.wantErr, tt.stdout, tt.stderr)
		}
		if fs.Output() != &stderr {
			t.Errorf("Parse(%q) left the flag set's output elsewhere than stderr", tt.args)
		}
	}
}
