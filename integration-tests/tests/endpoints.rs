//! Only the configured endpoint is MCP, and sessions belong to their caller, through a real
//! Envoy (`envoy/demo.yaml`: path normalisation, exact routes, mcp-warden with identity,
//! policy and token exchange), the demo IdP and the demo MCP server.
//!
//! 1. Path variants (`/mcp/../actuator/env`, `/mcp/%2e%2e/x`, `/mcp%2Fx`, `/mcp/`, `/MCP`,
//!    `/mcp/extra`, `/mcp;x`, reserved escapes, absolute-form targets, …) with valid tokens:
//!    refused, and nothing reaches the server; `//mcp`, `/mcp?x=1`, `/m%63p`, `/x/../mcp` are
//!    the endpoint once Envoy has normalised them and reach it as `/mcp`.
//! 2. The 2024-11-05 HTTP+SSE transport (`/mcp/sse`, `/mcp/messages`, `Accept: */*`): refused.
//! 3. Sessions in the demo (no configured session key, four Envoy workers): the client
//!    only sees a sealed id; bob presenting alice's sealed id, or anyone presenting the raw
//!    one, is refused and the server never sees the request; every worker opens the id.
//! 4. GET and DELETE are decided (as `initialize`): two Envoys with the same configured
//!    `sessions.keys`, one of which denies alice sessions, refuses her GET and DELETE there.
//!
//! "Reached the server" is counted twice: the demo server's own request log (every path) and
//! Envoy's `upstream_rq_total` of the MCP cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{
    demo_plugin_config, envoy_bin, refusal_problems, repo_root, rpc_call, session_post, tail,
    wait_for, Envoy, EnvoyConfig, HttpRequest, HttpResponse, Idp, McpServer, Proc, ReqBody,
    TestCtx, Tokens, ALICE_ALL_SCOPES, RAW_PROTOCOL_VERSION,
};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::fs;
use std::process::Command;
use std::time::Duration;

const ACCEPT_BOTH: &str = "application/json, text/event-stream";

fn init_body(id: u64) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"initialize","params":{
        "protocolVersion": RAW_PROTOCOL_VERSION, "capabilities": {},
        "clientInfo": {"name":"it-endpoints","version":"1"}}})
    .to_string()
}

/// What reached the MCP server so far: its logged requests (any path) and Envoy's count of
/// requests sent to the cluster.
fn reached(server: &McpServer, envoy: &Envoy, cluster: &str) -> (Vec<Value>, u64) {
    let name = format!("cluster.{cluster}.upstream_rq_total");
    let stats = envoy.admin_get(&format!("/stats?filter=^{}$", name.replace('.', "\\.")));
    let total = stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in Envoy's stats:\n{stats}"));
    (requests(server), total)
}

/// The server's logged requests, its health checks (by the test harness) aside.
fn requests(server: &McpServer) -> Vec<Value> {
    server
        .events("req")
        .into_iter()
        .filter(|r| r["path"] != "/healthz")
        .collect()
}

fn show(resp: &HttpResponse) -> String {
    format!("HTTP {} {}", resp.status, resp.body_str())
}

/// One request that must not reach the server.
struct Refused {
    name: &'static str,
    req: HttpRequest,
    status: u16,
    /// `data.reason` of the JSON-RPC error, or None for Envoy's own refusal (not JSON-RPC).
    reason: Option<&'static str>,
    /// `data.rule`.
    rule: &'static str,
}

/// Sends each request; returns the problems: wrong answers, and any request that reached the
/// server.
fn check_refused(server: &McpServer, envoy: &Envoy, cases: Vec<Refused>) -> Vec<String> {
    let mut problems = Vec::new();
    for c in cases {
        let before = reached(server, envoy, "mcp_demo");
        let resp = match c.req.send(envoy.listener_port) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{}: {e}", c.name));
                continue;
            }
        };
        if std::env::var("IT_VERBOSE").is_ok() {
            eprintln!("{} {}: {}", c.req.method, c.req.path, show(&resp));
        }
        let bad = match c.reason {
            Some(reason) => {
                let code = if c.status == 403 { -32003 } else { -32600 };
                let code = if c.status == 401 { -32001 } else { code };
                let code = if reason == "session_not_found" {
                    -32001
                } else {
                    code
                };
                // The id is echoed when the filter read the body (a decision), else null.
                let id = match (&c.req.body, resp.json().map(|v| v["id"].is_null())) {
                    (ReqBody::Fixed(b), Ok(false)) => serde_json::from_slice::<Value>(b)
                        .map(|v| v["id"].clone())
                        .unwrap_or(Value::Null),
                    _ => Value::Null,
                };
                refusal_problems(&resp, c.status, code, reason, c.rule, &id)
            }
            None if resp.status == c.status => Vec::new(),
            None => vec![format!("status {} (expected {})", resp.status, c.status)],
        };
        if !bad.is_empty() {
            problems.push(format!(
                "{} ({} {}): {bad:?}\n  {}",
                c.name,
                c.req.method,
                c.req.path,
                show(&resp)
            ));
        }
        let after = reached(server, envoy, "mcp_demo");
        if after.1 != before.1 || after.0.len() != before.0.len() {
            problems.push(format!(
                "{} ({} {}) reached the server: {:?}",
                c.name,
                c.req.method,
                c.req.path,
                &after.0[before.0.len()..]
            ));
        }
    }
    problems
}

fn post_to(path: &str, tokens: &Tokens, body: String) -> HttpRequest {
    HttpRequest::new("POST", path)
        .headers(&tokens.headers())
        .header("Content-Type", "application/json")
        .header("Accept", ACCEPT_BOTH)
        .body(body)
}

fn get_to(path: &str, tokens: &Tokens, session: Option<&str>) -> HttpRequest {
    let mut r = HttpRequest::new("GET", path)
        .headers(&tokens.headers())
        .header("Accept", "text/event-stream")
        .header("MCP-Protocol-Version", RAW_PROTOCOL_VERSION)
        .timeout(Duration::from_secs(3));
    if let Some(s) = session {
        r = r.header("Mcp-Session-Id", s);
    }
    r
}

fn delete_to(path: &str, tokens: &Tokens, session: &str) -> HttpRequest {
    HttpRequest::new("DELETE", path)
        .headers(&tokens.headers())
        .header("Mcp-Session-Id", session)
        .header("MCP-Protocol-Version", RAW_PROTOCOL_VERSION)
}

/// The server answers `/mcp` (and only it) for this request: it logged one more request, on
/// path `/mcp`, and the client got the server's answer.
fn reaches_endpoint(
    server: &McpServer,
    envoy: &Envoy,
    name: &str,
    req: HttpRequest,
    status: u16,
) -> Result<HttpResponse, String> {
    let before = reached(server, envoy, "mcp_demo").0.len();
    let resp = req
        .send(envoy.listener_port)
        .map_err(|e| format!("{name}: {e}"))?;
    if resp.status != status {
        return Err(format!("{name}: expected {status}, got {}", show(&resp)));
    }
    let after = reached(server, envoy, "mcp_demo").0;
    let new: Vec<&Value> = after[before..].iter().collect();
    if new.len() != 1 || new[0]["path"] != "/mcp" {
        return Err(format!(
            "{name}: expected one request on /mcp at the server, got {new:?}"
        ));
    }
    Ok(resp)
}

#[test]
fn only_the_mcp_endpoint_reaches_the_server() {
    let ctx = TestCtx::new("endpoints-paths");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "corp");
    let envoy = Envoy::start(&ctx, "envoy", &EnvoyConfig::demo(server.port, idp.port));
    let alice = idp.tokens("alice", "agent-claude", ALICE_ALL_SCOPES);
    let mut problems = Vec::new();

    // Controls: the endpoint itself works for POST and GET, also spelled `//mcp`, `/mcp?x=1`.
    let mut session = None;
    for (name, path) in [
        ("exact", "/mcp"),
        ("query", "/mcp?x=1"),
        ("double_slash", "//mcp"),
    ] {
        match reaches_endpoint(
            &server,
            &envoy,
            name,
            post_to(path, &alice, init_body(1)),
            200,
        ) {
            Ok(r) => session = r.header("mcp-session-id").map(str::to_string),
            Err(e) => problems.push(e),
        }
    }
    let session = session.expect("initialize gave a session id");
    let initialized = session_post(
        &session,
        &json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .headers(&alice.headers());
    if let Err(e) = reaches_endpoint(&server, &envoy, "initialized", initialized, 202) {
        problems.push(e);
    }
    let stream = get_to("/mcp", &alice, Some(&session)).open(envoy.listener_port);
    match stream {
        Ok(s) if s.status == 200 => {}
        Ok(s) => problems.push(format!("GET /mcp: HTTP {}", s.status)),
        Err(e) => problems.push(format!("GET /mcp: {e}")),
    }

    let mut cases = Vec::new();
    let unknown = |name, req| Refused {
        name,
        req,
        status: 404,
        reason: Some("unknown_endpoint"),
        rule: "endpoint.unknown",
    };
    for (name, path) in [
        ("dot_dot_to_actuator", "/mcp/../actuator/env"),
        ("encoded_dot_dot", "/mcp/%2e%2e/x"),
        ("encoded_dot_dot_upper", "/mcp/%2E%2E/actuator/env"),
        ("trailing_slash", "/mcp/"),
        ("dot_segment", "/mcp/."),
        ("upper_case", "/MCP"),
        ("below_the_endpoint", "/mcp/extra"),
        ("path_parameter", "/mcp;x"),
        ("path_parameter_query", "/mcp;x?y=1"),
        ("prefix_look_alike", "/mcpx"),
        ("root", "/"),
        ("elsewhere", "/actuator/env"),
        (
            "metadata_prefix",
            "/.well-known/oauth-protected-resource/mcp/extra",
        ),
    ] {
        cases.push(unknown(name, get_to(path, &alice, Some(&session))));
        cases.push(unknown(name, post_to(path, &alice, init_body(2))));
        cases.push(unknown(name, delete_to(path, &alice, &session)));
    }
    // Encoded slashes are refused by Envoy itself (path_with_escaped_slashes_action).
    for (name, path) in [
        ("encoded_slash", "/mcp%2Fx"),
        ("encoded_slash_lower", "/mcp%2fextra"),
        ("encoded_backslash", "/mcp%5C..%5Cactuator"),
    ] {
        for req in [
            get_to(path, &alice, Some(&session)),
            post_to(path, &alice, init_body(3)),
        ] {
            cases.push(Refused {
                name,
                req,
                status: 400,
                reason: None,
                rule: "",
            });
        }
    }
    // Without a token a path variant is refused as well (401 first).
    cases.push(Refused {
        name: "no_token_below_the_endpoint",
        req: HttpRequest::new("GET", "/mcp/extra").header("Accept", "text/event-stream"),
        status: 401,
        reason: Some("missing_token"),
        rule: "user.missing",
    });
    // Absolute-form request targets are normalised like the others.
    for (name, path) in [
        ("absolute_dot_dot", "http://127.0.0.1/mcp/../actuator/env"),
        ("absolute_below", "http://127.0.0.1/mcp/extra"),
    ] {
        cases.push(unknown(name, get_to(path, &alice, Some(&session))));
    }
    problems.extend(check_refused(&server, &envoy, cases));

    // Spellings Envoy normalises to `/mcp` (unreserved escapes decoded, dot segments resolved):
    // they are the endpoint, and the server sees `/mcp`.
    for path in [
        "/%6Dcp",
        "/m%63p",
        "/./mcp",
        "/%2e/mcp",
        "/x/../mcp",
        "/MCP/../mcp",
        "http://127.0.0.1/mcp",
    ] {
        if let Err(e) = reaches_endpoint(
            &server,
            &envoy,
            path,
            post_to(path, &alice, init_body(4)),
            200,
        ) {
            problems.push(e);
        }
    }
    // Reserved or invalid escapes stay escaped: not the endpoint.
    let mut cases = Vec::new();
    for path in ["/mcp%3Bx", "/mcp%3F", "/mcp%20", "/mcp%2E"] {
        cases.push(unknown("escaped", post_to(path, &alice, init_body(5))));
    }
    cases.push(Refused {
        name: "nul_escape",
        req: post_to("/mcp%00", &alice, init_body(6)),
        status: 400,
        reason: None,
        rule: "",
    });
    problems.extend(check_refused(&server, &envoy, cases));

    // The metadata document is still served at its own path (by the filter, not the server).
    let before = reached(&server, &envoy, "mcp_demo");
    match HttpRequest::get("/.well-known/oauth-protected-resource/mcp").send(envoy.listener_port) {
        Ok(r) if r.status == 200 && r.json().is_ok_and(|v| v["resource"].is_string()) => {}
        Ok(r) => problems.push(format!("metadata: {}", show(&r))),
        Err(e) => problems.push(format!("metadata: {e}")),
    }
    let after = reached(&server, &envoy, "mcp_demo");
    if after.1 != before.1 {
        problems.push("the metadata request reached the server".into());
    }
    // Nothing but /mcp ever reached the server.
    let paths: Vec<String> = requests(&server)
        .iter()
        .map(|r| r["path"].as_str().unwrap_or("?").to_string())
        .filter(|p| p != "/mcp")
        .collect();
    if !paths.is_empty() {
        problems.push(format!("the server saw other paths: {paths:?}"));
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}\n--- envoy log:\n{}",
        problems.len(),
        problems.join("\n"),
        tail(&envoy.proc.log(), 40)
    );
}

#[test]
fn the_legacy_http_sse_transport_is_refused() {
    let ctx = TestCtx::new("endpoints-legacy");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "corp");
    let envoy = Envoy::start(&ctx, "envoy", &EnvoyConfig::demo(server.port, idp.port));
    let alice = idp.tokens("alice", "agent-claude", ALICE_ALL_SCOPES);
    let legacy_post = |path: &str, accept: &str| {
        HttpRequest::new("POST", path)
            .headers(&alice.headers())
            .header("Content-Type", "application/json")
            .header("Accept", accept)
            .body(init_body(1))
    };
    let legacy_get = |path: &str, accept: &str| {
        HttpRequest::new("GET", path)
            .headers(&alice.headers())
            .header("Accept", accept)
            .timeout(Duration::from_secs(3))
    };
    let unknown = |name, req| Refused {
        name,
        req,
        status: 404,
        reason: Some("unknown_endpoint"),
        rule: "endpoint.unknown",
    };
    let not_acceptable = |name, req| Refused {
        name,
        req,
        status: 406,
        reason: Some("not_acceptable"),
        rule: "<none>",
    };
    let cases = vec![
        // The legacy client opens its event stream at <prefix>/sse, then posts to the
        // `endpoint` the stream names (<prefix>/messages?sessionId=…), with Accept: */*.
        unknown("sse_stream", legacy_get("/mcp/sse", "text/event-stream")),
        unknown("sse_stream_any", legacy_get("/mcp/sse", "*/*")),
        unknown(
            "messages",
            legacy_post("/mcp/messages?sessionId=0f3c", "*/*"),
        ),
        unknown(
            "messages_both",
            legacy_post("/mcp/messages?sessionId=0f3c", ACCEPT_BOTH),
        ),
        // A legacy client pointed at the endpoint itself: its Accept does not list the types.
        not_acceptable("post_any", legacy_post("/mcp", "*/*")),
        not_acceptable("post_ranges", legacy_post("/mcp", "application/*, text/*")),
        not_acceptable("post_json_only", legacy_post("/mcp", "application/json")),
        not_acceptable(
            "post_json_any",
            legacy_post("/mcp", "application/json, */*"),
        ),
        not_acceptable("get_any", legacy_get("/mcp", "*/*")),
    ];
    let problems = check_refused(&server, &envoy, cases);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(
        requests(&server).is_empty(),
        "the server saw requests: {:?}",
        requests(&server)
    );
    // The same client with a Streamable HTTP Accept is served (the refusals were the transport).
    let ok = legacy_post("/mcp", ACCEPT_BOTH)
        .send(envoy.listener_port)
        .unwrap();
    assert_eq!(ok.status, 200, "{}", show(&ok));
}

/// Envoy with `config` and `--concurrency <workers>` (the harness's Envoy has one worker).
fn start_envoy_workers(ctx: &TestCtx, name: &str, config: &EnvoyConfig, workers: u32) -> Envoy {
    let listener_port = mcp_warden_integration_tests::free_port();
    let admin_port = mcp_warden_integration_tests::free_port();
    let config_path = ctx.path(&format!("{name}.yaml"));
    fs::write(&config_path, config.render(listener_port, admin_port)).unwrap();
    let mut cmd = Command::new(envoy_bin());
    cmd.current_dir(repo_root())
        .arg("-c")
        .arg(&config_path)
        .args(["--concurrency", &workers.to_string()])
        .args(["--log-level", "info", "--disable-hot-restart"])
        .args([
            "--base-id",
            &(std::process::id() % 100_000 * 100 + 97).to_string(),
        ]);
    config.apply_env(&mut cmd);
    let mut proc = Proc::spawn(ctx, name, cmd);
    let ready = wait_for(Duration::from_secs(30), Duration::from_millis(50), || {
        if let Some(st) = proc.try_wait() {
            panic!("Envoy {name} exited ({st}):\n{}", tail(&proc.log(), 60));
        }
        HttpRequest::get("/ready")
            .timeout(Duration::from_secs(2))
            .send(admin_port)
            .ok()
            .filter(|r| r.status == 200)
            .map(|_| ())
    });
    assert!(
        ready.is_some(),
        "Envoy {name} not ready:\n{}",
        tail(&proc.log(), 60)
    );
    Envoy {
        listener_port,
        admin_port,
        config_path,
        proc,
    }
}

/// How many connections each worker of the listener accepted.
fn connections_per_worker(envoy: &Envoy) -> Vec<u64> {
    let stats = envoy.admin_get("/stats?filter=worker_[0-9]+\\.downstream_cx_total");
    stats
        .lines()
        .filter(|l| l.starts_with("listener.127.0.0.1_"))
        .filter_map(|l| l.rsplit_once(": ").and_then(|(_, n)| n.parse().ok()))
        .collect()
}

#[test]
fn demo_sessions_are_sealed_and_belong_to_their_caller() {
    let ctx = TestCtx::new("endpoints-sessions");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "corp");
    // envoy/demo.yaml as shipped: identity on, no session key configured anywhere.
    let plugin = demo_plugin_config();
    assert!(plugin.get("sessions").is_none() && plugin["routing"].get("session_keys").is_none());
    let mut problems = Vec::new();
    {
        let envoy =
            start_envoy_workers(&ctx, "envoy", &EnvoyConfig::demo(server.port, idp.port), 4);
        problems.extend(
            sessions_scenario(&server, &idp, &envoy)
                .into_iter()
                .map(|p| format!("demo.yaml: {p}")),
        );
    }
    // The same without `routing`: sealing and binding do not depend on it.
    let mut no_routing = plugin.clone();
    no_routing.as_object_mut().unwrap().remove("routing");
    let envoy = start_envoy_workers(
        &ctx,
        "envoy-no-routing",
        &EnvoyConfig::demo(server.port, idp.port).plugin_config(&no_routing.to_string()),
        4,
    );
    problems.extend(
        sessions_scenario(&server, &idp, &envoy)
            .into_iter()
            .map(|p| format!("without routing: {p}")),
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}\n--- envoy log:\n{}",
        problems.len(),
        problems.join("\n"),
        tail(&envoy.proc.log(), 40)
    );
}

/// alice opens a session; every worker opens its sealed id, nobody else can use it, the raw id
/// never reaches the client nor opens anything; alice ends it.
fn sessions_scenario(server: &McpServer, idp: &Idp, envoy: &Envoy) -> Vec<String> {
    let alice = idp.tokens("alice", "agent-claude", ALICE_ALL_SCOPES);
    let bob = idp.tokens("bob", "agent-claude", "mcp:tools mcp:resources mcp:prompts");
    let mut problems = Vec::new();

    let init = post_to("/mcp", &alice, init_body(1))
        .send(envoy.listener_port)
        .unwrap();
    assert_eq!(init.status, 200, "{}", show(&init));
    let sealed = init.header("mcp-session-id").unwrap().to_string();
    let real = server
        .events("session-open")
        .last()
        .and_then(|e| e["session"].as_str().map(str::to_string))
        .expect("the server opened a session");
    if !sealed.starts_with("mw1.auto.") || sealed.contains(&real) {
        problems.push(format!(
            "the client got {sealed:?} for the server's {real:?}"
        ));
    }
    let raw_answer = format!("{:?}{}", init.headers, init.body_str());
    if raw_answer.contains(&real) {
        problems.push(format!("the raw session id is in the answer: {raw_answer}"));
    }
    let r = session_post(
        &sealed,
        &json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .headers(&alice.headers())
    .send(envoy.listener_port)
    .unwrap();
    if r.status != 202 {
        problems.push(format!("initialized: {}", show(&r)));
    }
    // Every worker opens the id (one key per Envoy process): 16 requests, new connections.
    let mut seen_real = Vec::new();
    for i in 0..16u64 {
        let r = rpc_call(&sealed, 10 + i, "tools/list", json!({}))
            .headers(&alice.headers())
            .send(envoy.listener_port)
            .unwrap();
        if r.status != 200 {
            problems.push(format!("tools/list #{i}: {}", show(&r)));
        }
        if r.header("mcp-session-id").is_some_and(|s| s != sealed) {
            problems.push(format!("tools/list #{i}: session id changed"));
        }
        if r.body_str().contains(&real) {
            problems.push(format!("tools/list #{i}: the raw id is in the answer"));
        }
        seen_real.extend(
            requests(server)
                .last()
                .and_then(|e| e["session"].as_str().map(str::to_string)),
        );
    }
    if seen_real.iter().any(|s| *s != real) {
        problems.push(format!("the server got other session ids: {seen_real:?}"));
    }
    let workers = connections_per_worker(envoy);
    if workers.iter().filter(|&&n| n > 0).count() < 2 {
        problems.push(format!(
            "the requests did not spread over several workers: {workers:?}"
        ));
    }

    // bob with alice's sealed id, anyone with the raw id, a tampered id: refused, unseen.
    let mut tampered = sealed.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let mut cases = Vec::new();
    for (name, who, sid, status, reason, rule) in [
        (
            "bob_sealed",
            &bob,
            sealed.as_str(),
            403,
            "session_forbidden",
            "session.owner",
        ),
        (
            "bob_raw",
            &bob,
            real.as_str(),
            404,
            "session_not_found",
            "session.unknown",
        ),
        (
            "alice_raw",
            &alice,
            real.as_str(),
            404,
            "session_not_found",
            "session.unknown",
        ),
        (
            "alice_tampered",
            &alice,
            tampered.as_str(),
            404,
            "session_not_found",
            "session.unknown",
        ),
    ] {
        for req in [
            rpc_call(sid, 99, "tools/list", json!({})).headers(&who.headers()),
            rpc_call(
                sid,
                98,
                "tools/call",
                json!({"name": "whoami", "arguments": {}}),
            )
            .headers(&who.headers()),
            get_to("/mcp", who, Some(sid)),
            delete_to("/mcp", who, sid),
        ] {
            cases.push(Refused {
                name,
                req,
                status,
                reason: Some(reason),
                rule,
            });
        }
    }
    problems.extend(check_refused(server, envoy, cases));
    // alice's session is untouched by all that: she can still use it, then end it.
    let r = rpc_call(
        &sealed,
        200,
        "tools/call",
        json!({"name": "whoami", "arguments": {}}),
    )
    .headers(&alice.headers())
    .send(envoy.listener_port)
    .unwrap();
    if r.status != 200 {
        problems.push(format!("alice after the attempts: {}", show(&r)));
    }
    let r = delete_to("/mcp", &alice, &sealed)
        .send(envoy.listener_port)
        .unwrap();
    if r.status != 200 {
        problems.push(format!("alice's DELETE: {}", show(&r)));
    }
    if !server
        .events("session-delete")
        .iter()
        .any(|e| e["session"] == real)
    {
        problems.push("the server did not end alice's session".into());
    }
    problems
}

#[test]
fn get_and_delete_are_decided_as_initialize() {
    let ctx = TestCtx::new("endpoints-get-delete");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "corp");
    // Two replicas with the same configured session key; on the second, alice may not open
    // (so neither listen to nor end) sessions.
    let key =
        json!({"keys": [{"id": "t1", "secret": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}]});
    let mut open = demo_plugin_config();
    open["sessions"] = key.clone();
    let mut closed = open.clone();
    closed["policy"]["rules"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "no-sessions.alice", "effect": "deny", "users": ["alice"], "methods": ["initialize"], "description": "test"}));
    let config = |plugin: &Value| {
        EnvoyConfig::demo(server.port, idp.port).plugin_config(&plugin.to_string())
    };
    let envoy_open = Envoy::start(&ctx, "envoy-open", &config(&open));
    let envoy_closed = Envoy::start(&ctx, "envoy-closed", &config(&closed));
    let alice = idp.tokens("alice", "agent-claude", ALICE_ALL_SCOPES);
    let init = post_to("/mcp", &alice, init_body(1))
        .send(envoy_open.listener_port)
        .unwrap();
    assert_eq!(init.status, 200, "{}", show(&init));
    let sealed = init.header("mcp-session-id").unwrap().to_string();
    assert!(sealed.starts_with("mw1.t1."), "{sealed}");
    let denied = |name, req| Refused {
        name,
        req,
        status: 403,
        reason: Some("policy_denied"),
        rule: "no-sessions.alice",
    };
    let mut problems = check_refused(
        &server,
        &envoy_closed,
        vec![
            denied("get_stream", get_to("/mcp", &alice, Some(&sealed))),
            denied("get_without_session", get_to("/mcp", &alice, None)),
            denied("delete", delete_to("/mcp", &alice, &sealed)),
            denied("initialize", post_to("/mcp", &alice, init_body(5))),
            Refused {
                name: "get_without_token",
                req: HttpRequest::new("GET", "/mcp")
                    .header("Accept", "text/event-stream")
                    .header("Mcp-Session-Id", &sealed),
                status: 401,
                reason: Some("missing_token"),
                rule: "user.missing",
            },
        ],
    );
    // The other replica opens the same sealed id and allows both.
    let stream = get_to("/mcp", &alice, Some(&sealed))
        .open(envoy_open.listener_port)
        .unwrap();
    if stream.status != 200 {
        problems.push(format!("GET on the open replica: HTTP {}", stream.status));
    }
    let _ = stream.set_read_timeout(Duration::from_millis(200));
    let r = delete_to("/mcp", &alice, &sealed)
        .send(envoy_open.listener_port)
        .unwrap();
    if r.status != 200 {
        problems.push(format!("DELETE on the open replica: {}", show(&r)));
    }
    // The denied GET is audited with its rule.
    let audited = wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        envoy_closed
            .proc
            .log()
            .lines()
            .any(|l| l.contains("mcp-warden audit") && l.contains("no-sessions.alice"))
            .then_some(())
    });
    if audited.is_none() {
        problems.push("no audit record names the rule that refused the GET".into());
    }
    let mut report = String::new();
    for p in &problems {
        let _ = writeln!(report, "{p}");
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{report}",
        problems.len()
    );
}
