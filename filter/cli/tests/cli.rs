//! The `warden` binary on the shipped files and on broken ones.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn warden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("warden-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn shipped(dir: &str, ext: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(repo().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| format!("{dir}/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    out.sort();
    out
}

fn bundle_dirs() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(repo().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("bundle.toml").is_file())
        .map(|p| format!("policies/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    out.sort();
    out
}

#[test]
fn every_shipped_bundle_and_envoy_file_checks() {
    let mut files: Vec<String> = bundle_dirs()
        .iter()
        .map(|d| format!("{d}/bundle.toml"))
        .collect();
    assert!(files.len() >= 2, "{files:?}");
    files.extend(shipped("envoy", "yaml"));
    files.extend(shipped("envoy/ecds", "yaml"));
    // The shipped demo files hold the examples' secrets: accepted explicitly (as `make
    // policies` does), still reported, and the only warnings (no shipped file is open).
    let args: Vec<&str> = ["check", "--allow-example-secrets"]
        .into_iter()
        .chain(files.iter().map(String::as_str))
        .collect();
    let o = warden(&args);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains(": ok (")).count(),
        files.len(),
        "{out}"
    );
    assert!(!out.contains("OPEN MODE"), "{out}");
    for expected in [
        "envoy/demo.yaml:157:27: warning: field `identity.agent.attestation.keys[0].pem`: the demo attestation public key",
        "envoy/ecds/mcp_warden.yaml:26:17: warning: field `identity.agent.attestation.keys[0].pem`",
    ] {
        let (at, rest) = expected.split_once(": warning").unwrap();
        // Line numbers move with edits: match the file, then the rest of the line.
        let file = at.split(':').next().unwrap();
        assert!(
            out.lines()
                .any(|l| l.starts_with(file) && l.contains(&format!("warning{rest}"))),
            "no `{expected}` in:\n{out}"
        );
    }
    // Without the flag the same files fail, each file with example secrets saying why.
    let o = warden(
        &args
            .iter()
            .copied()
            .filter(|a| !a.starts_with("--"))
            .collect::<Vec<_>>(),
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    for file in [
        "envoy/demo.yaml",
        "envoy/routing.yaml",
        "envoy/ecds/mcp_warden.yaml",
    ] {
        assert!(
            out.contains(&format!(
                "{file}: not accepted: example secrets (--allow-example-secrets)"
            )),
            "{file}:\n{out}"
        );
    }
}

#[test]
fn open_mode_and_copied_secrets_fail_the_check_unless_accepted() {
    let dir = scratch("open-mode");
    let open = dir.join("open.json");
    std::fs::write(&open, r#"{"mode":"open","max_body_bytes":4096}"#).unwrap();
    let open = open.to_string_lossy().into_owned();
    let o = warden(&["check", &open]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "{open}: warning: field `identity`: OPEN MODE: no identity section"
        )) && out.contains(&format!(
            "{open}: warning: field `policy`: OPEN MODE: no policy section"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("{open}: not accepted: open mode (--allow-open)")),
        "{out}"
    );
    // Accepted: still printed, exit 0. The other flag does not accept it.
    let o = warden(&["check", "--allow-open", &open]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("OPEN MODE: no identity section"));
    assert_eq!(
        warden(&["check", "--allow-example-secrets", &open])
            .status
            .code(),
        Some(1)
    );
    // An empty configuration is not open: it is an error, whatever is accepted.
    let empty = dir.join("empty.json");
    std::fs::write(&empty, "{}").unwrap();
    let empty = empty.to_string_lossy().into_owned();
    let o = warden(&["check", "--allow-open", "--allow-example-secrets", &empty]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with(&format!("{empty}: field `identity`: missing")),
        "{}",
        stdout(&o)
    );
    // The demo's plugin configuration copied into a file of its own: its secrets are named by
    // field, their values never printed; the open-mode flag does not accept them.
    let demo = std::fs::read_to_string(repo().join("envoy/demo.yaml")).unwrap();
    let json = mcp_warden_cli::envoy::plugin_configs(&demo).unwrap()[0]
        .json
        .clone();
    let copied = dir.join("copied.json");
    std::fs::write(&copied, &json).unwrap();
    let copied = copied.to_string_lossy().into_owned();
    let o = warden(&["check", "--allow-open", &copied]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "{copied}: warning: field `identity.agent.attestation.keys[0].pem`: the demo attestation public key"
        )),
        "{out}"
    );
    assert!(!out.contains("mcp-warden-secret\""), "{out}");
    assert!(!out.contains("MFkwEwYH"), "{out}");
    assert!(warden(&["check", "--allow-example-secrets", &copied])
        .status
        .success());
}

#[test]
fn every_shipped_bundle_passes_its_tests_and_uses_every_rule() {
    let dirs = bundle_dirs();
    let args: Vec<&str> = std::iter::once("test")
        .chain(dirs.iter().map(String::as_str))
        .collect();
    let o = warden(&args);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    let last = out.lines().last().unwrap();
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
    assert!(!out.contains("FAIL") && !out.contains("note "), "{out}");
}

#[test]
fn check_of_a_bad_bundle_fails_with_the_field_path_and_line() {
    let dir = scratch("bad-bundle");
    let bad = dir.join("bundle.toml");
    std::fs::write(
        &bad,
        "[[servers]]\nname = \"corp\"\npath = \"/mcp\"\n\n[[rules]]\nid = \"a\"\neffect = \"allow\"\n\n[[rules]]\nid = \"b\"\neffect = \"allow\"\ntools = [\"x\"]\nwhen = { hours = \"9-17\" }\n",
    )
    .unwrap();
    let path = bad.to_string_lossy().into_owned();
    let o = warden(&["check", &path]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert_eq!(
        out.trim_end(),
        format!("{path}:13:10: field `rules[1].when.hours`: `9-17` is not HH:MM-HH:MM with different ends")
    );
    // TOML syntax: line and column.
    std::fs::write(&bad, "[[rules]\n").unwrap();
    let out = stdout(&warden(&["check", &path]));
    assert!(out.starts_with(&format!("{path}:1:")), "{out}");
    assert!(out.contains("TOML:"), "{out}");
}

#[test]
fn check_of_plugin_json_and_envoy_yaml() {
    let dir = scratch("plugin");
    let json = dir.join("plugin.json");
    std::fs::write(
        &json,
        r#"{"mode":"open","policy":{"rules":[{"id":"a","effect":"allow","min_trust_level":"godlike"}]}}"#,
    )
    .unwrap();
    let path = json.to_string_lossy().into_owned();
    let o = warden(&["check", &path]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("field `policy.rules[0].min_trust_level`"),
        "{}",
        stdout(&o)
    );
    let yaml = dir.join("envoy.yaml");
    std::fs::write(
        &yaml,
        "x:\n  configuration:\n    \"@type\": type.googleapis.com/google.protobuf.StringValue\n    value: '{\"max_body_bytes\":0}'\n",
    )
    .unwrap();
    let path = yaml.to_string_lossy().into_owned();
    let o = warden(&["check", &path]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with(&format!(
            "{path}:4:13: field `max_body_bytes`: must be between"
        )),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_failing_case_fails_the_run_with_expected_and_got() {
    let dir = scratch("failing-case");
    std::fs::copy(
        repo().join("policies/minimal/bundle.toml"),
        dir.join("bundle.toml"),
    )
    .unwrap();
    std::fs::write(
        dir.join("tests.toml"),
        "[[cases]]\nname = \"wrong\"\nuser = { sub = \"x\" }\ntool = \"delete_file\"\ndecision = \"allow\"\n\n[[cases]]\nname = \"right\"\nuser = { sub = \"x\" }\ntool = \"echo\"\ndecision = \"allow\"\n",
    )
    .unwrap();
    let path = dir.to_string_lossy().into_owned();
    let o = warden(&["test", &path]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains(
            "FAIL warden-failing-case: wrong: expected allow, got deny by deny.destructive-tools ("
        ),
        "{out}"
    );
    assert!(
        out.contains("PASS warden-failing-case: right: allow by allow.everything"),
        "{out}"
    );
    assert!(out.contains("note warden-failing-case: rules that decided no passing case: deny.destructive-tools, deny.file-resources, deny.contractor-tool-calls"), "{out}");
    assert_eq!(out.lines().last(), Some("1 passed, 1 failed"));
    // A broken tests.toml is an error that fails the run, with its location.
    std::fs::write(
        dir.join("tests.toml"),
        "[[cases]]\nname = \"x\"\nuser = \"nobody\"\n",
    )
    .unwrap();
    let o = warden(&["test", &path]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("tests.toml:3:1: field `cases[0].user`: no [users.nobody]"),
        "{out}"
    );
    assert_eq!(out.lines().last(), Some("0 passed, 1 failed"));
}

#[test]
fn compile_prints_the_policy_json_the_plugin_accepts() {
    let o = warden(&["compile", "--compact", "policies/enterprise/bundle.toml"]);
    assert!(o.status.success());
    let policy: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(policy["timezone"], "Europe/Berlin");
    assert_eq!(policy["servers"][0]["name"], "corp");
    let config = serde_json::json!({ "mode": "open", "policy": policy }).to_string();
    let compiled = mcp_warden_core::config::Config::from_json(config.as_bytes()).unwrap();
    assert_eq!(compiled.policy.map(|p| p.len()), Some(12));
    let pretty = warden(&["compile", "policies/minimal/bundle.toml"]);
    assert!(pretty.status.success());
    assert!(stdout(&pretty).starts_with("{\n"));
}

#[test]
fn usage_and_help() {
    for cmd in ["check", "test", "compile", "pin"] {
        let o = warden(&[cmd, "--help"]);
        assert!(o.status.success());
        assert!(stdout(&o).starts_with(&format!("warden {cmd}")), "{cmd}");
    }
    assert!(warden(&["--help"]).status.success());
    assert_eq!(warden(&[]).status.code(), Some(2));
    assert_eq!(warden(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(warden(&["check"]).status.code(), Some(2));
    assert_eq!(warden(&["pin"]).status.code(), Some(2));
    assert_eq!(
        warden(&["compile", "a.toml", "b.toml"]).status.code(),
        Some(2)
    );
}
