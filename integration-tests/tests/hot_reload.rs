//! Policy changes without a restart: `envoy/hot-reload.yaml` gets the mcp-warden filter through
//! Envoy's extension config discovery (ECDS) from a watched file, rendered by
//! `scripts/render-warden-config.sh` from `envoy/demo.yaml`'s plugin configuration and a policy
//! bundle. While a background load of valid calls runs, the bundle changes (`add` denied for
//! everyone) and is rendered again: within a bounded wait `add` is refused and no longer listed,
//! and no request of the load fails. An invalid bundle is refused by the script (the file stays
//! as it was); an invalid plugin configuration written anyway, or one without a policy that
//! does not say `"mode": "open"`, is rejected by Envoy and the previous policy stays in force; a valid one after it is applied again. The script refuses an
//! open configuration unless asked (`--allow-open`, `WARDEN_ALLOW_OPEN=1`), and the examples'
//! secrets unless accepted (`--allow-example-secrets`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{
    demo_plugin_config, list_names, open_session, refusal_problems, render_warden_config,
    render_warden_config_env, repo_root, rpc_call, rpc_message, tool_call, wait_for, wasm_path,
    Envoy, EnvoyConfig, Idp, McpServer, TestCtx, Tokens, ALICE_ALL_SCOPES,
};
use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a new configuration may take to be in force.
const APPLY_WITHIN: Duration = Duration::from_secs(10);
/// The background load: one valid call every 50 ms (20 per second).
const LOAD_EVERY: Duration = Duration::from_millis(50);

fn render(args: &[&str]) {
    let out = render_warden_config(args);
    assert!(
        out.success,
        "render-warden-config.sh {args:?} failed:\n{}",
        out.stderr
    );
}

/// What a call of `add` gets: allowed (`None`) or the rule that refused it.
fn add_outcome(
    port: u16,
    session: &str,
    tokens: &Tokens,
    id: u64,
) -> Result<Option<String>, String> {
    let r = tool_call(session, id, "add", json!({"a": 1, "b": 2}))
        .tokens(tokens)
        .send(port)
        .map_err(|e| e.to_string())?;
    if r.status == 200 && rpc_message(&r).is_some_and(|m| m["result"]["content"][0]["text"] == "3")
    {
        return Ok(None);
    }
    if refusal_problems(&r, 403, -32003, "policy_denied", "*", &json!(id)).is_empty() {
        let rule = r.json().unwrap()["error"]["data"]["rule"]
            .as_str()
            .unwrap_or("")
            .to_string();
        return Ok(Some(rule));
    }
    Err(format!("unexpected answer to add:\n{r}"))
}

fn listed_tools(port: u16, session: &str, tokens: &Tokens) -> Vec<String> {
    let r = rpc_call(session, 9, "tools/list", json!({}))
        .tokens(tokens)
        .send(port)
        .expect("tools/list");
    rpc_message(&r)
        .and_then(|m| list_names(&m, "tools"))
        .unwrap_or_else(|| panic!("tools/list:\n{r}"))
}

/// One request of the background load.
#[derive(Debug)]
struct Sample {
    at: Duration,
    outcome: Result<(), String>,
}

fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

#[test]
fn policy_change_applies_without_restart_or_dropped_requests() {
    let ctx = TestCtx::new("hot_reload");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "corp");
    let dir = ctx.path("ecds");
    fs::create_dir_all(&dir).unwrap();
    let ecds = dir.join("mcp_warden.yaml");
    let (ecds_s, wasm_s) = (
        ecds.display().to_string(),
        wasm_path().display().to_string(),
    );
    // The demo template holds the examples' secrets (the demo STS client secret, the demo
    // attestation key): accepted explicitly, as for the shipped demo files.
    let out = [
        "--out",
        ecds_s.as_str(),
        "--wasm",
        wasm_s.as_str(),
        "--allow-example-secrets",
    ];
    render(&out);

    let config = EnvoyConfig::demo(server.port, idp.port)
        .template("envoy/hot-reload.yaml")
        .replace("envoy/ecds", &dir.display().to_string());
    let mut envoy = Envoy::start(&ctx, "envoy", &config);
    let port = envoy.listener_port;
    let tokens = idp.tokens("alice", "agent-claude", ALICE_ALL_SCOPES);
    let session = open_session(port, &tokens.headers()).unwrap_or_else(|e| panic!("{e}"));
    let mut problems = Vec::new();

    assert_eq!(
        add_outcome(port, &session, &tokens, 2),
        Ok(None),
        "add before the change"
    );
    assert!(listed_tools(port, &session, &tokens).contains(&"add".to_string()));

    // --- background load: echo, which every version of the policy allows
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let load = {
        let (stop, samples, session, tokens) = (
            stop.clone(),
            samples.clone(),
            session.clone(),
            tokens.clone(),
        );
        thread::spawn(move || {
            let started = Instant::now();
            let mut id = 10_000u64;
            // Bounded even if the test never says stop.
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(90) {
                let tick = Instant::now();
                id += 1;
                let outcome = match tool_call(&session, id, "echo", json!({"text": "load"}))
                    .tokens(&tokens)
                    .timeout(Duration::from_secs(10))
                    .send(port)
                {
                    Ok(r)
                        if r.status == 200
                            && rpc_message(&r).is_some_and(|m| {
                                m["result"]["content"][0]["text"] == "echo: load"
                            }) =>
                    {
                        Ok(())
                    }
                    Ok(r) => Err(format!("{r}")),
                    Err(e) => Err(format!("connection: {e}")),
                };
                samples.lock().unwrap().push(Sample {
                    at: started.elapsed(),
                    outcome,
                });
                thread::sleep(LOAD_EVERY.saturating_sub(tick.elapsed()));
            }
        })
    };
    thread::sleep(Duration::from_secs(1));

    // --- 1. the bundle changes: nobody may call add any more
    let bundle = fs::read_to_string(repo_root().join("policies/enterprise/bundle.toml")).unwrap();
    let add_off = ctx.path("bundle-add-off.toml");
    write(
        &add_off,
        &format!(
            "{bundle}\n# Added by the hot-reload test.\n[[rules]]\nid = \"test.add.off\"\n\
             description = \"add is switched off\"\neffect = \"deny\"\ntools = [\"add\"]\n"
        ),
    );
    let add_off_s = add_off.display().to_string();
    let changed_at = Instant::now();
    render(&[&out[..], &["--bundle", add_off_s.as_str()]].concat());
    let mut id = 100;
    let applied = wait_for(APPLY_WITHIN, Duration::from_millis(100), || {
        id += 1;
        match add_outcome(port, &session, &tokens, id) {
            Ok(Some(rule)) if rule == "test.add.off" => Some(changed_at.elapsed()),
            _ => None,
        }
    });
    match applied {
        Some(t) => eprintln!("the new policy was in force after {t:?}"),
        None => problems.push(format!(
            "add was still allowed {APPLY_WITHIN:?} after the new bundle was rendered"
        )),
    }
    if listed_tools(port, &session, &tokens).contains(&"add".to_string()) {
        problems.push("add is still listed under the new policy".into());
    }

    // --- 2. an invalid bundle: the script refuses it and leaves the file alone
    let before = fs::read(&ecds).unwrap();
    let broken = ctx.path("bundle-broken.toml");
    write(
        &broken,
        &format!(
            "{bundle}\n[[rules]]\nid = \"test.broken\"\neffect = \"maybe\"\ntools = [\"add\"]\n"
        ),
    );
    let broken_s = broken.display().to_string();
    let r = render_warden_config(&[&out[..], &["--bundle", broken_s.as_str()]].concat());
    if r.success || r.code != Some(1) {
        problems.push(format!(
            "the script accepted an invalid bundle (exit {:?}):\n{}",
            r.code, r.stderr
        ));
    }
    if fs::read(&ecds).unwrap() != before {
        problems.push("the script changed the ECDS file for an invalid bundle".into());
    }

    // --- 3. an invalid plugin configuration written anyway: Envoy rejects it, the previous
    //        version stays in force. Also a partial one (no policy, no "mode": "open"): an
    //        ECDS update cannot switch the filter to forwarding everything either.
    let mut bogus: Value = demo_plugin_config();
    bogus["bogus"] = json!(1);
    let mut partial: Value = demo_plugin_config();
    for section in ["policy", "token_exchange", "routing"] {
        partial.as_object_mut().unwrap().remove(section);
    }
    for (id, what, bad, field) in [
        (200, "unknown field", bogus, "field `bogus`"),
        (201, "no policy", partial, "field `policy`"),
    ] {
        let rejected_before = count_lines(&envoy.proc.log(), "Filesystem config update rejected");
        let named_before = count_lines(&envoy.proc.log(), field);
        let bad_path = ctx.path("plugin-invalid.json");
        write(&bad_path, &bad.to_string());
        let bad_s = bad_path.display().to_string();
        render(&[&out[..], &["--plugin-json", bad_s.as_str(), "--no-check"]].concat());
        let rejected = wait_for(APPLY_WITHIN, Duration::from_millis(100), || {
            (count_lines(&envoy.proc.log(), "Filesystem config update rejected") > rejected_before)
                .then_some(())
        });
        if rejected.is_none() {
            problems.push(format!(
                "{what}: Envoy did not log `Filesystem config update rejected` within {APPLY_WITHIN:?}"
            ));
        }
        if count_lines(&envoy.proc.log(), field) <= named_before {
            problems.push(format!("{what}: no log line names {field}"));
        }
        let stats =
            envoy.admin_get("/stats?filter=extension_config_discovery.http_filter.mcp_warden");
        if !stats
            .lines()
            .any(|l| l.contains("update_rejected") && !l.trim_end().ends_with(": 0"))
        {
            problems.push(format!(
                "{what}: no update_rejected in Envoy's ECDS stats:\n{stats}"
            ));
        }
        // Give a wrongly applied version time to show, then check the previous one is in force
        // (without a policy, add would be forwarded).
        thread::sleep(Duration::from_secs(1));
        match add_outcome(port, &session, &tokens, id) {
            Ok(Some(rule)) if rule == "test.add.off" => {}
            other => problems.push(format!(
                "{what}: after the rejected update add got {other:?} (expected refused by test.add.off)"
            )),
        }
    }

    // --- 4. the original bundle again: applied (a rejected version does not block later ones)
    let restored_at = Instant::now();
    render(&out);
    let mut id = 300;
    let restored = wait_for(APPLY_WITHIN, Duration::from_millis(100), || {
        id += 1;
        (add_outcome(port, &session, &tokens, id) == Ok(None)).then(|| restored_at.elapsed())
    });
    match restored {
        Some(t) => eprintln!("the original policy was back after {t:?}"),
        None => problems.push(format!(
            "add still refused {APPLY_WITHIN:?} after the original bundle was rendered again"
        )),
    }
    thread::sleep(Duration::from_millis(500));

    // --- the load: every request answered, none failed
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();
    let samples = samples.lock().unwrap();
    let failed: Vec<String> = samples
        .iter()
        .filter_map(|s| {
            s.outcome
                .as_ref()
                .err()
                .map(|e| format!("at {:?}: {e}", s.at))
        })
        .collect();
    eprintln!(
        "background load: {} requests, {} failed",
        samples.len(),
        failed.len()
    );
    if samples.len() < 20 {
        problems.push(format!(
            "the background load sent only {} requests",
            samples.len()
        ));
    }
    if !failed.is_empty() {
        problems.push(format!(
            "{} of {} background requests failed during the reloads:\n{}",
            failed.len(),
            samples.len(),
            failed
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    if envoy.proc.try_wait().is_some() {
        problems.push("Envoy exited".into());
    }
    assert!(problems.is_empty(), "hot reload:\n{}", problems.join("\n"));
}

/// `scripts/render-warden-config.sh` writes an open configuration only when asked, checked or
/// not (`--no-check`), and the demo template (the examples' secrets) only with
/// `--allow-example-secrets`; a refused render leaves the output file alone.
#[test]
fn render_refuses_open_mode_and_example_secrets_unless_asked() {
    let ctx = TestCtx::new("hot_reload_render_refusals");
    let out = ctx.path("mcp_warden.yaml");
    let out_s = out.display().to_string();
    let open = ctx.path("open.json");
    write(&open, r#"{"mode": "open", "max_body_bytes": 4096}"#);
    let open_s = open.display().to_string();
    let mut problems = Vec::new();
    let mut expect = |what: &str, args: &[&str], env: &[(&str, &str)], ok: bool, says: &str| {
        let _ = fs::remove_file(&out);
        let r = render_warden_config_env(&[&["--out", out_s.as_str()][..], args].concat(), env);
        let written = out.exists();
        if r.success != ok || written != ok || (!ok && r.code != Some(1)) {
            problems.push(format!(
                "{what}: exit {:?}, file written: {written}; expected {}:\n{}",
                r.code,
                if ok {
                    "written"
                } else {
                    "refused (1), nothing written"
                },
                r.stderr
            ));
        } else if !r.stderr.contains(says) {
            problems.push(format!(
                "{what}: stderr does not say `{says}`:\n{}",
                r.stderr
            ));
        }
    };
    let plugin = ["--plugin-json", open_s.as_str()];
    expect("open", &plugin, &[], false, "--allow-open");
    expect(
        "open, --no-check",
        &[&plugin[..], &["--no-check"]].concat(),
        &[],
        false,
        "WARDEN_ALLOW_OPEN=1",
    );
    expect(
        "open, WARDEN_ALLOW_OPEN=0",
        &plugin,
        &[("WARDEN_ALLOW_OPEN", "0")],
        false,
        "--allow-open",
    );
    expect(
        "open, --allow-open",
        &[&plugin[..], &["--allow-open"]].concat(),
        &[],
        true,
        "OPEN MODE: no identity section",
    );
    expect(
        "open, WARDEN_ALLOW_OPEN=1",
        &plugin,
        &[("WARDEN_ALLOW_OPEN", "1")],
        true,
        "OPEN MODE: no policy section",
    );
    // Not open, but empty: refused by the check as the filter would (enforce needs both).
    let empty = ctx.path("empty.json");
    write(&empty, "{}");
    let empty_s = empty.display().to_string();
    expect(
        "empty",
        &["--plugin-json", empty_s.as_str(), "--allow-open"],
        &[],
        false,
        "field `identity`",
    );
    // The demo template: its demo attestation key is flagged (its STS client secret comes from
    // the environment, so the file holds only the variable's name).
    expect(
        "demo template",
        &[],
        &[],
        false,
        "field `identity.agent.attestation.keys[0].pem`",
    );
    expect(
        "demo template, --allow-example-secrets",
        &["--allow-example-secrets"],
        &[],
        true,
        "warning: field `identity.agent.attestation.keys[0].pem`",
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
