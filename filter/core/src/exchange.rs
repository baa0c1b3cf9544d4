//! RFC 8693 token exchange: the upstream never sees the user's token. For each allowed call the
//! gateway asks the security token service (STS) for a fresh, short-lived token for exactly that
//! server (audience) and tool (scopes), with the agent as actor (`act`), and caches it under a
//! SHA-256 of (subject token, actor token, audience, scopes, lifetime) until shortly before it
//! expires.
//!
//! `answer` checks the STS answer before its token goes anywhere; `flight` keeps the token
//! cache and the single flight (one exchange for concurrent requests of the same key).

mod answer;
mod flight;

pub use answer::{parse_answer, Expected, MAX_ANSWER_BYTES, MAX_TOKEN_BYTES};
pub use flight::{
    Begin, ExchangeState, Settled, TokenCache, TokenRequest, Waiter, TOKEN_CACHE_CAPACITY,
};

use crate::config::{err, ConfigError};
use crate::error::{Reason, Rejection};
use crate::jsonrpc::Target;
use jwt_simple::prelude::*;
use serde::Deserialize;
use std::collections::HashMap;

/// The `token_exchange` section of the plugin configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExchange {
    /// Envoy cluster of the STS.
    pub cluster: String,
    /// `:authority` of the STS requests (e.g. `sts.example.com`).
    pub authority: String,
    /// Token endpoint path (default `/token`).
    #[serde(default = "default_path")]
    pub path: String,
    /// Give up on the STS after this many milliseconds (default 2000, 100..=30000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// How the gateway authenticates to the STS.
    pub client_auth: RawClientAuth,
    /// `requested_token_type` (default `urn:ietf:params:oauth:token-type:access_token`; or
    /// `urn:ietf:params:oauth:token-type:jwt`): the token goes upstream as a bearer token, so
    /// only these two can be asked for, and an answer must say it issued exactly this type.
    #[serde(default = "default_token_type")]
    pub requested_token_type: String,
    /// A cached token is not reused within this many seconds of its expiry (default 5).
    #[serde(default = "default_margin")]
    pub refresh_margin_seconds: u64,
    /// Per server: audience, scopes, lifetime, or `unprotected`; and per-tool overrides.
    pub servers: HashMap<String, RawServerExchange>,
}

fn default_path() -> String {
    "/token".into()
}
fn default_timeout() -> u64 {
    2000
}
fn default_token_type() -> String {
    ACCESS_TOKEN_TYPE.into()
}

/// RFC 8693 token type of an OAuth access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The token types that can be asked for: both are sent upstream as `Bearer` tokens.
pub const BEARER_TOKEN_TYPES: [&str; 2] =
    [ACCESS_TOKEN_TYPE, "urn:ietf:params:oauth:token-type:jwt"];
fn default_margin() -> u64 {
    5
}

/// Client authentication to the STS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "method", rename_all = "snake_case")]
pub enum RawClientAuth {
    /// HTTP Basic with a client secret.
    ClientSecretBasic {
        /// Client id.
        client_id: String,
        /// Client secret: the value, or `{"env": "NAME"}` (read from Envoy's environment,
        /// see `secrets`).
        client_secret: String,
    },
    /// A signed JWT assertion (RFC 7523), ES256.
    PrivateKeyJwt {
        /// Client id.
        client_id: String,
        /// PKCS#8 PEM of the P-256 private key, or `{"env": "NAME"}` (see `secrets`).
        key_pem: String,
        /// `kid` header of the assertion.
        #[serde(default)]
        key_id: Option<String>,
        /// `aud` of the assertion: the STS issuer or token endpoint URL.
        audience: String,
    },
}

/// Exchange settings for one server, with per-tool overrides.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerExchange {
    /// `true`: no credential at all goes upstream.
    #[serde(default)]
    pub unprotected: bool,
    /// `audience` of the exchanged token (the server's resource id).
    #[serde(default)]
    pub audience: Option<String>,
    /// Scopes for requests that name no tool (initialize, lists, GET stream, …).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Requested lifetime in seconds (default 60, 1..=3600).
    #[serde(default = "default_lifetime")]
    pub lifetime_seconds: u64,
    /// Per tool: scopes / lifetime / unprotected.
    #[serde(default)]
    pub tools: HashMap<String, RawToolExchange>,
}

fn default_lifetime() -> u64 {
    60
}

/// Exchange settings for one tool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToolExchange {
    /// `true`: calls of this tool carry no credential.
    #[serde(default)]
    pub unprotected: bool,
    /// Scopes of the tool's token.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Lifetime override.
    #[serde(default)]
    pub lifetime_seconds: Option<u64>,
}

/// Compiled client authentication.
#[derive(Debug)]
pub enum ClientAuth {
    /// `Authorization: Basic …` (precomputed).
    Basic(String),
    /// Assertion signer.
    Jwt {
        /// Client id.
        client_id: String,
        /// Key.
        key: Box<ES256KeyPair>,
        /// Assertion audience.
        audience: String,
    },
}

/// What to ask the STS for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Audience.
    pub audience: String,
    /// Scopes (sorted, unique).
    pub scopes: Vec<String>,
    /// Lifetime in seconds.
    pub lifetime: u64,
}

/// The credential plan for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Nothing goes upstream.
    Unprotected,
    /// A token exchanged with these parameters.
    Exchange(Params),
}

#[derive(Debug, Clone)]
struct ToolSetting {
    unprotected: bool,
    scopes: Vec<String>,
    lifetime: Option<u64>,
}

#[derive(Debug, Clone)]
struct ServerSetting {
    unprotected: bool,
    audience: String,
    scopes: Vec<String>,
    lifetime: u64,
    tools: HashMap<String, ToolSetting>,
}

/// Compiled token exchange configuration.
#[derive(Debug)]
pub struct ExchangeConfig {
    /// STS cluster.
    pub cluster: String,
    /// STS authority.
    pub authority: String,
    /// Token endpoint path.
    pub path: String,
    /// Timeout.
    pub timeout_ms: u64,
    /// Client authentication.
    pub client_auth: ClientAuth,
    /// Requested token type.
    pub requested_token_type: String,
    /// Refresh margin.
    pub refresh_margin: u64,
    servers: HashMap<String, ServerSetting>,
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

impl RawExchange {
    /// Validates and compiles (`at` is the section's path, for errors).
    pub fn compile(self, at: &str) -> Result<ExchangeConfig, ConfigError> {
        let f = |n: &str| format!("{at}.{n}");
        if self.cluster.trim().is_empty() {
            return Err(err(&f("cluster"), "must name the STS cluster"));
        }
        if self.authority.trim().is_empty() || self.authority.contains(char::is_whitespace) {
            return Err(err(&f("authority"), "must be a host[:port]"));
        }
        if !self.path.starts_with('/') {
            return Err(err(&f("path"), "must start with `/`"));
        }
        if !(100..=30_000).contains(&self.timeout_ms) {
            return Err(err(&f("timeout_ms"), "must be between 100 and 30000"));
        }
        if !BEARER_TOKEN_TYPES.contains(&self.requested_token_type.as_str()) {
            return Err(err(
                &f("requested_token_type"),
                format!(
                    "must be one of {}: the issued token goes upstream as a bearer token",
                    BEARER_TOKEN_TYPES.join(", ")
                ),
            ));
        }
        let client_auth = match self.client_auth {
            RawClientAuth::ClientSecretBasic {
                client_id,
                client_secret,
            } => {
                use base64::Engine;
                let pair = format!(
                    "{}:{}",
                    form_encode(&client_id),
                    form_encode(&client_secret)
                );
                ClientAuth::Basic(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            RawClientAuth::PrivateKeyJwt {
                client_id,
                key_pem,
                key_id,
                audience,
            } => {
                let mut key = ES256KeyPair::from_pem(&key_pem).map_err(|e| {
                    err(
                        &f("client_auth.key_pem"),
                        format!("not a P-256 PKCS#8 PEM key: {e}"),
                    )
                })?;
                if let Some(kid) = key_id {
                    key = key.with_key_id(&kid);
                }
                ClientAuth::Jwt {
                    client_id,
                    key: Box::new(key),
                    audience,
                }
            }
        };
        let mut servers = HashMap::new();
        for (name, s) in self.servers {
            let sf = |n: &str| format!("{at}.servers.{name}.{n}");
            if !(1..=3600).contains(&s.lifetime_seconds) {
                return Err(err(&sf("lifetime_seconds"), "must be between 1 and 3600"));
            }
            let audience = match (&s.audience, s.unprotected) {
                (Some(a), _) if !a.trim().is_empty() => a.clone(),
                (_, true) => String::new(),
                _ => {
                    return Err(err(
                        &sf("audience"),
                        "a protected server needs the audience of its tokens",
                    ))
                }
            };
            let mut tools = HashMap::new();
            for (tool, t) in s.tools {
                if let Some(l) = t.lifetime_seconds {
                    if !(1..=3600).contains(&l) {
                        return Err(err(
                            &sf(&format!("tools.{tool}.lifetime_seconds")),
                            "must be between 1 and 3600",
                        ));
                    }
                }
                if !t.unprotected && s.unprotected {
                    return Err(err(
                        &sf(&format!("tools.{tool}")),
                        "an unprotected server cannot have protected tools",
                    ));
                }
                tools.insert(
                    tool,
                    ToolSetting {
                        unprotected: t.unprotected,
                        scopes: sorted(t.scopes),
                        lifetime: t.lifetime_seconds,
                    },
                );
            }
            servers.insert(
                name,
                ServerSetting {
                    unprotected: s.unprotected,
                    audience,
                    scopes: sorted(s.scopes),
                    lifetime: s.lifetime_seconds,
                    tools,
                },
            );
        }
        Ok(ExchangeConfig {
            cluster: self.cluster,
            authority: self.authority,
            path: self.path,
            timeout_ms: self.timeout_ms,
            client_auth,
            requested_token_type: self.requested_token_type,
            refresh_margin: self.refresh_margin_seconds,
            servers,
        })
    }
}

impl ExchangeConfig {
    /// Names of the configured servers.
    pub fn server_names(&self) -> impl Iterator<Item = &str> {
        self.servers.keys().map(String::as_str)
    }

    /// The credential plan for a request to `server` naming `target`.
    pub fn plan(&self, server: &str, target: &Target) -> Result<Grant, Rejection> {
        let Some(s) = self.servers.get(server) else {
            return Err(Rejection::new(
                Reason::ExchangeRefused,
                format!("no token exchange is configured for server `{server}`"),
            )
            .with_rule("exchange.unknown_server"));
        };
        if s.unprotected {
            return Ok(Grant::Unprotected);
        }
        let (scopes, lifetime) = match target {
            Target::Tool(t) => match s.tools.get(t) {
                Some(ts) if ts.unprotected => return Ok(Grant::Unprotected),
                Some(ts) => (ts.scopes.clone(), ts.lifetime.unwrap_or(s.lifetime)),
                None => (s.scopes.clone(), s.lifetime),
            },
            _ => (s.scopes.clone(), s.lifetime),
        };
        Ok(Grant::Exchange(Params {
            audience: s.audience.clone(),
            scopes,
            lifetime,
        }))
    }
}

/// The cache key: SHA-256 over the inputs, so raw tokens are never kept as keys.
pub fn cache_key(subject: &str, actor: Option<&str>, p: &Params) -> [u8; 32] {
    let mut h = hmac_sha256::Hash::new();
    for part in [
        subject,
        actor.unwrap_or_default(),
        &p.audience,
        &p.scopes.join(" "),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update(p.lifetime.to_le_bytes());
    h.finalize()
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An HTTP call to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsCall {
    /// Envoy cluster.
    pub cluster: String,
    /// Headers, pseudo-headers included.
    pub headers: Vec<(String, String)>,
    /// Form body.
    pub body: Vec<u8>,
    /// Timeout.
    pub timeout_ms: u64,
}

/// Builds the RFC 8693 request. The client assertion's `jti` is random (`nonce` is mixed in).
pub fn build_call(
    cfg: &ExchangeConfig,
    subject: &str,
    actor: Option<&str>,
    p: &Params,
    now: u64,
    nonce: u64,
) -> Result<StsCall, Rejection> {
    let mut form = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange".to_string(),
        ),
        ("subject_token", subject.to_string()),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:access_token".to_string(),
        ),
        ("audience", p.audience.clone()),
        ("requested_token_type", cfg.requested_token_type.clone()),
        ("requested_lifetime", p.lifetime.to_string()),
    ];
    if !p.scopes.is_empty() {
        form.push(("scope", p.scopes.join(" ")));
    }
    if let Some(a) = actor {
        form.push(("actor_token", a.to_string()));
        form.push((
            "actor_token_type",
            "urn:ietf:params:oauth:token-type:access_token".to_string(),
        ));
    }
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), cfg.path.clone()),
        (":authority".to_string(), cfg.authority.clone()),
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("accept".to_string(), "application/json".to_string()),
    ];
    match &cfg.client_auth {
        ClientAuth::Basic(h) => headers.push(("authorization".to_string(), h.clone())),
        ClientAuth::Jwt {
            client_id,
            key,
            audience,
        } => {
            // 128 random bits: unique across workers and replicas, whose clocks and request
            // numbers (`nonce`) repeat; the token service may refuse a replayed `jti`.
            let mut random = [0u8; 16];
            getrandom::fill(&mut random).map_err(|e| {
                Rejection::new(
                    Reason::Internal,
                    format!("no random source for the client assertion's jti: {e}"),
                )
                .with_rule("exchange.client_auth")
            })?;
            let mut jti = hmac_sha256::Hash::new();
            jti.update(random);
            jti.update(now.to_le_bytes());
            jti.update(nonce.to_le_bytes());
            let jti: String = jti
                .finalize()
                .iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect();
            let mut claims = Claims::create(Duration::from_secs(60))
                .with_issuer(client_id)
                .with_subject(client_id)
                .with_audience(audience)
                .with_jwt_id(jti);
            claims.issued_at = Some(UnixTimeStamp::from_secs(now));
            claims.expires_at = Some(UnixTimeStamp::from_secs(now + 60));
            claims.invalid_before = Some(UnixTimeStamp::from_secs(now));
            let assertion = key.sign(claims).map_err(|e| {
                Rejection::new(
                    Reason::Internal,
                    format!("cannot sign the client assertion: {e}"),
                )
                .with_rule("exchange.client_auth")
            })?;
            form.push(("client_id", client_id.clone()));
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
            ));
            form.push(("client_assertion", assertion));
        }
    }
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes();
    Ok(StsCall {
        cluster: cfg.cluster.clone(),
        headers,
        body,
        timeout_ms: cfg.timeout_ms,
    })
}

/// A token issued by the STS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The access token.
    pub access_token: String,
    /// Seconds since the epoch when it expires.
    pub expires_at: u64,
}

#[cfg(test)]
mod tests;
