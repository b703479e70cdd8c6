# dsbridge build, test and demo entry points. Every target that needs a
# package or tool installs it itself, so a fresh Debian 12 machine (as root)
# needs nothing but this repository and ../shared.

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(CURDIR)/.bin:$(PATH)
export CGO_ENABLED := 0

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)

# Pinned tool versions.
STATICCHECK       := honnef.co/go/tools/cmd/staticcheck@v0.8.2
PROTOC_GEN_GO     := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

# Debian packages: protoc for generate; real DHCP clients, capture and load
# tools for the network-namespace tests and the demo; etcd for the
# kube-apiserver that deploy/apiserver's test starts.
DEB_PACKAGES := git iproute2 util-linux libcap2-bin procps protobuf-compiler \
	isc-dhcp-client dhcpcd-base busybox-static ndisc6 tcpdump kea-admin \
	dnsmasq-base iputils-ping ethtool etcd-server

GO_TEST_FLAGS ?= -count=1 -timeout 25m

.PHONY: all build deps tools generate generate-bpf check-generate lint test test-deploy test-short bench perf fuzz-smoke demo clean image

all: build

build:
	go build -trimpath -ldflags '$(LDFLAGS)' -o bin/dsbridge ./cmd/dsbridge
	go build -trimpath -ldflags '$(LDFLAGS)' -o bin/dsbridge-cni ./cmd/dsbridge-cni

# deps installs the Debian packages the tests and the demo drive (skipped
# when all are already installed).
deps:
	@if ! dpkg -s $(DEB_PACKAGES) >/dev/null 2>&1; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEB_PACKAGES); \
	fi
	go mod download

tools:
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

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	go run $(STATICCHECK) ./...

# test runs every test: unit, fuzz seeds, network-namespace integration and
# the end-to-end lab (root needed for the last two).
test: deps check-generate lint
	go test $(GO_TEST_FLAGS) ./...
	$(MAKE) test-deploy

# test-deploy runs deploy/'s tests: the manifests decoded strictly, then
# applied to real kube-apiservers (1.34 and 1.36, built from
# k8s.io/kubernetes into $DSBRIDGE_CACHE/kube, default
# ~/.cache/dsbridge/kube, outside the repository) with KubeVirt v1.9.0's
# CRDs, admission and pod rendering.
test-deploy: deps
	cd deploy && go vet ./... && go test -count=1 -timeout 60m ./...

test-short:
	go test -short -count=1 ./...

bench:
	go test -run '^$$' -bench . -benchmem ./...

# perf runs perfdhcp against dsbridge and dnsmasq on the same lab, and times
# real guests from link up to configured under both (README, Performance).
perf: deps
	DSBRIDGE_PERF=1 go test -count=1 -run TestPerfdhcpVsDnsmasq -v ./dhcp/dhcp4/ ./dhcp/dhcp6/ | grep -E 'PERF|^(ok|FAIL|---)'
	DSBRIDGE_MEASURE=1 go test -count=1 -run TestMeasure -v ./e2e/ | grep -E 'MEASURE|^(ok|FAIL|---)' 

# fuzz-smoke runs every fuzz target briefly (FUZZTIME each).
FUZZTIME ?= 10s
fuzz-smoke:
	@for pkg in $$(go list ./...); do \
		for f in $$(go test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			go test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

demo: deps build
	go run ./e2e/demo --dsbridge bin/dsbridge

# image builds the sidecar and CNI installer images from the Containerfile
# with podman or docker (ENGINE), for TARGETARCH (amd64 or arm64).
IMAGE      ?= ghcr.io/dsbridge/dsbridge
CNI_IMAGE  ?= ghcr.io/dsbridge/dsbridge-cni
ENGINE     ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null)
TARGETARCH ?= $(shell go env GOARCH)
IMAGE_ARGS  = --platform linux/$(TARGETARCH) --build-arg VERSION=$(VERSION) \
	--build-arg COMMIT=$(COMMIT) --build-arg DATE=$(DATE) -f Containerfile

image:
	@test -n "$(ENGINE)" || { echo "make image needs podman or docker (set ENGINE)"; exit 1; }
	$(ENGINE) build $(IMAGE_ARGS) --target sidecar -t $(IMAGE):$(VERSION) .
	$(ENGINE) build $(IMAGE_ARGS) --target cni-installer -t $(CNI_IMAGE):$(VERSION) .

clean:
	rm -rf bin .bin
