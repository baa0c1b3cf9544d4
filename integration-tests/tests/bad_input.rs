//! Malformed and disallowed requests sent through Envoy + mcp-warden: each gets the expected
//! HTTP status and a JSON-RPC error body, and none reaches the upstream.
//!
//! The upstream is a recording stub (`RecordingUpstream`), so "never reached the upstream" is
//! an exact count, and a valid request sent first proves the path to the upstream works.
//! `IT_VERBOSE=1 cargo test ... -- --nocapture` prints every response.
//!
//! The demo config requires a verified user and agent before anything else is checked, so every
//! request here carries a valid token pair: these are authenticated callers sending bad MCP,
//! and the refusals come from the validation stage (`tests/identity.rs` covers the tokens).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{
    demo_plugin_config, jwt_payload, Envoy, EnvoyConfig, HttpRequest, HttpResponse, Idp,
    RecordingUpstream, TestCtx, Tokens, SERVER_AUDIENCE,
};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// What the error body's `id` must be.
#[derive(Clone, Debug)]
enum Id {
    Is(Value),
    /// The contract does not say (e.g. rejected from headers alone): any number or null.
    Any,
}

/// An extra check on a response (e.g. that an `Allow` header is present).
type ExtraCheck = fn(&HttpResponse) -> Result<(), String>;

struct Case {
    name: &'static str,
    req: HttpRequest,
    status: u16,
    code: i64,
    reason: &'static str,
    id: Id,
    /// Extra check on the response (e.g. an `Allow` header).
    extra: Option<ExtraCheck>,
}

fn case(
    name: &'static str,
    req: HttpRequest,
    status: u16,
    code: i64,
    reason: &'static str,
    id: Id,
) -> Case {
    Case {
        name,
        req,
        status,
        code,
        reason,
        id,
        extra: None,
    }
}

fn post(body: impl Into<Vec<u8>>) -> HttpRequest {
    HttpRequest::mcp_post(body)
}

fn nested_array(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

fn cases() -> Vec<Case> {
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let mut invalid_utf8 = br#"{"jsonrpc":"2.0","id":2,"method":"ping","params":{"x":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    invalid_utf8.extend_from_slice(br#""}}"#);
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"echo","arguments":{{"a":{}}}}}}}"#,
        nested_array(200)
    );
    vec![
        case("not_json", post("{nope"), 400, -32700, "parse_error", Id::Is(Value::Null)),
        case("invalid_utf8", post(invalid_utf8), 400, -32700, "parse_error", Id::Is(Value::Null)),
        case("empty_body", post(""), 400, -32700, "parse_error", Id::Is(Value::Null)),
        case(
            "duplicate_key",
            post(r#"{"jsonrpc":"2.0","id":7,"method":"ping","method":"tools/call"}"#),
            400,
            -32600,
            "duplicate_key",
            Id::Is(json!(7)),
        ),
        case("too_deep", post(deep), 400, -32600, "too_deep", Id::Any),
        case("not_jsonrpc", post(r#"{"hello":1}"#), 400, -32600, "invalid_request", Id::Is(Value::Null)),
        case(
            "jsonrpc_1_0",
            post(r#"{"jsonrpc":"1.0","id":3,"method":"ping"}"#),
            400,
            -32600,
            "invalid_request",
            Id::Is(json!(3)),
        ),
        case(
            "tools_call_without_name",
            post(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{}}"#),
            400,
            -32602,
            "invalid_params",
            Id::Is(json!(4)),
        ),
        case(
            "text_plain",
            post(ping).set_header("Content-Type", "text/plain"),
            415,
            -32600,
            "unsupported_media_type",
            Id::Any,
        ),
        case(
            "mcp_method_header_mismatch",
            post(r#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#)
                .header("Mcp-Method", "tools/list"),
            400,
            -32600,
            "header_mismatch",
            Id::Is(json!(11)),
        ),
        case(
            "unknown_protocol_version",
            post(ping).header("MCP-Protocol-Version", "1999-01-01"),
            400,
            -32600,
            "unsupported_protocol_version",
            Id::Any,
        ),
        case(
            "batch_in_2025_06_18",
            post(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).header("MCP-Protocol-Version", "2025-06-18"),
            400,
            -32600,
            "batch_not_allowed",
            Id::Is(Value::Null),
        ),
        Case {
            extra: Some(|r| match r.header("allow") {
                Some(v) if v.contains("POST") => Ok(()),
                other => Err(format!("expected an Allow header listing POST, got {other:?}")),
            }),
            ..case(
                "put",
                HttpRequest::new("PUT", "/mcp")
                    .header("Content-Type", "application/json")
                    .header("Accept", "application/json, text/event-stream")
                    .body(ping),
                405,
                -32600,
                "method_not_allowed",
                Id::Any,
            )
        },
        case(
            "get_without_event_stream",
            HttpRequest::get("/mcp").header("Accept", "application/json"),
            406,
            -32600,
            "not_acceptable",
            Id::Is(Value::Null),
        ),
        case(
            "delete_without_session",
            HttpRequest::new("DELETE", "/mcp"),
            400,
            -32600,
            "missing_session_id",
            Id::Is(Value::Null),
        ),
    ]
}

/// Checks one response against a case; returns the problems found.
fn check(c: &Case, resp: &HttpResponse) -> Vec<String> {
    let mut bad = Vec::new();
    if resp.status != c.status {
        bad.push(format!("status {} (expected {})", resp.status, c.status));
    }
    match resp.header("content-type") {
        Some(ct) if ct.starts_with("application/json") => {}
        other => bad.push(format!(
            "content-type {other:?} (expected application/json)"
        )),
    }
    let body = match resp.json() {
        Ok(v) => v,
        Err(e) => {
            bad.push(format!("body is not JSON ({e})"));
            return bad;
        }
    };
    if body.get("jsonrpc") != Some(&json!("2.0")) {
        bad.push("`jsonrpc` is not \"2.0\"".into());
    }
    match (&c.id, body.get("id")) {
        (_, None) => bad.push("no `id` member".into()),
        (Id::Is(want), Some(got)) if want != got => bad.push(format!("id {got} (expected {want})")),
        (Id::Any, Some(got)) if !(got.is_null() || got.is_number()) => {
            bad.push(format!("id {got}"))
        }
        _ => {}
    }
    let err = body.get("error");
    if err.and_then(|e| e.get("code")) != Some(&json!(c.code)) {
        bad.push(format!(
            "error.code {:?} (expected {})",
            err.and_then(|e| e.get("code")),
            c.code
        ));
    }
    let message = err.and_then(|e| e.get("message")).and_then(Value::as_str);
    if !matches!(message, Some(m) if !m.is_empty()) {
        bad.push("error.message missing or empty".into());
    }
    let reason = err
        .and_then(|e| e.get("data"))
        .and_then(|d| d.get("reason"));
    if reason != Some(&json!(c.reason)) {
        bad.push(format!(
            "error.data.reason {reason:?} (expected {:?})",
            c.reason
        ));
    }
    if let Some(extra) = c.extra {
        if let Err(e) = extra(resp) {
            bad.push(e);
        }
    }
    bad
}

/// Sends every case in order, each with the caller's tokens; returns a report of the failures
/// (empty when all passed).
fn run_cases(
    envoy: &Envoy,
    upstream: &RecordingUpstream,
    tokens: &Tokens,
    cases: &[Case],
) -> String {
    let mut report = String::new();
    for c in cases {
        let before = upstream.count();
        let mut problems = Vec::new();
        let resp = match c.req.clone().tokens(tokens).send(envoy.listener_port) {
            Ok(r) => {
                problems.extend(check(c, &r));
                Some(r)
            }
            Err(e) => {
                problems.push(format!("request failed: {e}"));
                None
            }
        };
        if std::env::var_os("IT_VERBOSE").is_some() {
            if let Some(r) = &resp {
                eprintln!("{}: {} {}", c.name, r.status, r.body_str());
            }
        }
        let reached = upstream.count() - before;
        if reached > 0 {
            problems.push(format!("{reached} request(s) reached the upstream"));
        }
        if !problems.is_empty() {
            let _ = writeln!(report, "\n### {}: {}", c.name, problems.join("; "));
            if let Some(r) = resp {
                let _ = writeln!(report, "{r}");
            }
        }
    }
    report
}

/// A valid request gets through (so "did not reach the upstream" means something), and the
/// upstream sees the verified identity, not the credentials.
fn assert_valid_ping_passes(envoy: &Envoy, upstream: &RecordingUpstream, tokens: &Tokens) {
    let before = upstream.count();
    let resp = HttpRequest::mcp_post(r#"{"jsonrpc":"2.0","id":99,"method":"ping"}"#)
        .tokens(tokens)
        .send(envoy.listener_port)
        .expect("valid ping through Envoy");
    assert_eq!(resp.status, 200, "valid ping was not forwarded:\n{resp}");
    assert_eq!(
        resp.json().ok().and_then(|v| v.get("id").cloned()),
        Some(json!(99)),
        "{resp}"
    );
    assert_eq!(
        upstream.count(),
        before + 1,
        "valid ping did not reach the upstream exactly once"
    );
    let seen = upstream.requests().pop().unwrap();
    let header = |name: &str| {
        seen.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("x-mcp-user"), Some("alice"), "{seen:?}");
    assert_eq!(header("x-agent-token"), None, "{seen:?}");
    // Not the caller's token: one exchanged for the upstream (token_exchange in demo.yaml).
    let upstream_token = header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_else(|| panic!("no exchanged token upstream: {seen:?}"));
    assert_ne!(
        upstream_token, tokens.user,
        "the user's own token reached the upstream"
    );
    let claims = jwt_payload(upstream_token);
    assert!(
        claims["act"]["sub"] == "agent:agent-claude"
            && claims["aud"] == SERVER_AUDIENCE
            && claims["sub"] == "alice",
        "the upstream token is not an exchanged one: {claims}"
    );
}

/// An IdP, the recording upstream, Envoy with the demo config (or the given plugin config)
/// and alice's tokens for agent-claude.
fn stack(ctx: &TestCtx, plugin_config: Option<&Value>) -> (Idp, RecordingUpstream, Envoy, Tokens) {
    let idp = Idp::start(ctx);
    let upstream = RecordingUpstream::start();
    let mut config = EnvoyConfig::demo(upstream.port, idp.port);
    if let Some(p) = plugin_config {
        config = config.plugin_config(&p.to_string());
    }
    let envoy = Envoy::start(ctx, "envoy", &config);
    let tokens = idp.tokens("alice", "agent-claude", "mcp:tools");
    (idp, upstream, envoy, tokens)
}

#[test]
fn malformed_requests_are_rejected_before_the_upstream() {
    let ctx = TestCtx::new("bad_input_malformed");
    let (_idp, upstream, envoy, tokens) = stack(&ctx, None);
    assert_valid_ping_passes(&envoy, &upstream, &tokens);
    let report = run_cases(&envoy, &upstream, &tokens, &cases());
    assert!(
        report.is_empty(),
        "cases that did not behave as specified:\n{report}"
    );
}

#[test]
fn oversized_bodies_get_413() {
    let ctx = TestCtx::new("bad_input_too_large");
    let mut plugin = demo_plugin_config();
    plugin["max_body_bytes"] = json!(4096);
    let (_idp, upstream, envoy, tokens) = stack(&ctx, Some(&plugin));
    assert_valid_ping_passes(&envoy, &upstream, &tokens);
    let big = |n: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":8,"method":"ping","params":{{"pad":"{}"}}}}"#,
            "x".repeat(n)
        )
    };
    let body = big(20_000).into_bytes();
    let pieces: Vec<Vec<u8>> = body.chunks(1000).map(<[u8]>::to_vec).collect();
    let huge = big(3 * 1024 * 1024).into_bytes();
    let huge_pieces: Vec<Vec<u8>> = huge.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
    let post = |b: Vec<u8>| HttpRequest::mcp_post(b);
    let cases = vec![
        case(
            "content_length_20k",
            post(body.clone()),
            413,
            -32600,
            "body_too_large",
            Id::Any,
        ),
        case(
            "chunked_20k",
            post(Vec::new()).chunked(pieces),
            413,
            -32600,
            "body_too_large",
            Id::Any,
        ),
        case(
            "content_length_3m",
            post(huge.clone()),
            413,
            -32600,
            "body_too_large",
            Id::Any,
        ),
        case(
            "chunked_3m",
            post(Vec::new()).chunked(huge_pieces),
            413,
            -32600,
            "body_too_large",
            Id::Any,
        ),
    ];
    let report = run_cases(&envoy, &upstream, &tokens, &cases);
    assert!(
        report.is_empty(),
        "cases that did not behave as specified:\n{report}"
    );
}

#[test]
fn default_cap_rejects_a_body_just_over_one_mib() {
    // max_body_bytes in envoy/demo.yaml is 1 MiB, which is also Envoy's default buffer limit:
    // the filter's JSON-RPC 413 must win over Envoy's own text/plain one.
    let ctx = TestCtx::new("bad_input_default_cap");
    let (_idp, upstream, envoy, tokens) = stack(&ctx, None);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "y".repeat(1024 * 1024)
    );
    let pieces: Vec<Vec<u8>> = body
        .as_bytes()
        .chunks(16 * 1024)
        .map(<[u8]>::to_vec)
        .collect();
    let cases = vec![
        case(
            "content_length_1m_plus",
            HttpRequest::mcp_post(body.clone()),
            413,
            -32600,
            "body_too_large",
            Id::Any,
        ),
        case(
            "chunked_1m_plus",
            HttpRequest::mcp_post(Vec::new()).chunked(pieces),
            413,
            -32600,
            "body_too_large",
            Id::Any,
        ),
    ];
    let report = run_cases(&envoy, &upstream, &tokens, &cases);
    assert!(
        report.is_empty(),
        "cases that did not behave as specified:\n{report}"
    );
}

/// Control: without the filter (and without jwt_authn: plain Envoy) the same inputs do reach
/// the upstream, so the tests above can fail.
#[test]
fn control_without_filter_malformed_requests_reach_the_upstream() {
    let ctx = TestCtx::new("bad_input_control");
    let upstream = RecordingUpstream::start();
    let envoy = Envoy::start(
        &ctx,
        "envoy",
        &EnvoyConfig::demo_without_identity(upstream.port).without_filter(),
    );
    let yaml = std::fs::read_to_string(&envoy.config_path).unwrap();
    assert!(
        !yaml.contains("envoy.filters.http.wasm") && !yaml.contains("envoy.filters.http.jwt_authn"),
        "control config still has the wasm or jwt_authn filter"
    );
    let posts: Vec<Case> = cases()
        .into_iter()
        .filter(|c| c.req.method == "POST")
        .collect();
    for c in &posts {
        let before = upstream.count();
        let resp = c
            .req
            .send(envoy.listener_port)
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_ne!(
            resp.status, c.status,
            "{}: plain Envoy answered like the filter:\n{resp}",
            c.name
        );
        assert_eq!(
            upstream.count(),
            before + 1,
            "{}: did not reach the upstream",
            c.name
        );
    }
}
