package naming

import "testing"

// TestNames pins the names against KubeVirt's own unit tests
// (pkg/network/namescheme: "network1" -> poda7662f44d65, "default" ->
// pod37a8eec1ce1) and managedTap's link names.
func TestNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		network, podIface, tap, bridge, uplink string
	}{
		{"", "eth0", "tap0", "k6t-eth0", "eth0-nic"},
		{"network1", "poda7662f44d65", "tapa7662f44d65", "k6t-a7662f44d65", "a7662f44d65-nic"},
		{"default", "pod37a8eec1ce1", "tap37a8eec1ce1", "k6t-37a8eec1ce1", "37a8eec1ce1-nic"},
	}
	for _, tt := range tests {
		pod := PrimaryPodInterface
		if tt.network != "" {
			pod = HashedPodInterface(tt.network)
		}
		got := [4]string{pod, Tap(pod, IsSecondary(pod)), Bridge(pod), Uplink(pod)}
		if want := [4]string{tt.podIface, tt.tap, tt.bridge, tt.uplink}; got != want {
			t.Errorf("network %q: names %v, want %v", tt.network, got, want)
		}
		if !IsPodInterface(pod) {
			t.Errorf("IsPodInterface(%q) = false", pod)
		}
	}
	if got := Tap(OrdinalPodInterface(1), true); got != "tap1" {
		t.Errorf("Tap(net1) = %q, want tap1", got)
	}
	if got := Tap("pod37a8eec1ce1", false); got != PrimaryTap {
		t.Errorf("Tap of a Multus default network = %q, want %s", got, PrimaryTap)
	}
	for _, name := range []string{"eth1", "pod123", "lo", "net", "k6t-eth0"} {
		if IsPodInterface(name) {
			t.Errorf("IsPodInterface(%q) = true", name)
		}
	}
}
