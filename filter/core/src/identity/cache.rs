//! The per-worker cache of verified identities, keyed by a keyed hash of the presented tokens.
//!
//! Cache keys only need to be unforgeable and unguessable, and the hash key never leaves the
//! worker: so a keyed 128-bit PRF (SipHash-2-4, 128-bit output) with a random secret drawn once
//! per worker replaces a SHA-256 of the tokens, at a fraction of the cost. Without randomness
//! the keys fall back to a (truncated) SHA-256: never a fixed secret.

use super::claims;
use super::metadata::ClaimSource;
use super::{authenticate, AttestationCache, Identity, IdentityConfig};
use crate::error::Rejection;
use siphasher::sip128::{Hasher128, SipHasher24};
use std::cell::OnceCell;
use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::Arc;

/// Longest reuse of a verified identity, in seconds.
pub const IDENTITY_CACHE_TTL: u64 = 30;
/// Most cached identities per worker.
pub const IDENTITY_CACHE_CAPACITY: usize = 10_000;

/// The cache key of a pair of presented tokens (see [`IdentityCache::key`]); never the tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityKey([u8; 16]);

/// Turns presented tokens into [`IdentityKey`]s: SipHash-2-4-128 under this worker's secret,
/// or SHA-256 when no secret could be drawn.
#[derive(Clone)]
pub struct KeyHasher {
    secret: Option<[u8; 16]>,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.secret.is_some() {
            "siphash-2-4-128(<secret>)"
        } else {
            "sha-256"
        };
        f.debug_tuple("KeyHasher").field(&kind).finish()
    }
}

impl KeyHasher {
    /// A hasher with a fresh random secret (WASI `random_get` in Envoy); SHA-256 if the host
    /// has no randomness to give.
    pub fn random() -> KeyHasher {
        let mut secret = [0u8; 16];
        KeyHasher::with_secret(getrandom::fill(&mut secret).ok().map(|()| secret))
    }

    /// A hasher with this secret (`None`: SHA-256). Tests only pass explicit secrets.
    pub fn with_secret(secret: Option<[u8; 16]>) -> KeyHasher {
        KeyHasher { secret }
    }

    /// Whether keys are keyed by a random secret (false: the SHA-256 fallback).
    pub fn is_keyed(&self) -> bool {
        self.secret.is_some()
    }

    /// The key for a pair of presented tokens; each token is length-prefixed, so no two
    /// different pairs share an input (an absent agent token counts as an empty one).
    pub fn key(&self, user_token: &str, agent_token: Option<&str>) -> IdentityKey {
        self.key_parts(&[
            user_token.as_bytes(),
            agent_token.unwrap_or_default().as_bytes(),
        ])
    }

    /// The key for any number of parts (the tokens, then what else the identity was read
    /// from, such as the payload headers), each length-prefixed.
    pub fn key_parts(&self, parts: &[&[u8]]) -> IdentityKey {
        match &self.secret {
            Some(secret) => {
                let mut h = SipHasher24::new_with_key(secret);
                for part in parts {
                    h.write(&(part.len() as u64).to_le_bytes());
                    h.write(part);
                }
                IdentityKey(h.finish128().as_bytes())
            }
            None => {
                let mut h = hmac_sha256::Hash::new();
                for part in parts {
                    h.update((part.len() as u64).to_le_bytes());
                    h.update(part);
                }
                let digest = h.finalize();
                let mut out = [0u8; 16];
                out.copy_from_slice(&digest[..16]);
                IdentityKey(out)
            }
        }
    }
}

/// Verified identities by [`IdentityKey`], per worker: a caller's next requests skip
/// re-reading and re-checking every claim, and share the identity instead of copying it. An
/// entry is used only while jwt_authn has verified a token in the current request too, and
/// never past the earliest time one of its checks could change its mind (token expiry,
/// delegation `max_duration`, attestation age), nor longer than [`IDENTITY_CACHE_TTL`].
#[derive(Debug, Default)]
pub struct IdentityCache {
    /// Drawn at the first key, so creating a cache makes no host call.
    hasher: OnceCell<KeyHasher>,
    entries: HashMap<IdentityKey, (u64, Arc<Identity>)>,
}

impl IdentityCache {
    /// A cache whose keys come from this hasher (tests; workers use [`Default`]).
    pub fn with_hasher(hasher: KeyHasher) -> IdentityCache {
        IdentityCache {
            hasher: OnceCell::from(hasher),
            entries: HashMap::new(),
        }
    }

    /// The key for a pair of presented tokens, under this worker's secret.
    pub fn key(&self, user_token: &str, agent_token: Option<&str>) -> IdentityKey {
        self.hasher
            .get_or_init(KeyHasher::random)
            .key(user_token, agent_token)
    }

    /// The key for these parts (see [`KeyHasher::key_parts`]), under this worker's secret.
    pub fn key_parts(&self, parts: &[&[u8]]) -> IdentityKey {
        self.hasher.get_or_init(KeyHasher::random).key_parts(parts)
    }

    fn get(&self, key: &IdentityKey, now: u64) -> Option<&Arc<Identity>> {
        self.entries
            .get(key)
            .filter(|(until, _)| now < *until)
            .map(|(_, id)| id)
    }

    fn put(&mut self, key: IdentityKey, until: u64, id: Arc<Identity>, now: u64) {
        if self.entries.len() >= IDENTITY_CACHE_CAPACITY {
            self.entries.retain(|_, (u, _)| *u > now);
            if self.entries.len() >= IDENTITY_CACHE_CAPACITY {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (until, id));
    }

    /// Number of cached identities.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Until when a verified identity may be reused.
pub fn valid_until(cfg: &IdentityConfig, id: &Identity, now: u64) -> u64 {
    let mut until = now + IDENTITY_CACHE_TTL;
    let mut bound = |t: f64| {
        if t.is_finite() && t >= 0.0 {
            until = until.min(t as u64);
        }
    };
    if let Some(exp) = id.user.token.exp {
        bound(exp);
    }
    if let Some(a) = &id.agent {
        if let Some(exp) = a.token.exp {
            bound(exp);
        }
        for step in &a.delegation_chain {
            if let Some(max) = step.max_duration {
                bound(step.delegated_at + max);
            }
        }
        if let (Some(rules), Some(att)) = (
            cfg.agent.as_ref().and_then(|r| r.attestation.as_ref()),
            &a.attestation,
        ) {
            if let Some(ts) = att.timestamp {
                bound(ts + rules.max_age as f64);
            }
        }
    }
    until
}

/// [`authenticate`] through the cache; `key` is [`IdentityCache::key`] of the presented tokens
/// (`None`: nothing presented, no caching). A hit shares the cached identity.
pub fn authenticate_cached(
    cfg: &IdentityConfig,
    source: &dyn ClaimSource,
    attestations: &mut AttestationCache,
    identities: &mut IdentityCache,
    key: Option<IdentityKey>,
    now: u64,
) -> Result<Arc<Identity>, Rejection> {
    if let Some(k) = &key {
        if let Some(id) = identities.get(k, now) {
            // jwt_authn must have verified these very tokens on this request as well.
            let user_ok = claims::present(source, &cfg.user.metadata_key).unwrap_or(false);
            let agent_ok = match &cfg.agent {
                None => true,
                Some(a) => claims::present(source, &a.metadata_key).unwrap_or(false),
            };
            if user_ok && agent_ok {
                return Ok(Arc::clone(id));
            }
        }
    }
    let id = Arc::new(authenticate(cfg, source, attestations, now)?);
    if let Some(k) = key {
        identities.put(k, valid_until(cfg, &id, now), Arc::clone(&id), now);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const USER: &str = "eyJ.user-token.sig";

    /// The SHA-256 key the cache used before SipHash, truncated as the fallback truncates it.
    fn sha256_key(user: &str, agent: Option<&str>) -> [u8; 16] {
        let mut h = hmac_sha256::Hash::new();
        for part in [user, agent.unwrap_or_default()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize()[..16]);
        out
    }

    #[test]
    fn workers_draw_a_random_secret() {
        let (a, b) = (KeyHasher::random(), KeyHasher::random());
        assert!(a.is_keyed() && b.is_keyed());
        // Two workers (or two VMs) never agree on a key: the secret is theirs alone.
        assert_ne!(a.key(USER, None), b.key(USER, None));
        assert_eq!(a.key(USER, None), a.key(USER, None));
        assert!(!format!("{a:?}").contains(&format!("{:?}", a.secret)));
    }

    #[test]
    fn keys_depend_on_the_secret_and_on_both_tokens() {
        let k1 = KeyHasher::with_secret(Some([1; 16]));
        let k2 = KeyHasher::with_secret(Some([2; 16]));
        assert_ne!(k1.key(USER, None), k2.key(USER, None));
        assert_ne!(k1.key(USER, Some("agent")), k1.key(USER, None));
        assert_ne!(k1.key(USER, Some("agent")), k1.key("other", Some("agent")));
        // Length prefixes: moving bytes from one token to the other changes the key.
        assert_ne!(k1.key("ab", Some("c")), k1.key("a", Some("bc")));
        assert_ne!(k1.key("abc", None), k1.key("ab", Some("c")));
        // An absent agent token is an empty one, as before.
        assert_eq!(k1.key(USER, None), k1.key(USER, Some("")));
        // The key is not a plain hash of the tokens.
        assert_ne!(k1.key(USER, None).0, sha256_key(USER, None));
    }

    #[test]
    fn siphash_keys_are_siphash_2_4_128_of_the_length_prefixed_tokens() {
        let secret: [u8; 16] = std::array::from_fn(|i| i as u8);
        let mut input = Vec::new();
        for part in ["ab", "c"] {
            input.extend_from_slice(&(part.len() as u64).to_le_bytes());
            input.extend_from_slice(part.as_bytes());
        }
        let want = SipHasher24::new_with_key(&secret).hash(&input).as_bytes();
        let got = KeyHasher::with_secret(Some(secret)).key("ab", Some("c"));
        assert_eq!(got, IdentityKey(want));
    }

    #[test]
    fn without_randomness_keys_fall_back_to_sha256_never_a_fixed_secret() {
        let h = KeyHasher::with_secret(None);
        assert!(!h.is_keyed());
        assert_eq!(
            h.key(USER, Some("agent")).0,
            sha256_key(USER, Some("agent"))
        );
        assert_ne!(h.key("ab", Some("c")), h.key("a", Some("bc")));
        // Not SipHash under an all-zero (or any constant) key.
        assert_ne!(
            h.key(USER, None),
            KeyHasher::with_secret(Some([0; 16])).key(USER, None)
        );
    }

    #[test]
    fn a_cache_keys_with_one_secret_for_its_whole_life() {
        let cache = IdentityCache::default();
        let first = cache.key(USER, None);
        assert_eq!(cache.key(USER, None), first);
        assert_ne!(IdentityCache::default().key(USER, None), first);
        let fixed = IdentityCache::with_hasher(KeyHasher::with_secret(Some([7; 16])));
        assert_eq!(
            fixed.key(USER, None),
            KeyHasher::with_secret(Some([7; 16])).key(USER, None)
        );
    }

    #[test]
    fn hits_share_the_cached_identity() {
        let mut cache = IdentityCache::default();
        let key = cache.key(USER, None);
        let id = Arc::new(Identity::default());
        cache.put(key, 100, Arc::clone(&id), 0);
        let hit = cache.get(&key, 99).map(Arc::clone);
        assert!(hit.is_some_and(|h| Arc::ptr_eq(&h, &id)));
        assert!(cache.get(&key, 100).is_none());
    }
}
