#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
//! Decision time per request for 10, 1,000 and 10,000 rules (`cargo bench -p mcp-warden-core`).
//!
//! Rules are spread over distinct tools, as in a real registry; the decision for one tool must
//! not cost more when there are more rules about other tools (rules are indexed by tool name).
//! A second series adds rules whose tool patterns are wildcards with a literal prefix
//! (`ns<i>_*`): indexed by that prefix, they are not looked at either. A third adds patterns
//! that start with a wildcard (`*_<i>x`), which every decision has to look at: the worst case.

use mcp_warden_core::identity::claims::{TokenClaims, UserClaims};
use mcp_warden_core::identity::Identity;
use mcp_warden_core::jsonrpc::Target;
use mcp_warden_core::policy::config::RawPolicy;
use mcp_warden_core::policy::{Facts, Policy, Purpose};
use serde_json::json;
use std::hint::black_box;
use std::time::Instant;

fn policy(n: usize, prefixed: usize, leading: usize) -> Policy {
    let mut rules = vec![
        json!({"id": "target", "effect": "allow", "tools": ["target"], "groups": ["g"],
        "arguments": [{"path": "/q", "regex": "(?i)^\\s*select\\b[^;]*$"}]}),
    ];
    for i in 0..n {
        rules.push(
            json!({"id": format!("r{i}"), "effect": if i % 3 == 0 { "deny" } else { "allow" },
            "tools": [format!("tool_{i}")], "groups": [format!("group_{}", i % 50)]}),
        );
    }
    for i in 0..prefixed {
        rules.push(json!({"id": format!("w{i}"), "effect": "allow", "tools": [format!("ns{i}_*")], "groups": ["g"]}));
    }
    for i in 0..leading {
        rules.push(json!({"id": format!("l{i}"), "effect": "allow", "tools": [format!("*_{i}x")], "groups": ["g"]}));
    }
    let raw: RawPolicy = match serde_json::from_value(json!({"rules": rules})) {
        Ok(r) => r,
        Err(e) => panic!("bench policy: {e}"),
    };
    match raw.compile("policy") {
        Ok(p) => p,
        Err(e) => panic!("bench policy: {e}"),
    }
}

fn time_per_decision(p: &Policy) -> f64 {
    let identity = Identity {
        user: UserClaims {
            token: TokenClaims {
                sub: "alice".into(),
                ..TokenClaims::default()
            },
            groups: vec!["g".into()],
            ..UserClaims::default()
        },
        agent: None,
    };
    let target = Target::Tool("target".into());
    let args = json!({"q": "SELECT name FROM customers WHERE id = 7"});
    let facts = Facts {
        identity: Some(&identity),
        server: "",
        method: "tools/call",
        target: &target,
        arguments: Some(&args),
        live_hash: None,
        now: 1_800_000_000,
        purpose: Purpose::Call,
    };
    // Warm up, then take the best of 5 runs of 20,000 decisions.
    for _ in 0..2_000 {
        black_box(p.decide(black_box(&facts)));
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..20_000 {
            let d = p.decide(black_box(&facts));
            assert!(d.allowed(), "{}", d.reason);
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e9 / 20_000.0);
    }
    best
}

fn main() {
    println!("decision time per tools/call (native, best of 5 × 20,000)");
    println!(
        "{:>8} {:>10} {:>10} {:>14} {:>10}",
        "rules", "ns<i>_*", "*_<i>x", "ns/decision", "vs 10"
    );
    let mut base = None;
    for (n, w, l) in [
        (10, 0, 0),
        (1_000, 0, 0),
        (10_000, 0, 0),
        (10, 10, 0),
        (1_000, 100, 0),
        (10_000, 1_000, 0),
        (10, 0, 10),
        (1_000, 0, 100),
        (10_000, 0, 1_000),
    ] {
        let t = time_per_decision(&policy(n, w, l));
        let b = *base.get_or_insert(t);
        println!("{n:>8} {w:>10} {l:>10} {t:>14.0} {:>9.2}x", t / b);
    }
}
