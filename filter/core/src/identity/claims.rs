//! The identity model: what a verified user token and a verified OIDC-A agent token say.
//!
//! Claims are read from the payload jwt_authn forwards in a header (typed JSON, each claim
//! checked against jwt_authn's metadata) or, when configured so, from the metadata alone (see
//! [`super::metadata`]); the identity facts go through the issuer's claim mapping
//! ([`super::mapping`]). A claim in the wrong type is an error, never silently dropped.

use super::config::{AgentRules, UserRules};
use super::mapping::{ClaimMapping, Fact, Issuer};
use super::metadata::{as_str, ClaimSource, HostError};
use super::payload::PayloadError;
use super::reader::{Reader, Val};

/// Why claims could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    /// The host call failed.
    Host(HostError),
    /// A claim is present but malformed.
    Malformed {
        /// Claim name (dotted for nested fields).
        claim: String,
        /// What is wrong.
        problem: String,
    },
    /// jwt_authn verified a token but did not forward its payload in this header.
    NoPayloadHeader(String),
    /// The payload header cannot be read.
    Payload(PayloadError),
    /// The payload header and jwt_authn's metadata disagree on this claim.
    Mismatch(String),
    /// The token's issuer is not one of the trusted issuers.
    UntrustedIssuer,
    /// A mapped fact the issuer must assert is absent.
    Missing {
        /// The fact (`groups`, ...).
        fact: &'static str,
        /// Its pointers, as configured.
        pointers: String,
    },
    /// A mapped fact has the wrong JSON type.
    Mistyped {
        /// The fact.
        fact: &'static str,
        /// The pointer it was read from.
        pointer: String,
        /// What it is instead.
        problem: String,
    },
}

impl ClaimError {
    pub(crate) fn malformed(claim: &str, problem: impl Into<String>) -> ClaimError {
        ClaimError::Malformed {
            claim: claim.to_string(),
            problem: problem.into(),
        }
    }
}

/// Common registered claims of any token.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TokenClaims {
    /// `iss`.
    pub iss: String,
    /// `sub`.
    pub sub: String,
    /// `aud` (a string or a list in the token; always a list here).
    pub aud: Vec<String>,
    /// `exp` (seconds since the epoch).
    pub exp: Option<f64>,
    /// `nbf`.
    pub nbf: Option<f64>,
    /// `iat`.
    pub iat: Option<f64>,
    /// `jti`.
    pub jti: Option<String>,
    /// `scope` (space-delimited string) or `scp` (list), as a list.
    pub scopes: Vec<String>,
}

/// A verified user (OIDC access token).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserClaims {
    /// Registered claims.
    pub token: TokenClaims,
    /// `groups`.
    pub groups: Vec<String>,
    /// `roles`.
    pub roles: Vec<String>,
    /// `email`.
    pub email: Option<String>,
    /// Whether the token carries OIDC-A agent claims (then it is not a user token).
    pub has_agent_claims: bool,
    /// Whether the token carries an RFC 8693 `act` claim: a token issued by an exchange for an
    /// actor (such as one this gateway sends upstream), not a user's own token.
    pub is_exchanged: bool,
}

/// One step of an OIDC-A `delegation_chain`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DelegationStep {
    /// Who recorded the delegation.
    pub iss: String,
    /// Who delegated.
    pub sub: String,
    /// To whom.
    pub aud: String,
    /// When (seconds since the epoch).
    pub delegated_at: f64,
    /// Scopes delegated.
    pub scopes: Vec<String>,
    /// Why.
    pub purpose: Option<String>,
    /// `constraints.max_duration` (seconds).
    pub max_duration: Option<f64>,
    /// `constraints.allowed_resources`.
    pub allowed_resources: Option<Vec<String>>,
    /// Names of constraints present that this gateway does not know (refused: fail closed).
    pub unknown_constraints: Vec<String>,
    /// `jti`.
    pub jti: Option<String>,
}

/// OIDC-A `agent_attestation`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attestation {
    /// `format`, e.g. `urn:ietf:params:oauth:token-type:eat`.
    pub format: String,
    /// The evidence (an EAT in JWT form for the supported format).
    pub token: String,
    /// When the attestation was made.
    pub timestamp: Option<f64>,
}

/// A verified agent (OIDC-A token).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentClaims {
    /// Registered claims.
    pub token: TokenClaims,
    /// `agent_type`.
    pub agent_type: Option<String>,
    /// `agent_model`.
    pub agent_model: Option<String>,
    /// `agent_version`.
    pub agent_version: Option<String>,
    /// `agent_provider`.
    pub agent_provider: Option<String>,
    /// `agent_instance_id`.
    pub agent_instance_id: Option<String>,
    /// `delegator_sub`.
    pub delegator_sub: Option<String>,
    /// `delegation_purpose`.
    pub delegation_purpose: Option<String>,
    /// `delegation_chain`.
    pub delegation_chain: Vec<DelegationStep>,
    /// `agent_capabilities`.
    pub capabilities: Vec<String>,
    /// `agent_trust_level`.
    pub trust_level: Option<String>,
    /// `agent_attestation`.
    pub attestation: Option<Attestation>,
}

fn token(r: &Reader<'_>, iss: String, m: &ClaimMapping) -> Result<TokenClaims, ClaimError> {
    Ok(TokenClaims {
        iss,
        sub: r.fact_str(m, Fact::Subject)?.unwrap_or_default(),
        aud: r.str_or_list("aud")?,
        exp: r.num("exp")?,
        nbf: r.num("nbf")?,
        iat: r.num("iat")?,
        jti: r.str("jti")?,
        scopes: r.fact_list(m, Fact::Scopes)?,
    })
}

/// Whether jwt_authn verified a token under `key` (its `sub` or `iss` is present).
pub fn present(source: &dyn ClaimSource, key: &str) -> Result<bool, ClaimError> {
    for claim in ["iss", "sub"] {
        if source
            .get(&[key, claim])
            .map_err(ClaimError::Host)?
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// jwt_authn's failure message for a provider (`failed_status_in_metadata`), if any.
pub fn failure(source: &dyn ClaimSource, key: &str) -> Result<Option<String>, ClaimError> {
    let raw = source.get(&[key, "message"]).map_err(ClaimError::Host)?;
    raw.map(|b| as_str(&b).map_err(|e| ClaimError::malformed("message", e.0)))
        .transpose()
}

/// A reader for the token jwt_authn verified under `key`, its `iss`, and that trusted issuer's
/// claim mapping (an issuer not trusted is refused before any mapped claim is read).
fn open<'a>(
    source: &'a dyn ClaimSource,
    key: &'a str,
    payload_header: &Option<String>,
    issuer: impl Fn(&str) -> Option<&'a Issuer>,
) -> Result<(Reader<'a>, String, &'a ClaimMapping), ClaimError> {
    let r = Reader::new(source, key, payload_header.as_deref())?;
    let iss = r.str("iss")?.unwrap_or_default();
    let m = &issuer(&iss).ok_or(ClaimError::UntrustedIssuer)?.claims;
    Ok((r, iss, m))
}

/// Reads a user token's claims, its facts through its issuer's mapping.
pub fn read_user(source: &dyn ClaimSource, rules: &UserRules) -> Result<UserClaims, ClaimError> {
    let (r, iss, m) = open(source, &rules.metadata_key, &rules.payload_header, |i| {
        rules.issuer(i)
    })?;
    let mut has_agent_claims = false;
    for claim in [
        "agent_type",
        "delegator_sub",
        "delegation_chain",
        "agent_instance_id",
    ] {
        has_agent_claims |= r.has(claim)?;
    }
    Ok(UserClaims {
        token: token(&r, iss, m)?,
        groups: r.fact_list(m, Fact::Groups)?,
        roles: r.fact_list(m, Fact::Roles)?,
        email: r.fact_str(m, Fact::Email)?,
        has_agent_claims,
        is_exchanged: r.has("act")?,
    })
}

/// Reads an agent token's claims, its facts through its issuer's mapping.
pub fn read_agent(source: &dyn ClaimSource, rules: &AgentRules) -> Result<AgentClaims, ClaimError> {
    let (r, iss, m) = open(source, &rules.metadata_key, &rules.payload_header, |i| {
        rules.issuer(i)
    })?;
    let chain = match r.get(&["delegation_chain"])? {
        None => Vec::new(),
        Some(v) => v
            .items()
            .map_err(|p| ClaimError::malformed("delegation_chain", p))?
            .iter()
            .enumerate()
            .map(|(i, s)| read_step(i, s))
            .collect::<Result<_, _>>()?,
    };
    let attestation = match r.get(&["agent_attestation"])? {
        None => None,
        Some(v) => Some(read_attestation(&v)?),
    };
    Ok(AgentClaims {
        token: token(&r, iss, m)?,
        agent_type: r.str("agent_type")?,
        agent_model: r.str("agent_model")?,
        agent_version: r.str("agent_version")?,
        agent_provider: r.str("agent_provider")?,
        agent_instance_id: r.str("agent_instance_id")?,
        delegator_sub: r.str("delegator_sub")?,
        delegation_purpose: r.str("delegation_purpose")?,
        delegation_chain: chain,
        capabilities: r.fact_list(m, Fact::Capabilities)?,
        trust_level: r.fact_str(m, Fact::TrustLevel)?,
        attestation,
    })
}

fn read_step(i: usize, v: &Val<'_>) -> Result<DelegationStep, ClaimError> {
    let name = |f: &str| format!("delegation_chain[{i}].{f}");
    let fields = v
        .entries()
        .map_err(|p| ClaimError::malformed(&format!("delegation_chain[{i}]"), p))?;
    let mut step = DelegationStep::default();
    for (k, v) in fields {
        let s = || v.str().map_err(|p| ClaimError::malformed(&name(&k), p));
        match k.as_str() {
            "iss" => step.iss = s()?,
            "sub" => step.sub = s()?,
            "aud" => step.aud = s()?,
            "delegated_at" => {
                step.delegated_at = v.num().map_err(|p| ClaimError::malformed(&name(&k), p))?
            }
            "scope" => step.scopes = s()?.split_ascii_whitespace().map(str::to_string).collect(),
            "purpose" => step.purpose = Some(s()?),
            "jti" => step.jti = Some(s()?),
            "constraints" => {
                let at = |c: &str| name(&format!("constraints.{c}"));
                let entries = v
                    .entries()
                    .map_err(|p| ClaimError::malformed(&name("constraints"), p))?;
                for (ck, cv) in entries {
                    match ck.as_str() {
                        "max_duration" => {
                            step.max_duration =
                                Some(cv.num().map_err(|p| ClaimError::malformed(&at(&ck), p))?)
                        }
                        "allowed_resources" => {
                            step.allowed_resources = Some(
                                cv.str_list()
                                    .map_err(|p| ClaimError::malformed(&at(&ck), p))?,
                            )
                        }
                        _ => step.unknown_constraints.push(ck),
                    }
                }
            }
            _ => {}
        }
    }
    Ok(step)
}

fn read_attestation(v: &Val<'_>) -> Result<Attestation, ClaimError> {
    let mut a = Attestation::default();
    let entries = v
        .entries()
        .map_err(|p| ClaimError::malformed("agent_attestation", p))?;
    for (k, v) in entries {
        let field = format!("agent_attestation.{k}");
        let bad = |p: String| ClaimError::malformed(&field, p);
        match k.as_str() {
            "format" => a.format = v.str().map_err(bad)?,
            "token" => a.token = v.str().map_err(bad)?,
            "timestamp" => a.timestamp = Some(v.num().map_err(bad)?),
            _ => {}
        }
    }
    Ok(a)
}

/// A [`ClaimSource`] over JSON payloads, encoded the way Envoy encodes them (for tests).
#[cfg(any(test, feature = "test-support"))]
pub struct JsonClaims(pub Vec<(String, serde_json::Value)>);

#[cfg(any(test, feature = "test-support"))]
impl ClaimSource for JsonClaims {
    fn get(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        let Some((first, rest)) = path.split_first() else {
            return Ok(None);
        };
        let Some((_, root)) = self.0.iter().find(|(k, _)| k == first) else {
            return Ok(None);
        };
        let mut v: &serde_json::Value = root;
        for p in rest {
            match v.get(p) {
                Some(next) => v = next,
                None => return Ok(None),
            }
        }
        // Envoy cannot serialise a null for proxy-wasm: the read fails.
        if super::payload::has_null(v) {
            return Err(HostError("SerializationFailure".into()));
        }
        Ok(Some(super::metadata::encode::json(v)))
    }
}

#[cfg(any(test, feature = "test-support"))]
impl JsonClaims {
    /// The payload headers jwt_authn would forward for these payloads (`user` and `agent`
    /// under their default header names).
    pub fn payload_headers(&self) -> Vec<(String, Vec<u8>)> {
        let header = |k: &str| match k {
            "user" => Some("x-warden-user-payload"),
            "agent" => Some("x-warden-agent-payload"),
            _ => None,
        };
        self.0
            .iter()
            .filter_map(|(k, v)| Some((header(k)?.to_string(), super::payload::encode(v))))
            .collect()
    }

    /// `headers` with [`JsonClaims::payload_headers`] added, as jwt_authn hands a request on.
    pub fn with_payloads(&self, headers: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
        let mut all = headers.to_vec();
        all.extend(self.payload_headers());
        all
    }
}

#[cfg(test)]
mod tests;
