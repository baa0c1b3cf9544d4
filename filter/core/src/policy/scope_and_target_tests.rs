//! Decision tests: the effective scope of a delegated call, path globs on resource URIs, and
//! `completion/complete` decided against what it completes.

use super::tests::{identity, policy, MONDAY_10};
use super::*;
use crate::identity::claims::DelegationStep;
use serde_json::json;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `policy()`'s alice (user scopes `mcp:tools HR_read`) through an agent whose token holds
/// `agent_scopes` and whose delegation chain (if any) ends with a step granting `step_scopes`.
fn alice_via_agent(agent_scopes: &[&str], step_scopes: Option<&[&str]>) -> Identity {
    let mut id = identity(
        "alice",
        &["it-admins"],
        &["mcp:tools", "HR_read"],
        &["email:draft"],
        "assistant",
    );
    if let Some(agent) = id.agent.as_mut() {
        agent.token.scopes = strings(agent_scopes);
        agent.delegation_chain = step_scopes
            .map(|s| {
                vec![DelegationStep {
                    sub: "alice".into(),
                    aud: "agent:a".into(),
                    scopes: strings(s),
                    ..DelegationStep::default()
                }]
            })
            .unwrap_or_default();
    }
    id
}

fn decide_tool(p: &Policy, id: &Identity, tool: &str, purpose: Purpose) -> Decision {
    let target = Target::Tool(tool.into());
    let facts = Facts {
        identity: Some(id),
        server: "corp",
        method: "tools/call",
        target: &target,
        arguments: None,
        live_hash: None,
        now: MONDAY_10,
        purpose,
    };
    let d = p.decide(&facts);
    assert_eq!(
        p.allows(&facts),
        d.allowed(),
        "allows() and decide() differ"
    );
    d
}

#[test]
fn scopes_are_those_the_delegation_grants() {
    let p = policy();
    let hr = |id: &Identity| {
        let call = decide_tool(&p, id, "hr_lookup", Purpose::Call);
        let listed = decide_tool(&p, id, "hr_lookup", Purpose::Listing);
        assert_eq!(call.allowed(), listed.allowed(), "call and list disagree");
        call.rule
    };
    // The agent holds what the user delegated: HR_read counts.
    let all = ["mcp:tools", "HR_read"];
    assert_eq!(hr(&alice_via_agent(&all, Some(&all))), "hr.read");
    assert_eq!(hr(&alice_via_agent(&all, None)), "hr.read");
    // The user has HR_read, the agent was delegated only mcp:tools: not this call's scope.
    assert_eq!(
        hr(&alice_via_agent(&["mcp:tools"], Some(&["mcp:tools"]))),
        "default.deny"
    );
    assert_eq!(hr(&alice_via_agent(&["mcp:tools"], None)), "default.deny");
    assert_eq!(hr(&alice_via_agent(&[], None)), "default.deny");
    // The agent token claims more than its last delegation step (chain rules turned off).
    assert_eq!(
        hr(&alice_via_agent(&all, Some(&["mcp:tools"]))),
        "default.deny"
    );
    // Nor can an agent add a scope the user lacks.
    let mut bob_via_rich_agent = alice_via_agent(&all, Some(&all));
    bob_via_rich_agent.user.token.scopes = strings(&["mcp:tools"]);
    assert_eq!(hr(&bob_via_rich_agent), "default.deny");
    // Without an agent, the user's own scopes.
    let mut alone = alice_via_agent(&all, None);
    alone.agent = None;
    assert_eq!(hr(&alone), "hr.read");
    alone.user.token.scopes = strings(&["mcp:tools"]);
    assert_eq!(hr(&alone), "default.deny");
    // Identity::grants_scope itself.
    let id = alice_via_agent(&["mcp:tools", "HR_read"], Some(&["HR_read"]));
    assert!(id.grants_scope("HR_read"));
    assert!(!id.grants_scope("mcp:tools"));
    assert!(!id.grants_scope("email:draft"));
}

fn resource_policy() -> Policy {
    let raw = json!({
        "rules": [
            {"id": "lists", "effect": "allow", "methods": ["completion/complete", "prompts/list"]},
            {"id": "shared", "effect": "allow", "resources": ["file:///srv/shared/*"]},
            {"id": "reports", "effect": "allow", "resources": ["file:///srv/reports/**"]},
            {"id": "secret", "effect": "deny", "resources": ["file:///srv/reports/secret/**"]},
            {"id": "demo", "effect": "allow", "resources": ["demo://**"]},
            {"id": "greet", "effect": "allow", "prompts": ["greet"]},
            {"id": "no-complete-internal", "effect": "deny", "methods": ["completion/complete"],
             "prompts": ["internal_*"]},
            {"id": "internal", "effect": "allow", "prompts": ["internal_*"]}
        ]
    });
    let raw: config::RawPolicy = serde_json::from_value(raw).unwrap();
    raw.compile("policy").unwrap()
}

fn decide(p: &Policy, method: &str, target: Target) -> Decision {
    let facts = Facts {
        identity: None,
        server: "",
        method,
        target: &target,
        arguments: None,
        live_hash: None,
        now: MONDAY_10,
        purpose: Purpose::Call,
    };
    let d = p.decide(&facts);
    assert_eq!(
        p.allows(&facts),
        d.allowed(),
        "allows() and decide() differ"
    );
    d
}

#[test]
fn resource_globs_do_not_cross_slashes_unless_doubled() {
    let p = resource_policy();
    let read = |uri: &str| decide(&p, "resources/read", Target::Resource(uri.into())).rule;
    assert_eq!(read("file:///srv/shared/a.txt"), "shared");
    assert_eq!(read("file:///srv/shared/sub/a.txt"), "default.deny");
    assert_eq!(read("file:///srv/shared/../../etc/passwd"), "default.deny");
    assert_eq!(read("file:///srv/reports/2026/q1.pdf"), "reports");
    assert_eq!(read("file:///srv/reports/secret/plan.txt"), "secret");
    assert_eq!(read("file:///srv/reports/secret/deeper/plan.txt"), "secret");
    assert_eq!(read("demo://items/42"), "demo");
    assert_eq!(read("file:///etc/passwd"), "default.deny");
}

#[test]
fn completions_are_decided_against_what_they_complete() {
    let p = resource_policy();
    let complete = |target: Target| {
        decide(
            &p,
            "completion/complete",
            Target::Completion(Box::new(target)),
        )
    };
    let prompt = |n: &str| Target::Prompt(n.into());
    let resource = |u: &str| Target::Resource(u.into());
    // What the caller may use, it may complete (the rule of the use decides).
    assert_eq!(complete(prompt("greet")).rule, "greet");
    assert_eq!(complete(resource("demo://items/{id}")).rule, "demo");
    assert_eq!(
        complete(resource("file:///srv/shared/{name}")).rule,
        "shared"
    );
    // What it may not use, it may not complete either.
    let d = complete(prompt("admin_only"));
    assert_eq!((d.allowed(), d.rule.as_str()), (false, "default.deny"));
    assert_eq!(
        d.reason,
        "completion/complete completes what the caller may not use: no rule allows prompts/get of prompt `admin_only`"
    );
    assert_eq!(
        complete(resource("file:///srv/shared/{+path}/x")).rule,
        "default.deny"
    );
    assert_eq!(
        complete(resource("file:///srv/reports/secret/{name}")).rule,
        "secret"
    );
    assert_eq!(complete(resource("file:///{path}")).rule, "default.deny");
    // A rule about completion/complete itself still applies: internal prompts may be used
    // but not completed.
    assert_eq!(
        decide(&p, "prompts/get", prompt("internal_x")).rule,
        "internal"
    );
    let d = complete(prompt("internal_x"));
    assert_eq!(
        (d.allowed(), d.rule.as_str()),
        (false, "no-complete-internal")
    );
    assert_eq!(
        d.reason,
        "completion/complete of prompt `internal_x` is denied: "
    );
    // Without an allow rule for completion/complete, nothing is completed.
    let raw: config::RawPolicy = serde_json::from_value(json!({
        "rules": [{"id": "greet", "effect": "allow", "prompts": ["greet"]}]
    }))
    .unwrap();
    let strict = raw.compile("policy").unwrap();
    let d = decide(
        &strict,
        "completion/complete",
        Target::Completion(Box::new(prompt("greet"))),
    );
    assert_eq!(d.rule, "default.deny");
    assert_eq!(
        d.reason,
        "no rule allows completion/complete of prompt `greet`"
    );
}
