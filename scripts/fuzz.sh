#!/usr/bin/env bash
# `make fuzz`: every cargo-fuzz target of fuzz/ for FUZZ_SECONDS each (default 60), one process
# at a time. `fuzz.sh setup` installs cargo-fuzz once (idempotent; `make test` never needs it).
#
# Only the stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets cargo-fuzz's nightly-only flags
# through, and the sanitizer is off (`-s none`: the core has no unsafe code; overflow and debug
# assertions stay on with `-a`). New inputs go to target/fuzz-corpus/<target> (the committed
# seeds in fuzz/corpus/<target> are only read); a crash is saved under fuzz/artifacts/<target>/
# and reproduced with `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz -s none -a <target> <file>`.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
say() { printf '\033[1mfuzz:\033[0m %s\n' "$*"; }

if [ "${1:-run}" = setup ]; then
  if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    say "cargo install cargo-fuzz $CARGO_FUZZ_VERSION (a few minutes, once)"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
  fi
  exit 0
fi

seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^mcp-warden-fuzz$')}
export RUSTC_BOOTSTRAP=1
flags=(--fuzz-dir fuzz -s none -a)
say "building: $targets"
cargo fuzz build "${flags[@]}"
failed=()
for t in $targets; do
  mkdir -p "target/fuzz-corpus/$t"
  say "$t for ${seconds}s"
  log=target/fuzz-corpus/$t.log
  rc=0
  cargo fuzz run "${flags[@]}" "$t" "target/fuzz-corpus/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -dict=fuzz/mcp.dict -max_len=8192 -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1 || rc=$?
  grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY)|panicked|failed on|Test unit written' "$log" || true
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  say "FAILED: ${failed[*]} (logs: target/fuzz-corpus/<target>.log, inputs: fuzz/artifacts/)"
  exit 1
fi
say "all targets ran ${seconds}s without a finding"
