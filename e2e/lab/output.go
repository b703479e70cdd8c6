package lab

import (
	"fmt"
	"os/exec"
)

// Output is what the client has printed so far, stdout and stderr
// interleaved (dhclient -v reports each exchange and the status codes it
// received there).
func (c *Client) Output() string { return Output(c.Cmd) }

// Output is what a process started with NS.Start has printed so far.
func Output(cmd *exec.Cmd) string {
	if s, ok := cmd.Stdout.(fmt.Stringer); ok {
		return s.String()
	}
	return ""
}
