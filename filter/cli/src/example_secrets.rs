//! Keys and secrets copied from this repository's examples, found anywhere in a plugin
//! configuration: `warden check` warns about each, naming the field (never printing the value).
//!
//! Secrets are compared by value (a session key by its decoded bytes, so any base64 spelling
//! matches); PEM keys by key material: the demo attestation key's public point or private
//! scalar anywhere in the DER, so its SPKI, PKCS#8 and SEC1 forms all match.

use base64::engine::general_purpose::{GeneralPurpose, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;

/// Client secrets of the demo IdP (`integration-tests/stack/idp/README.md`);
/// `mcp-warden-secret` is the token exchange's in `envoy/demo.yaml`.
const DEMO_CLIENT_SECRETS: [(&str, &str); 3] = [
    (
        "mcp-warden-secret",
        "the demo STS client secret (envoy/demo.yaml, integration-tests/stack/idp)",
    ),
    (
        "agent-claude-secret",
        "a demo IdP client secret (integration-tests/stack/idp)",
    ),
    (
        "agent-scraper-secret",
        "a demo IdP client secret (integration-tests/stack/idp)",
    ),
];

/// Session keys shipped in examples, tests and benchmarks (base64 of 32 bytes).
const EXAMPLE_SESSION_KEYS: [(&str, &str); 3] = [
    (
        "QLPlh2LIKRAJecQbCuXzKC1FGssgQJoNoid9OAr1QF4=",
        "the test session key of envoy/routing.yaml",
    ),
    (
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "a test session key of this repository (the bytes 0..31)",
    ),
    (
        "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        "a test session key of this repository (32 bytes of 1)",
    ),
];

/// The demo attestation key pair (private key, JWKS) the demo IdP signs attestations with.
const DEMO_ATTESTATION_KEY_PEM: &str =
    include_str!("../../../integration-tests/stack/idp/demo-keys/attestation-key.pem");
/// Where it lives, for the messages.
const DEMO_KEYS_DIR: &str = "integration-tests/stack/idp/demo-keys";

/// One example secret found: the field holding it and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Dotted path of the field (`token_exchange.client_auth.client_secret`).
    pub field: String,
    /// What the value is and why it matters (without the value).
    pub message: String,
}

/// Every example secret in a plugin configuration, ordered by field path.
pub fn find(config: &Value) -> Vec<Finding> {
    let demo = DemoKey::load();
    let mut out = Vec::new();
    walk(config, &mut String::new(), &demo, &mut out);
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

fn walk(value: &Value, path: &mut String, demo: &Option<DemoKey>, out: &mut Vec<Finding>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                walk(v, path, demo, out);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(v, path, demo, out);
                path.truncate(len);
            }
        }
        Value::String(s) => {
            if let Some(message) = classify(s, demo) {
                out.push(Finding {
                    field: if path.is_empty() {
                        ".".into()
                    } else {
                        path.clone()
                    },
                    message,
                });
            }
        }
        _ => {}
    }
}

/// What an example value is, if `s` is one.
fn classify(s: &str, demo: &Option<DemoKey>) -> Option<String> {
    let t = s.trim();
    if let Some((_, what)) = DEMO_CLIENT_SECRETS.iter().find(|(v, _)| *v == t) {
        return Some(format!(
            "{what}: published with this repository, so anyone can authenticate as this client; use your own secret"
        ));
    }
    if t.contains("-----BEGIN") {
        let demo = demo.as_ref()?;
        return pem_blocks(t).iter().find_map(|der| demo.describe(der));
    }
    let bytes = decode_b64(t)?;
    EXAMPLE_SESSION_KEYS
        .iter()
        .find(|(k, _)| decode_b64(k).is_some_and(|known| known == bytes))
        .map(|(_, what)| {
            format!(
                "{what}: published with this repository, so anyone can forge or open sealed session ids; generate 32 random bytes (`openssl rand -base64 32`)"
            )
        })
}

/// Base64, standard or URL-safe, padded or not; `None` when it is neither.
fn decode_b64(text: &str) -> Option<Vec<u8>> {
    let bare = text.trim_end_matches('=');
    let engines: [&GeneralPurpose; 2] = [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD];
    engines.iter().find_map(|e| e.decode(bare).ok())
}

/// The DER of each PEM block in `text` (headers such as `Proc-Type:` skipped).
fn pem_blocks(text: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("-----BEGIN") {
            body = Some(String::new());
        } else if line.starts_with("-----END") {
            if let Some(b) = body.take() {
                if let Some(der) = decode_b64(&b) {
                    out.push(der);
                }
            }
        } else if let Some(b) = body.as_mut() {
            if !line.contains(':') {
                b.extend(line.chars().filter(|c| !c.is_whitespace()));
            }
        }
    }
    out
}

/// The demo attestation key's material: its P-256 point (uncompressed) and private scalar.
struct DemoKey {
    point: Vec<u8>,
    scalar: Vec<u8>,
}

impl DemoKey {
    /// Read from the PKCS#8 file: `04 20 <d>` is the private key, `03 42 00 <point>` the
    /// public key.
    fn load() -> Option<DemoKey> {
        let der = pem_blocks(DEMO_ATTESTATION_KEY_PEM).into_iter().next()?;
        let scalar = after(&der, &[0x02, 0x01, 0x01, 0x04, 0x20], 32)?;
        let point = after(&der, &[0x03, 0x42, 0x00, 0x04], 64).map(|xy| {
            let mut p = vec![0x04];
            p.extend(xy);
            p
        })?;
        Some(DemoKey { point, scalar })
    }

    fn describe(&self, der: &[u8]) -> Option<String> {
        if contains(der, &self.scalar) {
            Some(format!(
                "the demo attestation PRIVATE key ({DEMO_KEYS_DIR}/attestation-key.pem): published with this repository, so anyone can sign with it; use your own key"
            ))
        } else if contains(der, &self.point) {
            Some(format!(
                "the demo attestation public key ({DEMO_KEYS_DIR}): its private key is published with this repository, so anyone can sign what this key verifies; trust your attester's key instead"
            ))
        } else {
            None
        }
    }
}

/// The `len` bytes after the first `marker` in `der`.
fn after(der: &[u8], marker: &[u8], len: usize) -> Option<Vec<u8>> {
    let at = der.windows(marker.len()).position(|w| w == marker)? + marker.len();
    der.get(at..at + len).map(<[u8]>::to_vec)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    const DEMO_PUB_PEM: &str =
        include_str!("../../../integration-tests/stack/idp/demo-keys/attestation-pub.pem");
    const DEMO_JWKS: &str =
        include_str!("../../../integration-tests/stack/idp/demo-keys/attestation-jwks.json");

    fn fields(config: &Value) -> Vec<String> {
        find(config).into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn the_demo_key_is_read_and_matches_its_published_halves() {
        let key = DemoKey::load().unwrap();
        let jwks: Value = serde_json::from_str(DEMO_JWKS).unwrap();
        let x = URL_SAFE_NO_PAD
            .decode(jwks["keys"][0]["x"].as_str().unwrap())
            .unwrap();
        let y = URL_SAFE_NO_PAD
            .decode(jwks["keys"][0]["y"].as_str().unwrap())
            .unwrap();
        assert_eq!(key.point, [&[0x04][..], &x, &y].concat());
        assert!(contains(&pem_blocks(DEMO_PUB_PEM)[0], &key.point));
        assert_eq!(key.scalar.len(), 32);
    }

    #[test]
    fn demo_secrets_are_found_where_they_are_and_not_echoed() {
        let config = json!({
            "mode": "open",
            "token_exchange": {"client_auth": {"method": "client_secret_basic", "client_id": "mcp-warden", "client_secret": "mcp-warden-secret"}},
            "sessions": {"keys": [
                {"id": "mine", "secret": "c29tZXRoaW5nIGVsc2UgZW50aXJlbHksIDMyIGJ5dGU="},
                {"id": "copied", "secret": "QLPlh2LIKRAJecQbCuXzKC1FGssgQJoNoid9OAr1QF4="}
            ]},
            "identity": {"agent": {"attestation": {"keys": [{"alg": "ES256", "pem": DEMO_PUB_PEM}]}}}
        });
        let found = find(&config);
        let fields: Vec<&str> = found.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "identity.agent.attestation.keys[0].pem",
                "sessions.keys[1].secret",
                "token_exchange.client_auth.client_secret"
            ]
        );
        assert!(found[1].message.contains("envoy/routing.yaml"), "{found:?}");
        for f in &found {
            assert!(
                !f.message.contains("mcp-warden-secret") && !f.message.contains("QLPlh2"),
                "{f:?}"
            );
        }
    }

    #[test]
    fn any_spelling_of_the_same_key_is_found() {
        let key = DemoKey::load().unwrap();
        // The private key as given, re-wrapped on other line lengths, with CRLF, and as the
        // bare SEC1 form (`EC PRIVATE KEY`) built from the same scalar and point.
        let der = pem_blocks(DEMO_ATTESTATION_KEY_PEM).remove(0);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let rewrapped = format!(
            "-----BEGIN PRIVATE KEY-----\r\n{}\r\n{}\r\n-----END PRIVATE KEY-----",
            &b64[..20],
            &b64[20..]
        );
        let mut sec1 = vec![0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20];
        sec1.extend(&key.scalar);
        sec1.extend([
            0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
        ]);
        sec1.extend([0xa1, 0x44, 0x03, 0x42, 0x00]);
        sec1.extend(&key.point);
        let sec1 = format!(
            "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&sec1)
        );
        for pem in [DEMO_ATTESTATION_KEY_PEM.to_string(), rewrapped, sec1] {
            let found = find(&json!({"token_exchange": {"client_auth": {"key_pem": pem}}}));
            assert_eq!(found.len(), 1, "{pem}");
            assert!(found[0].message.contains("PRIVATE"), "{found:?}");
        }
        // A session key in URL-safe or unpadded base64, or with spaces around it.
        for spelling in [
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
            " AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE= ",
            "QLPlh2LIKRAJecQbCuXzKC1FGssgQJoNoid9OAr1QF4",
        ] {
            assert_eq!(
                fields(&json!({"routing": {"session_keys": [{"id": "k", "secret": spelling}]}})),
                ["routing.session_keys[0].secret"],
                "{spelling}"
            );
        }
    }

    #[test]
    fn other_keys_and_secrets_are_not_flagged() {
        // Another P-256 public key (from the core's tests), another secret, other strings.
        let other_pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8xOUetsCa8EfOlDEBAfREhJqspDo\nyEh6Szz2in47Tv5n52m9dLYyPCbqZkOB5nTSqtscpkQD/HpykCggvx09iQ==\n-----END PUBLIC KEY-----\n";
        let config = json!({
            "identity": {"agent": {"attestation": {"keys": [{"alg": "ES256", "pem": other_pem}]}}},
            "token_exchange": {"client_auth": {"client_secret": "mcp-warden-secret-2"}},
            "sessions": {"keys": [{"id": "k", "secret": "c29tZXRoaW5nIGVsc2UgZW50aXJlbHksIDMyIGJ5dGU="}]},
            "policy": {"rules": [{"id": "mcp-warden", "description": "-----BEGIN nothing"}]}
        });
        assert!(find(&config).is_empty(), "{:?}", find(&config));
    }
}
