//! The decision: may this caller make this MCP request?
//!
//! Semantics (also in the README): a request is allowed when at least one `allow` rule matches
//! it and no `deny` rule does; anything else is denied (default deny). A rule matches when
//! every condition it states holds: lists of targets, users, groups, roles, agent types,
//! providers and models match if *any* entry matches; `scopes` and `agent_capabilities` need
//! *all* entries; argument conditions must *all* hold; the time window must contain now. For
//! `tools/call`, the tool registry is checked first: unknown, unapproved, retired, changed or
//! shadowing tools are refused whatever the rules say.
//!
//! `scopes` are those of the call, not of the user alone: for a call made by an agent, a scope
//! counts only when the user's token has it *and* the delegation grants it
//! ([`Identity::grants_scope`]). A `completion/complete` ([`Target::Completion`]) is decided
//! twice, and both must allow: as `completion/complete` of the prompt or resource it names,
//! then as whether that prompt or resource may be shown to the caller (`prompts/get` /
//! `resources/read` with [`Purpose::Listing`]): completions tell what a prompt or resource
//! takes, so they are for callers who may see it.
//!
//! One function, [`Policy::decide`], serves every enforcement point: calls, and (with
//! [`Purpose::Listing`]) which tools/prompts/resources a `…/list` answer may show. Rules are
//! indexed by tool name and by the literal prefix of tool patterns, so rules about other tools
//! cost nothing.

pub mod config;
mod index;
pub mod matcher;
pub mod users;

use crate::identity::Identity;
use crate::jsonrpc::Target;
use crate::registry::{Refusal, Registry};
use matcher::{ArgCondition, Globs, TimeWindow};
use serde_json::Value;
use std::cell::Cell;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Let the request through.
    Allow,
    /// Refuse it.
    Deny,
}

/// A compiled rule (see [`config::RawRule`] for the meaning of each field).
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique id.
    pub id: String,
    /// Description.
    pub description: String,
    /// Effect.
    pub effect: Effect,
    /// Server globs.
    pub servers: Globs,
    /// Method globs (after implication from the target fields).
    pub methods: Globs,
    /// Tool globs.
    pub tools: Globs,
    /// Resource URI globs.
    pub resources: Globs,
    /// Prompt globs.
    pub prompts: Globs,
    /// Users: (issuer, subject) pairs (any).
    pub users: Vec<users::UserId>,
    /// Groups (any).
    pub groups: Vec<String>,
    /// Roles (any).
    pub roles: Vec<String>,
    /// Scopes (all).
    pub scopes: Vec<String>,
    /// Agent types (any).
    pub agent_types: Vec<String>,
    /// Agent providers (any).
    pub agent_providers: Vec<String>,
    /// Agent model globs (any).
    pub agent_models: Globs,
    /// Agent capabilities (all).
    pub agent_capabilities: Vec<String>,
    /// Minimum trust rank.
    pub min_trust_rank: Option<usize>,
    /// Maximum trust rank (a missing or unknown level is below every rank).
    pub max_trust_rank: Option<usize>,
    /// Maximum delegation depth.
    pub max_delegation_depth: Option<usize>,
    /// Argument conditions (all).
    pub arguments: Vec<ArgCondition>,
    /// Time window.
    pub when: Option<TimeWindow>,
}

/// Why the decision is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A real request: every condition must hold.
    Call,
    /// May this item be shown in a list? Argument conditions are unknown: an allow rule's may
    /// hold, a deny rule's is not assumed to.
    Listing,
}

/// What is asked.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The verified caller (`None` when identity is not configured).
    pub identity: Option<&'a Identity>,
    /// The server the request goes to (`""` when none is configured).
    pub server: &'a str,
    /// The JSON-RPC method.
    pub method: &'a str,
    /// The tool / resource / prompt named.
    pub target: &'a Target,
    /// The call's `arguments` (tools/call, prompts/get).
    pub arguments: Option<&'a Value>,
    /// Live definition hash of the tool, when the gateway has seen one.
    pub live_hash: Option<&'a str>,
    /// Seconds since the epoch.
    pub now: u64,
    /// Call or listing.
    pub purpose: Purpose,
}

/// The outcome, with the rule that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow or deny.
    pub effect: Effect,
    /// Rule id (`default.deny` when nothing allowed; `registry.*` for registry refusals).
    pub rule: String,
    /// Human-readable reason.
    pub reason: String,
}

impl Decision {
    /// Whether the request may go on.
    pub fn allowed(&self) -> bool {
        self.effect == Effect::Allow
    }
}

/// Which way a decision went, before any text is written for it.
enum Verdict<'p> {
    /// The registry refuses the tool.
    Unusable(Refusal<'p>),
    /// This rule decides (a deny rule if any matched, else the first allow rule).
    Rule(&'p Rule),
    /// No rule allows: default deny.
    NoRule,
}

/// The compiled policy: rules, their index and the registry.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    /// Rules with a `tools` list, by the tool names their patterns may match.
    by_tool: index::ToolIndex,
    /// Rules without a `tools` list: looked at by every decision.
    general_rules: Vec<index::Indexed>,
    argument_rules: Vec<usize>,
    registry: Registry,
    trust_levels: Vec<String>,
}

impl Policy {
    /// Builds the index.
    pub fn new(rules: Vec<Rule>, registry: Registry, trust_levels: Vec<String>) -> Policy {
        let mut by_tool = index::ToolIndex::default();
        let mut general_rules = Vec::new();
        let argument_rules = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.arguments.is_empty())
            .map(|(i, _)| i)
            .collect();
        for (i, r) in rules.iter().enumerate() {
            let indexed = index::Indexed {
                rule: i,
                deny: r.effect == Effect::Deny,
            };
            if r.tools.is_empty() {
                general_rules.push(indexed);
            }
            for g in r.tools.iter() {
                by_tool.add(g, indexed);
            }
        }
        Policy {
            rules,
            by_tool,
            general_rules,
            argument_rules,
            registry,
            trust_levels,
        }
    }

    /// Whether deciding a call to `target` may evaluate an argument condition: the caller
    /// builds [`Facts::arguments`] only then (without it, a condition sees no arguments).
    pub fn reads_arguments(&self, target: &Target) -> bool {
        self.argument_rules
            .iter()
            .filter_map(|&i| self.rules.get(i))
            .any(|r| names_target(r, target))
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Decides.
    pub fn decide(&self, f: &Facts<'_>) -> Decision {
        let Some((own, used)) = completion_facts(f) else {
            return self.decide_one(f);
        };
        let decision = self.decide_one(&own);
        if !decision.allowed() {
            return decision;
        }
        let mut decision = self.decide_one(&used);
        if !decision.allowed() {
            decision.reason = format!(
                "{} completes what the caller may not use: {}",
                f.method, decision.reason
            );
        }
        decision
    }

    /// Whether [`Policy::decide`] would allow, without writing why (list filtering).
    pub fn allows(&self, f: &Facts<'_>) -> bool {
        match completion_facts(f) {
            Some((own, used)) => self.allows_one(&own) && self.allows_one(&used),
            None => self.allows_one(f),
        }
    }

    /// [`Policy::decide`] of a target other than a completion.
    fn decide_one(&self, f: &Facts<'_>) -> Decision {
        match self.verdict(f) {
            Verdict::Unusable(refusal) => {
                let tool = f.target.name().unwrap_or_default();
                let u = refusal.unusable(f.server, tool);
                Decision {
                    effect: Effect::Deny,
                    rule: u.rule.to_string(),
                    reason: u.detail,
                }
            }
            Verdict::Rule(rule) if rule.effect == Effect::Deny => Decision {
                effect: Effect::Deny,
                rule: rule.id.clone(),
                reason: format!("{} is denied: {}", describe(f), rule.description),
            },
            // The hot path: no formatting, the rule id says why.
            Verdict::Rule(rule) => Decision {
                effect: Effect::Allow,
                rule: rule.id.clone(),
                reason: rule.description.clone(),
            },
            Verdict::NoRule => Decision {
                effect: Effect::Deny,
                rule: "default.deny".into(),
                reason: format!("no rule allows {}", describe(f)),
            },
        }
    }

    fn allows_one(&self, f: &Facts<'_>) -> bool {
        matches!(self.verdict(f), Verdict::Rule(r) if r.effect == Effect::Allow)
    }

    /// The decision before any text is written: the registry first, then deny beats allow.
    fn verdict<'p>(&'p self, f: &Facts<'p>) -> Verdict<'p> {
        if let Target::Tool(tool) = f.target {
            if !self.registry.is_empty() {
                let groups = f
                    .identity
                    .map(|i| i.user.groups.as_slice())
                    .unwrap_or_default();
                if let Err(r) = self.registry.verdict(f.server, tool, groups, f.live_hash) {
                    return Verdict::Unusable(r);
                }
            }
        }
        // The first matching allow and deny rules (policy order) found so far.
        let (first_allow, first_deny) = (Cell::new(None), Cell::new(None));
        let slot = |r: index::Indexed| if r.deny { &first_deny } else { &first_allow };
        // A rule after the first match of its kind cannot change the verdict: not looked at.
        let wanted = |r: index::Indexed| slot(r).get().is_none_or(|j: usize| j >= r.rule);
        let found = |r: index::Indexed| {
            if self
                .rules
                .get(r.rule)
                .is_some_and(|rule| self.matches(rule, f))
            {
                slot(r).set(Some(r.rule));
            }
        };
        if let Target::Tool(tool) = f.target {
            self.by_tool.candidates(tool, wanted, found);
        }
        for &r in &self.general_rules {
            if wanted(r) {
                found(r);
            }
        }
        let (first_allow, first_deny) = (first_allow.get(), first_deny.get());
        match first_deny.or(first_allow).and_then(|i| self.rules.get(i)) {
            Some(rule) => Verdict::Rule(rule),
            None => Verdict::NoRule,
        }
    }

    /// [`Policy::decide`]'s effect and rule id by a plain scan of every rule in order, without
    /// the index (the `policy` fuzz target checks the index against it).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn decide_by_scan(&self, f: &Facts<'_>) -> (Effect, String) {
        if let Target::Tool(tool) = f.target {
            if !self.registry.is_empty() {
                let groups = f
                    .identity
                    .map(|i| i.user.groups.as_slice())
                    .unwrap_or_default();
                if let Err(r) = self.registry.verdict(f.server, tool, groups, f.live_hash) {
                    return (Effect::Deny, r.unusable(f.server, tool).rule.to_string());
                }
            }
        }
        let first = |effect: Effect| {
            self.rules
                .iter()
                .find(|r| r.effect == effect && self.matches(r, f))
        };
        match first(Effect::Deny).or_else(|| first(Effect::Allow)) {
            Some(r) => (r.effect, r.id.clone()),
            None => (Effect::Deny, "default.deny".into()),
        }
    }

    fn matches(&self, r: &Rule, f: &Facts<'_>) -> bool {
        let any_glob = |globs: &Globs, v: &str| globs.is_empty() || globs.any_match(v);
        if !any_glob(&r.servers, f.server) || !any_glob(&r.methods, f.method) {
            return false;
        }
        if !names_target(r, f.target) {
            return false;
        }
        if !self.identity_matches(r, f.identity) {
            return false;
        }
        if let Some(w) = &r.when {
            if !w.contains(f.now) {
                return false;
            }
        }
        if !r.arguments.is_empty() {
            match f.purpose {
                Purpose::Listing => return r.effect == Effect::Allow,
                Purpose::Call => {
                    // A deny rule's conditions hold when any reading of the arguments meets
                    // them, an allow rule's when every reading does.
                    let deny = r.effect == Effect::Deny;
                    if !r.arguments.iter().all(|c| c.holds_for(f.arguments, deny)) {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn identity_matches(&self, r: &Rule, identity: Option<&Identity>) -> bool {
        let needs_user = !(r.users.is_empty()
            && r.groups.is_empty()
            && r.roles.is_empty()
            && r.scopes.is_empty());
        let needs_agent = !(r.agent_types.is_empty()
            && r.agent_providers.is_empty()
            && r.agent_models.is_empty()
            && r.agent_capabilities.is_empty()
            && r.min_trust_rank.is_none()
            && r.max_trust_rank.is_none()
            && r.max_delegation_depth.is_none());
        let Some(id) = identity else {
            return !needs_user && !needs_agent;
        };
        let any = |want: &[String], have: &[String]| {
            want.is_empty() || want.iter().any(|w| have.contains(w))
        };
        let all = |want: &[String], have: &[String]| want.iter().all(|w| have.contains(w));
        let u = &id.user;
        if !(r.users.is_empty() || r.users.iter().any(|w| w.is(&u.token.iss, &u.token.sub)))
            || !any(&r.groups, &u.groups)
            || !any(&r.roles, &u.roles)
            || !r.scopes.iter().all(|s| id.grants_scope(s))
        {
            return false;
        }
        if !needs_agent {
            return true;
        }
        let Some(a) = &id.agent else { return false };
        let one = |want: &[String], have: &Option<String>| {
            want.is_empty() || have.as_ref().is_some_and(|h| want.contains(h))
        };
        if !one(&r.agent_types, &a.agent_type) || !one(&r.agent_providers, &a.agent_provider) {
            return false;
        }
        if !r.agent_models.is_empty()
            && !a
                .agent_model
                .as_ref()
                .is_some_and(|m| r.agent_models.any_match(m))
        {
            return false;
        }
        if !all(&r.agent_capabilities, &a.capabilities) {
            return false;
        }
        if let Some(min) = r.min_trust_rank {
            let rank = a
                .trust_level
                .as_ref()
                .and_then(|t| self.trust_levels.iter().position(|l| l == t));
            if rank.is_none_or(|x| x < min) {
                return false;
            }
        }
        if let Some(max) = r.max_trust_rank {
            let rank = a
                .trust_level
                .as_ref()
                .and_then(|t| self.trust_levels.iter().position(|l| l == t));
            if rank.is_some_and(|x| x > max) {
                return false;
            }
        }
        if let Some(max) = r.max_delegation_depth {
            if a.delegation_chain.len() > max {
                return false;
            }
        }
        true
    }
}

/// For a completion: the facts of `completion/complete` about what it completes, and of the
/// use of that prompt or resource (as for a list: may the caller see it?).
fn completion_facts<'a>(f: &Facts<'a>) -> Option<(Facts<'a>, Facts<'a>)> {
    let Target::Completion(inner) = f.target else {
        return None;
    };
    let own = Facts {
        target: inner,
        ..f.clone()
    };
    let used = Facts {
        method: inner.use_method().unwrap_or(f.method),
        target: inner,
        arguments: None,
        purpose: Purpose::Listing,
        ..f.clone()
    };
    Some((own, used))
}

/// Whether the rule's tool / prompt / resource lists admit `target`.
fn names_target(r: &Rule, target: &Target) -> bool {
    let any_glob = |globs: &Globs, v: &str| globs.is_empty() || globs.any_match(v);
    match target {
        Target::Completion(inner) => names_target(r, inner),
        Target::Tool(t) => any_glob(&r.tools, t) && r.prompts.is_empty() && r.resources.is_empty(),
        Target::Prompt(p) => {
            any_glob(&r.prompts, p) && r.tools.is_empty() && r.resources.is_empty()
        }
        Target::Resource(u) => {
            any_glob(&r.resources, u) && r.tools.is_empty() && r.prompts.is_empty()
        }
        Target::None => r.tools.is_empty() && r.prompts.is_empty() && r.resources.is_empty(),
    }
}

fn describe_target(t: &Target) -> String {
    match t {
        Target::Tool(t) => format!("tool `{t}`"),
        Target::Prompt(p) => format!("prompt `{p}`"),
        Target::Resource(u) => format!("resource `{u}`"),
        Target::Completion(inner) => describe_target(inner),
        Target::None => "nothing".into(),
    }
}

fn describe(f: &Facts<'_>) -> String {
    match f.target {
        Target::Tool(t) => format!("{} of tool `{t}` on `{}`", f.method, f.server),
        Target::Prompt(p) => format!("{} of prompt `{p}`", f.method),
        Target::Resource(u) => format!("{} of resource `{u}`", f.method),
        Target::Completion(inner) => format!("{} of {}", f.method, describe_target(inner)),
        Target::None => format!("`{}` on `{}`", f.method, f.server),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod scope_and_target_tests;
