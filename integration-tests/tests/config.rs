//! A bad plugin configuration makes Envoy refuse to start, and says which field is wrong. A
//! configuration without `identity` or `policy` is refused unless it says `"mode": "open"`;
//! an open one runs, and Envoy's log says so loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{
    demo_plugin_config, envoy_bin, open_session, repo_root, tail, wasm_path, Envoy, EnvoyConfig,
    HttpRequest, Idp, McpServer, Proc, RecordingUpstream, TestCtx, ALL_MCP_SCOPES, DEMO_ENV,
    DEMO_PLUGIN_CONFIG,
};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

/// How long Envoy may take to refuse a configuration.
const REFUSAL_WITHIN: Duration = Duration::from_secs(90);

/// Starts Envoy with `plugin_json` and expects it to exit non-zero (bounded) with a
/// warning/error/critical log line naming `field`.
fn assert_refused(test: &str, plugin_json: &str, field: &str) {
    // Nothing listens on the upstream or IdP port: Envoy must not get that far anyway.
    assert_config_refused(
        test,
        &EnvoyConfig::demo(1, 1).plugin_config(plugin_json),
        field,
    );
}

/// [`assert_refused`] for a whole Envoy configuration; returns the naming log lines.
fn assert_config_refused(test: &str, config: &EnvoyConfig, field: &str) -> Vec<String> {
    let ctx = TestCtx::new(test);
    let plugin_json = config
        .plugin_config
        .as_deref()
        .unwrap_or("(the template's)");
    // Loading the wasm takes Envoy seconds, tens of them on a loaded machine: the bound is for a
    // hung Envoy, not for how fast it refuses.
    let failure = match Envoy::try_start(&ctx, "envoy", config, REFUSAL_WITHIN) {
        Ok(envoy) => {
            // Say what a client would have got, to make the failure concrete.
            let answer = HttpRequest::mcp_post(INITIALIZE).send(envoy.listener_port);
            panic!(
                "Envoy started with plugin config {plugin_json}; it must refuse. An initialize got {:?}\n{}",
                answer.map(|r| r.status),
                tail(&envoy.proc.log(), 60)
            )
        }
        Err(f) => f,
    };
    let log = &failure.log;
    let status = failure.status.unwrap_or_else(|| {
        panic!(
            "Envoy neither exited nor became ready in {REFUSAL_WITHIN:?}:\n{}",
            tail(log, 60)
        )
    });
    assert!(
        !status.success(),
        "Envoy exited with {status}, expected a failure:\n{}",
        tail(log, 60)
    );
    let naming: Vec<String> = log
        .lines()
        .filter(|l| {
            let serious = ["][warning][", "][error][", "][critical]["]
                .iter()
                .any(|lvl| l.contains(lvl));
            serious && l.contains(field)
        })
        .map(str::to_string)
        .collect();
    assert!(
        !naming.is_empty(),
        "Envoy refused {plugin_json} ({status}) but no log line names `{field}`:\n{}",
        tail(log, 60)
    );
    eprintln!(
        "refused in {:?} ({status}); naming line(s):\n{}",
        failure.elapsed,
        naming.join("\n")
    );
    naming
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"it","version":"1"}}}"#;

/// `envoy/demo.yaml`'s plugin configuration without these sections (and without what needs
/// them: `token_exchange` and `routing` work per server of the policy).
fn demo_without(sections: &[&str]) -> serde_json::Value {
    let mut plugin = demo_plugin_config();
    let o = plugin.as_object_mut().unwrap();
    for s in sections {
        o.remove(*s);
    }
    if sections.contains(&"policy") || sections.contains(&"identity") {
        o.remove("token_exchange");
        o.remove("routing");
    }
    plugin
}

/// An empty or partial configuration (no `identity`, no `policy`, or neither) without
/// `"mode": "open"`: Envoy refuses it at start, the log names the missing section and points at
/// `"mode": "open"`, and nothing reaches the MCP server (a live one, the demo's upstream).
#[test]
fn empty_or_partial_config_is_refused_and_nothing_reaches_the_server() {
    let upstream = RecordingUpstream::start();
    let mut partial = demo_plugin_config();
    partial
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k.starts_with("max_"));
    let cases: Vec<(&str, String, &str)> = vec![
        ("config_open_empty_object", "{}".into(), "identity"),
        ("config_open_empty_text", String::new(), "identity"),
        ("config_open_limits_only", partial.to_string(), "identity"),
        (
            "config_open_no_identity",
            demo_without(&["identity"]).to_string(),
            "identity",
        ),
        (
            "config_open_no_policy",
            demo_without(&["policy"]).to_string(),
            "policy",
        ),
        (
            "config_open_enforce_said",
            {
                let mut p = demo_without(&["policy"]);
                p["mode"] = json!("enforce");
                p.to_string()
            },
            "policy",
        ),
    ];
    for (test, plugin, field) in cases {
        // Identity-less variants run without jwt_authn, as an open deployment would.
        let mut config = EnvoyConfig::demo(upstream.port, 1).plugin_config(&plugin);
        if field == "identity" {
            config = EnvoyConfig::demo_without_identity(upstream.port).plugin_config(&plugin);
        }
        let naming = assert_config_refused(test, &config, &format!("field `{field}`"));
        assert!(
            naming.iter().any(|l| l.contains(r#""mode": "open""#)),
            "{test}: the refusal does not point at \"mode\": \"open\":\n{}",
            naming.join("\n")
        );
    }
    assert_eq!(
        upstream.count(),
        0,
        "a refused configuration let requests reach the server: {:?}",
        upstream.requests()
    );
}

/// The warning lines Envoy logged for the filter's open mode.
fn open_mode_lines(log: &str, section: &str) -> Vec<String> {
    let needle = format!("mcp-warden: OPEN MODE: no {section} section");
    log.lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// `"mode": "open"` without identity and policy: Envoy starts, requests reach the server, and
/// the log says at `warning` level, for each missing section, what is not enforced. With
/// identity but no policy: only the policy is reported missing, and a caller without a token
/// is still refused.
#[test]
fn open_mode_serves_and_warns_once_per_missing_section() {
    let ctx = TestCtx::new("config_open_mode");
    let server = McpServer::start(&ctx, "corp");
    let mut problems = Vec::new();
    {
        let envoy = Envoy::start(
            &ctx,
            "envoy-open",
            &EnvoyConfig::demo_without_identity(server.port).plugin_config(DEMO_PLUGIN_CONFIG),
        );
        let before = server.mcp_requests().len();
        match open_session(envoy.listener_port, &[]) {
            Ok(_) => {}
            Err(e) => problems.push(format!("open mode: an anonymous initialize failed: {e}")),
        }
        if server.mcp_requests().len() <= before {
            problems.push("open mode: the anonymous initialize did not reach the server".into());
        }
        let log = envoy.proc.log();
        for section in ["identity", "policy"] {
            let lines = open_mode_lines(&log, section);
            if lines.is_empty() || !lines.iter().all(|l| l.contains("][warning][")) {
                problems.push(format!(
                    "open mode: expected `[warning]` lines for the missing {section}, got {lines:?}\n{}",
                    tail(&log, 40)
                ));
            }
        }
        // The log's summary line says the mode too.
        if !log.contains("mcp-warden: configured (mode=open") {
            problems.push("open mode: no `configured (mode=open` line".into());
        }
    }
    {
        let idp = Idp::start(&ctx);
        let envoy = Envoy::start(
            &ctx,
            "envoy-open-no-policy",
            &EnvoyConfig::demo_without_policy(server.port, idp.port),
        );
        let log = envoy.proc.log();
        if open_mode_lines(&log, "policy").is_empty() {
            problems.push(format!(
                "identity only: no OPEN MODE line for the missing policy\n{}",
                tail(&log, 40)
            ));
        }
        let identity = open_mode_lines(&log, "identity");
        if !identity.is_empty() {
            problems.push(format!(
                "identity only: an OPEN MODE line for identity, which is configured: {identity:?}"
            ));
        }
        let before = server.mcp_requests().len();
        match HttpRequest::mcp_post(INITIALIZE).send(envoy.listener_port) {
            Ok(r) if r.status == 401 => {}
            other => problems.push(format!(
                "identity only: an initialize without a token got {:?}, expected 401",
                other.map(|r| r.status)
            )),
        }
        if server.mcp_requests().len() != before {
            problems.push("identity only: a request without a token reached the server".into());
        }
        let tokens = idp.tokens("alice", "agent-claude", ALL_MCP_SCOPES);
        if let Err(e) = open_session(envoy.listener_port, &tokens.headers()) {
            problems.push(format!("identity only: alice could not initialize: {e}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn unknown_field_is_refused() {
    assert_refused(
        "config_unknown_field",
        r#"{"max_body_bytes": 1000, "bogus": 1}"#,
        "bogus",
    );
}

#[test]
fn negative_body_cap_is_refused() {
    assert_refused(
        "config_negative_cap",
        r#"{"max_body_bytes": -5}"#,
        "max_body_bytes",
    );
}

#[test]
fn zero_body_cap_is_refused() {
    assert_refused(
        "config_zero_cap",
        r#"{"max_body_bytes": 0}"#,
        "max_body_bytes",
    );
}

#[test]
fn config_that_is_not_json_is_refused() {
    // No field to name: an error line must at least say it is not JSON.
    assert_refused("config_not_json", r#"{"max_body_bytes": "#, "JSON");
}

#[test]
fn identity_without_user_issuers_is_refused() {
    let mut plugin = demo_plugin_config();
    plugin["identity"]["user"]["issuers"] = json!([]);
    assert_refused(
        "config_identity_no_issuers",
        &plugin.to_string(),
        "identity.user.issuers",
    );
}

#[test]
fn identity_with_a_bad_attestation_key_is_refused() {
    let mut plugin = demo_plugin_config();
    plugin["identity"]["agent"]["attestation"]["keys"] = json!([{"alg": "ES256", "pem": "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n"}]);
    assert_refused(
        "config_identity_bad_attestation_key",
        &plugin.to_string(),
        "attestation.keys[0]",
    );
}

/// The shipped `envoy/demo.yaml`, unchanged, passes `envoy --mode validate` (which also loads
/// the wasm and runs the plugin's configuration step).
#[test]
fn demo_yaml_validates() {
    let ctx = TestCtx::new("config_demo_validates");
    let _wasm = wasm_path(); // a clear message if it is not built
    let mut cmd = Command::new(envoy_bin());
    cmd.current_dir(repo_root())
        .args(["--mode", "validate", "-c", "envoy/demo.yaml"])
        .envs(DEMO_ENV.iter().copied());
    let mut proc = Proc::spawn(&ctx, "validate", cmd);
    let status = proc
        .wait_timeout(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("envoy --mode validate did not finish in 30 s"));
    let log = proc.log();
    assert!(
        status.success() && log.contains("configuration 'envoy/demo.yaml' OK"),
        "envoy --mode validate -c envoy/demo.yaml failed ({status}):\n{}",
        tail(&log, 30)
    );
}
