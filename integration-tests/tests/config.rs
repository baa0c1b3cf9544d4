//! A bad plugin configuration makes Envoy refuse to start, and says which field is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{
    demo_plugin_config, envoy_bin, repo_root, tail, wasm_path, Envoy, EnvoyConfig, Proc, TestCtx,
    DEMO_ENV,
};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

/// Starts Envoy with `plugin_json` and expects it to exit non-zero (bounded) with a
/// warning/error/critical log line naming `field`.
fn assert_refused(test: &str, plugin_json: &str, field: &str) {
    let ctx = TestCtx::new(test);
    // Nothing listens on the upstream or IdP port: Envoy must not get that far anyway.
    let config = EnvoyConfig::demo(1, 1).plugin_config(plugin_json);
    let failure = match Envoy::try_start(&ctx, "envoy", &config, Duration::from_secs(30)) {
        Ok(envoy) => panic!(
            "Envoy started with plugin config {plugin_json}; it must refuse.\n{}",
            tail(&envoy.proc.log(), 60)
        ),
        Err(f) => f,
    };
    let log = &failure.log;
    let status = failure.status.unwrap_or_else(|| {
        panic!(
            "Envoy neither exited nor became ready in 30 s:\n{}",
            tail(log, 60)
        )
    });
    assert!(
        !status.success(),
        "Envoy exited with {status}, expected a failure:\n{}",
        tail(log, 60)
    );
    let naming: Vec<&str> = log
        .lines()
        .filter(|l| {
            let serious = ["][warning][", "][error][", "][critical]["]
                .iter()
                .any(|lvl| l.contains(lvl));
            serious && l.contains(field)
        })
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
