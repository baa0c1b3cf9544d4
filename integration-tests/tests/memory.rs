//! Per-request memory stays bounded: several hundred 1 MiB calls held open by a slow server at
//! once do not grow Envoy (whose one wasm VM serves them all) by their size, and the gateway
//! still answers other requests meanwhile. A decided request keeps only the envelope of its
//! body (methods, ids, targets), never its params or arguments.
//!
//! The figure (Envoy's resident memory before and while the calls are held) is printed; run
//! with `--nocapture` to see it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::evil::EvilStack;
use mcp_warden_integration_tests::{rpc_call, rpc_message, tool_call};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const HELD: usize = 300;
const ARG_BYTES: usize = 1_000_000;

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS")
}

#[test]
fn hundreds_of_held_one_mib_calls_do_not_exhaust_the_gateway() {
    let stack = EvilStack::start("memory_held_calls", |_| {});
    let (evil, envoy, port) = (&stack.evil, &stack.envoy, stack.port());
    let (bob, session) = (&stack.bob, &stack.session);
    // whoami answers after 8 s: the calls stay in flight meanwhile.
    evil.script(&json!({
        "tools/call:whoami": {
            "status": 200,
            "headers": {"content-type": "text/event-stream"},
            "chunks": [": hold\n\n", "data: {\"jsonrpc\":\"2.0\",\"id\":{{id}},\"result\":{\"content\":[]}}\n\n"],
            "delay_ms": 8000
        }
    }));
    let pid = envoy.proc.pid();
    let before = rss_kib(pid);

    let pad = "x".repeat(ARG_BYTES);
    let held = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..HELD)
        .map(|i| {
            let (held, errors) = (Arc::clone(&held), Arc::clone(&errors));
            let req = tool_call(session, 1000 + i as u64, "whoami", json!({"pad": pad}))
                .tokens(bob)
                .timeout(Duration::from_secs(30));
            std::thread::spawn(move || match req.open(port) {
                Ok(stream) if stream.status == 200 => held.lock().unwrap().push(stream),
                Ok(stream) => errors
                    .lock()
                    .unwrap()
                    .push(format!("status {}", stream.status)),
                Err(e) => errors.lock().unwrap().push(e.to_string()),
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let errors = errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{} calls failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert_eq!(held.lock().unwrap().len(), HELD);
    let during = rss_kib(pid);

    // Meanwhile the gateway still answers.
    let resp = rpc_call(session, 7, "ping", json!({}))
        .tokens(bob)
        .timeout(Duration::from_secs(5))
        .send(port)
        .expect("ping while the calls are held");
    assert_eq!(resp.status, 200, "{resp}");
    assert!(
        rpc_message(&resp).is_some_and(|m| m["id"] == json!(7)),
        "{resp}"
    );

    let grown_mib = during.saturating_sub(before) / 1024;
    println!(
        "envoy RSS: {} MiB before, {} MiB with {HELD} calls of {} KB held ({} MiB more)",
        before / 1024,
        during / 1024,
        ARG_BYTES / 1000,
        grown_mib
    );
    let reached = evil
        .requests()
        .iter()
        .filter(|r| r["bytes"].as_u64().unwrap_or(0) > ARG_BYTES as u64)
        .count();
    assert_eq!(reached, HELD, "every held call reached the server whole");
    // Their bodies total ~300 MB; the gateway may keep a small part of that, never all of it.
    assert!(
        grown_mib < 120,
        "Envoy grew by {grown_mib} MiB holding {HELD} calls of 1 MB"
    );
    drop(held);
}
