package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/status"
	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/status/statustest"
	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/hooks/hookstest"
	"github.com/dsbridge/dsbridge/netsetup"
)

func TestParseDHCPFlags(t *testing.T) {
	base := []string{"--iface", "tap0", "--vm-mac", "0a:58:0a:10:00:05"}
	v4 := slices.Concat(base, []string{"--ipv4", "10.16.0.5/16"})
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		wantErr string // the whole error; "" for success
	}{
		{"dual stack", append(base, "--ipv4", "10.16.0.5/16", "--ipv6", "fd00:10:16::5/112",
			"--gateway6", "fd00:10:16::1", "--gateway6-mac", "0a:58:0a:10:00:01"), ""},
		{"no iface", []string{"--vm-mac", "0a:58:0a:10:00:05", "--ipv4", "10.16.0.5/16"}, "--iface is required"},
		{"bad iface", []string{"--iface", "a/b", "--vm-mac", "0a:58:0a:10:00:05", "--ipv4", "10.16.0.5/16"},
			`--iface "a/b" holds a "/", ":", NUL or white space`},
		{"no mac", []string{"--iface", "tap0", "--ipv4", "10.16.0.5/16"}, "--vm-mac is required without --snapshot"},
		{"no address", base, "give --ipv4, --ipv6 or both (or --snapshot)"},
		{"bad ipv4", append(base, "--ipv4", "fd00::1/64"), `--ipv4 "fd00::1/64" is not an IPv4 address/prefix`},
		{"bad service", slices.Concat(v4, []string{"--services", "dhcpv4,tftp"}), `--services: unknown service "tftp" (want dhcpv4,dhcpv6,ra)`},
		{"bad dns", slices.Concat(v4, []string{"--dns", "10.96.0.10,nope"}), `--dns "nope" is not an IP address`},
		{"bad ra mode", slices.Concat(v4, []string{"--ra-mode", "loud"}), `--ra-mode: unknown router advertisement mode "loud" (want gateway, flags-only or off)`},
		{"index over 99", slices.Concat(v4, []string{"--index", "100"}), "--index 100 is outside 0-99"},
		{"mtu under 68", slices.Concat(v4, []string{"--mtu", "67"}), "--mtu 67 is outside 68-65535 (RFC 2132 section 5.1)"},
		{"bad hostname", slices.Concat(v4, []string{"--hostname", "vm_1"}), `--hostname "vm_1" is not a host name (RFC 1123: labels of letters, digits and hyphens)`},
		{"status socket too long", slices.Concat(v4, []string{"--status-socket", "/tmp/" + strings.Repeat("s", 103)}),
			`--status-socket "/tmp/` + strings.Repeat("s", 103) + `" is 108 bytes long; a unix socket path has at most 107 (unix(7))`},
		// The snapshot's error alone: no "--vm-mac is required" after it.
		{"missing snapshot", []string{"--iface", "tap0", "--snapshot", "/nonexistent/snap.json"},
			`failed to read snapshot "/nonexistent/snap.json": open /nonexistent/snap.json: no such file or directory`},
		{"bad snapshot", []string{"--iface", "tap0", "--snapshot", bad},
			`failed to decode snapshot "` + bad + `": unexpected end of JSON input`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			_, err := parseDHCPFlags(tt.args, &stdout, &stderr)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("error %v: %s", err, stderr.String())
				}
				return
			}
			var bad badInput
			if !errors.As(err, &bad) || err.Error() != tt.wantErr {
				t.Errorf("error %v; want a bad input %q", err, tt.wantErr)
			}
		})
	}
}

// The debug plan: selected services run on the packet transport, the
// others say why not; a global gateway's link-local address comes from its
// MAC.
func TestDebugSpec(t *testing.T) {
	var stderr bytes.Buffer
	c, err := parseDHCPFlags([]string{"--iface", "tap0", "--vm-mac", "0a:58:0a:10:00:05", "--ipv4", "10.16.0.5/16",
		"--ipv6", "fd00:10:16::5/112", "--gateway6", "fd00:10:16::1", "--services", "dhcpv4,ra"}, &stderr, &stderr)
	if err != nil {
		t.Fatal(stderr.String())
	}
	root := netsetup.Privileges{NetAdmin: true, NetRaw: true, NetBindService: true}
	s := c.debugSpec(root)
	want := []netsetup.ServicePlan{
		{Service: "plumbing", Reason: "the dhcp debug mode builds nothing: it serves on --iface as it is"},
		{Service: "dhcpv4", On: true, Transport: "packet"},
		{Service: "dhcpv6", Reason: "not selected by --services"},
		{Service: "ra", Reason: "router advertisements need --gateway6 and --gateway6-mac"},
	}
	if diff := cmp.Diff(want, s.Plan.Services); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	c, err = parseDHCPFlags([]string{"--iface", "tap0", "--vm-mac", "0a:58:0a:10:00:05", "--ipv6", "fd00:10:16::5/112",
		"--gateway6", "fd00:10:16::1", "--gateway6-mac", "0a:58:0a:10:00:01"}, &stderr, &stderr)
	if err != nil {
		t.Fatal(stderr.String())
	}
	if got := c.debugSpec(root).Snapshot.Gateway6.LinkLocal.String(); got != "fe80::858:aff:fe10:1" {
		t.Errorf("gateway link-local %s, want fe80::858:aff:fe10:1", got)
	}
	// Without NET_RAW there is no packet socket: nothing runs, and the
	// plan says why.
	unpriv := c.debugSpec(netsetup.Privileges{UnprivilegedPortStart: 0})
	if err := anyOn(unpriv.Plan); err == nil || !strings.Contains(err.Error(), "no CAP_NET_RAW") {
		t.Errorf("unprivileged debug plan: %v, want no service to run for lack of CAP_NET_RAW", err)
	}
}

func TestPrintStatus(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2026, 3, 1, 12, 0, s, 0, time.UTC) }
	doc := status.Status{
		Version: "v1", Mode: "sidecar", StartedAt: at(0), Now: at(50), Tier: "Full",
		VMI: &status.VMI{Namespace: "default", Name: "vm1", UID: "1234"},
		Interfaces: []status.Interface{{
			Name: "default", PodIface: "eth0", Tap: "tap0", Bridge: "k6t-eth0", VMMAC: "0a:58:0a:10:00:05",
			Plan: netsetup.Plan{Tier: netsetup.TierFull, Services: []netsetup.ServicePlan{
				{Service: "dhcpv4", On: true, Transport: "packet"},
				{Service: "ra", Reason: "no NET_RAW", Remedy: "grant NET_RAW"},
			}},
			Offer: status.Offer{IPv4: "10.16.0.5/16", Gateway4: "10.16.0.1", DNS: []string{"10.96.0.10"}, MTU: 1400},
			Services: []status.Service{{
				Protocol: "dhcpv4", Running: true,
				Lease:       &status.Lease{State: "bound", Address: "10.16.0.5/16", Since: at(40)},
				LastRequest: &status.Message{Time: at(40), Type: "REQUEST", XID: "0x00000001", Reply: "ACK", LatencyMicros: 42},
				LastReply:   &status.Message{Time: at(40), Type: "ACK", XID: "0x00000001", Request: "REQUEST"},
				LastDrop:    &status.Message{Time: at(45), Type: "ARP", Outcome: "dropped", Reason: "not-for-server"},
				Received:    []status.Counter{{Type: "REQUEST", Outcome: "replied", Count: 1}, {Type: "DISCOVER", Outcome: "replied", Count: 1}},
				Replies:     []status.Counter{{Type: "OFFER", Count: 1}, {Type: "ACK", Count: 1}},
				Dropped:     []status.Counter{{Reason: "not-for-server", Count: 1}},
			}},
			Errors: []status.ErrorRecord{{Time: at(30), Service: "ra", Error: "boom"}},
		}},
	}
	var b bytes.Buffer
	if err := printStatus(&b, doc); err != nil {
		t.Fatal(err)
	}
	want := `dsbridge v1 (sidecar), up 50s, tier Full
VMI default/vm1 uid 1234

interface default: VM MAC 0a:58:0a:10:00:05, pod interface eth0, tap tap0, bridge k6t-eth0
  offers: ipv4 10.16.0.5/16, gw 10.16.0.1, dns 10.96.0.10, mtu 1400
  service  plan             running  lease
  dhcpv4   on (packet)      yes      bound 10.16.0.5/16 (10s ago)
  ra       off: no NET_RAW  -        -
  ra remedy: grant NET_RAW
  dhcpv4:
    last request: REQUEST xid 0x00000001 -> ACK in 42µs, 10s ago
    last reply:   ACK xid 0x00000001, 10s ago
    last drop:    ARP (not-for-server), 5s ago
    received:     DISCOVER replied 1, REQUEST replied 1
    sent:         ACK 1, OFFER 1
    dropped:      not-for-server 1
  error 20s ago in ra: boom
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("printed status (-want +got):\n%s", diff)
	}
}

// dhcpProc is `dsbridge dhcp` running in the lab's pod.
type dhcpProc struct {
	cmd            *exec.Cmd
	stdout, stderr *lab.Buffer
	socket         string
}

// startDHCP runs the debug mode on the lab's tap with the lab's values.
func startDHCP(t *testing.T, bin string, l *lab.Lab, extra ...string) *dhcpProc {
	t.Helper()
	dir, err := os.MkdirTemp("", "dsb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := l.Spec
	p := &dhcpProc{stdout: &lab.Buffer{}, stderr: &lab.Buffer{}, socket: filepath.Join(dir, "status.sock")}
	args := append([]string{"netns", "exec", l.Pod.Name, bin, "dhcp", "--iface", l.Tap, "--vm-mac", s.MAC,
		"--ipv4", s.IPv4, "--gateway4", s.Gateway4, "--ipv6", s.IPv6, "--gateway6", s.Gateway6,
		"--gateway6-mac", s.NodeMAC, "--dns", strings.Join(s.DNS, ","), "--search", strings.Join(s.Search, ","),
		"--mtu", "1400", "--hostname", l.Hostname, "--status-socket", p.socket, "--log-level", "debug"}, extra...)
	p.cmd = exec.Command("ip", args...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt) // by PID
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
			_ = p.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("dsbridge dhcp stdout:\n%s\nstderr:\n%s", p.stdout.String(), p.stderr.String())
		}
	})
	lab.WaitFor(t, 10*time.Second, "dsbridge dhcp to serve", func() bool {
		return strings.Contains(p.stderr.String(), `"msg":"serving interface`)
	})
	return p
}

// traceLines are the trace lines with the given verb and protocol, with
// the timestamp cut off.
func traceLines(out, verb, proto string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[1] == verb && f[2] == proto {
			lines = append(lines, strings.Join(f[3:], " "))
		}
	}
	return lines
}

var xidRE = regexp.MustCompile(`xid=(0x[0-9a-f]+)`)

// TestDHCPDebugMode runs `dsbridge dhcp --trace` against ISC dhclient (-4
// and -6) and the guest kernel's RS: every exchange is in the trace with its
// transaction ID and offered values, the guest gets its addresses, /status
// shows both leases bound, and every /metrics counter equals the number of
// trace lines of its kind.
func TestDHCPDebugMode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs real clients in namespaces")
	}
	lab.RequireRoot(t)
	bin := buildSidecar(t)
	l := lab.NewLab(t, lab.KubeOVN)
	p := startDHCP(t, bin, l, "--trace")
	l.Dhclient(t, "-4", "").Env(t, 15*time.Second, "BOUND", "REBOOT")
	l.Dhclient(t, "-6", "").Env(t, 15*time.Second, "BOUND6", "REBOOT6")
	lab.WaitFor(t, 10*time.Second, "an RA in the trace", func() bool {
		return len(traceLines(p.stdout.String(), "send", "ra")) > 0
	})
	out := p.stdout.String()
	t.Logf("trace:\n%s", out)

	// The trace names every exchange, with matching transaction IDs.
	for _, ex := range []struct{ proto, req, reply string }{
		{"dhcpv4", "DISCOVER", "OFFER"}, {"dhcpv4", "REQUEST", "ACK"},
		{"dhcpv6", "SOLICIT", "ADVERTISE"}, {"dhcpv6", "REQUEST", "REPLY"},
	} {
		req := firstWith(traceLines(out, "recv", ex.proto), ex.req+" ")
		rep := firstWith(traceLines(out, "send", ex.proto), ex.reply+" ")
		if req == "" || rep == "" {
			t.Errorf("trace lacks %s %s -> %s:\n%s", ex.proto, ex.req, ex.reply, out)
			continue
		}
		if a, b := xidRE.FindString(req), xidRE.FindString(rep); a == "" || a != b {
			t.Errorf("%s %s %q and %s %q: transaction IDs differ", ex.proto, ex.req, req, ex.reply, rep)
		}
	}
	for _, want := range []string{"yiaddr=10.16.0.5", "router=10.16.0.1", "dns=10.96.0.10", "mtu=1400",
		`hostname="vm-kube-ovn"`, "search=default.svc.cluster.local,svc.cluster.local,cluster.local"} {
		if !strings.Contains(firstWith(traceLines(out, "send", "dhcpv4"), "ACK "), want) {
			t.Errorf("traced ACK lacks %s:\n%s", want, out)
		}
	}
	if rep := firstWith(traceLines(out, "send", "dhcpv6"), "REPLY "); !strings.Contains(rep, "fd00:10:16::5(") ||
		!strings.Contains(rep, "dns=fd00:10:96::a") {
		t.Errorf("traced REPLY lacks the address or DNS: %q", rep)
	}
	if ra := firstWith(traceLines(out, "send", "ra"), "RA "); !strings.Contains(ra, "from="+l.GatewayLLA()) ||
		!strings.Contains(ra, "M=1 O=1") || !strings.Contains(ra, "prefix=fd00:10:16::/112") {
		t.Errorf("traced RA lacks source, flags or prefix: %q", ra)
	}

	// /status: both leases bound.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := status.Fetch(ctx, p.socket, "/status")
	if err != nil {
		t.Fatal(err)
	}
	var doc status.Status
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	leases := map[string]string{}
	for _, s := range doc.Interfaces[0].Services {
		if s.Lease != nil {
			leases[s.Protocol] = s.Lease.State + " " + s.Lease.Address
		}
	}
	if diff := cmp.Diff(map[string]string{"dhcpv4": "bound 10.16.0.5/16", "dhcpv6": "bound fd00:10:16::5"}, leases); diff != "" {
		t.Errorf("leases (-want +got):\n%s", diff)
	}

	// /metrics: the counters match the trace, line for line. Read the
	// trace after the metrics: packets may arrive in between, never vanish.
	b, err = status.Fetch(ctx, p.socket, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	fams, err := statustest.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, b)
	}
	out = p.stdout.String()
	for _, c := range []struct{ proto, verb, typ, metric, label string }{
		{"dhcpv4", "recv", "DISCOVER", "dsbridge_packets_received_total", "type"},
		{"dhcpv4", "recv", "REQUEST", "dsbridge_packets_received_total", "type"},
		{"dhcpv4", "send", "OFFER", "dsbridge_replies_sent_total", "type"},
		{"dhcpv4", "send", "ACK", "dsbridge_replies_sent_total", "type"},
		{"dhcpv6", "recv", "SOLICIT", "dsbridge_packets_received_total", "type"},
		{"dhcpv6", "send", "REPLY", "dsbridge_replies_sent_total", "type"},
		{"ra", "recv", "RS", "dsbridge_packets_received_total", "type"},
		{"ra", "send", "RA", "dsbridge_replies_sent_total", "type"},
	} {
		want := float64(countWith(traceLines(out, c.verb, c.proto), c.typ+" "))
		got := sumOf(fams, c.metric, map[string]string{"protocol": c.proto, c.label: c.typ})
		if got != want || want == 0 {
			t.Errorf("%s{protocol=%s,type=%s} = %v, trace has %v %s lines", c.metric, c.proto, c.typ, got, want, c.verb)
		}
	}
	if _, ok := statustest.Value(fams, "dsbridge_handler_latency_seconds_count", map[string]string{"protocol": "dhcpv4"}); !ok {
		t.Error("no DHCPv4 latency histogram")
	}

	// `dsbridge status` prints it for a person.
	st, err := exec.Command(bin, "status", "--socket", p.socket).CombinedOutput()
	t.Logf("dsbridge status:\n%s", st)
	if err != nil || !regexp.MustCompile(`dhcpv4 +on \(packet\) +yes +bound 10\.16\.0\.5/16`).Match(st) {
		t.Errorf("dsbridge status (%v):\n%s", err, st)
	}
	// No log line per packet at info level.
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(line, `"level":"info"`) && (strings.Contains(line, "DISCOVER") || strings.Contains(line, "xid")) {
			t.Errorf("per-packet log line at info level: %s", line)
		}
	}
}

// TestDHCPDryRun: with --dry-run the replies are decoded and printed and
// nothing is sent: a capture on the guest's link holds no reply, and the
// guest never gets its address.
func TestDHCPDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs real clients in namespaces")
	}
	lab.RequireRoot(t)
	bin := buildSidecar(t)
	l := lab.NewLab(t, lab.KubeOVN)
	p := startDHCP(t, bin, l, "--dry-run")
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "up")
	c := lab.StartCapture(t, l.Guest, l.GuestIf, lab.LeakFilter)
	l.Dhclient(t, "-4", "")
	lab.WaitFor(t, 15*time.Second, "a would-send OFFER", func() bool {
		return firstWith(traceLines(p.stdout.String(), "would-send", "dhcpv4"), "OFFER ") != "" &&
			len(traceLines(p.stdout.String(), "would-send", "ra")) > 0
	})
	time.Sleep(time.Second) // let anything sent reach the capture
	if pkts := c.Stop(t); len(pkts) > 0 {
		t.Errorf("dry run sent %d packets to the guest:\n%s", len(pkts), strings.Join(pkts, "\n"))
	}
	if got := traceLines(p.stdout.String(), "send", "dhcpv4"); len(got) > 0 {
		t.Errorf("dry run traced sends: %q", got)
	}
	for _, a := range lab.Addrs(t, l.Guest, l.GuestIf) {
		if strings.HasPrefix(a, "10.16.") || strings.HasPrefix(a, "fd00:") {
			t.Errorf("guest got address %s in a dry run", a)
		}
	}
	t.Logf("dry-run trace:\n%s", p.stdout.String())
}

func firstWith(lines []string, prefix string) string {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func countWith(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// sumOf adds every sample of name whose labels include want.
func sumOf(fams map[string]*statustest.Family, name string, want map[string]string) float64 {
	f, ok := fams[name]
	if !ok {
		return 0
	}
	var sum float64
	for _, s := range f.Samples {
		match := true
		for k, v := range want {
			match = match && s.Labels[k] == v
		}
		if match {
			sum += s.Value
		}
	}
	return sum
}

// TestServeStatusSocket: `dsbridge serve` serves the status API at
// <state-dir>/status.sock; after a DORA it shows the lease bound.
func TestServeStatusSocket(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs real clients in namespaces")
	}
	lab.RequireRoot(t)
	bin := buildSidecar(t)
	l := lab.NewLab(t, lab.KubeOVN)
	dir, err := os.MkdirTemp("", "dsb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	stderr := &lab.Buffer{}
	cmd := exec.Command("ip", "netns", "exec", l.Pod.Name, bin, "serve", "--pod-iface", l.Spec.PodIface, "--tap", l.Tap,
		"--resolv-conf", l.ResolvConf, "--hostname", l.Hostname, "--state-dir", dir)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt) // by PID
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("dsbridge serve stderr:\n%s", stderr.String())
		}
	})
	lab.WaitFor(t, 15*time.Second, "dsbridge serve to serve", func() bool {
		return strings.Contains(stderr.String(), `"msg":"serving interface`)
	})
	socket := filepath.Join(dir, status.SocketName)
	l.Dhclient(t, "-4", "").Env(t, 15*time.Second, "BOUND", "REBOOT")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var doc status.Status
	lab.WaitFor(t, 5*time.Second, "the DHCPv4 lease in /status", func() bool {
		b, err := status.Fetch(ctx, socket, "/status")
		if err != nil || json.Unmarshal(b, &doc) != nil || len(doc.Interfaces) != 1 {
			return false
		}
		s := doc.Interfaces[0].Services
		return len(s) > 0 && s[0].Lease != nil && s[0].Lease.State == status.LeaseBound
	})
	in := doc.Interfaces[0]
	got := []string{doc.Mode, doc.Tier, in.Name, in.VMMAC, in.Services[0].Protocol, in.Services[0].Lease.Address,
		in.Services[0].LastReply.Type, in.Offer.Gateway4}
	want := []string{"serve", "Full", "eth0", "0a:58:0a:10:00:05", "dhcpv4", "10.16.0.5/16", "ACK", "10.16.0.1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	// The log: one line per interface with the tier and plan; timestamps
	// with microseconds; nothing per packet at info level.
	tsRE := regexp.MustCompile(`"timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"`)
	serving := 0
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if !tsRE.MatchString(line) {
			t.Errorf("log line without a microsecond timestamp: %s", line)
		}
		if strings.Contains(line, `"msg":"serving interface`) {
			serving++
			if !strings.Contains(line, `"tier":"Full"`) || !strings.Contains(line, `"dhcpv4":{"on":true`) {
				t.Errorf("start line lacks the tier or plan: %s", line)
			}
		}
	}
	if serving != 1 {
		t.Errorf("%d 'serving interface' lines, want 1", serving)
	}
}

// TestSidecarStatusSocket: the sidecar's status socket is in its own
// subdirectory of the hooks directory (only the gRPC socket at the top), and
// `dsbridge status` reads it.
func TestSidecarStatusSocket(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	lab.RequireRoot(t)
	bin := buildSidecar(t)
	p := startSidecar(t, bin, "dsbridge")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := hookstest.Connect(ctx, p.socket); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(p.hooksDir, "dsbridge", status.SocketName)
	out, err := exec.Command(bin, "status", "--socket", socket).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "dsbridge dev (sidecar), up ") {
		t.Errorf("dsbridge status (%v):\n%s", err, out)
	}
	if diff := cmp.Diff([]string{"dsbridge", "dsbridge.sock"}, p.dirEntries(t)); diff != "" {
		t.Errorf("hooks dir (-want +got):\n%s", diff)
	}
	m, err := exec.Command(bin, "status", "--socket", socket, "--metrics").CombinedOutput()
	if err != nil {
		t.Fatalf("dsbridge status --metrics: %v\n%s", err, m)
	}
	if _, err := statustest.Parse(bytes.NewReader(m)); err != nil {
		t.Errorf("metrics do not parse: %v\n%s", err, m)
	}
}
