//! Sealed tokens handed to clients and read back: XChaCha20-Poly1305 under a key of the
//! configured ring, with a key derived per purpose so a token sealed for one use (an SSE event
//! id) can never be opened as another (a session id).
//!
//! Format: `<prefix>.<key id>.<base64url(nonce ‖ ciphertext)>`. The nonce is derived from the
//! plaintext with HMAC-SHA-256 (deterministic, no random source needed; equal plaintexts give
//! equal tokens, which reveals nothing they do not already share).

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// A key ring: the first key seals, every key opens.
pub trait KeyRing {
    /// The key that seals, with its id.
    fn sealing_key(&self) -> Option<(&str, &[u8; 32])>;
    /// The key with this id.
    fn key(&self, id: &str) -> Option<&[u8; 32]>;
}

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut h = hmac_sha256::HMAC::new(key);
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// The key of `purpose` derived from a ring key.
fn derive(key: &[u8; 32], purpose: &str) -> [u8; 32] {
    hmac(key, &[b"mcp-warden sealing key", purpose.as_bytes()])
}

/// Seals `plain` for `purpose`; `None` without a key.
pub fn seal(ring: &dyn KeyRing, prefix: &str, purpose: &str, plain: &[u8]) -> Option<String> {
    let (kid, key) = ring.sealing_key()?;
    let key = derive(key, purpose);
    let nonce_full = hmac(&key, &[b"nonce", plain]);
    let nonce = XNonce::from_slice(&nonce_full[..24]);
    let sealed = XChaCha20Poly1305::new((&key).into())
        .encrypt(nonce, plain)
        .ok()?;
    let mut out = nonce_full[..24].to_vec();
    out.extend_from_slice(&sealed);
    Some(format!(
        "{prefix}.{kid}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    ))
}

/// Opens a token sealed by [`seal`] with the same prefix and purpose; `None` when it is not
/// one, was altered, or its key is no longer in the ring.
pub fn open(ring: &dyn KeyRing, prefix: &str, purpose: &str, token: &str) -> Option<Vec<u8>> {
    let mut parts = token.splitn(3, '.');
    let (Some(p), Some(kid), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    if p != prefix {
        return None;
    }
    let key = derive(ring.key(kid)?, purpose);
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .ok()?;
    if raw.len() < 24 + 16 {
        return None;
    }
    let (nonce, ct) = raw.split_at(24);
    XChaCha20Poly1305::new((&key).into())
        .decrypt(XNonce::from_slice(nonce), ct)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    struct Ring(Vec<(String, [u8; 32])>);

    impl KeyRing for Ring {
        fn sealing_key(&self) -> Option<(&str, &[u8; 32])> {
            self.0.first().map(|(id, k)| (id.as_str(), k))
        }
        fn key(&self, id: &str) -> Option<&[u8; 32]> {
            self.0.iter().find(|(i, _)| i == id).map(|(_, k)| k)
        }
    }

    #[test]
    fn tokens_open_only_for_their_purpose_key_and_prefix() {
        let ring = Ring(vec![("k2".into(), [2; 32]), ("k1".into(), [1; 32])]);
        let t = seal(&ring, "mwe1", "event", b"hello").unwrap();
        assert!(t.starts_with("mwe1.k2."));
        assert_eq!(
            open(&ring, "mwe1", "event", &t).as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(open(&ring, "mwe1", "session", &t), None);
        assert_eq!(open(&ring, "mw1", "event", &t), None);
        // Altered anywhere.
        let mut bytes = t.clone().into_bytes();
        for i in 8..bytes.len() {
            let orig = bytes[i];
            bytes[i] = if orig == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes.clone()).unwrap();
            if altered != t {
                assert_eq!(open(&ring, "mwe1", "event", &altered), None, "{altered}");
            }
            bytes[i] = orig;
        }
        // An old key still opens; a dropped one does not.
        let old = Ring(vec![("k1".into(), [1; 32])]);
        let t1 = seal(&old, "mwe1", "event", b"x").unwrap();
        assert_eq!(
            open(&ring, "mwe1", "event", &t1).as_deref(),
            Some(&b"x"[..])
        );
        let new_only = Ring(vec![("k2".into(), [2; 32])]);
        assert_eq!(open(&new_only, "mwe1", "event", &t1), None);
        assert_eq!(seal(&Ring(Vec::new()), "mwe1", "event", b"x"), None);
    }
}
