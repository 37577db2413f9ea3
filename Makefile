# ecom-agent's build. The two commands that matter:
#   make demo   three test hosts, the .deb on each, join, status (the main job)
#   make test   every check and test: lint, unit tests, the real-systemd e2e suite
SHELL := /bin/bash
.DEFAULT_GOAL := build

GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
MODULE      := github.com/ecom-platform/ecom-agent
LDFLAGS     := -s -w -X $(MODULE)/agent.Version=$(VERSION)
BIN_DIR     := bin
AGENT       := $(BIN_DIR)/ecom-agent
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# The test hosts' Debian root filesystem lives outside the repo, cached per
# machine (built once, about two minutes).
export ECOM_TESTHOST_CACHE ?= /var/cache/ecom-agent-testhost

.PHONY: build test unit e2e lint fmt rootfs kube-bins demo clean

# A static binary: no cgo, so it runs on any glibc or musl host.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(AGENT) ./cmd/ecom-agent

test: lint unit e2e

# Fast tests: `go test ./...`, a few minutes at most. The seeding and
# control-plane tests run the real kube-apiserver from `make kube-bins`
# (they skip, saying so, where it is missing).
unit: kube-bins
	ECOM_KUBE_BIN=$$(tools/kube/build.sh) $(GO) test -count=1 ./...

# The end-to-end suite on real-systemd test hosts (needs root).
e2e: build rootfs kube-bins
	ECOM_AGENT_BIN=$(CURDIR)/$(AGENT) ECOM_KUBE_BIN=$$(tools/kube/build.sh) \
	  $(GO) test -count=1 -tags e2e -timeout 75m -p 1 ./integration/... ./units/...

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(STATICCHECK) -tags e2e ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
# kube-proxy built from k8s.io/kubernetes at the version pinned in
# tools/kube/go.mod, cached outside the repo by version (10 to 45 minutes
# cold on 2 cores, depending on downloads and load; a second warm). Prints the cache directory.
export ECOM_KUBE_CACHE ?= /var/cache/ecom-agent-kube
kube-bins:
	tools/kube/build.sh

rootfs:
	integration/testhost/build-rootfs.sh

demo:
	@echo "make demo: the three-host demo arrives with the .deb (issue 8); nothing was done." >&2
	@exit 69

clean:
	rm -rf $(BIN_DIR) out
