package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/hooks/hookstest"
)

// hostilePeakLimit is the peak RSS the sidecar may reach on any hostile
// request: half its 64 MB container limit (a sidecar over it is
// OOM-killed and never restarted).
const hostilePeakLimit = 32 << 10 // KiB

// procStatusKiB reads a "<field>: N kB" line of /proc/<pid>/status.
func procStatusKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kib, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("%s %q: %v", field, v, err)
			}
			return kib
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// hostileCase is one hostile OnDefineDomain request and the gRPC error it
// must get.
type hostileCase struct {
	hookstest.HostileInput
	code codes.Code
	msg  string // in the error message
}

func hostileCases(t *testing.T) []hostileCase {
	domain := readFixture(t, "domain.xml")
	var out []hostileCase
	for _, in := range append(hookstest.HostileDomains(hookstest.MaxHostileSize), hookstest.HostileVMIs(domain, hookstest.MaxHostileSize)...) {
		out = append(out, hostileCase{HostileInput: in, code: codes.InvalidArgument, msg: in.Refusal})
	}
	// Within every limit: scanned, edited and answered whole.
	out = append(out, hostileCase{HostileInput: hookstest.LargestAccepted(hookstest.MaxHostileSize), code: codes.OK})
	// One byte over gRPC's 4 MiB receive limit: refused before it is read.
	big := hookstest.HostileInput{Name: "over 4 MiB", DomainXML: bytes.Repeat([]byte("x"), 4<<20+1), VMIJSON: []byte(hookstest.PodVMI)}
	return append(out, hostileCase{HostileInput: big, code: codes.ResourceExhausted, msg: "grpc: received message larger than max"})
}

// TestHostileHookInput sends the real sidecar binary each hostile request:
// it answers with an error naming the limit (or, for the largest request
// within the limits, the edited domain) in bounded time, its peak RSS
// (VmHWM) stays under hostilePeakLimit, and it still serves a good request.
func TestHostileHookInput(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	lab.RequireRoot(t)
	bin := buildSidecar(t)
	for _, tc := range hostileCases(t) {
		t.Run(tc.Name, func(t *testing.T) {
			p := startSidecar(t, bin, "dsbridge")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			l, err := hookstest.Connect(ctx, p.socket)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			out, err := l.OnDefineDomain(ctx, tc.DomainXML, tc.VMIJSON)
			took := time.Since(start)
			st := status.Convert(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Errorf("OnDefineDomain: code %v, message %.200q; want %v naming %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
			if err == nil && !bytes.Contains(out, []byte(`<alias name="ua-default"/>`)) {
				t.Errorf("accepted domain (%d bytes) lacks the interface ua-default", len(out))
			}
			hwm := procStatusKiB(t, p.cmd.Process.Pid, "VmHWM")
			t.Logf("%s (%d+%d bytes): %v in %v, peak RSS (VmHWM) %d KiB", tc.Name, len(tc.DomainXML), len(tc.VMIJSON), st.Code(), took.Round(time.Millisecond), hwm)
			if hwm >= hostilePeakLimit {
				t.Errorf("peak RSS %d KiB, want < %d KiB", hwm, hostilePeakLimit)
			}
			if took > 5*time.Second {
				t.Errorf("OnDefineDomain took %v, want the limits to stop it within seconds", took)
			}
			if _, err := l.OnDefineDomain(ctx, readFixture(t, "domain.xml"), readFixture(t, "vmi-pod.json")); err != nil {
				t.Errorf("a good request after the hostile one: %v", err)
			}
			if err := l.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			p.waitExit(t, 2*time.Second)
		})
	}
}
