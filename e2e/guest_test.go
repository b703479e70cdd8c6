package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// waitAddrs waits until the guest holds exactly addrs (global, any order).
func waitAddrs(t *testing.T, l *lab.Lab, addrs []string, timeout time.Duration) {
	t.Helper()
	want := slices.Sorted(slices.Values(addrs))
	var got []string
	deadline := time.Now().Add(timeout)
	for {
		got = slices.Sorted(slices.Values(lab.Addrs(t, l.Guest, l.GuestIf)))
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest addresses = %v, want %v", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitDefault waits until the guest's default route of family goes via gw.
func waitDefault(t *testing.T, l *lab.Lab, family, gw string, timeout time.Duration) {
	t.Helper()
	lab.WaitFor(t, timeout, fmt.Sprintf("guest default route %s via %s", family, gw), func() bool {
		return lab.DefaultVia(t, l.Guest, family) == gw
	})
}

// pingAll pings each destination from the guest; count pings 0.2 s apart,
// all must be answered.
func pingAll(t *testing.T, l *lab.Lab, count int, dsts ...string) {
	t.Helper()
	for _, dst := range dsts {
		out, err := l.Guest.Exec("ping", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "2", dst)
		if err != nil || !strings.Contains(out, " 0% packet loss") {
			t.Errorf("guest ping %s: %v\n%s", dst, err, out)
		}
	}
}

// envHas checks a recorded client environment variable holds every word of
// want (space-separated lists, order kept).
func envHas(t *testing.T, env map[string]string, key, want string) {
	t.Helper()
	if got := strings.Join(strings.Fields(env[key]), " "); got != want {
		t.Errorf("client %s = %q, want %q", key, got, want)
	}
}

// gatewayPings are the gateways and the off-link addresses beyond them
// for the families spec has.
func gatewayPings(spec lab.PodSpec) []string {
	var dsts []string
	if spec.IPv4 != "" {
		dsts = append(dsts, spec.Gateway4, lab.OffLink4)
	}
	if spec.IPv6 != "" {
		gw := spec.Gateway6
		if strings.HasPrefix(gw, "fe80:") {
			gw += "%eth0"
		}
		dsts = append(dsts, gw, lab.OffLink6)
	}
	return dsts
}
