//! Routing: which server, which version of it, and which instance.
//!
//! The filter tells Envoy where a request goes through headers its route table and load
//! balancer read (the header contract, README "Routing"): `x-mcp-server`, `x-mcp-variant`,
//! `x-mcp-upstream-host` (for the `override_host` policy) and `x-mcp-affinity-key` (for a
//! `ring_hash` fallback). Sessions stay on the instance that created them without any shared
//! store: the server's `Mcp-Session-Id` is replaced by a *sealed* id (XChaCha20-Poly1305 with a
//! configured key) that carries the real id, the instance address, the variant and the owner
//! (user and agent). Any replica with the same keys can route any session; a tampered id, or
//! one presented by another user or agent, is refused.

use crate::config::{err, ConfigError};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Header naming the server (route match).
pub const SERVER_HEADER: &str = "x-mcp-server";
/// Header naming the variant (route match).
pub const VARIANT_HEADER: &str = "x-mcp-variant";
/// Header naming the instance of a session (override_host).
pub const UPSTREAM_HOST_HEADER: &str = "x-mcp-upstream-host";
/// Header carrying a stable per-user key (ring_hash fallback).
pub const AFFINITY_HEADER: &str = "x-mcp-affinity-key";
/// Every header the filter owns for routing: client copies are removed.
pub const ROUTING_HEADERS: [&str; 4] = [
    SERVER_HEADER,
    VARIANT_HEADER,
    UPSTREAM_HOST_HEADER,
    AFFINITY_HEADER,
];

/// The `routing` section of the plugin configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// Keys sealing session ids: the first seals, all open (rotation: prepend a new key, drop an
    /// old one once its sessions have ended). `secret` is base64 of 32 random bytes.
    pub session_keys: Vec<RawKey>,
    /// Per server: versions and how traffic splits between them.
    #[serde(default)]
    pub servers: HashMap<String, RawServerRouting>,
}

/// A session key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// Short id written into sealed session ids (`[A-Za-z0-9_-]{1,16}`).
    pub id: String,
    /// Base64 (standard) of 32 random bytes.
    pub secret: String,
}

/// Routing of one server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerRouting {
    /// Versions of the server, e.g. stable 90 / canary 10.
    #[serde(default)]
    pub variants: Vec<RawVariant>,
    /// Tool → variant, for requests that belong to no session.
    #[serde(default)]
    pub tool_variants: HashMap<String, String>,
}

/// One version of a server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVariant {
    /// Name, sent in `x-mcp-variant` (`[A-Za-z0-9_-]+`).
    pub name: String,
    /// Share of users (relative weight, 0..=10000).
    #[serde(default)]
    pub weight: u32,
    /// Users in any of these groups always get this variant (audience split).
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone)]
struct Variant {
    name: String,
    weight: u32,
    groups: Vec<String>,
}

#[derive(Debug, Clone)]
struct ServerRouting {
    variants: Vec<Variant>,
    total_weight: u32,
    tool_variants: HashMap<String, String>,
}

/// Compiled routing configuration.
#[derive(Clone)]
pub struct RoutingConfig {
    keys: Vec<(String, [u8; 32])>,
    servers: HashMap<String, ServerRouting>,
}

impl std::fmt::Debug for RoutingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutingConfig")
            .field(
                "keys",
                &self
                    .keys
                    .iter()
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("servers", &self.servers)
            .finish()
    }
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl RawRouting {
    /// Validates and compiles (`at`: the section's path).
    pub fn compile(self, at: &str) -> Result<RoutingConfig, ConfigError> {
        if self.session_keys.is_empty() {
            return Err(err(&format!("{at}.session_keys"), "needs at least one key"));
        }
        let mut keys = Vec::new();
        for (i, k) in self.session_keys.into_iter().enumerate() {
            let f = format!("{at}.session_keys[{i}]");
            if !valid_name(&k.id, 16) {
                return Err(err(
                    &format!("{f}.id"),
                    "must be 1-16 characters of [A-Za-z0-9_-]",
                ));
            }
            if keys.iter().any(|(id, _): &(String, [u8; 32])| id == &k.id) {
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
        let mut servers = HashMap::new();
        for (name, s) in self.servers {
            let f = format!("{at}.servers.{name}");
            let mut variants = Vec::new();
            for (i, v) in s.variants.into_iter().enumerate() {
                if !valid_name(&v.name, 64) {
                    return Err(err(
                        &format!("{f}.variants[{i}].name"),
                        "must be [A-Za-z0-9_-]+",
                    ));
                }
                if v.weight > 10_000 {
                    return Err(err(
                        &format!("{f}.variants[{i}].weight"),
                        "must be at most 10000",
                    ));
                }
                variants.push(Variant {
                    name: v.name,
                    weight: v.weight,
                    groups: v.groups,
                });
            }
            let total_weight = variants.iter().map(|v| v.weight).sum();
            if !variants.is_empty() && total_weight == 0 {
                return Err(err(&format!("{f}.variants"), "weights must not all be 0"));
            }
            for (tool, variant) in &s.tool_variants {
                if !variants.iter().any(|v| &v.name == variant) {
                    return Err(err(
                        &format!("{f}.tool_variants.{tool}"),
                        format!("no variant named `{variant}`"),
                    ));
                }
            }
            servers.insert(
                name,
                ServerRouting {
                    variants,
                    total_weight,
                    tool_variants: s.tool_variants,
                },
            );
        }
        Ok(RoutingConfig { keys, servers })
    }
}

/// What a sealed session id carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionBinding {
    /// The server's real session id.
    #[serde(rename = "s")]
    pub session_id: String,
    /// The instance that created it (`ip:port`).
    #[serde(rename = "h")]
    pub host: String,
    /// The variant it was created on.
    #[serde(rename = "v", default)]
    pub variant: Option<String>,
    /// The server.
    #[serde(rename = "n")]
    pub server: String,
    /// The owning user's `sub`.
    #[serde(rename = "u")]
    pub user: String,
    /// The owning agent's `sub` (empty when no agent).
    #[serde(rename = "a", default)]
    pub agent: String,
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

impl crate::sealing::KeyRing for RoutingConfig {
    fn sealing_key(&self) -> Option<(&str, &[u8; 32])> {
        self.keys.first().map(|(id, k)| (id.as_str(), k))
    }
    fn key(&self, id: &str) -> Option<&[u8; 32]> {
        self.keys.iter().find(|(i, _)| i == id).map(|(_, k)| k)
    }
}

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut h = hmac_sha256::HMAC::new(key);
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

impl RoutingConfig {
    /// Seals a binding into a session id for the client. Deterministic (the nonce is derived
    /// from the binding with HMAC), so no random source is needed.
    pub fn seal(&self, binding: &SessionBinding) -> Option<String> {
        let (kid, key) = self.keys.first()?;
        let plain = serde_json::to_vec(binding).ok()?;
        let nonce_full = hmac(key, &[b"mcp-warden session nonce", &plain]);
        let nonce = XNonce::from_slice(&nonce_full[..24]);
        let cipher = XChaCha20Poly1305::new(key.into());
        let sealed = cipher.encrypt(nonce, plain.as_slice()).ok()?;
        let mut out = nonce_full[..24].to_vec();
        out.extend_from_slice(&sealed);
        Some(format!(
            "{PREFIX}.{kid}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
        ))
    }

    /// Opens a sealed session id and checks it belongs to this caller and server.
    pub fn open(
        &self,
        sealed: &str,
        server: &str,
        user: &str,
        agent: &str,
    ) -> Result<SessionBinding, SessionError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(PREFIX), Some(kid), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SessionError::Unknown);
        };
        let Some((_, key)) = self.keys.iter().find(|(id, _)| id == kid) else {
            return Err(SessionError::Unknown);
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SessionError::Unknown)?;
        if raw.len() < 24 + 16 {
            return Err(SessionError::Unknown);
        }
        let (nonce, ct) = raw.split_at(24);
        let cipher = XChaCha20Poly1305::new(key.into());
        let plain = cipher
            .decrypt(XNonce::from_slice(nonce), ct)
            .map_err(|_| SessionError::Unknown)?;
        let b: SessionBinding =
            serde_json::from_slice(&plain).map_err(|_| SessionError::Unknown)?;
        if b.server != server || b.user != user || b.agent != agent {
            return Err(SessionError::Foreign);
        }
        Ok(b)
    }

    /// The variant for a new session / stateless request.
    pub fn choose_variant(
        &self,
        server: &str,
        user: &str,
        groups: &[String],
        tool: Option<&str>,
    ) -> Option<String> {
        let s = self.servers.get(server)?;
        if s.variants.is_empty() {
            return None;
        }
        if let Some(v) = tool.and_then(|t| s.tool_variants.get(t)) {
            return Some(v.clone());
        }
        if let Some(v) = s
            .variants
            .iter()
            .find(|v| v.groups.iter().any(|g| groups.contains(g)))
        {
            return Some(v.name.clone());
        }
        let h = hmac_sha256::Hash::hash(format!("{server}\u{0}{user}").as_bytes());
        let mut n = [0u8; 8];
        n.copy_from_slice(&h[..8]);
        let mut point = (u64::from_le_bytes(n) % u64::from(s.total_weight.max(1))) as u32;
        for v in &s.variants {
            if point < v.weight {
                return Some(v.name.clone());
            }
            point -= v.weight;
        }
        s.variants.last().map(|v| v.name.clone())
    }

    /// Names of the servers with routing settings.
    pub fn server_names(&self) -> impl Iterator<Item = &str> {
        self.servers.keys().map(String::as_str)
    }

    /// Whether sessions of this server carry a variant.
    pub fn has_variants(&self, server: &str) -> bool {
        self.servers
            .get(server)
            .is_some_and(|s| !s.variants.is_empty())
    }
}

/// A stable, non-reversible per-user key for hash-based load balancing.
pub fn affinity_key(server: &str, user: &str) -> String {
    let h =
        hmac_sha256::Hash::hash(format!("mcp-warden affinity\u{0}{server}\u{0}{user}").as_bytes());
    h.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn config() -> RoutingConfig {
        let raw = json!({
            "session_keys": [{"id": "k2", "secret": base64::engine::general_purpose::STANDARD.encode([7u8; 32])},
                             {"id": "k1", "secret": base64::engine::general_purpose::STANDARD.encode([1u8; 32])}],
            "servers": {"corp": {"variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10, "groups": ["beta"]}],
                                 "tool_variants": {"delete_file": "stable"}}}
        });
        serde_json::from_value::<RawRouting>(raw)
            .unwrap()
            .compile("routing")
            .unwrap()
    }

    fn binding() -> SessionBinding {
        SessionBinding {
            session_id: "real-123".into(),
            host: "127.0.0.1:8112".into(),
            variant: Some("canary".into()),
            server: "corp".into(),
            user: "alice".into(),
            agent: "agent:x".into(),
        }
    }

    #[test]
    fn sealed_ids_round_trip_and_hide_the_real_id() {
        let c = config();
        let sealed = c.seal(&binding()).unwrap();
        assert!(sealed.starts_with("mw1.k2."));
        assert!(!sealed.contains("real-123") && !sealed.contains("8112"));
        assert!(sealed.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert_eq!(c.open(&sealed, "corp", "alice", "agent:x"), Ok(binding()));
    }

    #[test]
    fn foreign_tampered_and_unknown_ids_are_refused() {
        let c = config();
        let sealed = c.seal(&binding()).unwrap();
        assert_eq!(
            c.open(&sealed, "corp", "bob", "agent:x"),
            Err(SessionError::Foreign)
        );
        assert_eq!(
            c.open(&sealed, "corp", "alice", "agent:y"),
            Err(SessionError::Foreign)
        );
        assert_eq!(
            c.open(&sealed, "hr", "alice", "agent:x"),
            Err(SessionError::Foreign)
        );
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 3;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            c.open(
                &String::from_utf8(flipped).unwrap(),
                "corp",
                "alice",
                "agent:x"
            ),
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
                c.open(bad, "corp", "alice", "agent:x"),
                Err(SessionError::Unknown),
                "{bad}"
            );
        }
    }

    #[test]
    fn old_keys_still_open_after_rotation() {
        let old = serde_json::from_value::<RawRouting>(json!({"session_keys": [{"id": "k1", "secret": base64::engine::general_purpose::STANDARD.encode([1u8; 32])}]}))
            .unwrap()
            .compile("routing")
            .unwrap();
        let sealed = old.seal(&binding()).unwrap();
        assert_eq!(
            config().open(&sealed, "corp", "alice", "agent:x"),
            Ok(binding())
        );
    }

    #[test]
    fn variants_split_by_weight_audience_and_tool() {
        let c = config();
        let canary = (0..2000)
            .filter(|i| {
                c.choose_variant("corp", &format!("user-{i}"), &[], None)
                    .as_deref()
                    == Some("canary")
            })
            .count();
        assert!((160..=240).contains(&canary), "canary share {canary}/2000");
        assert_eq!(
            c.choose_variant("corp", "u", &["beta".into()], None)
                .as_deref(),
            Some("canary")
        );
        assert_eq!(
            c.choose_variant("corp", "u", &["beta".into()], Some("delete_file"))
                .as_deref(),
            Some("stable")
        );
        let first = c.choose_variant("corp", "same", &[], None);
        assert!((0..10).all(|_| c.choose_variant("corp", "same", &[], None) == first));
        assert_eq!(c.choose_variant("hr", "u", &[], None), None);
    }

    #[test]
    fn config_errors_name_the_field() {
        let field = |raw: serde_json::Value| {
            serde_json::from_value::<RawRouting>(raw)
                .unwrap()
                .compile("routing")
                .unwrap_err()
                .field
        };
        assert_eq!(field(json!({"session_keys": []})), "routing.session_keys");
        assert_eq!(
            field(json!({"session_keys": [{"id": "k", "secret": "c2hvcnQ="}]})),
            "routing.session_keys[0].secret"
        );
        assert_eq!(
            field(
                json!({"session_keys": [{"id": "bad id", "secret": base64::engine::general_purpose::STANDARD.encode([1u8; 32])}]})
            ),
            "routing.session_keys[0].id"
        );
        let key = json!([{"id": "k", "secret": base64::engine::general_purpose::STANDARD.encode([1u8; 32])}]);
        assert_eq!(
            field(
                json!({"session_keys": key, "servers": {"s": {"variants": [{"name": "a", "weight": 0}]}}})
            ),
            "routing.servers.s.variants"
        );
        assert_eq!(
            field(
                json!({"session_keys": key, "servers": {"s": {"variants": [{"name": "a", "weight": 1}], "tool_variants": {"t": "b"}}}})
            ),
            "routing.servers.s.tool_variants.t"
        );
    }
}
