//! Session-aware routing through a real Envoy (`envoy/routing.yaml`) with mcp-warden, the demo
//! IdP and nine MCP server instances: corp stable ×3 and corp canary ×3 (the stateful SDK demo
//! server: `whoami` reports the instance, its real session id and a per-session counter) and
//! hr ×3 (the stateless 2026-07-28 server).
//!
//! One stack, phases in order (each phase's problems are collected; the test fails at the end
//! with all of them):
//! 1. 200 sessions (8 users, 8 client threads): initialize, initialized, 3× whoami, GET stream —
//!    every request on the creating instance (counter 1, 2, 3 without gaps), sessions spread
//!    over the instances (so it is the sealed id, not the fallback, that brings them back), and
//!    the client never sees the server's session id.
//! 2. Refusals: another user's or agent's tokens on a valid session → 403 `session_forbidden`;
//!    a bit-flipped, made-up, foreign-key or plain id → 404 `session_not_found`; none of them
//!    reaches an instance. Client-sent routing headers are ignored.
//! 3. A second Envoy replica (same config) continues a quarter of the sessions.
//! 4. Envoy restarted on the same listener port: every session continues.
//! 5. Canary split: 2,000 users, one session each: canary share 10 % ± 2 points, every
//!    follow-up on the session's instance, a user keeps the variant; group `beta` always canary;
//!    `tool_variants` pins a sessionless `delete_file` call to stable.
//! 6. The stateless path: 2026-07-28 requests without a session on /mcp/hr, routed by the
//!    ring_hash fallback on `x-mcp-affinity-key` (sticky per user).
//! 7. One instance killed: its sessions get 404 `session_not_found` within 5 s; the users
//!    initialize again and go on.
//! 8. DELETE of every session; then the instances' own logs prove where every request went.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::routing_support::{
    callers_at, cpu_seconds, delete_session, get_stream, initialize, initialized, par_map,
    parse_whoami, post, refusal, session_post, start_envoy_at, wait_health, whoami, whoami_body,
    whoami_raw, RoutingStack, STATELESS_PROTOCOL,
};
use mcp_warden_integration_tests::{
    free_port, rpc_message, wait_for, HttpResponse, TestCtx, Tokens,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

const THREADS: usize = 8;
const SESSIONS: usize = 200;
const SESSION_USERS: usize = 8;
/// Users 0 and 1 of the session users are in group `beta`.
const BETA_SESSION_USERS: usize = 2;
const SPLIT_USERS: usize = 2000;
const SPLIT_BETA_USERS: usize = 50;

/// One session of phase 1 and what it has done so far.
#[derive(Debug, Clone)]
struct Sess {
    user: usize,
    sealed: String,
    real: String,
    instance: String,
    counter: u64,
    posts: usize,
    gets: usize,
    deletes: usize,
    lost: bool,
}

struct Report {
    problems: Vec<String>,
    started: Instant,
    phase: Instant,
}

impl Report {
    fn new() -> Self {
        Report {
            problems: Vec::new(),
            started: Instant::now(),
            phase: Instant::now(),
        }
    }
    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.problems.push(msg());
        }
    }
    /// Adds up to 5 of `errors` (and how many there were).
    fn errors(&mut self, what: &str, errors: &[String]) {
        if errors.is_empty() {
            return;
        }
        let shown: Vec<&String> = errors.iter().take(5).collect();
        self.problems.push(format!(
            "{what}: {} failures, e.g.\n  {shown:#?}",
            errors.len()
        ));
    }
    fn done(&mut self, phase: &str, envoy_pid: u32) {
        eprintln!(
            "[routing] {phase}: {:.1} s (total {:.1} s, {} problems so far; Envoy CPU so far {:.1} s)",
            self.phase.elapsed().as_secs_f64(),
            self.started.elapsed().as_secs_f64(),
            self.problems.len(),
            cpu_seconds(envoy_pid)
        );
        self.phase = Instant::now();
    }
}

fn variant_of(instance: &str) -> &str {
    if instance.starts_with("corp-canary") {
        "canary"
    } else if instance.starts_with("corp-stable") {
        "stable"
    } else {
        "other"
    }
}

fn show(resp: &HttpResponse) -> String {
    format!("HTTP {} {}", resp.status, resp.body_str())
}

/// Phase 1, one session.
fn open_one(port: u16, k: usize, tokens: &[Tokens]) -> Result<Sess, String> {
    let user = k % tokens.len();
    let t = &tokens[user];
    let init = initialize(port, "/mcp", t)?;
    let sealed = init.session.ok_or("initialize: no Mcp-Session-Id")?;
    if !sealed.starts_with("mw1.k1.") {
        return Err(format!("session id {sealed:?} is not sealed (mw1.k1.…)"));
    }
    initialized(port, "/mcp", t, &sealed)?;
    let mut real: Option<String> = None;
    for i in 1..=3u64 {
        let w = whoami(port, "/mcp", t, &sealed)?;
        if w.name != init.instance || w.counter != i {
            return Err(format!(
                "session {k} created on {}: whoami #{i} answered by {} with counter {}",
                init.instance, w.name, w.counter
            ));
        }
        let s = w.session.ok_or("whoami: no sessionId")?;
        if real.as_ref().is_some_and(|r| *r != s) {
            return Err(format!("session {k}: server session id changed to {s}"));
        }
        real = Some(s);
    }
    let real = real.unwrap_or_default();
    if real == sealed || sealed.contains(&real) {
        return Err(format!(
            "session {k}: the client sees the server's session id {real}"
        ));
    }
    get_stream(port, "/mcp", t, &sealed)?;
    Ok(Sess {
        user,
        sealed,
        real,
        instance: init.instance,
        counter: 3,
        posts: 4,
        gets: 1,
        deletes: 0,
        lost: false,
    })
}

/// One whoami on every session in `idx` via `port`; checks instance and counter.
fn continue_sessions(
    port: u16,
    sessions: &mut [Sess],
    idx: &[usize],
    tokens: &[Tokens],
    label: &str,
) -> Vec<String> {
    let results = par_map(idx, THREADS, |&i| {
        let s = &sessions[i];
        whoami(port, "/mcp", &tokens[s.user], &s.sealed)
    });
    let mut errors = Vec::new();
    for (&i, r) in idx.iter().zip(results) {
        let s = &mut sessions[i];
        s.posts += 1;
        match r {
            Ok(w) if w.name == s.instance && w.counter == s.counter + 1 => s.counter += 1,
            Ok(w) => errors.push(format!(
                "{label}: session {i} (on {}, counter {}) answered by {} with counter {}",
                s.instance, s.counter, w.name, w.counter
            )),
            Err(e) => errors.push(format!("{label}: session {i} (on {}): {e}", s.instance)),
        }
    }
    errors
}

fn total_mcp_requests(stack: &RoutingStack) -> usize {
    stack.instances.iter().map(|i| i.mcp_requests().len()).sum()
}

#[test]
fn session_routing_canary_split_and_failover() {
    let mut rep = Report::new();
    let ctx = TestCtx::new("routing");
    let mut stack = RoutingStack::start(&ctx);
    eprintln!(
        "[routing] IdP and instances up after {:.1} s",
        rep.started.elapsed().as_secs_f64()
    );
    let config = stack.envoy_config();
    let (listener, admin) = (free_port(), free_port());
    // Both replicas at once: loading the wasm (V8 compiles it) takes seconds.
    let (mut envoy, replica) = std::thread::scope(|s| {
        let second = s.spawn(|| start_envoy_at(&ctx, "envoy-2", &config, free_port(), free_port()));
        let first = start_envoy_at(&ctx, "envoy-1", &config, listener, admin);
        (first, second.join().expect("start envoy-2"))
    });
    let port = envoy.listener_port;

    let session_users: Vec<(String, Vec<String>)> = (0..SESSION_USERS)
        .map(|u| {
            let groups = if u < BETA_SESSION_USERS {
                vec!["beta".to_string()]
            } else {
                vec![]
            };
            (format!("rt-s{u}"), groups)
        })
        .collect();
    eprintln!(
        "[routing] Envoys up after {:.1} s",
        rep.started.elapsed().as_secs_f64()
    );
    let tokens = stack.callers(&session_users, THREADS);
    let mallory = stack.caller("rt-mallory", &[]);
    // The 2,050 callers of phase 5 are minted meanwhile.
    let split_users: Vec<(String, Vec<String>)> = (0..SPLIT_USERS)
        .map(|u| (format!("rt-u{u:04}"), vec![]))
        .chain((0..SPLIT_BETA_USERS).map(|u| (format!("rt-b{u:02}"), vec!["beta".to_string()])))
        .collect();
    let idp_port = stack.idp.port;
    let split_minter = std::thread::spawn(move || {
        let started = Instant::now();
        let tokens = callers_at(idp_port, &split_users, 2);
        (tokens, started.elapsed())
    });
    rep.done(
        "setup (IdP, 9 instances, 2 Envoys, callers)",
        envoy.proc.pid(),
    );

    // ---- 1. 200 sessions -------------------------------------------------------------------
    let ks: Vec<usize> = (0..SESSIONS).collect();
    let opened = par_map(&ks, THREADS, |&k| open_one(port, k, &tokens));
    let errors: Vec<String> = opened.iter().filter_map(|r| r.clone().err()).collect();
    rep.errors("phase 1: sessions", &errors);
    let mut sessions: Vec<Sess> = opened.into_iter().filter_map(Result::ok).collect();
    rep.check(sessions.len() == SESSIONS, || {
        format!(
            "phase 1: only {} of {SESSIONS} sessions opened",
            sessions.len()
        )
    });
    let mut per_instance: BTreeMap<String, usize> = BTreeMap::new();
    let mut user_variant: HashMap<usize, String> = HashMap::new();
    for s in &sessions {
        *per_instance.entry(s.instance.clone()).or_default() += 1;
        let v = variant_of(&s.instance).to_string();
        if s.user < BETA_SESSION_USERS {
            rep.check(v == "canary", || {
                format!(
                    "phase 1: beta user {} got a session on {}",
                    s.user, s.instance
                )
            });
        }
        let first = user_variant.entry(s.user).or_insert_with(|| v.clone());
        rep.check(*first == v, || {
            format!(
                "phase 1: user {} has sessions on {first} and on {v}",
                s.user
            )
        });
        let creator = stack.instance(&s.instance);
        rep.check(creator.opened_sessions().contains(&s.real), || {
            format!("phase 1: {} has no session {}", s.instance, s.real)
        });
    }
    eprintln!(
        "[routing] sessions per instance: {per_instance:?}; variant per user: {user_variant:?}"
    );
    for name in [
        "corp-stable-1",
        "corp-stable-2",
        "corp-stable-3",
        "corp-canary-1",
        "corp-canary-2",
        "corp-canary-3",
    ] {
        rep.check(per_instance.get(name).copied().unwrap_or(0) > 0, || {
            format!("phase 1: no session on {name}: new sessions are not spread ({per_instance:?})")
        });
    }
    rep.done("phase 1: 200 sessions", envoy.proc.pid());

    // ---- 2. refusals -------------------------------------------------------------------------
    if let Some(victim) = sessions.iter().position(|s| s.user == 2) {
        let s = sessions[victim].clone();
        let t = &tokens[s.user];
        let other_agent = Tokens {
            user: t.user.clone(),
            agent: stack.idp.mint_token(json!({
                "kind": "agent", "base": {"username": "rt-s2", "agent": "agent-other", "scope": "mcp:tools"},
                "set": {"agent_trust_level": "high", "agent_capabilities": ["tools:call"]},
            })),
        };
        // The other agent is a valid caller: it may open its own session.
        match initialize(port, "/mcp", &other_agent) {
            Ok(_) => {}
            Err(e) => rep
                .problems
                .push(format!("phase 2: agent-other cannot initialize: {e}")),
        }
        let mut flipped: Vec<u8> = s.sealed.clone().into_bytes();
        let mid = flipped.len() / 2;
        flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        let body = s.sealed.rsplit('.').next().unwrap_or_default().to_string();
        let made_up = format!("mw1.k1.{}", "A".repeat(body.len()));
        let cases: Vec<(&str, &Tokens, String, &str, u16, &str)> = vec![
            (
                "another user's tokens",
                &mallory,
                s.sealed.clone(),
                "/mcp",
                403,
                "session_forbidden",
            ),
            (
                "the same user with another agent",
                &other_agent,
                s.sealed.clone(),
                "/mcp",
                403,
                "session_forbidden",
            ),
            (
                "a corp session on the hr path",
                t,
                s.sealed.clone(),
                "/mcp/hr",
                403,
                "session_forbidden",
            ),
            (
                "a bit-flipped session id",
                t,
                flipped,
                "/mcp",
                404,
                "session_not_found",
            ),
            (
                "a made-up sealed id",
                t,
                made_up,
                "/mcp",
                404,
                "session_not_found",
            ),
            (
                "an unknown key id",
                t,
                format!("mw1.k9.{body}"),
                "/mcp",
                404,
                "session_not_found",
            ),
            (
                "the server's real session id",
                t,
                s.real.clone(),
                "/mcp",
                404,
                "session_not_found",
            ),
            (
                "a random UUID",
                t,
                "0b6f6c3e-5d1a-4c53-9a7e-1f0d2b3c4d5e".into(),
                "/mcp",
                404,
                "session_not_found",
            ),
        ];
        let before = total_mcp_requests(&stack);
        for (what, who, sid, path, status, reason) in &cases {
            match session_post(path, who, sid, &whoami_body(9)).send(port) {
                Ok(resp) => {
                    let (st, code, got) = refusal(&resp);
                    let code_ok = *status != 404 || code == Some(-32001);
                    rep.check(
                        st == *status && got.as_deref() == Some(*reason) && code_ok,
                        || {
                            format!(
                                "phase 2: {what}: expected HTTP {status} {reason}, got {}",
                                show(&resp)
                            )
                        },
                    );
                }
                Err(e) => rep.problems.push(format!("phase 2: {what}: {e}")),
            }
        }
        let after = total_mcp_requests(&stack);
        rep.check(after == before, || {
            format!(
                "phase 2: {} refused requests reached an instance",
                after - before
            )
        });

        // Client-sent routing headers are replaced: the session stays where it is.
        let elsewhere = stack
            .instances
            .iter()
            .find(|i| i.name != s.instance && i.name.starts_with("corp"))
            .map(|i| i.address())
            .unwrap_or_default();
        let resp = session_post("/mcp", t, &s.sealed, &whoami_body(10))
            .header("x-mcp-upstream-host", &elsewhere)
            .header("x-mcp-server", "hr")
            .header("x-mcp-variant", "canary")
            .header("x-mcp-affinity-key", "forged")
            .send(port);
        sessions[victim].posts += 1;
        match resp
            .map_err(|e| e.to_string())
            .and_then(|r| parse_whoami(&r))
        {
            Ok(w) if w.name == s.instance && w.counter == s.counter + 1 => {
                sessions[victim].counter += 1
            }
            other => rep.problems.push(format!(
                "phase 2: forged routing headers moved session on {} (counter {}): {other:?}",
                s.instance, s.counter
            )),
        }
        let own = user_variant.get(&s.user).cloned().unwrap_or_default();
        let forged_init = post("/mcp", t, &json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name":"x","version":"1"}}}))
            .header("x-mcp-variant", if own == "canary" { "stable" } else { "canary" })
            .header("x-mcp-upstream-host", &elsewhere)
            .send(port);
        match forged_init {
            Ok(r) if r.status == 200 => {
                let name = rpc_message(&r)
                    .and_then(|m| {
                        m["result"]["serverInfo"]["name"]
                            .as_str()
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                rep.check(variant_of(&name) == own, || {
                    format!(
                        "phase 2: a forged x-mcp-variant moved user {} from {own} to {name}",
                        s.user
                    )
                });
            }
            other => rep.problems.push(format!(
                "phase 2: initialize with forged headers: {other:?}"
            )),
        }
    } else {
        rep.problems.push("phase 2: no session of user 2".into());
    }
    rep.done("phase 2: refusals", envoy.proc.pid());

    // ---- 3. a second Envoy replica -------------------------------------------------------------
    let quarter: Vec<usize> = (0..sessions.len()).filter(|i| i % 4 == 0).collect();
    let errors = continue_sessions(
        replica.listener_port,
        &mut sessions,
        &quarter,
        &tokens,
        "replica",
    );
    rep.errors("phase 3: sessions via the second replica", &errors);
    rep.done("phase 3: replica", envoy.proc.pid());

    // ---- 4. Envoy restarted on the same port ---------------------------------------------------
    envoy.proc.stop();
    drop(envoy);
    let restarted = Instant::now();
    envoy = start_envoy_at(&ctx, "envoy-1-restarted", &config, listener, admin);
    eprintln!(
        "[routing] Envoy restarted in {:.1} s",
        restarted.elapsed().as_secs_f64()
    );
    let all: Vec<usize> = (0..sessions.len()).collect();
    let errors = continue_sessions(
        envoy.listener_port,
        &mut sessions,
        &all,
        &tokens,
        "after restart",
    );
    rep.errors("phase 4: sessions after the Envoy restart", &errors);
    rep.done("phase 4: restart", envoy.proc.pid());

    // ---- 5. canary split -------------------------------------------------------------------------
    let (split_tokens, mint_time) = split_minter.join().expect("minting the split callers");
    eprintln!(
        "[routing] minted {} tokens in {:.1} s (in the background)",
        2 * split_tokens.len(),
        mint_time.as_secs_f64()
    );
    let idx: Vec<usize> = (0..split_tokens.len()).collect();
    let results = par_map(&idx, THREADS, |&u| -> Result<(String, String), String> {
        let t = &split_tokens[u];
        let init = initialize(port, "/mcp", t)?;
        let sealed = init.session.ok_or("no session id")?;
        let w = whoami(port, "/mcp", t, &sealed)?;
        Ok((init.instance, w.name))
    });
    let (mut canary, mut stable, mut moved, mut beta_off) =
        (0usize, 0usize, Vec::new(), Vec::new());
    let mut errors = Vec::new();
    let mut first_variant = Vec::new();
    for (u, r) in results.iter().enumerate() {
        match r {
            Ok((created, follow)) => {
                if created != follow {
                    moved.push(format!(
                        "user {u}: created on {created}, follow-up on {follow}"
                    ));
                }
                let v = variant_of(created);
                first_variant.push(v.to_string());
                if u < SPLIT_USERS {
                    match v {
                        "canary" => canary += 1,
                        "stable" => stable += 1,
                        _ => errors.push(format!("user {u}: landed on {created}")),
                    }
                } else if v != "canary" {
                    beta_off.push(format!("beta user {}: {created}", u - SPLIT_USERS));
                }
            }
            Err(e) => {
                first_variant.push(String::new());
                errors.push(format!("user {u}: {e}"));
            }
        }
    }
    let share = 100.0 * canary as f64 / SPLIT_USERS as f64;
    eprintln!("[routing] split: {canary} canary / {stable} stable = {share:.1} % canary");
    rep.errors("phase 5: split sessions", &errors);
    rep.errors(
        "phase 5: follow-ups that left the session's instance",
        &moved,
    );
    rep.errors("phase 5: beta users not on canary", &beta_off);
    rep.check((8.0..=12.0).contains(&share), || {
        format!(
            "phase 5: canary share {share:.1} % is not 10 % ± 2 points ({canary}/{SPLIT_USERS})"
        )
    });
    // Sticky per user: a second session of the same user has the same variant.
    let again: Vec<usize> = (0..100).collect();
    let second = par_map(&again, THREADS, |&u| {
        initialize(port, "/mcp", &split_tokens[u])
    });
    let flipped: Vec<String> = again
        .iter()
        .zip(second)
        .filter_map(|(&u, r)| match r {
            Ok(i) if variant_of(&i.instance) == first_variant[u] => None,
            Ok(i) => Some(format!(
                "user {u}: {} then {}",
                first_variant[u], i.instance
            )),
            Err(e) => Some(format!("user {u}: {e}")),
        })
        .collect();
    rep.errors(
        "phase 5: a user's second session on another variant",
        &flipped,
    );
    // tool_variants: a sessionless delete_file call of a beta user goes to stable, whoami to canary.
    let beta = &split_tokens[SPLIT_USERS];
    for (tool, want) in [("delete_file", "stable"), ("whoami", "canary")] {
        let count = |stack: &RoutingStack, variant: &str| -> usize {
            stack
                .instances
                .iter()
                .filter(|i| variant_of(&i.name) == variant)
                .flat_map(|i| i.mcp_requests())
                .filter(|r| r["session"].is_null() && r["rpc"] == json!(["tools/call"]))
                .count()
        };
        let before = count(&stack, want);
        let body = json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":tool,"arguments":{"path":"/tmp/x"}}});
        let resp = post("/mcp", beta, &body)
            .header("MCP-Protocol-Version", STATELESS_PROTOCOL)
            .header("Mcp-Method", "tools/call")
            .header("Mcp-Name", tool)
            .send(port);
        let reached = wait_for(Duration::from_secs(2), Duration::from_millis(50), || {
            (count(&stack, want) > before).then_some(())
        });
        rep.check(reached.is_some(), || {
            format!("phase 5: sessionless {tool} of a beta user did not reach {want}: {resp:?}")
        });
    }
    rep.done("phase 5: canary split", envoy.proc.pid());

    // ---- 6. stateless 2026-07-28 requests ------------------------------------------------------
    let mut hr_instances: BTreeMap<String, usize> = BTreeMap::new();
    let stateless_users: Vec<usize> = (0..30).collect();
    let results = par_map(&stateless_users, THREADS, |&u| -> Result<String, String> {
        let mut seen: Option<String> = None;
        for _ in 0..3 {
            let resp = post("/mcp/hr", &split_tokens[u], &whoami_body(3))
                .header("MCP-Protocol-Version", STATELESS_PROTOCOL)
                .header("Mcp-Method", "tools/call")
                .header("Mcp-Name", "whoami")
                .send(port)
                .map_err(|e| e.to_string())?;
            if resp.header("mcp-session-id").is_some() {
                return Err(format!("stateless answer has a session id: {resp}"));
            }
            let w = parse_whoami(&resp)?;
            let raw = &w.raw;
            if !w.name.starts_with("hr-")
                || raw["x-mcp-server"] != json!("hr")
                || !raw["x-mcp-upstream-host"].is_null()
                || !raw["x-mcp-variant"].is_null()
                || raw["x-mcp-affinity-key"].as_str().is_none_or(str::is_empty)
            {
                return Err(format!("unexpected routing of a stateless request: {raw}"));
            }
            if seen.as_ref().is_some_and(|s| *s != w.name) {
                return Err(format!(
                    "user {u}: {} then {}",
                    seen.unwrap_or_default(),
                    w.name
                ));
            }
            seen = Some(w.name);
        }
        Ok(seen.unwrap_or_default())
    });
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(name) => *hr_instances.entry(name).or_default() += 1,
            Err(e) => errors.push(e),
        }
    }
    eprintln!("[routing] stateless users per hr instance: {hr_instances:?}");
    rep.errors("phase 6: stateless requests", &errors);
    rep.check(hr_instances.len() >= 2, || {
        format!("phase 6: 30 users all on one hr instance: {hr_instances:?}")
    });
    rep.done("phase 6: stateless", envoy.proc.pid());

    // ---- 7. an instance dies ---------------------------------------------------------------------
    let victim = ["corp-stable-1", "corp-stable-2", "corp-stable-3"]
        .into_iter()
        .max_by_key(|n| sessions.iter().filter(|s| s.instance == *n).count())
        .unwrap_or("corp-stable-1")
        .to_string();
    let victim_address = stack.instance(&victim).address();
    stack.instance_mut(&victim).proc.stop();
    let lost: Vec<usize> = (0..sessions.len())
        .filter(|&i| sessions[i].instance == victim)
        .collect();
    let mut errors = Vec::new();
    let mut slowest = Duration::ZERO;
    for &i in &lost {
        let s = &mut sessions[i];
        s.lost = true;
        let started = Instant::now();
        let resp = whoami_raw(
            port,
            "/mcp",
            &tokens[s.user],
            &s.sealed,
            Duration::from_secs(5),
        );
        slowest = slowest.max(started.elapsed());
        match resp {
            Ok(r) => {
                let (st, code, reason) = refusal(&r);
                if st != 404
                    || code != Some(-32001)
                    || reason.as_deref() != Some("session_not_found")
                {
                    errors.push(format!("session {i} on dead {victim}: {}", show(&r)));
                }
            }
            Err(e) => errors.push(format!(
                "session {i} on dead {victim}: {e} after {:?}",
                started.elapsed()
            )),
        }
    }
    eprintln!(
        "[routing] {} sessions of {victim} answered in at most {} ms",
        lost.len(),
        slowest.as_millis()
    );
    rep.check(!lost.is_empty(), || {
        format!("phase 7: no session on {victim}")
    });
    rep.errors(&format!("phase 7: sessions of the dead {victim}"), &errors);
    // The users start over: a new session on a live instance.
    rep.check(
        wait_health(
            &envoy,
            "mcp_corp_stable",
            &victim_address,
            false,
            Duration::from_secs(5),
        ),
        || format!("phase 7: Envoy's health check never saw {victim} down"),
    );
    // Also once Envoy knows the instance is down (override_host still picks the address, the
    // connection fails, mcp-warden answers 404; no other instance gets the request: phase 8).
    if let Some(&i) = lost.first() {
        let s = &sessions[i];
        match whoami_raw(
            port,
            "/mcp",
            &tokens[s.user],
            &s.sealed,
            Duration::from_secs(5),
        ) {
            Ok(r) if refusal(&r) == (404, Some(-32001), Some("session_not_found".into())) => {}
            other => rep.problems.push(format!(
                "phase 7: session {i} of {victim} after the health check: {other:?}"
            )),
        }
    }
    let mut users_lost: Vec<usize> = lost.iter().map(|&i| sessions[i].user).collect();
    users_lost.sort_unstable();
    users_lost.dedup();
    for u in users_lost {
        let t = &tokens[u];
        let r = initialize(port, "/mcp", t).and_then(|init| {
            let sealed = init.session.clone().ok_or("no session id")?;
            initialized(port, "/mcp", t, &sealed)?;
            let w = whoami(port, "/mcp", t, &sealed)?;
            Ok((init.instance, w))
        });
        match r {
            Ok((instance, w)) if instance != victim && w.name == instance && w.counter == 1 => {}
            other => rep
                .problems
                .push(format!("phase 7: user {u} could not start over: {other:?}")),
        }
    }
    rep.done("phase 7: instance killed", envoy.proc.pid());

    // ---- 8. DELETE, and the instances' logs ------------------------------------------------------
    let live: Vec<usize> = (0..sessions.len()).filter(|&i| !sessions[i].lost).collect();
    let results = par_map(&live, THREADS, |&i| {
        let s = &sessions[i];
        let t = &tokens[s.user];
        let status = delete_session(port, "/mcp", t, &s.sealed)?;
        let after = whoami_raw(port, "/mcp", t, &s.sealed, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((status, after.status))
    });
    let mut errors = Vec::new();
    for (&i, r) in live.iter().zip(results) {
        let s = &mut sessions[i];
        s.deletes += 1;
        s.posts += 1;
        match r {
            Ok((200, 404)) => {}
            other => errors.push(format!(
                "session {i} on {}: DELETE, then whoami: {other:?}",
                s.instance
            )),
        }
    }
    rep.errors("phase 8: DELETE", &errors);

    // Every request of a session was logged by its creating instance, and only there; no
    // instance ever saw a sealed id.
    let logs: Vec<(String, Vec<Value>)> = stack
        .instances
        .iter()
        .map(|i| (i.name.clone(), i.mcp_requests()))
        .collect();
    let mut by_session: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (name, reqs) in &logs {
        for r in reqs {
            if let Some(sid) = r["session"].as_str() {
                by_session.entry(sid.to_string()).or_default().push((
                    name.clone(),
                    r["method"].as_str().unwrap_or("?").to_string(),
                ));
            }
        }
    }
    let mut errors = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        let seen = by_session.get(&s.real).cloned().unwrap_or_default();
        let elsewhere: Vec<&(String, String)> =
            seen.iter().filter(|(n, _)| *n != s.instance).collect();
        if !elsewhere.is_empty() {
            errors.push(format!(
                "session {i} of {}: also seen by {elsewhere:?}",
                s.instance
            ));
        }
        if s.lost {
            continue;
        }
        let count = |m: &str| seen.iter().filter(|(_, mm)| mm == m).count();
        let (p, g, d) = (count("POST"), count("GET"), count("DELETE"));
        if (p, g, d) != (s.posts, s.gets, s.deletes) {
            errors.push(format!(
                "session {i} on {}: instance logged POST/GET/DELETE {p}/{g}/{d}, client sent {}/{}/{}",
                s.instance, s.posts, s.gets, s.deletes
            ));
        }
    }
    rep.errors("phase 8: instance logs", &errors);
    let sealed_seen: Vec<String> = stack
        .instances
        .iter()
        .filter(|i| i.proc.log().contains("mw1."))
        .map(|i| i.name.clone())
        .collect();
    rep.check(sealed_seen.is_empty(), || {
        format!("phase 8: instances saw sealed session ids: {sealed_seen:?}")
    });
    rep.done("phase 8: DELETE and logs", envoy.proc.pid());
    drop(replica);

    assert!(
        rep.problems.is_empty(),
        "{} problems:\n{}",
        rep.problems.len(),
        rep.problems.join("\n")
    );
}
