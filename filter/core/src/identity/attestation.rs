//! Verifying `agent_attestation` evidence (EAT in JWT form) with jwt-simple, with a cache.
//!
//! Envoy cannot check this nested token, so the gateway does: signature against configured
//! keys, issuer, expiry, subject (must be the agent), instance id (when both say one), format,
//! and freshness of the attestation `timestamp`. Results are cached under a SHA-256 of the
//! token and the agent's identity, never under the token itself.

use super::claims::{AgentClaims, Attestation};
use jwt_simple::prelude::*;
use std::collections::HashMap;

/// A key that may sign attestations.
#[derive(Debug, Clone)]
pub enum AttesterKey {
    /// ECDSA P-256 / SHA-256.
    Es256(ES256PublicKey),
    /// Ed25519.
    EdDsa(Ed25519PublicKey),
}

impl AttesterKey {
    /// Parses a PEM public key for `alg` (`ES256` or `EdDSA`).
    pub fn from_pem(alg: &str, pem: &str) -> Result<AttesterKey, String> {
        match alg {
            "ES256" => ES256PublicKey::from_pem(pem)
                .map(AttesterKey::Es256)
                .map_err(|e| e.to_string()),
            "EdDSA" => Ed25519PublicKey::from_pem(pem)
                .map(AttesterKey::EdDsa)
                .map_err(|e| e.to_string()),
            other => Err(format!("unsupported alg `{other}` (ES256, EdDSA)")),
        }
    }

    fn verify(
        &self,
        token: &str,
        opts: VerificationOptions,
    ) -> Result<JWTClaims<EatClaims>, String> {
        match self {
            AttesterKey::Es256(k) => k.verify_token::<EatClaims>(token, Some(opts)),
            AttesterKey::EdDsa(k) => k.verify_token::<EatClaims>(token, Some(opts)),
        }
        .map_err(|e| e.to_string())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EatClaims {
    #[serde(default)]
    agent_instance_id: Option<String>,
}

/// Attestation rules (compiled from config).
#[derive(Debug, Clone)]
pub struct AttestationRules {
    /// Accepted `format` values.
    pub formats: Vec<String>,
    /// Accepted EAT issuers.
    pub issuers: Vec<String>,
    /// Keys that may sign.
    pub keys: Vec<AttesterKey>,
    /// Oldest accepted attestation, in seconds.
    pub max_age: u64,
    /// Clock skew tolerated, in seconds.
    pub skew: u64,
}

/// Why an attestation failed: rule id and detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationFailure {
    /// Stable rule id, e.g. `attestation.signature`.
    pub rule: &'static str,
    /// Human-readable detail (never the token).
    pub detail: String,
}

fn fail(rule: &'static str, detail: impl Into<String>) -> AttestationFailure {
    AttestationFailure {
        rule,
        detail: detail.into(),
    }
}

/// Verifies an agent's attestation (uncached).
pub fn verify(
    rules: &AttestationRules,
    agent: &AgentClaims,
    now: u64,
) -> Result<u64, AttestationFailure> {
    let Some(att) = &agent.attestation else {
        return Err(fail(
            "attestation.missing",
            "the agent token carries no agent_attestation",
        ));
    };
    verify_evidence(rules, att, agent, now)
}

/// Verifies evidence; on success returns until when the result may be reused.
fn verify_evidence(
    rules: &AttestationRules,
    att: &Attestation,
    agent: &AgentClaims,
    now: u64,
) -> Result<u64, AttestationFailure> {
    if !rules.formats.iter().any(|f| f == &att.format) {
        return Err(fail(
            "attestation.format",
            format!("attestation format `{}` is not accepted", att.format),
        ));
    }
    let Some(ts) = att.timestamp else {
        return Err(fail("attestation.stale", "attestation has no timestamp"));
    };
    let ts = ts.max(0.0) as u64;
    if ts > now + rules.skew {
        return Err(fail(
            "attestation.stale",
            "attestation timestamp lies in the future",
        ));
    }
    if now > ts + rules.max_age {
        return Err(fail(
            "attestation.stale",
            format!(
                "attestation is {} s old, more than {} s",
                now - ts,
                rules.max_age
            ),
        ));
    }
    let mut last_error = String::from("no attester key configured");
    for key in &rules.keys {
        let opts = VerificationOptions {
            artificial_time: Some(UnixTimeStamp::from_secs(now)),
            time_tolerance: Some(Duration::from_secs(rules.skew)),
            allowed_issuers: Some(rules.issuers.iter().cloned().collect()),
            max_token_length: Some(16 * 1024),
            ..VerificationOptions::default()
        };
        match key.verify(&att.token, opts) {
            Ok(claims) => {
                if claims.expires_at.is_none() {
                    return Err(fail("attestation.claims", "attestation token has no exp"));
                }
                if claims.subject.as_deref() != Some(agent.token.sub.as_str()) {
                    return Err(fail(
                        "attestation.subject",
                        "attestation is about another agent",
                    ));
                }
                if let (Some(a), Some(b)) =
                    (&claims.custom.agent_instance_id, &agent.agent_instance_id)
                {
                    if a != b {
                        return Err(fail(
                            "attestation.instance",
                            "attestation is about another agent instance",
                        ));
                    }
                }
                let exp = claims.expires_at.map(|e| e.as_secs()).unwrap_or(now);
                return Ok(exp.min(ts + rules.max_age));
            }
            Err(e) => last_error = e,
        }
    }
    Err(fail(
        "attestation.signature",
        format!("attestation token rejected: {last_error}"),
    ))
}

/// Bounded cache of attestation verdicts, keyed by a hash of (token, agent sub, instance id).
#[derive(Debug, Default)]
pub struct AttestationCache {
    entries: HashMap<[u8; 32], (u64, Result<(), AttestationFailure>)>,
}

/// Most verdicts kept; when full, expired entries are dropped, then everything.
pub const CACHE_CAPACITY: usize = 4096;
const NEGATIVE_TTL: u64 = 60;

impl AttestationCache {
    /// Verifies through the cache.
    pub fn check(
        &mut self,
        rules: &AttestationRules,
        agent: &AgentClaims,
        now: u64,
    ) -> Result<(), AttestationFailure> {
        let Some(att) = &agent.attestation else {
            return verify(rules, agent, now).map(|_| ());
        };
        let mut h = hmac_sha256::Hash::new();
        h.update(att.token.as_bytes());
        h.update([0]);
        h.update(agent.token.sub.as_bytes());
        h.update([0]);
        h.update(
            agent
                .agent_instance_id
                .as_deref()
                .unwrap_or_default()
                .as_bytes(),
        );
        h.update([0]);
        h.update(att.format.as_bytes());
        h.update([0]);
        h.update(att.timestamp.unwrap_or_default().to_le_bytes());
        let key = h.finalize();
        if let Some((until, verdict)) = self.entries.get(&key) {
            if now <= *until {
                return verdict.clone();
            }
        }
        let (until, verdict) = match verify_evidence(rules, att, agent, now) {
            Ok(until) => (until, Ok(())),
            Err(f) => (now + NEGATIVE_TTL, Err(f)),
        };
        if self.entries.len() >= CACHE_CAPACITY {
            self.entries.retain(|_, (u, _)| *u >= now);
            if self.entries.len() >= CACHE_CAPACITY {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (until, verdict.clone()));
        verdict
    }

    /// Number of cached verdicts.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::claims::TokenClaims;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: u64 = 1_800_000_000;

    struct Fixture {
        signer: ES256KeyPair,
        rules: AttestationRules,
    }

    fn fixture() -> Fixture {
        let signer = ES256KeyPair::generate();
        let pem = signer.public_key().to_pem().unwrap();
        let rules = AttestationRules {
            formats: vec!["urn:ietf:params:oauth:token-type:eat".into()],
            issuers: vec!["attester".into()],
            keys: vec![AttesterKey::from_pem("ES256", &pem).unwrap()],
            max_age: 300,
            skew: 30,
        };
        Fixture { signer, rules }
    }

    fn eat(f: &Fixture, iss: &str, sub: &str, instance: &str, exp_in: i64) -> String {
        let custom = EatClaims {
            agent_instance_id: Some(instance.into()),
        };
        let mut claims = Claims::with_custom_claims(custom, Duration::from_secs(60))
            .with_issuer(iss)
            .with_subject(sub);
        claims.issued_at = Some(UnixTimeStamp::from_secs(NOW));
        claims.expires_at = Some(UnixTimeStamp::from_secs((NOW as i64 + exp_in) as u64));
        f.signer.sign(claims).unwrap()
    }

    fn agent(token: String, ts: u64) -> AgentClaims {
        AgentClaims {
            token: TokenClaims {
                sub: "agent:x".into(),
                ..TokenClaims::default()
            },
            agent_instance_id: Some("i-1".into()),
            attestation: Some(Attestation {
                format: "urn:ietf:params:oauth:token-type:eat".into(),
                token,
                timestamp: Some(ts as f64),
            }),
            ..AgentClaims::default()
        }
    }

    fn rule(f: &Fixture, a: &AgentClaims) -> Result<(), &'static str> {
        verify(&f.rules, a, NOW).map(|_| ()).map_err(|e| e.rule)
    }

    #[test]
    fn valid_attestation_passes_and_is_cached() {
        let f = fixture();
        let a = agent(eat(&f, "attester", "agent:x", "i-1", 120), NOW - 10);
        assert_eq!(rule(&f, &a), Ok(()));
        let mut cache = AttestationCache::default();
        assert_eq!(cache.check(&f.rules, &a, NOW), Ok(()));
        assert_eq!(cache.len(), 1);
        // A cached success is not reused after the attestation goes stale.
        assert_eq!(
            cache.check(&f.rules, &a, NOW + 400).unwrap_err().rule,
            "attestation.stale"
        );
    }

    #[test]
    fn each_failure_has_its_rule() {
        let f = fixture();
        let other = fixture();
        let good = || eat(&f, "attester", "agent:x", "i-1", 120);
        assert_eq!(
            rule(
                &f,
                &AgentClaims {
                    attestation: None,
                    ..agent(good(), NOW)
                }
            ),
            Err("attestation.missing")
        );
        assert_eq!(
            rule(
                &f,
                &agent(eat(&other, "attester", "agent:x", "i-1", 120), NOW)
            ),
            Err("attestation.signature")
        );
        assert_eq!(
            rule(&f, &agent(eat(&f, "evil", "agent:x", "i-1", 120), NOW)),
            Err("attestation.signature")
        );
        assert_eq!(
            rule(&f, &agent(eat(&f, "attester", "agent:x", "i-1", -120), NOW)),
            Err("attestation.signature")
        );
        assert_eq!(
            rule(&f, &agent(eat(&f, "attester", "agent:y", "i-1", 120), NOW)),
            Err("attestation.subject")
        );
        assert_eq!(
            rule(&f, &agent(eat(&f, "attester", "agent:x", "i-2", 120), NOW)),
            Err("attestation.instance")
        );
        assert_eq!(
            rule(&f, &agent(good(), NOW - 1000)),
            Err("attestation.stale")
        );
        assert_eq!(
            rule(&f, &agent(good(), NOW + 1000)),
            Err("attestation.stale")
        );
        assert_eq!(
            rule(&f, &agent("not.a.jwt".into(), NOW)),
            Err("attestation.signature")
        );
        let mut a = agent(good(), NOW);
        if let Some(att) = a.attestation.as_mut() {
            att.format = "tpm-quote".into();
        }
        assert_eq!(rule(&f, &a), Err("attestation.format"));
    }

    #[test]
    fn bad_pem_and_alg_are_config_errors() {
        assert!(AttesterKey::from_pem("ES256", "not pem").is_err());
        assert!(AttesterKey::from_pem("HS256", "x").is_err());
    }
}
