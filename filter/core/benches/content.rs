//! The response filters natively (`cargo bench -p mcp-warden-core --bench content`): what
//! `response_filters` costs per answer, with the filters of `envoy/demo.yaml` (three redaction
//! patterns and the built-in injection patterns). Rows: a tool result of 1 KiB and 64 KiB of
//! clean text (the usual case: read, checked, forwarded as it was), the same with a key to
//! redact (re-written), 64 KiB of clean non-ASCII text (German and Japanese: read through the
//! normalised view, forwarded as it was), a `tools/list` answer of 100 tools, and one SSE
//! event's data.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use mcp_warden_core::response::content::{Filtered, Findings, RawResponseFilters};
use serde_json::json;
use std::hint::black_box;
use std::time::Instant;

fn text(bytes: usize) -> String {
    let sentence =
        "The quarterly report lists 42 customers in 7 regions; revenue grew by 3.5 percent. ";
    sentence.repeat(bytes / sentence.len() + 1)[..bytes].to_string()
}

fn result(text: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": text}], "isError": false}}))
        .unwrap()
}

fn main() {
    let raw: RawResponseFilters = serde_json::from_value(json!({
        "redact": [
            {"id": "api-key", "pattern": r"\bsk-[A-Za-z0-9_-]{16,}\b"},
            {"id": "aws-access-key-id", "pattern": r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"},
            {"id": "private-key", "pattern": r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"}
        ]
    }))
    .unwrap();
    let filters = raw.compile("response_filters").unwrap();
    let tools: Vec<serde_json::Value> = (0..100)
        .map(|i| json!({"name": format!("tool_{i:03}"), "description": format!("Bench tool number {i}: does thing {i}."),
                        "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}}))
        .collect();
    let list = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}}))
        .unwrap();
    let progress = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p","progress":3,"total":5,"message":"step 3/5"}}"#.to_vec();
    let secret = format!("{} sk-live_0123456789abcdef", text(1024));
    let unicode = {
        let sentence =
            "Der Quartalsbericht nennt 42 Kunden in 7 Regionen; 売上は3.5%増加しました。 ";
        let mut t = sentence.repeat(64 * 1024 / sentence.len() + 1);
        let mut end = 64 * 1024;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        t.truncate(end);
        t
    };
    let rows: Vec<(&str, Vec<u8>, bool)> = vec![
        ("tool result, 1 KiB clean text", result(&text(1024)), false),
        ("tool result, 1 KiB with a key", result(&secret), true),
        (
            "tool result, 64 KiB clean text",
            result(&text(64 * 1024)),
            false,
        ),
        (
            "tool result, 64 KiB non-ASCII text",
            result(&unicode),
            false,
        ),
        ("tools/list, 100 tools", list, false),
        ("SSE progress event", progress, false),
    ];
    println!("response filters (demo.yaml's): µs per answer, best of 7 rounds");
    for (name, body, changes) in rows {
        let mut found = Findings::default();
        let out = filters.filter(&body, "corp", 120, &mut found).unwrap();
        assert_eq!(matches!(out, Filtered::Replaced(_)), changes, "{name}");
        let runs = (2_000_000 / body.len().max(200)).clamp(50, 20_000);
        let mut best = f64::MAX;
        for _ in 0..7 {
            let start = Instant::now();
            for _ in 0..runs {
                let mut f = Findings::default();
                black_box(
                    filters
                        .filter(black_box(&body), "corp", 120, &mut f)
                        .unwrap(),
                );
            }
            best = best.min(start.elapsed().as_secs_f64() * 1e6 / runs as f64);
        }
        println!("  {name:<34} {:>9} bytes  {best:>9.2} µs", body.len());
    }
}
