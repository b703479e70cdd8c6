package netsetup

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

const probeChildEnv = "DSBRIDGE_PROBE_CHILD"

// TestProbeChild is not a test of its own: run by TestProbeReducedCaps as a
// child process with reduced capabilities, it prints Probe's answer.
func TestProbeChild(t *testing.T) {
	if os.Getenv(probeChildEnv) == "" {
		t.Skip("helper for TestProbeReducedCaps")
	}
	p, err := Probe()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(p)
	fmt.Printf("PROBE %s\n", b)
}

// TestProbeReducedCaps runs the test binary through setpriv with chosen
// capabilities, inside a namespace with ip_unprivileged_port_start 0 or
// 1024, and checks the privileges and the plan it yields.
func TestProbeReducedCaps(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	drop := []string{"setpriv", "--inh-caps=-all", "--ambient-caps=-all"}
	tests := []struct {
		name      string
		setpriv   []string
		portStart int
		want      Privileges
		wantTier  Tier
		wantPlan  string
	}{
		{"all caps", nil, 1024, Privileges{NetAdmin: true, NetRaw: true, NetBindService: true, UnprivilegedPortStart: 1024},
			TierFull, "plumbing on (build); dhcpv4 on (packet); dhcpv6 on (packet); ra on (packet)"},
		{"none, ports 1024", append(drop, "--bounding-set=-all"), 1024, Privileges{UnprivilegedPortStart: 1024},
			TierUnprivileged, "plumbing on (adopt); dhcpv4 off; dhcpv6 off; ra off"},
		{"none, ports 0", append(drop, "--bounding-set=-all"), 0, Privileges{UnprivilegedPortStart: 0},
			TierUnprivileged, "plumbing on (adopt); dhcpv4 on (udp); dhcpv6 on (udp); ra off"},
		{"root gate", append(drop, "--bounding-set=-all,+net_raw,+net_bind_service"), 1024,
			Privileges{NetRaw: true, NetBindService: true, UnprivilegedPortStart: 1024},
			TierRootGate, "plumbing on (adopt); dhcpv4 on (packet); dhcpv6 on (packet); ra on (packet)"},
		{"net_admin only", append(drop, "--bounding-set=-all,+net_admin"), 1024, Privileges{NetAdmin: true, UnprivilegedPortStart: 1024},
			TierUnprivileged, "plumbing on (build); dhcpv4 off; dhcpv6 off; ra off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := lab.NewNS(t)
			ns.Run(t, "sysctl", "-qw", fmt.Sprintf("net.ipv4.ip_unprivileged_port_start=%d", tt.portStart))
			args := append(append([]string{}, tt.setpriv...), os.Args[0], "-test.run=^TestProbeChild$", "-test.count=1")
			out := ns.Run(t, append([]string{"env", probeChildEnv + "=1"}, args...)...)
			got := parseProbeOutput(t, out)
			got.CapEff = 0 // the exact mask depends on the bounding set given
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Probe (-want +got):\n%s", diff)
			}
			plan := PlanFor(got, kubeOVN(), PlanOptions{LayoutExists: true})
			if plan.Tier != tt.wantTier {
				t.Errorf("tier = %q, want %q", plan.Tier, tt.wantTier)
			}
			if s := planSummary(plan); s != tt.wantPlan {
				t.Errorf("plan = %q, want %q", s, tt.wantPlan)
			}
		})
	}
}

func parseProbeOutput(t *testing.T, out string) Privileges {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if b, ok := strings.CutPrefix(line, "PROBE "); ok {
			var p Privileges
			if err := json.Unmarshal([]byte(b), &p); err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	t.Fatalf("no PROBE line in child output:\n%s", out)
	return Privileges{}
}

// planSummary is the plan without reasons: "dhcpv4 on (udp); ra off".
func planSummary(p Plan) string {
	var parts []string
	for _, sp := range p.Services {
		if sp.On {
			parts = append(parts, fmt.Sprintf("%s on (%s)", sp.Service, sp.Transport))
		} else {
			parts = append(parts, sp.Service+" off")
		}
	}
	return strings.Join(parts, "; ")
}
