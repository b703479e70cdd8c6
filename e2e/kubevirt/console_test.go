package kubevirt

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// console is a shell on the guest's serial port, reached through the unix
// socket QEMU serves for KubeVirt's serial console. Commands end with a
// marker carrying their exit status.
type console struct {
	t     *testing.T
	conn  net.Conn
	lines chan string
	seq   int
	mu    sync.Mutex
	log   strings.Builder // everything the guest printed, for failures
}

var markerRE = regexp.MustCompile(`__DSB_END_(\d+)_(\d+)__`)

// dialConsole connects to the guest's serial socket (retrying while QEMU
// starts) and waits until the guest's shell answers.
func dialConsole(t *testing.T, path string, timeout time.Duration) *console {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var conn net.Conn
	var err error
	for time.Now().Before(deadline) {
		if conn, err = net.Dial("unix", path); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("guest serial console %s: %v", path, err)
	}
	c := &console{t: t, conn: conn, lines: make(chan string, 4096)}
	go c.read()
	t.Cleanup(func() {
		conn.Close()
		if t.Failed() {
			c.mu.Lock()
			t.Logf("guest console:\n%s", c.log.String())
			c.mu.Unlock()
		}
	})
	for time.Now().Before(deadline) {
		if _, _, err := c.try("true", 3*time.Second); err == nil {
			return c
		}
	}
	t.Fatalf("the guest's shell did not answer on %s within %v", path, timeout)
	return nil
}

func (c *console) read() {
	r := bufio.NewReader(c.conn)
	for {
		line, err := r.ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if line != "" {
			c.mu.Lock()
			c.log.WriteString(line + "\n")
			c.mu.Unlock()
			select {
			case c.lines <- line:
			default:
			}
		}
		if err != nil {
			close(c.lines)
			return
		}
	}
}

// try runs cmd in the guest's shell and returns its output and exit status.
func (c *console) try(cmd string, timeout time.Duration) (string, int, error) {
	c.seq++
	seq := c.seq
	if _, err := fmt.Fprintf(c.conn, "%s; echo __DSB_END_%d_$?__\n", cmd, seq); err != nil {
		return "", 0, err
	}
	var out []string
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				return "", 0, fmt.Errorf("guest console closed")
			}
			m := markerRE.FindStringSubmatch(strings.TrimSpace(line))
			if m == nil {
				out = append(out, line)
				continue
			}
			if m[1] != fmt.Sprint(seq) {
				out = out[:0] // an earlier command's end, timed out before
				continue
			}
			var status int
			fmt.Sscan(m[2], &status)
			return strings.Join(out, "\n"), status, nil
		case <-deadline:
			return strings.Join(out, "\n"), 0, fmt.Errorf("no answer to %q within %v", cmd, timeout)
		}
	}
}

// run runs cmd and fails the test unless it exits 0.
func (c *console) run(cmd string) string {
	c.t.Helper()
	out, status, err := c.try(cmd, 60*time.Second)
	if err != nil || status != 0 {
		c.t.Fatalf("guest: %s: status %d, %v\n%s", cmd, status, err, out)
	}
	return out
}

// waitFor polls cmd in the guest until it exits 0.
func (c *console) waitFor(what, cmd string, timeout time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, status, err := c.try(cmd, 30*time.Second)
		if err == nil && status == 0 {
			return out
		}
		if time.Now().After(deadline) {
			diag, _, _ := c.try("ip addr; ip route; ip -6 route; cat /etc/resolv.conf /run/dhcp4.env /run/dhcp6.env /run/udhcpc.log /run/udhcpc6.log", 30*time.Second)
			c.t.Fatalf("guest: %s not within %v (%s: status %d, %v)\n%s\nguest state:\n%s", what, timeout, cmd, status, err, out, diag)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// env reads a NAME=value file the guest's DHCP scripts wrote.
func (c *console) env(path string) map[string]string {
	c.t.Helper()
	m := map[string]string{}
	for _, line := range strings.Split(c.run("cat "+path), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			m[k] = v
		}
	}
	return m
}
