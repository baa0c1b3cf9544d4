//! `delegator_sub` names a user at an issuer the agent's issuer may speak for
//! (`delegators_from`, default: the agent's own issuer).

use super::*;
use crate::config::Config;
use crate::identity::claims::JsonClaims;
use crate::identity::payload::WithHeaders;
use serde_json::{json, Value};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: u64 = 1_800_000_000;
const RES: &str = "http://gw/mcp";

/// User issuers `https://corp` (named `corp`) and `https://partner` (`partner`); `agents` as
/// the agent issuers.
fn identity(agents: Value) -> Result<IdentityConfig, crate::config::ConfigError> {
    let cfg = json!({"mode": "open", "identity": {
        "protected_resource": {"resource": RES, "authorization_servers": ["https://corp"]},
        "user": {"issuers": [{"issuer": "https://corp", "name": "corp"},
                             {"issuer": "https://partner", "name": "partner"}]},
        "agent": {"issuers": agents, "delegation": null}
    }});
    Config::from_json(cfg.to_string().as_bytes()).map(|c| c.identity.unwrap())
}

fn user(iss: &str) -> Value {
    json!({"iss": iss, "sub": "alice", "aud": RES, "exp": NOW + 600})
}

fn agent(iss: &str) -> Value {
    json!({"iss": iss, "sub": "agent:claude", "aud": RES, "exp": NOW + 600,
           "agent_type": "assistant", "delegator_sub": "alice"})
}

fn run(cfg: &IdentityConfig, user_iss: &str, agent_iss: &str) -> Result<(), String> {
    let src = JsonClaims(vec![
        ("user".into(), user(user_iss)),
        ("agent".into(), agent(agent_iss)),
    ]);
    let headers = src.payload_headers();
    let src = WithHeaders {
        metadata: &src,
        headers: &headers,
    };
    authenticate(cfg, &src, &mut AttestationCache::default(), NOW)
        .map(|_| ())
        .map_err(|r| format!("{} {}", r.rule.unwrap_or_default(), r.detail))
}

#[test]
fn by_default_an_agent_issuer_speaks_for_its_own_users_only() {
    let cfg = identity(json!(["https://corp", "https://partner"])).unwrap();
    assert_eq!(run(&cfg, "https://corp", "https://corp"), Ok(()));
    assert_eq!(run(&cfg, "https://partner", "https://partner"), Ok(()));
    // The partner's agent says it acts for `alice`: the corp's alice is not its to speak for.
    let refused = run(&cfg, "https://corp", "https://partner").unwrap_err();
    assert!(refused.starts_with("agent.delegator "), "{refused}");
    assert!(
        refused.contains("`https://partner`") && refused.contains("`https://corp`"),
        "{refused}"
    );
    assert!(run(&cfg, "https://partner", "https://corp").is_err());
}

#[test]
fn an_agent_issuer_that_issues_no_user_tokens_speaks_for_nobody_by_default() {
    let cfg = identity(json!(["https://agents"])).unwrap();
    for user in ["https://corp", "https://partner"] {
        let refused = run(&cfg, user, "https://agents").unwrap_err();
        assert!(refused.contains("delegators_from"), "{refused}");
    }
}

#[test]
fn delegators_from_names_user_issuers_by_url_or_name() {
    let cfg = identity(json!([
        {"issuer": "https://agents", "delegators_from": ["corp", "https://partner"]},
        {"issuer": "https://corp", "delegators_from": ["partner"]}
    ]))
    .unwrap();
    assert_eq!(run(&cfg, "https://corp", "https://agents"), Ok(()));
    assert_eq!(run(&cfg, "https://partner", "https://agents"), Ok(()));
    // Given explicitly, the list replaces the default: corp's agents act for partner users only.
    assert_eq!(run(&cfg, "https://partner", "https://corp"), Ok(()));
    assert!(run(&cfg, "https://corp", "https://corp").is_err());
}

#[test]
fn delegators_from_errors_name_the_entry() {
    let field = |agents: Value| identity(agents).unwrap_err();
    let e = field(
        json!(["https://corp", {"issuer": "https://x", "delegators_from": ["corp", "acme"]}]),
    );
    assert_eq!(e.field, "identity.agent.issuers[1].delegators_from[1]");
    assert!(e.message.contains("`acme`"), "{}", e.message);
    let e = field(json!([{"issuer": "https://x", "delegators_from": []}]));
    assert_eq!(e.field, "identity.agent.issuers[0].delegators_from");
    // Only agent issuers speak for others.
    let cfg = json!({"mode": "open", "identity": {
        "protected_resource": {"resource": RES, "authorization_servers": ["https://corp"]},
        "user": {"issuers": [{"issuer": "https://corp", "delegators_from": ["https://corp"]}]}
    }});
    let e = Config::from_json(cfg.to_string().as_bytes()).unwrap_err();
    assert_eq!(e.field, "identity.user.issuers[0].delegators_from");
}
