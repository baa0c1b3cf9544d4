//! The audit trail through a real Envoy, the demo IdP and the demo MCP server (`envoy/demo.yaml`):
//! every decided request leaves one `mcp-warden audit {json}` line in Envoy's log saying who
//! (user, groups), which agent (sub, type, model, instance), the delegation, which server and
//! tool, the JSON-RPC id, the outcome and the rule that decided it — and never a token.
//!
//! The lines follow Envoy's log level for its `wasm` logger: after `POST /logging?wasm=warning` on
//! the admin interface no audit line is written (the filter stops building them), after
//! `?wasm=info` they are back (the filter re-reads the level once a second).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{
    open_session, tool_call, wait_for, Envoy, EnvoyConfig, HttpRequest, Idp, McpServer, TestCtx,
    ALICE_ALL_SCOPES,
};
use serde_json::{json, Value};
use std::time::Duration;

const PREFIX: &str = "mcp-warden audit ";

/// Every audit record in Envoy's log so far.
fn records(envoy: &Envoy) -> Vec<Value> {
    envoy
        .proc
        .log()
        .lines()
        .filter_map(|l| l.split_once(PREFIX))
        .map(|(_, json)| {
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
