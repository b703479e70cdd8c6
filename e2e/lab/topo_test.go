package lab

import (
	"strings"
	"testing"
)

// TestLabPodReachesOffLink checks each variant's pod, as the CNI left it,
// reaches the off-link targets through its default routes in both families.
func TestLabPodReachesOffLink(t *testing.T) {
	for _, spec := range []PodSpec{KubeOVN, Calico} {
		t.Run(spec.Name, func(t *testing.T) {
			l := NewLab(t, spec)
			for _, dst := range []string{OffLink4, OffLink6} {
				out := l.Pod.Run(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", dst)
				if !strings.Contains(out, " 0% packet loss") {
					t.Errorf("pod ping %s:\n%s", dst, out)
				}
			}
			if got := MTU(t, l.Pod, spec.PodIface); got != spec.MTU {
				t.Errorf("pod MTU = %d, want %d", got, spec.MTU)
			}
		})
	}
}
