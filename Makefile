# contrail-mesos-cni: see README.md.
#   make demo                      the whole system on one machine (root)
#   make test                      every test (installs what a fresh machine lacks)
#   make install CNI_BIN_DIR=dir   what an agent node needs

SHELL := /bin/bash
CARGO ?= cargo
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
WASM_TARGET := wasm32-wasip2
WASM_OUT := $(TARGET_DIR)/$(WASM_TARGET)/wasm-release
PLUGIN_CRATES := -p mesos-delegate -p contrail-ipam
CNI_BIN_DIR ?=
MANAGER_BIN_DIR ?= /usr/local/bin
APT_PACKAGES := containernetworking-plugins iproute2 nftables zookeeper haproxy
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# A CI run builds everything once from a cold target dir: incremental compilation's caches of
# the workspace crates are written and never read again, so they are turned off there.
ifeq ($(CI),true)
export CARGO_INCREMENTAL := 0
endif

# What ships (`make build`): the CNI host, its plugin compiler and the manager, in one directory
# that no cargo run writes to (cargo's test and bench builds replace target/release binaries).
SHIP := $(TARGET_DIR)/ship
# The CNI host is a static musl executable (see host/build.rs for why): built for this
# machine's architecture, position-dependent, with ring's C compiled by Debian's musl-gcc.
MUSL_TARGET := $(shell uname -m)-unknown-linux-musl
MUSL_TARGET_ENV := $(shell echo '$(MUSL_TARGET)' | tr 'a-z-' 'A-Z_')
MUSL_BUILD_ENV := CC_$(subst -,_,$(MUSL_TARGET))=musl-gcc \
  CARGO_TARGET_$(MUSL_TARGET_ENV)_RUSTFLAGS="-C relocation-model=static"

.PHONY: all deps deps-host build wasm wasm-test host manager lint fmt-check clippy-rest test-build test test-unit test-shipped bench install dist demo clean-demo

all: build

## Install what a fresh machine lacks: the wasm target and Debian's CNI plugins/iproute2.
deps:
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)
	@for c in clippy rustfmt; do rustup component list --installed | grep -q "^$$c" || rustup component add $$c; done
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

## What building the shipped host adds: the musl target and Debian's musl-gcc (for ring's C).
deps-host: deps
	@rustup target list --installed | grep -qx '$(MUSL_TARGET)' || rustup target add $(MUSL_TARGET)
	@command -v musl-gcc >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq musl-tools; }

## The Wasm plugins (wasm32-wasip2 components, size-optimised profile wasm-release).
wasm: deps
	$(CARGO) build --profile wasm-release --target $(WASM_TARGET) $(PLUGIN_CRATES)

## Plugins plus the hostile guest used by the sandbox tests.
wasm-test: deps
	$(CARGO) build --profile wasm-release --target $(WASM_TARGET) $(PLUGIN_CRATES) -p misbehave-plugin -p v010-translator -p v010-ipam -p changed-record -p evil-import

## The CNI host and its plugin compiler, into $(SHIP). The host is built without the `compiler`
## feature, so it links no Cranelift (it only loads precompiled artifacts and runs
## contrail-cni-plugin-compile, installed beside it, on a cache miss), and for musl, statically
## and position-dependent: every CNI call execs it, and glibc's start-up alone (CPU feature and
## cache detection by CPUID, which traps to the hypervisor on a VM) cost more than the rest of a
## VERSION call (docs/BENCHMARKS.md, "Fifth round"). The compiler, which only runs on a miss,
## is an ordinary glibc build. Two cargo runs because cargo unifies features within one build.
## The checks after the build keep the host that way.
host: deps-host
	$(CARGO) build --release -p contrail-cni-host --bin contrail-cni-plugin-compile
	$(MUSL_BUILD_ENV) $(CARGO) build --release --target $(MUSL_TARGET) -p contrail-cni-host --no-default-features --bin contrail-cni-plugin
	@h=$(TARGET_DIR)/$(MUSL_TARGET)/release/contrail-cni-plugin; \
	if grep -q cranelift_codegen $$h; then echo "error: $$h links Cranelift" >&2; exit 1; fi; \
	if readelf -lW $$h | grep -q INTERP; then echo "error: $$h is not static" >&2; exit 1; fi
	install -d $(SHIP)
	install -m 0755 $(TARGET_DIR)/$(MUSL_TARGET)/release/contrail-cni-plugin $(SHIP)/contrail-cni-plugin
	install -m 0755 $(TARGET_DIR)/release/contrail-cni-plugin-compile $(SHIP)/contrail-cni-plugin-compile

manager:
	$(CARGO) build --release -p contrail-mesos-manager
	install -d $(SHIP)
	install -m 0755 $(TARGET_DIR)/release/contrail-mesos-manager $(SHIP)/contrail-mesos-manager

build: wasm host manager

lint: fmt-check clippy-rest
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt-check:
	$(CARGO) fmt --all -- --check

## The clippy passes besides the default-features one, which `test` runs inside its build.
clippy-rest:
	@# As contrail-cni-plugin ships, without the host's `compiler` feature (no Cranelift; the
	@# manager's dev-dependency on the host asks for none either). Over the whole workspace,
	@# not the host alone: the proc macros of the test build are then reused (with `-p` the
	@# build dependencies' features differ, and syn and every proc macro are compiled again).
	$(CARGO) clippy --workspace --all-targets --no-default-features -- -D warnings
	@# The guests in the profile they are built with (`make wasm`): the proc macros this pass
	@# compiles for the build machine are then the ones the Wasm build reuses.
	$(CARGO) clippy --profile wasm-release --target $(WASM_TARGET) $(PLUGIN_CRATES) -p misbehave-plugin -p v010-translator -p v010-ipam -p changed-record -p evil-import -- -D warnings

# `make test` runs clippy's default-features pass inside the test build: clippy-driver, which
# `cargo clippy` itself installs as RUSTC_WORKSPACE_WRAPPER, compiles the workspace's crates as
# rustc does and lints them on the way (CLIPPY_ARGS carries `-D warnings` as `cargo clippy --
# -D warnings` does). The dependencies are then compiled once, instead of once in check mode
# for clippy and again for the tests: a cold `make test` takes about 3.5 minutes less on 2
# cores (docs/BENCHMARKS.md, "Seventh round"). The test run carries the same wrapper, so it
# rebuilds nothing.
LINTED_BUILD := RUSTC_WORKSPACE_WRAPPER=clippy-driver CLIPPY_ARGS=-Dwarnings

## The workspace's tests built (every target, benches included) and linted as `lint` does.
test-build: deps
	@command -v clippy-driver >/dev/null || { echo "clippy-driver not found (rustup component add clippy)" >&2; exit 1; }
	$(LINTED_BUILD) $(CARGO) test --workspace --all-targets --no-run

## Every test. Tests that need root (real network namespaces) run when root; under CI (CI=true)
## a missing root is a failure, never a silent skip. Every lint of `lint` holds first.
test: deps fmt-check test-build clippy-rest wasm-test
	@if [ "$$(id -u)" = 0 ]; then echo "running as root: namespace tests included"; \
	 elif [ "$${CI:-}" = true ]; then echo "CI must run as root" >&2; exit 1; \
	 else echo "not root: namespace tests will print SKIPPED"; fi
	@# Two lanes of test binaries side by side (see the script); the same wrapper as the build.
	CONTRAIL_REQUIRE_ROOT_TESTS=$$([ "$${CI:-}" = true ] && echo 1 || echo 0) $(LINTED_BUILD) \
	  CARGO=$(CARGO) scripts/test-lanes.sh $(TARGET_DIR)/test-lanes --test-threads=4

## Unit tests only (no root, no wasm build needed).
test-unit:
	$(CARGO) test --workspace --lib --bins

## Benchmarks (root): results and their commands are in docs/BENCHMARKS.md. They report; they
## never fail the build. They measure the shipped pair in $(SHIP) (cargo's own bench build
## puts a glibc host with the compiler feature into target/release).
bench: build wasm-test
	$(CARGO) bench -p contrail-cni-host --bench delegate --no-run
	$(CARGO) test --release -p contrail-cni-host --test contrail_bench --no-run
	CONTRAIL_BENCH_HOST=$(SHIP)/contrail-cni-plugin $(CARGO) bench -p contrail-cni-host --bench delegate
	CONTRAIL_BENCH_BIN=$(SHIP)/contrail-cni-plugin BENCH_ITERS=40 BENCH_PARALLEL=100 \
	  $(CARGO) test --release -p contrail-cni-host --test contrail_bench -- --ignored --nocapture
	$(CARGO) test --release -p contrail-mesos-manager --test bench -- --ignored --nocapture

## The host's tests that exec the CNI binary, run against the shipped static musl build in
## $(SHIP) instead of the glibc test build (`make test` covers the same code built for glibc).
## Root runs the namespace tests too.
test-shipped: host wasm-test
	CONTRAIL_TEST_HOST_BIN=$(SHIP)/contrail-cni-plugin $(CARGO) test -p contrail-cni-host --tests --no-fail-fast -- --test-threads=4

## What an agent node needs: the host and its plugin compiler, the `mesos` alias (so
## `"type": "mesos"` delegate configs work unchanged) and the plugins in <dir>/contrail-cni-wasm/,
## where the host looks by default, checked and precompiled.
install: build
	@if [ -z "$(CNI_BIN_DIR)" ]; then echo "usage: make install CNI_BIN_DIR=<dir> (e.g. /opt/mesosphere/active/cni or /usr/libexec/cni)" >&2; exit 2; fi
	BIN_SRC=$(SHIP) WASM_SRC=$(WASM_OUT) packaging/install.sh agent $(CNI_BIN_DIR)

## A versioned release tarball (binaries, plugins, install.sh, sample configs, systemd unit,
## DC/OS app) that installs on an agent or a master with no Rust toolchain.
dist: build
	@scripts/dist.sh $(SHIP) $(WASM_OUT) $(CURDIR)/dist

## The whole system on one machine: stand-ins for Marathon/Mesos agent, VNC and the vRouter
## agent (with a real bridge dataplane in its own namespace), the real manager and CNI host.
demo: deps build
	@[ "$$(id -u)" = 0 ] || { echo "make demo needs root (it creates network namespaces)" >&2; exit 1; }
	$(CARGO) build --release -p contrail-devstack --bin contrail-devstack
	$(TARGET_DIR)/release/contrail-devstack demo \
	  --cni-bin $(SHIP)/contrail-cni-plugin \
	  --wasm-dir $(WASM_OUT) \
	  --manager-bin $(SHIP)/contrail-mesos-manager
