//! The built filter under host-call faults: `integration-tests/stack/fault-host.mjs` drives
//! `mcp_warden.wasm` (in V8, as Envoy runs it) through an initialize whose session id is
//! sealed, a `tools/list` that is filtered and a `tools/call` with an exchanged token and a
//! redacted SSE answer; then repeats that once for every host call the filter made, with that
//! one call failing (NotFound, BadArgument, InternalFailure). Under every fault the filter must
//! not trap, and each request must end as without the fault or be refused: a local reply of
//! 400 or more, a closed stream, or never resumed. Nothing may reach the upstream or the client
//! that differs from the fault-free run (a spoofed identity header kept, the user's own token,
//! an unfiltered list, an unredacted answer, an unsealed session id).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{repo_root, wasm_path};
use serde_json::Value;
use std::process::Command;

#[test]
fn every_single_host_call_failure_fails_closed_without_a_trap() {
    let wasm = wasm_path();
    let script = repo_root().join("integration-tests/stack/fault-host.mjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(&wasm)
        .output()
        .unwrap_or_else(|e| panic!("cannot run node {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "fault host printed no summary ({e}); stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!(
        "[host_faults] {} host calls in the fault-free run, {} runs with one failing call",
        summary["reference_host_calls"], summary["fault_runs"]
    );
    assert!(
        out.status.success() && summary["problem_count"] == 0,
        "the filter did not fail closed:\n{stdout}"
    );
    // The sweep really ran over the whole request path.
    assert!(
        summary["reference_host_calls"].as_u64().unwrap_or(0) >= 60
            && summary["fault_runs"].as_u64().unwrap_or(0) >= 180,
        "too few host calls were exercised:\n{stdout}"
    );
}
