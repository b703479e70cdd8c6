// Package netsetup reads the pod's network as the CNI left it (the
// snapshot), builds or adopts the bridge and tap layout KubeVirt's managedTap
// builds, and probes which privileges this process has.
package netsetup
