//! Policy configuration as operators write it (TOML bundles in `policies/`, or JSON in the
//! plugin config: the same serde structures) and its compilation into [`super::Policy`].

use super::matcher::{ArgCondition, ArgOp, Glob, Globs, TimeWindow};
use super::users::{self, RawUser};
use super::{Effect, Policy, Rule};
use crate::config::{err, ConfigError};
use crate::identity::mapping::Issuer;
use crate::registry::{Registry, RegistryTool, ServerEntry, ToolStatus};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// A policy bundle: servers with their tool registry, and rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Time zone for rules' `when` windows that name none (IANA name, default `UTC`).
    #[serde(default = "default_tz")]
    pub timezone: String,
    /// Trust levels from lowest to highest, for `min_trust_level` (default low, medium, high).
    #[serde(default = "default_trust_levels")]
    pub trust_levels: Vec<String>,
    /// The MCP servers behind the gateway and their tool registries.
    #[serde(default)]
    pub servers: Vec<RawServer>,
    /// The rules. Deny beats allow; a request no rule allows is denied.
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

fn default_tz() -> String {
    "UTC".into()
}
fn default_trust_levels() -> Vec<String> {
    vec!["low".into(), "medium".into(), "high".into()]
}

/// One MCP server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Server name, used by rules' `servers` and by routing.
    pub name: String,
    /// The server's MCP endpoint, e.g. `/mcp`: only this exact path (a query string aside) is
    /// MCP; any other path is refused (`unknown_endpoint`). A normalised absolute path: no
    /// trailing `/`, empty, `.` or `..` segments, `%`, `;`, `?` or `#`.
    pub path: String,
    /// Registered tools. A tool not listed here is invisible and uncallable.
    #[serde(default)]
    pub tools: Vec<RawTool>,
}

/// A registry entry for one tool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTool {
    /// Tool name as the server publishes it.
    pub name: String,
    /// `registered` (known, not yet usable), `approved` or `retired`.
    pub status: String,
    /// Groups the tool is approved for (`"*"`: every authenticated user).
    #[serde(default)]
    pub approved_for: Vec<String>,
    /// Version label of the approved definition (informational, shown in audits).
    #[serde(default)]
    pub version: Option<String>,
    /// Pinned definition hash (`sha256:<hex>`, from `warden pin`); a live definition with
    /// another hash is withheld and its calls refused.
    #[serde(default)]
    pub hash: Option<String>,
}

/// One rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Unique id, reported in decisions, errors and audit records.
    pub id: String,
    /// What the rule is for.
    #[serde(default)]
    pub description: String,
    /// `allow` or `deny`.
    pub effect: String,
    /// Server names (globs). Empty: any server.
    #[serde(default)]
    pub servers: Vec<String>,
    /// JSON-RPC methods (globs, e.g. `tools/list`, `notifications/*`). Empty: any method the
    /// other target fields imply (`tools/call` with `tools`, `prompts/get` with `prompts`,
    /// `resources/read|subscribe|unsubscribe` with `resources`), else any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Tool names (globs).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Resource URIs (path globs: `*` and `?` do not match `/`, `**` matches anything, so
    /// `file:///srv/shared/*` is the files directly in that directory and
    /// `file:///srv/shared/**` everything below it). A `completion/complete` of a
    /// `ref/resource` is matched on its URI template.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Prompt names (globs).
    #[serde(default)]
    pub prompts: Vec<String>,
    /// Users (any of), each an (issuer, subject) pair: `"subject"` (only with exactly one user
    /// issuer), `"<issuer name>:subject"` or `{issuer = "<URL or name>", subject = "…"}`.
    #[serde(default)]
    pub users: Vec<RawUser>,
    /// User groups (any of).
    #[serde(default)]
    pub groups: Vec<String>,
    /// User roles (any of).
    #[serde(default)]
    pub roles: Vec<String>,
    /// User token scopes (all of).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Agent types (any of).
    #[serde(default)]
    pub agent_types: Vec<String>,
    /// Agent providers (any of).
    #[serde(default)]
    pub agent_providers: Vec<String>,
    /// Agent models (globs, any of).
    #[serde(default)]
    pub agent_models: Vec<String>,
    /// Agent capabilities (all of).
    #[serde(default)]
    pub agent_capabilities: Vec<String>,
    /// Lowest agent trust level (one of `trust_levels`).
    #[serde(default)]
    pub min_trust_level: Option<String>,
    /// Highest agent trust level (one of `trust_levels`): matches agents at or below it, and
    /// agents whose trust level is missing or not one of `trust_levels` (for `deny` rules about
    /// low-trust agents: `max_trust_level = "low"`).
    #[serde(default)]
    pub max_trust_level: Option<String>,
    /// Longest delegation chain.
    #[serde(default)]
    pub max_delegation_depth: Option<usize>,
    /// Conditions on the call's arguments (all of).
    #[serde(default)]
    pub arguments: Vec<RawArgument>,
    /// A time window.
    #[serde(default)]
    pub when: Option<RawWhen>,
}

/// A condition on one argument, by JSON Pointer into the call's `arguments`.
/// Exactly one operator must be given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArgument {
    /// JSON Pointer (RFC 6901), e.g. `/table` or `/filters/0/column`.
    pub path: String,
    /// The value equals this JSON value.
    #[serde(default)]
    pub equals: Option<Value>,
    /// The value equals one of these.
    #[serde(default)]
    pub one_of: Option<Vec<Value>>,
    /// The value is a string starting with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The value is a string matching this regular expression (regex-lite syntax; anchor it).
    #[serde(default)]
    pub regex: Option<String>,
    /// The value is a number ≥ this.
    #[serde(default)]
    pub min: Option<f64>,
    /// The value is a number ≤ this.
    #[serde(default)]
    pub max: Option<f64>,
    /// `true`: the argument must be absent; `false`: present.
    #[serde(default)]
    pub absent: Option<bool>,
}

/// A time window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWhen {
    /// Days (`mon` … `sun`). Empty: every day.
    #[serde(default)]
    pub weekdays: Vec<String>,
    /// `HH:MM-HH:MM`, start inclusive, end exclusive; may wrap midnight.
    #[serde(default)]
    pub hours: Option<String>,
    /// IANA time zone (default: the bundle's).
    #[serde(default)]
    pub timezone: Option<String>,
}

impl RawPolicy {
    /// Validates and compiles without an identity section: `users` entries are checked for
    /// form only and match nobody (see [`users`]). `at` is the policy's path in the config.
    pub fn compile(self, at: &str) -> Result<Policy, ConfigError> {
        self.compile_for(at, None)
    }

    /// Validates and compiles; `users` entries are resolved against the user issuers
    /// (`identity.user.issuers`; `None`: no identity section). `at` is the policy's path in
    /// the config, for error messages.
    pub fn compile_for(
        self,
        at: &str,
        user_issuers: Option<&[Issuer]>,
    ) -> Result<Policy, ConfigError> {
        let tz_default = self.timezone.clone();
        jiff::tz::TimeZone::get(&tz_default).map_err(|_| {
            err(
                &format!("{at}.timezone"),
                format!("unknown time zone `{tz_default}`"),
            )
        })?;
        if self.trust_levels.is_empty() {
            return Err(err(
                &format!("{at}.trust_levels"),
                "must list at least one level",
            ));
        }
        let registry = compile_registry(self.servers, at)?;
        let mut rules = Vec::with_capacity(self.rules.len());
        let mut ids: HashMap<String, usize> = HashMap::new();
        for (i, r) in self.rules.into_iter().enumerate() {
            let f = format!("{at}.rules[{i}]");
            if r.id.trim().is_empty() {
                return Err(err(&format!("{f}.id"), "must not be empty"));
            }
            if let Some(j) = ids.insert(r.id.clone(), i) {
                return Err(err(
                    &format!("{f}.id"),
                    format!("`{}` is also the id of rules[{j}]", r.id),
                ));
            }
            rules.push(compile_rule(
                r,
                &f,
                &tz_default,
                &self.trust_levels,
                &registry,
                user_issuers,
            )?);
        }
        Ok(Policy::new(rules, registry, self.trust_levels))
    }
}

fn compile_registry(servers: Vec<RawServer>, at: &str) -> Result<Registry, ConfigError> {
    let mut out = Vec::with_capacity(servers.len());
    for (i, s) in servers.into_iter().enumerate() {
        let f = format!("{at}.servers[{i}]");
        if s.name.trim().is_empty() || s.name.contains(char::is_whitespace) {
            return Err(err(
                &format!("{f}.name"),
                "must be a non-empty name without spaces",
            ));
        }
        if out.iter().any(|e: &ServerEntry| e.name == s.name) {
            return Err(err(
                &format!("{f}.name"),
                format!("server `{}` is defined twice", s.name),
            ));
        }
        if let Err(why) = crate::registry::check_endpoint_path(&s.path) {
            return Err(err(&format!("{f}.path"), why));
        }
        if let Some(other) = out.iter().find(|e: &&ServerEntry| e.path == s.path) {
            return Err(err(
                &format!("{f}.path"),
                format!(
                    "`{}` is already the endpoint of server `{}`",
                    s.path, other.name
                ),
            ));
        }
        let mut tools: HashMap<String, RegistryTool> = HashMap::new();
        for (j, t) in s.tools.into_iter().enumerate() {
            let tf = format!("{f}.tools[{j}]");
            let status = match t.status.as_str() {
                "registered" => ToolStatus::Registered,
                "approved" => ToolStatus::Approved,
                "retired" => ToolStatus::Retired,
                other => {
                    return Err(err(
                        &format!("{tf}.status"),
                        format!("`{other}` is not registered, approved or retired"),
                    ))
                }
            };
            if let Some(h) = &t.hash {
                let hex = h.strip_prefix("sha256:").unwrap_or_default();
                if hex.len() != 64
                    || !hex
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                {
                    return Err(err(
                        &format!("{tf}.hash"),
                        "must be `sha256:` followed by 64 lower-case hex digits",
                    ));
                }
            }
            if status == ToolStatus::Approved && t.approved_for.is_empty() {
                return Err(err(
                    &format!("{tf}.approved_for"),
                    "an approved tool must be approved for at least one group (or \"*\")",
                ));
            }
            if tools.contains_key(&t.name) {
                return Err(err(
                    &format!("{tf}.name"),
                    format!("tool `{}` is listed twice", t.name),
                ));
            }
            tools.insert(
                t.name.clone(),
                RegistryTool {
                    name: t.name,
                    status,
                    approved_for: t.approved_for,
                    version: t.version,
                    hash: t.hash,
                },
            );
        }
        out.push(ServerEntry {
            name: s.name,
            path: s.path,
            tools,
        });
    }
    Ok(Registry::new(out))
}

fn globs(f: &str, name: &str, list: Vec<String>) -> Result<Globs, ConfigError> {
    compile_globs(f, name, list, Glob::new)
}

fn compile_globs(
    f: &str,
    name: &str,
    list: Vec<String>,
    glob: fn(&str) -> Result<Glob, String>,
) -> Result<Globs, ConfigError> {
    list.into_iter()
        .enumerate()
        .map(|(i, g)| glob(&g).map_err(|e| err(&format!("{f}.{name}[{i}]"), e)))
        .collect::<Result<Vec<_>, _>>()
        .map(Globs::new)
}

fn compile_rule(
    r: RawRule,
    f: &str,
    tz_default: &str,
    trust_levels: &[String],
    registry: &Registry,
    user_issuers: Option<&[Issuer]>,
) -> Result<Rule, ConfigError> {
    let effect = match r.effect.as_str() {
        "allow" => Effect::Allow,
        "deny" => Effect::Deny,
        other => {
            return Err(err(
                &format!("{f}.effect"),
                format!("`{other}` is not allow or deny"),
            ))
        }
    };
    for (i, s) in r.servers.iter().enumerate() {
        if !s.contains('*') && registry.server(s).is_none() {
            return Err(err(
                &format!("{f}.servers[{i}]"),
                format!("no server named `{s}`"),
            ));
        }
    }
    let min_trust_rank = match &r.min_trust_level {
        None => None,
        Some(l) => Some(trust_levels.iter().position(|t| t == l).ok_or_else(|| {
            err(
                &format!("{f}.min_trust_level"),
                format!("`{l}` is not one of trust_levels"),
            )
        })?),
    };
    let max_trust_rank = match &r.max_trust_level {
        None => None,
        Some(l) => Some(trust_levels.iter().position(|t| t == l).ok_or_else(|| {
            err(
                &format!("{f}.max_trust_level"),
                format!("`{l}` is not one of trust_levels"),
            )
        })?),
    };
    if let (Some(lo), Some(hi)) = (min_trust_rank, max_trust_rank) {
        if lo > hi {
            return Err(err(
                &format!("{f}.min_trust_level"),
                "min_trust_level is above max_trust_level",
            ));
        }
    }
    let mut arguments = Vec::with_capacity(r.arguments.len());
    for (i, a) in r.arguments.into_iter().enumerate() {
        arguments.push(compile_argument(a, &format!("{f}.arguments[{i}]"))?);
    }
    if !arguments.is_empty() && r.tools.is_empty() && r.prompts.is_empty() {
        return Err(err(
            &format!("{f}.arguments"),
            "argument conditions need `tools` or `prompts`",
        ));
    }
    let when = match r.when {
        None => None,
        Some(w) => Some(
            TimeWindow::new(
                &w.weekdays,
                w.hours.as_deref(),
                w.timezone.as_deref().unwrap_or(tz_default),
            )
            .map_err(|(field, e)| err(&format!("{f}.when.{field}"), e))?,
        ),
    };
    let mut methods = globs(f, "methods", r.methods)?;
    if methods.is_empty() {
        let implied: &[&str] = if !r.tools.is_empty() {
            &["tools/call"]
        } else if !r.prompts.is_empty() {
            &["prompts/get"]
        } else if !r.resources.is_empty() {
            &[
                "resources/read",
                "resources/subscribe",
                "resources/unsubscribe",
            ]
        } else {
            &[]
        };
        methods = Globs::new(implied.iter().filter_map(|m| Glob::new(m).ok()).collect());
    }
    Ok(Rule {
        id: r.id,
        description: r.description,
        effect,
        servers: globs(f, "servers", r.servers)?,
        methods,
        tools: globs(f, "tools", r.tools)?,
        resources: compile_globs(f, "resources", r.resources, Glob::path)?,
        prompts: globs(f, "prompts", r.prompts)?,
        users: users::resolve(r.users, user_issuers, &format!("{f}.users"))?,
        groups: r.groups,
        roles: r.roles,
        scopes: r.scopes,
        agent_types: r.agent_types,
        agent_providers: r.agent_providers,
        agent_models: globs(f, "agent_models", r.agent_models)?,
        agent_capabilities: r.agent_capabilities,
        min_trust_rank,
        max_trust_rank,
        max_delegation_depth: r.max_delegation_depth,
        arguments,
        when,
    })
}

fn compile_argument(a: RawArgument, f: &str) -> Result<ArgCondition, ConfigError> {
    if !(a.path.is_empty() || a.path.starts_with('/')) {
        return Err(err(
            &format!("{f}.path"),
            "must be a JSON Pointer (empty or starting with `/`)",
        ));
    }
    let mut ops = Vec::new();
    if let Some(v) = a.equals {
        ops.push(ArgOp::Equals(v));
    }
    if let Some(v) = a.one_of {
        ops.push(ArgOp::OneOf(v));
    }
    if let Some(p) = a.prefix {
        ops.push(ArgOp::Prefix(p));
    }
    if let Some(r) = a.regex {
        let re = regex::Regex::new(&r)
            .map_err(|e| err(&format!("{f}.regex"), format!("invalid regex: {e}")))?;
        ops.push(ArgOp::Regex(Box::new(re)));
    }
    if a.min.is_some() || a.max.is_some() {
        if let (Some(lo), Some(hi)) = (a.min, a.max) {
            if lo > hi {
                return Err(err(&format!("{f}.min"), "min is greater than max"));
            }
        }
        ops.push(ArgOp::Range(a.min, a.max));
    }
    if let Some(b) = a.absent {
        ops.push(ArgOp::Absent(b));
    }
    match ops.len() {
        1 => Ok(ArgCondition {
            path: a.path,
            op: ops.remove(0),
        }),
        0 => Err(err(
            f,
            "needs one operator: equals, one_of, prefix, regex, min/max or absent",
        )),
        _ => Err(err(
            f,
            "has more than one operator; write one condition per operator",
        )),
    }
}
