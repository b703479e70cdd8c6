package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/ra"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// KubeVirt's managedTap layout for the pod network (KubeVirt
// pkg/network/setup/netpod/netpod.go managedTapSpec).
const (
	bridgeName = "k6t-eth0"
	uplinkName = "eth0-nic"
	bridgeMAC  = "02:00:00:d5:b0:01"
)

// labConfig is the responder's config from the lab pod's snapshot.
func labConfig(t *testing.T, l *lab.Lab, refresh time.Duration) Config {
	t.Helper()
	gwMAC, err := frame.ParseMAC(l.Spec.NodeMAC)
	if err != nil {
		t.Fatal(err)
	}
	var dns []netip.Addr
	for _, d := range l.Spec.DNS {
		dns = append(dns, netip.MustParseAddr(d))
	}
	return Config{RA: ra.Config{
		Mode:       ra.ModeGateway,
		GatewayLLA: netip.MustParseAddr(l.GatewayLLA()),
		GatewayMAC: gwMAC,
		Prefix:     netip.MustParsePrefix(l.Spec.IPv6),
		MTU:        l.Spec.MTU,
		DNS:        dns,
		Search:     l.Spec.Search,
		VMMAC:      l.VMMAC(),
	}, Refresh: refresh}
}

// TestResponderInPod follows the binding CNI's real timing: attach on the
// pristine pod, then KubeVirt's managedTap plumbing (rename, MAC change,
// enslave), then the guest boots; finally CNI DEL.
func TestResponderInPod(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 30 s of guest traffic")
	}
	l := lab.NewLab(t, lab.KubeOVN)
	cfg := labConfig(t, l, minRefresh)
	v, err := compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// CNI ADD, while the uplink is still eth0 with its addresses.
	if err := l.Pod.Do(func() error { return Attach(l.Spec.PodIface, cfg) }); errors.Is(err, os.ErrPermission) {
		t.Skipf("attaching a tc BPF program needs CAP_BPF and CAP_NET_ADMIN: %v", err)
	} else if err != nil {
		t.Fatalf("%+v", err)
	}

	// The pod's own RS carries the pod's MAC, which is the VM's: it still
	// reaches the gateway.
	rsCap := lab.StartCapture(t, l.Node, l.NodeIf, "icmp6 and ip6[40] == 133")
	_, _ = l.Pod.Exec("rdisc6", "-1", "-r", "1", "-w", "300", l.Spec.PodIface) // no router answers: exits 2
	if got := rsFrom(stopCapture(t, rsCap), l.Spec.MAC); got != 1 {
		t.Errorf("the pod's own RS reached the gateway %d times, want 1", got)
	}

	ctl := lab.StartCapture(t, l.Node, l.NodeIf, "icmp6 and (ip6[40] == 133 or ip6[40] == 134 or ip6[40] == 135)")
	plumbManagedTap(t, l)
	if !attachedWithoutCaps(t, l.Pod, uplinkName) {
		t.Fatalf("Attached(%q) = false after plumbing", uplinkName)
	}
	toVM := startPcap(t, l.Pod, l.Tap, "icmp6 and ip6[40] == 134")

	// The guest boots: its RS is answered in the kernel.
	l.Guest.Run(t, "ip", "addr", "add", "fd00:10:16::5/128", "dev", l.GuestIf, "nodad")
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "up")
	lab.WaitFor(t, 10*time.Second, "the guest's IPv6 default route", func() bool {
		return lab.DefaultVia(t, l.Guest, "-6") == l.GatewayLLA()
	})
	if e := routerExpiry(t, l); e < 1790 || e > 1800 {
		t.Errorf("default route expires in %d s, want the 1800 s router lifetime", e)
	}
	if got := strings.TrimSpace(l.Guest.Run(t, "sysctl", "-n", "net.ipv6.conf."+l.GuestIf+".mtu")); got != fmt.Sprint(l.Spec.MTU) {
		t.Errorf("guest IPv6 MTU %s, want %d", got, l.Spec.MTU)
	}
	ping(t, l, 10)

	// NUD of the router after a flush refreshes the route.
	time.Sleep(minRefresh + time.Second)
	before := routerExpiry(t, l)
	l.Guest.Run(t, "ip", "neigh", "flush", "dev", l.GuestIf)
	ping(t, l, 1)
	lab.WaitFor(t, 3*time.Second, "the NS for the router to refresh the default route", func() bool {
		return routerExpiry(t, l) >= before+3
	})

	upstream := stopCapture(t, ctl)
	for _, p := range upstream {
		if strings.Contains(p, "router advertisement") || strings.Contains(p, "router solicitation") && strings.Contains(p, l.Spec.MAC+" >") {
			t.Errorf("leaked to the gateway: %s", p)
		}
	}
	if n := nsFor(upstream, l.Spec.MAC, l.GatewayLLA()); n == 0 {
		t.Errorf("no NS from the VM for %s reached the gateway:\n%s", l.GatewayLLA(), strings.Join(upstream, "\n"))
	}
	if n := rsFrom(upstream, bridgeMAC); n == 0 {
		t.Errorf("the bridge's own RS did not reach the gateway:\n%s", strings.Join(upstream, "\n"))
	}
	ras := toVM.frames(t)
	if len(ras) < 2 {
		t.Fatalf("%d RAs went to the VM, want the answer to its RS and the refresh", len(ras))
	}
	for i, f := range ras {
		if diff := cmp.Diff(v.frame, f); diff != "" {
			t.Errorf("RA %d to the VM (-want +got):\n%s", i, diff)
		}
	}

	// CNI DEL.
	id := programID(t, l.Pod, uplinkName)
	if err := l.Pod.Do(func() error { return Detach(uplinkName) }); err != nil {
		t.Fatal(err)
	}
	if attachedWithoutCaps(t, l.Pod, uplinkName) {
		t.Errorf("Attached(%q) = true after Detach", uplinkName)
	}
	if out := l.Pod.Run(t, "tc", "qdisc", "show", "dev", uplinkName); strings.Contains(out, "clsact") {
		t.Errorf("clsact qdisc left on %s: %s", uplinkName, out)
	}
	waitFreed(t, id)
	// Without the program the guest's RS goes upstream again.
	rsCap = lab.StartCapture(t, l.Node, l.NodeIf, "icmp6 and ip6[40] == 133")
	_, _ = l.Guest.Exec("rdisc6", "-1", "-r", "1", "-w", "300", l.GuestIf)
	if got := rsFrom(stopCapture(t, rsCap), l.Spec.MAC); got != 1 {
		t.Errorf("after Detach the guest's RS reached the gateway %d times, want 1", got)
	}
}

// TestNamespaceDeletionFreesProgram: a pod deleted without CNI DEL leaves
// nothing behind.
func TestNamespaceDeletionFreesProgram(t *testing.T) {
	lab.RequireRoot(t)
	name := lab.RandName("dsbk")
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			_ = exec.Command("ip", "netns", "del", name).Run() // best effort after a failure
		}
	})
	ns := &lab.NS{Name: name}
	ns.Run(t, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1")
	if err := ns.Do(func() error { return Attach("up0", kubeOVN()) }); err != nil {
		t.Fatal(err)
	}
	id := programID(t, ns, "up0")
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v: %s", err, out)
	}
	deleted = true
	waitFreed(t, id)
}

// TestAttachIdempotent: a second Attach replaces the first programs, at
// both hooks; Detach of nothing is not an error; tc shows the filters
// before Detach and nothing after.
func TestAttachIdempotent(t *testing.T) {
	ns := lab.NewNS(t)
	ns.Run(t, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1")
	if err := ns.Do(func() error { return Detach("up0") }); err != nil {
		t.Fatalf("Detach before Attach: %v", err)
	}
	if err := ns.Do(func() error { return Detach("nothere") }); err != nil {
		t.Fatalf("Detach of a missing uplink: %v", err)
	}
	noRA := kubeOVN()
	noRA.RA.Mode = ra.ModeOff
	for _, tc := range []struct {
		cfg    Config
		egress string
		ra     bool
	}{{kubeOVN(), "dsbridge_ra", true}, {kubeOVN(), "dsbridge_ra", true}, {noRA, "dsbridge_guard", false}} {
		if err := ns.Do(func() error { return Attach("up0", tc.cfg) }); err != nil {
			t.Fatal(err)
		}
		for hook, name := range map[string]string{"egress": tc.egress, "ingress": "dsbridge_guard"} {
			out := ns.Run(t, "tc", "filter", "show", "dev", "up0", hook)
			if n, m := strings.Count(out, "handle 0xd5b"), strings.Count(out, name); n != 1 || m != 1 {
				t.Errorf("%s: %d filters, %d named %s, want 1 and 1:\n%s", hook, n, m, name, out)
			}
		}
		if got := []bool{attachedWithoutCaps(t, ns, "up0"), guardedWithoutCaps(t, ns, "up0")}; !cmp.Equal(got, []bool{tc.ra, true}) {
			t.Errorf("Attached, Guarded = %v, want [%t true]", got, tc.ra)
		}
	}
	err := ns.Do(func() error { return Attach("nothere", kubeOVN()) })
	if err == nil || !strings.Contains(err.Error(), `failed to find uplink "nothere"`) {
		t.Errorf("Attach to a missing uplink: %v", err)
	}
	if err := ns.Do(func() error { return Detach("up0") }); err != nil {
		t.Fatal(err)
	}
	for _, hook := range []string{"egress", "ingress"} {
		if out := ns.Run(t, "tc", "filter", "show", "dev", "up0", hook); out != "" {
			t.Errorf("%s filters after Detach:\n%s", hook, out)
		}
	}
	if out := ns.Run(t, "tc", "qdisc", "show", "dev", "up0"); strings.Contains(out, "clsact") {
		t.Errorf("clsact left after Detach: %s", out)
	}
	if got := []bool{attachedWithoutCaps(t, ns, "up0"), guardedWithoutCaps(t, ns, "up0")}; !cmp.Equal(got, []bool{false, false}) {
		t.Errorf("after Detach Attached, Guarded = %v, want [false false]", got)
	}
}

// plumbManagedTap does what virt-handler's managedTap does to the pod
// network: bridge k6t-eth0; the pod NIC renamed eth0-nic, its addresses
// removed, the bridge MAC copied to it, learning off, enslaved; a dummy
// eth0 with the pod's MAC and addresses; the tap enslaved.
func plumbManagedTap(t *testing.T, l *lab.Lab) {
	t.Helper()
	p, s := l.Pod, l.Spec
	for _, c := range [][]string{
		{"ip", "link", "add", bridgeName, "address", bridgeMAC, "type", "bridge"},
		{"sysctl", "-qw", "net.ipv6.conf." + bridgeName + ".accept_dad=0"},
		{"ip", "link", "set", s.PodIface, "down"},
		{"ip", "addr", "flush", "dev", s.PodIface},
		{"ip", "link", "set", s.PodIface, "name", uplinkName},
		{"ip", "link", "set", uplinkName, "address", bridgeMAC},
		{"ip", "link", "set", uplinkName, "master", bridgeName},
		{"bridge", "link", "set", "dev", uplinkName, "learning", "off"},
		{"ip", "link", "set", uplinkName, "up"},
		{"ip", "link", "add", s.PodIface, "address", s.MAC, "type", addrHolder(t)},
		{"ip", "addr", "add", s.IPv4, "dev", s.PodIface},
		{"ip", "addr", "add", s.IPv6, "dev", s.PodIface, "nodad"},
		{"ip", "link", "set", s.PodIface, "up"},
		{"ip", "link", "set", l.Tap, "master", bridgeName},
		{"ip", "link", "set", bridgeName, "up"},
	} {
		p.Run(t, c...)
	}
}

// addrHolder is the link type holding the pod's addresses: KubeVirt's
// dummy, or an ifb on a kernel without the dummy driver (as netsetup does).
func addrHolder(t *testing.T) string {
	t.Helper()
	ns := lab.NewNS(t)
	if _, err := ns.Exec("ip", "link", "add", "probe0", "type", "dummy"); err == nil {
		return "dummy"
	}
	return "ifb"
}

// stopCapture stops c after tcpdump's 1 s buffer timeout, so that frames
// sent just before are in the file.
func stopCapture(t *testing.T, c *lab.Capture) []string {
	t.Helper()
	time.Sleep(1200 * time.Millisecond)
	return c.Stop(t)
}

// attachedWithoutCaps calls Attached in ns on a thread holding no
// capability, as the sidecar runs. The thread is never reused.
func attachedWithoutCaps(t *testing.T, ns *lab.NS, uplink string) bool {
	t.Helper()
	return withoutCaps(t, ns, func() (bool, error) { return Attached(uplink) })
}

// guardedWithoutCaps calls Guarded as attachedWithoutCaps calls Attached.
func guardedWithoutCaps(t *testing.T, ns *lab.NS, uplink string) bool {
	t.Helper()
	return withoutCaps(t, ns, func() (bool, error) { return Guarded(uplink) })
}

// withoutCaps runs query in ns on a thread without capabilities.
func withoutCaps(t *testing.T, ns *lab.NS, query func() (bool, error)) bool {
	t.Helper()
	type result struct {
		ok  bool
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		target, err := netns.GetFromPath(ns.Path())
		if err != nil {
			res <- result{err: err}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			res <- result{err: err}
			return
		}
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var none [2]unix.CapUserData
		if err := unix.Capset(&hdr, &none[0]); err != nil {
			res <- result{err: fmt.Errorf("capset: %w", err)}
			return
		}
		ok, err := query()
		res <- result{ok, err}
	}()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.ok
}

// programID is the ID of the responder attached to uplink in ns.
func programID(t *testing.T, ns *lab.NS, uplink string) ebpf.ProgramID {
	t.Helper()
	var id int
	err := ns.Do(func() error {
		link, err := netlink.LinkByName(uplink)
		if err != nil {
			return err
		}
		fs, err := ourFilters(link, netlink.HANDLE_MIN_EGRESS)
		if err != nil {
			return err
		}
		if len(fs) != 1 {
			return fmt.Errorf("%d responders on %s, want 1", len(fs), uplink)
		}
		id = fs[0].Id
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ebpf.ProgramID(id)
}

// waitFreed waits until the kernel has freed program id.
func waitFreed(t *testing.T, id ebpf.ProgramID) {
	t.Helper()
	lab.WaitFor(t, 5*time.Second, fmt.Sprintf("program %d to be freed", id), func() bool {
		p, err := ebpf.NewProgramFromID(id)
		if err == nil {
			p.Close()
			return false
		}
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("program %d: %v", id, err)
		}
		return true
	})
}

// routerExpiry is the seconds left on the guest's IPv6 default route.
func routerExpiry(t *testing.T, l *lab.Lab) int {
	t.Helper()
	for _, r := range lab.Routes(t, l.Guest, "-6") {
		if r.Dst == "default" {
			return r.Expires
		}
	}
	t.Fatal("the guest has no IPv6 default route")
	return 0
}

// ping sends n pings a second apart to the address beyond the gateway; all
// must be answered.
func ping(t *testing.T, l *lab.Lab, n int) {
	t.Helper()
	out := l.Guest.Run(t, "ping", "-6", "-n", "-c", fmt.Sprint(n), "-i", "1", "-W", "2", lab.OffLink6)
	if want := fmt.Sprintf("%d packets transmitted, %d received", n, n); !strings.Contains(out, want) {
		t.Errorf("ping %s from the guest: want %q:\n%s", lab.OffLink6, want, out)
	}
}

// rsFrom counts the router solicitations from mac in tcpdump -e lines.
func rsFrom(pkts []string, mac string) int {
	n := 0
	for _, p := range pkts {
		if strings.Contains(p, "router solicitation") && strings.Contains(p, " "+mac+" >") {
			n++
		}
	}
	return n
}

// nsFor counts the neighbour solicitations from mac for target.
func nsFor(pkts []string, mac, target string) int {
	n := 0
	for _, p := range pkts {
		if strings.Contains(p, "neighbor solicitation") && strings.HasSuffix(p, "who has "+target) && strings.Contains(p, " "+mac+" >") {
			n++
		}
	}
	return n
}

// pcap is a tcpdump writing whole frames to a pcap file.
type pcap struct{ path string }

func startPcap(t *testing.T, ns *lab.NS, dev, filter string) *pcap {
	t.Helper()
	p := &pcap{path: filepath.Join(t.TempDir(), dev+".pcap")}
	ns.Start(t, "tcpdump", "-i", dev, "-n", "-U", "-s", "0", "-w", p.path, filter)
	lab.WaitFor(t, 5*time.Second, "tcpdump on "+dev, func() bool {
		fi, err := os.Stat(p.path)
		return err == nil && fi.Size() >= 24
	})
	time.Sleep(200 * time.Millisecond)
	return p
}

// frames reads the frames captured so far (pcap, Ethernet, host order).
func (p *pcap) frames(t *testing.T) [][]byte {
	t.Helper()
	b, err := os.ReadFile(p.path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 || binary.NativeEndian.Uint32(b) != 0xa1b2c3d4 || binary.NativeEndian.Uint32(b[20:]) != 1 {
		t.Fatalf("%s is not an Ethernet pcap file", p.path)
	}
	var out [][]byte
	for b = b[24:]; len(b) >= 16; {
		n := int(binary.NativeEndian.Uint32(b[8:]))
		if len(b) < 16+n {
			break // the record being written
		}
		out = append(out, b[16:16+n])
		b = b[16+n:]
	}
	return out
}
