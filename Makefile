# ecom-agent's build. The two commands that matter:
#   make demo   three test hosts, the .deb on each, join, status (the main job)
#   make test   every check and test: lint, unit tests, the real-systemd e2e suite
SHELL := /bin/bash
.DEFAULT_GOAL := build

GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
MODULE      := github.com/ecom-platform/ecom-agent
COMMIT      ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS     := -s -w -X $(MODULE)/buildinfo.Version=$(VERSION) -X $(MODULE)/buildinfo.Commit=$(COMMIT)
BIN_DIR     := bin
AGENT       := $(BIN_DIR)/ecom-agent
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# gotestsum prints each e2e test with its duration, and a failing
# test's whole output (go test -v would print every passing test's too).
GOTESTSUM := gotest.tools/gotestsum@v1.13.0
# The test hosts' Debian root filesystem lives outside the repo, cached per
# machine (built once, about two minutes).
export ECOM_TESTHOST_CACHE ?= /var/cache/ecom-agent-testhost

.PHONY: build test unit e2e bench fuzz lint fmt rootfs kube-bins containerd-bins demo demo-down clean e2e-suite e2e-images conformance platform-images platform-deb platform-test platform-repro

# A static binary: no cgo, so it runs on any glibc or musl host.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(AGENT) ./cmd/ecom-agent

# In this order even under make -j: the unit tests run against the
# Kubernetes build, so it comes first.
test: lint kube-bins
	$(MAKE) --no-print-directory unit deb-test platform-test e2e

# Fast tests: `go test ./...`, a few minutes at most, with no build first.
# The seeding and control-plane tests run the real kube-apiserver from
# `make kube-bins` when it is in the cache (make test builds it first);
# without it they skip, saying so.
unit:
	ECOM_KUBE_BIN=$$(test -x $(KUBE_DIR)/kube-apiserver && echo $(KUBE_DIR)) $(GO) test -count=1 ./...
	cd images/log-shipper && $(GO) test -count=1 ./...

# The end-to-end suite on real-systemd test hosts (needs root), with the
# packages (lintian-clean) for the admin's path and an upgrade of them.
e2e: build rootfs kube-bins containerd-bins lintian deb-upgrade e2e-suite e2e-images platform-images
	ECOM_AGENT_BIN=$(CURDIR)/$(AGENT) ECOM_KUBE_BIN=$$(tools/kube/build.sh) ECOM_CONTAINERD_BIN=$$(tools/containerd/build.sh) \
	  ECOM_E2E_SUITE=$$(tools/e2e/build.sh) ECOM_E2E_IMAGES=$$(tools/e2e/images.sh) ECOM_PLATFORM_IMAGES=$$(tools/platform/images.sh) \
	  ECOM_DEB_DIR=$(CURDIR)/$(DEB_OUT) ECOM_DEB_UPGRADE_DIR=$(CURDIR)/$(DEB_OUT)/upgrade ECOM_IMAGES_DIR=$(CURDIR)/out/images \
	  $(GO) run $(GOTESTSUM) --format testname -- -count=1 -tags e2e -timeout 80m -p 1 ./integration/... ./units/...

# Fuzzing of what comes from outside: the RPC envelope, gossip metadata and
# the config file, FUZZTIME each. `make unit` runs their committed seeds
# (testdata/fuzz) as ordinary tests.
FUZZTIME ?= 1m
fuzz:
	$(GO) test ./peer -run '^$$' -fuzz '^FuzzOpenEnvelope$$' -fuzztime $(FUZZTIME)
	$(GO) test ./gossip -run '^$$' -fuzz '^FuzzDecodeMeta$$' -fuzztime $(FUZZTIME)
	$(GO) test ./config -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./token -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)

# Benchmarks: figures, not assertions (see the README's "Measured").
# The gossip plot goes to docs/bench/gossip-scale.png (shown in the README).
bench: build rootfs kube-bins deb
	$(GO) test -run '^$$' -bench BenchmarkControlPlanePKI -benchmem ./pki/
	ECOM_KUBE_BIN=$$(tools/kube/build.sh) ECOM_DEB_DIR=$(CURDIR)/$(DEB_OUT) ECOM_AGENT_BIN=$(CURDIR)/$(AGENT) \
	  ECOM_BENCH_OUT=$(CURDIR)/docs/bench \
	  $(GO) test -tags bench -run '^$$' -bench . -benchtime 1x -timeout 120m -v ./bench/

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	# One pass with both tags sees every file (none is built only
	# without them): a third of the time of a pass per tag.
	$(GO) vet -tags e2e,bench ./...
	$(GO) run $(STATICCHECK) -tags e2e,bench ./...
	cd images/log-shipper && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
# kube-proxy built from k8s.io/kubernetes at the version pinned in
# tools/kube/go.mod, cached outside the repo by version (10 to 45 minutes
# cold on 2 cores, depending on downloads and load; a second warm). Prints the cache directory.
export ECOM_KUBE_CACHE ?= /var/cache/ecom-agent-kube
kube-bins:
	tools/kube/build.sh

# containerd 2.x (containerd, the runc shim, ctr) for every node's kubelet,
# built from the module proxy and cached like the Kubernetes binaries.
export ECOM_CONTAINERD_CACHE ?= /var/cache/ecom-agent-containerd
containerd-bins:
	tools/containerd/build.sh

rootfs:
	integration/testhost/build-rootfs.sh

# The upstream e2e suite (e2e.test, ginkgo, agnhost, sample-apiserver) from
# the pinned k8s.io/kubernetes module, cached like the Kubernetes binaries
# (15 to 25 minutes cold), and the images its conformance specs run, built
# from Debian's packages and Go (a few minutes cold); docs/conformance.md.
export ECOM_E2E_CACHE ?= /var/cache/ecom-agent-e2e
e2e-suite:
	tools/e2e/build.sh
e2e-images: e2e-suite
	tools/e2e/images.sh

# The whole [Conformance] set on three control-plane and two worker test
# hosts from the packages: reports and summary in docs/conformance/.
conformance:
	$(GO) run ./integration/cmd/conformance -repo $(CURDIR) -report $(CURDIR)/docs/conformance

# Three control-plane and two worker test hosts from dpkg -i to a seeded cluster; they
# stay up (make demo-down removes them). Builds what is missing first.
demo:
	$(GO) run ./integration/cmd/demo up -repo $(CURDIR)

demo-down:
	$(GO) run ./integration/cmd/demo down

clean:
	rm -rf $(BIN_DIR) out

# ---- Debian packages (issue 8): packaging/deb, built with nfpm as a library
# by packaging/cmd/mkdeb (its own module, so nfpm stays out of go.mod).
#   make deb       out/ecom-agent_<version>_amd64.deb, always rebuilt (seconds
#                  once the binary is built), and
#                  out/ecom-agent-kubernetes_<k8s version>-1_amd64.deb and
#                  out/ecom-agent-containerd_<containerd version>-1_amd64.deb,
#                  rebuilt only when a binary or its packaging is newer
#   make lintian   lintian on both (installs lintian if missing)
#   make deb-test  the packaging module's tests: the packages built twice
#                  from the same inputs must be byte-identical
# The packages are reproducible: every mtime is the commit time, owners are
# root:root, entries are sorted, gzip carries no name or time.
.PHONY: deb deb-packages deb-upgrade lintian deb-test
DEB_OUT       := out
DEB_TMP       := $(DEB_OUT)/.build
MKDEB         := $(DEB_TMP)/mkdeb
DEB_AGENT_BIN := $(DEB_TMP)/ecom-agent
KUBE_VERSION  := $(shell awk '$$1=="require" && $$2=="k8s.io/kubernetes" {sub(/^v/, "", $$3); print $$3}' tools/kube/go.mod)
KUBE_DEB      := $(DEB_OUT)/ecom-agent-kubernetes_$(KUBE_VERSION)-1_amd64.deb
# make deb passes the directory tools/kube/build.sh prints.
KUBE_DIR      ?= $(ECOM_KUBE_CACHE)/v$(KUBE_VERSION)
CONTAINERD_VERSION := $(shell awk -v m=github.com/containerd/containerd/v2 '($$1=="require" && $$2==m) {sub(/^v/, "", $$3); print $$3; exit} ($$1==m) {sub(/^v/, "", $$2); print $$2; exit}' tools/containerd/go.mod)
CONTAINERD_DEB     := $(DEB_OUT)/ecom-agent-containerd_$(CONTAINERD_VERSION)-1_amd64.deb
CONTAINERD_DIR     ?= $(ECOM_CONTAINERD_CACHE)/v$(CONTAINERD_VERSION)
CONTAINERD_NAMES   := containerd containerd-shim-runc-v2 ctr crictl
KUBE_NAMES    := kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl
# data.tar compression, measured on the 530 MB of Kubernetes binaries (2
# cores, packaging/README.md): gzip -6 20 s, 152 MB; gzip -9 (nfpm's
# default) 53 s for 1% less; gzip -1 12 s, 176 MB; xz (pure Go) 115 s,
# 126 MB; zstd 7-12 s, 132-140 MB, but Debian 12's lintian calls
# data.tar.zst a malformed archive (an error), so not zstd.
DEB_COMPRESSION      ?= gzip:6
KUBE_DEB_COMPRESSION ?= gzip:6

# The Kubernetes binaries first (a second when built), then the packages,
# in a second make that sees where they are.
deb:
	@kube=$$(tools/kube/build.sh) && containerd=$$(tools/containerd/build.sh) && \
	  $(MAKE) --no-print-directory deb-packages KUBE_DIR="$$kube" CONTAINERD_DIR="$$containerd"

# The images every node imports (the pod sandbox and the add-ons), shipped
# in ecom-agent-images, of the agent's version (the agent depends on it).
NODE_IMAGES := pause.tar coredns.tar local-path-provisioner.tar volume-helper.tar metrics-server.tar

deb-packages: $(MKDEB) images
	@mkdir -p $(DEB_TMP)
	set -e; export SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct); \
	  version=$$($(MKDEB) version -describe "$$(git describe --tags --always --dirty)"); \
	  CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false \
	    -ldflags '-s -w -X $(MODULE)/buildinfo.Commit=$(COMMIT) -X $(MODULE)/buildinfo.Version='"$$version" -o $(DEB_AGENT_BIN) ./cmd/ecom-agent; \
	  rm -f $(DEB_OUT)/ecom-agent_*_amd64.deb; \
	  rm -f $(DEB_OUT)/ecom-agent-images_*_amd64.deb; \
	  $(MKDEB) agent -version "$$version" -binary $(DEB_AGENT_BIN) -config packaging/config.toml \
	    -kube-version $(KUBE_VERSION) -compression $(DEB_COMPRESSION) \
	    -staging $(DEB_TMP)/stage-agent -out $(DEB_OUT); \
	  $(MKDEB) images -version "$$version" $(addprefix -image out/images/,$(NODE_IMAGES)) -compression $(DEB_COMPRESSION) \
	    -staging $(DEB_TMP)/stage-images -out $(DEB_OUT)
	@$(MAKE) --no-print-directory $(KUBE_DEB) $(CONTAINERD_DEB)

# The platform's images (images/platform: Debian 12 roots by mmdebstrap, the
# apps of platform/, kube-state-metrics and the log shipper from Go), cached
# outside the repo by their inputs (tools/platform/images.sh), and their
# package ecom-agent-platform-images, rebuilt only when the archives change:
# out/.build/platform-images.key holds the cache key it was built from.
# The archives' layers are gzip already: compressing them again saves
# nothing, and lintian refuses an uncompressed data.tar, so the fastest gzip.
PLATFORM_DEB_COMPRESSION ?= gzip:1
platform-images:
	tools/platform/images.sh

# The platform's images are reproducible like the packages: builds the
# roots and the archives again in an empty temporary cache, with the same
# SOURCE_DATE_EPOCH, and compares every root tar and archive, sha256 by
# sha256, with the cached build (building that first if missing). Exits 1
# on any difference, 2 when Debian's mirror moved a package between the
# two (a different input). Needs root and the mirror; about a quarter of an
# hour (docs/testing.md). Not part of make test: it builds everything twice.
platform-repro:
	tools/platform/repro.sh

# The reference apps' own tests (platform/test.sh) against a real PostgreSQL
# and Redis in a cached Debian root.
platform-test:
	tools/platform/apptest.sh

platform-deb: $(MKDEB)
	@set -e; dir=$$(tools/platform/images.sh); key="$$(basename "$$dir") $(PLATFORM_DEB_COMPRESSION)"; \
	  if [[ -f $(DEB_TMP)/platform-images.key && "$$(cat $(DEB_TMP)/platform-images.key)" == "$$key" ]] && ls $(DEB_OUT)/ecom-agent-platform-images_*_amd64.deb >/dev/null 2>&1; then exit 0; fi; \
	  export SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct -- platform images tools/platform); \
	  version=$$($(MKDEB) version -describe "$$(git describe --tags --always --dirty)"); \
	  rm -f $(DEB_OUT)/ecom-agent-platform-images_*_amd64.deb; \
	  $(MKDEB) platform-images -version "$$version" $$(printf -- '-image %s ' "$$dir"/*.tar) -compression $(PLATFORM_DEB_COMPRESSION) \
	    -staging $(DEB_TMP)/stage-platform -out $(DEB_OUT); \
	  echo "$$key" > $(DEB_TMP)/platform-images.key

# Dated with the last commit that touched the Kubernetes build or packaging,
# so unrelated commits do not change this package's bytes.
$(KUBE_DEB): $(addprefix $(KUBE_DIR)/,$(KUBE_NAMES)) $(MKDEB) $(wildcard packaging/deb/files/ecom-agent-kubernetes/*)
	rm -f $(DEB_OUT)/ecom-agent-kubernetes_*_amd64.deb
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct -- tools/kube packaging) \
	  $(MKDEB) kube -version $(KUBE_VERSION)-1 -bin-dir $(KUBE_DIR) -compression $(KUBE_DEB_COMPRESSION) \
	    -staging $(DEB_TMP)/stage-kube -out $(DEB_OUT)

$(CONTAINERD_DEB): $(addprefix $(CONTAINERD_DIR)/,$(CONTAINERD_NAMES)) $(MKDEB) $(wildcard packaging/deb/files/ecom-agent-containerd/*)
	rm -f $(DEB_OUT)/ecom-agent-containerd_*_amd64.deb
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct -- tools/containerd packaging) \
	  $(MKDEB) containerd -version $(CONTAINERD_VERSION)-1 -bin-dir $(CONTAINERD_DIR) \
	    -staging $(DEB_TMP)/stage-containerd -out $(DEB_OUT)

$(MKDEB): $(shell find packaging -name '*.go' -o -name go.mod -o -name go.sum) $(shell find packaging/deb/files -type f)
	@mkdir -p $(DEB_TMP)
	cd packaging && CGO_ENABLED=0 $(GO) build -trimpath -o ../$(MKDEB) ./cmd/mkdeb

# Debian 12's lintian: fails on errors and warnings, shows infos; overrides
# are in packaging/deb/files/*/lintian-overrides, each with its reason.
# Typos lintian finds in strings of the Kubernetes, etcd and other Go
# modules linked in (info tags, dozens of them) are not shown.
lintian: deb platform-deb
	@if ! command -v lintian >/dev/null; then \
	  echo "installing lintian" >&2; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends lintian >&2 || { \
	    apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends lintian >&2; }; \
	fi
	lintian --fail-on error,warning --display-info --suppress-tags spelling-error-in-binary $(DEB_OUT)/ecom-agent_*_amd64.deb $(DEB_OUT)/ecom-agent-images_*_amd64.deb $(KUBE_DEB) $(CONTAINERD_DEB) \
	  $(wildcard $(DEB_OUT)/ecom-agent-platform-images_*_amd64.deb)

# The same commit packaged with a higher version, beside the same
# Kubernetes package: what the e2e suite upgrades to.
deb-upgrade: deb
	set -e; export SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct); \
	  version=$$($(MKDEB) version -describe "$$(git describe --tags --always --dirty)")+e2e1; \
	  CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false \
	    -ldflags '-s -w -X $(MODULE)/buildinfo.Commit=$(COMMIT) -X $(MODULE)/buildinfo.Version='"$$version" -o $(DEB_TMP)/ecom-agent-upgrade ./cmd/ecom-agent; \
	  rm -rf $(DEB_OUT)/upgrade; mkdir -p $(DEB_OUT)/upgrade; \
	  $(MKDEB) agent -version "$$version" -binary $(DEB_TMP)/ecom-agent-upgrade -config packaging/config.toml \
	    -kube-version $(KUBE_VERSION) -compression $(DEB_COMPRESSION) \
	    -staging $(DEB_TMP)/stage-upgrade -out $(DEB_OUT)/upgrade; \
	  $(MKDEB) images -version "$$version" $(addprefix -image out/images/,$(NODE_IMAGES)) -compression $(DEB_COMPRESSION) \
	    -staging $(DEB_TMP)/stage-upgrade-images -out $(DEB_OUT)/upgrade; \
	  ln -f $(DEB_OUT)/ecom-agent-kubernetes_*_amd64.deb $(DEB_OUT)/ecom-agent-containerd_*_amd64.deb $(DEB_OUT)/upgrade/

deb-test:
	cd packaging && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./... && $(GO) test -count=1 ./...

# ---- Container images (images/): the nodes are air-gapped, so the agent
# imports image archives into containerd's k8s.io namespace instead of
# pulling. out/images/pause.tar is the pod sandbox image containerd is
# configured with (ecom-agent.local/pause:1.0), out/images/echo.tar the
# tests' server (ecom-agent.local/echo:1.0), the others the add-ons'
# (CoreDNS, local-path-provisioner and its volume helper, metrics-server);
# all built from Go by images/cmd/mkimage, reproducibly (same sources and
# Go, same bytes), the upstream ones from the modules images/*/go.mod pin.
# Phony, or make would call it up to date: images/ is a directory.
.PHONY: images
images:
	$(GO) run ./images/cmd/mkimage -go $(GO) -out out/images
