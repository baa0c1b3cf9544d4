//! `warden test`: decision tests of a bundle (`tests.toml` beside `bundle.toml`).
//!
//! ```toml
//! # The user issuers, as in `identity.user.issuers` (default: one issuer,
//! # `https://issuer.test.invalid`): bundle `users` entries are resolved against them.
//! issuers = [{ issuer = "https://corp.example", name = "corp" }, "https://partner.example"]
//!
//! # Who the cases talk about (the key is the default `sub`).
//! [users.alice]
//! issuer = "corp"              # URL or name of one of `issuers` (default: the only one)
//! groups = ["it-admins"]
//! roles = ["admin"]
//! scopes = ["mcp:tools", "HR_read"]
//!
//! [agents.claude]              # default sub "agent:claude"
//! type = "assistant"
//! provider = "anthropic"
//! model = "claude-sonnet-4"
//! capabilities = ["tools:call", "email:draft"]
//! trust_level = "high"
//! delegation_depth = 1         # steps in delegation_chain (default 1, as the demo IdP issues)
//! scopes = ["mcp:tools"]       # delegated scopes (default: all of the user's); a `scopes`
//!                              # condition needs the scope in the user's token AND delegated
//!
//! [[cases]]
//! name = "IT admins delete files"
//! user = "alice"               # a key of [users], or an inline table { sub = "x", groups = [...] }
//! agent = "claude"             # optional: a key of [agents], or an inline table
//! tool = "delete_file"         # or prompt = "...", resource = "..."; or method alone
//! arguments = { path = "/tmp/report.txt" }
//! at = "2026-01-05T10:00:00+01:00"  # default: Monday 2026-01-05 10:00 in the bundle's zone
//! decision = "allow"
//! rule = "files.delete.it"
//!
//! [[cases]]                    # list visibility: which tools may a tools/list answer show?
//! name = "bob's tools"
//! user = "bob"
//! tools = ["echo", "delete_file"]
//! expect_visible = ["echo"]
//! ```
//!
//! Other case fields: `server` (default: the bundle's only server), `method` (default implied by
//! the target: `tools/call`, `prompts/get`, `resources/read`; `completion/complete` with a
//! `prompt` or `resource` is decided against that prompt or resource template), `live_hash` (the tool's live
//! definition hash), `purpose = "listing"` (decide as for a list answer), `anonymous = true`
//! (no verified identity, as when identity checks are off). Decisions come from
//! [`Policy::decide`], the function the filter calls.

use crate::bundle::{self, Bundle};
use crate::problem::Problem;
use mcp_warden_core::identity::claims::{AgentClaims, DelegationStep, TokenClaims, UserClaims};
use mcp_warden_core::identity::mapping::{compile_issuers, Issuer, RawIssuer, TokenKind};
use mcp_warden_core::identity::Identity;
use mcp_warden_core::jsonrpc::Target;
use mcp_warden_core::policy::{Decision, Effect, Facts, Policy, Purpose};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTests {
    /// Default time of the cases.
    #[serde(default)]
    at: Option<toml::Value>,
    /// The user issuers (`identity.user.issuers`).
    #[serde(default)]
    issuers: Option<Vec<toml::Value>>,
    #[serde(default)]
    users: BTreeMap<String, RawUser>,
    #[serde(default)]
    agents: BTreeMap<String, RawAgent>,
    #[serde(default)]
    cases: Vec<RawCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    #[serde(default)]
    sub: Option<String>,
    /// URL or name of one of the test file's `issuers` (default: the only one).
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default, rename = "type")]
    agent_type: Option<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    trust_level: Option<String>,
    #[serde(default)]
    delegation_depth: Option<usize>,
    /// Scopes delegated to the agent (its token's and its last delegation step's); default:
    /// every scope of the user.
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    #[serde(default)]
    user: Option<toml::Value>,
    #[serde(default)]
    agent: Option<toml::Value>,
    #[serde(default)]
    anonymous: bool,
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    arguments: Option<toml::Table>,
    #[serde(default)]
    at: Option<toml::Value>,
    #[serde(default)]
    live_hash: Option<String>,
    #[serde(default)]
    purpose: Option<String>,
    #[serde(default)]
    decision: Option<String>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    tools: Option<Vec<String>>,
    #[serde(default)]
    prompts: Option<Vec<String>>,
    #[serde(default)]
    resources: Option<Vec<String>>,
    #[serde(default)]
    expect_visible: Option<Vec<String>>,
}

/// Which kind of list a visibility case is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `tools/list`: each tool decided as `tools/call`.
    Tools,
    /// `prompts/list`: each prompt decided as `prompts/get`.
    Prompts,
    /// `resources/list`: each resource decided as `resources/read`.
    Resources,
}

impl ListKind {
    fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/call",
            ListKind::Prompts => "prompts/get",
            ListKind::Resources => "resources/read",
        }
    }
    fn target(self, name: &str) -> Target {
        match self {
            ListKind::Tools => Target::Tool(name.to_string()),
            ListKind::Prompts => Target::Prompt(name.to_string()),
            ListKind::Resources => Target::Resource(name.to_string()),
        }
    }
}

/// What a case expects.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// One decision, and optionally the rule that takes it.
    Decision {
        /// Allow or deny.
        effect: Effect,
        /// The deciding rule id.
        rule: Option<String>,
    },
    /// Exactly these items of the list are visible.
    Visible {
        /// Which list.
        kind: ListKind,
        /// The items the server offers.
        items: Vec<String>,
        /// The items the answer may show.
        visible: BTreeSet<String>,
    },
}

/// One parsed test case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Its name.
    pub name: String,
    /// The caller (`None`: anonymous).
    pub identity: Option<Identity>,
    /// The server.
    pub server: String,
    /// The JSON-RPC method (single-decision cases).
    pub method: String,
    /// The target (single-decision cases).
    pub target: Target,
    /// The call's arguments.
    pub arguments: Option<Value>,
    /// Seconds since the epoch.
    pub now: u64,
    /// Live definition hash.
    pub live_hash: Option<String>,
    /// Call or listing.
    pub purpose: Purpose,
    /// The expectation.
    pub expect: Expect,
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Whether it passed.
    pub passed: bool,
    /// One line: what was expected and what was decided.
    pub summary: String,
    /// The rule ids that took the decisions.
    pub rules: Vec<String>,
}

/// The fixed default time: Monday 2026-01-05 10:00 in `tz`.
pub fn default_now(tz: &str) -> Result<u64, String> {
    let zone = jiff::tz::TimeZone::get(tz).map_err(|e| format!("time zone `{tz}`: {e}"))?;
    let ts = jiff::civil::date(2026, 1, 5)
        .at(10, 0, 0, 0)
        .to_zoned(zone)
        .map_err(|e| e.to_string())?
        .timestamp();
    u64::try_from(ts.as_second()).map_err(|_| "time before 1970".to_string())
}

/// An RFC 3339 timestamp (`2026-01-10T10:00:00+01:00`), or a local date-time without offset
/// (`2026-01-10T10:00:00`) taken in `tz`.
pub fn parse_time(text: &str, tz: &str) -> Result<u64, String> {
    let ts = match text.parse::<jiff::Timestamp>() {
        Ok(ts) => ts,
        Err(e) => {
            let Ok(civil) = text.parse::<jiff::civil::DateTime>() else {
                return Err(format!("`{text}` is not an RFC 3339 timestamp: {e}"));
            };
            let zone = jiff::tz::TimeZone::get(tz).map_err(|e| format!("time zone `{tz}`: {e}"))?;
            civil
                .to_zoned(zone)
                .map_err(|e| format!("`{text}` in {tz}: {e}"))?
                .timestamp()
        }
    };
    u64::try_from(ts.as_second()).map_err(|_| format!("`{text}` is before 1970"))
}

fn time_value(v: &toml::Value, tz: &str) -> Result<u64, String> {
    match v {
        toml::Value::String(s) => parse_time(s, tz),
        toml::Value::Datetime(d) => parse_time(&d.to_string(), tz),
        _ => Err("must be an RFC 3339 timestamp".into()),
    }
}

/// The issuer of the cases' users when the test file names none.
pub const DEFAULT_TEST_ISSUER: &str = "https://issuer.test.invalid";

/// The user issuers of a test file (`issuers`, default one [`DEFAULT_TEST_ISSUER`]) as the JSON
/// of `identity.user.issuers`, checked with the filter's own rules.
pub fn user_issuers(file: &str, text: &str) -> Result<(Value, Vec<Issuer>), Problem> {
    let raw: RawTests = toml::from_str(text).map_err(|e| bundle::toml_problem(file, text, &e))?;
    let json = match &raw.issuers {
        None => Value::Array(vec![Value::String(DEFAULT_TEST_ISSUER.into())]),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for (i, v) in list.iter().enumerate() {
                out.push(match v {
                    toml::Value::String(s) => Value::String(s.clone()),
                    toml::Value::Table(t) => bundle::toml_table_to_json(t).map_err(|(f, m)| {
                        let field = format!("issuers[{i}].{f}");
                        bundle::locate(
                            Problem::file(file, m).with_field(field.clone()),
                            text,
                            &field,
                        )
                    })?,
                    _ => {
                        let field = format!("issuers[{i}]");
                        return Err(bundle::locate(
                            Problem::file(file, "an issuer is a URL or a table {issuer, name}")
                                .with_field(field.clone()),
                            text,
                            &field,
                        ));
                    }
                });
            }
            Value::Array(out)
        }
    };
    let raws: Vec<RawIssuer> = serde_json::from_value(json.clone())
        .map_err(|e| Problem::file(file, format!("issuers: {e}")))?;
    let compiled = compile_issuers("issuers", TokenKind::User, raws).map_err(|e| {
        bundle::locate(
            Problem::file(file, e.message).with_field(e.field.clone()),
            text,
            &e.field,
        )
    })?;
    Ok((json, compiled))
}

/// The issuer URL a user of the cases names (`None`: the only issuer).
fn user_issuer(named: Option<&str>, issuers: &[Issuer]) -> Result<String, String> {
    match (named, issuers) {
        (None, [one]) => Ok(one.url.clone()),
        (None, _) => Err("several issuers: say which with `issuer`".into()),
        (Some(n), list) => list
            .iter()
            .find(|i| i.url == n || i.name.as_deref() == Some(n))
            .map(|i| i.url.clone())
            .ok_or_else(|| format!("`{n}` is not the URL or name of one of `issuers`")),
    }
}

fn user_claims(u: &RawUser, default_sub: &str, iss: String) -> UserClaims {
    UserClaims {
        token: TokenClaims {
            iss,
            sub: u.sub.clone().unwrap_or_else(|| default_sub.to_string()),
            scopes: u.scopes.clone(),
            ..TokenClaims::default()
        },
        groups: u.groups.clone(),
        roles: u.roles.clone(),
        ..UserClaims::default()
    }
}

fn agent_claims(a: &RawAgent, default_sub: &str, user: &UserClaims) -> AgentClaims {
    let sub = a.sub.clone().unwrap_or_else(|| default_sub.to_string());
    let depth = a.delegation_depth.unwrap_or(1);
    let scopes = a
        .scopes
        .clone()
        .unwrap_or_else(|| user.token.scopes.clone());
    let step = DelegationStep {
        sub: user.token.sub.clone(),
        aud: sub.clone(),
        scopes: scopes.clone(),
        ..DelegationStep::default()
    };
    AgentClaims {
        token: TokenClaims {
            sub,
            scopes,
            ..TokenClaims::default()
        },
        agent_type: a.agent_type.clone(),
        agent_model: a.model.clone(),
        agent_provider: a.provider.clone(),
        delegator_sub: Some(user.token.sub.clone()),
        delegation_chain: vec![step; depth],
        capabilities: a.capabilities.clone(),
        trust_level: a.trust_level.clone(),
        ..AgentClaims::default()
    }
}

/// Reads and parses `tests.toml` text against its compiled bundle.
pub fn parse(file: &str, text: &str, bundle: &Bundle) -> Result<Vec<Case>, Problem> {
    let (_, issuers) = user_issuers(file, text)?;
    let raw: RawTests = toml::from_str(text).map_err(|e| bundle::toml_problem(file, text, &e))?;
    let at_field = |field: String, message: String| {
        bundle::locate(
            Problem::file(file, message).with_field(field.clone()),
            text,
            &field,
        )
    };
    let tz = bundle.timezone().to_string();
    let file_now = match &raw.at {
        Some(v) => time_value(v, &tz).map_err(|e| at_field("at".into(), e))?,
        None => default_now(&tz).map_err(|e| Problem::file(file, e))?,
    };
    let servers = bundle.server_names();
    let rule_ids = bundle.rule_ids();
    let mut names = BTreeSet::new();
    let mut cases = Vec::with_capacity(raw.cases.len());
    for (i, c) in raw.cases.into_iter().enumerate() {
        let f = |name: &str| format!("cases[{i}].{name}");
        let fail = |name: &str, message: String| at_field(f(name), message);
        if c.name.trim().is_empty() {
            return Err(fail("name", "must not be empty".into()));
        }
        if !names.insert(c.name.clone()) {
            return Err(fail("name", format!("`{}` names two cases", c.name)));
        }
        // The caller.
        let user = match &c.user {
            None => None,
            Some(toml::Value::String(key)) => {
                let u = raw
                    .users
                    .get(key)
                    .ok_or_else(|| fail("user", format!("no [users.{key}]")))?;
                let iss = user_issuer(u.issuer.as_deref(), &issuers)
                    .map_err(|e| at_field(format!("users.{key}.issuer"), e))?;
                Some(user_claims(u, key, iss))
            }
            Some(v @ toml::Value::Table(_)) => {
                let u: RawUser = v
                    .clone()
                    .try_into()
                    .map_err(|e: toml::de::Error| fail("user", e.message().to_string()))?;
                if u.sub.is_none() {
                    return Err(fail("user", "an inline user needs `sub`".into()));
                }
                let iss = user_issuer(u.issuer.as_deref(), &issuers)
                    .map_err(|e| fail("user.issuer", e))?;
                Some(user_claims(&u, "", iss))
            }
            Some(_) => {
                return Err(fail(
                    "user",
                    "must be a key of [users] or an inline table".into(),
                ))
            }
        };
        let identity = match (user, c.anonymous) {
            (Some(_), true) => {
                return Err(fail("anonymous", "an anonymous case has no `user`".into()))
            }
            (None, true) => {
                if c.agent.is_some() {
                    return Err(fail("agent", "an anonymous case has no `agent`".into()));
                }
                None
            }
            (None, false) => {
                return Err(fail(
                    "user",
                    "missing: name a user (or set anonymous = true)".into(),
                ))
            }
            (Some(user), false) => {
                let agent = match &c.agent {
                    None => None,
                    Some(toml::Value::String(key)) => {
                        let a = raw
                            .agents
                            .get(key)
                            .ok_or_else(|| fail("agent", format!("no [agents.{key}]")))?;
                        Some(agent_claims(a, &format!("agent:{key}"), &user))
                    }
                    Some(v @ toml::Value::Table(_)) => {
                        let a: RawAgent = v
                            .clone()
                            .try_into()
                            .map_err(|e: toml::de::Error| fail("agent", e.message().to_string()))?;
                        Some(agent_claims(&a, "agent:inline", &user))
                    }
                    Some(_) => {
                        return Err(fail(
                            "agent",
                            "must be a key of [agents] or an inline table".into(),
                        ))
                    }
                };
                Some(Identity { user, agent })
            }
        };
        // The request.
        let server = match c.server {
            Some(s) => {
                if !servers.is_empty() && !servers.contains(&s) {
                    return Err(fail("server", format!("the bundle has no server `{s}`")));
                }
                s
            }
            None => match servers.as_slice() {
                [] => String::new(),
                [one] => one.clone(),
                _ => {
                    return Err(fail(
                        "server",
                        "missing: the bundle has several servers, name one".into(),
                    ))
                }
            },
        };
        let now = match &c.at {
            Some(v) => time_value(v, &tz).map_err(|e| fail("at", e))?,
            None => file_now,
        };
        let purpose = match c.purpose.as_deref() {
            None | Some("call") => Purpose::Call,
            Some("listing") => Purpose::Listing,
            Some(other) => {
                return Err(fail("purpose", format!("`{other}` is not call or listing")))
            }
        };
        let arguments = match &c.arguments {
            None => None,
            Some(t) => Some(
                bundle::toml_table_to_json(t)
                    .map_err(|(field, e)| fail(&format!("arguments.{field}"), e))?,
            ),
        };
        let lists = [
            (ListKind::Tools, "tools", c.tools),
            (ListKind::Prompts, "prompts", c.prompts),
            (ListKind::Resources, "resources", c.resources),
        ];
        let mut list: Option<(ListKind, &str, Vec<String>)> = None;
        for (kind, field, items) in lists {
            if let Some(items) = items {
                if list.is_some() {
                    return Err(fail(field, "give one of tools, prompts, resources".into()));
                }
                list = Some((kind, field, items));
            }
        }
        let expect = match (list, c.expect_visible) {
            (Some((kind, field, items)), Some(visible)) => {
                for (name, v) in [
                    ("decision", c.decision.is_some()),
                    ("rule", c.rule.is_some()),
                    ("tool", c.tool.is_some()),
                    ("prompt", c.prompt.is_some()),
                    ("resource", c.resource.is_some()),
                    ("method", c.method.is_some()),
                    ("arguments", arguments.is_some()),
                    ("live_hash", c.live_hash.is_some()),
                    ("purpose", c.purpose.is_some()),
                ] {
                    if v {
                        return Err(fail(
                            name,
                            "not used by a visibility case (`expect_visible`)".into(),
                        ));
                    }
                }
                let mut seen = BTreeSet::new();
                for (j, item) in items.iter().enumerate() {
                    if !seen.insert(item.clone()) {
                        return Err(fail(
                            &format!("{field}[{j}]"),
                            format!("`{item}` is listed twice"),
                        ));
                    }
                }
                let visible: BTreeSet<String> = visible.into_iter().collect();
                if let Some(extra) = visible.iter().find(|v| !seen.contains(*v)) {
                    return Err(fail(
                        "expect_visible",
                        format!("`{extra}` is not in `{field}`"),
                    ));
                }
                Expect::Visible {
                    kind,
                    items,
                    visible,
                }
            }
            (Some((_, field, _)), None) => {
                return Err(fail(field, "a list needs `expect_visible`".into()));
            }
            (None, Some(_)) => {
                return Err(fail(
                    "expect_visible",
                    "needs the list it is about: `tools`, `prompts` or `resources`".into(),
                ));
            }
            (None, None) => {
                let effect =
                    match c.decision.as_deref() {
                        Some("allow") => Effect::Allow,
                        Some("deny") => Effect::Deny,
                        Some(other) => {
                            return Err(fail("decision", format!("`{other}` is not allow or deny")))
                        }
                        None => return Err(fail(
                            "decision",
                            "missing: expect \"allow\" or \"deny\" (or a list with expect_visible)"
                                .into(),
                        )),
                    };
                if let Some(r) = &c.rule {
                    if !(rule_ids.contains(r) || r == "default.deny" || r.starts_with("registry."))
                    {
                        return Err(fail(
                            "rule",
                            format!(
                                "`{r}` is not a rule of the bundle, default.deny or registry.*"
                            ),
                        ));
                    }
                }
                Expect::Decision {
                    effect,
                    rule: c.rule,
                }
            }
        };
        let targets = [
            c.tool.map(Target::Tool),
            c.prompt.map(Target::Prompt),
            c.resource.map(Target::Resource),
        ];
        let mut given = targets.into_iter().flatten();
        let mut target = given.next().unwrap_or(Target::None);
        if given.next().is_some() {
            return Err(fail(
                "tool",
                "give at most one of tool, prompt, resource".into(),
            ));
        }
        // A completion is about the prompt or resource (template) it names.
        if c.method.as_deref() == Some("completion/complete") && target != Target::None {
            target = Target::Completion(Box::new(target));
        }
        let method = match (c.method, &target, &expect) {
            (Some(m), _, _) => m,
            (None, Target::Completion(_), _) => "completion/complete".into(),
            (None, Target::Tool(_), _) => "tools/call".into(),
            (None, Target::Prompt(_), _) => "prompts/get".into(),
            (None, Target::Resource(_), _) => "resources/read".into(),
            (None, Target::None, Expect::Visible { .. }) => String::new(),
            (None, Target::None, _) => {
                return Err(fail(
                    "method",
                    "missing: give a method, or a tool, prompt or resource".into(),
                ))
            }
        };
        cases.push(Case {
            name: c.name,
            identity,
            server,
            method,
            target,
            arguments,
            now,
            live_hash: c.live_hash,
            purpose,
            expect,
        });
    }
    if cases.is_empty() {
        return Err(Problem::file(file, "no [[cases]]"));
    }
    Ok(cases)
}

fn effect_name(e: Effect) -> &'static str {
    match e {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    }
}

fn decide(
    policy: &Policy,
    case: &Case,
    method: &str,
    target: &Target,
    purpose: Purpose,
) -> Decision {
    policy.decide(&Facts {
        identity: case.identity.as_ref(),
        server: &case.server,
        method,
        target,
        arguments: case.arguments.as_ref(),
        live_hash: case.live_hash.as_deref(),
        now: case.now,
        purpose,
    })
}

/// Runs one case.
pub fn run(policy: &Policy, case: &Case) -> Outcome {
    match &case.expect {
        Expect::Decision { effect, rule } => {
            let d = decide(policy, case, &case.method, &case.target, case.purpose);
            let passed = d.effect == *effect && rule.as_ref().is_none_or(|r| *r == d.rule);
            let got = format!("{} by {} ({})", effect_name(d.effect), d.rule, d.reason);
            let summary = if passed {
                got
            } else {
                let want = match rule {
                    Some(r) => format!("{} by {r}", effect_name(*effect)),
                    None => effect_name(*effect).to_string(),
                };
                format!("expected {want}, got {got}")
            };
            Outcome {
                passed,
                summary,
                rules: vec![d.rule],
            }
        }
        Expect::Visible {
            kind,
            items,
            visible,
        } => {
            let mut shown = BTreeSet::new();
            let mut rules = Vec::new();
            let mut why = Vec::new();
            for item in items {
                let target = kind.target(item);
                let d = decide(policy, case, kind.method(), &target, Purpose::Listing);
                if d.allowed() {
                    shown.insert(item.clone());
                }
                if d.allowed() != visible.contains(item) {
                    why.push(format!(
                        "`{item}` {} by {} ({})",
                        if d.allowed() { "shown" } else { "hidden" },
                        d.rule,
                        d.reason
                    ));
                }
                rules.push(d.rule);
            }
            let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
            let passed = shown == *visible;
            let summary = if passed {
                format!("visible [{}]", list(&shown))
            } else {
                format!(
                    "expected visible [{}], got [{}]: {}",
                    list(visible),
                    list(&shown),
                    why.join("; ")
                )
            };
            Outcome {
                passed,
                summary,
                rules,
            }
        }
    }
}

/// The result of testing one bundle directory.
#[derive(Debug, Default)]
pub struct Report {
    /// Printed lines, in order.
    pub lines: Vec<String>,
    /// Cases passed.
    pub passed: usize,
    /// Cases failed (a bundle or test file that cannot be read counts as one).
    pub failed: usize,
}

/// Tests one bundle directory (`bundle.toml` + `tests.toml`); its name prefixes the lines.
pub fn test_dir(dir: &str) -> Report {
    let base = std::path::Path::new(dir);
    let base = if base
        .file_name()
        .is_some_and(|n| n == "tests.toml" || n == "bundle.toml")
    {
        base.parent().unwrap_or(base)
    } else {
        base
    };
    let label = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.to_string());
    let bundle_path = base.join("bundle.toml").to_string_lossy().into_owned();
    let tests_path = base.join("tests.toml").to_string_lossy().into_owned();
    let mut report = Report::default();
    let loaded = std::fs::read_to_string(&tests_path)
        .map_err(|e| Problem::file(&tests_path, format!("cannot read: {e}")))
        .and_then(|text| {
            let (issuers, _) = user_issuers(&tests_path, &text)?;
            let b = bundle::load_for_issuers(&bundle_path, &issuers)?;
            let cases = parse(&tests_path, &text, &b)?;
            Ok((b, cases))
        });
    let (bundle, cases) = match loaded {
        Ok(x) => x,
        Err(p) => {
            report.lines.push(format!("ERROR {label}: {p}"));
            report.failed += 1;
            return report;
        }
    };
    let mut decided: BTreeSet<String> = BTreeSet::new();
    for case in &cases {
        let o = run(&bundle.policy, case);
        if o.passed {
            report.passed += 1;
            decided.extend(o.rules);
        } else {
            report.failed += 1;
        }
        report.lines.push(format!(
            "{} {label}: {}: {}",
            if o.passed { "PASS" } else { "FAIL" },
            case.name,
            o.summary
        ));
    }
    let unexercised: Vec<String> = bundle
        .rule_ids()
        .into_iter()
        .filter(|r| !decided.contains(r))
        .collect();
    if !unexercised.is_empty() {
        report.lines.push(format!(
            "note {label}: rules that decided no passing case: {}",
            unexercised.join(", ")
        ));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUNDLE: &str = r#"
timezone = "Europe/Berlin"

[[servers]]
name = "corp"
path = "/mcp"
tools = [
  { name = "echo", status = "approved", approved_for = ["*"] },
  { name = "delete_file", status = "approved", approved_for = ["it-admins"] },
  { name = "query_table", status = "approved", approved_for = ["*"] },
]

[[rules]]
id = "base"
effect = "allow"
methods = ["tools/list"]

[[rules]]
id = "echo"
effect = "allow"
tools = ["echo"]
when = { weekdays = ["mon", "tue", "wed", "thu", "fri"], hours = "09:00-17:00" }

[[rules]]
id = "delete"
effect = "allow"
tools = ["delete_file"]
groups = ["it-admins"]

[[rules]]
id = "tables"
effect = "allow"
tools = ["query_table"]
agent_capabilities = ["sql"]

[[rules]]
id = "no-financials"
effect = "deny"
tools = ["query_table"]
arguments = [{ path = "/table", equals = "financials" }]
"#;

    fn bundle() -> Bundle {
        bundle::parse("bundle.toml", BUNDLE).unwrap()
    }

    const USERS: &str = r#"
[users.alice]
groups = ["it-admins"]
scopes = ["HR_read"]

[agents.bot]
type = "assistant"
capabilities = ["sql"]
trust_level = "high"
delegation_depth = 2
"#;

    fn cases(body: &str) -> Result<Vec<Case>, Problem> {
        parse("tests.toml", &format!("{USERS}\n{body}"), &bundle())
    }

    fn run_all(body: &str) -> Vec<(bool, String)> {
        let b = bundle();
        cases(body)
            .unwrap()
            .iter()
            .map(|c| {
                let o = run(&b.policy, c);
                (o.passed, o.summary)
            })
            .collect()
    }

    #[test]
    fn cases_build_identity_request_and_expectation() {
        let cs = cases(
            r#"
[[cases]]
name = "alice with bot"
user = "alice"
agent = "bot"
tool = "query_table"
arguments = { table = "customers", limit = 5 }
decision = "allow"
rule = "tables"
"#,
        )
        .unwrap();
        let c = &cs[0];
        let id = c.identity.as_ref().unwrap();
        assert_eq!(id.user.token.sub, "alice");
        assert_eq!(id.user.groups, vec!["it-admins"]);
        let agent = id.agent.as_ref().unwrap();
        assert_eq!(agent.token.sub, "agent:bot");
        assert_eq!(agent.delegation_chain.len(), 2);
        assert_eq!(agent.trust_level.as_deref(), Some("high"));
        assert_eq!(c.server, "corp");
        assert_eq!(c.method, "tools/call");
        assert_eq!(c.target, Target::Tool("query_table".into()));
        assert_eq!(
            c.arguments,
            Some(serde_json::json!({"table": "customers", "limit": 5}))
        );
        // Monday 2026-01-05 10:00 in Berlin = 09:00 UTC.
        assert_eq!(c.now, 1_767_603_600);
        assert_eq!(c.purpose, Purpose::Call);
        assert_eq!(
            c.expect,
            Expect::Decision {
                effect: Effect::Allow,
                rule: Some("tables".into())
            }
        );
    }

    #[test]
    fn users_carry_their_issuer_and_rules_name_one() {
        let bundle_text = r#"
[[rules]]
id = "corp-alice"
effect = "allow"
methods = ["ping"]
users = ["corp:alice", { issuer = "https://partner.example", subject = "carol" }]
"#;
        let tests = r#"
issuers = [{ issuer = "https://corp.example", name = "corp" }, "https://partner.example"]
[users.alice]
issuer = "corp"
[users.partner-alice]
sub = "alice"
issuer = "https://partner.example"
[users.carol]
issuer = "https://partner.example"
[[cases]]
name = "corp alice"
user = "alice"
method = "ping"
decision = "allow"
[[cases]]
name = "partner alice"
user = "partner-alice"
method = "ping"
decision = "deny"
rule = "default.deny"
[[cases]]
name = "partner carol"
user = "carol"
method = "ping"
decision = "allow"
[[cases]]
name = "inline"
user = { sub = "alice", issuer = "corp" }
method = "ping"
decision = "allow"
"#;
        let (issuers, _) = user_issuers("tests.toml", tests).unwrap();
        let b = bundle::parse_for_issuers("bundle.toml", bundle_text, Some(&issuers)).unwrap();
        let cs = parse("tests.toml", tests, &b).unwrap();
        assert_eq!(
            cs[1].identity.as_ref().map(|i| i.user.token.iss.as_str()),
            Some("https://partner.example")
        );
        for c in &cs {
            let o = run(&b.policy, c);
            assert!(o.passed, "{}: {}", c.name, o.summary);
        }
        // A user naming no issuer among several, or an unknown one; a bare subject in the
        // bundle with several issuers.
        let several = tests.replace("[users.alice]\nissuer = \"corp\"", "[users.alice]");
        let e = parse("tests.toml", &several, &b).unwrap_err();
        assert!(e.to_string().contains("users.alice.issuer"), "{e}");
        let unknown = tests.replace("issuer = \"corp\"\n", "issuer = \"acme\"\n");
        let e = parse("tests.toml", &unknown, &b).unwrap_err();
        assert!(e.to_string().contains("`acme`"), "{e}");
        let bare = bundle_text.replace("\"corp:alice\"", "\"alice\"");
        let e = bundle::parse_for_issuers("bundle.toml", &bare, Some(&issuers)).unwrap_err();
        assert!(e.to_string().contains("rules[0].users[0]"), "{e}");
        // One issuer (the default): bare subjects are that issuer's.
        let (one, _) = user_issuers("tests.toml", "").unwrap();
        let b = bundle::parse_for_issuers(
            "bundle.toml",
            &bare.replace(
                "{ issuer = \"https://partner.example\", subject = \"carol\" }",
                "\"carol\"",
            ),
            Some(&one),
        )
        .unwrap();
        let cs = parse(
            "tests.toml",
            "[[cases]]\nname = \"a\"\nuser = { sub = \"alice\" }\nmethod = \"ping\"\ndecision = \"allow\"",
            &b,
        )
        .unwrap();
        assert!(run(&b.policy, &cs[0]).passed);
    }

    #[test]
    fn times_are_rfc3339_or_local_to_the_bundle() {
        assert_eq!(parse_time("2026-01-05T09:00:00Z", "UTC"), Ok(1_767_603_600));
        assert_eq!(
            parse_time("2026-01-05T10:00:00+01:00", "UTC"),
            Ok(1_767_603_600)
        );
        assert_eq!(
            parse_time("2026-01-05T10:00:00", "Europe/Berlin"),
            Ok(1_767_603_600)
        );
        assert!(parse_time("Monday 10am", "UTC").is_err());
        assert_eq!(default_now("UTC"), Ok(1_767_607_200));
    }

    #[test]
    fn decisions_pass_and_fail_with_expected_and_got() {
        let out = run_all(
            r#"
[[cases]]
name = "echo on monday"
user = { sub = "dave" }
tool = "echo"
decision = "allow"
rule = "echo"

[[cases]]
name = "echo on saturday"
user = { sub = "dave" }
tool = "echo"
at = 2026-01-10T10:00:00+01:00
decision = "deny"
rule = "default.deny"

[[cases]]
name = "financials"
user = "alice"
agent = "bot"
tool = "query_table"
arguments = { table = "financials" }
decision = "allow"
"#,
        );
        assert!(out[0].0 && out[1].0, "{out:?}");
        assert!(!out[2].0);
        assert!(
            out[2]
                .1
                .starts_with("expected allow, got deny by no-financials ("),
            "{}",
            out[2].1
        );
    }

    #[test]
    fn visibility_cases_compare_sets() {
        let out = run_all(
            r#"
[[cases]]
name = "dave sees echo only"
user = { sub = "dave" }
tools = ["echo", "delete_file", "query_table"]
expect_visible = ["echo"]

[[cases]]
name = "alice with bot"
user = "alice"
agent = "bot"
tools = ["echo", "delete_file", "query_table"]
expect_visible = ["echo", "delete_file"]
"#,
        );
        assert_eq!(out[0], (true, "visible [echo]".to_string()));
        assert!(!out[1].0);
        // The financials deny rule has an argument condition: not assumed when listing.
        assert!(
            out[1].1.contains("`query_table` shown by tables"),
            "{}",
            out[1].1
        );
    }

    #[test]
    fn bad_cases_name_the_field_and_line() {
        let e = cases(
            "[[cases]]\nname = \"x\"\nuser = \"zoe\"\ntool = \"echo\"\ndecision = \"allow\"\n",
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("cases[0].user"));
        assert!(e.message.contains("no [users.zoe]"), "{e}");
        assert!(e.line.is_some());
        let e = cases(
            "[[cases]]\nname = \"x\"\nuser = \"alice\"\ntool = \"echo\"\ndecision = \"permit\"\n",
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("cases[0].decision"));
        let e = cases("[[cases]]\nname = \"x\"\nuser = \"alice\"\ntool = \"echo\"\ndecision = \"allow\"\nrule = \"ech\"\n")
            .unwrap_err();
        assert!(e.message.contains("`ech` is not a rule"), "{e}");
        let e = cases("[[cases]]\nname = \"x\"\nuser = \"alice\"\ntool = \"echo\"\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("cases[0].decision"));
        let e =
            cases("[[cases]]\nname = \"x\"\ntool = \"echo\"\ndecision = \"allow\"\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("cases[0].user"));
        let e = cases("[[cases]]\nname = \"x\"\nuser = \"alice\"\ntools = [\"echo\"]\nexpect_visible = [\"nope\"]\n")
            .unwrap_err();
        assert!(e.message.contains("`nope` is not in `tools`"), "{e}");
        let e = cases("[[cases]]\nname = \"x\"\nuser = \"alice\"\ntool = \"echo\"\ndecision = \"allow\"\nat = \"soon\"\n")
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("cases[0].at"));
        let e = cases("[[cases]]\nnam = \"x\"\n").unwrap_err();
        assert!(e.message.contains("unknown field `nam`"), "{e}");
        assert_eq!(e.line, Some(13));
        assert!(cases("").is_err());
    }

    #[test]
    fn anonymous_and_method_only_cases() {
        let out = run_all(
            r#"
[[cases]]
name = "anonymous list"
anonymous = true
method = "tools/list"
decision = "allow"
rule = "base"

[[cases]]
name = "listing purpose ignores argument conditions of deny rules"
user = "alice"
agent = "bot"
tool = "query_table"
purpose = "listing"
decision = "allow"
rule = "tables"
"#,
        );
        assert!(out.iter().all(|o| o.0), "{out:?}");
    }
}
