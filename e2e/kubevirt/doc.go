// Package kubevirt plays the cluster around the real dsbridge binaries with
// KubeVirt v1.9.0's own, unmodified packages: virt-api's VMI mutation and
// validation, virt-handler's network phase 1 for managedTap, virt-launcher's
// hooks manager, converter, phase 2 and domain definition on a real libvirt
// (session mode, uid 107, in the pod's network namespace and a private mount
// namespace), a QEMU guest booted with KubeVirt's kernelBoot, KubeVirt's
// link-refresh and a live migration between two pods. Its tests need root,
// libvirt, QEMU and the guest that guest/build.sh makes; see the README.
//
// It is its own module so that KubeVirt's dependency tree stays out of the
// main module's go.mod.
package kubevirt
