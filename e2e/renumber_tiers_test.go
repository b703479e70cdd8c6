package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/e2e/lab/managedtap"
)

// TestMigrationRenumberUnprivileged is TestMigrationRenumber's dhclient and
// dhcpcd rows in the unprivileged tier: in each pod the binding CNI's ADD
// (uplink guard and kernel RS->RA responder, configured from that pod's
// addresses), the sidecar as uid 107 without capabilities, managedTap's
// plumbing, then OnDefineDomain with the VM's MAC in the VMI status. There
// the sidecar has no packet socket: the target answers only the RSs and
// MLD reports the guest sends (no periodic RA, no deprecation, no
// withdrawal), so a guest keeps the old router and prefix, and learns the
// new router when it solicits or reports its groups (unprivilegedStack).
//
// The target pod has a MAC of its own (lab.Renumbered's), as a CNI without
// address persistence gives it, while the VM keeps its MAC: the binding
// CNI configures the kernel programs with the target pod's MAC at ADD
// (cmd/dsbridge-cni attachUplink), and they learn the VM's from the frames
// the bridge forwards from its tap (ra/kernel, bpf/responder.c), so the
// guest's RSs and its ARP for the DHCPv4 server identifier are answered.
func TestMigrationRenumberUnprivileged(t *testing.T) {
	if testing.Short() {
		t.Skip("migrations to other addresses take 20 s to 1 min per row")
	}
	t.Parallel()
	for _, s := range renumberStacks[:2] {
		for _, flap := range []time.Duration{flapKubeVirt, 0} {
			t.Run(fmt.Sprintf("%s/flap-%v", s.name, flap), func(t *testing.T) {
				t.Parallel()
				u := unprivilegedStack(s)
				target := lab.Renumbered
				if target.MAC == lab.KubeOVN.MAC {
					t.Fatalf("the target pod's MAC %s is the VM's", target.MAC)
				}
				var runs []convergence
				for i := range 3 {
					c := renumberRun(t, u, flap, unprivilegedServer, target)
					t.Logf("run %d: IPv4 %v, IPv6 %v, both %v:\n%s", i, c.v4, c.v6, c.all, strings.Join(c.timeline, "\n"))
					runs = append(runs, c)
				}
				checkMedian(t, u, flap, "unprivileged", runs)
			})
		}
	}
}

// unprivilegedStack is s as the unprivileged tier moves it, measured: the
// target's responder answers the guest's RS and nothing else. dhcpcd
// drops everything on the flap and solicits: it ends on the target's
// router and prefix alone. Without the flap it hears the target's RA (the
// guest kernel solicited about 3 s after the switch-over in every run
// here) and adds the new prefix, but keeps its one default route via the
// old router, now unreachable, and the old prefix: IPv6 beyond the gateway
// is lost until the old router's lifetime ends. The guest kernel (dhclient
// leaves RAs to it) solicits the same way, flap or not, and lists the new
// router beside the old one until the old one's lifetime ends: part of its
// IPv6 traffic still goes to the old, unreachable router (pingBeyond
// logs how much).
func unprivilegedStack(s renumberStack) renumberStack {
	u := s
	if s.dropsOnCarrierLoss {
		u.routes6 = func(flap bool) sixRoutes {
			if flap {
				return sixRoutes{newRouter: true, newPrefix: true}
			}
			return sixRoutes{newPrefix: true, oldRouter: true, oldPrefix: true}
		}
		return u
	}
	u.routes6 = func(bool) sixRoutes { return sixRoutes{true, true, true, true} }
	return u
}

// unprivilegedServer runs the unprivileged tier in l's pod as TestTiers
// does: the binding CNI's ADD on the pristine pod, the sidecar as uid 107
// without capabilities (timers added to its flags), managedTap's plumbing,
// then OnDefineDomain with a VMI whose status names vmMAC (the VM keeps its
// MAC in another pod). It returns once the sidecar serves.
func unprivilegedServer(t *testing.T, l *lab.Lab, vmMAC string, timers []string) *server {
	t.Helper()
	cniAdd(t, l, false)
	side := launchSidecar(t, l, 107, uid107(), append([]string{"--log-level", "debug"}, timers...), nil)
	s := &server{cmd: side.cmd, out: side.out, stateDir: side.stateDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	managedtap.Build(t, l)
	if _, err := side.launcher.OnDefineDomain(ctx, readFixture(t, "domain.xml"), vmiWithMAC(t, vmMAC)); err != nil {
		t.Fatalf("OnDefineDomain: %v", err)
	}
	lab.WaitFor(t, 10*time.Second, "the sidecar to serve", func() bool { return strings.Contains(s.out.String(), `"msg":"serving interface`) })
	return s
}

// vmiWithMAC is the pod-network VMI fixture with the VM's MAC in its
// interface status, as KubeVirt reports it once the VM ran.
func vmiWithMAC(t *testing.T, mac string) []byte {
	t.Helper()
	var vmi map[string]any
	if err := json.Unmarshal(readFixture(t, "vmi-pod.json"), &vmi); err != nil {
		t.Fatal(err)
	}
	ifaces := vmi["status"].(map[string]any)["interfaces"].([]any)
	ifaces[0].(map[string]any)["mac"] = mac
	b, err := json.Marshal(vmi)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
