package hooks_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/hooks"
	"github.com/dsbridge/dsbridge/hooks/hookstest"
	infopb "github.com/dsbridge/dsbridge/hooks/proto/info"
)

func mac(t testing.TB, s string) frame.MAC {
	t.Helper()
	m, err := frame.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func podFacts(t testing.TB) hooks.StaticFacts {
	t.Helper()
	return hooks.StaticFacts{
		"eth0":           {MAC: mac(t, "0a:58:0a:f4:00:0c"), MTU: 1400},
		"pod16477688c0e": {MAC: mac(t, "0a:58:c0:a8:07:05"), MTU: 1450},
	}
}

func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recordingBinder records Bind calls and answers with err or a panic.
type recordingBinder struct {
	mu    sync.Mutex
	calls []bindCall
	err   error
	panic bool
}

type bindCall struct {
	VMI    hooks.VMIIdentity
	Ifaces []hooks.BoundInterface
}

func (b *recordingBinder) Bind(_ context.Context, vmi hooks.VMIIdentity, ifaces []hooks.BoundInterface) error {
	if b.panic {
		panic("binder exploded")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, bindCall{VMI: vmi, Ifaces: ifaces})
	return b.err
}

// served is a hooks server on a socket in a temp dir.
type served struct {
	dir    string
	socket string
	cancel context.CancelFunc
	done   chan error
}

// serve starts a Server on <tempdir>/dsbridge.sock; it is stopped at cleanup.
func serve(t testing.TB, binder hooks.Binder) *served {
	t.Helper()
	cfg := hooks.Config{PluginName: "dsbridge", Facts: podFacts(t),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if binder != nil {
		cfg.Binder = binder
	}
	srv, err := hooks.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l, err := hooks.Listen(dir, "dsbridge")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{dir: dir, socket: hooks.SocketPath(dir, "dsbridge"), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

func connect(t testing.TB, socket string) *hookstest.Launcher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := hookstest.Connect(ctx, socket)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestInfo(t *testing.T) {
	s := serve(t, nil)
	l := connect(t, s.socket)
	type info struct {
		Name       string
		Versions   []string
		HookPoints []string
		Version    string
	}
	got := info{Name: l.Info.GetName(), Versions: l.Info.GetVersions(), Version: l.Version}
	for _, h := range l.Info.GetHookPoints() {
		got.HookPoints = append(got.HookPoints, h.GetName())
	}
	want := info{Name: "dsbridge", Versions: []string{"v1alpha3", "v1alpha2"},
		HookPoints: []string{"OnDefineDomain", "Shutdown"}, Version: "v1alpha3"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Info (-want +got):\n%s", diff)
	}
	if l.InfoLatency > 100*time.Millisecond {
		t.Errorf("Info took %v, want a few ms", l.InfoLatency)
	}
}

func TestOnDefineDomainRPC(t *testing.T) {
	for _, version := range []string{"v1alpha3", "v1alpha2"} {
		t.Run(version, func(t *testing.T) {
			binder := &recordingBinder{}
			s := serve(t, binder)
			l := connect(t, s.socket)
			l.Version = version
			in := testdata(t, "domain-multus.xml")
			out, err := l.OnDefineDomain(context.Background(), in, testdata(t, "vmi-multus.json"))
			if err != nil {
				t.Fatal(err)
			}
			want := "<interface type=\"ethernet\">\n\t\t\t<source/>\n\t\t\t<target dev=\"tap16477688c0e\" managed=\"no\"/>\n" +
				"\t\t\t<model type=\"virtio-non-transitional\"/>\n\t\t\t<mac address=\"02:b1:00:00:00:07\"/>\n" +
				"\t\t\t<mtu size=\"1450\"/>\n\t\t\t<alias name=\"ua-blue\"/>\n\t\t\t<rom enabled=\"no\"/>\n\t\t</interface>\n\t\t"
			if got := strings.Replace(string(out), want, "", 1); got != string(in) {
				t.Errorf("result is not the input plus ua-blue:\n%s", out)
			}
			wantCalls := []bindCall{{
				VMI: hooks.VMIIdentity{Namespace: "default", Name: "vmi-dual", UID: "3f9c2a7e-1b2d-4c8e-9f00-6a5b4c3d2e1f",
					Annotations: map[string]string{"kubevirt.io/latest-observed-api-version": "v1", "kubevirt.io/storage-observed-api-version": "v1"}},
				Ifaces: []hooks.BoundInterface{{Name: "blue", Index: 1, Network: "blue", MultusName: "vlan-tenants/blue",
					PodIface: "pod16477688c0e", Tap: "tap16477688c0e", MAC: mac(t, "02:b1:00:00:00:07")}},
			}}
			if diff := cmp.Diff(wantCalls, binder.calls); diff != "" {
				t.Errorf("Bind calls (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOnDefineDomainRPCErrors checks that bad input, a failing Binder and a
// panicking Binder each fail only their RPC, and the sidecar keeps serving.
func TestOnDefineDomainRPCErrors(t *testing.T) {
	domain, vmi := testdata(t, "domain.xml"), testdata(t, "vmi-pod.json")
	tests := []struct {
		name     string
		binder   *recordingBinder
		domain   []byte
		vmi      []byte
		wantCode codes.Code
		wantMsg  string
	}{
		{name: "bad XML", domain: []byte("<domain><devices>"), vmi: vmi,
			wantCode: codes.InvalidArgument, wantMsg: "invalid domain XML: XML syntax error on line 1: unexpected EOF"},
		{name: "bad VMI", domain: domain, vmi: []byte(`{"spec":[]}`),
			wantCode: codes.InvalidArgument, wantMsg: `invalid VMI JSON: field "spec" is array`},
		{name: "nested too deep", domain: []byte("<domain>" + strings.Repeat("<a>", 65) + strings.Repeat("</a>", 65) + "</domain>"), vmi: vmi,
			wantCode: codes.InvalidArgument, wantMsg: "domain XML nests deeper than 64 elements (depth limit)"},
		// gRPC's 4 MiB receive limit, kept: a request one byte over it is
		// refused before it is read. The request is 8 bytes of framing
		// (two tags, lengths of 4 and 2 bytes) and its two fields.
		{name: "over the message limit", domain: bytes.Repeat([]byte("x"), 4<<20-len(vmi)-7), vmi: vmi,
			wantCode: codes.ResourceExhausted, wantMsg: "grpc: received message larger than max (4194305 vs. 4194304)"},
		{name: "at the message limit", domain: bytes.Repeat([]byte("x"), 4<<20-len(vmi)-8), vmi: vmi,
			wantCode: codes.InvalidArgument, wantMsg: "domain XML has a token longer than 65536 bytes (token size limit)"},
		{name: "binder fails", binder: &recordingBinder{err: errors.New("no bridge k6t-eth0")}, domain: domain, vmi: vmi,
			wantCode: codes.InvalidArgument, wantMsg: "failed to bind interfaces of VMI default/vmi-dual: no bridge k6t-eth0"},
		{name: "binder panics", binder: &recordingBinder{panic: true}, domain: domain, vmi: vmi,
			wantCode: codes.Internal, wantMsg: "panic in /kubevirt.hooks.v1alpha3.Callbacks/OnDefineDomain: binder exploded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b hooks.Binder
			if tt.binder != nil {
				b = tt.binder
			}
			s := serve(t, b)
			l := connect(t, s.socket)
			_, err := l.OnDefineDomain(context.Background(), tt.domain, tt.vmi)
			st, _ := status.FromError(err)
			if st.Code() != tt.wantCode || !strings.Contains(st.Message(), tt.wantMsg) {
				t.Fatalf("error = %v, want %v containing %q", err, tt.wantCode, tt.wantMsg)
			}
			connect(t, s.socket) // still serving
		})
	}
}

func TestShutdownStopsServe(t *testing.T) {
	s := serve(t, nil)
	l := connect(t, s.socket)
	start := time.Now()
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("Serve = %v, want nil", err)
		}
		s.done <- nil // for cleanup
	case <-time.After(time.Second):
		t.Fatal("Serve still running 1 s after Shutdown")
	}
	t.Logf("stopped %v after Shutdown", time.Since(start))
	assertDirEntries(t, s.dir, nil)
}

func TestCancelStopsServe(t *testing.T) {
	s := serve(t, nil)
	connect(t, s.socket)
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("Serve = %v, want nil", err)
		}
		s.done <- nil
	case <-time.After(time.Second):
		t.Fatal("Serve still running 1 s after cancel")
	}
}

func assertDirEntries(t *testing.T, dir string, want []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries of %s (-want +got):\n%s", dir, diff)
	}
}

func TestListen(t *testing.T) {
	tests := []struct {
		name  string
		stale func(t *testing.T, path string)
	}{
		{name: "fresh directory", stale: func(*testing.T, string) {}},
		{name: "stale socket", stale: func(t *testing.T, path string) {
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			l.SetUnlinkOnClose(false)
			l.Close()
		}},
		{name: "stale file", stale: func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("junk"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := hooks.SocketPath(dir, "dsbridge")
			tt.stale(t, path)
			l, err := hooks.Listen(dir, "dsbridge")
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o666 {
				t.Errorf("socket mode = %v, want a socket with 0666", fi.Mode())
			}
			assertDirEntries(t, dir, []string{"dsbridge.sock"})
			l.Close()
			assertDirEntries(t, dir, nil)
		})
	}
}

func TestNewServerValidates(t *testing.T) {
	_, err := hooks.NewServer(hooks.Config{PluginName: "a/b"})
	want := "invalid hooks server config: plugin name \"a/b\" holds a \"/\" or NUL: it must be a file name in the hooks directory\npod facts missing\nlogger missing"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
}

func TestValidatePluginName(t *testing.T) {
	tests := []struct{ name, wantErr string }{
		{"dsbridge", ""},
		{"dual-stack_2.x", ""},
		{strings.Repeat("a", 250), ""},
		{"", "plugin name is empty"},
		{".", `plugin name "." names a directory, not a file`},
		{"..", `plugin name ".." names a directory, not a file`},
		{"../escape", `plugin name "../escape" holds a "/" or NUL: it must be a file name in the hooks directory`},
		{"a/b", `plugin name "a/b" holds a "/" or NUL: it must be a file name in the hooks directory`},
		{"a\x00b", `plugin name "a\x00b" holds a "/" or NUL: it must be a file name in the hooks directory`},
		{strings.Repeat("a", 251), "plugin name of 251 bytes is longer than 250"},
	}
	for _, tt := range tests {
		err := hooks.ValidatePluginName(tt.name)
		if got := fmt.Sprint(err); (tt.wantErr == "" && err != nil) || (tt.wantErr != "" && got != tt.wantErr) {
			t.Errorf("ValidatePluginName(%.20q) = %v, want %q", tt.name, err, tt.wantErr)
		}
	}
}

// BenchmarkInfo is one Info RPC over the unix socket on a kept connection.
func BenchmarkInfo(b *testing.B) {
	s := serve(b, nil)
	ctx := context.Background()
	if err := hookstest.WaitForSocket(ctx, s.socket); err != nil {
		b.Fatal(err)
	}
	conn, err := hookstest.Dial(ctx, s.socket)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := infopb.NewInfoClient(conn)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Info(ctx, &infopb.InfoParams{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConnectAndInfo is virt-launcher's whole Collect step for one
// sidecar: dial, Info, close.
func BenchmarkConnectAndInfo(b *testing.B) {
	s := serve(b, nil)
	b.ReportAllocs()
	for b.Loop() {
		connect(b, s.socket)
	}
}
