package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/ra"
	"github.com/google/go-cmp/cmp"
)

// kubeOVN is the RA of the standard Kube-OVN lab pod (e2e/lab.KubeOVN).
func kubeOVN() Config {
	return Config{RA: ra.Config{
		Mode:       ra.ModeGateway,
		GatewayLLA: netip.MustParseAddr("fe80::858:aff:fe10:1"),
		GatewayMAC: frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x01},
		Prefix:     netip.MustParsePrefix("fd00:10:16::5/112"),
		MTU:        1400,
		DNS:        []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00:10:96::a")},
		Search:     []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"},
		VMMAC:      frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x05},
	}}
}

func TestCheckKernel(t *testing.T) {
	for _, tc := range []struct {
		release string
		want    string // error text; "" for none
	}{
		{"6.18.44-fc-v445", ""},
		{"5.2.0", ""},
		{"5.10.0-28-amd64", ""},
		{"5.1.21", "the kernel uplink programs need Linux 5.2 or later, this is 5.1.21"},
		{"4.19.0-27-amd64", "the kernel uplink programs need Linux 5.2 or later, this is 4.19.0-27-amd64"},
		{"linux", `unrecognised kernel release "linux"`},
	} {
		t.Run(tc.release, func(t *testing.T) {
			got := ""
			if err := checkKernel(tc.release); err != nil {
				got = err.Error()
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("checkKernel(%q) (-want +got):\n%s", tc.release, diff)
			}
		})
	}
}

// TestObjectVariables pins the globals the loader writes to the sizes
// bpf/responder.c declares, so that the C and Go sides cannot drift apart.
func TestObjectVariables(t *testing.T) {
	s, err := spec(vars{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint32{"vm_mac": 6, "gw_lla": 16, "refresh_ns": 8, "frame_len": 4, "ra_frame": maxFrame,
		"sid_net": 4, "sid_mask": 4, "last_ra_ns": 8, "vm_lla_iid": 8, "pod_mac": 8, "vm_seen": 8, "vm_port": 4}
	learned := map[string]bool{"last_ra_ns": true, "vm_lla_iid": true, "pod_mac": true, "vm_seen": true, "vm_port": true}
	got := map[string]uint32{}
	for name, v := range s.Variables {
		got[name] = v.Size()
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("variables (-want +got):\n%s", diff)
	}
	for name := range want {
		if s.Variables[name].Constant() == learned[name] {
			t.Errorf("variable %q: read-only %t, want %t", name, s.Variables[name].Constant(), !learned[name])
		}
	}
}

// TestObjectReproducible compiles bpf/responder.c twice, in two
// directories other than the checkout, with the pinned clang: both give the
// committed object byte for byte. Skipped without clang-16 (CI's
// check-generate compiles it then).
func TestObjectReproducible(t *testing.T) {
	if _, err := exec.LookPath("clang-16"); err != nil {
		t.Skip("clang-16 is not installed (make generate installs it)")
	}
	src, err := os.ReadFile("bpf/responder.c")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		dir := filepath.Join(t.TempDir(), fmt.Sprint("build", i))
		if err := os.MkdirAll(filepath.Join(dir, "bpf"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "bpf", "responder.c"), src, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sh", "-c", generateCommand(t))
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PWD="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("compile in %s: %v: %s", dir, err, out)
		}
		got, err := os.ReadFile(filepath.Join(dir, "responder.o"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(object, got) {
			t.Fatalf("build %d in %s differs from the committed responder.o: run make generate", i, dir)
		}
	}
}

// generateCommand is the shell command of gen.go's go:generate line, the
// one make generate runs.
func generateCommand(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(src), "\n") {
		if rest, ok := strings.CutPrefix(l, "//go:generate sh -c "); ok {
			c, err := strconv.Unquote(rest)
			if err != nil {
				t.Fatalf("go:generate line %q: %v", l, err)
			}
			return c
		}
	}
	t.Fatal("gen.go has no go:generate sh -c line")
	return ""
}

// TestVerifier loads the programs for the lab's config, with and without
// the RA responder: the kernel's verifier accepts them. It logs the
// instruction counts (README, Performance).
func TestVerifier(t *testing.T) {
	noRA := kubeOVN()
	noRA.RA.Mode = ra.ModeOff
	for _, tc := range []struct {
		name string
		cfg  Config
	}{{"gateway", kubeOVN()}, {"no RA", noRA}} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := compile(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			coll, err := load(v, ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats})
			if errors.Is(err, os.ErrPermission) {
				t.Skipf("loading BPF programs needs CAP_BPF and CAP_NET_ADMIN: %v", err)
			}
			if err != nil {
				t.Fatalf("%+v", err)
			}
			defer coll.Close()
			s, err := spec(v)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{egressProgram, ingressProgram} {
				prog := coll.Programs[name]
				insns := s.Programs[name].Instructions
				info, err := prog.Info()
				if err != nil {
					t.Fatal(err)
				}
				verified, _ := info.VerifiedInstructions()
				t.Logf("%s: object %d instructions (%d slots); verifier: %d processed; log: %s",
					name, len(insns), insns.Size()/asm.InstructionSize, verified, strings.TrimSpace(prog.VerifierLog))
			}
		})
	}
}
