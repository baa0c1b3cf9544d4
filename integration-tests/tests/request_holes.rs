//! Requests shaped to get past the decision (issue 13, items 2-5 and 12), sent through a real
//! Envoy with the built filter, the demo IdP and the demo MCP server. Every case checks what
//! the client got and what reached the server: a refused request must never arrive, and each
//! test first proves, with a request that is allowed, that the path to the server works.
//!
//! - [`request_methods_without_id_are_refused`] (#2): with an allow-all policy (as in
//!   `envoy/routing.yaml`), a `tools/call` of an unregistered tool sent without `id` (a
//!   "notification") used to reach the server; every request method without `id`, and a
//!   `notifications/*` message with one, is now refused as `invalid_request`.
//! - [`case_twin_keys_and_normal_form_uris`] (#3, #5, #12), with `envoy/demo.yaml` (the
//!   enterprise bundle): keys equal once case-folded (`name` / `Name`, Kelvin sign, long s) are
//!   refused as `duplicate_key`, and a lone `TABLE` counts as `table` for a deny rule; resource URIs not in normal form as `invalid_params`;
//!   `completion/complete` is decided on what it completes; `execute_sql` never reads the
//!   financials table.
//! - [`scopes_are_what_the_delegation_grants`] (#4), with the demo configuration without token
//!   exchange: an agent delegated only `mcp:tools` cannot call `hr_lookup`, which needs the
//!   user's `HR_read`, and does not see it listed.
//!
//! `IT_VERBOSE=1 cargo test ... -- --nocapture` prints every response.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{
    demo_plugin_config, jwt_payload, list_names, open_session, refusal_problems, rpc_call,
    rpc_message, session_post, tool_call, Envoy, EnvoyConfig, HttpRequest, HttpResponse, Idp,
    McpServer, TestCtx, Tokens, ALICE_ALL_SCOPES,
};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// What a case must get.
enum Expect {
    /// Forwarded: the server saw exactly these JSON-RPC methods, and the answer has this status.
    Reached { status: u16, rpc: Value },
    /// Refused by the filter: status, JSON-RPC code, `data.reason`, `data.rule` (`<none>` when
    /// the refusal names no rule) and the echoed id; nothing reached the server.
    Refused {
        status: u16,
        code: i64,
        reason: &'static str,
        rule: &'static str,
        id: Value,
    },
}

fn invalid_request(id: Value) -> Expect {
    Expect::Refused {
        status: 400,
        code: -32600,
        reason: "invalid_request",
        rule: "<none>",
        id,
    }
}

fn duplicate_key(id: Value) -> Expect {
    Expect::Refused {
        status: 400,
        code: -32600,
        reason: "duplicate_key",
        rule: "<none>",
        id,
    }
}

fn invalid_params(id: Value) -> Expect {
    Expect::Refused {
        status: 400,
        code: -32602,
        reason: "invalid_params",
        rule: "<none>",
        id,
    }
}

fn denied(rule: &'static str, id: Value) -> Expect {
    Expect::Refused {
        status: 403,
        code: -32003,
        reason: "policy_denied",
        rule,
        id,
    }
}

fn reached(status: u16, rpc: Value) -> Expect {
    Expect::Reached { status, rpc }
}

/// Sends `req` and checks the answer and what the server saw meanwhile; problems go to
/// `report` under `name`.
fn check(
    report: &mut String,
    name: &str,
    port: u16,
    server: &McpServer,
    req: HttpRequest,
    expect: Expect,
) {
    let before = server.mcp_requests().len();
    let resp = match req.send(port) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(report, "\n### {name}: request failed: {e}");
            return;
        }
    };
    let seen = server.mcp_requests().split_off(before);
    if std::env::var_os("IT_VERBOSE").is_some() {
        eprintln!("{name}: {} {}", resp.status, resp.body_str());
    }
    let mut bad = Vec::new();
    match expect {
        Expect::Reached { status, rpc } => {
            if resp.status != status {
                bad.push(format!("status {} (expected {status})", resp.status));
            }
            if seen.len() != 1 || seen[0]["rpc"] != rpc {
                bad.push(format!(
                    "the server should have seen {rpc} once, saw {seen:?}"
                ));
            }
        }
        Expect::Refused {
            status,
            code,
            reason,
            rule,
            id,
        } => {
            bad.extend(refusal_problems(&resp, status, code, reason, rule, &id));
            if !seen.is_empty() {
                bad.push(format!("reached the server: {seen:?}"));
            }
        }
    }
    if !bad.is_empty() {
        let _ = writeln!(report, "\n### {name}: {}\n{resp}", bad.join("; "));
    }
}

fn detail(resp: &HttpResponse) -> String {
    resp.json().ok().map_or_else(String::new, |b| {
        b["error"]["data"]["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    })
}

#[test]
fn request_methods_without_id_are_refused() {
    let ctx = TestCtx::new("request_holes_ids");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "corp");
    // The demo's identity checks with an allow-all policy and a registry that knows `echo`
    // only (as `envoy/routing.yaml`): the registry is what stands between a caller and
    // `delete_file`.
    let mut plugin = demo_plugin_config();
    let o = plugin.as_object_mut().unwrap();
    o.remove("token_exchange");
    o.remove("routing");
    o.insert(
        "policy".into(),
        json!({
            "servers": [{"name": "corp", "path": "/mcp", "tools": [
                {"name": "echo", "status": "approved", "approved_for": ["*"]}
            ]}],
            "rules": [{"id": "allow-all", "effect": "allow", "description": "everything"}]
        }),
    );
    let envoy = Envoy::start(
        &ctx,
        "envoy",
        &EnvoyConfig::demo(server.port, idp.port).plugin_config(&plugin.to_string()),
    );
    let port = envoy.listener_port;
    let tokens = idp.tokens("alice", "agent-claude", ALICE_ALL_SCOPES);
    let session = open_session(port, &tokens.headers()).unwrap();
    let post = |body: Value| session_post(&session, &body).tokens(&tokens);
    let mut report = String::new();

    // The path works: a registered tool with an id, and a real notification.
    check(
        &mut report,
        "echo with an id",
        port,
        &server,
        tool_call(&session, 1, "echo", json!({"text": "hi"})).tokens(&tokens),
        reached(200, json!(["tools/call"])),
    );
    check(
        &mut report,
        "a notification",
        port,
        &server,
        post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
        reached(202, json!(["notifications/initialized"])),
    );
    // The registry refuses delete_file when it is asked properly.
    check(
        &mut report,
        "delete_file with an id",
        port,
        &server,
        tool_call(&session, 2, "delete_file", json!({"path": "/etc/passwd"})).tokens(&tokens),
        denied("registry.unknown_tool", json!(2)),
    );
    // Request methods without an id.
    for (method, params) in [
        (
            "tools/call",
            json!({"name": "delete_file", "arguments": {"path": "/etc/passwd"}}),
        ),
        (
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "hi"}}),
        ),
        (
            "prompts/get",
            json!({"name": "greet", "arguments": {"name": "x"}}),
        ),
        ("resources/read", json!({"uri": "demo://readme"})),
        ("tools/list", json!({})),
        ("ping", json!({})),
    ] {
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params});
        let name = format!("{method} without id");
        let resp = post(body.clone()).send(port);
        if let Ok(r) = &resp {
            if !detail(r).contains(&format!("`{method}` is a request method and needs an `id`")) {
                let _ = writeln!(report, "\n### {name}: detail does not name the method\n{r}");
            }
        }
        check(
            &mut report,
            &name,
            port,
            &server,
            post(body),
            invalid_request(Value::Null),
        );
    }
    // Notifications with an id.
    for (id, method) in [
        (json!(5), "notifications/initialized"),
        (json!("c"), "notifications/cancelled"),
    ] {
        check(
            &mut report,
            &format!("{method} with id {id}"),
            port,
            &server,
            post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {"requestId": 1}})),
            invalid_request(id.clone()),
        );
    }
    // A batch (protocol 2025-03-26) hiding the call among requests with ids.
    let batch = json!([
        {"jsonrpc": "2.0", "id": 10, "method": "ping"},
        {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "delete_file", "arguments": {"path": "/x"}}}
    ]);
    check(
        &mut report,
        "batch with a tools/call without id",
        port,
        &server,
        HttpRequest::mcp_post(batch.to_string())
            .header("Mcp-Session-Id", &session)
            .header("MCP-Protocol-Version", "2025-03-26")
            .tokens(&tokens),
        invalid_request(Value::Null),
    );
    assert!(
        report.is_empty(),
        "requests without id got past the decision:\n{report}"
    );
}

#[test]
fn case_twin_keys_and_normal_form_uris() {
    let ctx = TestCtx::new("request_holes_demo");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "corp");
    let envoy = Envoy::start(&ctx, "envoy", &EnvoyConfig::demo(server.port, idp.port));
    let port = envoy.listener_port;
    let tokens = idp.tokens("bob", "agent-claude", "mcp:tools mcp:resources sql:read");
    let session = open_session(port, &tokens.headers()).unwrap();
    let raw = |body: &str| {
        HttpRequest::mcp_post(body.to_string())
            .header("Mcp-Session-Id", &session)
            .header("MCP-Protocol-Version", "2025-06-18")
            .tokens(&tokens)
    };
    let call = |id: u64, method: &str, params: Value| {
        rpc_call(&session, id, method, params).tokens(&tokens)
    };
    let mut report = String::new();

    // --- #3: keys equal once case-folded
    check(
        &mut report,
        "query_table customers",
        port,
        &server,
        tool_call(&session, 1, "query_table", json!({"table": "customers"})).tokens(&tokens),
        reached(200, json!(["tools/call"])),
    );
    for (id, body) in [
        (
            2,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","Name":"delete_file","arguments":{"text":"x"}}}"#,
        ),
        (
            3,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"query_table","arguments":{"table":"customers","TABLE":"financials"}}}"#,
        ),
        (
            4,
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"query_table","arguments":{"table":"customers","schema":"public","\u017fchema":"finance"}}}"#,
        ),
        (
            5,
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x","mask":false,"MAS\u212a":true}}}"#,
        ),
        (
            6,
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"},"Arguments":{"text":"y"}}}"#,
        ),
        (
            7,
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x","opts":{"a":[{"deep":1,"DEEP":2}]}}}}"#,
        ),
    ] {
        check(
            &mut report,
            &format!("case twins {body}"),
            port,
            &server,
            raw(body),
            duplicate_key(json!(id)),
        );
    }
    // A lone key in another case: what a case-insensitive server reads counts for deny rules.
    check(
        &mut report,
        "query_table TABLE=financials",
        port,
        &server,
        tool_call(&session, 9, "query_table", json!({"TABLE": "financials"})).tokens(&tokens),
        denied("tables.financials.never", json!(9)),
    );
    check(
        &mut report,
        "twin method",
        port,
        &server,
        raw(r#"{"jsonrpc":"2.0","id":8,"method":"tools/list","METHOD":"tools/call"}"#),
        duplicate_key(json!(8)),
    );

    // --- #5: resource URIs in normal form; `**` reaches nested demo resources
    check(
        &mut report,
        "demo://items/42",
        port,
        &server,
        call(20, "resources/read", json!({"uri": "demo://items/42"})),
        reached(200, json!(["resources/read"])),
    );
    for uri in [
        "demo://items/../readme",
        "demo://items/./42",
        "demo://items/%2e%2e/readme",
        "demo://items/%2E%2E%2Freadme",
        "demo://items/..%2f..%2fetc",
        "demo://items/4%32",
        "demo://items//42",
        "demo://items\\42",
        "demo://items/%252e%252e/x",
        "DEMO://readme",
        "demo://items/4\t2",
    ] {
        check(
            &mut report,
            &format!("resources/read {uri:?}"),
            port,
            &server,
            call(21, "resources/read", json!({"uri": uri})),
            invalid_params(json!(21)),
        );
    }
    check(
        &mut report,
        "file resources are not demo resources",
        port,
        &server,
        call(22, "resources/read", json!({"uri": "file:///etc/passwd"})),
        denied("default.deny", json!(22)),
    );
    // completion/complete: decided on what it completes.
    let complete =
        |reference: Value| json!({"ref": reference, "argument": {"name": "id", "value": "4"}});
    check(
        &mut report,
        "complete a prompt argument",
        port,
        &server,
        call(
            30,
            "completion/complete",
            complete(json!({"type": "ref/prompt", "name": "greet"})),
        ),
        reached(200, json!(["completion/complete"])),
    );
    check(
        &mut report,
        "complete a demo resource template",
        port,
        &server,
        call(
            31,
            "completion/complete",
            complete(json!({"type": "ref/resource", "uri": "demo://items/{id}"})),
        ),
        reached(200, json!(["completion/complete"])),
    );
    check(
        &mut report,
        "complete a file resource template",
        port,
        &server,
        call(
            32,
            "completion/complete",
            complete(json!({"type": "ref/resource", "uri": "file:///{path}"})),
        ),
        denied("default.deny", json!(32)),
    );
    for (id, reference) in [
        (33, json!({"type": "ref/tool", "name": "delete_file"})),
        (34, json!({"type": "ref/prompt"})),
        (
            35,
            json!({"type": "ref/resource", "uri": "demo://items/../{x}"}),
        ),
        (36, json!("greet")),
    ] {
        check(
            &mut report,
            &format!("complete {reference}"),
            port,
            &server,
            call(id, "completion/complete", complete(reference)),
            invalid_params(json!(id)),
        );
    }

    // --- #12: execute_sql never reads financials (deny beats allow, at any hour)
    for (id, query, rule) in [
        (40, "SELECT * FROM financials", "sql.financials.never"),
        (
            41,
            "select * from PUBLIC.\"Financials\"",
            "sql.financials.never",
        ),
        (
            42,
            "SELECT name FROM customers UNION SELECT amount FROM `financials`",
            "sql.financials.never",
        ),
        (
            43,
            "SELECT * FROM U&\"fin\\0061ncials\"",
            "sql.dynamic.never",
        ),
        (
            44,
            "SELECT query_to_xml('select * from fin' || 'ancials', true, true, '')",
            "sql.dynamic.never",
        ),
    ] {
        check(
            &mut report,
            &format!("execute_sql {query}"),
            port,
            &server,
            tool_call(&session, id, "execute_sql", json!({"query": query})).tokens(&tokens),
            denied(rule, json!(id)),
        );
    }
    assert!(
        report.is_empty(),
        "requests got past the decision:\n{report}"
    );
}

#[test]
fn scopes_are_what_the_delegation_grants() {
    let ctx = TestCtx::new("request_holes_scopes");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "corp");
    // Without token exchange, nothing but the policy stands between the agent and the tool.
    let mut plugin = demo_plugin_config();
    plugin.as_object_mut().unwrap().remove("token_exchange");
    let envoy = Envoy::start(
        &ctx,
        "envoy",
        &EnvoyConfig::demo(server.port, idp.port).plugin_config(&plugin.to_string()),
    );
    let port = envoy.listener_port;
    let user = idp.user_token("alice", ALICE_ALL_SCOPES);
    assert!(
        jwt_payload(&user)["scope"]
            .as_str()
            .is_some_and(|s| s.split(' ').any(|x| x == "HR_read")),
        "alice's token carries HR_read"
    );
    let narrow = Tokens {
        user: user.clone(),
        agent: idp.agent_token("agent-claude", &user, "mcp:tools"),
    };
    assert_eq!(jwt_payload(&narrow.agent)["scope"], "mcp:tools");
    let wide = Tokens {
        user: user.clone(),
        agent: idp.agent_token("agent-claude", &user, ALICE_ALL_SCOPES),
    };
    let mut report = String::new();
    for (tokens, name, allowed) in [
        (&wide, "HR_read delegated", true),
        (&narrow, "only mcp:tools delegated", false),
    ] {
        let session = open_session(port, &tokens.headers()).unwrap();
        let resp = rpc_call(&session, 1, "tools/list", json!({}))
            .tokens(tokens)
            .send(port)
            .unwrap();
        let listed = rpc_message(&resp)
            .and_then(|m| list_names(&m, "tools"))
            .is_some_and(|names| names.iter().any(|n| n == "hr_lookup"));
        if listed != allowed {
            let _ = writeln!(report, "\n### {name}: hr_lookup listed: {listed}\n{resp}");
        }
        let expect = if allowed {
            reached(200, json!(["tools/call"]))
        } else {
            denied("default.deny", json!(2))
        };
        check(
            &mut report,
            &format!("{name}: hr_lookup"),
            port,
            &server,
            tool_call(&session, 2, "hr_lookup", json!({"name": "bob"})).tokens(tokens),
            expect,
        );
        check(
            &mut report,
            &format!("{name}: echo"),
            port,
            &server,
            tool_call(&session, 3, "echo", json!({"text": "hi"})).tokens(tokens),
            reached(200, json!(["tools/call"])),
        );
    }
    assert!(
        report.is_empty(),
        "the policy's scopes did not follow the delegation:\n{report}"
    );
}
