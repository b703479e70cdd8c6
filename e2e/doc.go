// Package e2e holds dsbridge's end-to-end suite: the standard network
// namespace lab (gateway, pod, guest) with real DHCP clients and the guest
// kernel's own RA handling, driving the built dsbridge binary as an operator
// would (serve) and as KubeVirt would (sidecar, through the fake
// virt-launcher).
package e2e
