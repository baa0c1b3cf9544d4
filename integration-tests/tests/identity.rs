//! Identity through a real Envoy (`jwt_authn` + mcp-warden), a real IdP (`idp/idp.mjs`, test
//! mode) and the demo MCP server: who may call, and what the upstream learns about the caller.
//!
//! One stack serves every independent case of [`identity_cases`] (a table; all failing cases
//! are reported at once). Each refusal is checked for its HTTP status, JSON-RPC code,
//! `data.reason`, `data.rule`, `WWW-Authenticate` challenge, and that the server never saw
//! the request (its request log does not grow). Every refused request would have succeeded
//! with valid tokens: it is a `tools/call` on a live session.
//!
//! Key rotation changes the IdP's state, so it has its own stack ([`key_rotation_without_restart`]).
//! `IT_VERBOSE=1 cargo test ... -- --nocapture` prints every response.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{
    jwt_payload, jwt_with_payload, open_session, rpc_message, session_post, Envoy, EnvoyConfig,
    HttpRequest, HttpResponse, Idp, McpServer, TestCtx, Tokens, IDP_ISSUER, MCP_RESOURCE,
    RESOURCE_METADATA_URL, SERVER_AUDIENCE,
};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// What a case must get.
enum Expect {
    /// A refusal by the filter. `rules`: the accepted `data.rule` values (a trailing `*`
    /// matches a prefix).
    Refused {
        reason: &'static str,
        rules: &'static [&'static str],
    },
    /// Any 4xx, and not forwarded (for inputs the contract does not pin to one rule).
    Refused4xx,
    /// Forwarded; the check sees the response and the requests the server logged meanwhile.
    Forwarded(ForwardCheck),
}

type ForwardCheck = Box<dyn Fn(&HttpResponse, &[Value]) -> Result<(), String>>;

struct Case {
    name: String,
    req: HttpRequest,
    expect: Expect,
}

fn refused(
    name: &str,
    req: HttpRequest,
    reason: &'static str,
    rules: &'static [&'static str],
) -> Case {
    Case {
        name: name.into(),
        req,
        expect: Expect::Refused { reason, rules },
    }
}

fn forwarded(name: &str, req: HttpRequest, check: ForwardCheck) -> Case {
    Case {
        name: name.into(),
        req,
        expect: Expect::Forwarded(check),
    }
}

fn status_and_code(reason: &str) -> (u16, i64) {
    match reason {
        "insufficient_scope" | "agent_not_allowed" => (403, -32003),
        _ => (401, -32001),
    }
}

/// The checks of a filter refusal; returns the problems found.
fn check_refusal(resp: &HttpResponse, reason: &str, rules: &[&str]) -> Vec<String> {
    let mut bad = Vec::new();
    let (status, code) = status_and_code(reason);
    if resp.status != status {
        bad.push(format!("status {} (expected {status})", resp.status));
    }
    match resp.header("content-type") {
        Some(ct) if ct.starts_with("application/json") => {}
        other => bad.push(format!(
            "content-type {other:?} (expected application/json)"
        )),
    }
    let Ok(body) = resp.json() else {
        bad.push("body is not JSON".into());
        return bad;
    };
    if body["jsonrpc"] != json!("2.0") {
        bad.push("`jsonrpc` is not \"2.0\"".into());
    }
    if body.get("id") != Some(&Value::Null) {
        bad.push(format!("id {:?} (expected null)", body.get("id")));
    }
    let err = &body["error"];
    if err["code"] != json!(code) {
        bad.push(format!("error.code {} (expected {code})", err["code"]));
    }
    if err["message"].as_str().is_none_or(str::is_empty) {
        bad.push("error.message missing or empty".into());
    }
    let data = &err["data"];
    if data["reason"] != json!(reason) {
        bad.push(format!(
            "data.reason {} (expected {reason:?})",
            data["reason"]
        ));
    }
    let rule = data["rule"].as_str().unwrap_or("<none>");
    let rule_ok = rules.iter().any(|r| match r.strip_suffix('*') {
        Some(prefix) => rule.starts_with(prefix),
        None => rule == *r,
    });
    if !rule_ok {
        bad.push(format!(
            "data.rule {:?} (expected one of {rules:?})",
            data["rule"]
        ));
    }
    if data["detail"].as_str().is_none_or(str::is_empty) {
        bad.push("data.detail missing or empty".into());
    }
    bad.extend(check_challenge(resp, reason));
    bad
}

/// The `WWW-Authenticate` challenge (RFC 6750 + RFC 9728) of a refusal.
fn check_challenge(resp: &HttpResponse, reason: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let challenges: Vec<&str> = resp
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect();
    let want_metadata = format!("Bearer resource_metadata=\"{RESOURCE_METADATA_URL}\"");
    match reason {
        "agent_not_allowed" => {}
        "insufficient_scope" => match challenges.as_slice() {
            [c] if c.starts_with("Bearer ")
                && c.contains("error=\"insufficient_scope\"")
                && c.contains("scope=\"mcp:tools\"") => {}
            other => bad.push(format!(
                "WWW-Authenticate {other:?} (expected one Bearer challenge with error=\"insufficient_scope\" and scope=\"mcp:tools\")"
            )),
        },
        "missing_token" => match challenges.as_slice() {
            [c] if *c == want_metadata => {}
            other => bad.push(format!(
                "WWW-Authenticate {other:?} (expected exactly {want_metadata:?})"
            )),
        },
        _ => match challenges.as_slice() {
            [c] if c.starts_with(&want_metadata)
                && c.contains("error=\"invalid_token\"")
                && c.contains("error_description=\"") => {}
            other => bad.push(format!(
                "WWW-Authenticate {other:?} (expected {want_metadata:?} + error=\"invalid_token\", error_description=\"…\")"
            )),
        },
    }
    bad
}

/// Sends every case; returns a report of the failures (empty when all passed).
fn run_cases(envoy: &Envoy, server: &McpServer, cases: &[Case]) -> String {
    let verbose = std::env::var_os("IT_VERBOSE").is_some();
    let mut report = String::new();
    for c in cases {
        let before = server.mcp_requests().len();
        let mut problems = Vec::new();
        let resp = match c.req.send(envoy.listener_port) {
            Ok(r) => Some(r),
            Err(e) => {
                problems.push(format!("request failed: {e}"));
                None
            }
        };
        let seen: Vec<Value> = server.mcp_requests().split_off(before);
        if let Some(r) = &resp {
            if verbose {
                eprintln!("{}: {} {}", c.name, r.status, r.body_str());
            }
            match &c.expect {
                Expect::Refused { reason, rules } => {
                    problems.extend(check_refusal(r, reason, rules));
                }
                Expect::Refused4xx => {
                    if !(400..500).contains(&r.status) {
                        problems.push(format!("status {} (expected a 4xx)", r.status));
                    }
                }
                Expect::Forwarded(check) => {
                    if let Err(e) = check(r, &seen) {
                        problems.push(e);
                    }
                }
            }
        }
        if !matches!(c.expect, Expect::Forwarded(_)) && !seen.is_empty() {
            problems.push(format!(
                "{} request(s) reached the server: {seen:?}",
                seen.len()
            ));
        }
        if !problems.is_empty() {
            let _ = writeln!(report, "\n### {}: {}", c.name, problems.join("; "));
            let _ = writeln!(
                report,
                "request: {} {} headers {:?}",
                c.req.method,
                c.req.path.chars().take(80).collect::<String>(),
                c.req
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", v.chars().take(24).collect::<String>()))
                    .collect::<Vec<_>>()
            );
            if let Some(r) = resp {
                let _ = writeln!(report, "{r}");
            }
        }
    }
    report
}

fn echo_call(session: &str, id: u64) -> HttpRequest {
    session_post(
        session,
        &json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
                "params":{"name":"echo","arguments":{"text":"hi"}}}),
    )
}

fn whoami_call(session: &str, id: u64, meta: Option<Value>) -> HttpRequest {
    let mut params = json!({"name":"whoami","arguments":{}});
    if let Some(m) = meta {
        params["_meta"] = m;
    }
    session_post(
        session,
        &json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":params}),
    )
}

fn bearer(token: &str) -> (String, String) {
    ("Authorization".into(), format!("Bearer {token}"))
}

fn agent_header(token: &str) -> (String, String) {
    ("x-agent-token".into(), token.to_string())
}

/// What the server saw of the caller's credentials: not the caller's tokens, but a token
/// mcp-warden exchanged for it (audience the server, actor the agent, subject the user).
fn exchanged_for_alice(r: &Value) -> bool {
    r["saw_authorization"] == true
        && r["saw_agent_token"] == false
        && r["token_sub"] == "alice"
        && r["token_act_sub"] == "agent:agent-claude"
        && r["token_aud"] == SERVER_AUDIENCE
}

/// The forwarded request carried alice + agent-claude and none of the credentials (only the
/// exchanged token).
fn upstream_saw_alice(seen: &[Value]) -> Result<(), String> {
    let [r] = seen else {
        return Err(format!("expected one request at the server, saw {seen:?}"));
    };
    let ok = r["x-mcp-user"] == "alice"
        && r["x-mcp-agent"] == "agent:agent-claude"
        && r["x-mcp-delegation"] == "alice>agent:agent-claude"
        && exchanged_for_alice(r);
    if ok {
        Ok(())
    } else {
        Err(format!("the server saw other identity headers: {r}"))
    }
}

fn echo_ok(resp: &HttpResponse, seen: &[Value]) -> Result<(), String> {
    if resp.status != 200 {
        return Err(format!("status {} (expected 200)", resp.status));
    }
    let msg = rpc_message(resp).ok_or("no JSON-RPC message in the response")?;
    if msg["result"]["content"][0]["text"] != "echo: hi" {
        return Err(format!("unexpected echo result {msg}"));
    }
    upstream_saw_alice(seen)
}

/// whoami answered, and reported the verified identity only.
fn whoami_is_alice(resp: &HttpResponse, seen: &[Value]) -> Result<(), String> {
    if resp.status != 200 {
        return Err(format!("status {} (expected 200)", resp.status));
    }
    let msg = rpc_message(resp).ok_or("no JSON-RPC message in the response")?;
    let text = msg["result"]["content"][0]["text"]
        .as_str()
        .ok_or_else(|| format!("no whoami text in {msg}"))?;
    let who: Value = serde_json::from_str(text).map_err(|e| format!("whoami: {e}"))?;
    let ok = who["x-mcp-user"] == "alice"
        && who["x-mcp-agent"] == "agent:agent-claude"
        && who["x-mcp-delegation"] == "alice>agent:agent-claude"
        && exchanged_for_alice(&who);
    if !ok {
        return Err(format!("whoami saw {who}"));
    }
    upstream_saw_alice(seen)
}

/// A delegation step recorded by the IdP.
fn step(sub: &str, aud: &str, scope: &str, at: u64) -> Value {
    json!({
        "iss": IDP_ISSUER, "sub": sub, "aud": aud, "delegated_at": at, "scope": scope,
        "purpose": "test", "jti": format!("step-{sub}-{aud}"),
        "constraints": {"max_duration": 3600, "allowed_resources": [MCP_RESOURCE]},
    })
}

#[test]
fn identity_cases() {
    let ctx = TestCtx::new("identity_cases");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "demo");
    let envoy = Envoy::start(&ctx, "envoy", &EnvoyConfig::demo(server.port, idp.port));
    let port = envoy.listener_port;

    // Real tokens, from the IdP's grants.
    let good = idp.tokens("alice", "agent-claude", "mcp:tools");
    let session = open_session(port, &good.headers()).unwrap_or_else(|e| panic!("{e}"));
    let bob = idp.tokens("bob", "agent-claude", "mcp:tools");
    let scraper = idp.agent_token("agent-scraper", &good.user, "mcp:tools");
    let alice_no_tools = idp.user_token("alice", "mcp:resources");
    let agent_no_tools = idp.agent_token("agent-claude", &alice_no_tools, "mcp:resources");

    // Forged tokens (test mode).
    let user = |extra: Value| {
        let mut spec = json!({"kind": "user", "base": {"username": "alice", "scope": "mcp:tools"}});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        idp.mint_token(spec)
    };
    let agent = |extra: Value| {
        let mut spec = json!({"kind": "agent",
            "base": {"username": "alice", "agent": "agent-claude", "scope": "mcp:tools"}});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        idp.mint_token(spec)
    };
    let tampered = |token: &str| {
        let mut p = jwt_payload(token);
        p["sub"] = json!("admin");
        jwt_with_payload(token, &p)
    };
    let t = now() - 10;
    let chain = |steps: Vec<Value>| agent(json!({"set": {"delegation_chain": steps}}));
    let claude = "agent:agent-claude";

    let call = |id: u64, h: Vec<(String, String)>| echo_call(&session, id).headers(&h);
    let with_user =
        |id: u64, user_token: &str| call(id, vec![bearer(user_token), agent_header(&good.agent)]);
    let with_agent =
        |id: u64, agent_token: &str| call(id, vec![bearer(&good.user), agent_header(agent_token)]);

    let cases = vec![
        forwarded("valid_pair", call(1, good.headers()), Box::new(echo_ok)),
        // --- missing
        refused(
            "no_tokens",
            call(2, vec![]),
            "missing_token",
            &["user.missing"],
        ),
        refused(
            "missing_user_token",
            call(3, vec![agent_header(&good.agent)]),
            "missing_token",
            &["user.missing"],
        ),
        refused(
            "missing_agent_token",
            call(4, vec![bearer(&good.user)]),
            "missing_token",
            &["agent.missing"],
        ),
        refused(
            "malformed_body_without_tokens_identity_first",
            HttpRequest::mcp_post("{nope"),
            "missing_token",
            &["user.missing"],
        ),
        refused(
            "get_stream_without_tokens",
            HttpRequest::get("/mcp")
                .header("Accept", "text/event-stream")
                .header("Mcp-Session-Id", &session)
                .timeout(Duration::from_secs(5)),
            "missing_token",
            &["user.missing"],
        ),
        refused(
            "delete_session_without_tokens",
            HttpRequest::new("DELETE", "/mcp").header("Mcp-Session-Id", &session),
            "missing_token",
            &["user.missing"],
        ),
        // --- user token verified by jwt_authn
        refused(
            "user_expired",
            with_user(10, &user(json!({"exp_in": -600}))),
            "invalid_token",
            &["user.expired"],
        ),
        refused(
            "user_not_yet_valid",
            with_user(11, &user(json!({"nbf_in": 600}))),
            "invalid_token",
            &["user.not_yet_valid"],
        ),
        refused(
            "user_wrong_issuer",
            with_user(12, &user(json!({"iss": "https://evil.example"}))),
            "invalid_token",
            &["user.issuer"],
        ),
        refused(
            "user_wrong_audience",
            with_user(
                13,
                &user(json!({"set": {"aud": "http://127.0.0.1:9999/other"}})),
            ),
            "invalid_token",
            &["user.audience"],
        ),
        refused(
            "user_tampered_payload",
            with_user(14, &tampered(&good.user)),
            "invalid_token",
            &["user.signature"],
        ),
        refused(
            "user_alg_none",
            with_user(15, &user(json!({"sign": "none"}))),
            "invalid_token",
            &["user.signature", "user.algorithm"],
        ),
        refused(
            "user_hs256_with_public_key",
            with_user(16, &user(json!({"sign": "hs256"}))),
            "invalid_token",
            &["user.signature", "user.algorithm"],
        ),
        refused(
            "user_unpublished_key_same_kid",
            with_user(17, &user(json!({"sign": "rogue"}))),
            "invalid_token",
            &["user.signature"],
        ),
        refused(
            "user_unpublished_key_unknown_kid",
            with_user(
                18,
                &user(json!({"sign": "rogue", "rogue_kid": "rogue-kid-1"})),
            ),
            "invalid_token",
            &["user.signature"],
        ),
        refused(
            "user_not_a_jwt",
            with_user(19, "not-a-jwt"),
            "invalid_token",
            &["user.*"],
        ),
        refused(
            "user_without_sub",
            with_user(20, &user(json!({"unset": ["sub"]}))),
            "invalid_token",
            &["user.claims"],
        ),
        // --- which token is which
        refused(
            "agent_token_as_user_token",
            call(30, vec![bearer(&good.agent), agent_header(&good.agent)]),
            "invalid_token",
            &["user.kind"],
        ),
        refused(
            "exchanged_token_as_user_token",
            with_user(97, &user(json!({"set": {"act": {"sub": claude}}}))),
            "invalid_token",
            &["user.exchanged"],
        ),
        refused(
            "user_token_as_agent_token",
            call(31, vec![bearer(&good.user), agent_header(&good.user)]),
            "invalid_token",
            &["agent.kind"],
        ),
        refused(
            "tokens_swapped",
            call(32, vec![bearer(&good.agent), agent_header(&good.user)]),
            "invalid_token",
            &["user.kind"],
        ),
        // --- scope (step-up)
        refused(
            "user_without_mcp_tools",
            call(
                35,
                vec![bearer(&alice_no_tools), agent_header(&agent_no_tools)],
            ),
            "insufficient_scope",
            &["user.scope"],
        ),
        // --- agent token
        refused(
            "agent_expired",
            with_agent(40, &agent(json!({"exp_in": -600}))),
            "invalid_token",
            &["agent.expired"],
        ),
        refused(
            "agent_wrong_issuer",
            with_agent(41, &agent(json!({"iss": "https://evil.example"}))),
            "invalid_token",
            &["agent.issuer"],
        ),
        refused(
            "agent_wrong_audience",
            with_agent(
                42,
                &agent(json!({"set": {"aud": "http://127.0.0.1:9999/other"}})),
            ),
            "invalid_token",
            &["agent.audience"],
        ),
        refused(
            "agent_tampered_payload",
            with_agent(43, &tampered(&good.agent)),
            "invalid_token",
            &["agent.signature"],
        ),
        refused(
            "agent_alg_none",
            with_agent(44, &agent(json!({"sign": "none"}))),
            "invalid_token",
            &["agent.signature", "agent.algorithm"],
        ),
        refused(
            "agent_for_another_user",
            with_agent(45, &bob.agent),
            "delegation_invalid",
            &["agent.delegator"],
        ),
        refused(
            "agent_trust_level_low",
            with_agent(46, &scraper),
            "agent_not_allowed",
            &["agent.trust_level"],
        ),
        refused(
            "agent_missing_capability",
            with_agent(
                47,
                &agent(json!({"set": {"agent_capabilities": ["files:read"]}})),
            ),
            "agent_not_allowed",
            &["agent.capability"],
        ),
        // --- delegation chain
        refused(
            "chain_broken_link",
            with_agent(
                50,
                &chain(vec![
                    step("alice", "agent:orchestrator", "mcp:tools", t),
                    step("agent:somebody-else", claude, "mcp:tools", t),
                ]),
            ),
            "delegation_invalid",
            &["delegation.link"],
        ),
        refused(
            "chain_widened_scope",
            with_agent(
                51,
                &chain(vec![
                    step("alice", "agent:orchestrator", "mcp:tools", t),
                    step("agent:orchestrator", claude, "mcp:tools files:delete", t),
                ]),
            ),
            "delegation_invalid",
            &["delegation.scope_widened"],
        ),
        refused(
            "chain_too_long",
            with_agent(
                52,
                &chain(vec![
                    step("alice", "agent:a1", "mcp:tools", t),
                    step("agent:a1", "agent:a2", "mcp:tools", t),
                    step("agent:a2", "agent:a3", "mcp:tools", t),
                    step("agent:a3", claude, "mcp:tools", t),
                ]),
            ),
            "delegation_invalid",
            &["delegation.length"],
        ),
        refused(
            "chain_not_starting_at_the_user",
            with_agent(53, &chain(vec![step("bob", claude, "mcp:tools", t)])),
            "delegation_invalid",
            &["delegation.start"],
        ),
        refused(
            "chain_missing",
            with_agent(54, &agent(json!({"unset": ["delegation_chain"]}))),
            "delegation_invalid",
            &["delegation.missing"],
        ),
        // --- attestation
        refused(
            "attestation_rogue_signed",
            with_agent(60, &agent(json!({"attestation": {"sign": "rogue"}}))),
            "attestation_invalid",
            &["attestation.signature"],
        ),
        refused(
            "attestation_stale",
            with_agent(
                61,
                &agent(json!({"attestation": {"timestamp_offset": -100_000}})),
            ),
            "attestation_invalid",
            &["attestation.stale"],
        ),
        refused(
            "attestation_missing",
            with_agent(62, &agent(json!({"attestation": {"omit": true}}))),
            "attestation_invalid",
            &["attestation.missing"],
        ),
        // --- forgery
        forwarded(
            "forged_identity_headers_are_replaced",
            whoami_call(&session, 70, None)
                .headers(&good.headers())
                .header("x-mcp-user", "admin")
                .header("x-mcp-agent", "agent:root")
                .header("x-mcp-delegation", "admin>agent:root"),
            Box::new(whoami_is_alice),
        ),
        forwarded(
            "identity_claimed_in_the_body_changes_nothing",
            whoami_call(
                &session,
                71,
                Some(json!({"user": "admin", "agent": "agent:root", "x-mcp-user": "admin"})),
            )
            .headers(&good.headers()),
            Box::new(whoami_is_alice),
        ),
        refused(
            "identity_claimed_in_the_body_without_tokens",
            whoami_call(&session, 72, Some(json!({"user": "alice"}))),
            "missing_token",
            &["user.missing"],
        ),
        refused(
            "forged_identity_headers_without_tokens",
            call(
                73,
                vec![
                    ("x-mcp-user".into(), "alice".into()),
                    ("x-mcp-agent".into(), "agent:agent-claude".into()),
                    ("x-mcp-delegation".into(), "alice>agent:agent-claude".into()),
                ],
            ),
            "missing_token",
            &["user.missing"],
        ),
        // A token in the URL is refused as such (400 `identity.token_in_url`, checked in
        // adversarial_client.rs): it never stands in for the header, nor reaches the server.
        Case {
            name: "user_token_only_in_the_query_string".into(),
            req: {
                let mut r = call(74, vec![agent_header(&good.agent)]);
                r.path = format!("/mcp?access_token={}", good.user);
                r
            },
            expect: Expect::Refused4xx,
        },
        Case {
            name: "two_authorization_headers".into(),
            req: call(75, good.headers()).header("Authorization", &format!("Bearer {}", bob.user)),
            expect: Expect::Refused4xx,
        },
        Case {
            name: "two_authorization_headers_other_first".into(),
            req: call(76, vec![bearer(&bob.user)]).headers(&good.headers()),
            expect: Expect::Refused4xx,
        },
        Case {
            name: "two_agent_token_headers".into(),
            req: call(77, good.headers()).header("x-agent-token", &bob.agent),
            expect: Expect::Refused4xx,
        },
        Case {
            name: "two_agent_token_headers_other_first".into(),
            req: call(
                78,
                vec![
                    bearer(&good.user),
                    agent_header(&bob.agent),
                    agent_header(&good.agent),
                ],
            ),
            expect: Expect::Refused4xx,
        },
        // and the session still works with valid tokens (the DELETE above was not forwarded)
        forwarded(
            "valid_pair_again",
            call(99, good.headers()),
            Box::new(echo_ok),
        ),
    ];
    let started = Instant::now();
    let mut report = run_cases(&envoy, &server, &cases);
    eprintln!("{} identity cases in {:?}", cases.len(), started.elapsed());

    // RFC 9728: the metadata document is served without a token, at the URL the challenge of a
    // 401 names (its origin is the logical resource's, so it is fetched from this listener).
    let resp = echo_call(&session, 200)
        .send(port)
        .expect("request without tokens");
    let challenge = resp
        .header("www-authenticate")
        .unwrap_or_default()
        .to_string();
    let named_path = challenge
        .split("resource_metadata=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|url| url.strip_prefix("http://127.0.0.1:10000"))
        .map(str::to_string);
    match named_path {
        Some(path) => {
            for path in [path.as_str(), "/.well-known/oauth-protected-resource"] {
                let problems = check_metadata(port, path);
                if !problems.is_empty() {
                    let _ = writeln!(report, "\n### metadata {path}: {}", problems.join("; "));
                }
            }
        }
        None => {
            let _ = writeln!(
                report,
                "\n### metadata: no resource_metadata URL on http://127.0.0.1:10000 in the 401 \
                 challenge {challenge:?}\n{resp}"
            );
        }
    }

    assert!(
        report.is_empty(),
        "identity cases that did not behave as specified:\n{report}"
    );
}

fn check_metadata(port: u16, path: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let resp = match HttpRequest::get(path).send(port) {
        Ok(r) => r,
        Err(e) => return vec![format!("request failed: {e}")],
    };
    if resp.status != 200 {
        bad.push(format!("status {}", resp.status));
    }
    if !resp
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        bad.push(format!("content-type {:?}", resp.header("content-type")));
    }
    let doc = resp.json().unwrap_or(Value::Null);
    let want = [
        ("resource", json!(MCP_RESOURCE)),
        ("authorization_servers", json!([IDP_ISSUER])),
        ("bearer_methods_supported", json!(["header"])),
        (
            "scopes_supported",
            json!(["mcp:tools", "mcp:resources", "mcp:prompts"]),
        ),
        ("resource_name", json!("mcp-warden demo")),
    ];
    for (k, v) in want {
        if doc[k] != v {
            bad.push(format!("{k} = {} (expected {v})", doc[k]));
        }
    }
    if !bad.is_empty() {
        bad.push(format!("response:\n{resp}"));
    }
    bad
}

/// `/test/rotate` with Envoy running: tokens of the old key keep working, and a token of the new
/// key is accepted within a bounded wait (the JWKS cache is 5 s), without restarting Envoy.
#[test]
fn key_rotation_without_restart() {
    let ctx = TestCtx::new("identity_key_rotation");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "demo");
    let mut envoy = Envoy::start(&ctx, "envoy", &EnvoyConfig::demo(server.port, idp.port));
    let port = envoy.listener_port;

    let old = idp.tokens("alice", "agent-claude", "mcp:tools");
    let session = open_session(port, &old.headers()).unwrap_or_else(|e| panic!("{e}"));
    let echo = |tokens: &Tokens, id: u64| {
        echo_call(&session, id)
            .tokens(tokens)
            .send(port)
            .unwrap_or_else(|e| panic!("tools/call: {e}"))
    };
    let passes = |resp: &HttpResponse| {
        resp.status == 200
            && rpc_message(resp).is_some_and(|m| m["result"]["content"][0]["text"] == "echo: hi")
    };
    let r = echo(&old, 1);
    assert!(passes(&r), "before rotation:\n{r}");

    let old_kid = jwt_header_kid(&old.user);
    let rotated = idp.rotate();
    let new_kid = rotated["kid"].as_str().unwrap().to_string();
    assert_ne!(new_kid, old_kid, "{rotated}");
    let new = idp.tokens("alice", "agent-claude", "mcp:tools");
    assert_eq!(
        jwt_header_kid(&new.user),
        new_kid,
        "new tokens use the new key"
    );

    let r = echo(&old, 2);
    assert!(passes(&r), "old tokens right after rotation:\n{r}");

    let started = Instant::now();
    let mut last = None;
    let mut id = 10;
    while started.elapsed() < Duration::from_secs(15) {
        id += 1;
        let r = echo(&new, id);
        if passes(&r) {
            last = None;
            break;
        }
        last = Some(r);
        std::thread::sleep(Duration::from_millis(500));
    }
    if let Some(r) = last {
        panic!(
            "a token signed with the rotated key was still refused after {:?}:\n{r}",
            started.elapsed()
        );
    }
    eprintln!("new key accepted {:?} after rotation", started.elapsed());
    let r = echo(&old, 100);
    assert!(passes(&r), "old tokens after the JWKS refresh:\n{r}");
    assert!(
        envoy.proc.try_wait().is_none(),
        "Envoy was restarted or died"
    );
}

fn jwt_header_kid(token: &str) -> String {
    let head = token.split('.').next().unwrap();
    let bytes = mcp_warden_integration_tests::b64_decode(head).unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["kid"].as_str().unwrap().to_string()
}
