//! Identity configuration: raw (what operators write) and compiled (what runs).

use super::attestation::{AttestationRules, AttesterKey};
use super::delegation::ChainRules;
use super::mapping::{compile_issuers, Issuer, RawIssuer, TokenKind};
use crate::config::{err, ConfigError};
use serde::Deserialize;
use serde_json::{json, Value};

/// The `identity` section of the plugin configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// The protected resource this gateway fronts (RFC 9728); also the audience tokens must carry
    /// unless `user.audiences` / `agent.audiences` say otherwise.
    pub protected_resource: RawProtectedResource,
    /// Rules for the user's access token.
    pub user: RawUserRules,
    /// Rules for the agent's OIDC-A token; omit to accept calls without an agent.
    #[serde(default)]
    pub agent: Option<RawAgentRules>,
    /// Headers the filter sets upstream with the verified identity. Any copy the client sent is
    /// removed first, whether or not the value is then set.
    #[serde(default)]
    pub upstream_headers: RawUpstreamHeaders,
    /// Clock skew tolerated when checking times, in seconds (default 30, at most 300).
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u64,
}

fn default_skew() -> u64 {
    30
}

/// RFC 9728 protected resource metadata, served by the filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProtectedResource {
    /// The resource identifier, an absolute URL such as `https://mcp.example.com/mcp`.
    pub resource: String,
    /// Authorization servers (issuer URLs) clients should get tokens from.
    pub authorization_servers: Vec<String>,
    /// Scopes clients may request (optional in the document).
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Human-readable name of the resource (optional).
    #[serde(default)]
    pub resource_name: Option<String>,
}

/// Rules for the user token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUserRules {
    /// jwt_authn `payload_in_metadata` name of the user provider (default `user`).
    #[serde(default = "default_user_key")]
    pub metadata_key: String,
    /// jwt_authn `failed_status_in_metadata` name of the user provider (default `user_failure`).
    #[serde(default = "default_user_failure_key")]
    pub failure_metadata_key: String,
    /// Header carrying the user token; removed before the request goes upstream
    /// (default `authorization`).
    #[serde(default = "default_user_header")]
    pub token_header: String,
    /// Header in which jwt_authn forwards the verified payload (its provider's
    /// `forward_payload_header`), read for the claims with their JSON types and removed before
    /// the request goes upstream (default `x-warden-user-payload`). `null`: read the claims
    /// from jwt_authn's metadata instead (weaker: Envoy's encoding does not say a claim's type).
    #[serde(default = "some_user_payload")]
    pub payload_header: Option<String>,
    /// Trusted issuers (at least one): each an `iss` URL with the default claim names, or
    /// `{"issuer", "name", "claims"}` (see README "Claim mapping").
    pub issuers: Vec<RawIssuer>,
    /// Accepted `aud` values (default: the protected resource).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Scopes every call needs; a token without them gets 403 `insufficient_scope`.
    #[serde(default)]
    pub required_scopes: Vec<String>,
}

/// Rules for the agent token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgentRules {
    /// jwt_authn `payload_in_metadata` name of the agent provider (default `agent`).
    #[serde(default = "default_agent_key")]
    pub metadata_key: String,
    /// jwt_authn `failed_status_in_metadata` name of the agent provider (default `agent_failure`).
    #[serde(default = "default_agent_failure_key")]
    pub failure_metadata_key: String,
    /// Header carrying the agent token; removed before the request goes upstream
    /// (default `x-agent-token`).
    #[serde(default = "default_agent_header")]
    pub token_header: String,
    /// Header in which jwt_authn forwards the verified agent payload (default
    /// `x-warden-agent-payload`; `null`: jwt_authn's metadata, weaker). See
    /// [`RawUserRules::payload_header`].
    #[serde(default = "some_agent_payload")]
    pub payload_header: Option<String>,
    /// Trusted issuers (at least one): each an `iss` URL with the default claim names, or
    /// `{"issuer", "name", "claims"}` (see README "Claim mapping").
    pub issuers: Vec<RawIssuer>,
    /// Accepted `aud` values (default: the protected resource).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accepted `agent_type` values (empty: any).
    #[serde(default)]
    pub allowed_types: Vec<String>,
    /// Accepted `agent_provider` values (empty: any).
    #[serde(default)]
    pub allowed_providers: Vec<String>,
    /// Accepted `agent_model` values (empty: any).
    #[serde(default)]
    pub allowed_models: Vec<String>,
    /// Trust levels from lowest to highest (default `["low", "medium", "high"]`).
    #[serde(default = "default_trust_levels")]
    pub trust_levels: Vec<String>,
    /// Lowest accepted `agent_trust_level` (one of `trust_levels`; default: no minimum).
    #[serde(default)]
    pub min_trust_level: Option<String>,
    /// Capabilities every agent needs (`agent_capabilities`).
    #[serde(default)]
    pub required_capabilities: Vec<String>,
    /// Delegation chain rules; `null` turns chain checking off (not recommended).
    #[serde(default = "default_delegation")]
    pub delegation: Option<RawDelegation>,
    /// Attestation rules; omit to accept agents without attestation.
    #[serde(default)]
    pub attestation: Option<RawAttestation>,
}

/// Delegation chain rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelegation {
    /// Longest chain accepted (default 4, 1..=16).
    #[serde(default = "default_max_chain")]
    pub max_chain_length: usize,
    /// Issuers trusted to record steps (default: the agent token issuers).
    #[serde(default)]
    pub trusted_issuers: Vec<String>,
}

/// Attestation rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAttestation {
    /// Accepted `format` values (default `["urn:ietf:params:oauth:token-type:eat"]`).
    #[serde(default = "default_formats")]
    pub formats: Vec<String>,
    /// Accepted issuers of the attestation token (at least one).
    pub issuers: Vec<String>,
    /// Public keys that may sign attestations (at least one).
    pub keys: Vec<RawKey>,
    /// Oldest accepted attestation `timestamp`, in seconds (default 300).
    #[serde(default = "default_max_age")]
    pub max_age_seconds: u64,
}

/// A public key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// `ES256` or `EdDSA`.
    pub alg: String,
    /// SPKI public key in PEM.
    pub pem: String,
}

/// Names of the identity headers set upstream (`null` to not set one; a client's copy of the
/// default name is removed all the same).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamHeaders {
    /// The user's `sub` (default `x-mcp-user`). A subject names a user only together with its
    /// issuer: servers that key anything by user read both headers.
    #[serde(default = "some_user_header")]
    pub user: Option<String>,
    /// The issuer (`iss`) of the user's token (default `x-mcp-user-issuer`).
    #[serde(default = "some_user_issuer_header")]
    pub user_issuer: Option<String>,
    /// The agent's `sub` (default `x-mcp-agent`).
    #[serde(default = "some_agent_header")]
    pub agent: Option<String>,
    /// The delegation summary `user>agent…` (default `x-mcp-delegation`).
    #[serde(default = "some_delegation_header")]
    pub delegation: Option<String>,
}

impl Default for RawUpstreamHeaders {
    fn default() -> Self {
        RawUpstreamHeaders {
            user: some_user_header(),
            user_issuer: some_user_issuer_header(),
            agent: some_agent_header(),
            delegation: some_delegation_header(),
        }
    }
}

fn default_user_key() -> String {
    "user".into()
}
fn default_user_failure_key() -> String {
    "user_failure".into()
}
fn default_user_header() -> String {
    "authorization".into()
}
fn default_agent_key() -> String {
    "agent".into()
}
fn default_agent_failure_key() -> String {
    "agent_failure".into()
}
fn default_agent_header() -> String {
    "x-agent-token".into()
}
fn default_trust_levels() -> Vec<String> {
    vec!["low".into(), "medium".into(), "high".into()]
}
fn default_delegation() -> Option<RawDelegation> {
    Some(RawDelegation {
        max_chain_length: default_max_chain(),
        trusted_issuers: Vec::new(),
    })
}
fn default_max_chain() -> usize {
    4
}
fn default_formats() -> Vec<String> {
    vec!["urn:ietf:params:oauth:token-type:eat".into()]
}
fn default_max_age() -> u64 {
    300
}
/// Default names of the identity headers: user, user issuer, agent, delegation.
const DEFAULT_HEADERS: [&str; 4] = [
    "x-mcp-user",
    "x-mcp-user-issuer",
    "x-mcp-agent",
    "x-mcp-delegation",
];
fn some_user_payload() -> Option<String> {
    Some("x-warden-user-payload".into())
}
fn some_agent_payload() -> Option<String> {
    Some("x-warden-agent-payload".into())
}
fn some_user_header() -> Option<String> {
    Some(DEFAULT_HEADERS[0].into())
}
fn some_user_issuer_header() -> Option<String> {
    Some(DEFAULT_HEADERS[1].into())
}
fn some_agent_header() -> Option<String> {
    Some(DEFAULT_HEADERS[2].into())
}
fn some_delegation_header() -> Option<String> {
    Some(DEFAULT_HEADERS[3].into())
}

/// Compiled user rules.
#[derive(Debug, Clone)]
pub struct UserRules {
    /// See [`RawUserRules::metadata_key`].
    pub metadata_key: String,
    /// See [`RawUserRules::failure_metadata_key`].
    pub failure_metadata_key: String,
    /// See [`RawUserRules::token_header`].
    pub token_header: String,
    /// See [`RawUserRules::payload_header`].
    pub payload_header: Option<String>,
    /// Trusted issuers with their claim mappings.
    pub issuers: Vec<Issuer>,
    /// See [`RawUserRules::audiences`].
    pub audiences: Vec<String>,
    /// See [`RawUserRules::required_scopes`].
    pub required_scopes: Vec<String>,
}

/// Compiled agent rules.
#[derive(Debug, Clone)]
pub struct AgentRules {
    /// See [`RawAgentRules::metadata_key`].
    pub metadata_key: String,
    /// See [`RawAgentRules::failure_metadata_key`].
    pub failure_metadata_key: String,
    /// See [`RawAgentRules::token_header`].
    pub token_header: String,
    /// See [`RawAgentRules::payload_header`].
    pub payload_header: Option<String>,
    /// Trusted issuers with their claim mappings.
    pub issuers: Vec<Issuer>,
    /// See [`RawAgentRules::audiences`].
    pub audiences: Vec<String>,
    /// See [`RawAgentRules::allowed_types`].
    pub allowed_types: Vec<String>,
    /// See [`RawAgentRules::allowed_providers`].
    pub allowed_providers: Vec<String>,
    /// See [`RawAgentRules::allowed_models`].
    pub allowed_models: Vec<String>,
    /// See [`RawAgentRules::trust_levels`].
    pub trust_levels: Vec<String>,
    /// Index of `min_trust_level` in `trust_levels`.
    pub min_trust_rank: Option<usize>,
    /// See [`RawAgentRules::required_capabilities`].
    pub required_capabilities: Vec<String>,
    /// Compiled delegation rules.
    pub delegation: Option<ChainRules>,
    /// Compiled attestation rules.
    pub attestation: Option<AttestationRules>,
}

/// Compiled identity configuration.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The resource identifier.
    pub resource: String,
    /// URL of the protected resource metadata (for `WWW-Authenticate`).
    pub resource_metadata_url: std::sync::Arc<str>,
    /// Paths at which the metadata document is served.
    pub metadata_paths: Vec<String>,
    /// The metadata document.
    pub metadata_document: Value,
    /// User rules.
    pub user: UserRules,
    /// Agent rules (none: no agent required).
    pub agent: Option<AgentRules>,
    /// Header names for the user, agent and delegation summary.
    pub upstream_user: Option<String>,
    /// See [`RawUpstreamHeaders::user_issuer`].
    pub upstream_user_issuer: Option<String>,
    /// See [`RawUpstreamHeaders::agent`].
    pub upstream_agent: Option<String>,
    /// See [`RawUpstreamHeaders::delegation`].
    pub upstream_delegation: Option<String>,
    /// Clock skew in seconds.
    pub skew: u64,
}

impl UserRules {
    /// The trusted issuer whose `iss` this is.
    pub fn issuer(&self, iss: &str) -> Option<&Issuer> {
        self.issuers.iter().find(|i| i.url == iss)
    }
}

impl AgentRules {
    /// The trusted issuer whose `iss` this is.
    pub fn issuer(&self, iss: &str) -> Option<&Issuer> {
        self.issuers.iter().find(|i| i.url == iss)
    }
}

impl IdentityConfig {
    /// Headers removed from every request that carries them, before it goes upstream: the
    /// tokens and the identity headers (for one not set, `null`, its default name: a server
    /// may still read that name).
    pub fn stripped_headers(&self) -> impl Iterator<Item = &str> {
        self.token_headers().chain(self.payload_headers()).chain(
            [
                (&self.upstream_user, DEFAULT_HEADERS[0]),
                (&self.upstream_user_issuer, DEFAULT_HEADERS[1]),
                (&self.upstream_agent, DEFAULT_HEADERS[2]),
                (&self.upstream_delegation, DEFAULT_HEADERS[3]),
            ]
            .into_iter()
            .map(|(set, default)| set.as_deref().unwrap_or(default)),
        )
    }

    /// The headers jwt_authn forwards the verified payloads in: the user's, then the agent's.
    pub fn payload_headers(&self) -> impl Iterator<Item = &str> {
        self.user.payload_header.as_deref().into_iter().chain(
            self.agent
                .as_ref()
                .and_then(|a| a.payload_header.as_deref()),
        )
    }

    /// The headers carrying the presented tokens: the user's, then the agent's.
    pub fn token_headers(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.user.token_header.as_str())
            .chain(self.agent.as_ref().map(|a| a.token_header.as_str()))
    }
}

fn non_empty(field: &str, list: &[String]) -> Result<(), ConfigError> {
    if list.is_empty() {
        return Err(err(field, "must list at least one value"));
    }
    if let Some(i) = list.iter().position(|v| v.trim().is_empty()) {
        return Err(err(&format!("{field}[{i}]"), "must not be empty"));
    }
    Ok(())
}

fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(err(
            field,
            format!("`{name}` is not a lower-case HTTP header name"),
        ));
    }
    if name.starts_with(':')
        || [
            "host",
            "content-length",
            "content-type",
            "transfer-encoding",
        ]
        .contains(&name)
    {
        return Err(err(field, format!("`{name}` cannot be used")));
    }
    Ok(name.to_string())
}

/// Splits an absolute http(s) URL into (origin, path).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let scheme_len = url.len() - rest.len();
    let host_end = rest.find('/').unwrap_or(rest.len());
    if host_end == 0 || rest.contains('#') || rest.contains('?') {
        return None;
    }
    Some((&url[..scheme_len + host_end], &rest[host_end..]))
}

impl RawIdentity {
    /// Validates and compiles the identity section (`at` is its path in the config).
    pub fn compile(self, at: &str) -> Result<IdentityConfig, ConfigError> {
        let f = |name: &str| format!("{at}.{name}");
        let pr = self.protected_resource;
        let Some((origin, path)) = split_url(&pr.resource) else {
            return Err(err(
                &f("protected_resource.resource"),
                "must be an absolute http(s) URL without query or fragment",
            ));
        };
        non_empty(
            &f("protected_resource.authorization_servers"),
            &pr.authorization_servers,
        )?;
        let path = path.trim_end_matches('/');
        let well_known = "/.well-known/oauth-protected-resource";
        let resource_metadata_url = format!("{origin}{well_known}{path}");
        let mut metadata_paths = vec![format!("{well_known}{path}")];
        if !path.is_empty() {
            metadata_paths.push(well_known.to_string());
        }
        let mut doc = json!({
            "resource": pr.resource,
            "authorization_servers": pr.authorization_servers,
            "bearer_methods_supported": ["header"],
        });
        if !pr.scopes_supported.is_empty() {
            doc["scopes_supported"] = json!(pr.scopes_supported);
        }
        if let Some(name) = &pr.resource_name {
            doc["resource_name"] = json!(name);
        }
        if self.clock_skew_seconds > 300 {
            return Err(err(&f("clock_skew_seconds"), "must be at most 300"));
        }

        let u = self.user;
        let user = UserRules {
            issuers: compile_issuers(&f("user.issuers"), TokenKind::User, u.issuers)?,
            token_header: header_name(&f("user.token_header"), &u.token_header)?,
            payload_header: u
                .payload_header
                .map(|n| header_name(&f("user.payload_header"), &n))
                .transpose()?,
            metadata_key: u.metadata_key,
            failure_metadata_key: u.failure_metadata_key,
            audiences: if u.audiences.is_empty() {
                vec![pr.resource.clone()]
            } else {
                u.audiences
            },
            required_scopes: u.required_scopes,
        };
        let mut agent = match self.agent {
            None => None,
            Some(a) => Some(compile_agent(
                a,
                &f("agent"),
                &pr.resource,
                self.clock_skew_seconds,
            )?),
        };
        if let Some(a) = &mut agent {
            resolve_delegators(&user.issuers, &mut a.issuers, &f("agent.issuers"))?;
        }
        if let Some(a) = &agent {
            if a.token_header == user.token_header || a.metadata_key == user.metadata_key {
                return Err(err(
                    &f("agent"),
                    "the agent token needs its own header and metadata key",
                ));
            }
            if a.payload_header.is_some() && a.payload_header == user.payload_header {
                return Err(err(
                    &f("agent.payload_header"),
                    "the agent payload needs its own header",
                ));
            }
        }
        let tokens = [
            Some(&user.token_header),
            agent.as_ref().map(|a| &a.token_header),
        ];
        let payloads = [
            ("user", user.payload_header.as_ref()),
            (
                "agent",
                agent.as_ref().and_then(|a| a.payload_header.as_ref()),
            ),
        ];
        for (kind, p) in payloads {
            if let Some(p) = p {
                if tokens.contains(&Some(p)) {
                    return Err(err(
                        &f(&format!("{kind}.payload_header")),
                        format!("`{p}` already carries a token"),
                    ));
                }
            }
        }
        let h = self.upstream_headers;
        let hdr = |name: &str, v: Option<String>| {
            v.map(|n| header_name(&f(&format!("upstream_headers.{name}")), &n))
                .transpose()
        };
        Ok(IdentityConfig {
            resource: pr.resource.clone(),
            resource_metadata_url: resource_metadata_url.into(),
            metadata_paths,
            metadata_document: doc,
            user,
            agent,
            upstream_user: hdr("user", h.user)?,
            upstream_user_issuer: hdr("user_issuer", h.user_issuer)?,
            upstream_agent: hdr("agent", h.agent)?,
            upstream_delegation: hdr("delegation", h.delegation)?,
            skew: self.clock_skew_seconds,
        })
    }
}

/// Resolves each agent issuer's `delegators_from` to user issuer URLs (names looked up in the
/// user issuers); not given: the agent issuer itself.
fn resolve_delegators(
    users: &[Issuer],
    agents: &mut [Issuer],
    at: &str,
) -> Result<(), ConfigError> {
    for (i, a) in agents.iter_mut().enumerate() {
        let resolved = match a.delegators_from.take() {
            // An agent issuer that is not also a user issuer then speaks for nobody: every
            // agent token of it is refused (`agent.delegator`, the detail says why).
            None => {
                vec![a.url.clone()]
            }
            Some(list) => {
                let field = format!("{at}[{i}].delegators_from");
                if list.is_empty() {
                    return Err(err(&field, "must list at least one user issuer"));
                }
                let mut urls: Vec<String> = Vec::with_capacity(list.len());
                for (j, entry) in list.iter().enumerate() {
                    let Some(u) = users
                        .iter()
                        .find(|u| u.url == *entry || u.name.as_deref() == Some(entry.as_str()))
                    else {
                        return Err(err(
                            &format!("{field}[{j}]"),
                            format!("`{entry}` is not the URL or name of a user issuer"),
                        ));
                    };
                    if !urls.contains(&u.url) {
                        urls.push(u.url.clone());
                    }
                }
                urls
            }
        };
        a.delegators_from = Some(resolved);
    }
    Ok(())
}

fn compile_agent(
    a: RawAgentRules,
    at: &str,
    resource: &str,
    skew: u64,
) -> Result<AgentRules, ConfigError> {
    let f = |name: &str| format!("{at}.{name}");
    let issuers = compile_issuers(&f("issuers"), TokenKind::Agent, a.issuers)?;
    non_empty(&f("trust_levels"), &a.trust_levels)?;
    let min_trust_rank =
        match &a.min_trust_level {
            None => None,
            Some(level) => Some(a.trust_levels.iter().position(|l| l == level).ok_or_else(
                || {
                    err(
                        &f("min_trust_level"),
                        format!(
                            "`{level}` is not one of trust_levels ({})",
                            a.trust_levels.join(", ")
                        ),
                    )
                },
            )?),
        };
    let delegation = match a.delegation {
        None => None,
        Some(d) => {
            if !(1..=16).contains(&d.max_chain_length) {
                return Err(err(
                    &f("delegation.max_chain_length"),
                    "must be between 1 and 16",
                ));
            }
            Some(ChainRules {
                max_length: d.max_chain_length,
                trusted_issuers: if d.trusted_issuers.is_empty() {
                    issuers.iter().map(|i| i.url.clone()).collect()
                } else {
                    d.trusted_issuers
                },
                resource: resource.to_string(),
                skew,
            })
        }
    };
    let attestation = match a.attestation {
        None => None,
        Some(att) => {
            non_empty(&f("attestation.issuers"), &att.issuers)?;
            non_empty(&f("attestation.formats"), &att.formats)?;
            if att.keys.is_empty() {
                return Err(err(&f("attestation.keys"), "must list at least one key"));
            }
            let keys = att
                .keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    AttesterKey::from_pem(&k.alg, &k.pem)
                        .map_err(|e| err(&f(&format!("attestation.keys[{i}]")), e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(AttestationRules {
                formats: att.formats,
                issuers: att.issuers,
                keys,
                max_age: att.max_age_seconds,
                skew,
            })
        }
    };
    Ok(AgentRules {
        token_header: header_name(&f("token_header"), &a.token_header)?,
        payload_header: a
            .payload_header
            .map(|n| header_name(&f("payload_header"), &n))
            .transpose()?,
        metadata_key: a.metadata_key,
        failure_metadata_key: a.failure_metadata_key,
        audiences: if a.audiences.is_empty() {
            vec![resource.to_string()]
        } else {
            a.audiences
        },
        issuers,
        allowed_types: a.allowed_types,
        allowed_providers: a.allowed_providers,
        allowed_models: a.allowed_models,
        trust_levels: a.trust_levels,
        min_trust_rank,
        required_capabilities: a.required_capabilities,
        delegation,
        attestation,
    })
}
