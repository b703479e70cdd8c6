package netsetup

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Capability bits (linux/capability.h).
const (
	capNetBindService = 10
	capNetAdmin       = 12
	capNetRaw         = 13
)

// Privileges is what this process may do in its network namespace.
type Privileges struct {
	NetAdmin       bool   `json:"netAdmin"`
	NetRaw         bool   `json:"netRaw"`
	NetBindService bool   `json:"netBindService"`
	CapEff         uint64 `json:"capEff"`
	// UnprivilegedPortStart is net.ipv4.ip_unprivileged_port_start in this
	// network namespace (it governs IPv6 binds too): ports below it need
	// NET_BIND_SERVICE. 1024 when it cannot be read.
	UnprivilegedPortStart int `json:"unprivilegedPortStart"`
}

// Probe reads the effective capabilities from /proc/self/status and the
// unprivileged port start of the caller's network namespace.
func Probe() (Privileges, error) {
	b, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		b, err = os.ReadFile("/proc/self/status")
	}
	if err != nil {
		return Privileges{}, fmt.Errorf("failed to read process status: %w", err)
	}
	capEff, err := parseCapEff(b)
	if err != nil {
		return Privileges{}, err
	}
	p := PrivilegesFromCaps(capEff)
	p.UnprivilegedPortStart = 1024
	if v, err := ReadSysctl(sysctlUnprivPortStart); err == nil {
		p.UnprivilegedPortStart = v
	}
	return p, nil
}

// PrivilegesFromCaps decodes an effective capability mask.
func PrivilegesFromCaps(capEff uint64) Privileges {
	has := func(bit uint) bool { return capEff&(1<<bit) != 0 }
	return Privileges{
		NetAdmin:       has(capNetAdmin),
		NetRaw:         has(capNetRaw),
		NetBindService: has(capNetBindService),
		CapEff:         capEff,
	}
}

// parseCapEff finds the "CapEff:" line of /proc/<pid>/status.
func parseCapEff(status []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		c, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("failed to parse CapEff %q: %w", v, err)
		}
		return c, nil
	}
	return 0, fmt.Errorf("no CapEff line in process status")
}

// CanBind reports whether a UDP socket may bind port.
func (p Privileges) CanBind(port int) bool {
	return p.NetBindService || port >= p.UnprivilegedPortStart
}
