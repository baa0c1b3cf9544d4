//! A tools/list answer of 500 tools (`LIST_TOOLS`) through the request flow, natively: the bench's list rows
//! without Envoy (`cargo bench -p mcp-warden-core --features test-support --bench lists`).
//! Every tool is registered and approved, a rule shows the caller every other one; a second row
//! pins every tool's definition hash, so each listed definition is hashed and compared.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use mcp_warden_core::config::Config;
use mcp_warden_core::identity::attestation::AttestationCache;
use mcp_warden_core::identity::claims::JsonClaims;
use mcp_warden_core::identity::IdentityCache;
use mcp_warden_core::pipeline::{BodyStep, RequestContext, RequestFlow, ResponseMode, Step};
use mcp_warden_core::registry::MemoryDefinitions;
use mcp_warden_core::response::tool_hash::tool_definition_hash;
use serde_json::{json, Value};
use std::hint::black_box;
use std::time::Instant;

/// Tools in the list (`LIST_TOOLS`, default 500).
fn tools() -> usize {
    std::env::var("LIST_TOOLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500)
}
const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

fn tool_name(i: usize) -> String {
    format!("tool_{i:03}")
}

fn tool(i: usize) -> Value {
    json!({"name": tool_name(i), "description": format!("Bench tool number {i}: does thing {i}."),
           "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"}},
                           "required": ["q"]}})
}

fn answer(n: usize) -> Vec<u8> {
    let tools: Vec<Value> = (0..n).map(tool).collect();
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}})).unwrap()
}

fn config(n: usize, pinned: bool) -> Config {
    let tools: Vec<Value> = (0..n)
        .map(|i| {
            let mut t = json!({"name": tool_name(i), "status": "approved", "approved_for": ["*"]});
            if pinned {
                t["hash"] = json!(tool_definition_hash(&tool(i)));
            }
            t
        })
        .collect();
    let half: Vec<String> = (0..n).step_by(2).map(tool_name).collect();
    let cfg = json!({
        "identity": {
            "protected_resource": {"resource": "http://127.0.0.1/mcp", "authorization_servers": ["https://idp.bench.invalid"]},
            "user": {"issuers": ["https://idp.bench.invalid"], "audiences": ["mcp-warden-bench"]}
        },
        "policy": {
            "servers": [{"name": "bench", "path": "/mcp", "tools": tools}],
            "rules": [{"id": "discovery", "effect": "allow", "methods": ["tools/list"]},
                      {"id": "half", "effect": "allow", "tools": half, "users": ["bench-user"]}]
        }
    });
    Config::from_json(cfg.to_string().as_bytes()).unwrap()
}

fn headers() -> Vec<(String, Vec<u8>)> {
    [
        (":path", "/mcp"),
        (":method", "POST"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2025-06-18"),
        ("authorization", "Bearer bench.token.sig"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect()
}

fn one(cfg: &Config, claims: &JsonClaims, ids: &mut IdentityCache, answer: &[u8]) -> Vec<u8> {
    let live = MemoryDefinitions::default();
    let mut att = AttestationCache::default();
    let mut flow = RequestFlow::new();
    let ctx = RequestContext {
        claims,
        attestation_cache: &mut att,
        identity_cache: ids,
        now: 1_795_400_000,
    };
    assert_eq!(
        flow.on_request_headers(cfg, &claims.with_payloads(&headers()), false, ctx),
        Step::Pause
    );
    let BodyStep::ReadBody(n) = flow.on_request_body(cfg, BODY.len(), true) else {
        panic!("body not read")
    };
    assert_eq!(flow.on_body(cfg, &BODY[..n], &live), Step::Continue);
    let rh: Vec<(String, Vec<u8>)> = vec![
        (":status".into(), b"200".to_vec()),
        ("content-type".into(), b"application/json".to_vec()),
    ];
    assert_eq!(
        flow.on_response_headers(cfg, &rh, &(None, None)),
        ResponseMode::BufferJson
    );
    let out = flow.on_response_json(cfg, answer, &live).unwrap();
    assert!(flow.take_notices().is_empty());
    out
}

fn main() {
    let claims = JsonClaims(vec![(
        "user".into(),
        json!({"iss":"https://idp.bench.invalid","aud":"mcp-warden-bench","sub":"bench-user",
               "exp":1_795_404_318u64,"scope":"mcp:tools"}),
    )]);
    let n = tools();
    let answer = answer(n);
    let runs: u32 = std::env::var("LIST_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(300);
    // LIST_ONLY=pinned|unpinned: one row (e.g. for instruction counts under callgrind).
    let only = std::env::var("LIST_ONLY").ok();
    for pinned in [false, true] {
        if only
            .as_deref()
            .is_some_and(|o| o != if pinned { "pinned" } else { "unpinned" })
        {
            continue;
        }
        let cfg = config(n, pinned);
        let mut ids = IdentityCache::default();
        let shown: Value = serde_json::from_slice(&one(&cfg, &claims, &mut ids, &answer)).unwrap();
        assert_eq!(
            shown["result"]["tools"].as_array().map(Vec::len),
            Some(n / 2)
        );
        let mut best = f64::MAX;
        for _ in 0..5 {
            let start = Instant::now();
            for _ in 0..runs {
                black_box(one(&cfg, &claims, &mut ids, black_box(&answer)).len());
            }
            best = best.min(start.elapsed().as_secs_f64() / f64::from(runs));
        }
        println!(
            "tools/list of {n} tools ({} shown{}): {:.1} µs per list, {:.2} µs per tool",
            n / 2,
            if pinned { ", every hash pinned" } else { "" },
            best * 1e6,
            best * 1e6 / n as f64
        );
    }
}
