//! The official SDK clients see exactly the same thing with and without Envoy + mcp-warden in
//! between (the clients print deterministic, port- and session-independent output).
//!
//! Both runs send the same credentials (`Authorization: Bearer <alice>`, `x-agent-token:
//! <agent-claude for alice>`) and a forged `x-mcp-user: mallory`; the server ignores them. Two
//! parts must differ: what the server saw of the caller (`whoami_headers`): directly it sees the
//! client's own headers, through the filter only the verified identity; and whether the
//! session id the client holds is the server's (`whoami[].sessionIdMatches`): through the filter
//! the client only ever holds the sealed id. Those are compared separately; everything else must
//! be identical.
//!
//! The gateway runs `envoy/demo.yaml` without `policy` and `token_exchange`
//! ([`EnvoyConfig::demo_without_policy`]): what the policy hides or refuses, and the exchanged
//! credential, differ from a direct connection on purpose and are tested on their own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{
    run_client_with_headers, Client, Envoy, EnvoyConfig, Idp, McpServer, TestCtx, ALL_MCP_SCOPES,
    IDP_ISSUER,
};
use serde_json::{json, Value};

fn first_difference(a: &str, b: &str) -> String {
    let (al, bl): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    for i in 0..al.len().max(bl.len()) {
        let (x, y) = (al.get(i), bl.get(i));
        if x != y {
            return format!(
                "first difference at line {}:\n  direct:  {x:?}\n  through: {y:?}",
                i + 1
            );
        }
    }
    "no line differs (line endings?)".into()
}

/// Splits a client's output into (everything but `whoami_headers` and the whoami results'
/// `sessionIdMatches`, `whoami_headers`, the `sessionIdMatches` values).
fn split_identity(client: Client, label: &str, out: &str) -> (String, Value, Vec<Value>) {
    let mut doc: Value = serde_json::from_str(out).unwrap_or_else(|e| {
        panic!(
            "{} {label} output is not JSON ({e}):\n{out}",
            client.label()
        )
    });
    let seen = doc
        .as_object_mut()
        .and_then(|o| o.remove("whoami_headers"))
        .unwrap_or_else(|| panic!("{} {label} output has no whoami_headers", client.label()));
    let matches = doc["whoami"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_object_mut().and_then(|o| o.remove("sessionIdMatches")))
        .collect();
    (serde_json::to_string_pretty(&doc).unwrap(), seen, matches)
}

fn same_output_through_the_filter(test: &str, client: Client) {
    let ctx = TestCtx::new(test);
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "demo");
    // Identity only: the policy filters lists and refuses unknown tools, and token exchange
    // changes the credential upstream, both by design (tests/policy.rs, tests/exchange.rs).
    let envoy = Envoy::start(
        &ctx,
        "envoy",
        &EnvoyConfig::demo_without_policy(server.port, idp.port),
    );
    let tokens = idp.tokens("alice", "agent-claude", ALL_MCP_SCOPES);
    let mut headers = tokens.headers();
    headers.push(("x-mcp-user".into(), "mallory".into()));

    let direct = run_client_with_headers(&ctx, client, "direct", &server.url(), &headers);
    assert!(
        !direct.trim().is_empty(),
        "{} printed nothing talking to the server directly",
        client.label()
    );
    let direct_requests = server.mcp_requests().len();
    let through = run_client_with_headers(&ctx, client, "envoy", &envoy.mcp_url(), &headers);
    let (direct_rest, direct_seen, direct_ids) = split_identity(client, "direct", &direct);
    let (through_rest, through_seen, through_ids) =
        split_identity(client, "through Envoy", &through);
    // Directly the client holds the server's session id; through the filter (identity on:
    // sessions sealed) never.
    assert_eq!(
        (direct_ids, through_ids),
        (vec![json!(true); 2], vec![json!(false); 2]),
        "{}: whoami sessionIdMatches directly / through the filter",
        client.label()
    );
    assert!(
        direct_rest == through_rest,
        "{} output differs through Envoy+mcp-warden; {}\n--- direct ---\n{direct}\n--- through envoy ---\n{through}",
        client.label(),
        first_difference(&direct_rest, &through_rest)
    );

    // Directly, the server sees what the client sent (so the comparison below can fail) ...
    let sent = json!({
        "x-mcp-user": "mallory", "x-mcp-user-issuer": null, "x-mcp-agent": null,
        "x-mcp-delegation": null,
        "saw_authorization": true, "saw_agent_token": true,
    });
    assert_eq!(
        direct_seen,
        json!([sent, sent]),
        "{}: whoami directly",
        client.label()
    );
    // ... through the filter only the verified identity, and never the credentials.
    let verified = json!({
        "x-mcp-user": "alice", "x-mcp-user-issuer": IDP_ISSUER,
        "x-mcp-agent": "agent:agent-claude", "x-mcp-delegation": "alice>agent:agent-claude",
        "saw_authorization": false, "saw_agent_token": false,
    });
    assert_eq!(
        through_seen,
        json!([verified, verified]),
        "{}: whoami through Envoy+mcp-warden",
        client.label()
    );
    // Every request the filter forwarded (POST, GET stream, DELETE) carried the verified
    // identity and none of the client's credentials.
    let forwarded = &server.mcp_requests()[direct_requests..];
    assert!(
        !forwarded.is_empty(),
        "nothing reached the server through Envoy"
    );
    for r in forwarded {
        assert!(
            r["x-mcp-user"] == "alice"
                && r["x-mcp-agent"] == "agent:agent-claude"
                && r["saw_authorization"] == false
                && r["saw_agent_token"] == false,
            "{}: a request reached the server with other identity headers: {r}",
            client.label()
        );
    }
}

#[test]
fn ts_client_same_through_filter() {
    same_output_through_the_filter("sdk_ts_client", Client::Ts);
}

#[test]
fn py_client_same_through_filter() {
    same_output_through_the_filter("sdk_py_client", Client::Py);
}
