//! Parse time of MCP request bodies of 1 KiB, 64 KiB and 1 MiB (`cargo bench -p mcp-warden-core --bench parse`):
//! a `tools/call` whose `arguments` hold most of the body. `µs/parse` is the strict read
//! (`arguments` checked, kept as text); `+args µs` adds building the arguments, as a policy
//! with argument conditions for the tool does; `lax µs` is the strict read without
//! `strict_keys` (keys equal once case-folded not looked for); `vs serde_json` compares
//! `µs/parse` with `serde_json::from_slice::<Value>` of the same body.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use mcp_warden_core::jsonrpc::{parse_payload, ParseRules};
use std::hint::black_box;
use std::time::Instant;

fn body(size: usize) -> Vec<u8> {
    let mut items = Vec::new();
    let mut len = 0;
    let mut i = 0;
    while len < size {
        let item = format!(r#"{{"id":{i},"name":"row {i}","tags":["a","b"],"ok":true}}"#);
        len += item.len() + 1;
        items.push(item);
        i += 1;
    }
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"import","arguments":{{"rows":[{}]}}}}}}"#,
        items.join(",")
    )
    .into_bytes()
}

fn main() {
    let rules = ParseRules {
        max_depth: 64,
        max_batch: 32,
        extra_methods: &[],
        strict_keys: true,
    };
    let lax_rules = ParseRules {
        strict_keys: false,
        ..rules.clone()
    };
    println!(
        "{:>10} {:>14} {:>10} {:>12} {:>10} {:>17}",
        "body", "µs/parse", "MB/s", "+args µs", "lax µs", "vs serde_json"
    );
    for size in [1024usize, 64 * 1024, 1024 * 1024] {
        let b = body(size);
        let runs = (20_000_000 / size).clamp(5, 20_000);
        let mut best = f64::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            for _ in 0..runs {
                assert!(parse_payload(black_box(&b), &rules, false).is_ok());
            }
            best = best.min(start.elapsed().as_secs_f64() / runs as f64);
        }
        let mut lax = f64::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            for _ in 0..runs {
                assert!(parse_payload(black_box(&b), &lax_rules, false).is_ok());
            }
            lax = lax.min(start.elapsed().as_secs_f64() / runs as f64);
        }
        let mut with_args = f64::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            for _ in 0..runs {
                let p = parse_payload(black_box(&b), &rules, false).unwrap();
                let args = p.messages()[0].arguments().unwrap().to_value();
                assert!(black_box(args).is_some());
            }
            with_args = with_args.min(start.elapsed().as_secs_f64() / runs as f64);
        }
        let mut plain = f64::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            for _ in 0..runs {
                assert!(serde_json::from_slice::<serde_json::Value>(black_box(&b)).is_ok());
            }
            plain = plain.min(start.elapsed().as_secs_f64() / runs as f64);
        }
        println!(
            "{:>10} {:>14.1} {:>10.1} {:>12.1} {:>10.1} {:>16.2}x",
            b.len(),
            best * 1e6,
            b.len() as f64 / best / 1e6,
            with_args * 1e6,
            lax * 1e6,
            best / plain
        );
    }
}
