//! The token service's answer, checked before its token goes anywhere.
//!
//! A token is forwarded upstream (and cached) only when the answer is exactly what was asked
//! for (RFC 8693 §2.2, RFC 6749 §5.1, RFC 6750 §2.1): HTTP 200 with one unambiguous JSON object
//! (strict reader: no duplicate keys); `access_token` a non-empty RFC 6750 `b64token` (it becomes
//! a header value: no space, CR, LF, comma or quote) that is neither the subject token nor the
//! actor token it was exchanged for; `issued_token_type` exactly the requested type;
//! `token_type` `Bearer`; `scope`, when given, within the scopes asked for; `expires_in`, when
//! given, a positive integer (the cache keeps the token at most the requested lifetime). When
//! the token is a JWT (RFC 9068), what it says of itself must agree: its `scope` / `scp` within
//! the scopes asked for, its `aud` exactly the audience asked for ([`claims`]).
//! Members RFC 8693 does not name are ignored. Every refusal names its check in the rule
//! (`exchange.answer.<check>`), and its detail never contains a token.

mod claims;

use super::Issued;
use crate::error::{Reason, Rejection};
use crate::json::{parse_strict, JsonError};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Largest answer body read (a token response is a few KiB at most).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Longest access token accepted: it becomes a request header.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Nesting accepted in an answer (a token response is flat).
const MAX_ANSWER_DEPTH: usize = 16;

/// What an answer must match: what this exchange asked for and the tokens it presented
/// (borrowed from the request, never copied).
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// `requested_token_type`: `issued_token_type` must be exactly this.
    pub token_type: &'a str,
    /// The scopes asked for: a granted `scope` must lie within them.
    pub scopes: &'a [String],
    /// The requested lifetime in seconds: the longest the token is cached.
    pub lifetime: u64,
    /// The subject token: the issued token must not be it.
    pub subject: &'a str,
    /// The actor token: the issued token must not be it.
    pub actor: Option<&'a str>,
    /// The audience asked for: a JWT's `aud` must be exactly this.
    pub audience: &'a str,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

fn unavailable(detail: String) -> Rejection {
    Rejection::new(Reason::ExchangeUnavailable, detail).with_rule("exchange.unavailable")
}

/// An answer the gateway does not accept; `check` names the failed check.
fn invalid(check: &str, detail: impl Into<String>) -> Rejection {
    Rejection::new(Reason::ExchangeInvalidAnswer, detail)
        .with_rule(&format!("exchange.answer.{check}"))
}

/// Text from the token service, made short and printable for a detail (RFC 6749 allows only
/// `%x20-21 / %x23-5B / %x5D-7E` in `error` and `error_description`).
fn quote(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| match c {
            ' ' | '!' | '#'..='[' | ']'..='~' => c,
            _ => '?',
        })
        .collect()
}

/// Equality of two secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// What identifies a token however it is written: each `.`-separated segment base64url-decoded
/// as leniently as an upstream's decoder may (either alphabet, padded or not, non-canonical
/// trailing bits), or kept as it is where it is not base64; each segment length-prefixed. So
/// the caller's token handed back with `=` appended or `-_` written `+/` is still recognised.
fn token_identity(t: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(t.len());
    for segment in t.split('.') {
        let (kind, bytes) = match decode_segment(segment) {
            Some(decoded) => (1u8, decoded),
            None => (0u8, segment.as_bytes().to_vec()),
        };
        out.push(kind);
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// A token segment base64url-decoded as leniently as an upstream's decoder may: either
/// alphabet, padded or not, non-canonical trailing bits.
fn decode_segment(segment: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let url_safe: String = segment
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    LENIENT.decode(url_safe).ok()
}

/// RFC 6750 §2.1 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// RFC 6749 §3.3 `scope-token`: `1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// A member that must be a string.
fn string_member<'v>(o: &'v Map<String, Value>, name: &str) -> Result<&'v str, Rejection> {
    match o.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(
            "missing_field",
            format!("the token service's `{name}` is not a string"),
        )),
        None => Err(invalid(
            "missing_field",
            format!("the token service's answer has no `{name}`"),
        )),
    }
}

/// Reads the STS answer: `status` 0 means the call itself failed (no answer).
pub fn parse_answer(
    status: u32,
    body: &[u8],
    now: u64,
    want: &Expected<'_>,
) -> Result<Issued, Rejection> {
    match status {
        0 => return Err(unavailable("the token service did not answer".into())),
        500.. => {
            return Err(unavailable(format!(
                "the token service failed (HTTP {status})"
            )))
        }
        400..=499 => return Err(refusal(status, body)),
        200 => {}
        _ => {
            return Err(invalid(
                "status",
                format!("the token service answered HTTP {status}, not 200"),
            ))
        }
    }
    if body.len() > MAX_ANSWER_BYTES {
        return Err(invalid(
            "too_large",
            format!("the token service's answer is over {MAX_ANSWER_BYTES} bytes"),
        ));
    }
    let parsed = parse_strict(body, MAX_ANSWER_DEPTH).map_err(|e| {
        let what = match e {
            JsonError::Syntax(_) => "not JSON".to_string(),
            JsonError::TooDeep { limit } => format!("nested deeper than {limit} levels"),
        };
        invalid(
            "not_json",
            format!("the token service's answer is {what}, not a token response"),
        )
    })?;
    if let Some(key) = parsed.duplicate_keys.first() {
        return Err(invalid(
            "duplicate_key",
            format!(
                "the token service's answer has the key {} twice: it could be read two ways",
                quote(key, 64)
            ),
        ));
    }
    let Value::Object(o) = &parsed.value else {
        return Err(invalid(
            "not_an_object",
            "the token service's answer is not a JSON object",
        ));
    };
    let token = string_member(o, "access_token")?;
    check_token(token, want)?;
    let issued_type = string_member(o, "issued_token_type")?;
    if issued_type != want.token_type {
        return Err(invalid(
            "issued_token_type",
            format!(
                "the token service issued a `{}`, not the requested `{}`",
                quote(issued_type, 80),
                want.token_type
            ),
        ));
    }
    let token_type = string_member(o, "token_type")?;
    if !token_type.eq_ignore_ascii_case("bearer") {
        return Err(invalid(
            "token_type",
            format!(
                "the issued token is of token_type `{}`, not a Bearer access token",
                quote(token_type, 32)
            ),
        ));
    }
    check_scope(o.get("scope"), want.scopes)?;
    claims::check(token, want)?;
    let lifetime = match o.get("expires_in") {
        None => want.lifetime,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => n.min(want.lifetime),
            _ => {
                return Err(invalid(
                    "expires_in",
                    format!(
                        "`expires_in` is {}, not a positive number of seconds",
                        quote(&v.to_string(), 32)
                    ),
                ))
            }
        },
    };
    Ok(Issued {
        access_token: token.to_string(),
        expires_at: now.saturating_add(lifetime),
    })
}

/// The token itself: usable as a bearer credential, and not one the caller presented (however
/// it is re-encoded).
fn check_token(token: &str, want: &Expected<'_>) -> Result<(), Rejection> {
    if token.is_empty() {
        return Err(invalid("token_syntax", "the issued token is empty"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(invalid(
            "token_syntax",
            format!("the issued token is over {MAX_TOKEN_BYTES} bytes"),
        ));
    }
    if !is_b64token(token) {
        return Err(invalid(
            "token_syntax",
            "the issued token has characters a bearer token cannot have (RFC 6750 b64token)",
        ));
    }
    let issued = token_identity(token);
    if same_secret(&issued, &token_identity(want.subject)) {
        return Err(invalid(
            "subject_token",
            "the token service handed back the caller's own token",
        ));
    }
    if want
        .actor
        .is_some_and(|a| same_secret(&issued, &token_identity(a)))
    {
        return Err(invalid(
            "actor_token",
            "the token service handed back the agent's own token",
        ));
    }
    Ok(())
}

/// A granted `scope` lies within the scopes asked for (absent: exactly those, RFC 8693).
fn check_scope(scope: Option<&Value>, requested: &[String]) -> Result<(), Rejection> {
    let granted = match scope {
        None => return Ok(()),
        Some(Value::String(s)) => s,
        Some(_) => return Err(invalid("scope", "`scope` is not a string")),
    };
    if granted.is_empty() {
        return Ok(());
    }
    let Some(wider) = beyond(granted.split(' '), requested) else {
        return Err(invalid(
            "scope",
            "`scope` is not a list of scope tokens separated by single spaces",
        ));
    };
    if wider.is_empty() {
        return Ok(());
    }
    Err(invalid(
        "scope",
        format!(
            "the token service granted scope beyond the request: {}",
            wider_detail(&wider, requested)
        ),
    ))
}

/// The granted scopes that were not asked for, once each; `None` if one is not a scope token.
fn beyond<'g>(
    granted: impl Iterator<Item = &'g str>,
    requested: &[String],
) -> Option<Vec<&'g str>> {
    let mut wider = Vec::new();
    for s in granted {
        if !is_scope_token(s) {
            return None;
        }
        if !requested.iter().any(|r| r == s) && !wider.contains(&s) {
            wider.push(s);
        }
    }
    Some(wider)
}

/// `extra (asked for: requested)`, for a detail.
fn wider_detail(wider: &[&str], requested: &[String]) -> String {
    format!(
        "{} (asked for: {})",
        quote(&wider.join(" "), 200),
        if requested.is_empty() {
            "none".to_string()
        } else {
            requested.join(" ")
        }
    )
}

/// A 4xx answer: the token service refused the exchange.
fn refusal(status: u32, body: &[u8]) -> Rejection {
    let detail = match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(e) => format!(
            "the token service refused the exchange: {}{}",
            quote(&e.error, 64),
            e.error_description
                .map(|d| format!(" ({})", quote(&d, 200)))
                .unwrap_or_default()
        ),
        Err(_) => format!("the token service refused the exchange (HTTP {status})"),
    };
    Rejection::new(Reason::ExchangeRefused, detail).with_rule("exchange.refused")
}

#[cfg(test)]
mod tests;
