//! Sealed session ids: the server's `Mcp-Session-Id` never reaches the client. The client gets
//! a *sealed* id instead (XChaCha20-Poly1305) that carries the real id, the owner (issuer and
//! subject of the user, and of the agent when there is one), the server and, with `routing`,
//! the instance and variant. A tampered id, an id sealed with a key no longer configured, or one
//! presented by another caller or for another server is refused before anything goes upstream.
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
    /// Validates configured keys (`at`: the field path of the list). An empty list means a
    /// generated key.
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
        }
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

    /// Opens a sealed session id and checks it belongs to this caller and server.
    pub fn open(
        &self,
        sealed: &str,
        owner: &SessionOwner<'_>,
    ) -> Result<SessionBinding, SessionError> {
        let plain =
            crate::sealing::open(self, PREFIX, PURPOSE, sealed).ok_or(SessionError::Unknown)?;
        let b: SessionBinding =
            serde_json::from_slice(&plain).map_err(|_| SessionError::Unknown)?;
        if b.owner() != *owner {
            return Err(SessionError::Foreign);
        }
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

/// Who presents (or opens) a session, and on which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOwner<'a> {
    /// The server.
    pub server: &'a str,
    /// Issuer of the user's token.
    pub user_issuer: &'a str,
    /// The user's `sub`.
    pub user: &'a str,
    /// Issuer of the agent's token (empty when no agent).
    pub agent_issuer: &'a str,
    /// The agent's `sub` (empty when no agent).
    pub agent: &'a str,
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
    /// The server.
    #[serde(rename = "n")]
    pub server: String,
    /// Issuer of the owning user's token. Required: ids sealed before owners carried their
    /// issuer do not open (the client initializes again).
    #[serde(rename = "i")]
    pub user_issuer: String,
    /// The owning user's `sub`.
    #[serde(rename = "u")]
    pub user: String,
    /// Issuer of the owning agent's token (empty when no agent).
    #[serde(rename = "j", default)]
    pub agent_issuer: String,
    /// The owning agent's `sub` (empty when no agent).
    #[serde(rename = "a", default)]
    pub agent: String,
}

impl SessionBinding {
    /// The owner recorded in this binding.
    pub fn owner(&self) -> SessionOwner<'_> {
        SessionOwner {
            server: &self.server,
            user_issuer: &self.user_issuer,
            user: &self.user,
            agent_issuer: &self.agent_issuer,
            agent: &self.agent,
        }
    }
}

/// Why a presented session id is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// Not one of ours, tampered with, or sealed with a key no longer configured.
    Unknown,
    /// Sealed for another user, agent or server.
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

    fn binding() -> SessionBinding {
        SessionBinding {
            session_id: "real-123".into(),
            host: "127.0.0.1:8112".into(),
            variant: Some("canary".into()),
            server: "corp".into(),
            user_issuer: "https://idp".into(),
            user: "alice".into(),
            agent_issuer: "https://idp".into(),
            agent: "agent:x".into(),
        }
    }

    fn alice() -> SessionOwner<'static> {
        SessionOwner {
            server: "corp",
            user_issuer: "https://idp",
            user: "alice",
            agent_issuer: "https://idp",
            agent: "agent:x",
        }
    }

    #[test]
    fn sealed_ids_round_trip_and_hide_the_real_id() {
        let c = config();
        let sealed = c.seal(&binding()).unwrap();
        assert!(sealed.starts_with("mw1.k2."));
        assert!(!sealed.contains("real-123") && !sealed.contains("8112"));
        assert!(sealed.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert_eq!(c.open(&sealed, &alice()), Ok(binding()));
        assert_eq!(binding().owner(), alice());
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
        ];
        for o in others {
            assert_eq!(c.open(&sealed, &o), Err(SessionError::Foreign), "{o:?}");
        }
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 3;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            c.open(&String::from_utf8(flipped).unwrap(), &alice()),
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
            assert_eq!(c.open(bad, &alice()), Err(SessionError::Unknown), "{bad}");
        }
    }

    #[test]
    fn ids_sealed_without_an_issuer_do_not_open() {
        // The binding format before issuers were bound: refused as unknown (re-initialize),
        // never matched against an empty issuer.
        let c = config();
        let plain =
            json!({"s": "real", "h": "", "n": "corp", "u": "alice", "a": "agent:x"}).to_string();
        let old = crate::sealing::seal(&c, PREFIX, PURPOSE, plain.as_bytes()).unwrap();
        assert_eq!(c.open(&old, &alice()), Err(SessionError::Unknown));
        // Nor does a token sealed for another purpose (an SSE event id).
        let sealed = serde_json::to_vec(&binding()).unwrap();
        let other = crate::sealing::seal(&c, PREFIX, "event", &sealed).unwrap();
        assert_eq!(c.open(&other, &alice()), Err(SessionError::Unknown));
    }

    #[test]
    fn old_keys_still_open_after_rotation() {
        let old = keys(json!([{"id": "k1", "secret": b64(1)}])).unwrap();
        let sealed = old.seal(&binding()).unwrap();
        assert_eq!(config().open(&sealed, &alice()), Ok(binding()));
    }

    #[test]
    fn a_generated_key_seals_until_the_shared_one_replaces_it() {
        let mut g = SessionKeys::generated();
        assert!(g.is_generated());
        let own = g.generated_secret();
        if own.is_some() {
            let sealed = g.seal(&binding()).unwrap();
            assert!(sealed.starts_with("mw1.auto."));
            assert_eq!(g.open(&sealed, &alice()), Ok(binding()));
        }
        // Every worker installs the process's key: ids sealed by one open in another.
        let mut other = SessionKeys::generated();
        g.install_generated([9; 32]);
        other.install_generated([9; 32]);
        assert_eq!(g.generated_secret(), Some([9; 32]));
        let sealed = g.seal(&binding()).unwrap();
        assert_eq!(other.open(&sealed, &alice()), Ok(binding()));
        // Configured keys are never replaced.
        let mut configured = config();
        configured.install_generated([9; 32]);
        assert_eq!(configured.generated_secret(), None);
        assert!(configured.seal(&binding()).unwrap().starts_with("mw1.k2."));
        // Without any key nothing is sealed and nothing opens.
        let none = SessionKeys {
            keys: Vec::new(),
            generated: true,
        };
        assert_eq!(none.seal(&binding()), None);
        assert_eq!(none.open(&sealed, &alice()), Err(SessionError::Unknown));
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
