//! The verified payload jwt_authn forwards in a request header (`forward_payload_header`):
//! base64url JSON, so every claim keeps its JSON type (a string stays a string however it
//! looks; Envoy's metadata encoding cannot tell a string from a list, see [`super::metadata`]).
//!
//! jwt_authn removes a client-sent copy of that header and sets it only for a token it verified;
//! the gateway still checks every claim it reads from the header against jwt_authn's metadata
//! copy ([`agrees`]) and removes the header before the request goes upstream.

use super::metadata::{as_bool, as_f64, as_list, as_map, ClaimSource, HostError};
use crate::json::parse_strict;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::Value;

/// Largest payload header accepted, in bytes of base64 (Envoy's request headers are capped
/// at 60 KiB by default anyway).
pub const MAX_PAYLOAD_HEADER_BYTES: usize = 64 * 1024;
/// Deepest nesting accepted in a payload (the payload object is depth 1).
pub const MAX_PAYLOAD_DEPTH: usize = 32;

/// base64url, padded or not (RFC 4648 §5). jwt_authn forwards the token's payload segment as
/// it was signed; non-zero trailing bits are tolerated as its decoder tolerates them (what is
/// decoded is checked against the metadata anyway).
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A payload header as the request carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded<'a> {
    /// Not in the request.
    Absent,
    /// Exactly one copy, this value.
    One(&'a [u8]),
    /// More than one copy (never what jwt_authn sends).
    Many,
}

/// The payload headers of a request, found among its headers.
pub fn find<'a, K: AsRef<str>, V: AsRef<[u8]>>(headers: &'a [(K, V)], name: &str) -> Forwarded<'a> {
    let mut found = Forwarded::Absent;
    for (k, v) in headers {
        if k.as_ref().eq_ignore_ascii_case(name) {
            found = match found {
                Forwarded::Absent => Forwarded::One(v.as_ref()),
                _ => return Forwarded::Many,
            };
        }
    }
    found
}

/// jwt_authn's metadata and the request's headers, as one [`ClaimSource`].
pub struct WithHeaders<'a, K, V> {
    /// jwt_authn's metadata.
    pub metadata: &'a dyn ClaimSource,
    /// Every request header.
    pub headers: &'a [(K, V)],
}

impl<K: AsRef<str>, V: AsRef<[u8]>> ClaimSource for WithHeaders<'_, K, V> {
    fn get(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        self.metadata.get(path)
    }
    fn payload(&self, name: &str) -> Forwarded<'_> {
        find(self.headers, name)
    }
}

/// Why a payload header could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadError {
    /// Not what jwt_authn writes (several copies, too large, not base64url, not UTF-8, not a
    /// JSON object): a forgery or a misconfiguration.
    Unreadable(&'static str),
    /// JSON that the verified token may really carry, but that is ambiguous (a key given
    /// twice) or nested too deep to be read.
    Ambiguous(String),
}

/// Decodes a payload header into the payload object.
pub fn decode(header: &[u8]) -> Result<Value, PayloadError> {
    if header.len() > MAX_PAYLOAD_HEADER_BYTES {
        return Err(PayloadError::Unreadable("it is too large"));
    }
    let bytes = BASE64URL
        .decode(header)
        .map_err(|_| PayloadError::Unreadable("it is not base64url"))?;
    if std::str::from_utf8(&bytes).is_err() {
        return Err(PayloadError::Unreadable("it is not UTF-8"));
    }
    let parsed = parse_strict(&bytes, MAX_PAYLOAD_DEPTH).map_err(|e| match e {
        crate::json::JsonError::TooDeep { limit } => {
            PayloadError::Ambiguous(format!("its payload is nested deeper than {limit} levels"))
        }
        crate::json::JsonError::Syntax(_) => PayloadError::Unreadable("it is not JSON"),
    })?;
    if let Some(key) = parsed.duplicate_keys.first() {
        return Err(PayloadError::Ambiguous(format!(
            "its payload has the key `{}` twice",
            key.escape_debug()
        )));
    }
    if !parsed.value.is_object() {
        return Err(PayloadError::Unreadable("it is not a JSON object"));
    }
    Ok(parsed.value)
}

/// Whether a claim read from the header (`json`) says the same as jwt_authn's metadata copy
/// (`envoy`, in Envoy's property encoding): same string bytes, same number, same boolean,
/// lists element by element, maps with the same keys and values.
pub fn agrees(json: &Value, envoy: &[u8]) -> bool {
    match json {
        Value::String(s) => s.as_bytes() == envoy,
        Value::Number(n) => match (n.as_f64(), as_f64(envoy)) {
            (Some(a), Ok(b)) => a == b || (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()),
            _ => false,
        },
        Value::Bool(b) => as_bool(envoy) == Ok(*b),
        Value::Array(items) => as_list(envoy).is_ok_and(|list| {
            list.len() == items.len() && items.iter().zip(list).all(|(i, e)| agrees(i, e))
        }),
        Value::Object(map) => as_map(envoy).is_ok_and(|entries| {
            entries.len() == map.len()
                && entries
                    .iter()
                    .all(|(k, e)| map.get(k).is_some_and(|v| agrees(v, e)))
        }),
        // Envoy cannot serialise a null for proxy-wasm: reading it fails (see `has_null`).
        Value::Null => false,
    }
}

/// Whether a value holds a null anywhere: Envoy cannot hand such a value to proxy-wasm (the
/// read fails), so it is compared by presence only.
pub fn has_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.iter().any(has_null),
        Value::Object(o) => o.values().any(has_null),
        _ => false,
    }
}

/// A payload as jwt_authn forwards it (tests): base64url without padding.
#[cfg(any(test, feature = "test-support"))]
pub fn encode(payload: &Value) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(payload.to_string())
        .into_bytes()
}

#[cfg(test)]
mod tests;
