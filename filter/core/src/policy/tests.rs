//! Decision tests: the seed scenarios, deny-beats-allow, default deny, listing, the index.

use super::*;
use crate::identity::claims::{AgentClaims, TokenClaims, UserClaims};
use serde_json::json;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

// 2026-01-05 (Monday) 10:00 Europe/Berlin, and the Saturday after.
pub(super) const MONDAY_10: u64 = 1_767_603_600;
const SATURDAY: u64 = 1_768_039_200;

pub(super) fn policy() -> Policy {
    let raw = json!({
        "timezone": "Europe/Berlin",
        "servers": [{"name": "corp", "path": "/mcp", "tools": [
            {"name": "delete_file", "status": "approved", "approved_for": ["it-admins"]},
            {"name": "execute_sql", "status": "approved", "approved_for": ["*"]},
            {"name": "query_table", "status": "approved", "approved_for": ["*"]},
            {"name": "hr_lookup", "status": "approved", "approved_for": ["*"]},
            {"name": "send_mail", "status": "approved", "approved_for": ["*"]},
            {"name": "beta_tool", "status": "registered"},
            {"name": "old_tool", "status": "retired", "approved_for": ["*"]}
        ]}],
        "rules": [
            {"id": "base.discovery", "effect": "allow", "description": "discovery and lifecycle",
             "methods": ["initialize", "ping", "notifications/*", "tools/list", "prompts/list", "resources/list", "resources/templates/list"]},
            {"id": "files.delete.it", "effect": "allow", "description": "IT admins delete files", "tools": ["delete_file"], "groups": ["it-admins"]},
            {"id": "sql.select.office-hours", "effect": "allow", "description": "SELECT only, weekdays 09-17",
             "tools": ["execute_sql"], "arguments": [{"path": "/query", "regex": "(?i)^\\s*select\\b[^;]*$"}],
             "when": {"weekdays": ["mon","tue","wed","thu","fri"], "hours": "09:00-17:00"}},
            {"id": "tables.customers", "effect": "allow", "description": "customers table", "tools": ["query_table"],
             "arguments": [{"path": "/table", "one_of": ["customers"]}]},
            {"id": "tables.financials.deny", "effect": "deny", "description": "never financials", "tools": ["query_table"],
             "arguments": [{"path": "/table", "equals": "financials"}]},
            {"id": "hr.read", "effect": "allow", "description": "HR database with HR_read", "tools": ["hr_lookup"], "scopes": ["HR_read"]},
            {"id": "mail.draft", "effect": "allow", "description": "mail for drafting agents", "tools": ["send_mail"], "agent_capabilities": ["email:draft"]},
            {"id": "deny.low-trust", "effect": "deny", "description": "no low-trust agents for tools", "methods": ["tools/call"],
             "agent_types": ["autonomous"]}
        ]
    });
    let raw: config::RawPolicy = serde_json::from_value(raw).unwrap();
    raw.compile("policy").unwrap()
}

pub(super) fn identity(
    sub: &str,
    groups: &[&str],
    scopes: &[&str],
    caps: &[&str],
    agent_type: &str,
) -> Identity {
    Identity {
        user: UserClaims {
            token: TokenClaims {
                sub: sub.into(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                ..TokenClaims::default()
            },
            groups: groups.iter().map(|s| s.to_string()).collect(),
            ..UserClaims::default()
        },
        agent: Some(AgentClaims {
            // Everything the user has is delegated (scope_and_target_tests narrows it).
            token: TokenClaims {
                sub: "agent:a".into(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                ..TokenClaims::default()
            },
            agent_type: Some(agent_type.into()),
            capabilities: caps.iter().map(|s| s.to_string()).collect(),
            trust_level: Some("high".into()),
            ..AgentClaims::default()
        }),
    }
}

fn alice() -> Identity {
    identity(
        "alice",
        &["it-admins"],
        &["mcp:tools", "HR_read"],
        &["email:draft"],
        "assistant",
    )
}
fn bob() -> Identity {
    identity(
        "bob",
        &["finance"],
        &["mcp:tools"],
        &["tools:call"],
        "assistant",
    )
}

fn call(
    p: &Policy,
    id: &Identity,
    tool: &str,
    args: serde_json::Value,
    now: u64,
) -> (bool, String) {
    let target = Target::Tool(tool.into());
    let facts = Facts {
        identity: Some(id),
        server: "corp",
        method: "tools/call",
        target: &target,
        arguments: Some(&args),
        live_hash: None,
        now,
        purpose: Purpose::Call,
    };
    let d = p.decide(&facts);
    assert_eq!(
        p.allows(&facts),
        d.allowed(),
        "allows() and decide() differ"
    );
    (d.allowed(), d.rule)
}

fn listed(p: &Policy, id: &Identity, tool: &str, now: u64) -> bool {
    let target = Target::Tool(tool.into());
    let facts = Facts {
        identity: Some(id),
        server: "corp",
        method: "tools/call",
        target: &target,
        arguments: None,
        live_hash: None,
        now,
        purpose: Purpose::Listing,
    };
    let allowed = p.decide(&facts).allowed();
    assert_eq!(p.allows(&facts), allowed, "allows() and decide() differ");
    allowed
}

#[test]
fn seed_scenarios() {
    let p = policy();
    let (a, b) = (alice(), bob());
    let none = json!({});
    assert_eq!(
        call(&p, &a, "delete_file", none.clone(), MONDAY_10),
        (true, "files.delete.it".into())
    );
    assert_eq!(
        call(&p, &b, "delete_file", none.clone(), MONDAY_10),
        (false, "registry.not_approved_for_group".into())
    );
    assert_eq!(
        call(
            &p,
            &b,
            "execute_sql",
            json!({"query": "SELECT * FROM customers"}),
            MONDAY_10
        ),
        (true, "sql.select.office-hours".into())
    );
    assert_eq!(
        call(
            &p,
            &b,
            "execute_sql",
            json!({"query": "DELETE FROM customers"}),
            MONDAY_10
        ),
        (false, "default.deny".into())
    );
    assert_eq!(
        call(
            &p,
            &b,
            "execute_sql",
            json!({"query": "select 1; drop table x"}),
            MONDAY_10
        ),
        (false, "default.deny".into())
    );
    assert_eq!(
        call(
            &p,
            &b,
            "execute_sql",
            json!({"query": "SELECT 1"}),
            SATURDAY
        ),
        (false, "default.deny".into())
    );
    assert_eq!(
        call(
            &p,
            &b,
            "query_table",
            json!({"table": "customers"}),
            MONDAY_10
        ),
        (true, "tables.customers".into())
    );
    assert_eq!(
        call(
            &p,
            &b,
            "query_table",
            json!({"table": "financials"}),
            MONDAY_10
        ),
        (false, "tables.financials.deny".into())
    );
    assert_eq!(
        call(&p, &b, "query_table", json!({}), MONDAY_10),
        (false, "default.deny".into())
    );
    assert_eq!(
        call(&p, &a, "hr_lookup", none.clone(), MONDAY_10),
        (true, "hr.read".into())
    );
    assert_eq!(
        call(&p, &b, "hr_lookup", none.clone(), MONDAY_10),
        (false, "default.deny".into())
    );
    assert_eq!(
        call(&p, &a, "send_mail", none.clone(), MONDAY_10),
        (true, "mail.draft".into())
    );
    assert_eq!(
        call(&p, &b, "send_mail", none.clone(), MONDAY_10),
        (false, "default.deny".into())
    );
}

#[test]
fn deny_beats_allow_and_registry_comes_first() {
    let p = policy();
    let robot = identity("alice", &["it-admins"], &["mcp:tools"], &[], "autonomous");
    assert_eq!(
        call(&p, &robot, "delete_file", json!({}), MONDAY_10),
        (false, "deny.low-trust".into())
    );
    let a = alice();
    assert_eq!(
        call(&p, &a, "beta_tool", json!({}), MONDAY_10),
        (false, "registry.not_approved".into())
    );
    assert_eq!(
        call(&p, &a, "old_tool", json!({}), MONDAY_10),
        (false, "registry.retired".into())
    );
    assert_eq!(
        call(&p, &a, "unknown", json!({}), MONDAY_10),
        (false, "registry.unknown_tool".into())
    );
}

#[test]
fn listing_uses_the_same_decision() {
    let p = policy();
    let (a, b) = (alice(), bob());
    let visible = |id: &Identity, now| {
        [
            "delete_file",
            "execute_sql",
            "query_table",
            "hr_lookup",
            "send_mail",
            "beta_tool",
            "old_tool",
        ]
        .into_iter()
        .filter(|t| listed(&p, id, t, now))
        .collect::<Vec<_>>()
    };
    assert_eq!(
        visible(&a, MONDAY_10),
        vec![
            "delete_file",
            "execute_sql",
            "query_table",
            "hr_lookup",
            "send_mail"
        ]
    );
    assert_eq!(visible(&b, MONDAY_10), vec!["execute_sql", "query_table"]);
    assert_eq!(visible(&b, SATURDAY), vec!["query_table"]);
}

#[test]
fn methods_without_an_allow_rule_are_denied() {
    let p = policy();
    let a = alice();
    let decide = |method: &str, target: Target| {
        p.decide(&Facts {
            identity: Some(&a),
            server: "corp",
            method,
            target: &target,
            arguments: None,
            live_hash: None,
            now: MONDAY_10,
            purpose: Purpose::Call,
        })
        .rule
    };
    assert_eq!(decide("tools/list", Target::None), "base.discovery");
    assert_eq!(
        decide("notifications/initialized", Target::None),
        "base.discovery"
    );
    assert_eq!(
        decide(
            "resources/read",
            Target::Resource("file:///etc/passwd".into())
        ),
        "default.deny"
    );
    assert_eq!(decide("logging/setLevel", Target::None), "default.deny");
}

#[test]
fn no_identity_never_satisfies_identity_conditions() {
    let p = policy();
    let target = Target::Tool("hr_lookup".into());
    let d = p.decide(&Facts {
        identity: None,
        server: "corp",
        method: "tools/call",
        target: &target,
        arguments: None,
        live_hash: None,
        now: MONDAY_10,
        purpose: Purpose::Call,
    });
    assert!(!d.allowed());
}

#[test]
fn pinned_hash_mismatch_is_refused() {
    let raw = json!({"servers": [{"name": "s", "path": "/mcp", "tools": [
        {"name": "t", "status": "approved", "approved_for": ["*"], "hash": format!("sha256:{}", "a".repeat(64))}]}],
        "rules": [{"id": "all", "effect": "allow", "tools": ["*"]}]});
    let p = serde_json::from_value::<config::RawPolicy>(raw)
        .unwrap()
        .compile("policy")
        .unwrap();
    let target = Target::Tool("t".into());
    let a = alice();
    let facts = |h| Facts {
        identity: Some(&a),
        server: "s",
        method: "tools/call",
        target: &target,
        arguments: None,
        live_hash: h,
        now: MONDAY_10,
        purpose: Purpose::Call,
    };
    let pinned = format!("sha256:{}", "a".repeat(64));
    assert!(p.decide(&facts(Some(&pinned))).allowed());
    assert_eq!(
        p.decide(&facts(Some("sha256:bb"))).rule,
        "registry.definition_changed"
    );
    assert!(p.allows(&facts(Some(&pinned))) && !p.allows(&facts(Some("sha256:bb"))));
    assert_eq!(
        p.decide(&facts(Some("sha256:bb"))).reason,
        format!("tool `t` changed since approval (pinned {pinned}, live sha256:bb)")
    );
}

#[test]
fn config_errors_name_the_field() {
    let field = |raw: serde_json::Value| {
        serde_json::from_value::<config::RawPolicy>(raw)
            .map_err(|e| e.to_string())
            .and_then(|r| r.compile("policy").map(|_| ()).map_err(|e| e.field))
            .unwrap_err()
    };
    assert_eq!(
        field(json!({"rules": [{"id": "a", "effect": "permit"}]})),
        "policy.rules[0].effect"
    );
    assert_eq!(
        field(json!({"rules": [{"id": "a", "effect": "allow"}, {"id": "a", "effect": "deny"}]})),
        "policy.rules[1].id"
    );
    assert_eq!(
        field(
            json!({"rules": [{"id": "a", "effect": "allow", "tools": ["x"], "arguments": [{"path": "/q", "regex": "("}]}]})
        ),
        "policy.rules[0].arguments[0].regex"
    );
    assert_eq!(
        field(
            json!({"rules": [{"id": "a", "effect": "allow", "tools": ["x"], "arguments": [{"path": "/q"}]}]})
        ),
        "policy.rules[0].arguments[0]"
    );
    assert_eq!(
        field(
            json!({"rules": [{"id": "a", "effect": "allow", "tools": ["x"], "arguments": [{"path": "/q", "prefix": "a", "equals": 1}]}]})
        ),
        "policy.rules[0].arguments[0]"
    );
    assert_eq!(
        field(
            json!({"rules": [{"id": "a", "effect": "allow", "arguments": [{"path": "/q", "prefix": "a"}]}]})
        ),
        "policy.rules[0].arguments"
    );
    assert_eq!(
        field(json!({"rules": [{"id": "a", "effect": "allow", "when": {"hours": "9-5"}}]})),
        "policy.rules[0].when.hours"
    );
    assert_eq!(
        field(json!({"timezone": "Nowhere/Land"})),
        "policy.timezone"
    );
    assert_eq!(
        field(json!({"rules": [{"id": "a", "effect": "allow", "servers": ["ghost"]}]})),
        "policy.rules[0].servers[0]"
    );
    assert_eq!(
        field(
            json!({"servers": [{"name": "s", "path": "/m", "tools": [{"name": "t", "status": "approved"}]}]})
        ),
        "policy.servers[0].tools[0].approved_for"
    );
    assert_eq!(
        field(
            json!({"servers": [{"name": "s", "path": "/m", "tools": [{"name": "t", "status": "ok"}]}]})
        ),
        "policy.servers[0].tools[0].status"
    );
    assert_eq!(
        field(
            json!({"servers": [{"name": "s", "path": "/m", "tools": [{"name": "t", "status": "approved", "approved_for": ["*"], "hash": "md5:x"}]}]})
        ),
        "policy.servers[0].tools[0].hash"
    );
    assert_eq!(
        field(json!({"servers": [{"name": "s", "path": "m"}]})),
        "policy.servers[0].path"
    );
}

fn scaled(n: usize) -> Policy {
    let mut rules = vec![json!({"id": "target", "effect": "allow", "tools": ["target"]})];
    for i in 0..n {
        rules.push(json!({"id": format!("r{i}"), "effect": if i % 2 == 0 { "allow" } else { "deny" }, "tools": [format!("tool_{i}")], "groups": ["g"]}));
    }
    serde_json::from_value::<config::RawPolicy>(json!({"rules": rules}))
        .unwrap()
        .compile("policy")
        .unwrap()
}

#[test]
fn rules_for_other_tools_are_not_evaluated() {
    // The index means a decision over 10,000 rules for other tools looks at one rule.
    let p = scaled(10_000);
    assert_eq!(p.len(), 10_001);
    assert_eq!(p.by_tool.count("target"), 1);
    assert!(p.general_rules.is_empty());
    let a = alice();
    assert_eq!(call_on(&p, &a, "target"), "target");
    assert_eq!(call_on(&p, &a, "tool_1"), "r1");
}

fn call_on(p: &Policy, id: &Identity, tool: &str) -> String {
    let target = Target::Tool(tool.into());
    let mut a = id.clone();
    a.user.groups = vec!["g".into()];
    p.decide(&Facts {
        identity: Some(&a),
        server: "",
        method: "tools/call",
        target: &target,
        arguments: None,
        live_hash: None,
        now: MONDAY_10,
        purpose: Purpose::Call,
    })
    .rule
}

#[test]
fn wildcard_rules_keep_deny_over_allow_and_policy_order() {
    // Indexed by literal prefix and matched from the index: the verdict is the same as looking
    // at every rule in order (the first matching deny, else the first matching allow).
    let p = serde_json::from_value::<config::RawPolicy>(json!({"rules": [
        {"id": "allow.get", "effect": "allow", "tools": ["get_*"]},
        {"id": "deny.weather", "effect": "deny", "tools": ["*_weather"]},
        {"id": "allow.exact", "effect": "allow", "tools": ["get_weather", "list_*"]},
        {"id": "deny.delete", "effect": "deny", "tools": ["delete_*"], "groups": ["admins"]},
        {"id": "deny.one", "effect": "deny", "tools": ["?"]},
        {"id": "allow.all", "effect": "allow", "tools": ["*"]}
    ]}))
    .unwrap()
    .compile("policy")
    .unwrap();
    let a = alice();
    for (tool, rule) in [
        ("get_weather", "deny.weather"),
        ("get_forecast", "allow.get"),
        ("list_dir", "allow.exact"),
        ("delete_repo", "allow.all"),
        ("x", "deny.one"),
        ("é", "allow.all"),
        ("", "allow.all"),
    ] {
        assert_eq!(call_on(&p, &a, tool), rule, "{tool}");
    }
}
