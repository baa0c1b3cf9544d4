//! The audit trail through a real Envoy, the demo IdP and the demo MCP server (`envoy/demo.yaml`):
//! every decided request leaves one `mcp-warden audit {json}` line in Envoy's log saying who
//! (user, groups), which agent (sub, type, model, instance), the delegation, which server and
//! tool, the JSON-RPC id, the outcome and the rule that decided it — and never a token.
//!
//! The lines follow Envoy's log level for its `wasm` logger: after `POST /logging?wasm=warning` on
//! the admin interface no audit line is written (the filter stops building them), after
//! `?wasm=info` they are back (the filter re-reads the level once a second).
//!
//! Requests that wait for another request's token exchange (single flight) get their own
//! record too: a burst of N identical calls gives N records, allowed or refused. Names with
//! line breaks, separators or bidi controls forge no line: audit records keep them as JSON
//! escapes, refusal lines as visible escapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::evil_sts::EvilSts;
use mcp_warden_integration_tests::{
    open_session, refusal_problems, rpc_call, tool_call, wait_for, Envoy, EnvoyConfig, HttpRequest,
    Idp, McpServer, ServerOptions, TestCtx, ALICE_ALL_SCOPES,
};
use serde_json::{json, Value};
use std::sync::{Arc, Barrier};
use std::time::Duration;

const PREFIX: &str = "mcp-warden audit ";

/// Every audit record in Envoy's log so far: lines whose message starts with the prefix (a
/// refusal line may quote it in its detail).
fn records(envoy: &Envoy) -> Vec<Value> {
    envoy
        .proc
        .log()
        .lines()
        .filter_map(|l| l.find("mcp-warden").map(|at| &l[at..]))
        .filter_map(|m| m.strip_prefix(PREFIX))
        .map(|json| {
            serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("audit line {json}: {e}"))
        })
        .collect()
}

/// The record of the `tools/call` with this JSON-RPC id (allowed: in `messages`; refused: `id`).
fn record_for(envoy: &Envoy, id: u64) -> Option<Value> {
    records(envoy).into_iter().find(|r| {
        r["id"] == json!(id)
            || r["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["id"] == json!(id)))
    })
}

fn wait_record(envoy: &Envoy, id: u64) -> Option<Value> {
    wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        record_for(envoy, id)
    })
}

fn set_wasm_log_level(envoy: &Envoy, level: &str) {
    let r = HttpRequest::new("POST", &format!("/logging?wasm={level}"))
        .send(envoy.admin_port)
        .expect("admin /logging");
    assert_eq!(r.status, 200, "admin /logging?wasm={level}:\n{r}");
    // The filter re-reads Envoy's level once a second.
    std::thread::sleep(Duration::from_millis(1_500));
}

#[test]
fn every_decision_leaves_an_audit_record_without_tokens() {
    let ctx = TestCtx::new("audit");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "corp");
    let envoy = Envoy::start(&ctx, "envoy", &EnvoyConfig::demo(server.port, idp.port));
    let port = envoy.listener_port;
    let alice = idp.tokens("alice", "agent-claude", ALICE_ALL_SCOPES);
    let session = open_session(port, &alice.headers()).expect("session");

    let call = |id: u64, tool: &str, status: u16| {
        let r = tool_call(&session, id, tool, json!({"a": id, "b": 2}))
            .tokens(&alice)
            .send(port)
            .unwrap_or_else(|e| panic!("call {id} ({tool}): {e}"));
        assert_eq!(r.status, status, "call {id} ({tool}):\n{r}");
    };

    // An allowed call.
    call(31, "add", 200);
    let allowed = wait_record(&envoy, 31).expect("no audit record for the allowed call");
    eprintln!("allowed: {allowed}");
    assert_eq!(allowed["outcome"], "allowed", "{allowed}");
    assert_eq!(allowed["user"], "alice", "{allowed}");
    assert!(
        allowed["agent"].as_str().is_some_and(|a| !a.is_empty()),
        "{allowed}"
    );
    assert!(allowed["agent_type"].is_string(), "{allowed}");
    assert!(allowed["delegation"].is_string(), "{allowed}");
    let msg = &allowed["messages"][0];
    assert_eq!(
        (&msg["method"], &msg["target"]),
        (&json!("tools/call"), &json!("add")),
        "{allowed}"
    );
    assert!(
        allowed["decisions"].as_array().is_some_and(|d| d
            .iter()
            .any(|d| d["effect"] == "allow" && d["rule"].is_string())),
        "the deciding rule is named: {allowed}"
    );

    // A refused call: a tool nobody registered.
    call(32, "no_such_tool", 403);
    let refused = wait_record(&envoy, 32).expect("no audit record for the refused call");
    eprintln!("refused: {refused}");
    assert_eq!(refused["outcome"], "refused", "{refused}");
    assert_eq!(refused["status"], 403, "{refused}");
    assert_eq!(refused["user"], "alice", "{refused}");
    assert!(refused["rule"].is_string(), "{refused}");

    // No token (nor its signature) in Envoy's log.
    let log = envoy.proc.log();
    for (name, token) in [("user", &alice.user), ("agent", &alice.agent)] {
        let signature = token.rsplit('.').next().unwrap_or_default();
        assert!(
            !log.contains(token.as_str()) && !log.contains(signature),
            "the {name} token appears in Envoy's log"
        );
    }

    // Envoy's wasm logger above info: no audit line; back at info: audit lines again.
    set_wasm_log_level(&envoy, "warning");
    call(33, "add", 200);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        record_for(&envoy, 33).is_none(),
        "an audit line was written while Envoy's wasm logger was at warn"
    );
    set_wasm_log_level(&envoy, "info");
    call(34, "add", 200);
    assert!(
        wait_record(&envoy, 34).is_some(),
        "no audit line after Envoy's wasm logger went back to info"
    );
}

/// Every record that names this JSON-RPC id.
fn records_for(envoy: &Envoy, id: u64) -> Vec<Value> {
    records(envoy)
        .into_iter()
        .filter(|r| {
            r["id"] == json!(id)
                || r["messages"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["id"] == json!(id)))
        })
        .collect()
}

/// `n` concurrent `tools/call add` with ids `first..first+n`, started together.
fn burst(
    port: u16,
    session: &str,
    tokens: &mcp_warden_integration_tests::Tokens,
    first: u64,
    n: u64,
) -> Vec<mcp_warden_integration_tests::HttpResponse> {
    let barrier = Arc::new(Barrier::new(n as usize));
    let handles: Vec<_> = (first..first + n)
        .map(|id| {
            let (barrier, session, tokens) = (barrier.clone(), session.to_string(), tokens.clone());
            std::thread::spawn(move || {
                let req = tool_call(&session, id, "add", json!({"a": id, "b": 1}))
                    .tokens(&tokens)
                    .timeout(Duration::from_secs(15));
                barrier.wait();
                req.send(port).unwrap_or_else(|e| panic!("call {id}: {e}"))
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn a_burst_sharing_one_token_exchange_leaves_one_record_per_request() {
    let ctx = TestCtx::new("audit_burst");
    let idp = Idp::start(&ctx);
    let server = McpServer::start_with(
        &ctx,
        "corp",
        &ServerOptions {
            verify_tokens_with_idp: Some(idp.port),
            ..Default::default()
        },
    );
    // The demo IdP behind a token service that answers late: the calls of a burst all wait for
    // the first one's exchange.
    let sts = EvilSts::start(&ctx, idp.port);
    let envoy = Envoy::start(
        &ctx,
        "envoy",
        &EnvoyConfig::demo(server.port, idp.port).cluster_port("sts", sts.port),
    );
    let port = envoy.listener_port;
    let session = open_session(
        port,
        &idp.tokens("alice", "agent-claude", ALICE_ALL_SCOPES)
            .headers(),
    )
    .expect("session");
    const N: u64 = 12;
    let mut problems = Vec::new();

    // Allowed: one exchange, N answers from the server, N records.
    sts.scenario("honest_slow");
    let tokens = idp.tokens("alice", "agent-claude", ALICE_ALL_SCOPES);
    let (asked, reached) = (sts.requests(), server.mcp_requests().len());
    for r in burst(port, &session, &tokens, 700, N) {
        if r.status != 200 {
            problems.push(format!("an allowed call of the burst:\n{r}"));
        }
    }
    let (asked, reached) = (
        sts.requests() - asked,
        server.mcp_requests().len() - reached,
    );
    if asked != 1 || reached != N as usize {
        problems.push(format!(
            "allowed burst: {asked} exchanges (expected 1), {reached} requests at the server (expected {N})"
        ));
    }
    // Refused: the late answer is an ID token; N refusals, nothing at the server, N records.
    sts.scenario("id_token_slow");
    let tokens = idp.tokens("alice", "agent-claude", ALICE_ALL_SCOPES);
    let reached_before = server.mcp_requests().len();
    for (i, r) in burst(port, &session, &tokens, 800, N).iter().enumerate() {
        let p = refusal_problems(
            r,
            502,
            -32004,
            "token_service_invalid_answer",
            "exchange.answer.issued_token_type",
            &json!(800 + i as u64),
        );
        if !p.is_empty() {
            problems.push(format!("refused burst #{i}: {}\n{r}", p.join("; ")));
        }
    }
    if server.mcp_requests().len() != reached_before {
        problems.push("a refused call of the burst reached the server".into());
    }

    // One record per request, with its own outcome.
    let all_there = wait_for(Duration::from_secs(5), Duration::from_millis(200), || {
        let n = (700..700 + N)
            .chain(800..800 + N)
            .filter(|id| !records_for(&envoy, *id).is_empty())
            .count();
        (n == 2 * N as usize).then_some(())
    });
    if all_there.is_none() {
        problems.push("not every request of the bursts has an audit record".into());
    }
    for id in 700..700 + N {
        let recs = records_for(&envoy, id);
        if recs.len() != 1 || recs[0]["outcome"] != "allowed" || recs[0]["user"] != "alice" {
            problems.push(format!(
                "call {id}: records {recs:?} (expected one, allowed, alice)"
            ));
        }
    }
    for id in 800..800 + N {
        let recs = records_for(&envoy, id);
        let ok = recs.len() == 1
            && recs[0]["outcome"] == "refused"
            && recs[0]["status"] == 502
            && recs[0]["reason"] == "token_service_invalid_answer"
            && recs[0]["rule"] == "exchange.answer.issued_token_type"
            && recs[0]["user"] == "alice";
        if !ok {
            problems.push(format!(
                "call {id}: records {recs:?} (expected one, refused 502 issued_token_type)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "audit of bursts:\n{}",
        problems.join("\n")
    );
}

#[test]
fn names_with_line_breaks_forge_no_log_line() {
    let ctx = TestCtx::new("audit_forged_lines");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "corp");
    let envoy = Envoy::start(&ctx, "envoy", &EnvoyConfig::demo(server.port, idp.port));
    let port = envoy.listener_port;
    let alice = idp.tokens("alice", "agent-claude", ALICE_ALL_SCOPES);
    let session = open_session(port, &alice.headers()).expect("session");
    let forged = r#"mcp-warden audit {"outcome":"allowed","user":"mallory"}"#;
    let names = [
        format!("echo\n{forged}"),
        format!("echo\r\n[2026-01-01 00:00:00.000][1][info][wasm] {forged}"),
        format!("echo\r{forged}"),
        format!("echo\u{85}{forged}"),
        format!("echo\u{2028}{forged}"),
        format!("echo\u{2029}{forged}"),
        "echo\u{202e}eliforp_teg\u{202c}".to_string(),
        "echo\u{1b}[2K\u{1b}[1Gmallory".to_string(),
    ];
    let mut problems = Vec::new();
    // Tool names: the call is refused (no such tool), nothing reaches the server.
    for (i, name) in names.iter().enumerate() {
        let id = 900 + i as u64;
        let before = server.mcp_requests().len();
        let r = tool_call(&session, id, name, json!({}))
            .tokens(&alice)
            .send(port)
            .unwrap_or_else(|e| panic!("call {id}: {e}"));
        let refused = (400..500).contains(&r.status)
            && r.json()
                .is_ok_and(|v| v["error"]["data"]["reason"].is_string() && v["id"] == json!(id));
        if !refused {
            problems.push(format!("tool {name:?}: not refused:\n{r}"));
        }
        if server.mcp_requests().len() != before {
            problems.push(format!("tool {name:?}: reached the server"));
        }
        match wait_record(&envoy, id) {
            Some(rec) if rec["outcome"] == "refused" => {}
            other => problems.push(format!("tool {name:?}: record {other:?}")),
        }
    }
    // Prompt names: allowed (prompts/get is open to all), forwarded; the record keeps the name.
    for (i, name) in names.iter().enumerate() {
        let id = 950 + i as u64;
        let before = server.mcp_requests().len();
        let r = rpc_call(&session, id, "prompts/get", json!({"name": name}))
            .tokens(&alice)
            .send(port)
            .unwrap_or_else(|e| panic!("prompts/get {id}: {e}"));
        if r.status >= 500 {
            problems.push(format!("prompt {name:?}:\n{r}"));
        }
        if server.mcp_requests().len() != before + 1 {
            problems.push(format!("prompt {name:?}: did not reach the server"));
        }
        match wait_record(&envoy, id) {
            Some(rec) if rec["messages"][0]["target"] == json!(name) => {}
            other => problems.push(format!(
                "prompt {name:?}: the record does not keep the name: {other:?}"
            )),
        }
    }
    // Every line the filter wrote is one of Envoy's own lines; nothing raw that breaks,
    // hides or reorders a line; no forged record.
    let log = envoy.proc.log();
    for line in log.lines() {
        if line.contains("mcp-warden") && !line.starts_with('[') {
            problems.push(format!("forged line: {line}"));
        }
    }
    for c in ['\r', '\u{85}', '\u{2028}', '\u{2029}', '\u{202e}', '\u{1b}'] {
        if log.contains(c) {
            problems.push(format!("Envoy's log holds a raw {c:?}"));
        }
    }
    if records(&envoy).iter().any(|r| r["user"] == "mallory") {
        problems.push("a forged audit record was read back".into());
    }
    // The refusal lines show the name escaped.
    if !log
        .lines()
        .any(|l| l.contains("request") && l.contains("refused:") && l.contains("echo\\n"))
    {
        problems.push("no refusal line shows the escaped name `echo\\n…`".into());
    }
    assert!(
        problems.is_empty(),
        "forged log lines:\n{}",
        problems.join("\n")
    );
}

#[test]
fn requests_that_end_while_waiting_for_an_exchange_are_recorded() {
    let ctx = TestCtx::new("audit_abandoned");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "corp");
    let sts = EvilSts::start(&ctx, idp.port);
    let envoy = Envoy::start(
        &ctx,
        "envoy",
        &EnvoyConfig::demo(server.port, idp.port).cluster_port("sts", sts.port),
    );
    let port = envoy.listener_port;
    let session = open_session(
        port,
        &idp.tokens("alice", "agent-claude", ALICE_ALL_SCOPES)
            .headers(),
    )
    .expect("session");
    // The token service answers after 1.5 s; the clients give up after 1 s: the first
    // request's exchange and the others' wait end with their streams.
    sts.scenario("honest_slow");
    let tokens = idp.tokens("alice", "agent-claude", ALICE_ALL_SCOPES);
    let reached = server.mcp_requests().len();
    const N: u64 = 6;
    let barrier = Arc::new(Barrier::new(N as usize));
    let handles: Vec<_> = (600..600 + N)
        .map(|id| {
            let (barrier, session, tokens) = (barrier.clone(), session.clone(), tokens.clone());
            std::thread::spawn(move || {
                let req = tool_call(&session, id, "add", json!({"a": 1, "b": 2}))
                    .tokens(&tokens)
                    .timeout(Duration::from_millis(1000));
                barrier.wait();
                req.send(port)
            })
        })
        .collect();
    let mut problems = Vec::new();
    for h in handles {
        if let Ok(r) = h.join().unwrap() {
            problems.push(format!("a client that gave up got an answer:\n{r}"));
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    if server.mcp_requests().len() != reached {
        problems.push("a request whose client left reached the server".into());
    }
    let all = wait_for(Duration::from_secs(5), Duration::from_millis(200), || {
        (600..600 + N)
            .all(|id| !records_for(&envoy, id).is_empty())
            .then_some(())
    });
    if all.is_none() {
        problems.push("not every abandoned request has an audit record".into());
    }
    for id in 600..600 + N {
        let recs = records_for(&envoy, id);
        let ok = recs.len() == 1
            && recs[0]["outcome"] == "refused"
            && recs[0]["rule"] == "exchange.abandoned";
        if !ok {
            problems.push(format!(
                "call {id}: records {recs:?} (expected one, refused, exchange.abandoned)"
            ));
        }
    }
    // Nothing is left waiting: the next call is served (with a new exchange, or the token
    // the abandoned one cached if its answer still arrived).
    sts.scenario("honest");
    let r = tool_call(&session, 650, "add", json!({"a": 1, "b": 2}))
        .tokens(&tokens)
        .timeout(Duration::from_secs(5))
        .send(port)
        .expect("call after the abandoned ones");
    if r.status != 200 || server.mcp_requests().len() != reached + 1 {
        problems.push(format!("the call after the abandoned ones:\n{r}"));
    }
    assert!(
        problems.is_empty(),
        "abandoned requests:\n{}",
        problems.join("\n")
    );
}
