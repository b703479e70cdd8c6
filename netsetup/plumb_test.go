package netsetup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/hooks/naming"
)

func ensureIn(t *testing.T, l *lab.Lab, s *Snapshot, lay Layout, opts PlumbOptions) {
	t.Helper()
	do(t, l.Pod, func() error { return Ensure(context.Background(), s, lay, opts) })
}

func teardownIn(t *testing.T, l *lab.Lab, s *Snapshot, lay Layout) {
	t.Helper()
	do(t, l.Pod, func() error { return Teardown(s, lay) })
}

func multusSpec() lab.PodSpec {
	s := lab.KubeOVN
	s.Name, s.PodIface = "multus", naming.HashedPodInterface("network1")
	return s
}

// TestEnsureAdoptTeardown builds the layout, builds it again, adopts it,
// reads the snapshot back from it and tears it down: the pod must end
// exactly as it started (full dumps compared).
func TestEnsureAdoptTeardown(t *testing.T) {
	for _, spec := range []lab.PodSpec{lab.KubeOVN, lab.Calico, multusSpec()} {
		t.Run(spec.Name, func(t *testing.T) {
			l := newLab(t, spec)
			before := settledDumpIn(t, l, nil)
			s := takeIn(t, l)
			lay := standInLayout(l)

			ensureIn(t, l, s, lay, PlumbOptions{})
			once := settledDumpIn(t, l, nil)
			ensureIn(t, l, s, lay, PlumbOptions{})
			if diff := cmp.Diff(once, settledDumpIn(t, l, nil)); diff != "" {
				t.Errorf("building twice differs from building once (-once +twice):\n%s", diff)
			}
			checkBuilt(t, once, s, lay)
			do(t, l.Pod, func() error { return Adopt(lay) })

			// Read after plumbing (a restarted process without its saved
			// snapshot, or the legacy tier's sidecar): same MAC, MTU and
			// addresses, and the gateways back from the dummy's alias.
			after := takeIn(t, l)
			if !after.Plumbed || after.MAC.String() != s.MAC.String() || after.MTU != s.MTU ||
				fmt.Sprint(after.IPv4, after.IPv6) != fmt.Sprint(s.IPv4, s.IPv6) {
				t.Errorf("snapshot after plumbing = %+v, want Plumbed with MAC %s, MTU %d, addresses %v %v",
					after, s.MAC, s.MTU, s.IPv4, s.IPv6)
			}
			gws := func(s *Snapshot) string {
				return gatewayAlias(&Snapshot{Gateway4: s.Gateway4, Gateway6: s.Gateway6})
			}
			if got, want := gws(after), gws(s); got != want {
				t.Errorf("gateways read after plumbing = %q, want %q", got, want)
			}

			teardownIn(t, l, s, lay)
			if diff := cmp.Diff(before, settledDumpIn(t, l, nil)); diff != "" {
				t.Errorf("teardown did not restore the pod (-before +after):\n%s", diff)
			}
			teardownIn(t, l, s, lay)
			if diff := cmp.Diff(before, settledDumpIn(t, l, nil)); diff != "" {
				t.Errorf("second teardown changed the pod (-before +after):\n%s", diff)
			}
		})
	}
}

// checkBuilt asserts the managedTap layout in a dump taken after Ensure.
func checkBuilt(t *testing.T, d []string, s *Snapshot, lay Layout) {
	t.Helper()
	want := []string{
		fmt.Sprintf("link %s type bridge", lay.Bridge),
		fmt.Sprintf("link %s type veth", lay.Uplink),
		fmt.Sprintf("up true master %s learning false isolated false", lay.Bridge),
		fmt.Sprintf(" mac %s mtu %d up false master ", s.MAC, s.MTU),
		fmt.Sprintf("sysctl %s addr_gen_mode=1", lay.Bridge),
		fmt.Sprintf("sysctl %s addr_gen_mode=1", lay.Uplink),
	}
	if len(s.IPv4) > 0 {
		want = append(want, "sysctl arp_ignore=1")
	}
	for _, p := range append(s.IPv4, s.IPv6...) {
		want = append(want, fmt.Sprintf("addr %s %s scope 0", lay.Dummy, p))
	}
	if h := grep(d, "link "+lay.Dummy+" type "); len(h) != 1 ||
		!(strings.HasPrefix(h[0], "link "+lay.Dummy+" type dummy ") || strings.HasPrefix(h[0], "link "+lay.Dummy+" type ifb ")) {
		t.Errorf("dummy %s = %v, want one dummy (ifb without the dummy driver)", lay.Dummy, h)
	}
	all := strings.Join(d, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("built layout lacks %q; dump:\n%s", w, all)
		}
	}
	for _, name := range []string{lay.Bridge, lay.Uplink} {
		if a := grep(d, "addr "+name+" "); len(a) > 0 {
			t.Errorf("%s has addresses %v, want none", name, a)
		}
	}
	if strings.Contains(all, fmt.Sprintf("link %s type veth mac %s", lay.Uplink, s.MAC)) {
		t.Errorf("uplink %s kept the pod MAC %s", lay.Uplink, s.MAC)
	}
	if r := grep(grep(d, "route table 254"), "default"); len(r) > 0 {
		t.Errorf("default routes left after plumbing: %v", r)
	}
}

// TestEnsureResumes stops plumbing after each step, as a killed process
// would, and lets the next run complete it: the result must equal an
// uninterrupted build (random MACs aside), and teardown must still restore
// the pod exactly.
func TestEnsureResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 11 labs; skipped with -short")
	}
	stable := &dumpOpts{stable: []string{lab.KubeOVN.MAC, lab.KubeOVN.NodeMAC}}
	ref := newLab(t, lab.KubeOVN)
	refSnap := takeIn(t, ref)
	ensureIn(t, ref, refSnap, standInLayout(ref), PlumbOptions{})
	want := settledDumpIn(t, ref, stable)

	for n := 1; n < len(steps); n++ {
		t.Run(fmt.Sprintf("after %d %s", n, steps[n-1].name), func(t *testing.T) {
			l := newLab(t, lab.KubeOVN)
			before := settledDumpIn(t, l, nil)
			s := takeIn(t, l)
			lay := standInLayout(l)
			do(t, l.Pod, func() error { return applySteps(context.Background(), s, lay, PlumbOptions{}, n) })
			ensureIn(t, l, s, lay, PlumbOptions{})
			if diff := cmp.Diff(want, settledDumpIn(t, l, stable)); diff != "" {
				t.Errorf("resumed build differs from an uninterrupted one (-want +got):\n%s", diff)
			}
			teardownIn(t, l, s, lay)
			if diff := cmp.Diff(before, settledDumpIn(t, l, nil)); diff != "" {
				t.Errorf("teardown did not restore the pod (-before +after):\n%s", diff)
			}
		})
	}
}

// TestEnsureRealTap builds with a real tap instead of the lab's stand-in.
func TestEnsureRealTap(t *testing.T) {
	tests := []struct {
		name      string
		opts      PlumbOptions
		wantFlags string
		wantOwner string
	}{
		{"single queue", PlumbOptions{}, "flags 0x5000", "owner 107 group 107"},
		{"multi-queue root", PlumbOptions{Queues: 2, RootTap: true}, "flags 0x5100", "owner 0 group 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t, lab.KubeOVN)
			l.Pod.Run(t, "ip", "link", "del", l.Tap)
			before := settledDumpIn(t, l, nil)
			s := takeIn(t, l)
			lay := LayoutFor(l.Spec.PodIface, "")
			ensureIn(t, l, s, lay, tt.opts)
			d := settledDumpIn(t, l, nil)
			tap := grep(d, "link tap0 ")
			want := fmt.Sprintf("type tuntap mac random mtu %d up true master k6t-eth0 tun mode 2 %s %s persist true", s.MTU, tt.wantFlags, tt.wantOwner)
			if len(tap) != 1 || !strings.Contains(strings.Replace(tap[0], macOf(tap[0]), "random", 1), want) {
				t.Errorf("tap = %v, want %q", tap, want)
			}
			teardownIn(t, l, s, lay)
			if diff := cmp.Diff(before, settledDumpIn(t, l, nil)); diff != "" {
				t.Errorf("teardown did not restore the pod (-before +after):\n%s", diff)
			}
		})
	}
}

func macOf(line string) string {
	f := strings.Fields(line)
	for i := range f[:len(f)-1] {
		if f[i] == "mac" {
			return f[i+1]
		}
	}
	return ""
}

// TestAdoptReportsMismatch breaks a built layout and expects every broken
// link named with what was expected.
func TestAdoptReportsMismatch(t *testing.T) {
	l := newLab(t, lab.KubeOVN)
	s := takeIn(t, l)
	lay := standInLayout(l)
	ensureIn(t, l, s, lay, PlumbOptions{})
	l.Pod.Run(t, "ip", "link", "set", l.Tap, "nomaster")
	l.Pod.Run(t, "ip", "link", "set", "eth0", "master", "k6t-eth0")

	realTap := lay
	realTap.TapStandIn = false
	err := l.Pod.Do(func() error { return Adopt(realTap) })
	var got []string
	for _, e := range unwrapJoined(err) {
		var le *LayoutError
		if errors.As(e, &le) {
			got = append(got, le.Error())
		}
	}
	want := []string{
		`link "tap0": expected a tap, found type veth`,
		`link "eth0": expected a dummy outside any bridge, found master "k6t-eth0"`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Adopt errors (-want +got):\n%s\nfull error: %v", diff, err)
	}
	err = l.Pod.Do(func() error { return Adopt(lay) })
	if want := `link "tap0": expected a port of "k6t-eth0", found no master`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Adopt with stand-in = %v, want it to contain %q", err, want)
	}
}

func unwrapJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// TestAdoptKubeVirtLayout builds the layout as KubeVirt's managedTap does,
// with iproute2, and expects Adopt to accept it and Take to read the pod
// from the dummy.
func TestAdoptKubeVirtLayout(t *testing.T) {
	l := newLab(t, lab.KubeOVN)
	l.Pod.Run(t, "ip", "link", "del", l.Tap)
	p := l.Pod
	p.Run(t, "ip", "link", "add", "k6t-eth0", "type", "bridge")
	p.Run(t, "ip", "link", "set", "k6t-eth0", "up")
	p.Run(t, "ip", "link", "set", "eth0", "down")
	p.Run(t, "ip", "link", "set", "eth0", "name", "eth0-nic")
	p.Run(t, "ip", "addr", "flush", "dev", "eth0-nic")
	p.Run(t, "ip", "link", "set", "eth0-nic", "master", "k6t-eth0", "up")
	p.Run(t, "ip", "link", "set", "eth0-nic", "type", "bridge_slave", "learning", "off")
	p.Run(t, "ip", "tuntap", "add", "tap0", "mode", "tap", "user", "107", "group", "107", "multi_queue")
	p.Run(t, "ip", "link", "set", "tap0", "master", "k6t-eth0", "up")
	if _, err := p.Exec("ip", "link", "add", "eth0", "address", l.Spec.MAC, "mtu", fmt.Sprint(l.Spec.MTU), "type", "dummy"); err != nil {
		// A kernel without the dummy driver: ifb stands in, as in Ensure.
		p.Run(t, "ip", "link", "add", "eth0", "address", l.Spec.MAC, "mtu", fmt.Sprint(l.Spec.MTU), "type", "ifb")
	}
	p.Run(t, "ip", "addr", "add", l.Spec.IPv4, "dev", "eth0")
	p.Run(t, "ip", "addr", "add", l.Spec.IPv6, "dev", "eth0", "nodad")

	lay := LayoutFor("eth0", "")
	do(t, p, func() error { return Adopt(lay) })
	s := takeIn(t, l)
	if !s.Plumbed || s.MAC.String() != l.Spec.MAC || fmt.Sprint(s.IPv4, s.IPv6) != fmt.Sprintf("[%s] [%s]", l.Spec.IPv4, l.Spec.IPv6) {
		t.Errorf("Take on KubeVirt's layout = %+v, want plumbed, MAC %s, %s and %s", s, l.Spec.MAC, l.Spec.IPv4, l.Spec.IPv6)
	}
}

// TestAddServicePort checks the containment flags.
func TestAddServicePort(t *testing.T) {
	l := newLab(t, lab.KubeOVN)
	s := takeIn(t, l)
	lay := standInLayout(l)
	ensureIn(t, l, s, lay, PlumbOptions{})
	l.Pod.Run(t, "ip", "link", "add", "srv0", "type", "veth", "peer", "name", "srvp")
	var got [3]bool
	do(t, l.Pod, func() error {
		if err := AddServicePort(lay, "srvp"); err != nil {
			return err
		}
		var err error
		for i, n := range []string{"srvp", lay.Uplink, lay.Tap} {
			if got[i], err = Isolated(n); err != nil {
				return err
			}
		}
		return nil
	})
	if want := [3]bool{true, true, false}; got != want {
		t.Errorf("isolated (srvp, uplink, tap) = %v, want %v", got, want)
	}
}

// TestTeardownContinuesPastErrors: a VM port Teardown may not delete (a
// veth named like the tap, torn down without TapStandIn) is reported, and
// everything else is still restored, the pod interface first: the pod ends
// exactly as it started.
func TestTeardownContinuesPastErrors(t *testing.T) {
	l := newLab(t, lab.KubeOVN)
	before := settledDumpIn(t, l, nil)
	s := takeIn(t, l)
	lay := standInLayout(l)
	ensureIn(t, l, s, lay, PlumbOptions{})
	realTap := lay
	realTap.TapStandIn = false
	err := l.Pod.Do(func() error { return Teardown(s, realTap) })
	if want := `link "tap0": expected tuntap (to delete), found type veth`; err == nil || err.Error() != want {
		t.Errorf("Teardown = %v, want %q", err, want)
	}
	if diff := cmp.Diff(before, settledDumpIn(t, l, nil)); diff != "" {
		t.Errorf("teardown did not restore the pod (-before +after):\n%s", diff)
	}
}

// TestCheckBuildable: links in the way of the layout are refused before
// anything changes; the pristine pod and a layout Ensure built (or part
// of one) are not.
func TestCheckBuildable(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, l *lab.Lab, lay Layout)
		want    string
	}{
		{"pristine", func(*testing.T, *lab.Lab, Layout) {}, ""},
		{"built", func(t *testing.T, l *lab.Lab, lay Layout) { ensureIn(t, l, takeIn(t, l), lay, PlumbOptions{}) }, ""},
		{"uplink renamed, no dummy yet", func(t *testing.T, l *lab.Lab, lay Layout) {
			do(t, l.Pod, func() error { return applySteps(context.Background(), takeIn(t, l), lay, PlumbOptions{}, 3) })
		}, ""},
		// The lab's tap0 is a veth to the guest.
		{"tap not a tap", func(*testing.T, *lab.Lab, Layout) {}, `link "tap0": expected a tap, found type veth`},
		{"bridge not a bridge", func(t *testing.T, l *lab.Lab, lay Layout) {
			l.Pod.Run(t, "ip", "link", "add", lay.Bridge, "type", "veth", "peer", "name", "brp0")
		}, `link "k6t-eth0": expected a bridge, found type veth`},
		{"uplink name taken", func(t *testing.T, l *lab.Lab, lay Layout) {
			l.Pod.Run(t, "ip", "link", "add", lay.Uplink, "type", "veth", "peer", "name", "upp0")
		}, `link "eth0": expected a dummy (the uplink is renamed "eth0-nic"), found type veth`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, lab.KubeOVN)
			lay := LayoutFor(l.Spec.PodIface, "")
			if tc.name != "tap not a tap" {
				lay = standInLayout(l)
			}
			tc.prepare(t, l, lay)
			err := l.Pod.Do(func() error { return CheckBuildable(lay) })
			if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && got != tc.want) {
				t.Errorf("CheckBuildable = %v, want %q", err, tc.want)
			}
		})
	}
}
