package netsetup

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procSys is where sysctls live. Files under net/ belong to the network
// namespace of the thread that opens them, so every read and write here
// happens on the caller's (locked) thread.
const procSys = "/proc/sys"

// Sysctls this package reads or writes, relative to procSys.
const (
	sysctlArpIgnoreAll     = "net/ipv4/conf/all/arp_ignore"
	sysctlUnprivPortStart  = "net/ipv4/ip_unprivileged_port_start"
	sysctlIPv6ConfTemplate = "net/ipv6/conf/%s/%s"
)

// ReadSysctl reads an integer sysctl by its path under /proc/sys (e.g.
// "net/ipv4/ip_unprivileged_port_start") in the caller's network namespace.
func ReadSysctl(name string) (int, error) {
	b, err := os.ReadFile(filepath.Join(procSys, name))
	if err != nil {
		return 0, fmt.Errorf("failed to read sysctl %q: %w", name, err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("failed to parse sysctl %q: %w", name, err)
	}
	return v, nil
}

// WriteSysctl writes an integer sysctl by its path under /proc/sys.
func WriteSysctl(name string, v int) error {
	if err := os.WriteFile(filepath.Join(procSys, name), []byte(strconv.Itoa(v)), 0o644); err != nil {
		return fmt.Errorf("failed to write sysctl %q: %w", name, err)
	}
	return nil
}

// ipv6Conf names net.ipv6.conf.<link>.<key>.
func ipv6Conf(link, key string) string {
	return fmt.Sprintf(sysctlIPv6ConfTemplate, link, key)
}
