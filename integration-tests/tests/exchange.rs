//! RFC 8693 token exchange through a real Envoy: the demo IdP is the token service (cluster
//! `sts`) and the demo MCP server runs with `--verify-tokens`, so it accepts only tokens issued by
//! the IdP for its own audience, with an actor (`act.sub`) and the scope the request needs.
//!
//! - [`exchange_per_tool_cache_single_flight_and_outage`]: each tool gets its own token with only
//!   its scope; a token is reused while valid (same `jti`, no new exchange at the IdP); 50
//!   concurrent first calls for one key cause exactly one exchange; the user's own token never
//!   reaches the server; with the IdP killed, calls that need a new token get a clean 503
//!   JSON-RPC error (-32004) and nothing reaches the server; the IdP restarted on the same port
//!   (same issuer and signing key) is used again without restarting Envoy.
//! - [`cached_token_expires_and_is_refreshed`]: lifetime 6 s, refresh margin 1 s.
//! - [`token_service_failures_fail_closed`]: a fake token service (garbage, errors, refusals,
//!   silence, slowness) in place of the IdP; also the exact RFC 8693 request the filter sends.
//!   (`exchange_attacks.rs` has the answers of a malicious token service.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{
    b64_encode, demo_plugin_config, jwt_payload, open_session, refusal_problems, rpc_message,
    tool_call, wait_for, Envoy, EnvoyConfig, HttpRequest, HttpResponse, Idp, IdpOptions, McpServer,
    RecordingUpstream, ServerOptions, StubResponse, StubServer, TestCtx, Tokens, ALICE_ALL_SCOPES,
    B64_STD, SERVER_AUDIENCE,
};
use serde_json::{json, Value};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const AGENT: &str = "agent:agent-claude";
/// What alice's tokens carry in these tests: the scopes of the tools called here.
const SCOPES: &str = "mcp:tools files:delete sql:read";

/// A verified demo server, and Envoy (demo config, or `plugin`) in front of it.
struct Stack {
    idp: Idp,
    server: McpServer,
    envoy: Envoy,
}

impl Stack {
    fn start(test: &str, plugin: Option<Value>) -> Stack {
        let ctx = TestCtx::new(test);
        let idp = Idp::start_with(
            &ctx,
            &IdpOptions {
                signing_key: Some(ctx.path("idp-signing-key.pem")),
            },
        );
        let server = McpServer::start_with(
            &ctx,
            "corp",
            &ServerOptions {
                verify_tokens_with_idp: Some(idp.port),
                ..Default::default()
            },
        );
        let mut config = EnvoyConfig::demo(server.port, idp.port);
        if let Some(p) = plugin {
            config = config.plugin_config(&p.to_string());
        }
        let envoy = Envoy::start(&ctx, "envoy", &config);
        Stack { idp, server, envoy }
    }

    fn port(&self) -> u16 {
        self.envoy.listener_port
    }

    /// A tools/call through Envoy, and the tokens the server verified for it.
    fn call(
        &self,
        tokens: &Tokens,
        session: &str,
        id: u64,
        tool: &str,
        args: Value,
    ) -> (HttpResponse, Vec<Value>) {
        let before = self.server.verified_tokens().len();
        let resp = tool_call(session, id, tool, args)
            .tokens(tokens)
            .send(self.port())
            .unwrap_or_else(|e| panic!("tools/call {tool}: {e}"));
        (resp, self.server.verified_tokens().split_off(before))
    }
}

/// The one token the server verified for a successful call: checks it and returns its jti.
fn one_token(
    what: &str,
    resp: &HttpResponse,
    seen: &[Value],
    scope: &str,
    problems: &mut Vec<String>,
) -> String {
    let ok = resp.status == 200
        && rpc_message(resp)
            .is_some_and(|m| m.get("result").is_some() && m["result"]["isError"] != true);
    if !ok {
        problems.push(format!("{what}: not answered by the server:\n{resp}"));
    }
    let [t] = seen else {
        problems.push(format!(
            "{what}: the server verified {} tokens: {seen:?}",
            seen.len()
        ));
        return String::new();
    };
    if t["scope"] != scope
        || t["act_sub"] != AGENT
        || t["aud"] != SERVER_AUDIENCE
        || t["sub"] != "alice"
    {
        problems.push(format!(
            "{what}: token with scope {}, act.sub {}, aud {}, sub {} (expected {scope:?}, {AGENT:?}, {SERVER_AUDIENCE:?}, \"alice\")",
            t["scope"], t["act_sub"], t["aud"], t["sub"]
        ));
    }
    t["jti"].as_str().unwrap_or_default().to_string()
}

/// Every request that reached the server carried an exchanged token (actor, server audience),
/// never the caller's own tokens, and the server refused none.
fn only_exchanged_tokens_reached(
    server: &McpServer,
    callers: &[&Tokens],
    problems: &mut Vec<String>,
) {
    let own: Vec<String> = callers
        .iter()
        .flat_map(|t| {
            [
                jwt_payload(&t.user)["jti"].clone(),
                jwt_payload(&t.agent)["jti"].clone(),
            ]
        })
        .filter_map(|j| j.as_str().map(str::to_string))
        .collect();
    let reqs = server.mcp_requests();
    if reqs.is_empty() {
        problems.push("no request reached the server".into());
    }
    for r in reqs {
        let jti = r["token_jti"].as_str().unwrap_or_default();
        if r["token_act_sub"] != AGENT
            || r["token_aud"] != SERVER_AUDIENCE
            || own.iter().any(|j| j == jti)
            || r["saw_agent_token"] != false
        {
            problems.push(format!(
                "a request reached the server without an exchanged token: {r}"
            ));
        }
    }
    let refused = server.refused_tokens();
    if !refused.is_empty() {
        problems.push(format!(
            "the server refused tokens it got through Envoy: {refused:?}"
        ));
    }
}

/// A 503 `token_service_unavailable` (-32004) that never reached the server.
fn unavailable(stack: &Stack, what: &str, req: HttpRequest, id: Value, problems: &mut Vec<String>) {
    let before = stack.server.mcp_requests().len();
    let started = Instant::now();
    match req.send(stack.port()) {
        Ok(r) => {
            let p = refusal_problems(
                &r,
                503,
                -32004,
                "token_service_unavailable",
                "exchange.unavailable",
                &id,
            );
            if !p.is_empty() {
                problems.push(format!("{what}: {}\n{r}", p.join("; ")));
            }
        }
        Err(e) => problems.push(format!("{what}: no response: {e}")),
    }
    if started.elapsed() > Duration::from_secs(4) {
        problems.push(format!("{what}: took {:?}", started.elapsed()));
    }
    if stack.server.mcp_requests().len() != before {
        problems.push(format!(
            "{what}: reached the server while the token service was down"
        ));
    }
}

#[test]
fn exchange_per_tool_cache_single_flight_and_outage() {
    let mut stack = Stack::start("exchange_end_to_end", None);
    let port = stack.port();
    let mut problems = Vec::new();

    let t1 = stack.idp.tokens("alice", "agent-claude", SCOPES);
    let session = open_session(port, &t1.headers()).unwrap_or_else(|e| panic!("{e}"));
    let init_jti = stack
        .server
        .verified_tokens()
        .iter()
        .find(|t| t["rpc"] == json!(["initialize"]))
        .and_then(|t| t["jti"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("the server verified no token for initialize"));
    let x0 = stack.idp.exchanges();

    // --- one token per tool, with only that tool's scope
    let (r, seen) = stack.call(&t1, &session, 10, "delete_file", json!({"path": "/tmp/a"}));
    let jti_a = one_token("delete_file", &r, &seen, "files:delete", &mut problems);
    let (r, seen) = stack.call(
        &t1,
        &session,
        11,
        "query_table",
        json!({"table": "customers"}),
    );
    let jti_b = one_token("query_table", &r, &seen, "sql:read", &mut problems);
    if jti_a == jti_b || jti_a == init_jti || jti_b == init_jti {
        problems.push(format!(
            "tokens not distinct: initialize {init_jti}, delete_file {jti_a}, query_table {jti_b}"
        ));
    }
    let x1 = stack.idp.exchanges();
    if x1 - x0 != 2 {
        problems.push(format!("two tools cost {} exchanges (expected 2)", x1 - x0));
    }
    // --- the same tool again: the cached token, no exchange
    let (r, seen) = stack.call(&t1, &session, 12, "delete_file", json!({"path": "/tmp/b"}));
    let jti = one_token(
        "delete_file again",
        &r,
        &seen,
        "files:delete",
        &mut problems,
    );
    if jti != jti_a {
        problems.push(format!(
            "delete_file again got token {jti}, not the cached {jti_a}"
        ));
    }
    if stack.idp.exchanges() != x1 {
        problems.push(format!(
            "a cached token cost an exchange ({} -> {})",
            x1,
            stack.idp.exchanges()
        ));
    }
    // --- whoami reports the token it got: the session's mcp:tools token
    let (r, _) = stack.call(&t1, &session, 13, "whoami", json!({}));
    let who: Value = rpc_message(&r)
        .and_then(|m| {
            m["result"]["content"][0]["text"]
                .as_str()
                .map(str::to_string)
        })
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let want = json!({"token_scope": "mcp:tools", "token_act_sub": AGENT, "token_aud": SERVER_AUDIENCE,
                      "token_jti": init_jti, "token_sub": "alice", "x-mcp-user": "alice"});
    for (k, v) in want.as_object().unwrap() {
        if &who[k] != v {
            problems.push(format!(
                "whoami {k} = {} (expected {v}); whoami: {who}",
                who[k]
            ));
        }
    }

    // --- 50 concurrent first calls for one key: one exchange
    let t2 = stack.idp.tokens("alice", "agent-claude", SCOPES);
    let s2 = open_session(port, &t2.headers()).unwrap_or_else(|e| panic!("{e}"));
    let (before, before_requests) = {
        let s = stack.idp.stats();
        (
            s["token_exchange"].as_u64().unwrap(),
            s["token_exchange_requests"].as_u64().unwrap(),
        )
    };
    let verified_before = stack.server.verified_tokens().len();
    let barrier = Arc::new(Barrier::new(50));
    let started = Instant::now();
    let handles: Vec<_> = (0..50u64)
        .map(|i| {
            let (barrier, s2, t2) = (barrier.clone(), s2.clone(), t2.clone());
            std::thread::spawn(move || {
                let req = tool_call(
                    &s2,
                    1000 + i,
                    "delete_file",
                    json!({"path": format!("/tmp/c{i}")}),
                )
                .tokens(&t2)
                .timeout(Duration::from_secs(20));
                barrier.wait();
                req.send(port)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let failed: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            Ok(r)
                if r.status == 200 && rpc_message(r).is_some_and(|m| m.get("result").is_some()) =>
            {
                None
            }
            Ok(r) => Some(format!("#{i}: {r}")),
            Err(e) => Some(format!("#{i}: {e}")),
        })
        .collect();
    if !failed.is_empty() {
        problems.push(format!(
            "{} of 50 concurrent calls failed:\n{}",
            failed.len(),
            failed.join("\n")
        ));
    }
    let s = stack.idp.stats();
    let (after, after_requests) = (
        s["token_exchange"].as_u64().unwrap(),
        s["token_exchange_requests"].as_u64().unwrap(),
    );
    if after - before != 1 || after_requests - before_requests != 1 {
        problems.push(format!(
            "50 concurrent first calls caused {} exchanges ({} requests at the IdP); expected exactly 1",
            after - before,
            after_requests - before_requests
        ));
    }
    let concurrent: Vec<Value> = stack.server.verified_tokens().split_off(verified_before);
    let jtis: std::collections::BTreeSet<&str> = concurrent
        .iter()
        .filter_map(|t| t["jti"].as_str())
        .collect();
    if concurrent.len() != 50
        || jtis.len() != 1
        || concurrent.iter().any(|t| t["scope"] != "files:delete")
    {
        problems.push(format!(
            "the server should have verified 50 requests carrying one files:delete token, got {} requests with {} tokens",
            concurrent.len(),
            jtis.len()
        ));
    }
    eprintln!("50 concurrent calls in {:?}", started.elapsed());

    // --- the GET stream and the session DELETE carry exchanged tokens too (mcp:tools)
    match HttpRequest::get("/mcp")
        .header("Accept", "text/event-stream")
        .header("Mcp-Session-Id", &s2)
        .header("MCP-Protocol-Version", "2025-06-18")
        .tokens(&t2)
        .timeout(Duration::from_secs(5))
        .open(port)
    {
        Ok(s) if s.status == 200 => {}
        Ok(s) => problems.push(format!("GET stream through Envoy: status {}", s.status)),
        Err(e) => problems.push(format!("GET stream through Envoy: {e}")),
    }
    match HttpRequest::new("DELETE", "/mcp")
        .header("Mcp-Session-Id", &s2)
        .header("MCP-Protocol-Version", "2025-06-18")
        .tokens(&t2)
        .send(port)
    {
        Ok(r) if r.status == 200 => {}
        Ok(r) => problems.push(format!("session DELETE through Envoy:\n{r}")),
        Err(e) => problems.push(format!("session DELETE through Envoy: {e}")),
    }

    // --- the user's own token never reached the server
    only_exchanged_tokens_reached(&stack.server, &[&t1, &t2], &mut problems);

    // --- the token service goes away: calls that need a new token fail closed, fast
    let t3 = stack.idp.tokens("alice", "agent-claude", SCOPES);
    let kid = stack.idp.stats()["kids"][0].clone();
    stack.idp.kill();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name":"it","version":"1"}}});
    unavailable(
        &stack,
        "initialize, IdP down",
        HttpRequest::mcp_post(init.to_string()).tokens(&t3),
        json!(1),
        &mut problems,
    );
    unavailable(
        &stack,
        "delete_file with new tokens, IdP down",
        tool_call(&session, 20, "delete_file", json!({"path": "/tmp/d"})).tokens(&t3),
        json!(20),
        &mut problems,
    );
    unavailable(
        &stack,
        "query_table with new tokens, IdP down",
        tool_call(&session, 21, "query_table", json!({"table": "customers"})).tokens(&t3),
        json!(21),
        &mut problems,
    );
    // A token cached before the outage is still valid and still used.
    let (r, seen) = stack.call(&t1, &session, 22, "delete_file", json!({"path": "/tmp/e"}));
    let jti = one_token(
        "cached delete_file, IdP down",
        &r,
        &seen,
        "files:delete",
        &mut problems,
    );
    if jti != jti_a {
        problems.push(format!(
            "cached delete_file during the outage got {jti}, not {jti_a}"
        ));
    }

    // --- the IdP comes back on the same port with the same key: used again, Envoy untouched
    stack.idp.restart();
    if stack.idp.stats()["kids"][0] != kid {
        problems.push(format!(
            "the restarted IdP has another key: {} vs {kid}",
            stack.idp.stats()["kids"][0]
        ));
    }
    let recovered = wait_for(Duration::from_secs(10), Duration::from_millis(250), || {
        HttpRequest::mcp_post(init.to_string())
            .tokens(&t3)
            .send(port)
            .ok()
            .filter(|r| r.status == 200)
    });
    match recovered {
        None => problems
            .push("initialize with new tokens still fails 10 s after the IdP restarted".into()),
        Some(r) => {
            let s3 = r.header("mcp-session-id").unwrap_or_default().to_string();
            let _ = mcp_warden_integration_tests::session_post(
                &s3,
                &json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            )
            .tokens(&t3)
            .send(port);
            let (r, seen) = stack.call(&t3, &s3, 30, "delete_file", json!({"path": "/tmp/f"}));
            one_token(
                "delete_file after the IdP restarted",
                &r,
                &seen,
                "files:delete",
                &mut problems,
            );
            if stack.idp.exchanges() != 2 {
                problems.push(format!(
                    "after the restart: {} exchanges at the IdP (expected 2: initialize, delete_file)",
                    stack.idp.exchanges()
                ));
            }
        }
    }
    if stack.envoy.proc.try_wait().is_some() {
        problems.push("Envoy exited".into());
    }
    only_exchanged_tokens_reached(&stack.server, &[&t1, &t2, &t3], &mut problems);

    // --- controls: the server does refuse what the filter must never send it
    let direct_init = |token: &str| {
        HttpRequest::mcp_post(init.to_string())
            .header("Authorization", &format!("Bearer {token}"))
            .send(stack.server.port)
            .expect("direct initialize")
    };
    let r = direct_init(&t1.user);
    if r.status != 401 {
        problems.push(format!(
            "control: the server accepted the user's own token:\n{r}"
        ));
    }
    let no_actor = stack
        .idp
        .token_request(
            &[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", &t1.user),
                ("audience", SERVER_AUDIENCE),
                ("scope", "mcp:tools"),
            ],
            Some(("mcp-warden", "mcp-warden-secret")),
        )
        .expect("exchange without actor");
    let no_actor = no_actor.json().unwrap()["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let r = direct_init(&no_actor);
    if r.status != 401 {
        problems.push(format!(
            "control: the server accepted a token without act:\n{r}"
        ));
    }

    assert!(
        problems.is_empty(),
        "token exchange:\n{}",
        problems.join("\n")
    );
}

#[test]
fn cached_token_expires_and_is_refreshed() {
    let mut plugin = demo_plugin_config();
    plugin["token_exchange"]["refresh_margin_seconds"] = json!(1);
    plugin["token_exchange"]["servers"]["corp"]["lifetime_seconds"] = json!(6);
    let stack = Stack::start("exchange_expiry", Some(plugin));
    let port = stack.port();
    let mut problems = Vec::new();

    let t = stack.idp.tokens("alice", "agent-claude", SCOPES);
    let session = open_session(port, &t.headers()).unwrap_or_else(|e| panic!("{e}"));
    let x0 = stack.idp.exchanges();
    let (r, seen) = stack.call(&t, &session, 10, "delete_file", json!({"path": "/tmp/a"}));
    let first = one_token(
        "first delete_file",
        &r,
        &seen,
        "files:delete",
        &mut problems,
    );
    let (iat, exp) = (
        seen[0]["iat"].as_u64().unwrap_or(0),
        seen[0]["exp"].as_u64().unwrap_or(0),
    );
    if exp.saturating_sub(iat) != 6 {
        problems.push(format!(
            "the exchanged token lives {} s (requested 6)",
            exp.saturating_sub(iat)
        ));
    }
    let (r, seen) = stack.call(&t, &session, 11, "delete_file", json!({"path": "/tmp/b"}));
    let again = one_token(
        "delete_file right after",
        &r,
        &seen,
        "files:delete",
        &mut problems,
    );
    if again != first || stack.idp.exchanges() != x0 + 1 {
        problems.push(format!(
            "within its lifetime the token was not reused: {first} then {again}, {} exchanges",
            stack.idp.exchanges() - x0
        ));
    }
    // From `exp - refresh_margin` on, the cached token is not used any more.
    let refresh_at = Duration::from_secs(exp - 1) + Duration::from_millis(300);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    std::thread::sleep(refresh_at.saturating_sub(now));
    let (r, seen) = stack.call(&t, &session, 12, "delete_file", json!({"path": "/tmp/c"}));
    let second = one_token(
        "delete_file after the refresh point",
        &r,
        &seen,
        "files:delete",
        &mut problems,
    );
    if second == first || stack.idp.exchanges() != x0 + 2 {
        problems.push(format!(
            "near expiry no new token was fetched: {first} then {second}, {} exchanges",
            stack.idp.exchanges() - x0
        ));
    }
    let (r, seen) = stack.call(&t, &session, 13, "delete_file", json!({"path": "/tmp/d"}));
    let third = one_token(
        "delete_file after the refresh",
        &r,
        &seen,
        "files:delete",
        &mut problems,
    );
    if third != second || stack.idp.exchanges() != x0 + 2 {
        problems.push(format!(
            "the refreshed token was not cached: {second} then {third}"
        ));
    }
    // After the first token's expiry: still the refreshed one (never the expired one).
    let after_exp = Duration::from_secs(exp + 1) + Duration::from_millis(200);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    std::thread::sleep(after_exp.saturating_sub(now));
    let (r, seen) = stack.call(&t, &session, 14, "delete_file", json!({"path": "/tmp/e"}));
    let fourth = one_token(
        "delete_file after the first token expired",
        &r,
        &seen,
        "files:delete",
        &mut problems,
    );
    if fourth == first {
        problems.push(format!(
            "after its expiry the first token {first} was still sent"
        ));
    }
    // No request ever carried an expired token (the server would have refused it).
    if !stack.server.refused_tokens().is_empty() {
        problems.push(format!(
            "the server refused tokens: {:?}",
            stack.server.refused_tokens()
        ));
    }
    assert!(
        problems.is_empty(),
        "token expiry:\n{}",
        problems.join("\n")
    );
}

/// A failing token service, and what the caller must get.
struct StsCase {
    name: &'static str,
    answer: StubResponse,
    status: u16,
    code: i64,
    reason: &'static str,
    rule: &'static str,
}

fn sts_unavailable(name: &'static str, answer: StubResponse, rule: &'static str) -> StsCase {
    StsCase {
        name,
        answer,
        status: 503,
        code: -32004,
        reason: "token_service_unavailable",
        rule,
    }
}

/// A token service answer that is not acceptable: 502, `data.rule` names the check.
fn sts_invalid(name: &'static str, answer: StubResponse, rule: &'static str) -> StsCase {
    StsCase {
        name,
        answer,
        status: 502,
        code: -32004,
        reason: "token_service_invalid_answer",
        rule,
    }
}

fn sts_refused(name: &'static str, answer: StubResponse) -> StsCase {
    StsCase {
        name,
        answer,
        status: 403,
        code: -32003,
        reason: "token_exchange_refused",
        rule: "exchange.refused",
    }
}

#[test]
fn token_service_failures_fail_closed() {
    let ctx = TestCtx::new("exchange_sts_failures");
    let idp = Idp::start(&ctx);
    let upstream = RecordingUpstream::start();
    let sts = StubServer::start(StubResponse::text(200, "text/plain", "not json"));
    let envoy = Envoy::start(
        &ctx,
        "envoy",
        &EnvoyConfig::demo(upstream.port, idp.port).cluster_port("sts", sts.port),
    );
    let port = envoy.listener_port;
    let t = idp.tokens("alice", "agent-claude", ALICE_ALL_SCOPES);
    let ping = |id: u64| {
        HttpRequest::mcp_post(json!({"jsonrpc":"2.0","id":id,"method":"ping"}).to_string())
            .tokens(&t)
            .timeout(Duration::from_secs(10))
    };

    let json_answer = |status: u16, body: Value| StubResponse::json(status, body);
    let cases = vec![
        sts_invalid(
            "200 not JSON",
            StubResponse::text(200, "text/plain", "not json"),
            "exchange.answer.not_json",
        ),
        sts_invalid(
            "200 JSON without access_token",
            json_answer(200, json!({"token_type": "Bearer"})),
            "exchange.answer.missing_field",
        ),
        sts_invalid(
            "200 token_type mac",
            json_answer(
                200,
                json!({"access_token": "x", "token_type": "mac", "expires_in": 60,
                       "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}),
            ),
            "exchange.answer.token_type",
        ),
        sts_invalid(
            "200 token with a space",
            json_answer(
                200,
                json!({"access_token": "a b", "token_type": "Bearer", "expires_in": 60,
                       "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}),
            ),
            "exchange.answer.token_syntax",
        ),
        sts_unavailable(
            "500",
            StubResponse::text(500, "text/plain", "boom"),
            "exchange.unavailable",
        ),
        sts_unavailable(
            "503",
            json_answer(503, json!({"error": "temporarily_unavailable"})),
            "exchange.unavailable",
        ),
        sts_unavailable(
            "connection closed without an answer",
            StubResponse::hang_up(),
            "exchange.unavailable",
        ),
        sts_unavailable(
            "answer after 3 s (timeout_ms 2000)",
            json_answer(
                200,
                json!({"access_token": "late", "token_type": "Bearer", "expires_in": 60}),
            )
            .delayed(Duration::from_secs(3)),
            "exchange.unavailable",
        ),
        sts_refused(
            "400 invalid_scope",
            json_answer(
                400,
                json!({"error": "invalid_scope", "error_description": "requested scope exceeds the subject_token scope"}),
            ),
        ),
        sts_refused(
            "401 invalid_client",
            json_answer(401, json!({"error": "invalid_client"})),
        ),
        sts_refused(
            "400 not JSON",
            StubResponse::text(400, "text/plain", "nope"),
        ),
    ];
    let mut problems = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        sts.set(c.answer.clone());
        let id = 100 + i as u64;
        let (sts_before, up_before) = (sts.count(), upstream.count());
        let started = Instant::now();
        match ping(id).send(port) {
            Ok(r) => {
                let p = refusal_problems(&r, c.status, c.code, c.reason, c.rule, &json!(id));
                if !p.is_empty() {
                    problems.push(format!("{}: {}\n{r}", c.name, p.join("; ")));
                }
            }
            Err(e) => problems.push(format!("{}: no response: {e}", c.name)),
        }
        if started.elapsed() > Duration::from_secs(5) {
            problems.push(format!("{}: took {:?}", c.name, started.elapsed()));
        }
        if sts.count() == sts_before {
            problems.push(format!("{}: the token service was not asked", c.name));
        }
        if upstream.count() != up_before {
            problems.push(format!("{}: the request reached the MCP server", c.name));
        }
    }

    // A working token service: the exact RFC 8693 request, and the issued token goes upstream
    // in place of the caller's.
    sts.set(json_answer(
        200,
        json!({"access_token": "stub-token-1", "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
               "token_type": "Bearer", "expires_in": 60}),
    ));
    let sts_before = sts.count();
    match ping(200).send(port) {
        Ok(r) if r.status == 200 => {}
        Ok(r) => problems.push(format!("working token service: ping not forwarded:\n{r}")),
        Err(e) => problems.push(format!("working token service: {e}")),
    }
    let sent = sts.requests().last().cloned();
    match (sts.count() - sts_before, sent) {
        (1, Some(req)) => {
            let form = req.form();
            let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            let basic = format!(
                "Basic {}",
                b64_encode(b"mcp-warden:mcp-warden-secret", B64_STD)
            );
            let want = [
                (
                    "grant_type",
                    Some("urn:ietf:params:oauth:grant-type:token-exchange"),
                ),
                ("subject_token", Some(t.user.as_str())),
                (
                    "subject_token_type",
                    Some("urn:ietf:params:oauth:token-type:access_token"),
                ),
                ("actor_token", Some(t.agent.as_str())),
                (
                    "actor_token_type",
                    Some("urn:ietf:params:oauth:token-type:access_token"),
                ),
                ("audience", Some(SERVER_AUDIENCE)),
                ("scope", Some("mcp:tools")),
                ("requested_lifetime", Some("60")),
                (
                    "requested_token_type",
                    Some("urn:ietf:params:oauth:token-type:access_token"),
                ),
            ];
            for (k, v) in want {
                if field(k) != v {
                    problems.push(format!(
                        "token request field {k} = {:?} (expected {v:?})",
                        field(k)
                    ));
                }
            }
            if req.method != "POST" || req.path != "/token" {
                problems.push(format!("token request {} {}", req.method, req.path));
            }
            if req.header("authorization") != Some(basic.as_str()) {
                problems.push(format!(
                    "token request authorization {:?}",
                    req.header("authorization")
                ));
            }
            if !req
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
            {
                problems.push(format!(
                    "token request content-type {:?}",
                    req.header("content-type")
                ));
            }
        }
        (n, _) => problems.push(format!(
            "working token service asked {n} times (expected 1)"
        )),
    }
    let forwarded = upstream.requests().last().cloned();
    match forwarded {
        Some(f) => {
            if f.header("authorization") != Some("Bearer stub-token-1")
                || f.header("x-agent-token").is_some()
            {
                problems.push(format!(
                    "upstream got authorization {:?}, x-agent-token {:?} (expected the issued token only)",
                    f.header("authorization").map(|a| a.chars().take(40).collect::<String>()),
                    f.header("x-agent-token").is_some()
                ));
            }
        }
        None => problems.push("nothing reached the upstream".into()),
    }
    // and it is cached: the next request does not ask again
    let sts_before = sts.count();
    match ping(201).send(port) {
        Ok(r) if r.status == 200 => {}
        Ok(r) => problems.push(format!("second ping:\n{r}")),
        Err(e) => problems.push(format!("second ping: {e}")),
    }
    if sts.count() != sts_before {
        problems.push("the issued token was not cached".into());
    }
    assert!(
        problems.is_empty(),
        "token service failures:\n{}",
        problems.join("\n")
    );
}
