# Portcullis. `make run` starts the webhook on dev certificates and the embedded
# default policy; `make test` installs the tools the tests need and runs them.

SHELL := /bin/bash
TOOLS_DIR ?= $(HOME)/.cache/portcullis/tools
COSIGN_VERSION ?= v2.6.5
REGISTRY_VERSION ?= v3.0.0
COSIGN := $(TOOLS_DIR)/cosign-$(COSIGN_VERSION)/cosign
REGISTRY := $(TOOLS_DIR)/registry-$(REGISTRY_VERSION)/registry
CARGO ?= cargo

export GOTOOLCHAIN := local
export CGO_ENABLED := 0
export PORTCULLIS_COSIGN := $(COSIGN)
export PORTCULLIS_REGISTRY := $(REGISTRY)

include mk/e2e-tools.mk

.PHONY: all build run test unit e2e lint fmt tools certs bench clean-certs

all: build

build:
	$(CARGO) build

## run: the webhook on https://127.0.0.1:8443 (embedded default policy, dev certs, no cluster needed)
run: certs
	$(CARGO) run -- serve $(ARGS)

## test: everything: unit, integration (real registry, real cosign) and end-to-end (real kube-apiserver) tests
test: tools e2e-tools certs
	$(CARGO) test --all-targets

## e2e: only the end-to-end suite against a real kube-apiserver and etcd
e2e: tools e2e-tools
	$(CARGO) test --test e2e -- --nocapture

## unit: only the fast tests that need no tools
unit:
	$(CARGO) test --lib --bins

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

## tools: real cosign and a real OCI registry, built from the Go module proxy into $(TOOLS_DIR)
tools: $(COSIGN) $(REGISTRY)

$(COSIGN):
	@command -v go >/dev/null || { echo "go is required to build cosign (apt-get install golang or use the machine's Go)"; exit 1; }
	GOBIN=$(dir $@) go install github.com/sigstore/cosign/v2/cmd/cosign@$(COSIGN_VERSION)

$(REGISTRY):
	@command -v go >/dev/null || { echo "go is required to build the registry"; exit 1; }
	GOBIN=$(dir $@) go install github.com/distribution/distribution/v3/cmd/registry@$(REGISTRY_VERSION)

## certs: a dev CA and serving certificate in certs-dev/ (generated, never committed)
certs: certs-dev/tls.crt

certs-dev/tls.crt: scripts/dev-certs.sh
	./scripts/dev-certs.sh certs-dev

clean-certs:
	rm -f certs-dev/*.crt certs-dev/*.key certs-dev/*.srl

## bench: decision latency, cached and uncached, against a real registry
bench: tools
	$(CARGO) test --release --test bench -- --ignored --nocapture
