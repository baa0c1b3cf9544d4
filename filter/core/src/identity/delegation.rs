//! OIDC-A delegation chain rules.
//!
//! A chain records how authority flowed from the user to this agent. It is valid when:
//! it is not empty and not longer than the limit; every step was recorded by a trusted issuer;
//! steps are in chronological order and none lies in the future; it starts at the user
//! (`chain[0].sub == user sub == delegator_sub`); each step's `aud` is the next step's `sub`;
//! it ends at this agent (`chain[last].aud == agent sub`); scopes only narrow along the chain,
//! and the agent token's own scopes lie within the last step's; every step's constraints hold
//! (`max_duration` since `delegated_at`, `allowed_resources` contains this resource); and no
//! step carries a constraint this gateway does not understand.

use super::claims::{AgentClaims, DelegationStep};

/// Limits for chain validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRules {
    /// Longest chain accepted.
    pub max_length: usize,
    /// Issuers allowed to record steps.
    pub trusted_issuers: Vec<String>,
    /// The resource identifier of this gateway (for `allowed_resources`).
    pub resource: String,
    /// Clock skew tolerated, in seconds.
    pub skew: u64,
}

/// A broken chain: the rule id and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainViolation {
    /// Stable rule id, e.g. `delegation.order`.
    pub rule: &'static str,
    /// Human-readable detail.
    pub detail: String,
}

fn violation(rule: &'static str, detail: impl Into<String>) -> ChainViolation {
    ChainViolation {
        rule,
        detail: detail.into(),
    }
}

/// Checks the agent's delegation chain against the user it acts for.
pub fn check_chain(
    rules: &ChainRules,
    user_sub: &str,
    user_scopes: &[String],
    agent: &AgentClaims,
    now: u64,
) -> Result<(), ChainViolation> {
    let chain = &agent.delegation_chain;
    let Some(first) = chain.first() else {
        return Err(violation(
            "delegation.missing",
            "the agent token has no delegation_chain",
        ));
    };
    if chain.len() > rules.max_length {
        return Err(violation(
            "delegation.length",
            format!(
                "delegation chain has {} steps, more than {}",
                chain.len(),
                rules.max_length
            ),
        ));
    }
    if first.sub != user_sub {
        return Err(violation(
            "delegation.start",
            format!(
                "delegation chain starts at `{}`, not at the user",
                first.sub
            ),
        ));
    }
    let now_f = now as f64;
    let skew = rules.skew as f64;
    let mut previous: Option<&DelegationStep> = None;
    for (i, step) in chain.iter().enumerate() {
        if !rules.trusted_issuers.iter().any(|t| t == &step.iss) {
            return Err(violation(
                "delegation.issuer",
                format!("step {i} was recorded by untrusted issuer `{}`", step.iss),
            ));
        }
        if step.sub.is_empty() || step.aud.is_empty() {
            return Err(violation(
                "delegation.step",
                format!("step {i} lacks sub or aud"),
            ));
        }
        if step.delegated_at <= 0.0 || step.delegated_at > now_f + skew {
            return Err(violation(
                "delegation.order",
                format!("step {i} has delegated_at in the future or missing"),
            ));
        }
        if let Some(unknown) = step.unknown_constraints.first() {
            return Err(violation(
                "delegation.constraints",
                format!("step {i} carries constraint `{unknown}` this gateway cannot enforce"),
            ));
        }
        if let Some(max) = step.max_duration {
            if now_f > step.delegated_at + max + skew {
                return Err(violation(
                    "delegation.max_duration",
                    format!("step {i}: delegation older than its max_duration of {max} s"),
                ));
            }
        }
        if let Some(allowed) = &step.allowed_resources {
            if !allowed.iter().any(|r| r == &rules.resource) {
                return Err(violation(
                    "delegation.allowed_resources",
                    format!("step {i}: this resource is not in allowed_resources"),
                ));
            }
        }
        match previous {
            None => {
                if let Some(extra) = step.scopes.iter().find(|s| !user_scopes.contains(s)) {
                    return Err(violation(
                        "delegation.scope_widened",
                        format!("step {i} delegates scope `{extra}` the user does not have"),
                    ));
                }
            }
            Some(prev) => {
                if prev.aud != step.sub {
                    return Err(violation(
                        "delegation.link",
                        format!(
                            "step {} delegates to `{}` but step {i} is made by `{}`",
                            i - 1,
                            prev.aud,
                            step.sub
                        ),
                    ));
                }
                if step.delegated_at < prev.delegated_at {
                    return Err(violation(
                        "delegation.order",
                        format!("step {i} is older than step {}", i - 1),
                    ));
                }
                if let Some(extra) = step.scopes.iter().find(|s| !prev.scopes.contains(s)) {
                    return Err(violation(
                        "delegation.scope_widened",
                        format!("step {i} widens the delegated scopes with `{extra}`"),
                    ));
                }
            }
        }
        previous = Some(step);
    }
    let last = previous.unwrap_or(first);
    if last.aud != agent.token.sub {
        return Err(violation(
            "delegation.end",
            format!("delegation chain ends at `{}`, not at this agent", last.aud),
        ));
    }
    if let Some(extra) = agent.token.scopes.iter().find(|s| !last.scopes.contains(s)) {
        return Err(violation(
            "delegation.scope_widened",
            format!("the agent token holds scope `{extra}` beyond its delegation"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::claims::TokenClaims;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: u64 = 1_000_000;

    fn rules() -> ChainRules {
        ChainRules {
            max_length: 3,
            trusted_issuers: vec!["idp".into()],
            resource: "mcp".into(),
            skew: 30,
        }
    }

    fn scopes(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn step(sub: &str, aud: &str, at: u64, scope: &str) -> DelegationStep {
        DelegationStep {
            iss: "idp".into(),
            sub: sub.into(),
            aud: aud.into(),
            delegated_at: at as f64,
            scopes: scopes(scope),
            ..DelegationStep::default()
        }
    }

    fn agent(sub: &str, scope: &str, chain: Vec<DelegationStep>) -> AgentClaims {
        AgentClaims {
            token: TokenClaims {
                sub: sub.into(),
                scopes: scopes(scope),
                ..TokenClaims::default()
            },
            delegation_chain: chain,
            ..AgentClaims::default()
        }
    }

    fn check(a: &AgentClaims) -> Result<(), &'static str> {
        check_chain(&rules(), "alice", &scopes("a b c"), a, NOW).map_err(|v| v.rule)
    }

    #[test]
    fn a_direct_delegation_is_valid() {
        assert_eq!(
            check(&agent(
                "agent:x",
                "a",
                vec![step("alice", "agent:x", NOW - 10, "a b")]
            )),
            Ok(())
        );
    }

    #[test]
    fn a_multi_hop_chain_is_valid() {
        let chain = vec![
            step("alice", "agent:planner", NOW - 30, "a b"),
            step("agent:planner", "agent:x", NOW - 20, "a"),
        ];
        assert_eq!(check(&agent("agent:x", "a", chain)), Ok(()));
    }

    #[test]
    fn each_rule_has_its_own_violation() {
        let ok = || step("alice", "agent:x", NOW - 10, "a");
        let cases: Vec<(AgentClaims, &str)> = vec![
            (agent("agent:x", "a", vec![]), "delegation.missing"),
            (
                agent(
                    "agent:x",
                    "a",
                    vec![step("mallory", "agent:x", NOW - 10, "a")],
                ),
                "delegation.start",
            ),
            (agent("agent:y", "a", vec![ok()]), "delegation.end"),
            (
                agent(
                    "agent:x",
                    "a",
                    vec![DelegationStep {
                        iss: "evil".into(),
                        ..ok()
                    }],
                ),
                "delegation.issuer",
            ),
            (
                agent(
                    "agent:x",
                    "a",
                    vec![step("alice", "agent:x", NOW + 3600, "a")],
                ),
                "delegation.order",
            ),
            (
                agent(
                    "agent:x",
                    "a",
                    vec![
                        step("alice", "agent:p", NOW - 10, "a"),
                        step("agent:p", "agent:x", NOW - 20, "a"),
                    ],
                ),
                "delegation.order",
            ),
            (
                agent(
                    "agent:x",
                    "a",
                    vec![
                        step("alice", "agent:p", NOW - 30, "a"),
                        step("agent:q", "agent:x", NOW - 20, "a"),
                    ],
                ),
                "delegation.link",
            ),
            (
                agent(
                    "agent:x",
                    "a",
                    vec![step("alice", "agent:x", NOW - 10, "a z")],
                ),
                "delegation.scope_widened",
            ),
            (
                agent(
                    "agent:x",
                    "a",
                    vec![
                        step("alice", "agent:p", NOW - 30, "a"),
                        step("agent:p", "agent:x", NOW - 20, "a b"),
                    ],
                ),
                "delegation.scope_widened",
            ),
            (
                agent(
                    "agent:x",
                    "a b",
                    vec![step("alice", "agent:x", NOW - 10, "a")],
                ),
                "delegation.scope_widened",
            ),
            (
                agent(
                    "agent:x",
                    "a",
                    vec![
                        step("alice", "agent:p", NOW - 40, "a"),
                        step("agent:p", "agent:q", NOW - 30, "a"),
                        step("agent:q", "agent:r", NOW - 20, "a"),
                        step("agent:r", "agent:x", NOW - 10, "a"),
                    ],
                ),
                "delegation.length",
            ),
            (
                agent(
                    "agent:x",
                    "a",
                    vec![DelegationStep {
                        max_duration: Some(5.0),
                        ..step("alice", "agent:x", NOW - 100, "a")
                    }],
                ),
                "delegation.max_duration",
            ),
            (
                agent(
                    "agent:x",
                    "a",
                    vec![DelegationStep {
                        allowed_resources: Some(vec!["other".into()]),
                        ..ok()
                    }],
                ),
                "delegation.allowed_resources",
            ),
            (
                agent(
                    "agent:x",
                    "a",
                    vec![DelegationStep {
                        unknown_constraints: vec!["geo".into()],
                        ..ok()
                    }],
                ),
                "delegation.constraints",
            ),
            (
                agent(
                    "agent:x",
                    "a",
                    vec![DelegationStep {
                        aud: String::new(),
                        ..ok()
                    }],
                ),
                "delegation.step",
            ),
            (
                agent(
                    "agent:x",
                    "a",
                    vec![DelegationStep {
                        delegated_at: 0.0,
                        ..ok()
                    }],
                ),
                "delegation.order",
            ),
        ];
        for (a, rule) in cases {
            assert_eq!(check(&a), Err(rule), "{a:?}");
        }
    }

    #[test]
    fn constraints_that_hold_pass() {
        let s = DelegationStep {
            max_duration: Some(60.0),
            allowed_resources: Some(vec!["mcp".into(), "other".into()]),
            ..step("alice", "agent:x", NOW - 10, "a")
        };
        assert_eq!(check(&agent("agent:x", "a", vec![s])), Ok(()));
    }
}
