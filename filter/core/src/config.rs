//! Plugin configuration: what operators write (JSON in envoy.yaml) and what runs.
//!
//! [`Config::from_json`] is called once, in `on_configure`. Unknown fields and bad values are
//! errors whose message names the field, so Envoy refuses the plugin with a useful log line.
//! Running without `identity` or `policy` takes `"mode": "open"` ([`mode`]); what the operator
//! must hear about an accepted configuration comes back in [`Config::warnings`].

use crate::exchange::{ExchangeConfig, RawExchange};
use crate::identity::{IdentityConfig, RawIdentity};
use crate::jsonrpc::CLIENT_METHODS;
use crate::policy::config::RawPolicy;
use crate::policy::Policy;
use crate::response::content::{RawResponseFilters, ResponseFilters};
use crate::routing::{RawRouting, RoutingConfig};
use crate::secrets::{self, EnvReference, Environment};
use crate::sessions::{RawSessions, SessionKeys};
use crate::transport::KNOWN_PROTOCOL_VERSIONS;
use serde::Deserialize;
use std::fmt;

pub mod mode;
pub use mode::{ConfigWarning, Mode};

/// The configuration as written by the operator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `"enforce"` (default): `identity` and `policy` are both required, a configuration without
    /// one is refused naming it. `"open"`: either may be left out, on purpose; each missing one
    /// is logged at `warn` when the filter starts (see README "Open mode").
    #[serde(default)]
    pub mode: Mode,
    /// Largest request body accepted, in bytes; larger bodies get 413. Default 1048576 (1 MiB),
    /// allowed 1..=67108864. Envoy's own buffer limit (`per_connection_buffer_limit_bytes`)
    /// must be at least this large.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Deepest JSON nesting accepted (the top-level object is depth 1). Default 64, allowed 2..=120.
    #[serde(default = "default_max_json_depth")]
    pub max_json_depth: usize,
    /// Most messages in one JSON-RPC batch (protocol 2025-03-26). Default 32, allowed 1..=1000.
    #[serde(default = "default_max_batch_messages")]
    pub max_batch_messages: usize,
    /// MCP revisions accepted in `MCP-Protocol-Version`. Default: every revision the gateway
    /// knows (2024-11-05, 2025-03-26, 2025-06-18, 2025-11-25, 2026-07-28).
    #[serde(default)]
    pub protocol_versions: Option<Vec<String>>,
    /// JSON-RPC methods forwarded besides the MCP client methods the gateway knows
    /// (for vendor extensions). Default none.
    #[serde(default)]
    pub extra_methods: Vec<String>,
    /// Refuse a request body with two keys in one object that are equal once case-folded
    /// (`name` and `Name`, `k` and the Kelvin sign `K`), at any depth, `params.arguments`
    /// included, like a key given twice (`duplicate_key`): case-insensitive decoders (Go's
    /// `encoding/json`, used by Go MCP servers) read either one, the gateway decides on one.
    /// Default true; turn off only for servers that need such keys and decode them exactly.
    #[serde(default = "default_true")]
    pub strict_keys: bool,
    /// Who may call: user and agent token rules (see README "Identity"). Required unless
    /// `"mode": "open"` (then omitting it means no identity checks: validation only).
    #[serde(default)]
    pub identity: Option<RawIdentity>,
    /// What callers may do: servers with their tool registry, and rules (see README "Policy").
    /// Required unless `"mode": "open"` (then omitting it forwards every valid request: no
    /// authorization).
    #[serde(default)]
    pub policy: Option<RawPolicy>,
    /// RFC 8693 token exchange: per server and tool, the token that goes upstream instead of
    /// the user's (see README "Token exchange"). Needs `identity` and `policy.servers`.
    #[serde(default)]
    pub token_exchange: Option<RawExchange>,
    /// Write one `mcp-warden audit {json}` line per decided request to Envoy's log at `info`
    /// (default true; like any info line it is written only while Envoy's `wasm` logger is at
    /// `info` or lower, and not even built otherwise). Turn off when Envoy's access log carries
    /// what you need.
    #[serde(default = "default_true")]
    pub audit_log: bool,
    /// Routing headers, sealed session ids bound to their instance and owner, version splits
    /// (see README "Routing"). Needs `identity` and `policy.servers`.
    #[serde(default)]
    pub routing: Option<RawRouting>,
    /// Keys sealing session ids (see README "Sessions"). Sessions are sealed and bound to
    /// their caller whenever `identity` is on; without configured keys each Envoy process uses
    /// a random key shared by its workers (replicas that share sessions need configured keys).
    /// Needs `identity`.
    #[serde(default)]
    pub sessions: Option<RawSessions>,
    /// What is changed in what servers send back: `redact` patterns, injected-instruction
    /// detection (`mark` or `block`), optionally only for some `servers` (see README "Response
    /// filters"). Omit to forward answers unchanged (lists are still filtered by the policy).
    #[serde(default)]
    pub response_filters: Option<RawResponseFilters>,
}

fn default_max_body_bytes() -> u64 {
    1024 * 1024
}
fn default_max_json_depth() -> usize {
    64
}
fn default_true() -> bool {
    true
}
fn default_max_batch_messages() -> usize {
    32
}

/// The compiled configuration the filter runs with.
#[derive(Debug)]
pub struct Config {
    /// See [`RawConfig::mode`].
    pub mode: Mode,
    /// What the adapter logs at `warn` when it loads this configuration (open mode: one per
    /// missing section). Empty for a configuration that enforces.
    pub warnings: Vec<ConfigWarning>,
    /// See [`RawConfig::max_body_bytes`].
    pub max_body_bytes: u64,
    /// See [`RawConfig::max_json_depth`].
    pub max_json_depth: usize,
    /// See [`RawConfig::max_batch_messages`].
    pub max_batch_messages: usize,
    /// See [`RawConfig::protocol_versions`].
    pub protocol_versions: Vec<String>,
    /// See [`RawConfig::extra_methods`].
    pub extra_methods: Vec<String>,
    /// See [`RawConfig::strict_keys`].
    pub strict_keys: bool,
    /// See [`RawConfig::identity`].
    pub identity: Option<IdentityConfig>,
    /// See [`RawConfig::policy`].
    pub policy: Option<Policy>,
    /// See [`RawConfig::token_exchange`].
    pub token_exchange: Option<ExchangeConfig>,
    /// See [`RawConfig::routing`].
    pub routing: Option<RoutingConfig>,
    /// Session sealing: `Some` whenever `identity` is on (see [`RawConfig::sessions`]).
    pub sessions: Option<SessionKeys>,
    /// See [`RawConfig::audit_log`].
    pub audit_log: bool,
    /// See [`RawConfig::response_filters`].
    pub response_filters: Option<ResponseFilters>,
}

/// The open configuration: no identity, no policy, every other setting at its default (what
/// `{"mode": "open"}` compiles to). For tests; a deployed filter runs
/// only what [`Config::from_json`] accepted.
impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Open,
            warnings: mode::open_warnings(false, false),
            max_body_bytes: default_max_body_bytes(),
            max_json_depth: default_max_json_depth(),
            max_batch_messages: default_max_batch_messages(),
            protocol_versions: KNOWN_PROTOCOL_VERSIONS
                .iter()
                .map(|v| v.to_string())
                .collect(),
            extra_methods: Vec::new(),
            strict_keys: true,
            identity: None,
            policy: None,
            token_exchange: None,
            routing: None,
            sessions: None,
            audit_log: true,
            response_filters: None,
        }
    }
}

/// A configuration error: the field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the offending field (`.` for the document itself).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mcp-warden configuration: field `{}`: {}",
            self.field, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// A configuration error for `field`.
pub fn err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        message: message.into(),
    }
}

impl Config {
    /// Parses and validates the plugin configuration. Empty input is read as `{}`, which is
    /// refused: it has neither `identity` nor `policy` and does not say `"mode": "open"`. A
    /// secret given as `{"env": …}` is refused as unset: see [`Config::from_json_with_env`].
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        Config::from_json_with_env(bytes, &|_| None)
    }

    /// [`Config::from_json`], with secrets given as `{"env": "NAME"}` read through `env` (the
    /// adapter: the VM's environment). An unset or empty variable refuses the configuration,
    /// naming the field and the variable.
    pub fn from_json_with_env(
        bytes: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::compile_json(bytes, Environment::Read(env)).map(|(c, _)| c)
    }

    /// For `warden check`: [`Config::from_json_with_env`], except that a variable `env` does
    /// not have is replaced by a valid placeholder; returns every `{"env": …}` reference.
    pub fn check_json(
        bytes: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Config, Vec<EnvReference>), ConfigError> {
        Config::compile_json(bytes, Environment::Check(env))
    }

    fn compile_json(
        bytes: &[u8],
        env: Environment<'_>,
    ) -> Result<(Config, Vec<EnvReference>), ConfigError> {
        let text =
            std::str::from_utf8(bytes).map_err(|_| err(".", "configuration is not UTF-8"))?;
        let text = if text.trim().is_empty() { "{}" } else { text };
        let mut value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| err(".", format!("not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(err(".", "configuration must be a JSON object"));
        }
        let references = secrets::resolve(&mut value, env)?;
        let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let field = e.path().to_string();
            err(&field, e.into_inner().to_string())
        })?;
        Ok((raw.compile()?, references))
    }
}

impl RawConfig {
    /// Validates cross-field rules and builds the runtime configuration.
    pub fn compile(mut self) -> Result<Config, ConfigError> {
        if !(1..=64 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(err(
                "max_body_bytes",
                format!(
                    "must be between 1 and 67108864, got {}",
                    self.max_body_bytes
                ),
            ));
        }
        if !(2..=120).contains(&self.max_json_depth) {
            return Err(err(
                "max_json_depth",
                format!("must be between 2 and 120, got {}", self.max_json_depth),
            ));
        }
        if !(1..=1000).contains(&self.max_batch_messages) {
            return Err(err(
                "max_batch_messages",
                format!(
                    "must be between 1 and 1000, got {}",
                    self.max_batch_messages
                ),
            ));
        }
        let protocol_versions = match self.protocol_versions {
            None => Config::default().protocol_versions,
            Some(list) => {
                if list.is_empty() {
                    return Err(err("protocol_versions", "must list at least one revision"));
                }
                for (i, v) in list.iter().enumerate() {
                    if !KNOWN_PROTOCOL_VERSIONS.contains(&v.as_str()) {
                        return Err(err(
                            &format!("protocol_versions[{i}]"),
                            format!(
                                "unknown MCP revision `{v}` (known: {})",
                                KNOWN_PROTOCOL_VERSIONS.join(", ")
                            ),
                        ));
                    }
                }
                list
            }
        };
        for (i, m) in self.extra_methods.iter().enumerate() {
            if m.is_empty() || m.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(err(
                    &format!("extra_methods[{i}]"),
                    "must be a non-empty method name without spaces",
                ));
            }
            if CLIENT_METHODS.contains(&m.as_str()) {
                return Err(err(
                    &format!("extra_methods[{i}]"),
                    format!("`{m}` is already a known MCP method"),
                ));
            }
        }
        let mode = self.mode;
        let legacy_keys = self.routing.as_mut().and_then(|r| r.session_keys.take());
        let sessions = match (self.sessions, legacy_keys) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "routing.session_keys",
                    "session keys are set in `sessions.keys`: remove this copy",
                ))
            }
            (Some(s), None) => Some(SessionKeys::from_raw(s, "sessions")?),
            (None, Some(keys)) => Some(SessionKeys::compile(keys, "routing.session_keys")?),
            (None, None) => None,
        };
        if sessions.is_some() && self.identity.is_none() {
            return Err(err(
                if self.routing.is_some() {
                    "routing"
                } else {
                    "sessions"
                },
                "needs `identity`: sessions are bound to the verified caller",
            ));
        }
        // With identity, sessions are always sealed and bound: a generated key when none is set.
        let sessions = match sessions {
            None if self.identity.is_some() => Some(SessionKeys::generated()),
            s => s,
        };
        let identity = self.identity.map(|i| i.compile("identity")).transpose()?;
        let user_issuers = identity.as_ref().map(|i| i.user.issuers.as_slice());
        let policy = self
            .policy
            .map(|p| p.compile_for("policy", user_issuers))
            .transpose()?;
        Ok(Config {
            mode,
            warnings: Vec::new(),
            max_body_bytes: self.max_body_bytes,
            max_json_depth: self.max_json_depth,
            max_batch_messages: self.max_batch_messages,
            protocol_versions,
            extra_methods: self.extra_methods,
            strict_keys: self.strict_keys,
            identity,
            policy,
            token_exchange: self
                .token_exchange
                .map(|x| x.compile("token_exchange"))
                .transpose()?,
            routing: self.routing.map(|r| r.compile("routing")).transpose()?,
            sessions,
            audit_log: self.audit_log,
            response_filters: self
                .response_filters
                .map(|r| r.compile("response_filters"))
                .transpose()?,
        })
        .and_then(check_cross_fields)
        .and_then(check_mode)
    }
}

/// Last, so a wrong field is named before a missing section: `enforce` refuses a configuration
/// without `identity` or `policy`; `open` records one warning per missing section.
fn check_mode(mut c: Config) -> Result<Config, ConfigError> {
    c.warnings = mode::check(c.mode, c.identity.is_some(), c.policy.is_some())?;
    Ok(c)
}

/// A section that works per server on verified callers needs `identity`, `policy.servers`, and
/// only names servers that exist there. Returns the policy's registry.
fn per_server_section<'a>(
    c: &'a Config,
    section: &str,
    why_identity: &str,
    names: &mut dyn Iterator<Item = &str>,
) -> Result<&'a crate::registry::Registry, ConfigError> {
    if c.identity.is_none() {
        return Err(err(section, format!("needs `identity`: {why_identity}")));
    }
    let Some(policy) = &c.policy else {
        return Err(err(section, "needs `policy.servers`: it works per server"));
    };
    for name in names {
        if policy.registry().server(name).is_none() {
            return Err(err(
                &format!("{section}.servers.{name}"),
                "no such server in policy.servers",
            ));
        }
    }
    Ok(policy.registry())
}

fn check_cross_fields(c: Config) -> Result<Config, ConfigError> {
    if let Some(servers) = c.response_filters.as_ref().and_then(|r| r.servers()) {
        let registry = c.policy.as_ref().map(|p| p.registry());
        for (i, name) in servers.iter().enumerate() {
            if registry.and_then(|r| r.server(name)).is_none() {
                return Err(err(
                    &format!("response_filters.servers[{i}]"),
                    format!("no server `{name}` in policy.servers"),
                ));
            }
        }
    }
    if let Some(r) = &c.routing {
        per_server_section(
            &c,
            "routing",
            "sessions are bound to their user and agent",
            &mut r.server_names(),
        )?;
    }
    if let Some(x) = &c.token_exchange {
        let registry = per_server_section(
            &c,
            "token_exchange",
            "the exchange trades the verified caller's tokens",
            &mut x.server_names(),
        )?;
        for s in registry.servers() {
            if !x.server_names().any(|n| n == s.name) {
                return Err(err(
                    "token_exchange.servers",
                    format!(
                        "server `{}` has no exchange settings (add it, or mark it unprotected)",
                        s.name
                    ),
                ));
            }
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn field_of(json: &str) -> String {
        Config::from_json(json.as_bytes()).unwrap_err().field
    }

    const IDENTITY: &str = r#""identity":{"protected_resource":{"resource":"http://gw/mcp","authorization_servers":["i"]},"user":{"issuers":["i"]}}"#;
    const POLICY: &str = r#""policy":{"servers":[{"name":"a","path":"/mcp"}]}"#;

    #[test]
    fn empty_config_is_refused_open_mode_means_defaults() {
        for empty in [&b""[..], b" {} ", b"{\"max_body_bytes\":4096}"] {
            let e = Config::from_json(empty).unwrap_err();
            assert_eq!(e.field, "identity", "{e}");
            assert!(e.message.contains("`policy` is missing too"), "{e}");
            assert!(e.message.contains(r#""mode": "open""#), "{e}");
        }
        let c = Config::from_json(br#"{"mode":"open"}"#).unwrap();
        assert_eq!(c.max_body_bytes, Config::default().max_body_bytes);
        assert_eq!(c.protocol_versions, Config::default().protocol_versions);
        assert!(c.identity.is_none() && c.policy.is_none());
        assert_eq!(c.mode, Mode::Open);
        assert_eq!(c.warnings, Config::default().warnings);
        let fields: Vec<&str> = c.warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(fields, ["identity", "policy"]);
    }

    #[test]
    fn enforce_is_the_default_and_needs_identity_and_policy() {
        let cfg = |body: String| Config::from_json(format!("{{{body}}}").as_bytes());
        for mode in ["", r#""mode":"enforce","#] {
            let c = cfg(format!("{mode}{IDENTITY},{POLICY}")).unwrap();
            assert_eq!(c.mode, Mode::Enforce);
            assert!(c.warnings.is_empty());
            let e = cfg(format!("{mode}{IDENTITY}")).unwrap_err();
            assert_eq!(e.field, "policy", "{e}");
            assert!(e.message.contains(r#""mode": "open""#), "{e}");
            let e = cfg(format!("{mode}{POLICY}")).unwrap_err();
            assert_eq!(e.field, "identity", "{e}");
            assert!(!e.message.contains("missing too"), "{e}");
        }
        // `null` is not a section, whatever the mode.
        assert_eq!(
            cfg(format!(r#""identity":null,{POLICY}"#))
                .unwrap_err()
                .field,
            "identity"
        );
        // Open with both sections: nothing to warn about, nothing changes.
        let c = cfg(format!(r#""mode":"open",{IDENTITY},{POLICY}"#)).unwrap();
        assert!(c.warnings.is_empty() && c.identity.is_some() && c.policy.is_some());
        let only = |section: &str| {
            cfg(format!(r#""mode":"open",{section}"#))
                .unwrap()
                .warnings
                .into_iter()
                .map(|w| w.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(only(IDENTITY), ["policy"]);
        assert_eq!(only(POLICY), ["identity"]);
        // A wrong field is named before a missing section; the mode itself is strict.
        assert_eq!(field_of(r#"{"max_body_bytes":0}"#), "max_body_bytes");
        for bad in [r#""Open""#, r#""off""#, "true", "null", r#""""#, "1"] {
            assert_eq!(field_of(&format!(r#"{{"mode":{bad}}}"#)), "mode", "{bad}");
        }
    }

    #[test]
    fn values_are_read() {
        let c = Config::from_json(br#"{"mode":"open","max_body_bytes":4096,"max_json_depth":8,"protocol_versions":["2025-06-18"],"extra_methods":["x/y"]}"#).unwrap();
        assert_eq!(c.max_body_bytes, 4096);
        assert_eq!(c.max_json_depth, 8);
        assert_eq!(c.protocol_versions, vec!["2025-06-18".to_string()]);
        assert_eq!(c.extra_methods, vec!["x/y".to_string()]);
        assert!(c.strict_keys);
        assert!(
            Config::from_json(br#"{"mode":"open"}"#)
                .unwrap()
                .strict_keys
        );
        assert!(
            !Config::from_json(br#"{"mode":"open","strict_keys":false}"#)
                .unwrap()
                .strict_keys
        );
        assert!(Config::default().strict_keys);
    }

    #[test]
    fn errors_name_the_field() {
        let e = Config::from_json(br#"{"max_body_bytes":1000,"bogus":1}"#).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        assert_eq!(field_of(r#"{"max_body_bytes":-5}"#), "max_body_bytes");
        assert_eq!(field_of(r#"{"max_body_bytes":"big"}"#), "max_body_bytes");
        assert_eq!(field_of(r#"{"max_body_bytes":0}"#), "max_body_bytes");
        assert_eq!(field_of(r#"{"max_json_depth":500}"#), "max_json_depth");
        assert_eq!(
            field_of(r#"{"max_batch_messages":0}"#),
            "max_batch_messages"
        );
        assert_eq!(field_of(r#"{"protocol_versions":[]}"#), "protocol_versions");
        assert_eq!(
            field_of(r#"{"protocol_versions":["2025-06-18","1.0"]}"#),
            "protocol_versions[1]"
        );
        assert_eq!(
            field_of(r#"{"extra_methods":["tools/call"]}"#),
            "extra_methods[0]"
        );
        assert_eq!(field_of(r#"{"extra_methods":["a b"]}"#), "extra_methods[0]");
        assert!(Config::from_json(b"[1]").is_err());
        assert!(Config::from_json(b"{").is_err());
        assert!(Config::from_json(b"\xff").is_err());
    }

    #[test]
    fn per_server_sections_need_identity_and_known_servers() {
        let key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        let (identity, policy) = (IDENTITY, POLICY);
        let routing = |servers: &str| {
            format!(
                r#""routing":{{"session_keys":[{{"id":"k","secret":"{key}"}}],"servers":{{{servers}}}}}"#
            )
        };
        let field = |body: String| field_of(&format!("{{{body}}}"));
        assert_eq!(field(routing("")), "routing");
        assert_eq!(field(format!("{identity},{}", routing(""))), "routing");
        assert_eq!(
            field(format!("{identity},{policy},{}", routing(r#""b":{}"#))),
            "routing.servers.b"
        );
        assert!(Config::from_json(
            format!("{{{identity},{policy},{}}}", routing(r#""a":{}"#)).as_bytes()
        )
        .is_ok());
        let exchange = |servers: &str| {
            format!(
                r#""token_exchange":{{"cluster":"sts","authority":"s","client_auth":{{"method":"client_secret_basic","client_id":"c","client_secret":"s"}},"servers":{{{servers}}}}}"#
            )
        };
        assert_eq!(field(exchange("")), "token_exchange");
        assert_eq!(
            field(format!("{identity},{policy},{}", exchange(""))),
            "token_exchange.servers"
        );
        assert_eq!(
            field(format!(
                "{identity},{policy},{}",
                exchange(r#""a":{"unprotected":true},"z":{"unprotected":true}"#)
            )),
            "token_exchange.servers.z"
        );
        assert!(Config::from_json(
            format!(
                "{{{identity},{policy},{}}}",
                exchange(r#""a":{"unprotected":true}"#)
            )
            .as_bytes()
        )
        .is_ok());
    }

    #[test]
    fn sessions_are_on_whenever_identity_is() {
        let key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        let identity = IDENTITY;
        let policy = POLICY;
        let cfg =
            |body: String| Config::from_json(format!(r#"{{"mode":"open",{body}}}"#).as_bytes());
        // Identity without any session setting: a generated key.
        let c = cfg(identity.to_string()).unwrap();
        assert!(c.sessions.as_ref().is_some_and(|s| s.is_generated()));
        // No identity: nothing to bind a session to.
        assert!(Config::from_json(br#"{"mode":"open"}"#)
            .unwrap()
            .sessions
            .is_none());
        let sessions = format!(r#""sessions":{{"keys":[{{"id":"k","secret":"{key}"}}]}}"#);
        assert_eq!(cfg(sessions.clone()).unwrap_err().field, "sessions");
        let c = cfg(format!("{identity},{sessions}")).unwrap();
        assert!(c.sessions.as_ref().is_some_and(|s| !s.is_generated()));
        assert!(cfg(format!(r#"{identity},"sessions":{{}}"#))
            .unwrap()
            .sessions
            .is_some_and(|s| s.is_generated()));
        // routing.session_keys still works; both places at once is refused.
        let routing = format!(r#""routing":{{"session_keys":[{{"id":"k","secret":"{key}"}}]}}"#);
        let c = cfg(format!("{identity},{policy},{routing}")).unwrap();
        assert!(c.sessions.as_ref().is_some_and(|s| !s.is_generated()));
        assert_eq!(
            cfg(format!("{identity},{policy},{routing},{sessions}"))
                .unwrap_err()
                .field,
            "routing.session_keys"
        );
        assert_eq!(
            cfg(format!(
                r#"{identity},"sessions":{{"keys":[{{"id":"k","secret":"c2hvcnQ="}}]}}"#
            ))
            .unwrap_err()
            .field,
            "sessions.keys[0].secret"
        );
        assert_eq!(
            cfg(format!(r#"{identity},"sessions":{{"key":[]}}"#))
                .unwrap_err()
                .field,
            "sessions.key"
        );
    }
}
