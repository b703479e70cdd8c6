// Package image defines dsbridge's two container images, the KubeVirt
// binding sidecar and the binding CNI's installer, and writes them as
// reproducible OCI image archives (OCI image-spec v1.1: image layout,
// manifest, config, one layer) without a registry or a container engine.
// The Containerfile at the repository root builds the same images where a
// registry is reachable; containerfile_test.go checks the two agree.
package image
