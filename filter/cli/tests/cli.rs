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
    let args: Vec<&str> = std::iter::once("check")
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
        r#"{"policy":{"rules":[{"id":"a","effect":"allow","min_trust_level":"godlike"}]}}"#,
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
    let config = serde_json::json!({ "policy": policy }).to_string();
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
