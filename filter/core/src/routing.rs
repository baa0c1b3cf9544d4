//! Routing: which server, which version of it, and which instance.
//!
//! The filter tells Envoy where a request goes through headers its route table and load
//! balancer read (the header contract, README "Routing"): `x-mcp-server`, `x-mcp-variant`,
//! `x-mcp-upstream-host` (for the `override_host` policy) and `x-mcp-affinity-key` (for a
//! `ring_hash` fallback). Sessions stay on the instance that created them without any shared
//! store: the sealed session id (see [`crate::sessions`]) also carries the instance address and
//! the variant. Any replica with the same session keys can route any session.

use crate::config::{err, ConfigError};
use crate::sessions::RawKey;
use serde::Deserialize;
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
    /// Keys sealing session ids, as in `sessions.keys` (kept for configurations written before
    /// `sessions` existed; set the keys in one of the two places).
    #[serde(default)]
    pub session_keys: Option<Vec<RawKey>>,
    /// Per server: versions and how traffic splits between them.
    #[serde(default)]
    pub servers: HashMap<String, RawServerRouting>,
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
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    servers: HashMap<String, ServerRouting>,
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl RawRouting {
    /// Validates and compiles (`at`: the section's path). `session_keys` is compiled with
    /// the other session settings (see [`crate::config`]).
    pub fn compile(self, at: &str) -> Result<RoutingConfig, ConfigError> {
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
        Ok(RoutingConfig { servers })
    }
}

impl RoutingConfig {
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
            "servers": {"corp": {"variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10, "groups": ["beta"]}],
                                 "tool_variants": {"delete_file": "stable"}}}
        });
        serde_json::from_value::<RawRouting>(raw)
            .unwrap()
            .compile("routing")
            .unwrap()
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
        assert_eq!(
            field(json!({"servers": {"s": {"variants": [{"name": "a", "weight": 0}]}}})),
            "routing.servers.s.variants"
        );
        assert_eq!(
            field(json!({"servers": {"s": {"variants": [{"name": "bad name", "weight": 1}]}}})),
            "routing.servers.s.variants[0].name"
        );
        assert_eq!(
            field(
                json!({"servers": {"s": {"variants": [{"name": "a", "weight": 1}], "tool_variants": {"t": "b"}}}})
            ),
            "routing.servers.s.tool_variants.t"
        );
    }
}
