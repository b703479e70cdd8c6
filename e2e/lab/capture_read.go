package lab

import (
	"os/exec"
	"strings"
)

// Read decodes the packets of a stopped capture again with tcpdump's
// flags (e.g. "-n", "-e": one line per packet, ports on the line, link
// addresses first), one line each.
func (c *Capture) Read(t T, flags ...string) []string {
	t.Helper()
	out, err := exec.Command("tcpdump", append([]string{"-r", c.path}, flags...)...).Output()
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v", c.path, err)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		return strings.Split(s, "\n")
	}
	return nil
}

// Path is the capture's pcap file.
func (c *Capture) Path() string { return c.path }
