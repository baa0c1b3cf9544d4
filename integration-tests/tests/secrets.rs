//! Secrets from Envoy's environment, through a real Envoy: the shipped `envoy/demo.yaml` reads
//! the STS client secret as `{"env": "WARDEN_STS_CLIENT_SECRET"}` (Envoy passes the variable
//! to the filter with `vm_config.environment_variables.host_env_keys`); session keys can come
//! from the environment the same way.
//!
//! - [`exchange_uses_the_secret_from_env_and_config_dump_shows_none`]: a tool call is answered
//!   with a token exchanged with the secret from the environment (a wrong value is refused by
//!   the STS); sessions sealed with a key from the environment work; the admin `/config_dump`
//!   holds the variable names but neither the client secret nor the session key.
//! - [`a_missing_variable_refuses_the_config`]: Envoy without the variable refuses the plugin,
//!   naming the field and the variable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{
    demo_plugin_config, open_session, rpc_message, tail, tool_call, Envoy, EnvoyConfig, Idp,
    McpServer, ServerOptions, TestCtx, ALICE_ALL_SCOPES, DEMO_ENV,
};
use serde_json::json;
use std::time::Duration;

/// A session key only this test knows (base64 of 32 bytes), and its variable.
const SESSION_KEY: &str = "c2VjcmV0cy5ycyBzZXNzaW9uIGtleSwgMzIgYnl0ZXM=";
const SESSION_KEY_VAR: &str = "WARDEN_TEST_SESSION_KEY";
const STS_VAR: &str = "WARDEN_STS_CLIENT_SECRET";

fn demo_secret() -> &'static str {
    DEMO_ENV
        .iter()
        .find(|(k, _)| *k == STS_VAR)
        .map(|(_, v)| *v)
        .unwrap()
}

/// The demo plugin configuration (STS secret from the environment, as shipped) with session
/// keys from the environment too; `demo.yaml` with its variable list extended to match.
fn config(server: u16, idp: u16) -> EnvoyConfig {
    let mut plugin = demo_plugin_config();
    assert_eq!(
        plugin["token_exchange"]["client_auth"]["client_secret"],
        json!({"env": STS_VAR}),
        "envoy/demo.yaml must read the STS client secret from the environment"
    );
    plugin["sessions"] = json!({"keys": [{"id": "k1", "secret": {"env": SESSION_KEY_VAR}}]});
    EnvoyConfig::demo(server, idp)
        .plugin_config(&plugin.to_string())
        .replace(
            &format!("host_env_keys: [{STS_VAR}]"),
            &format!("host_env_keys: [{STS_VAR}, {SESSION_KEY_VAR}]"),
        )
        .env(SESSION_KEY_VAR, SESSION_KEY)
}

#[test]
fn exchange_uses_the_secret_from_env_and_config_dump_shows_none() {
    let ctx = TestCtx::new("secrets_from_env");
    let idp = Idp::start(&ctx);
    let server = McpServer::start_with(
        &ctx,
        "corp",
        &ServerOptions {
            verify_tokens_with_idp: Some(idp.port),
            ..Default::default()
        },
    );
    let tokens = idp.tokens("alice", "agent-claude", ALICE_ALL_SCOPES);
    let envoy = Envoy::start(&ctx, "envoy", &config(server.port, idp.port));
    let mut problems = Vec::new();

    // The exchange authenticates with the secret from the environment: the server gets an
    // exchanged token it verifies; the session id is sealed with the key from the environment.
    let session = open_session(envoy.listener_port, &tokens.headers())
        .unwrap_or_else(|e| panic!("initialize through Envoy: {e}"));
    if !session.starts_with("mw1.k1.") {
        problems.push(format!(
            "session id not sealed with the configured key k1: {session}"
        ));
    }
    let before = server.verified_tokens().len();
    let resp = tool_call(&session, 2, "echo", json!({"text": "hi"}))
        .tokens(&tokens)
        .send(envoy.listener_port)
        .unwrap();
    let answered = resp.status == 200
        && rpc_message(&resp).is_some_and(|m| m["result"]["content"][0]["text"] == "echo: hi");
    if !answered {
        problems.push(format!("tools/call echo not answered:\n{resp}"));
    }
    let seen = server.verified_tokens().split_off(before);
    if seen.len() != 1 || seen[0]["act_sub"] != "agent:agent-claude" {
        problems.push(format!(
            "the server did not verify one exchanged token: {seen:?}"
        ));
    }

    // The admin interface shows where the secrets come from, never the secrets.
    let dump = envoy.admin_get("/config_dump?include_eds");
    for (what, secret) in [
        ("the STS client secret", demo_secret()),
        ("the session key", SESSION_KEY),
    ] {
        if dump.contains(secret) {
            problems.push(format!("/config_dump contains {what}"));
        }
    }
    for name in [STS_VAR, SESSION_KEY_VAR] {
        if !dump.contains(name) {
            problems.push(format!("/config_dump does not name {name}"));
        }
    }
    // Nor does Envoy's log.
    let log = envoy.proc.log();
    if log.contains(demo_secret()) || log.contains(SESSION_KEY) {
        problems.push("Envoy's log contains a secret".into());
    }
    assert!(
        problems.is_empty(),
        "{}\n\nEnvoy log:\n{}",
        problems.join("\n"),
        tail(&log, 40)
    );
}

/// The value really comes from the environment: a wrong one makes the STS refuse the exchange
/// (403, nothing forwarded).
#[test]
fn a_wrong_secret_in_env_is_refused_by_the_token_service() {
    let ctx = TestCtx::new("secrets_wrong_value");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "corp");
    let tokens = idp.tokens("alice", "agent-claude", ALICE_ALL_SCOPES);
    let envoy = Envoy::start(
        &ctx,
        "envoy",
        &config(server.port, idp.port).env(STS_VAR, "not-the-secret"),
    );
    let session = open_session(envoy.listener_port, &tokens.headers());
    // initialize itself needs an exchanged token: refused by the STS.
    let resp = match session {
        Err(e) => e,
        Ok(s) => panic!("initialize answered with a wrong STS secret: {s}"),
    };
    assert!(
        resp.contains("HTTP 403") && resp.contains("token_exchange_refused"),
        "expected 403 token_exchange_refused:\n{resp}"
    );
    assert!(
        server.mcp_requests().is_empty(),
        "a request reached the server: {:?}",
        server.mcp_requests()
    );
}

#[test]
fn a_missing_variable_refuses_the_config() {
    let ctx = TestCtx::new("secrets_missing_variable");
    for (missing, field) in [
        (STS_VAR, "token_exchange.client_auth.client_secret"),
        (SESSION_KEY_VAR, "sessions.keys[0].secret"),
    ] {
        let config = config(1, 1).without_env(missing);
        let failure = match Envoy::try_start(&ctx, "envoy", &config, Duration::from_secs(30)) {
            Ok(envoy) => panic!(
                "Envoy started without {missing}; it must refuse the plugin.\n{}",
                tail(&envoy.proc.log(), 40)
            ),
            Err(f) => f,
        };
        assert!(
            failure.status.is_some_and(|s| !s.success()),
            "Envoy did not exit with a failure without {missing}:\n{}",
            tail(&failure.log, 40)
        );
        let named = failure.log.lines().any(|l| {
            l.contains(&format!("field `{field}`"))
                && l.contains(&format!("environment variable `{missing}` is not set"))
        });
        assert!(
            named,
            "no log line names {field} and {missing}:\n{}",
            tail(&failure.log, 40)
        );
    }
}
