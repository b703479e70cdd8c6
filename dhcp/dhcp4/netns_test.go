package dhcp4

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
	"github.com/dsbridge/dsbridge/e2e/lab"
)

// testLab is a small lab topology: node ns (the gateway) <-veth->
// pod ns eth0, enslaved in br0 with tap0, the pod end of the guest's veth
// (standing in for the VM's tap); the guest ns holds vm0 with the VM MAC.
type testLab struct {
	node, pod, guest *lab.NS
	dir              string // client scripts, leases, captures
}

const labVMMAC = "0a:58:0a:10:00:05"

func newLab(t *testing.T) *testLab {
	t.Helper()
	l := &testLab{node: lab.NewNS(t), pod: lab.NewNS(t), guest: lab.NewNS(t), dir: t.TempDir()}
	lab.Veth(t, l.node, "up0", l.pod, "eth0")
	lab.Veth(t, l.guest, "vm0", l.pod, "tap0")
	l.guest.Run(t, "ip", "link", "set", "vm0", "address", labVMMAC)
	l.node.Run(t, "ip", "addr", "add", "10.16.0.1/16", "dev", "up0")
	l.pod.Run(t, "ip", "link", "add", "br0", "type", "bridge")
	for _, port := range []string{"eth0", "tap0"} {
		l.pod.Run(t, "ip", "link", "set", port, "master", "br0")
	}
	l.pod.Run(t, "ip", "link", "set", "br0", "up")
	l.pod.Run(t, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1")
	return l
}

// labConfig is what the lab's VM must get.
func labConfig() Config {
	cfg := kubeOVNConfig()
	cfg.VMMAC = frame.MustParseMAC(labVMMAC)
	cfg.DNS = []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("10.96.0.11")}
	return cfg
}

// startPacketServer runs the server in the pod ns on tap0.
func (l *testLab) startPacketServer(t *testing.T, cfg Config) {
	t.Helper()
	var conn *frame.PacketConn
	err := l.pod.Do(func() error {
		var err error
		conn, err = frame.Listen("tap0", frame.Filter{SrcMAC: cfg.VMMAC, Kind: frame.KindDHCPv4})
		return err
	})
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("packet socket needs CAP_NET_RAW: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	lab.RunUntilCleanup(t, NewPacketServer(newTestHandler(t, cfg), conn, discardLogger()).Run)
}

// startCapture records every frame on the node's end of the uplink.
func (l *testLab) startCapture(t *testing.T) (stop func() string) {
	t.Helper()
	file := filepath.Join(l.dir, "uplink.pcap")
	cmd := l.node.Start(t, "tcpdump", "-i", "up0", "-U", "-n", "-w", file)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if fi, err := os.Stat(file); err == nil && fi.Size() >= 24 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tcpdump did not start within 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return func() string {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait() // tcpdump exits non-zero on SIGINT in some versions
		return file
	}
}

// readCapture prints the frames of a capture file that match filter.
func readCapture(t *testing.T, ns *lab.NS, file, filter string) string {
	t.Helper()
	out := ns.Run(t, "sh", "-c", "tcpdump -r "+file+" -n -e "+filter+" 2>/dev/null")
	return strings.TrimSpace(out)
}

// recordScript is a client hook that records its environment per reason
// and touches nothing else.
func (l *testLab) recordScript(t *testing.T, name string) (script, outDir string) {
	t.Helper()
	outDir = filepath.Join(l.dir, name)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	script = filepath.Join(l.dir, name+".sh")
	body := "#!/bin/sh\nr=\"${reason:-$1}\"\nenv > \"" + outDir + "/$r.tmp\" && mv \"" + outDir + "/$r.tmp\" \"" + outDir + "/$r\"\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, outDir
}

// waitEnv waits for the hook to run with reason and returns its environment.
func waitEnv(t *testing.T, outDir, reason string, timeout time.Duration) map[string]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(filepath.Join(outDir, reason))
		if err == nil {
			env := map[string]string{}
			for _, line := range strings.Split(string(b), "\n") {
				if k, v, ok := strings.Cut(line, "="); ok {
					env[k] = v
				}
			}
			return env
		}
		if time.Now().After(deadline) {
			entries, _ := os.ReadDir(outDir)
			var seen []string
			for _, e := range entries {
				seen = append(seen, e.Name())
			}
			t.Fatalf("no %q from the client within %v (hook reasons seen: %v)", reason, timeout, seen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pick returns the env values of keys.
func pick(env map[string]string, keys map[string]string) map[string]string {
	got := map[string]string{}
	for k := range keys {
		got[k] = env[k]
	}
	return got
}

// dhclientConf declares option 121 before the request statement names it:
// dhclient parses the file top to bottom and rejects a whole request
// statement that names an undeclared option ("no option named
// rfc3442-classless-static-routes in space dhcp"), falling back to its
// default request list.
const dhclientConf = `option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers,
	domain-search, host-name, interface-mtu, rfc3442-classless-static-routes;
`

var dhclientWant = map[string]string{
	"new_ip_address":                      "10.16.0.5",
	"new_subnet_mask":                     "255.255.0.0",
	"new_routers":                         "10.16.0.1",
	"new_interface_mtu":                   "1400",
	"new_domain_name_servers":             "10.96.0.10 10.96.0.11",
	"new_domain_search":                   "default.svc.cluster.local. svc.cluster.local. cluster.local.",
	"new_domain_name":                     "cluster.local",
	"new_host_name":                       "vm1",
	"new_rfc3442_classless_static_routes": "32 169 254 75 10 0 0 0 0 0 10 16 0 1",
	"new_dhcp_server_identifier":          "169.254.75.10",
}

// dhclient runs ISC dhclient -4 in the guest until its hook sees reason and
// the lease file holds the lease, then stops it: a restarted client finds
// the lease there and starts in INIT-REBOOT (RFC 2131 §3.2).
//
// The hook running is not enough: dhclient runs it with BOUND before it
// appends the lease to the lease file (bind_lease in ISC DHCP 4.4's
// client/dhclient.c calls script_go, then write_client_lease), so a client
// stopped as soon as the hook's record appears may leave no lease behind,
// and its successor starts with DISCOVER. On a loaded machine that window
// is wide enough to hit.
func (l *testLab) dhclient(t *testing.T, name, leaseFile, reason string) map[string]string {
	t.Helper()
	script, out := l.recordScript(t, name)
	conf := lab.WriteFile(t, name+".conf", dhclientConf)
	cmd := l.guest.Start(t, "dhclient", "-4", "-d", "-v", "-cf", conf, "-sf", script, "-lf", leaseFile,
		"-pf", filepath.Join(l.dir, name+".pid"), "vm0")
	env := waitEnv(t, out, reason, 20*time.Second)
	waitLease(t, leaseFile, env["new_ip_address"], 10*time.Second)
	stop(t, cmd)
	if out := lab.Output(cmd); strings.Contains(out, ".conf line ") {
		t.Errorf("dhclient rejected part of its configuration:\n%s", out)
	}
	return env
}

// waitLease waits until leaseFile holds a lease for addr. On failure it
// prints the file, so a missing lease and a rejected one look different.
func waitLease(t *testing.T, leaseFile, addr string, timeout time.Duration) {
	t.Helper()
	want := "fixed-address " + addr + ";"
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(leaseFile)
		if err == nil && strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease file %s lacks %q after %v (read error %v):\n%s", leaseFile, want, timeout, err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends a client by PID and waits for it.
func stop(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }() // killed by a signal: the error says so
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

const dhcpcdConf = `option domain_name_servers, domain_name, domain_search, host_name
option classless_static_routes, interface_mtu
noarp
noipv4ll
nohook resolv.conf, hostname, ntp.conf, timesyncd.conf, wpa_supplicant
`

var dhcpcdWant = map[string]string{
	"new_ip_address":              "10.16.0.5",
	"new_subnet_cidr":             "16",
	"new_routers":                 "10.16.0.1",
	"new_interface_mtu":           "1400",
	"new_domain_name_servers":     "10.96.0.10 10.96.0.11",
	"new_domain_search":           "default.svc.cluster.local svc.cluster.local cluster.local",
	"new_host_name":               "vm1",
	"new_classless_static_routes": "169.254.75.10/32 0.0.0.0 0.0.0.0/0 10.16.0.1",
	"new_dhcp_server_identifier":  "169.254.75.10",
	"new_dhcp_lease_time":         "86313600",
	"new_dhcp_renewal_time":       "60",
	"new_dhcp_rebinding_time":     "120",
}

// dhcpcd runs dhcpcd -4 once (-1: exit after the lease) in the guest, in a
// private mount namespace whose tmpfs state directories keep it off the
// host's files.
func (l *testLab) dhcpcd(t *testing.T) map[string]string {
	t.Helper()
	script, out := l.recordScript(t, "dhcpcd")
	conf := lab.WriteFile(t, "dhcpcd.conf", dhcpcdConf)
	if _, err := l.guest.Exec("timeout", "30", "unshare", "-m", "--propagation", "private", "sh", "-c",
		"mkdir -p /run/dhcpcd && mount -t tmpfs none /run/dhcpcd && mount -t tmpfs none /var/lib/dhcpcd && "+
			"exec dhcpcd -4 -1 -B -t 20 -f "+conf+" -c "+script+" vm0"); err != nil {
		t.Fatal(err)
	}
	return waitEnv(t, out, "BOUND", time.Second)
}

var udhcpcWant = map[string]string{
	"ip":           "10.16.0.5",
	"subnet":       "255.255.0.0",
	"mask":         "16",
	"router":       "10.16.0.1",
	"mtu":          "1400",
	"dns":          "10.96.0.10 10.96.0.11",
	"search":       "default.svc.cluster.local svc.cluster.local cluster.local",
	"domain":       "cluster.local",
	"hostname":     "vm1",
	"staticroutes": "169.254.75.10/32 0.0.0.0 0.0.0.0/0 10.16.0.1",
	"serverid":     "169.254.75.10",
}

// udhcpc runs busybox udhcpc once on ifname in ns; it returns the hook's
// environment for "bound", or nil when the client got no lease.
func (l *testLab) udhcpc(t *testing.T, ns *lab.NS, name, ifname string) map[string]string {
	t.Helper()
	script, out := l.recordScript(t, name)
	_, err := ns.Exec("busybox", "udhcpc", "-i", ifname, "-f", "-q", "-n", "-t", "3", "-T", "1", "-A", "1", "-s", script)
	if err != nil {
		return nil
	}
	return waitEnv(t, out, "bound", time.Second)
}

// TestRealClients: dhclient, dhcpcd and udhcpc in the guest each get the
// pod's configuration from the packet server; a restarted dhclient's
// INIT-REBOOT is ACKed; a client on the uplink side gets nothing; and
// nothing the server sends shows up on the uplink.
func TestRealClients(t *testing.T) {
	if testing.Short() {
		t.Skip("real DHCP clients in namespaces take about 15 s")
	}
	l := newLab(t)
	stopCapture := l.startCapture(t)
	l.startPacketServer(t, labConfig())
	lease := filepath.Join(l.dir, "dhclient.leases")

	t.Run("dhclient", func(t *testing.T) {
		got := l.dhclient(t, "dhclient", lease, "BOUND")
		if diff := cmp.Diff(dhclientWant, pick(got, dhclientWant)); diff != "" {
			t.Errorf("dhclient environment (-want +got):\n%s", diff)
		}
	})
	t.Run("dhclient restarted: INIT-REBOOT ACKed", func(t *testing.T) {
		got := l.dhclient(t, "dhclient-reboot", lease, "REBOOT")
		if diff := cmp.Diff(dhclientWant, pick(got, dhclientWant)); diff != "" {
			t.Errorf("dhclient environment (-want +got):\n%s", diff)
		}
	})
	t.Run("dhcpcd", func(t *testing.T) {
		got := l.dhcpcd(t)
		if diff := cmp.Diff(dhcpcdWant, pick(got, dhcpcdWant)); diff != "" {
			t.Errorf("dhcpcd environment (-want +got):\n%s", diff)
		}
		l.guest.Run(t, "ip", "addr", "flush", "dev", "vm0")
	})
	t.Run("udhcpc", func(t *testing.T) {
		got := l.udhcpc(t, l.guest, "udhcpc", "vm0")
		if got == nil {
			t.Fatal("udhcpc got no lease")
		}
		if diff := cmp.Diff(udhcpcWant, pick(got, udhcpcWant)); diff != "" {
			t.Errorf("udhcpc environment (-want +got):\n%s", diff)
		}
	})
	t.Run("client with another MAC on the uplink gets no reply", func(t *testing.T) {
		if got := l.udhcpc(t, l.node, "stranger", "up0"); got != nil {
			t.Errorf("the stranger got a lease: %v", pick(got, udhcpcWant))
		}
	})
	t.Run("nothing from dsbridge on the uplink", func(t *testing.T) {
		file := stopCapture()
		all := readCapture(t, l.node, file, "")
		if !strings.Contains(all, labVMMAC) {
			t.Fatalf("the capture saw none of the guest's frames, so it proves nothing:\n%s", all)
		}
		filter := "'ether src " + serviceMAC.String() + " or udp src port 67'"
		if got := readCapture(t, l.node, file, filter); got != "" {
			t.Errorf("frames from dsbridge on the uplink:\n%s", got)
		}
	})
}

// TestUDPServerRealClient: the transport without NET_RAW, a UDP socket on
// port 67 filtered to br0, serves dhclient and udhcpc in the guest and
// ignores the stranger on the uplink.
func TestUDPServerRealClient(t *testing.T) {
	if testing.Short() {
		t.Skip("real DHCP clients in namespaces take seconds")
	}
	l := newLab(t)
	// As KubeVirt's bridge binding: the server id on the bridge, so replies
	// carry it as their source.
	l.pod.Run(t, "ip", "addr", "add", serverID.String()+"/32", "dev", "br0")
	var s *serve.Server
	err := l.pod.Do(func() error {
		var err error
		s, err = NewUDPServer(newTestHandler(t, labConfig()), "br0", false, discardLogger())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	lab.RunUntilCleanup(t, s.Run)
	t.Run("dhclient", func(t *testing.T) {
		got := l.dhclient(t, "dhclient", filepath.Join(l.dir, "udp.leases"), "BOUND")
		if diff := cmp.Diff(dhclientWant, pick(got, dhclientWant)); diff != "" {
			t.Errorf("dhclient environment (-want +got):\n%s", diff)
		}
	})
	t.Run("udhcpc", func(t *testing.T) {
		got := l.udhcpc(t, l.guest, "udhcpc", "vm0")
		if got == nil {
			t.Fatal("udhcpc got no lease")
		}
		if diff := cmp.Diff(udhcpcWant, pick(got, udhcpcWant)); diff != "" {
			t.Errorf("udhcpc environment (-want +got):\n%s", diff)
		}
	})
	t.Run("stranger on the uplink gets no reply", func(t *testing.T) {
		if got := l.udhcpc(t, l.node, "stranger", "up0"); got != nil {
			t.Errorf("the stranger got a lease: %v", pick(got, udhcpcWant))
		}
	})
}
