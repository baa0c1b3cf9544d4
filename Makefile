# mcp-warden — the two commands a new machine needs are `make demo` and `make test`;
# both run `make setup` first, which is idempotent.
SHELL := /bin/bash
.DEFAULT_GOAL := help

WASM_TARGET      := wasm32-wasip1
WASM             := target/$(WASM_TARGET)/release/mcp_warden.wasm
VENV             := .venv
STACK            := integration-tests/stack
# Must equal the wasm-bindgen version in Cargo.lock (checked by scripts/setup.sh).
WASM_BINDGEN_VERSION := 0.2.130

export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: help setup build test lint unit wasm-unit policies e2e demo bench fuzz fuzz-setup clean

help:
	@echo "make setup  - install toolchain targets, the pinned Envoy, npm and pip packages (idempotent)"
	@echo "make build  - build $(WASM)"
	@echo "make test   - fmt, clippy (host+wasm), unit tests (native + wasm32), policy bundles, end-to-end suite"
	@echo "make demo   - run Envoy + mcp-warden + IdP + demo MCP server on 127.0.0.1:10000 (Ctrl-C stops all)"
	@echo "make fuzz   - every cargo-fuzz target for FUZZ_SECONDS (default 60) each, stable toolchain (installs cargo-fuzz once)"
	@echo "make bench  - speed tables: core decision/parse/flow/list times; plain Envoy, jwt_authn, native mcp+rbac, mcp-warden (~12 min; BENCH_QUICK=1 ~2 min)"

setup:
	@WASM_BINDGEN_VERSION=$(WASM_BINDGEN_VERSION) bash scripts/setup.sh

build: setup
	cargo build --release -p mcp-warden --target $(WASM_TARGET)
	@ls -l $(WASM)

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p mcp-warden-core -p mcp-warden --target $(WASM_TARGET) -- -D warnings

unit: setup
	cargo test -p mcp-warden-core -p mcp-warden -p mcp-warden-cli

policies: setup
	cargo run -q -p mcp-warden-cli -- check --allow-example-secrets policies/*/bundle.toml envoy/*.yaml envoy/ecds/*.yaml envoy/examples/*.json
	cargo run -q -p mcp-warden-cli -- test policies/*/

wasm-unit: setup
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
	  cargo test -p mcp-warden-core --target wasm32-unknown-unknown

e2e: build
	cargo test --no-fail-fast -p mcp-warden-integration-tests -- --test-threads=2

test: lint unit wasm-unit policies e2e
	@echo "make test: all green"

demo: build
	bash scripts/demo.sh

# Speed: the core's decision, parse, whole-request and list times natively, then Envoy side by
# side (plain, jwt_authn, native mcp+rbac, mcp-warden); see BENCHMARKS.md.
# BENCH_QUICK=1 for a ~2 minute smoke run.
bench: build
	cargo bench -q -p mcp-warden-core --bench decision
	cargo bench -q -p mcp-warden-core --bench parse
	cargo bench -q -p mcp-warden-core --bench content
	cargo bench -q -p mcp-warden-core --features test-support --bench flow
	cargo bench -q -p mcp-warden-core --features test-support --bench lists
	bash bench/run.sh

# Fuzzing: the cargo-fuzz targets of fuzz/ (bodies in filter/core/src/fuzzing) one after the
# other, FUZZ_SECONDS each (default 60); FUZZ_TARGETS="json sse" picks some. `make test` runs
# the same bodies briefly on fixed inputs (the core's unit tests) and needs no cargo-fuzz.
fuzz-setup:
	bash scripts/fuzz.sh setup

fuzz: fuzz-setup
	bash scripts/fuzz.sh

clean:
	cargo clean
