//! The identity model: what a verified user token and a verified OIDC-A agent token say.
//!
//! Claims are read one by one from jwt_authn's metadata (see [`super::metadata`]); a claim in
//! the wrong type is an error, never silently dropped.

use super::metadata::{
    as_f64, as_list, as_map, as_str, as_str_list, ClaimSource, DecodeError, HostError,
};

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
        problem: &'static str,
    },
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

fn bad(claim: &str, e: DecodeError) -> ClaimError {
    ClaimError::Malformed {
        claim: claim.to_string(),
        problem: e.0,
    }
}

struct Reader<'a> {
    source: &'a dyn ClaimSource,
    key: &'a str,
}

impl Reader<'_> {
    fn raw(&self, claim: &str) -> Result<Option<Vec<u8>>, ClaimError> {
        self.source
            .get(&[self.key, claim])
            .map_err(ClaimError::Host)
    }
    fn str(&self, claim: &str) -> Result<Option<String>, ClaimError> {
        self.raw(claim)?
            .map(|b| as_str(&b).map_err(|e| bad(claim, e)))
            .transpose()
    }
    fn num(&self, claim: &str) -> Result<Option<f64>, ClaimError> {
        self.raw(claim)?
            .map(|b| as_f64(&b).map_err(|e| bad(claim, e)))
            .transpose()
    }
    fn str_list(&self, claim: &str) -> Result<Vec<String>, ClaimError> {
        Ok(self
            .raw(claim)?
            .map(|b| as_str_list(&b).map_err(|e| bad(claim, e)))
            .transpose()?
            .unwrap_or_default())
    }
    /// A claim that may be a string or a list of strings (`aud`).
    fn str_or_list(&self, claim: &str) -> Result<Vec<String>, ClaimError> {
        let Some(b) = self.raw(claim)? else {
            return Ok(Vec::new());
        };
        // A list encoding is self-checking (lengths and NULs must add up); a plain string is not.
        match as_str_list(&b) {
            Ok(list) if !list.is_empty() => Ok(list),
            _ => Ok(vec![as_str(&b).map_err(|e| bad(claim, e))?]),
        }
    }
    fn token(&self) -> Result<TokenClaims, ClaimError> {
        let mut scopes: Vec<String> = self
            .str("scope")?
            .map(|s| s.split_ascii_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        scopes.extend(self.str_list("scp")?);
        Ok(TokenClaims {
            iss: self.str("iss")?.unwrap_or_default(),
            sub: self.str("sub")?.unwrap_or_default(),
            aud: self.str_or_list("aud")?,
            exp: self.num("exp")?,
            nbf: self.num("nbf")?,
            iat: self.num("iat")?,
            jti: self.str("jti")?,
            scopes,
        })
    }
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
    raw.map(|b| as_str(&b).map_err(|e| bad("message", e)))
        .transpose()
}

/// Reads a user token's claims.
pub fn read_user(source: &dyn ClaimSource, key: &str) -> Result<UserClaims, ClaimError> {
    let r = Reader { source, key };
    let mut has_agent_claims = false;
    for claim in [
        "agent_type",
        "delegator_sub",
        "delegation_chain",
        "agent_instance_id",
    ] {
        has_agent_claims |= r.raw(claim)?.is_some();
    }
    Ok(UserClaims {
        token: r.token()?,
        groups: r.str_list("groups")?,
        roles: r.str_list("roles")?,
        email: r.str("email")?,
        has_agent_claims,
        is_exchanged: r.raw("act")?.is_some(),
    })
}

/// Reads an agent token's claims.
pub fn read_agent(source: &dyn ClaimSource, key: &str) -> Result<AgentClaims, ClaimError> {
    let r = Reader { source, key };
    let chain = match r.raw("delegation_chain")? {
        None => Vec::new(),
        Some(b) => {
            let steps = as_list(&b).map_err(|e| bad("delegation_chain", e))?;
            steps
                .into_iter()
                .enumerate()
                .map(|(i, s)| read_step(i, s))
                .collect::<Result<_, _>>()?
        }
    };
    let attestation = match r.raw("agent_attestation")? {
        None => None,
        Some(b) => Some(read_attestation(&b)?),
    };
    Ok(AgentClaims {
        token: r.token()?,
        agent_type: r.str("agent_type")?,
        agent_model: r.str("agent_model")?,
        agent_version: r.str("agent_version")?,
        agent_provider: r.str("agent_provider")?,
        agent_instance_id: r.str("agent_instance_id")?,
        delegator_sub: r.str("delegator_sub")?,
        delegation_purpose: r.str("delegation_purpose")?,
        delegation_chain: chain,
        capabilities: r.str_list("agent_capabilities")?,
        trust_level: r.str("agent_trust_level")?,
        attestation,
    })
}

fn read_step(i: usize, bytes: &[u8]) -> Result<DelegationStep, ClaimError> {
    let name = |f: &str| format!("delegation_chain[{i}].{f}");
    let fields = as_map(bytes).map_err(|e| bad(&format!("delegation_chain[{i}]"), e))?;
    let mut step = DelegationStep::default();
    for (k, v) in fields {
        let s = || as_str(v).map_err(|e| bad(&name(&k), e));
        match k.as_str() {
            "iss" => step.iss = s()?,
            "sub" => step.sub = s()?,
            "aud" => step.aud = s()?,
            "delegated_at" => step.delegated_at = as_f64(v).map_err(|e| bad(&name(&k), e))?,
            "scope" => step.scopes = s()?.split_ascii_whitespace().map(str::to_string).collect(),
            "purpose" => step.purpose = Some(s()?),
            "jti" => step.jti = Some(s()?),
            "constraints" => {
                for (ck, cv) in as_map(v).map_err(|e| bad(&name("constraints"), e))? {
                    match ck.as_str() {
                        "max_duration" => {
                            step.max_duration = Some(
                                as_f64(cv)
                                    .map_err(|e| bad(&name("constraints.max_duration"), e))?,
                            )
                        }
                        "allowed_resources" => {
                            step.allowed_resources = Some(
                                as_str_list(cv)
                                    .map_err(|e| bad(&name("constraints.allowed_resources"), e))?,
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

fn read_attestation(bytes: &[u8]) -> Result<Attestation, ClaimError> {
    let mut a = Attestation::default();
    for (k, v) in as_map(bytes).map_err(|e| bad("agent_attestation", e))? {
        let field = format!("agent_attestation.{k}");
        match k.as_str() {
            "format" => a.format = as_str(v).map_err(|e| bad(&field, e))?,
            "token" => a.token = as_str(v).map_err(|e| bad(&field, e))?,
            "timestamp" => a.timestamp = Some(as_f64(v).map_err(|e| bad(&field, e))?),
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
        Ok(Some(super::metadata::encode::json(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn reads_user_and_agent_claims() {
        let src = JsonClaims(vec![
            (
                "user".into(),
                json!({"iss":"i","sub":"alice","aud":"mcp","exp":10,"scope":"a b","groups":["g"],"roles":["r"]}),
            ),
            (
                "agent".into(),
                json!({"iss":"i","sub":"agent:x","aud":["mcp","other"],"agent_type":"assistant","delegator_sub":"alice",
                "agent_capabilities":["tools:call"],"agent_trust_level":"high",
                "delegation_chain":[{"iss":"i","sub":"alice","aud":"agent:x","delegated_at":5,"scope":"a","constraints":{"max_duration":60,"allowed_resources":["mcp"],"geo":"eu"}}],
                "agent_attestation":{"format":"eat","token":"t.t.t","timestamp":4}}),
            ),
        ]);
        let u = read_user(&src, "user").unwrap();
        assert_eq!(
            (
                u.token.sub.as_str(),
                u.token.aud.clone(),
                u.token.scopes.clone()
            ),
            (
                "alice",
                vec!["mcp".to_string()],
                vec!["a".to_string(), "b".to_string()]
            )
        );
        assert_eq!(u.groups, vec!["g"]);
        assert!(!u.has_agent_claims);
        let a = read_agent(&src, "agent").unwrap();
        assert_eq!(a.token.aud, vec!["mcp", "other"]);
        assert_eq!(a.delegation_chain[0].max_duration, Some(60.0));
        assert_eq!(
            a.delegation_chain[0].allowed_resources,
            Some(vec!["mcp".to_string()])
        );
        assert_eq!(a.delegation_chain[0].unknown_constraints, vec!["geo"]);
        assert_eq!(a.attestation.unwrap().timestamp, Some(4.0));
        assert!(read_user(&src, "agent").unwrap().has_agent_claims);
        assert!(present(&src, "user").unwrap());
        assert!(!present(&src, "nobody").unwrap());
    }

    #[test]
    fn wrongly_typed_claims_are_errors() {
        let src = JsonClaims(vec![(
            "agent".into(),
            json!({"sub":"a","delegation_chain":"alice>a"}),
        )]);
        assert!(matches!(
            read_agent(&src, "agent"),
            Err(ClaimError::Malformed { .. })
        ));
        let src = JsonClaims(vec![("user".into(), json!({"sub":"a","exp":"soon"}))]);
        assert!(
            matches!(read_user(&src, "user"), Err(ClaimError::Malformed { claim, .. }) if claim == "exp")
        );
    }
}
