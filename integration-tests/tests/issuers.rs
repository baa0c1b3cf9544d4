//! Identity is (issuer, subject), through a real Envoy with two IdPs (issue 14 item 1).
//!
//! Two demo IdP instances, each with its own signing key: `corp` (the demo issuer) and
//! `partner` (its tokens minted with `iss` = [`PARTNER`]). Envoy's user `jwt_authn` filter trusts
//! both (one provider each, each with its own JWKS cluster). Both IdPs have an `alice`: they are
//! two users. A policy rule for `corp:alice` lets only the corp's alice call `whoami`; a session
//! opened by one is refused to the other; the upstream and the audit record name the issuer. A
//! session id of one agent instance is refused to another instance of the same agent, and an
//! expired sealed id is refused like an unknown one (`sessions.max_age_seconds`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{
    demo_plugin_config, open_session, rpc_message, tool_call, wait_for, Envoy, EnvoyConfig, Idp,
    McpServer, TestCtx, IDP_ISSUER,
};
use serde_json::{json, Value};
use std::time::Duration;

/// The partner IdP's issuer.
const PARTNER: &str = "http://partner.test";
/// Lifetime of sealed ids in this test's configuration.
const MAX_AGE: u64 = 4;
const SCOPE: &str = "mcp:tools mcp:resources mcp:prompts";

/// `envoy/demo.yaml` whose user jwt_authn filter also trusts [`PARTNER`] (JWKS from the partner
/// IdP), and whose plugin configuration names both user issuers (`corp`, `partner`), lets the
/// corp's agents act for both, allows `whoami` only to `corp:alice`, and seals ids for
/// [`MAX_AGE`] seconds. No token exchange (the corp IdP would not exchange a partner token).
fn config(server: &McpServer, corp: &Idp, partner: &Idp) -> EnvoyConfig {
    let mut plugin = demo_plugin_config();
    let o = plugin.as_object_mut().unwrap();
    o.remove("token_exchange");
    o.remove("routing");
    plugin["identity"]["user"]["issuers"] = json!([
        {"issuer": IDP_ISSUER, "name": "corp"},
        {"issuer": PARTNER, "name": "partner"}
    ]);
    plugin["identity"]["agent"]["issuers"] =
        json!([{"issuer": IDP_ISSUER, "delegators_from": ["corp", "partner"]}]);
    plugin["sessions"] = json!({"max_age_seconds": MAX_AGE});
    let rules = plugin["policy"]["rules"].as_array_mut().unwrap();
    for r in rules.iter_mut() {
        if r["id"] == "demo.harmless-tools" {
            r["tools"] = json!(["echo", "add", "slow_count", "ask_llm"]);
        }
    }
    rules.push(
        json!({"id": "whoami.corp-alice", "effect": "allow", "tools": ["whoami"],
                      "users": ["corp:alice"]}),
    );
    let provider = format!(
        "              providers:
                user_partner:
                  issuer: {PARTNER}
                  remote_jwks:
                    http_uri: {{ uri: http://127.0.0.1:{port}/jwks, cluster: idp_partner, timeout: 2s }}
                    cache_duration: 5s
                    async_fetch: {{ fast_listener: false, failed_refetch_duration: 1s }}
                  from_headers: [{{ name: authorization, value_prefix: \"Bearer \" }}]
                  forward: true
                  forward_payload_header: x-warden-user-payload
                  payload_in_metadata: user
                  failed_status_in_metadata: user_failure
                user:
",
        port = partner.port
    );
    let cluster = format!(
        "  clusters:
  - name: idp_partner
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: idp_partner
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {port} }}
",
        port = partner.port
    );
    EnvoyConfig::demo(server.port, corp.port)
        .plugin_config(&plugin.to_string())
        .replace("              providers:\n                user:\n", &provider)
        .replace(
            "                    - provider_name: user\n",
            "                    - provider_name: user\n                    - provider_name: user_partner\n",
        )
        .replace("  clusters:\n", &cluster)
}

/// A user token for `alice` from `idp`, with issuer `iss` (None: the IdP's own).
fn alice_token(idp: &Idp, iss: Option<&str>) -> String {
    let mut spec = json!({"kind": "user", "base": {"username": "alice", "scope": SCOPE}});
    if let Some(iss) = iss {
        spec["iss"] = json!(iss);
    }
    idp.mint_token(spec)
}

/// A corp agent token (agent-claude, instance `instance`) acting for `alice`.
fn agent_token(corp: &Idp, instance: &str) -> String {
    corp.mint_token(
        json!({"kind": "agent", "base": {"username": "alice", "agent": "agent-claude",
                           "scope": SCOPE, "agent_instance_id": instance}}),
    )
}

fn headers(user: &str, agent: &str) -> Vec<(String, String)> {
    vec![
        ("Authorization".into(), format!("Bearer {user}")),
        ("x-agent-token".into(), agent.into()),
    ]
}

/// `whoami` on `session` as `who`: (status, the JSON-RPC error reason or the result text).
fn whoami(port: u16, session: &str, id: u64, who: &[(String, String)]) -> (u16, Value) {
    let r = tool_call(session, id, "whoami", json!({}))
        .headers(who)
        .send(port)
        .unwrap_or_else(|e| panic!("whoami {id}: {e}"));
    let msg = rpc_message(&r).unwrap_or(Value::Null);
    (r.status, msg)
}

/// The audit records in Envoy's log.
fn records(envoy: &Envoy) -> Vec<Value> {
    envoy
        .proc
        .log()
        .lines()
        .filter_map(|l| l.find("mcp-warden audit ").map(|at| &l[at + 17..]))
        .filter_map(|j| serde_json::from_str(j.trim()).ok())
        .collect()
}

fn record_of(envoy: &Envoy, id: u64) -> Value {
    wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        records(envoy).into_iter().find(|r| {
            r["id"] == json!(id)
                || r["messages"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["id"] == json!(id)))
        })
    })
    .unwrap_or_else(|| panic!("no audit record for request {id}"))
}

#[test]
fn two_issuers_with_the_same_sub_are_two_users() {
    let ctx = TestCtx::new("issuers");
    let corp = Idp::start(&ctx);
    let partner = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "corp");
    let envoy = Envoy::start(&ctx, "envoy", &config(&server, &corp, &partner));
    let port = envoy.listener_port;

    let agent = agent_token(&corp, "i-1");
    let corp_alice = headers(&alice_token(&corp, None), &agent);
    let partner_alice = headers(&alice_token(&partner, Some(PARTNER)), &agent);
    // A partner-issued token signed by the corp IdP is not the partner's: jwt_authn refuses it.
    let forged = headers(&alice_token(&corp, Some(PARTNER)), &agent);

    // Both may open a session (the demo policy lets everyone initialize).
    let corp_session = open_session(port, &corp_alice).expect("corp alice opens a session");
    let partner_session =
        open_session(port, &partner_alice).expect("partner alice opens a session");
    assert_eq!(
        open_session(port, &forged)
            .map(|_| ())
            .map_err(|e| e.contains("401")),
        Err(true),
        "a partner token signed by the corp IdP"
    );

    // The rule for corp:alice: the corp's alice may call whoami, the partner's may not.
    let (status, msg) = whoami(port, &corp_session, 11, &corp_alice);
    assert_eq!(status, 200, "{msg}");
    let text = msg["result"]["content"][0]["text"].as_str().unwrap_or("");
    let who: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {msg}"));
    assert_eq!(who["x-mcp-user"], "alice", "{who}");
    assert_eq!(who["x-mcp-user-issuer"], IDP_ISSUER, "{who}");
    let (status, msg) = whoami(port, &partner_session, 12, &partner_alice);
    assert_eq!(status, 403, "{msg}");
    assert_eq!(msg["error"]["data"]["rule"], "default.deny", "{msg}");

    // A session belongs to the issuer's user that opened it.
    let (status, msg) = whoami(port, &corp_session, 13, &partner_alice);
    assert_eq!(status, 403, "{msg}");
    assert_eq!(msg["error"]["data"]["reason"], "session_forbidden", "{msg}");
    let (status, msg) = whoami(port, &partner_session, 14, &corp_alice);
    assert_eq!(status, 403, "{msg}");
    assert_eq!(msg["error"]["data"]["reason"], "session_forbidden", "{msg}");

    // What reached the server: each session's requests carry their own issuer, and no
    // refused request reached it.
    let seen = server.mcp_requests();
    let issuers_of = |tool: &str| -> Vec<Value> {
        seen.iter()
            .filter(|r| {
                r["tools"]
                    .as_array()
                    .is_some_and(|t| t.contains(&json!(tool)))
            })
            .map(|r| r["x-mcp-user-issuer"].clone())
            .collect()
    };
    assert_eq!(issuers_of("whoami"), vec![json!(IDP_ISSUER)], "{seen:?}");
    let inits: Vec<Value> = seen
        .iter()
        .filter(|r| r["rpc"] == json!(["initialize"]))
        .map(|r| r["x-mcp-user-issuer"].clone())
        .collect();
    assert_eq!(inits, vec![json!(IDP_ISSUER), json!(PARTNER)], "{seen:?}");

    // The audit records name the issuers.
    let allowed = record_of(&envoy, 11);
    assert_eq!(
        (
            &allowed["user"],
            &allowed["user_iss"],
            &allowed["agent_iss"]
        ),
        (&json!("alice"), &json!(IDP_ISSUER), &json!(IDP_ISSUER)),
        "{allowed}"
    );
    let refused = record_of(&envoy, 12);
    assert_eq!(
        (&refused["user"], &refused["user_iss"], &refused["outcome"]),
        (&json!("alice"), &json!(PARTNER), &json!("refused")),
        "{refused}"
    );
}

#[test]
fn sealed_sessions_bind_the_agent_instance_and_expire() {
    let ctx = TestCtx::new("issuers-sessions");
    let corp = Idp::start(&ctx);
    let partner = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "corp");
    let envoy = Envoy::start(&ctx, "envoy", &config(&server, &corp, &partner));
    let port = envoy.listener_port;
    let user = alice_token(&corp, None);
    let first = headers(&user, &agent_token(&corp, "i-1"));
    let second = headers(&user, &agent_token(&corp, "i-2"));

    let session = open_session(port, &first).expect("session of instance i-1");
    let (status, msg) = whoami(port, &session, 21, &first);
    assert_eq!(status, 200, "{msg}");
    // Another instance of the same agent, for the same user: not its session.
    let (status, msg) = whoami(port, &session, 22, &second);
    assert_eq!(status, 403, "{msg}");
    assert_eq!(msg["error"]["data"]["rule"], "session.owner", "{msg}");
    let whoamis = |seen: &[Value]| {
        seen.iter()
            .filter(|r| r["tools"] == json!(["whoami"]))
            .count()
    };
    assert_eq!(whoamis(&server.mcp_requests()), 1);

    // Once max_age_seconds have passed, the id is refused like an unknown one: 404, so the
    // client initializes again.
    std::thread::sleep(Duration::from_secs(MAX_AGE + 1));
    let (status, msg) = whoami(port, &session, 23, &first);
    assert_eq!(status, 404, "{msg}");
    assert_eq!(msg["error"]["data"]["reason"], "session_not_found", "{msg}");
    assert_eq!(msg["error"]["data"]["rule"], "session.expired", "{msg}");
    assert_eq!(
        whoamis(&server.mcp_requests()),
        1,
        "the expired id reached the server"
    );
    let fresh = open_session(port, &first).expect("a new session");
    let (status, msg) = whoami(port, &fresh, 24, &first);
    assert_eq!(status, 200, "{msg}");
}
