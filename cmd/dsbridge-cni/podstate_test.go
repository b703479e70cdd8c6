package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/netsetup"
)

// podState is what a failed ADD must leave exactly as it found it, each
// item compared on its own: every link, address, route, qdisc and every
// sysctl under net/ipv4/conf, net/ipv6/conf and the two ADD sets.
type podState struct {
	Links   map[string]string // name -> type, index, MAC, MTU, state, master, alias, qlen
	Addrs   map[string]string // "link prefix" -> flags, scope, label, lifetimes
	Routes  []string          // table, type, destination, gateway, device, source, protocol, scope, metric, flags
	Qdiscs  []string          // link, type, handle, parent
	Sysctls map[string]string // path under /proc/sys -> value
}

// capturePod reads the pod's state, once no address is tentative (DAD of
// a link-local address that came back with its link takes about a second).
func capturePod(t *testing.T, ns *lab.NS) podState {
	t.Helper()
	var s podState
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var tentative bool
		err := ns.Do(func() error {
			var err error
			s, tentative, err = readPod()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if !tentative || time.Now().After(deadline) {
			return s
		}
	}
}

func readPod() (podState, bool, error) {
	s := podState{Links: map[string]string{}, Addrs: map[string]string{}, Sysctls: map[string]string{}}
	links, err := netsetup.RetryDump(netlink.LinkList)
	if err != nil {
		return s, false, err
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	tentative := false
	for _, l := range links {
		a := l.Attrs()
		s.Links[a.Name] = fmt.Sprintf("type=%s index=%d mac=%s mtu=%d up=%t master=%q alias=%q qlen=%d",
			l.Type(), a.Index, a.HardwareAddr, a.MTU, a.Flags&syscall.IFF_UP != 0, names[a.MasterIndex], a.Alias, a.TxQLen)
		addrs, err := netsetup.RetryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return s, false, err
		}
		for _, ad := range addrs {
			tentative = tentative || ad.Flags&unix.IFA_F_TENTATIVE != 0
			s.Addrs[a.Name+" "+ad.IPNet.String()] = fmt.Sprintf("flags=%#x scope=%d label=%q valid=%d preferred=%d",
				ad.Flags, ad.Scope, ad.Label, ad.ValidLft, ad.PreferedLft)
		}
	}
	routes, err := netsetup.RetryDump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return s, false, err
	}
	for _, r := range routes {
		s.Routes = append(s.Routes, fmt.Sprintf("table=%d type=%d dst=%v gw=%v dev=%s src=%v proto=%d scope=%d metric=%d flags=%#x",
			r.Table, r.Type, r.Dst, r.Gw, names[r.LinkIndex], r.Src, r.Protocol, r.Scope, r.Priority, r.Flags))
	}
	slices.Sort(s.Routes)
	qdiscs, err := netsetup.RetryDump(func() ([]netlink.Qdisc, error) { return netlink.QdiscList(nil) })
	if err != nil {
		return s, false, err
	}
	for _, q := range qdiscs {
		a := q.Attrs()
		s.Qdiscs = append(s.Qdiscs, fmt.Sprintf("%s %s handle=%#x parent=%#x", names[a.LinkIndex], q.Type(), a.Handle, a.Parent))
	}
	slices.Sort(s.Qdiscs)
	return s, tentative, readSysctls(s.Sysctls)
}

// readSysctls reads every sysctl of the calling thread's network namespace
// that ADD or plumbing could change.
func readSysctls(out map[string]string) error {
	for _, name := range []string{sysctlUnprivPortStart, sysctlArpIgnoreAll} {
		b, err := os.ReadFile(filepath.Join("/proc/sys", name))
		if err != nil {
			return err
		}
		out[name] = strings.TrimSpace(string(b))
	}
	for _, dir := range []string{"/proc/sys/net/ipv4/conf", "/proc/sys/net/ipv6/conf"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
				return nil // stable_secret and write-only entries
			}
			if err != nil {
				return err
			}
			out[strings.TrimPrefix(path, "/proc/sys/")] = strings.TrimSpace(string(b))
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// diffPod reports each difference between two pod states.
func diffPod(t *testing.T, what string, before, after podState) {
	t.Helper()
	for _, d := range []struct {
		name      string
		old, curr any
	}{
		{"links", before.Links, after.Links},
		{"addresses", before.Addrs, after.Addrs},
		{"routes", before.Routes, after.Routes},
		{"qdiscs", before.Qdiscs, after.Qdiscs},
		{"sysctls", before.Sysctls, after.Sysctls},
	} {
		if diff := cmp.Diff(d.old, d.curr); diff != "" {
			t.Errorf("%s %s (-before +after):\n%s", what, d.name, diff)
		}
	}
}
