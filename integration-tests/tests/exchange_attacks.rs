//! A malicious token service through a real Envoy: `stack/sts/evil-sts.mjs` sits in the `sts`
//! cluster in front of the demo IdP and tampers with its answers as each scenario of
//! `stack/sts/attacks.json` says (wrong token type, `N_A`, wider scope, the caller's own token
//! handed back, CR LF in the token, absurd lifetimes, duplicate keys, non-JSON, odd statuses, a
//! real token whose own claims grant more scope or name another audience…).
//! The demo MCP server runs with `--verify-tokens`.
//!
//! For each scenario the client gets the specific refusal (502 / -32004
//! `token_service_invalid_answer`, `data.rule` = `exchange.answer.<check>`; a 4xx refusal stays
//! 403 `token_exchange_refused`) and nothing reaches the server — or, for the answers that are
//! acceptable, the call is served with an exchanged token. The caller's own tokens never reach
//! the server, and no scenario forges a line in Envoy's log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::evil_sts::{attack_scenarios, EvilSts};
use mcp_warden_integration_tests::{
    demo_plugin_config, jwt_payload, open_session, refusal_problems, rpc_message, tool_call, Envoy,
    EnvoyConfig, Idp, McpServer, ServerOptions, TestCtx, Tokens,
};
use serde_json::{json, Value};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const AGENT: &str = "agent:agent-claude";
const SCOPES: &str = "mcp:tools files:delete sql:read";

/// What a scenario must lead to.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// Served, with an exchanged token.
    Served,
    /// 502 `token_service_invalid_answer`, rule `exchange.answer.<check>`.
    Invalid(&'static str),
    /// 403 `token_exchange_refused` (the token service said no).
    Refused,
}

fn want(scenario: &str) -> Option<Want> {
    use Want::*;
    Some(match scenario {
        "honest" | "honest_slow" | "extra_members" | "long_expires_in" | "minted_honest" => Served,
        "minted_wider_scope" => Invalid("token_scope"),
        "minted_other_audience" => Invalid("token_audience"),
        "id_token" | "id_token_slow" | "refresh_token_type" => Invalid("issued_token_type"),
        "token_type_n_a" | "token_type_dpop" => Invalid("token_type"),
        "no_issued_token_type" | "no_token_type" | "no_access_token" => Invalid("missing_field"),
        "wider_scope" | "scope_not_a_string" => Invalid("scope"),
        "echo_subject" | "echo_subject_padded" | "echo_subject_std_b64" => Invalid("subject_token"),
        "echo_actor" => Invalid("actor_token"),
        "header_injection" | "token_with_space" | "non_ascii_token" | "empty_token" => {
            Invalid("token_syntax")
        }
        "negative_expires_in" | "zero_expires_in" | "string_expires_in" => Invalid("expires_in"),
        "duplicate_access_token" => Invalid("duplicate_key"),
        "not_json" => Invalid("not_json"),
        "array" => Invalid("not_an_object"),
        "oversized" => Invalid("too_large"),
        "status_201" | "redirect" => Invalid("status"),
        "error_with_crlf" => Refused,
        _ => return None,
    })
}

struct Stack {
    idp: Idp,
    server: McpServer,
    sts: EvilSts,
    envoy: Envoy,
}

impl Stack {
    fn start(test: &str) -> Stack {
        Stack::start_with(test, None)
    }

    /// With another plugin configuration.
    fn start_with(test: &str, plugin: Option<Value>) -> Stack {
        let ctx = TestCtx::new(test);
        let idp = Idp::start(&ctx);
        let server = McpServer::start_with(
            &ctx,
            "corp",
            &ServerOptions {
                verify_tokens_with_idp: Some(idp.port),
                ..Default::default()
            },
        );
        let sts = EvilSts::start(&ctx, idp.port);
        let mut config = EnvoyConfig::demo(server.port, idp.port).cluster_port("sts", sts.port);
        if let Some(p) = plugin {
            config = config.plugin_config(&p.to_string());
        }
        let envoy = Envoy::start(&ctx, "envoy", &config);
        Stack {
            idp,
            server,
            sts,
            envoy,
        }
    }
}

/// Problems with what the server saw: any request without an exchanged token (actor, no
/// caller token), any token it refused.
fn server_problems(server: &McpServer, callers: &[Tokens]) -> Vec<String> {
    let own: Vec<String> = callers
        .iter()
        .flat_map(|t| {
            [
                jwt_payload(&t.user)["jti"].clone(),
                jwt_payload(&t.agent)["jti"].clone(),
            ]
        })
        .filter_map(|j| j.as_str().map(str::to_string))
        .collect();
    let mut problems = Vec::new();
    for r in server.mcp_requests() {
        let jti = r["token_jti"].as_str().unwrap_or_default();
        if r["token_act_sub"] != AGENT
            || own.iter().any(|j| j == jti)
            || r["saw_agent_token"] != false
        {
            problems.push(format!(
                "a request reached the server without an exchanged token: {r}"
            ));
        }
    }
    let refused = server.refused_tokens();
    if !refused.is_empty() {
        problems.push(format!(
            "the server refused tokens it got through Envoy: {refused:?}"
        ));
    }
    problems
}

/// Problems with Envoy's log: a line that does not start with Envoy's own prefix (a forged
/// line), or a caller token in it.
fn log_problems(envoy: &Envoy, callers: &[Tokens]) -> Vec<String> {
    let log = envoy.proc.log();
    let mut problems: Vec<String> = log
        .lines()
        .filter(|l| l.contains("mcp-warden") && !l.starts_with('['))
        .map(|l| format!("a forged line in Envoy's log: {l}"))
        .collect();
    for t in callers {
        for token in [&t.user, &t.agent] {
            let signature = token.rsplit('.').next().unwrap_or_default();
            if log.contains(token.as_str()) || log.contains(signature) {
                problems.push("a caller's token appears in Envoy's log".into());
            }
        }
    }
    problems
}

#[test]
fn bad_token_service_answers_are_refused_and_nothing_reaches_the_server() {
    let stack = Stack::start("exchange_attacks");
    let port = stack.envoy.listener_port;
    let mut problems = Vec::new();
    let t0 = stack.idp.tokens("alice", "agent-claude", SCOPES);
    let session = open_session(port, &t0.headers()).unwrap_or_else(|e| panic!("{e}"));
    let mut callers = vec![t0];

    let scenarios = attack_scenarios();
    assert!(
        scenarios.len() >= 25,
        "attacks.json has {} scenarios",
        scenarios.len()
    );
    for (i, s) in scenarios.iter().enumerate() {
        let name = s["name"].as_str().unwrap();
        let Some(want) = want(name) else {
            problems.push(format!("{name}: no expectation in this test"));
            continue;
        };
        // Fresh caller tokens: a new cache key, so the token service is asked every time.
        let t = stack.idp.tokens("alice", "agent-claude", SCOPES);
        stack.sts.scenario(name);
        let id = 100 + i as u64;
        let (reached_before, asked_before) =
            (stack.server.mcp_requests().len(), stack.sts.requests());
        let resp = tool_call(&session, id, "whoami", json!({}))
            .tokens(&t)
            .timeout(Duration::from_secs(10))
            .send(port);
        let reached = stack.server.mcp_requests().len() - reached_before;
        let asked = stack.sts.requests() - asked_before;
        callers.push(t);
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{name}: no response: {e}"));
                continue;
            }
        };
        if asked != 1 {
            problems.push(format!(
                "{name}: the token service was asked {asked} times (expected 1)"
            ));
        }
        match want {
            Want::Served => {
                let ok = resp.status == 200
                    && rpc_message(&resp).is_some_and(|m| m.get("result").is_some());
                if !ok || reached != 1 {
                    problems.push(format!(
                        "{name}: an acceptable answer was not served ({reached} requests reached the server):\n{resp}"
                    ));
                }
            }
            Want::Invalid(check) => {
                let p = refusal_problems(
                    &resp,
                    502,
                    -32004,
                    "token_service_invalid_answer",
                    &format!("exchange.answer.{check}"),
                    &json!(id),
                );
                if !p.is_empty() {
                    problems.push(format!("{name}: {}\n{resp}", p.join("; ")));
                }
            }
            Want::Refused => {
                let p = refusal_problems(
                    &resp,
                    403,
                    -32003,
                    "token_exchange_refused",
                    "exchange.refused",
                    &json!(id),
                );
                if !p.is_empty() {
                    problems.push(format!("{name}: {}\n{resp}", p.join("; ")));
                }
            }
        }
        if !matches!(want, Want::Served) && reached != 0 {
            problems.push(format!(
                "{name}: {reached} request(s) reached the server after a bad token service answer"
            ));
        }
    }
    problems.extend(server_problems(&stack.server, &callers));
    problems.extend(log_problems(&stack.envoy, &callers));
    assert!(
        problems.is_empty(),
        "malicious token service:\n{}",
        problems.join("\n")
    );
}

/// Requests waiting for one exchange in flight share its refusal: each gets it, none is
/// forwarded, the token service is asked once.
#[test]
fn requests_waiting_for_a_bad_answer_are_all_refused() {
    let stack = Stack::start("exchange_attacks_waiters");
    let port = stack.envoy.listener_port;
    let t0 = stack.idp.tokens("alice", "agent-claude", SCOPES);
    let session = open_session(port, &t0.headers()).unwrap_or_else(|e| panic!("{e}"));
    let t = stack.idp.tokens("alice", "agent-claude", SCOPES);
    stack.sts.scenario("id_token_slow");
    let (reached_before, asked_before) = (stack.server.mcp_requests().len(), stack.sts.requests());
    const N: u64 = 12;
    let barrier = Arc::new(Barrier::new(N as usize));
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let (barrier, session, t) = (barrier.clone(), session.clone(), t.clone());
            std::thread::spawn(move || {
                let req = tool_call(&session, 500 + i, "whoami", json!({}))
                    .tokens(&t)
                    .timeout(Duration::from_secs(15));
                barrier.wait();
                req.send(port)
            })
        })
        .collect();
    let mut problems = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        match h.join().unwrap() {
            Ok(r) => {
                let p = refusal_problems(
                    &r,
                    502,
                    -32004,
                    "token_service_invalid_answer",
                    "exchange.answer.issued_token_type",
                    &json!(500 + i as u64),
                );
                if !p.is_empty() {
                    problems.push(format!("#{i}: {}\n{r}", p.join("; ")));
                }
            }
            Err(e) => problems.push(format!("#{i}: no response: {e}")),
        }
    }
    let asked = stack.sts.requests() - asked_before;
    if asked != 1 {
        problems.push(format!(
            "{N} concurrent calls asked the token service {asked} times"
        ));
    }
    let reached = stack.server.mcp_requests().len() - reached_before;
    if reached != 0 {
        problems.push(format!("{reached} request(s) reached the server"));
    }
    problems.extend(server_problems(&stack.server, &[t0, t]));
    assert!(problems.is_empty(), "waiters:\n{}", problems.join("\n"));
}

#[test]
fn every_scenario_of_the_script_is_expected_here() {
    let names: Vec<Value> = attack_scenarios()
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    let missing: Vec<&Value> = names
        .iter()
        .filter(|n| want(n.as_str().unwrap_or_default()).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "scenarios without an expectation: {missing:?}"
    );
}

/// A token service that claims a 30-year lifetime for a token asked for 6 s: the gateway keeps
/// it no longer than it asked for (here until 6 s - the 1 s refresh margin), then exchanges again.
#[test]
fn a_claimed_lifetime_longer_than_requested_does_not_keep_the_token_cached() {
    let mut plugin = demo_plugin_config();
    plugin["token_exchange"]["refresh_margin_seconds"] = json!(1);
    plugin["token_exchange"]["servers"]["corp"]["lifetime_seconds"] = json!(6);
    let stack = Stack::start_with("exchange_attacks_lifetime", Some(plugin));
    let port = stack.envoy.listener_port;
    let t0 = stack.idp.tokens("alice", "agent-claude", SCOPES);
    let session = open_session(port, &t0.headers()).unwrap_or_else(|e| panic!("{e}"));
    let t = stack.idp.tokens("alice", "agent-claude", SCOPES);
    stack.sts.scenario("long_expires_in");
    let mut problems = Vec::new();
    let call = |id: u64| {
        let before = stack.sts.requests();
        let r = tool_call(&session, id, "whoami", json!({}))
            .tokens(&t)
            .send(port)
            .unwrap_or_else(|e| panic!("call {id}: {e}"));
        (r, stack.sts.requests() - before)
    };
    let started = Instant::now();
    let checks = [(1, 1, "first call"), (2, 0, "right after (cached)")];
    for (id, want, what) in checks {
        let (r, asked) = call(id);
        if r.status != 200 || asked != want {
            problems.push(format!("{what}: {asked} exchanges (expected {want}):\n{r}"));
        }
    }
    // Past `lifetime - margin` of the requested lifetime: a new exchange.
    std::thread::sleep(Duration::from_millis(5_600).saturating_sub(started.elapsed()));
    let (r, asked) = call(3);
    if r.status != 200 || asked != 1 {
        problems.push(format!(
            "after the requested lifetime: {asked} exchanges (expected 1: the 30-year claim kept the token):\n{r}"
        ));
    }
    // Every request reached the server with an unexpired exchanged token.
    problems.extend(server_problems(&stack.server, &[t0, t]));
    assert!(
        problems.is_empty(),
        "claimed lifetime:\n{}",
        problems.join("\n")
    );
}
