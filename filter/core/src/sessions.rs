//! Sealed session ids: the server's `Mcp-Session-Id` never reaches the client. The client gets
//! a *sealed* id instead (XChaCha20-Poly1305) that carries the real id, the owner
//! ([`SealedOwner`]: the server, issuer and subject of the user and of the agent, the agent's
//! instance) with an expiry, and, with `routing`, the instance and variant. A tampered or expired
//! id, an id sealed with a key no longer configured, or one presented by another caller or for
//! another server is refused before anything goes upstream. SSE event ids
//! ([`crate::response::resume`]) carry the same owner record.
//!
//! Sealing is on whenever `identity` is (a session belongs to the verified caller who opened
//! it). Keys come from `sessions.keys` (or, for older configurations, `routing.session_keys`);
//! without a configured key the filter uses one random key per Envoy process, generated once
//! and shared by every worker (see [`SessionKeys::generated`] and the adapter): enough for one
//! Envoy, while several replicas that must open each other's session ids need a configured key.

use crate::config::{err, ConfigError};
use crate::sealing::KeyRing;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// The `sessions` section of the plugin configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    /// Keys sealing session ids: the first seals, all open (rotation: prepend a new key, drop
    /// an old one once its sessions have ended). Omit (or leave empty) to use a random key per
    /// Envoy process, shared by its workers; several Envoy replicas behind one load balancer
    /// need the same configured key.
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// Lifetime of a sealed session id (and of a sealed SSE event id), in seconds from when it
    /// was sealed (default 86400: 24 hours; 1 … 2592000). An older id is refused like an
    /// unknown one (404 `session_not_found`): the client initializes a new session.
    #[serde(default = "default_max_age")]
    pub max_age_seconds: u64,
}

/// Default lifetime of a sealed id: 24 hours.
pub const DEFAULT_MAX_AGE_SECONDS: u64 = 24 * 60 * 60;

/// Longest lifetime of a sealed id: 30 days.
const MAX_MAX_AGE_SECONDS: u64 = 30 * 24 * 60 * 60;

fn default_max_age() -> u64 {
    DEFAULT_MAX_AGE_SECONDS
}

/// A session key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// Short id written into sealed session ids (`[A-Za-z0-9_-]{1,16}`).
    pub id: String,
    /// Base64 (standard) of 32 random bytes, or `{"env": "NAME"}` (read from Envoy's
    /// environment, see `secrets`).
    pub secret: String,
}

/// Id of the generated key in sealed session ids.
pub const GENERATED_KEY_ID: &str = "auto";

/// Compiled session keys.
#[derive(Clone)]
pub struct SessionKeys {
    keys: Vec<(String, [u8; 32])>,
    generated: bool,
    max_age: u64,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field(
                "keys",
                &self
                    .keys
                    .iter()
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("generated", &self.generated)
            .field("max_age", &self.max_age)
            .finish()
    }
}

fn valid_key_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 16
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl SessionKeys {
    /// Validates the `sessions` section (`at`: its field path).
    pub fn from_raw(raw: RawSessions, at: &str) -> Result<SessionKeys, ConfigError> {
        if !(1..=MAX_MAX_AGE_SECONDS).contains(&raw.max_age_seconds) {
            return Err(err(
                &format!("{at}.max_age_seconds"),
                format!("must be between 1 and {MAX_MAX_AGE_SECONDS} (30 days)"),
            ));
        }
        let mut keys = SessionKeys::compile(raw.keys, &format!("{at}.keys"))?;
        keys.max_age = raw.max_age_seconds;
        Ok(keys)
    }

    /// Validates configured keys (`at`: the field path of the list). An empty list means a
    /// generated key. Sealed ids live [`DEFAULT_MAX_AGE_SECONDS`].
    pub fn compile(raw: Vec<RawKey>, at: &str) -> Result<SessionKeys, ConfigError> {
        if raw.is_empty() {
            return Ok(SessionKeys::generated());
        }
        let mut keys: Vec<(String, [u8; 32])> = Vec::new();
        for (i, k) in raw.into_iter().enumerate() {
            let f = format!("{at}[{i}]");
            if !valid_key_id(&k.id) {
                return Err(err(
                    &format!("{f}.id"),
                    "must be 1-16 characters of [A-Za-z0-9_-]",
                ));
            }
            if k.id == GENERATED_KEY_ID {
                return Err(err(
                    &format!("{f}.id"),
                    format!("`{GENERATED_KEY_ID}` is the id of the generated key"),
                ));
            }
            if keys.iter().any(|(id, _)| id == &k.id) {
                return Err(err(
                    &format!("{f}.id"),
                    format!("key id `{}` is used twice", k.id),
                ));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(k.secret.trim())
                .map_err(|_| err(&format!("{f}.secret"), "is not base64"))?;
            let secret: [u8; 32] = bytes
                .try_into()
                .map_err(|_| err(&format!("{f}.secret"), "must decode to exactly 32 bytes"))?;
            keys.push((k.id, secret));
        }
        Ok(SessionKeys {
            keys,
            generated: false,
            max_age: DEFAULT_MAX_AGE_SECONDS,
        })
    }

    /// A random key of this VM (none when the host has no randomness: then nothing can be
    /// sealed, so session ids are withheld and presented ones refused, until the adapter
    /// installs the key shared by the process with [`SessionKeys::install_generated`]).
    pub fn generated() -> SessionKeys {
        let mut secret = [0u8; 32];
        let keys = match getrandom::fill(&mut secret) {
            Ok(()) => vec![(GENERATED_KEY_ID.to_string(), secret)],
            Err(_) => Vec::new(),
        };
        SessionKeys {
            keys,
            generated: true,
            max_age: DEFAULT_MAX_AGE_SECONDS,
        }
    }

    /// The owner record of a token sealed at `now` for `owner`: it expires `max_age_seconds`
    /// later.
    pub fn owner_record(&self, owner: &SessionOwner<'_>, now: u64) -> SealedOwner {
        SealedOwner::new(owner, now.saturating_add(self.max_age))
    }

    /// Whether the key is generated (no key configured): the adapter shares it between workers.
    pub fn is_generated(&self) -> bool {
        self.generated
    }

    /// This VM's generated key, offered to the other workers (None when configured or absent).
    pub fn generated_secret(&self) -> Option<[u8; 32]> {
        match (self.generated, self.keys.first()) {
            (true, Some((_, secret))) => Some(*secret),
            _ => None,
        }
    }

    /// Replaces the generated key by the one the whole process uses (no-op for configured keys).
    pub fn install_generated(&mut self, secret: [u8; 32]) {
        if self.generated {
            self.keys = vec![(GENERATED_KEY_ID.to_string(), secret)];
        }
    }

    /// Seals a binding into a session id for the client (see [`crate::sealing`]: the key is
    /// derived for this purpose, the nonce from the binding). None without a key.
    pub fn seal(&self, binding: &SessionBinding) -> Option<String> {
        let plain = serde_json::to_vec(binding).ok()?;
        crate::sealing::seal(self, PREFIX, PURPOSE, &plain)
    }

    /// Opens a sealed session id and checks it has not expired at `now` and belongs to this
    /// caller and server.
    pub fn open(
        &self,
        sealed: &str,
        owner: &SessionOwner<'_>,
        now: u64,
    ) -> Result<SessionBinding, SessionError> {
        let plain =
            crate::sealing::open(self, PREFIX, PURPOSE, sealed).ok_or(SessionError::Unknown)?;
        let b: SessionBinding =
            serde_json::from_slice(&plain).map_err(|_| SessionError::Unknown)?;
        b.owner.check(owner, now)?;
        Ok(b)
    }
}

impl KeyRing for SessionKeys {
    fn sealing_key(&self) -> Option<(&str, &[u8; 32])> {
        self.keys.first().map(|(id, k)| (id.as_str(), k))
    }
    fn key(&self, id: &str) -> Option<&[u8; 32]> {
        self.keys.iter().find(|(i, _)| i == id).map(|(_, k)| k)
    }
}

/// Who presents (or opens) a sealed session id or event id, and on which server: the verified
/// caller, borrowed from its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOwner<'a> {
    /// The server.
    pub server: &'a str,
    /// Issuer of the user's token.
    pub user_issuer: &'a str,
    /// The user's subject.
    pub user: &'a str,
    /// Issuer of the agent's token (empty when no agent).
    pub agent_issuer: &'a str,
    /// The agent's subject (empty when no agent).
    pub agent: &'a str,
    /// The agent's `agent_instance_id` (empty when no agent or none in its token).
    pub agent_instance: &'a str,
}

/// The owner sealed into a session id or an SSE event id, and until when it is valid. One
/// record for both, so they bind exactly the same facts. Every field is required: a token
/// sealed before a field was bound does not open (the client initializes again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedOwner {
    /// The server.
    #[serde(rename = "n")]
    pub server: String,
    /// Issuer of the owning user's token.
    #[serde(rename = "i")]
    pub user_issuer: String,
    /// The owning user's subject.
    #[serde(rename = "u")]
    pub user: String,
    /// Issuer of the owning agent's token (empty when no agent).
    #[serde(rename = "j")]
    pub agent_issuer: String,
    /// The owning agent's subject (empty when no agent).
    #[serde(rename = "a")]
    pub agent: String,
    /// The owning agent's instance id (empty when no agent or no instance id).
    #[serde(rename = "k")]
    pub agent_instance: String,
    /// Seconds since the epoch from which the token is refused.
    #[serde(rename = "x")]
    pub expires: u64,
}

impl SealedOwner {
    /// The record of `owner`, valid until `expires`.
    pub fn new(owner: &SessionOwner<'_>, expires: u64) -> SealedOwner {
        SealedOwner {
            server: owner.server.to_string(),
            user_issuer: owner.user_issuer.to_string(),
            user: owner.user.to_string(),
            agent_issuer: owner.agent_issuer.to_string(),
            agent: owner.agent.to_string(),
            agent_instance: owner.agent_instance.to_string(),
            expires,
        }
    }

    /// The owner recorded.
    pub fn owner(&self) -> SessionOwner<'_> {
        SessionOwner {
            server: &self.server,
            user_issuer: &self.user_issuer,
            user: &self.user,
            agent_issuer: &self.agent_issuer,
            agent: &self.agent,
            agent_instance: &self.agent_instance,
        }
    }

    /// Whether `caller` may use the token at `now`: an expired token is dead for everyone
    /// ([`SessionError::Expired`]), a live one is the owner's only ([`SessionError::Foreign`]).
    pub fn check(&self, caller: &SessionOwner<'_>, now: u64) -> Result<(), SessionError> {
        if now >= self.expires {
            return Err(SessionError::Expired);
        }
        if self.owner() != *caller {
            return Err(SessionError::Foreign);
        }
        Ok(())
    }
}

/// What a sealed session id carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionBinding {
    /// The server's real session id.
    #[serde(rename = "s")]
    pub session_id: String,
    /// The instance that created it (`ip:port`; empty without `routing`).
    #[serde(rename = "h")]
    pub host: String,
    /// The variant it was created on.
    #[serde(rename = "v", default)]
    pub variant: Option<String>,
    /// Who it belongs to, and until when.
    #[serde(rename = "o")]
    pub owner: SealedOwner,
}

/// Why a presented session id is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// Not one of ours, tampered with, or sealed with a key no longer configured.
    Unknown,
    /// Older than `sessions.max_age_seconds`: refused like an unknown id.
    Expired,
    /// Sealed for another user, agent, agent instance or server.
    Foreign,
}

const PREFIX: &str = "mw1";
const PURPOSE: &str = "session";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn keys(raw: serde_json::Value) -> Result<SessionKeys, ConfigError> {
        let raw: RawSessions = serde_json::from_value(json!({ "keys": raw })).unwrap();
        SessionKeys::compile(raw.keys, "sessions.keys")
    }

    fn b64(byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    }

    fn config() -> SessionKeys {
        keys(json!([{"id": "k2", "secret": b64(7)}, {"id": "k1", "secret": b64(1)}])).unwrap()
    }

    const NOW: u64 = 1_800_000_000;

    fn alice() -> SessionOwner<'static> {
        SessionOwner {
            server: "corp",
            user_issuer: "https://idp",
            user: "alice",
            agent_issuer: "https://idp",
            agent: "agent:x",
            agent_instance: "i-1",
        }
    }

    fn binding() -> SessionBinding {
        SessionBinding {
            session_id: "real-123".into(),
            host: "127.0.0.1:8112".into(),
            variant: Some("canary".into()),
            owner: config().owner_record(&alice(), NOW),
        }
    }

    #[test]
    fn sealed_ids_round_trip_and_hide_the_real_id() {
        let c = config();
        let sealed = c.seal(&binding()).unwrap();
        assert!(sealed.starts_with("mw1.k2."));
        assert!(!sealed.contains("real-123") && !sealed.contains("8112"));
        assert!(sealed.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert_eq!(c.open(&sealed, &alice(), NOW), Ok(binding()));
        assert_eq!(binding().owner.owner(), alice());
        assert_eq!(binding().owner.expires, NOW + DEFAULT_MAX_AGE_SECONDS);
    }

    #[test]
    fn foreign_tampered_and_unknown_ids_are_refused() {
        let c = config();
        let sealed = c.seal(&binding()).unwrap();
        let others = [
            SessionOwner {
                user: "bob",
                ..alice()
            },
            SessionOwner {
                agent: "agent:y",
                ..alice()
            },
            SessionOwner {
                agent: "",
                agent_issuer: "",
                agent_instance: "",
                ..alice()
            },
            SessionOwner {
                server: "hr",
                ..alice()
            },
            // The same `sub` from another issuer is another user.
            SessionOwner {
                user_issuer: "https://evil",
                ..alice()
            },
            SessionOwner {
                agent_issuer: "https://evil",
                ..alice()
            },
            // Another instance of the same agent, or the agent without an instance id.
            SessionOwner {
                agent_instance: "i-2",
                ..alice()
            },
            SessionOwner {
                agent_instance: "",
                ..alice()
            },
        ];
        for o in others {
            assert_eq!(
                c.open(&sealed, &o, NOW),
                Err(SessionError::Foreign),
                "{o:?}"
            );
        }
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 3;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            c.open(&String::from_utf8(flipped).unwrap(), &alice(), NOW),
            Err(SessionError::Unknown)
        );
        for bad in [
            "",
            "real-123",
            "mw1.k9.AAAA",
            "mw1.k2.",
            "mw1.k2.!!!",
            "mw2.k2.AAAA",
        ] {
            assert_eq!(
                c.open(bad, &alice(), NOW),
                Err(SessionError::Unknown),
                "{bad}"
            );
        }
    }

    #[test]
    fn ids_expire_after_max_age_for_everyone() {
        let raw: RawSessions = serde_json::from_value(
            json!({"keys": [{"id": "k", "secret": b64(3)}], "max_age_seconds": 60}),
        )
        .unwrap();
        let c = SessionKeys::from_raw(raw, "sessions").unwrap();
        let b = SessionBinding {
            owner: c.owner_record(&alice(), NOW),
            ..binding()
        };
        let sealed = c.seal(&b).unwrap();
        assert_eq!(c.open(&sealed, &alice(), NOW + 59), Ok(b));
        assert_eq!(
            c.open(&sealed, &alice(), NOW + 60),
            Err(SessionError::Expired)
        );
        // Expired first: nobody learns more from a dead id.
        let bob = SessionOwner {
            user: "bob",
            ..alice()
        };
        assert_eq!(
            c.open(&sealed, &bob, NOW + 3600),
            Err(SessionError::Expired)
        );
    }

    #[test]
    fn ids_sealed_without_an_issuer_instance_or_expiry_do_not_open() {
        // Binding formats before issuers, instances and expiry were bound: refused as unknown
        // (re-initialize), never matched against an empty field.
        let c = config();
        let olds = [
            json!({"s": "real", "h": "", "n": "corp", "u": "alice", "a": "agent:x"}),
            json!({"s": "real", "h": "", "n": "corp", "i": "https://idp", "u": "alice",
                   "j": "https://idp", "a": "agent:x"}),
            json!({"s": "real", "h": "", "o": {"n": "corp", "i": "https://idp", "u": "alice",
                   "j": "https://idp", "a": "agent:x", "k": "i-1"}}),
            json!({"s": "real", "h": "", "o": {"n": "corp", "i": "https://idp", "u": "alice",
                   "j": "https://idp", "a": "agent:x", "x": NOW + 10}}),
        ];
        for plain in olds {
            let old =
                crate::sealing::seal(&c, PREFIX, PURPOSE, plain.to_string().as_bytes()).unwrap();
            assert_eq!(
                c.open(&old, &alice(), NOW),
                Err(SessionError::Unknown),
                "{plain}"
            );
        }
        // Nor does a token sealed for another purpose (an SSE event id).
        let sealed = serde_json::to_vec(&binding()).unwrap();
        let other = crate::sealing::seal(&c, PREFIX, "event", &sealed).unwrap();
        assert_eq!(c.open(&other, &alice(), NOW), Err(SessionError::Unknown));
    }

    #[test]
    fn old_keys_still_open_after_rotation() {
        let old = keys(json!([{"id": "k1", "secret": b64(1)}])).unwrap();
        let sealed = old.seal(&binding()).unwrap();
        assert_eq!(config().open(&sealed, &alice(), NOW), Ok(binding()));
    }

    #[test]
    fn a_generated_key_seals_until_the_shared_one_replaces_it() {
        let mut g = SessionKeys::generated();
        assert!(g.is_generated());
        let own = g.generated_secret();
        if own.is_some() {
            let sealed = g.seal(&binding()).unwrap();
            assert!(sealed.starts_with("mw1.auto."));
            assert_eq!(g.open(&sealed, &alice(), NOW), Ok(binding()));
        }
        // Every worker installs the process's key: ids sealed by one open in another.
        let mut other = SessionKeys::generated();
        g.install_generated([9; 32]);
        other.install_generated([9; 32]);
        assert_eq!(g.generated_secret(), Some([9; 32]));
        let sealed = g.seal(&binding()).unwrap();
        assert_eq!(other.open(&sealed, &alice(), NOW), Ok(binding()));
        // Configured keys are never replaced.
        let mut configured = config();
        configured.install_generated([9; 32]);
        assert_eq!(configured.generated_secret(), None);
        assert!(configured.seal(&binding()).unwrap().starts_with("mw1.k2."));
        // Without any key nothing is sealed and nothing opens.
        let none = SessionKeys {
            keys: Vec::new(),
            generated: true,
            max_age: DEFAULT_MAX_AGE_SECONDS,
        };
        assert_eq!(none.seal(&binding()), None);
        assert_eq!(
            none.open(&sealed, &alice(), NOW),
            Err(SessionError::Unknown)
        );
    }

    #[test]
    fn max_age_is_bounded_and_names_its_field() {
        let compile = |age: serde_json::Value| {
            let raw: RawSessions =
                serde_json::from_value(json!({ "max_age_seconds": age })).unwrap();
            SessionKeys::from_raw(raw, "sessions")
        };
        for bad in [json!(0), json!(2_592_001)] {
            assert_eq!(compile(bad).unwrap_err().field, "sessions.max_age_seconds");
        }
        assert_eq!(compile(json!(2_592_000)).unwrap().max_age, 2_592_000);
        let raw: RawSessions = serde_json::from_value(json!({})).unwrap();
        assert_eq!(
            SessionKeys::from_raw(raw, "sessions").unwrap().max_age,
            DEFAULT_MAX_AGE_SECONDS
        );
    }

    #[test]
    fn config_errors_name_the_field() {
        let field = |raw: serde_json::Value| keys(raw).unwrap_err().field;
        assert!(keys(json!([])).unwrap().is_generated());
        assert_eq!(
            field(json!([{"id": "k", "secret": "c2hvcnQ="}])),
            "sessions.keys[0].secret"
        );
        assert_eq!(
            field(json!([{"id": "k", "secret": "%%%"}])),
            "sessions.keys[0].secret"
        );
        assert_eq!(
            field(json!([{"id": "bad id", "secret": b64(1)}])),
            "sessions.keys[0].id"
        );
        assert_eq!(
            field(json!([{"id": "auto", "secret": b64(1)}])),
            "sessions.keys[0].id"
        );
        assert_eq!(
            field(json!([{"id": "k", "secret": b64(1)}, {"id": "k", "secret": b64(2)}])),
            "sessions.keys[1].id"
        );
    }
}
