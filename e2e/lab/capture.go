package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// LeakFilter matches what dsbridge must never send onto the uplink: DHCPv4
// replies, DHCPv6 replies and router advertisements.
const LeakFilter = "(udp src port 67) or (udp src port 547) or (icmp6 and ip6[40] == 134)"

// pcapHeaderLen is the size of a pcap file's global header.
const pcapHeaderLen = 24

// Capture is a tcpdump writing to a file in the test's temporary directory.
type Capture struct {
	path string
	cmd  *exec.Cmd
}

// StartCapture runs tcpdump on dev in ns with a BPF filter, and returns once
// it is capturing.
func StartCapture(t T, ns *NS, dev, filter string) *Capture {
	t.Helper()
	c := &Capture{path: filepath.Join(t.TempDir(), "capture.pcap")}
	c.cmd = ns.Start(t, "tcpdump", "-i", dev, "-n", "-U", "--immediate-mode", "-w", c.path, filter)
	// tcpdump writes the file's header only once its socket is bound and
	// its filter attached (pcap_setfilter precedes pcap_dump_open): from
	// then on every matching packet is queued for it.
	WaitFor(t, 5*time.Second, "tcpdump to start on "+dev, func() bool {
		fi, err := os.Stat(c.path)
		return err == nil && fi.Size() >= pcapHeaderLen
	})
	return c
}

// Stop ends tcpdump by PID and returns the captured packets, one decoded
// line each (link-level headers included).
func (c *Capture) Stop(t T) []string {
	t.Helper()
	stopProcess(c.cmd)
	out, err := exec.Command("tcpdump", "-r", c.path, "-n", "-e", "-v").CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v: %s", c.path, err, out)
	}
	var pkts []string
	for _, l := range strings.Split(string(out), "\n") {
		// Packet lines start with a timestamp; continuation lines with spaces.
		if len(l) > 0 && l[0] >= '0' && l[0] <= '9' {
			pkts = append(pkts, l)
		}
	}
	return pkts
}

// WaitListening waits until something in ns listens on UDP port (a server
// that bound its socket is ready for requests).
func WaitListening(t T, ns *NS, port int) {
	t.Helper()
	WaitFor(t, 10*time.Second, fmt.Sprintf("a UDP socket on port %d in %s", port, ns.Name), func() bool {
		out, err := ns.Exec("ss", "-Hlun", fmt.Sprintf("sport = :%d", port))
		return err == nil && strings.TrimSpace(out) != ""
	})
}
