# dsbridge build, test and demo entry points. Every target that needs a
# package or tool installs it itself, so a fresh Debian 12 machine (as root)
# needs nothing but this repository and ../shared.

SHELL := /bin/bash

# ---- Go toolchain (issue 19) ----------------------------------------------
# Go >= 1.26 from /usr/local/go/bin or PATH. Where there is none (a fresh
# Debian 12), go-toolchain fetches go$(GO_VERSION) as the Go module
# golang.org/toolchain with Debian's golang-go and unpacks it into
# GO_BOOT_DIR, inside this repository (.cache/, ignored by git); /usr/local
# is never touched. GO_TOOLCHAIN_SUM pins the module's go.sum hash.
GO_VERSION       := 1.26.8
GO_TOOLCHAIN_SUM := h1:ZOmGe1OnfREDMIdb1Qi4G9JSuDPBLGExZMQ4nis1RXM=
GO_BOOT_DIR      := $(CURDIR)/.cache/go$(GO_VERSION)
export PATH := $(GO_BOOT_DIR)/bin:/usr/local/go/bin:$(HOME)/go/bin:$(CURDIR)/.bin:$(PATH)
export CGO_ENABLED := 0

.PHONY: go-toolchain
go-toolchain:
	@.ci/go-bootstrap.sh $(GO_BOOT_DIR) $(GO_VERSION) $(GO_TOOLCHAIN_SUM)
# ---- end Go toolchain ------------------------------------------------------

# Version stamps, expanded when a recipe uses them (after deps installed
# git on a fresh machine). DATE is the commit's time, or SOURCE_DATE_EPOCH
# when set, not the build's: the same sources give the same binaries and
# the same image digests.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
DATE    ?= $(shell date -u -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS = -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
# GO_BUILD_FLAGS as cmd/internal/image BuildFlags: grpcnotrace leaves grpc's
# x/net/trace (and html/template) out of dsbridge, about 3 MB.
GO_BUILD_FLAGS := -trimpath -tags grpcnotrace

# Pinned tool versions.
STATICCHECK       := honnef.co/go/tools/cmd/staticcheck@v0.8.2
PROTOC_GEN_GO     := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

# Debian packages: protoc for generate; real DHCP clients, capture and load
# tools for the network-namespace tests and the demo; ca-certificates for
# the Go module proxy (a minimal Debian lacks it); podman and runc to run
# the images (image tests, make image; Debian 12's crun refuses this
# machine's hybrid cgroup layout); etcd for the kube-apiservers that
# deploy/apiserver's test starts.
DEB_PACKAGES := ca-certificates git iproute2 util-linux libcap2-bin procps protobuf-compiler \
	isc-dhcp-client dhcpcd-base busybox-static ndisc6 tcpdump kea-admin \
	dnsmasq-base iputils-ping ethtool coreutils podman runc etcd-server

GO_TEST_FLAGS ?= -count=1 -timeout 25m

# e2e/kubevirt (its own module) runs KubeVirt v1.9.0's own code, a real
# libvirt (session mode) and QEMU (TCG) around the dsbridge binaries:
# libvirt's Go binding is cgo (libvirt-dev, gcc), and its guest is built
# from Debian's kernel package and .ci/busybox.sh's busybox (dpkg-dev,
# bzip2, xz-utils, patch; cpio, kmod).
KUBEVIRT_DEB_PACKAGES := libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 libvirt-dev \
	gcc libc6-dev pkg-config make dpkg-dev bzip2 xz-utils patch cpio kmod
KUBEVIRT_TEST_FLAGS ?= -count=1 -timeout 40m

.PHONY: all build deps deps-kubevirt test-kubevirt tools generate generate-bpf check-generate lint test test-deploy test-short bench perf fuzz-smoke demo clean image image-containerfile fresh-check go-toolchain

all: build

build: go-toolchain
	go build $(GO_BUILD_FLAGS) -ldflags '$(LDFLAGS)' -o bin/dsbridge ./cmd/dsbridge
	go build $(GO_BUILD_FLAGS) -ldflags '$(LDFLAGS)' -o bin/dsbridge-cni ./cmd/dsbridge-cni

# deps installs the Debian packages the tests and the demo drive (skipped
# when all are already installed).
deps: go-toolchain
	@if ! dpkg -s $(DEB_PACKAGES) >/dev/null 2>&1; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEB_PACKAGES); \
	fi
	go mod download

tools: go-toolchain
	@mkdir -p .bin
	GOBIN=$(CURDIR)/.bin go install $(PROTOC_GEN_GO)
	GOBIN=$(CURDIR)/.bin go install $(PROTOC_GEN_GO_GRPC)

# BPF_CLANG_DEB pins the compiler of the kernel RA responder's object
# (ra/kernel/responder.o): the same clang gives the same bytes.
BPF_CLANG_DEB := clang-16=1:16.0.6-15~deb12u1 llvm-16=1:16.0.6-15~deb12u1

generate: tools generate-bpf
	cd hooks/proto && protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		info/api_info.proto v1alpha2/api_v1alpha2.proto v1alpha3/api_v1alpha3.proto

# generate-bpf compiles the kernel RA responder (ra/kernel/gen.go).
generate-bpf:
	@dpkg -s clang-16 llvm-16 >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(BPF_CLANG_DEB); }
	go generate ./ra/kernel

# check-generate fails when the committed generated code is stale.
check-generate: generate
	@git diff --exit-code -- hooks/proto ra/kernel || { echo "generated code is stale: run 'make generate' and commit"; exit 1; }

# lint: gofmt, go vet, staticcheck, and the repository's own rules
# (.ci/lint-tree: no build outputs or files over 1 MB in git, netlink dumps
# only through netsetup.RetryDump, "error" as the log key, constant log
# messages, no hand-written netip comparers).
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	.ci/lint-tree
	go vet ./...
	go run $(STATICCHECK) ./...

# test runs every test: unit, fuzz seeds, network-namespace integration and
# the end-to-end lab (root needed for the last two).
test: deps busybox-udhcpc6 check-generate lint
	go test $(GO_TEST_FLAGS) ./...
	$(MAKE) test-deploy
	$(MAKE) test-kubevirt

# test-deploy runs deploy/'s tests: the manifests decoded strictly, then
# applied to real kube-apiservers (1.34 and 1.36, built from
# k8s.io/kubernetes into $DSBRIDGE_CACHE/kube, default
# ~/.cache/dsbridge/kube, outside the repository) with KubeVirt v1.9.0's
# CRDs, admission and pod rendering.
test-deploy: deps
	cd deploy && go vet ./... && go test -count=1 -timeout 60m ./...

# deps-kubevirt installs what e2e/kubevirt needs beyond deps.
deps-kubevirt: deps
	@if ! dpkg -s $(KUBEVIRT_DEB_PACKAGES) >/dev/null 2>&1; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(KUBEVIRT_DEB_PACKAGES); \
	fi
	cd e2e/kubevirt && go mod download

# test-kubevirt runs e2e/kubevirt alone (README, "KubeVirt's own code"):
# cgo on for libvirt's binding; the guest is built on first use into
# ~/.cache/dsbridge/kubevirt-guest (DSBRIDGE_GUEST_CACHE overrides it).
test-kubevirt: deps-kubevirt
	cd e2e/kubevirt && CGO_ENABLED=1 go vet ./... && CGO_ENABLED=1 go test $(KUBEVIRT_TEST_FLAGS) ./...

# busybox-udhcpc6 builds busybox from Debian's own source package with
# udhcpc6 enabled (Debian's busybox binaries have none) into
# .cache/busybox/busybox (.ci/busybox.sh; a second run rebuilds nothing):
# the e2e migration rows run its udhcpc6 (DSBRIDGE_BUSYBOX overrides the
# path). The source comes from the machine's Debian mirrors through a
# private apt state with deb-src entries, so the host's apt stays as it is.
BUSYBOX_DEB_PACKAGES := dpkg-dev gcc make libc6-dev bzip2 xz-utils patch
.PHONY: busybox-udhcpc6
busybox-udhcpc6: deps
	@dpkg -s $(BUSYBOX_DEB_PACKAGES) >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(BUSYBOX_DEB_PACKAGES); }
	.ci/busybox.sh $(CURDIR)/.cache/busybox

test-short: go-toolchain
	go test -short -count=1 ./...

# bench prints ns/op, B/op and allocs/op of every benchmark: the DHCP
# handlers (BenchmarkDORA, BenchmarkSARR, ...), their whole packet-server
# loops (BenchmarkPacketServerDORA/SARR), the frame path (BenchmarkPacketConn,
# root), the status recording per exchange (BenchmarkObserveDORA/SARR), RA,
# the hooks.
bench:
	go test -run '^$$' -bench . -benchmem ./...

# perf measures dsbridge against dnsmasq on the same lab, alternating, and
# prints one table of every ratio of issue 17 (README, Performance): CPU per
# exchange and, from a perf profile of each server, where it goes per
# request; sustained perfdhcp rates, floods, the Go memory limit, idle
# memory and size, OnDefineDomain, time to address per client and tier. It
# asserts no timing (tests of its own machinery run in make test).
# PERF_RUNS runs make each median; the whole log goes to bin/perf.log.
# udhcpc6 is timed with make busybox-udhcpc6's busybox (DSBRIDGE_BUSYBOX
# overrides it). About 17 minutes on 2 cores.
PERF_RUNS ?= 5
# linux-perf profiles both servers for the table's CPU breakdown.
PERF_DEB_PACKAGES := linux-perf
perf: deps busybox-udhcpc6
	@if ! dpkg -s $(PERF_DEB_PACKAGES) >/dev/null 2>&1; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(PERF_DEB_PACKAGES); \
	fi
	@mkdir -p bin
	DSBRIDGE_PERF=1 DSBRIDGE_PERF_RUNS=$(PERF_RUNS) DSBRIDGE_PERF_TABLE=$(CURDIR)/bin/perf.md \
		go test -count=1 -timeout 120m -run '^TestPerf$$' -v ./e2e/ > bin/perf.log 2>&1 || { tail -40 bin/perf.log; exit 1; }
	@cat bin/perf.md

# fuzz-smoke runs every fuzz target briefly (FUZZTIME each). Minimizing
# each new input is capped (FUZZMINIMIZETIME; Go's default is 60 s): with
# the default, hooks' FuzzOnDefineDomain spent a 5-minute run minimizing
# and executed 78 inputs (one worker); with 2 s (two workers) it ran
# 420,000 in its first 90 s.
FUZZTIME ?= 10s
FUZZMINIMIZETIME ?= 2s
fuzz-smoke:
	@for pkg in $$(go list ./...); do \
		for f in $$(go test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			go test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg || exit 1; \
		done; \
	done

demo: deps build
	go run ./e2e/demo --dsbridge bin/dsbridge

# ---- Images (issue 19) ------------------------------------------------------
# image builds the sidecar and CNI installer images without any registry or
# container build: static stamped binaries on an empty root, the sidecar's
# full-tier file capabilities (permitted only), non-root USER, written as
# reproducible OCI archives (IMAGE_DIR/dsbridge.oci.tar,
# IMAGE_DIR/dsbridge-cni.oci.tar: same sources, same digests; cmd/mkimage) and
# loaded into the local podman as IMAGE:VERSION and CNI_IMAGE:VERSION.
# image-containerfile builds the same images from the Containerfile with
# podman or docker (ENGINE) where a registry is reachable.
IMAGE      ?= ghcr.io/dsbridge/dsbridge
CNI_IMAGE  ?= ghcr.io/dsbridge/dsbridge-cni
IMAGE_DIR  ?= bin/image
ENGINE     ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null)
TARGETARCH ?= $(shell go env GOARCH)
IMAGE_ARGS  = --platform linux/$(TARGETARCH) --build-arg VERSION=$(VERSION) \
	--build-arg COMMIT=$(COMMIT) --build-arg DATE=$(DATE) -f Containerfile

.PHONY: image image-containerfile
image: go-toolchain
	@dpkg -s podman runc >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends podman runc; }
	go run ./cmd/mkimage -out $(IMAGE_DIR) -arch $(TARGETARCH) -version '$(VERSION)' -commit '$(COMMIT)' -date '$(DATE)' \
		-sidecar-ref $(IMAGE):$(VERSION) -cni-ref $(CNI_IMAGE):$(VERSION)
	podman load --input $(IMAGE_DIR)/dsbridge.oci.tar
	podman load --input $(IMAGE_DIR)/dsbridge-cni.oci.tar

image-containerfile:
	@test -n "$(ENGINE)" || { echo "make image-containerfile needs podman or docker (set ENGINE)"; exit 1; }
	$(ENGINE) build $(IMAGE_ARGS) --target sidecar -t $(IMAGE):$(VERSION) .
	$(ENGINE) build $(IMAGE_ARGS) --target cni-installer -t $(CNI_IMAGE):$(VERSION) .
# ---- end images ---------------------------------------------------------------

clean:
	rm -rf bin .bin

# ---- Fresh-machine check (issue 19) ---------------------------------------
# fresh-check runs the README's two commands (FRESH_STEPS, default "demo
# test") in a fresh Debian 12 root filesystem built by debootstrap from this
# machine's Debian mirror, in a chroot with nothing of this machine's Go;
# it prints each step's time (.ci/fresh-check.sh). It checks HEAD:
# commit first. Takes a while: debootstrap plus cold builds of everything.
.PHONY: fresh-check
fresh-check:
	.ci/fresh-check.sh
# ---- end fresh-machine check ----------------------------------------------
