package netsetup

import (
	"bufio"
	"bytes"
	"net/netip"
	"strings"
)

// DefaultResolvConf is where the pod's resolver configuration lives.
const DefaultResolvConf = "/etc/resolv.conf"

// ParseResolvConf returns the nameservers and the search list of a
// resolv.conf(5) file. Per resolv.conf(5) the last "search" or "domain"
// line wins; "domain" sets a one-element list. Comments (# or ;), unknown
// keywords and unparsable addresses are skipped. Duplicates are dropped, order
// is kept.
func ParseResolvConf(b []byte) (dns []netip.Addr, search []string) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(stripComment(sc.Text()))
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(fields[1]); err == nil && !containsAddr(dns, a) {
				dns = append(dns, a)
			}
		case "search":
			search = uniqueStrings(fields[1:])
		case "domain":
			search = []string{fields[1]}
		}
	}
	return dns, search
}

func stripComment(line string) string {
	if i := strings.IndexAny(line, "#;"); i >= 0 {
		return line[:i]
	}
	return line
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

func uniqueStrings(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		dup := false
		for _, o := range out {
			dup = dup || o == s
		}
		if !dup {
			out = append(out, s)
		}
	}
	return out
}
