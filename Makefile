# Portcullis. `make run` starts the webhook on dev certificates and the embedded
# default policy; `make test` installs the tools the tests need and runs them.

SHELL := /bin/bash
TOOLS_DIR ?= $(HOME)/.cache/portcullis/tools
COSIGN_VERSION ?= v2.6.5
COSIGN3_VERSION ?= v3.1.3
REGISTRY_VERSION ?= v3.0.0
COSIGN := $(TOOLS_DIR)/cosign-$(COSIGN_VERSION)/cosign
COSIGN3 := $(TOOLS_DIR)/cosign-$(COSIGN3_VERSION)/cosign
REGISTRY := $(TOOLS_DIR)/registry-$(REGISTRY_VERSION)/registry
# The keyless-signer test tool (tests/keyless-signer) pins sigstore-go there;
# its cache entry is named after that pin.
KEYLESS_SIGNER_SIGSTORE_GO ?= v1.1.4
KEYLESS_SIGNER_VERSION := sg$(KEYLESS_SIGNER_SIGSTORE_GO)
KEYLESS_SIGNER := $(TOOLS_DIR)/keyless-signer-$(KEYLESS_SIGNER_VERSION)/keyless-signer
CARGO_DENY_VERSION ?= 0.20.2
CARGO_DENY := $(TOOLS_DIR)/cargo-deny-$(CARGO_DENY_VERSION)/bin/cargo-deny
CARGO_CYCLONEDX_VERSION ?= 0.5.9
CARGO_CYCLONEDX := $(TOOLS_DIR)/cargo-cyclonedx-$(CARGO_CYCLONEDX_VERSION)/bin/cargo-cyclonedx
HELM_VERSION ?= v3.22.0
HELM := $(TOOLS_DIR)/helm-$(HELM_VERSION)/helm
# crane pushes the image layout make image writes (README: The container image).
CRANE_VERSION ?= v0.22.1
CRANE := $(TOOLS_DIR)/crane-$(CRANE_VERSION)/crane
# promtool checks and unit-tests the shipped alert rules (tests/monitoring.rs).
# Prometheus v3.16.0's Go module version.
PROMTOOL_VERSION ?= v0.316.0
PROMTOOL := $(TOOLS_DIR)/promtool-$(PROMTOOL_VERSION)/promtool
CARGO ?= cargo

export GOTOOLCHAIN := local
export CGO_ENABLED := 0
export PORTCULLIS_COSIGN := $(COSIGN)
export PORTCULLIS_COSIGN3 := $(COSIGN3)
export PORTCULLIS_REGISTRY := $(REGISTRY)
export PORTCULLIS_KEYLESS_SIGNER := $(KEYLESS_SIGNER)
export PORTCULLIS_HELM := $(HELM)
export PORTCULLIS_CRANE := $(CRANE)
export PORTCULLIS_PROMTOOL := $(PROMTOOL)
# The container image (an OCI layout) the end-to-end suite runs Portcullis from.
IMAGE_DIR := target/image
export PORTCULLIS_IMAGE := $(abspath $(IMAGE_DIR))
# Reproducible: the image's timestamps are the last commit's.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# `portcullis --version` names the commit it was built from.
export PORTCULLIS_REVISION := $(REVISION)

include mk/e2e-tools.mk

.PHONY: all build run test unit e2e lint shellcheck fmt tools keyless-signer certs bench clean-certs demo image image-layout release-archive fuzz

all: build

build:
	$(CARGO) build

## run: the webhook on https://127.0.0.1:8443 (embedded default policy, dev certs, no cluster: CLUSTER=auto to use your kubeconfig's)
CLUSTER ?= never
run: certs
	$(CARGO) run -- serve --cluster $(CLUSTER) $(ARGS)

## image: the container image as an OCI image layout in target/image, built without a container daemon, and its SBOM
image: image-layout $(CARGO_CYCLONEDX)
	# The SBOM: the binary's crates (no build or dev dependencies), CycloneDX 1.5, from Cargo.lock.
	$(CARGO_CYCLONEDX) cyclonedx --format json --describe binaries --target x86_64-unknown-linux-gnu \
		--no-build-deps --spec-version 1.5
	mv portcullis_bin.cdx.json $(IMAGE_DIR).cdx.json
	@echo "$(IMAGE_DIR).cdx.json: the image's SBOM"

# The image alone (what the end-to-end suite runs Portcullis from).
image-layout:
	$(CARGO) build --release --locked
	$(CARGO) run --release --locked --quiet --example oci-image -- --binary target/release/portcullis \
		--out $(IMAGE_DIR) --revision $(REVISION) --created $(SOURCE_DATE_EPOCH)

$(CARGO_CYCLONEDX):
	$(CARGO) install --locked --quiet --root $(TOOLS_DIR)/cargo-cyclonedx-$(CARGO_CYCLONEDX_VERSION) cargo-cyclonedx@$(CARGO_CYCLONEDX_VERSION)

## release-archive: target/<target>/release/portcullis-<version>-<target>.tar.gz and its .sha256, the files a GitHub release attaches for the GitHub Action (action.yml) and the GitLab template to install
RELEASE_VERSION ?= $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)
RELEASE_TARGET ?= $(shell rustc -vV | sed -n 's/^host: //p')
RELEASE_ARCHIVE := portcullis-$(RELEASE_VERSION)-$(RELEASE_TARGET).tar.gz
release-archive:
	$(CARGO) build --release --locked --target $(RELEASE_TARGET)
	cd target/$(RELEASE_TARGET)/release && tar -czf $(RELEASE_ARCHIVE) portcullis && sha256sum $(RELEASE_ARCHIVE) > $(RELEASE_ARCHIVE).sha256
	@echo "target/$(RELEASE_TARGET)/release/$(RELEASE_ARCHIVE) and its .sha256: attach both to the release v$(RELEASE_VERSION)"

## demo: a registry, three images (clean, vulnerable, unsigned) attested with cosign, Portcullis, and its decisions in a table (builds the tools first: minutes, once)
demo: tools
	$(CARGO) run --quiet --example demo

## test: everything: unit, integration (real registry, real cosign) and end-to-end (real kube-apiserver, Portcullis run from its image) tests
# Built in the release profile: the dependencies, the library and the
# binary the tests run are the ones the image is then made from (one build,
# not a debug one besides); the library's unit tests compile beside the
# library. The suites of tests/ (one test binary, about 10,000 lines of
# test code) are compiled without optimisation: LLVM spent about 140 s of
# the build on them at the profile's opt-level 3, against 20 s, and they
# run about 17 s longer; what they test (the library, the binary, the
# image) is the release build either way. `cargo rustc` gives the flag to
# that one target, whose artifact gets a hash of its own (an optimised
# `cargo test --release --test integration` stays apart), and $(SUITE)
# points at it (both runs below depend on it: make builds it once). The
# other examples (bench, demo) are left to their make targets; `make lint`
# checks them. The end-to-end suite, which mostly waits on a real API
# server (Leases expiring, controllers), runs beside the others.
SUITE := target/release/suite
test: tools e2e-tools certs
	$(CARGO) test --release --locked --no-run --lib --bins
	$(MAKE) --no-print-directory image-layout
	$(MAKE) --no-print-directory -j2 --output-sync=target test-e2e test-others

# Every suite of tests/ is a module of one test binary (tests/integration.rs);
# the end-to-end suite is its module e2e.
.PHONY: suite test-e2e test-others
## suite: the test binary of tests/ without optimisation, at target/release/suite (run one suite: target/release/suite check::)
suite:
	mkdir -p target
	$(CARGO) rustc --release --locked --test integration --message-format=json-render-diagnostics \
		-- -C opt-level=0 > target/suite.json
	ln -sf "$$(sed -n 's|.*"executable":"\([^"]*/deps/integration-[^"]*\)".*|\1|p' target/suite.json)" $(SUITE)
	@test -x $(SUITE) || { echo "suite: no test binary in target/suite.json"; exit 1; }
test-e2e: suite
	$(SUITE) e2e::
test-others: suite
	$(CARGO) test --release --locked --lib --bins
	$(SUITE) --skip e2e::

## e2e: only the end-to-end suite against a real kube-apiserver and etcd
e2e: tools e2e-tools image-layout
	$(CARGO) test --release --locked --test integration e2e:: -- --nocapture

## unit: only the fast tests that need no tools
unit:
	$(CARGO) test --lib --bins

## fuzz: the property-based fuzzing of every parser (tests/fuzz.rs), long: FUZZ_CASES per target (make test runs 256)
FUZZ_CASES ?= 1000000
fuzz:
	PORTCULLIS_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --release --test integration fuzz:: -- --nocapture

## lint: formatting, clippy, the licences, bans and sources of every dependency (deny.toml), and the GitHub Action's shell
# Clippy in the release profile: it builds the build scripts and proc macros,
# and `make test` (release) then reuses them instead of building them again.
lint: $(CARGO_DENY) shellcheck
	$(CARGO) fmt --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings
	$(CARGO_DENY) check licenses bans sources

## shellcheck: the GitHub Action's shell (ci/github/*.sh); shellcheck is installed with apt-get where it is missing
shellcheck:
	@command -v shellcheck >/dev/null || { echo "shellcheck: installing it with apt-get"; \
		$(if $(filter 0,$(shell id -u)),,sudo) sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends shellcheck'; }
	shellcheck ci/github/*.sh

$(CARGO_DENY):
	$(CARGO) install --locked --quiet --root $(TOOLS_DIR)/cargo-deny-$(CARGO_DENY_VERSION) cargo-deny@$(CARGO_DENY_VERSION)

fmt:
	$(CARGO) fmt

## tools: real cosign (v2 and v3), a real OCI registry, helm, crane, promtool and the keyless-signer fixture tool, built from the Go module proxy into $(TOOLS_DIR)
tools: $(COSIGN) $(COSIGN3) $(REGISTRY) $(KEYLESS_SIGNER) $(HELM) $(CRANE) $(PROMTOOL)

$(COSIGN):
	@command -v go >/dev/null || { echo "go is required to build cosign (apt-get install golang or use the machine's Go)"; exit 1; }
	GOBIN=$(dir $@) go install github.com/sigstore/cosign/v2/cmd/cosign@$(COSIGN_VERSION)

$(COSIGN3):
	@command -v go >/dev/null || { echo "go is required to build cosign"; exit 1; }
	GOBIN=$(dir $@) go install github.com/sigstore/cosign/v3/cmd/cosign@$(COSIGN3_VERSION)

$(HELM):
	@command -v go >/dev/null || { echo "go is required to build helm"; exit 1; }
	GOBIN=$(dir $@) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

$(CRANE):
	@command -v go >/dev/null || { echo "go is required to build crane"; exit 1; }
	GOBIN=$(dir $@) go install github.com/google/go-containerregistry/cmd/crane@$(CRANE_VERSION)

$(PROMTOOL):
	@command -v go >/dev/null || { echo "go is required to build promtool"; exit 1; }
	GOBIN=$(dir $@) go install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)

$(REGISTRY):
	@command -v go >/dev/null || { echo "go is required to build the registry"; exit 1; }
	GOBIN=$(dir $@) go install github.com/distribution/distribution/v3/cmd/registry@$(REGISTRY_VERSION)

## keyless-signer: tests/keyless-signer (Sigstore keyless test fixtures from a virtual Sigstore) into $(TOOLS_DIR)
keyless-signer: $(KEYLESS_SIGNER)

# Unlike the upstream tools it is this repo's own code, so it is rebuilt when
# its sources change (Go's build cache makes an unchanged rebuild quick).
$(KEYLESS_SIGNER): tests/keyless-signer/main.go tests/keyless-signer/go.mod tests/keyless-signer/go.sum
	@command -v go >/dev/null || { echo "go is required to build keyless-signer"; exit 1; }
	@grep -Eq '^[[:space:]]*(require[[:space:]]+)?github\.com/sigstore/sigstore-go[[:space:]]+$(KEYLESS_SIGNER_SIGSTORE_GO)([[:space:]]|$$)' tests/keyless-signer/go.mod || { \
		echo "tests/keyless-signer/go.mod does not require sigstore-go $(KEYLESS_SIGNER_SIGSTORE_GO); update it or KEYLESS_SIGNER_SIGSTORE_GO in the Makefile"; exit 1; }
	mkdir -p $(@D)
	cd tests/keyless-signer && $(E2E_GO_BUILD) -ldflags "-s -w" -o $(abspath $@).tmp .
	mv -f $@.tmp $@

## certs: a dev CA and serving certificate in certs-dev/ (generated, never committed)
certs: certs-dev/tls.crt

certs-dev/tls.crt: scripts/dev-certs.sh
	./scripts/dev-certs.sh certs-dev

clean-certs:
	rm -f certs-dev/*.crt certs-dev/*.key certs-dev/*.srl

## bench: warm path against a no-op handler's ceiling, cold path against cosign, registry economy, growth and memory (writes BENCHMARKS.md); then decision latency cached and uncached, against a real registry
bench: tools
	@command -v /usr/bin/time >/dev/null || { echo "GNU time: installing it with apt-get (peak memory of whole processes)"; \
		$(if $(filter 0,$(shell id -u)),,sudo) sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends time'; }
	$(CARGO) build --release --bin portcullis
	$(CARGO) run --release --example bench
	$(CARGO) test --release --test integration bench:: -- --ignored --nocapture
