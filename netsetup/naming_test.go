package netsetup

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLayoutFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		podIface string
		tap      string
		want     Layout
	}{
		{"primary", "eth0", "", Layout{PodIface: "eth0", Bridge: "k6t-eth0", Uplink: "eth0-nic", Tap: "tap0", Dummy: "eth0"}},
		{"multus", "poda7662f44d65", "", Layout{PodIface: "poda7662f44d65", Bridge: "k6t-a7662f44d65", Uplink: "a7662f44d65-nic", Tap: "tapa7662f44d65", Dummy: "poda7662f44d65"}},
		{"legacy ordinal", "net1", "", Layout{PodIface: "net1", Bridge: "k6t-net1", Uplink: "net1-nic", Tap: "tap1", Dummy: "net1"}},
		{"explicit tap", "eth0", "vmport0", Layout{PodIface: "eth0", Bridge: "k6t-eth0", Uplink: "eth0-nic", Tap: "vmport0", Dummy: "eth0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, LayoutFor(tt.podIface, tt.tap)); diff != "" {
				t.Errorf("LayoutFor(%q, %q) (-want +got):\n%s", tt.podIface, tt.tap, diff)
			}
			for _, n := range []string{tt.want.Bridge, tt.want.Uplink, tt.want.Tap} {
				if len(n) > 15 {
					t.Errorf("link name %q longer than IFNAMSIZ-1", n)
				}
			}
		})
	}
}
