# Real Kubernetes control-plane binaries for the end-to-end tests: etcd,
# kube-apiserver, kube-controller-manager and kubectl, built from the Go module
# proxy (no prebuilt downloads) into $(TOOLS_DIR)/<name>-<version>/<name>.
#
# Included by the top-level Makefile, which defines TOOLS_DIR and exports
# GOTOOLCHAIN=local and CGO_ENABLED=0. Paths are relative to the repo root.
#
# The versions are pinned in tests/e2e-tools/{kube,etcd}/go.mod. KUBE_VERSION
# and ETCD_VERSION only name the cache entries, so they must match those files;
# each recipe checks this before it builds. To upgrade, edit the go.mod (and the
# staging-module replaces in the kube one), run `go mod tidy`, and bump the
# version here.

KUBE_VERSION ?= v1.34.4
ETCD_VERSION ?= v3.6.16

KUBE_APISERVER := $(TOOLS_DIR)/kube-apiserver-$(KUBE_VERSION)/kube-apiserver
KUBE_CONTROLLER_MANAGER := $(TOOLS_DIR)/kube-controller-manager-$(KUBE_VERSION)/kube-controller-manager
KUBECTL := $(TOOLS_DIR)/kubectl-$(KUBE_VERSION)/kubectl
ETCD := $(TOOLS_DIR)/etcd-$(ETCD_VERSION)/etcd

export PORTCULLIS_KUBE_APISERVER := $(KUBE_APISERVER)
export PORTCULLIS_KUBE_CONTROLLER_MANAGER := $(KUBE_CONTROLLER_MANAGER)
export PORTCULLIS_KUBECTL := $(KUBECTL)
export PORTCULLIS_ETCD := $(ETCD)

# The machine has 2 cores; a kube-apiserver build takes minutes even so.
E2E_GO_BUILD_P ?= 2

# v1.34.4 -> 1 and 34, stamped into k8s.io/component-base/version as upstream's
# release builds do (kubectl version and the apiserver's /version report them).
KUBE_GIT_MAJOR = $(patsubst v%,%,$(word 1,$(subst ., ,$(KUBE_VERSION))))
KUBE_GIT_MINOR = $(word 2,$(subst ., ,$(KUBE_VERSION)))
KUBE_LDFLAGS = -s -w \
	-X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=$(KUBE_GIT_MAJOR) \
	-X k8s.io/component-base/version.gitMinor=$(KUBE_GIT_MINOR)

# -buildvcs=false: the modules live inside this repo's git work tree, and VCS
# stamping would otherwise need git and record the repo's (unrelated) state.
E2E_GO_BUILD = go build -p $(E2E_GO_BUILD_P) -trimpath -buildvcs=false

.PHONY: e2e-tools
## e2e-tools: real etcd, kube-apiserver, kube-controller-manager and kubectl, built from the Go module proxy into $(TOOLS_DIR)
e2e-tools: $(ETCD) $(KUBE_APISERVER) $(KUBE_CONTROLLER_MANAGER) $(KUBECTL)

# $(call e2e_check_version,<dir>,<module>,<version>): fail if <dir>/go.mod does
# not require <module> at <version> (a mislabelled cache entry is worse than none).
define e2e_check_version
@command -v go >/dev/null || { echo "go is required to build $(@F)"; exit 1; }
@grep -Eq '^[[:space:]]*(require[[:space:]]+)?$(2)[[:space:]]+$(3)([[:space:]]|$$)' $(1)/go.mod || { \
	echo "$(1)/go.mod does not require $(2) $(3); update the go.mod or the version in mk/e2e-tools.mk"; exit 1; }
endef

# Each binary is built to a temporary name and renamed, so an interrupted build
# never leaves a file that make would take for a finished one.
$(KUBE_APISERVER):
	$(call e2e_check_version,tests/e2e-tools/kube,k8s.io/kubernetes,$(KUBE_VERSION))
	mkdir -p $(@D)
	cd tests/e2e-tools/kube && $(E2E_GO_BUILD) -ldflags "$(KUBE_LDFLAGS)" -o $(abspath $@).tmp ./cmd/kube-apiserver
	mv -f $@.tmp $@

$(KUBE_CONTROLLER_MANAGER):
	$(call e2e_check_version,tests/e2e-tools/kube,k8s.io/kubernetes,$(KUBE_VERSION))
	mkdir -p $(@D)
	cd tests/e2e-tools/kube && $(E2E_GO_BUILD) -ldflags "$(KUBE_LDFLAGS)" -o $(abspath $@).tmp ./cmd/kube-controller-manager
	mv -f $@.tmp $@

$(KUBECTL):
	$(call e2e_check_version,tests/e2e-tools/kube,k8s.io/kubernetes,$(KUBE_VERSION))
	mkdir -p $(@D)
	cd tests/e2e-tools/kube && $(E2E_GO_BUILD) -ldflags "$(KUBE_LDFLAGS)" -o $(abspath $@).tmp ./cmd/kubectl
	mv -f $@.tmp $@

$(ETCD):
	$(call e2e_check_version,tests/e2e-tools/etcd,go.etcd.io/etcd/server/v3,$(ETCD_VERSION))
	mkdir -p $(@D)
	cd tests/e2e-tools/etcd && $(E2E_GO_BUILD) -ldflags "-s -w" -o $(abspath $@).tmp .
	mv -f $@.tmp $@
