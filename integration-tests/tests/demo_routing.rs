//! `make demo`'s routing through a real Envoy with `envoy/demo.yaml` as shipped: the demo MCP
//! server in two versions (stable `demo-a`, canary `demo-b`), mcp-warden choosing the version
//! per user (group `hr` → canary, 10 % of the others by hash, sticky) and keeping each session on
//! its version; a client's own `x-mcp-variant` changes nothing. Where each request went is read
//! from the two servers' own request logs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::routing_support::{caller_at, callers_at};
use mcp_warden_integration_tests::{
    rpc_call, session_post, Envoy, EnvoyConfig, HttpRequest, Idp, McpServer, TestCtx, Tokens,
    RAW_PROTOCOL_VERSION,
};
use serde_json::json;

fn initialize(port: u16, tokens: &Tokens, extra: &[(&str, &str)]) -> Result<String, String> {
    let body = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion": RAW_PROTOCOL_VERSION, "capabilities": {},
        "clientInfo": {"name":"it-demo-routing","version":"1"}}});
    let mut req = HttpRequest::mcp_post(body.to_string()).headers(&tokens.headers());
    for (k, v) in extra {
        req = req.header(k, v);
    }
    let r = req.send(port).map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("initialize: HTTP {} {}", r.status, r.body_str()));
    }
    r.header("mcp-session-id")
        .map(str::to_string)
        .ok_or_else(|| "initialize: no session id".to_string())
}

/// The sessions a server opened, and how many MCP requests it got.
fn seen(server: &McpServer) -> (Vec<String>, usize) {
    let opened = server
        .events("session-open")
        .iter()
        .filter_map(|e| e["session"].as_str().map(str::to_string))
        .collect();
    (opened, server.mcp_requests().len())
}

#[test]
fn the_demo_splits_users_between_stable_and_canary_and_sessions_stay() {
    let ctx = TestCtx::new("demo-routing");
    let idp = Idp::start(&ctx);
    let stable = McpServer::start(&ctx, "demo-a");
    let canary = McpServer::start(&ctx, "demo-b");
    let mut config = EnvoyConfig::demo(stable.port, idp.port);
    config.upstreams.retain(|(template, _)| *template != 8102);
    config.upstreams.push((8102, canary.port));
    let envoy = Envoy::start(&ctx, "envoy", &config);
    let port = envoy.listener_port;
    let mut problems = Vec::new();

    // The audience split: the hr group always gets the canary, and its session stays there.
    let carol = caller_at(idp.port, "carol-hr", &["hr"]);
    let before = (seen(&stable).1, seen(&canary).1);
    let sealed = initialize(port, &carol, &[]).unwrap();
    let initialized = session_post(
        &sealed,
        &json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .headers(&carol.headers())
    .send(port)
    .unwrap();
    assert_eq!(initialized.status, 202, "{initialized}");
    for i in 0..6u64 {
        let r = rpc_call(&sealed, 10 + i, "tools/list", json!({}))
            .headers(&carol.headers())
            .send(port)
            .unwrap();
        if r.status != 200 {
            problems.push(format!("carol's tools/list #{i}: HTTP {}", r.status));
        }
    }
    let after = (seen(&stable).1, seen(&canary).1);
    if after.0 != before.0 || after.1 != before.1 + 8 {
        problems.push(format!(
            "carol's 8 requests: stable got {}, canary got {} (expected 0 and 8)",
            after.0 - before.0,
            after.1 - before.1
        ));
    }
    // Another user cannot use carol's session on the canary either.
    let dave = caller_at(idp.port, "dave-x", &[]);
    let r = rpc_call(&sealed, 50, "tools/list", json!({}))
        .headers(&dave.headers())
        .send(port)
        .unwrap();
    let reason = r.json().ok().map(|v| v["error"]["data"]["reason"].clone());
    if r.status != 403 || reason != Some(json!("session_forbidden")) {
        problems.push(format!(
            "dave on carol's session: HTTP {} {}",
            r.status,
            r.body_str()
        ));
    }
    if seen(&canary).1 != after.1 {
        problems.push("dave's request reached the canary".into());
    }

    // Where one initialize of `t` went: Some(true) canary, Some(false) stable.
    let variant_of = |t: &Tokens, extra: &[(&str, &str)]| -> Result<bool, String> {
        let before = (seen(&stable).0.len(), seen(&canary).0.len());
        initialize(port, t, extra)?;
        match (
            seen(&stable).0.len() - before.0,
            seen(&canary).0.len() - before.1,
        ) {
            (0, 1) => Ok(true),
            (1, 0) => Ok(false),
            other => Err(format!("one initialize opened sessions {other:?}")),
        }
    };

    // A client cannot choose its variant: its x-mcp-variant is removed, the filter decides.
    let dave_canary = variant_of(&dave, &[]).unwrap();
    for v in ["canary", "stable", "nope"] {
        match variant_of(&dave, &[("x-mcp-variant", v)]) {
            Ok(c) if c == dave_canary => {}
            other => problems.push(format!("dave with x-mcp-variant: {v}: {other:?}")),
        }
    }

    // The weighted split over 300 users (no group): about 10 % canary, each user sticky.
    let users: Vec<(String, Vec<String>)> = (0..300)
        .map(|i| (format!("user-{i}"), Vec::new()))
        .collect();
    let callers = callers_at(idp.port, &users, 4);
    let mut first = Vec::new();
    for t in &callers {
        match variant_of(t, &[]) {
            Ok(c) => first.push(c),
            Err(e) => {
                problems.push(e);
                first.push(false);
            }
        }
    }
    let canary_n = first.iter().filter(|&&c| c).count();
    if !(12..=50).contains(&canary_n) {
        problems.push(format!(
            "300 users: {canary_n} on canary (expected about 30)"
        ));
    }
    for (i, t) in callers.iter().enumerate().take(60) {
        match variant_of(t, &[]) {
            Ok(c) if c == first[i] => {}
            other => problems.push(format!(
                "user-{i} moved: first canary={}, now {other:?}",
                first[i]
            )),
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
