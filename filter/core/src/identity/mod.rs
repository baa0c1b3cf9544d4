//! Who is calling: the user (OIDC access token) and the agent (OIDC-A token).
//!
//! Envoy's `jwt_authn` verifies signatures, expiry and issuers and writes the verified payloads
//! into dynamic metadata; this module reads them from there (never from a header), then applies
//! our own claim rules: issuers, audiences, required scopes, token kind, agent type / provider /
//! model, trust level, capabilities, `delegator_sub`, the delegation chain
//! ([`delegation`]) and the attestation ([`attestation`]). Each refusal names its rule.
//! Verified identities are reused per worker through [`cache`].

pub mod attestation;
pub mod cache;
pub mod claims;
pub mod config;
pub mod delegation;
pub mod mapping;
pub mod metadata;
pub mod payload;
mod reader;

use crate::error::{Reason, Rejection};
use attestation::AttestationCache;
pub use cache::{
    authenticate_cached, valid_until, IdentityCache, IdentityKey, KeyHasher,
    IDENTITY_CACHE_CAPACITY, IDENTITY_CACHE_TTL,
};
use claims::{AgentClaims, ClaimError, TokenClaims, UserClaims};
pub use config::{IdentityConfig, RawIdentity};
use metadata::ClaimSource;
use payload::PayloadError;

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Identity {
    /// The user.
    pub user: UserClaims,
    /// The agent acting for the user (absent only when the config does not require one).
    pub agent: Option<AgentClaims>,
}

impl Identity {
    /// Whether the call carries `scope`: the user's token has it and, for a call made by an
    /// agent, the delegation grants it too: the agent token holds it and, when the token has a
    /// delegation chain, so does the chain's last step (what was delegated to this agent). The
    /// chain rules (`delegation`) already keep the agent token within the last step; this holds
    /// when they are turned off as well.
    pub fn grants_scope(&self, scope: &str) -> bool {
        let has = |list: &[String]| list.iter().any(|s| s == scope);
        if !has(&self.user.token.scopes) {
            return false;
        }
        let Some(agent) = &self.agent else {
            return true;
        };
        has(&agent.token.scopes)
            && agent
                .delegation_chain
                .last()
                .is_none_or(|step| has(&step.scopes))
    }

    /// A short description of the delegation for logs and upstream headers: `alice>agent:x`.
    pub fn delegation_summary(&self) -> String {
        self.delegation().to_string()
    }

    /// [`Identity::delegation_summary`], written where it is needed instead of into a new string.
    pub fn delegation(&self) -> Delegation<'_> {
        Delegation(self)
    }
}

/// The delegation of an [`Identity`] as text: the user, then each delegate (or the agent).
#[derive(Debug, Clone, Copy)]
pub struct Delegation<'a>(&'a Identity);

impl std::fmt::Display for Delegation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.user.token.sub)?;
        if let Some(agent) = &self.0.agent {
            for step in &agent.delegation_chain {
                f.write_str(">")?;
                f.write_str(&step.aud)?;
            }
            if agent.delegation_chain.is_empty() {
                f.write_str(">")?;
                f.write_str(&agent.token.sub)?;
            }
        }
        Ok(())
    }
}

impl serde::Serialize for Delegation<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn reject(reason: Reason, rule: &str, detail: impl Into<String>) -> Rejection {
    Rejection::new(reason, detail).with_rule(rule)
}

fn claim_error(kind: &str, e: ClaimError) -> Rejection {
    match e {
        ClaimError::Host(h) => reject(
            Reason::Internal,
            "host",
            format!("cannot read {kind} claims: {}", h.0),
        ),
        ClaimError::Malformed { claim, problem } => reject(
            Reason::InvalidToken,
            &format!("{kind}.claims"),
            format!("{kind} token claim `{claim}` is malformed: {problem}"),
        ),
        ClaimError::NoPayloadHeader(header) => reject(
            Reason::Internal,
            &format!("{kind}.payload_header"),
            format!(
                "jwt_authn verified the {kind} token but sent no `{header}` header: its provider must set forward_payload_header: {header}"
            ),
        ),
        ClaimError::Payload(PayloadError::Unreadable(why)) => reject(
            Reason::InvalidToken,
            &format!("{kind}.payload_mismatch"),
            format!("the {kind} payload header is not jwt_authn's: {why}"),
        ),
        ClaimError::Payload(PayloadError::Ambiguous(why)) => reject(
            Reason::InvalidToken,
            &format!("{kind}.claims"),
            format!("the {kind} token cannot be read: {why}"),
        ),
        ClaimError::Mismatch(claim) => reject(
            Reason::InvalidToken,
            &format!("{kind}.payload_mismatch"),
            format!(
                "the {kind} payload header and jwt_authn's verified claims disagree on `{}`",
                claim.escape_debug()
            ),
        ),
        ClaimError::UntrustedIssuer => reject(
            Reason::InvalidToken,
            &format!("{kind}.issuer"),
            format!("{kind} token issuer is not trusted"),
        ),
        ClaimError::Missing { fact, pointers } => reject(
            Reason::InvalidToken,
            &format!("{kind}.claims"),
            format!("{kind} token has no {fact} ({pointers})"),
        ),
        ClaimError::Mistyped {
            fact,
            pointer,
            problem,
        } => reject(
            Reason::InvalidToken,
            &format!("{kind}.claims"),
            format!("{kind} token {fact} ({pointer}) {problem}"),
        ),
    }
}

/// Maps jwt_authn's failure message to our rule id.
fn jwt_authn_rule(kind: &str, message: &str) -> String {
    let m = message.to_ascii_lowercase();
    let what = if m.contains("kid") || m.contains("jwks doesn't have key") {
        // An unknown kid: signed by a key the issuer does not publish.
        "signature"
    } else if m.contains("missing") {
        "missing"
    } else if m.contains("expired") {
        "expired"
    } else if m.contains("not yet valid") {
        "not_yet_valid"
    } else if m.contains("issuer") {
        "issuer"
    } else if m.contains("audience") {
        "audience"
    } else if m.contains("alg") {
        "algorithm"
    } else {
        "signature"
    };
    format!("{kind}.{what}")
}

fn check_common(
    kind: &str,
    t: &TokenClaims,
    issuers: &[mapping::Issuer],
    audiences: &[String],
    now: u64,
    skew: u64,
) -> Result<(), Rejection> {
    if !issuers.iter().any(|i| i.url == t.iss) {
        return Err(reject(
            Reason::InvalidToken,
            &format!("{kind}.issuer"),
            format!("{kind} token issuer is not trusted"),
        ));
    }
    if !t.aud.iter().any(|a| audiences.contains(a)) {
        return Err(reject(
            Reason::InvalidToken,
            &format!("{kind}.audience"),
            format!("{kind} token is not meant for this resource"),
        ));
    }
    if t.sub.is_empty() {
        return Err(reject(
            Reason::InvalidToken,
            &format!("{kind}.claims"),
            format!("{kind} token has no sub"),
        ));
    }
    let now_f = now as f64;
    match t.exp {
        None => {
            return Err(reject(
                Reason::InvalidToken,
                &format!("{kind}.expired"),
                format!("{kind} token has no exp"),
            ))
        }
        Some(exp) if now_f > exp + skew as f64 => {
            return Err(reject(
                Reason::InvalidToken,
                &format!("{kind}.expired"),
                format!("{kind} token is expired"),
            ))
        }
        Some(_) => {}
    }
    if let Some(nbf) = t.nbf {
        if nbf > now_f + skew as f64 {
            return Err(reject(
                Reason::InvalidToken,
                &format!("{kind}.not_yet_valid"),
                format!("{kind} token is not yet valid"),
            ));
        }
    }
    Ok(())
}

/// Establishes the caller's identity from jwt_authn's metadata, or says precisely why not.
pub fn authenticate(
    cfg: &IdentityConfig,
    source: &dyn ClaimSource,
    cache: &mut AttestationCache,
    now: u64,
) -> Result<Identity, Rejection> {
    let user = authenticate_user(cfg, source, now)?;
    let Some(agent_cfg) = &cfg.agent else {
        return Ok(Identity { user, agent: None });
    };
    let agent = authenticate_agent(cfg, agent_cfg, source, &user, now)?;
    if let Some(att) = &agent_cfg.attestation {
        cache
            .check(att, &agent, now)
            .map_err(|f| reject(Reason::AttestationInvalid, f.rule, f.detail))?;
    }
    Ok(Identity {
        user,
        agent: Some(agent),
    })
}

fn verified(
    kind: &str,
    key: &str,
    failure_key: &str,
    source: &dyn ClaimSource,
) -> Result<(), Rejection> {
    if claims::present(source, key).map_err(|e| claim_error(kind, e))? {
        return Ok(());
    }
    let message = claims::failure(source, failure_key).map_err(|e| claim_error(kind, e))?;
    match message {
        None => Err(reject(
            Reason::MissingToken,
            &format!("{kind}.missing"),
            format!("no {kind} token"),
        )),
        Some(m) if m.to_ascii_lowercase().contains("missing") => Err(reject(
            Reason::MissingToken,
            &format!("{kind}.missing"),
            format!("no {kind} token"),
        )),
        Some(m) => Err(reject(
            Reason::InvalidToken,
            &jwt_authn_rule(kind, &m),
            format!("{kind} token rejected: {m}"),
        )),
    }
}

fn authenticate_user(
    cfg: &IdentityConfig,
    source: &dyn ClaimSource,
    now: u64,
) -> Result<UserClaims, Rejection> {
    let u = &cfg.user;
    verified("user", &u.metadata_key, &u.failure_metadata_key, source)?;
    let user = claims::read_user(source, u).map_err(|e| claim_error("user", e))?;
    if user.has_agent_claims {
        return Err(reject(
            Reason::InvalidToken,
            "user.kind",
            "an agent token was presented as the user token",
        ));
    }
    // A token from an exchange (RFC 8693 `act`: issued to an actor on the user's behalf, e.g.
    // one this gateway sent upstream) is not the user's own, whatever audience it names.
    if user.is_exchanged {
        return Err(reject(
            Reason::InvalidToken,
            "user.exchanged",
            "an exchanged token (it has an `act` claim) was presented as the user token",
        ));
    }
    check_common("user", &user.token, &u.issuers, &u.audiences, now, cfg.skew)?;
    if let Some(missing) = u
        .required_scopes
        .iter()
        .find(|s| !user.token.scopes.contains(s))
    {
        return Err(reject(
            Reason::InsufficientScope,
            "user.scope",
            format!("user token lacks scope `{missing}`"),
        )
        .with_scope(u.required_scopes.join(" ")));
    }
    Ok(user)
}

fn authenticate_agent(
    cfg: &IdentityConfig,
    a: &config::AgentRules,
    source: &dyn ClaimSource,
    user: &UserClaims,
    now: u64,
) -> Result<AgentClaims, Rejection> {
    verified("agent", &a.metadata_key, &a.failure_metadata_key, source)?;
    let agent = claims::read_agent(source, a).map_err(|e| claim_error("agent", e))?;
    check_common(
        "agent",
        &agent.token,
        &a.issuers,
        &a.audiences,
        now,
        cfg.skew,
    )?;
    let Some(agent_type) = &agent.agent_type else {
        return Err(reject(
            Reason::InvalidToken,
            "agent.kind",
            "the agent token has no agent_type (not an OIDC-A token)",
        ));
    };
    match &agent.delegator_sub {
        Some(d) if d == &user.token.sub => {}
        Some(_) => {
            return Err(reject(
                Reason::DelegationInvalid,
                "agent.delegator",
                "the agent acts for a different user",
            ))
        }
        None => {
            return Err(reject(
                Reason::DelegationInvalid,
                "agent.delegator",
                "the agent token has no delegator_sub",
            ))
        }
    }
    let not_allowed =
        |rule: &str, detail: String| Err(reject(Reason::AgentNotAllowed, rule, detail));
    if !a.allowed_types.is_empty() && !a.allowed_types.contains(agent_type) {
        return not_allowed(
            "agent.type",
            format!("agent type `{agent_type}` is not allowed"),
        );
    }
    if !a.allowed_providers.is_empty()
        && !agent
            .agent_provider
            .as_ref()
            .is_some_and(|p| a.allowed_providers.contains(p))
    {
        return not_allowed("agent.provider", "agent provider is not allowed".into());
    }
    if !a.allowed_models.is_empty()
        && !agent
            .agent_model
            .as_ref()
            .is_some_and(|m| a.allowed_models.contains(m))
    {
        return not_allowed("agent.model", "agent model is not allowed".into());
    }
    if let Some(min) = a.min_trust_rank {
        let rank = agent
            .trust_level
            .as_ref()
            .and_then(|t| a.trust_levels.iter().position(|l| l == t));
        if rank.is_none_or(|r| r < min) {
            return not_allowed(
                "agent.trust_level",
                format!(
                    "agent trust level `{}` is below the minimum `{}`",
                    agent.trust_level.as_deref().unwrap_or("none"),
                    a.trust_levels
                        .get(min)
                        .map(String::as_str)
                        .unwrap_or_default()
                ),
            );
        }
    }
    if let Some(missing) = a
        .required_capabilities
        .iter()
        .find(|c| !agent.capabilities.contains(c))
    {
        return not_allowed(
            "agent.capability",
            format!("agent lacks capability `{missing}`"),
        );
    }
    if let Some(chain) = &a.delegation {
        delegation::check_chain(chain, &user.token.sub, &user.token.scopes, &agent, now)
            .map_err(|v| reject(Reason::DelegationInvalid, v.rule, v.detail))?;
    }
    Ok(agent)
}

#[cfg(test)]
mod tests;
