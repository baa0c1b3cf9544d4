//! One whole `tools/call` through the request flow, natively: the bench's `warden_policy` row
//! without Envoy (`cargo bench -p mcp-warden-core --features test-support --bench flow`).
//! What mcp-warden's own code costs per request, to compare with the CPU the Envoy row adds.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use mcp_warden_core::audit;
use mcp_warden_core::config::Config;
use mcp_warden_core::identity::attestation::AttestationCache;
use mcp_warden_core::identity::claims::JsonClaims;
use mcp_warden_core::identity::IdentityCache;
use mcp_warden_core::pipeline::{BodyStep, RequestContext, RequestFlow, Step};
use mcp_warden_core::registry::MemoryDefinitions;
use serde_json::json;
use std::hint::black_box;
use std::time::Instant;

const CONFIG: &str = r#"{"max_body_bytes": 2097152, "max_json_depth": 64, "identity": {"protected_resource": {"resource": "http://127.0.0.1/mcp", "authorization_servers": ["https://idp.bench.invalid"]}, "user": {"issuers": ["https://idp.bench.invalid"], "audiences": ["mcp-warden-bench"], "required_scopes": ["mcp:tools"]}}, "policy": {"rules": [{"id": "allow.bench-tools", "effect": "allow", "tools": ["search_docs", "read_file", "list_dir", "get_weather", "create_issue", "get_issue", "list_issues", "send_message", "get_forecast", "translate"], "users": ["bench-user"]}]}}"#;
const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Paris","units":"metric"}}}"#;
const TOKEN: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImJlbmNoLWVzMjU2IiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lkcC5iZW5jaC5pbnZhbGlkIiwiYXVkIjoibWNwLXdhcmRlbi1iZW5jaCIsInN1YiI6ImJlbmNoLXVzZXIiLCJpYXQiOjE3OTUzMTc5MTgsIm5iZiI6MTc5NTMxNzg1OCwiZXhwIjoxNzk1NDA0MzE4LCJzY29wZSI6Im1jcDp0b29scyIsImNsaWVudF9pZCI6ImJlbmNoLWFnZW50IiwianRpIjoiMmIwYzllNDc3ZGE4Mzc4NCJ9.nI1Wgxj8o5wDHsDj0uTelW69fsZFmrZdG3VBmE_FhVXWiHlyUn_1hE4h98zTv1D6u1eC5_Wr3TxURsjE4_ZXbQ";

fn headers() -> Vec<(String, Vec<u8>)> {
    let bearer = format!("Bearer {TOKEN}");
    [
        (":authority", "127.0.0.1:10000"),
        (":path", "/mcp"),
        (":method", "POST"),
        (":scheme", "http"),
        ("content-length", "124"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2025-06-18"),
        ("authorization", bearer.as_str()),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "6f1f2b8e-0c1d-4a8e-9f55-3a9d1c0b7e21"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect()
}

fn response_headers() -> Vec<(String, Vec<u8>)> {
    [
        (":status", "200"),
        ("content-type", "application/json"),
        ("content-length", "80"),
        ("date", "Sun, 22 Nov 2026 04:00:00 GMT"),
        ("server", "envoy"),
        ("x-envoy-upstream-service-time", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect()
}

fn one(
    cfg: &Config,
    claims: &JsonClaims,
    att: &mut AttestationCache,
    ids: &mut IdentityCache,
    live: &MemoryDefinitions,
    h: &[(String, Vec<u8>)],
    rh: &[(String, Vec<u8>)],
) -> usize {
    let mut flow = RequestFlow::new();
    let ctx = RequestContext {
        claims,
        attestation_cache: att,
        identity_cache: ids,
        now: 1_795_400_000,
    };
    let h = claims.with_payloads(h);
    assert_eq!(flow.on_request_headers(cfg, &h, false, ctx), Step::Pause);
    let edits = flow.take_header_edits().len();
    let BodyStep::ReadBody(n) = flow.on_request_body(cfg, BODY.len(), true) else {
        panic!("body not read")
    };
    assert_eq!(flow.on_body(cfg, &BODY[..n], live), Step::Continue);
    let record = audit::record(&flow);
    let _ = flow.on_response_headers(cfg, rh, &(None, None));
    edits + record.len() + flow.take_response_edits().len()
}

fn main() {
    let cfg = Config::from_json(CONFIG.as_bytes()).unwrap();
    let claims = JsonClaims(vec![(
        "user".into(),
        json!({"iss":"https://idp.bench.invalid","aud":"mcp-warden-bench","sub":"bench-user",
               "iat":1_795_317_918u64,"nbf":1_795_317_858u64,"exp":1_795_404_318u64,
               "scope":"mcp:tools","client_id":"bench-agent","jti":"2b0c9e477da83784"}),
    )]);
    let (h, rh) = (headers(), response_headers());
    let live = MemoryDefinitions::default();
    let mut att = AttestationCache::default();
    let mut ids = IdentityCache::default();
    // FLOW_RUNS: fewer rounds for instruction counting (e.g. under `valgrind --tool=callgrind`).
    let runs: u32 = std::env::var("FLOW_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200_000);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..runs {
            black_box(one(
                &cfg,
                &claims,
                &mut att,
                &mut ids,
                &live,
                black_box(&h),
                &rh,
            ));
        }
        best = best.min(start.elapsed().as_secs_f64() / f64::from(runs));
    }
    println!(
        "whole tools/call flow (identity cached, policy allow, audit record): {:.2} µs",
        best * 1e6
    );
}
