//! Tokens in cookies. A browser-based client (or a careless one) may send its access or ID
//! token as a cookie: forwarded, it would reach the MCP server and every access log that
//! records cookies, although the gateway never forwards the caller's token otherwise. With
//! identity on, every cookie that carries a token is removed before the request goes on; the
//! others pass unchanged.
//!
//! A cookie carries a token when (its name and value percent-decoded, a quoted value unquoted,
//! a `Bearer ` prefix of the value ignored):
//! - its name, in any case, contains `token`, `jwt`, `bearer`, `auth` (authorization, oauth,
//!   …), `credential`, `secret`, `apikey`, `api_key` or `api-key`; or
//! - its value is shaped like a JWT: three (JWS) or five (JWE) dot-separated base64url
//!   segments, the first of which decodes to a JSON object (the JOSE header); or
//! - its value is one of the caller's own tokens (user or agent token), whatever its shape.
//!
//! A cookie that is not ASCII cannot be judged (RFC 6265 allows none) and is removed too.

use crate::pipeline::HeaderEdit;
use base64::Engine;

/// Name fragments that mark a cookie as carrying a credential.
const TOKEN_NAME_PARTS: [&str; 9] = [
    "token",
    "jwt",
    "bearer",
    "auth",
    "credential",
    "secret",
    "apikey",
    "api_key",
    "api-key",
];

/// What to do with the request's `Cookie` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieVerdict {
    /// No cookie carries a token: leave the headers as they are.
    Keep,
    /// Replace every `Cookie` header by this one (`None`: remove them all). `removed` counts
    /// the cookies taken out (names are not kept: they could be secrets themselves).
    Rewrite {
        /// The remaining cookies, `; `-separated, or `None` when none remain.
        header: Option<String>,
        /// How many cookies were removed.
        removed: usize,
    },
}

/// Judges every cookie of the request's `Cookie` headers (`values`: each header's value; an
/// HTTP/2 client may send one header per cookie). `own_tokens`: the caller's tokens.
pub fn strip_token_cookies(values: &[&[u8]], own_tokens: &[&str]) -> CookieVerdict {
    let mut kept: Vec<&str> = Vec::new();
    let mut removed = 0;
    for value in values {
        let Ok(text) = std::str::from_utf8(value) else {
            // Not even UTF-8: every cookie of this header goes.
            removed += value.split(|b| *b == b';').count();
            continue;
        };
        for pair in text.split(';') {
            let pair = pair.trim_matches([' ', '\t']);
            if pair.is_empty() {
                continue;
            }
            if carries_token(pair, own_tokens) {
                removed += 1;
            } else {
                kept.push(pair);
            }
        }
    }
    if removed == 0 {
        return CookieVerdict::Keep;
    }
    CookieVerdict::Rewrite {
        header: (!kept.is_empty()).then(|| kept.join("; ")),
        removed,
    }
}

/// The header edits that take the token cookies out of a request: its `Cookie` headers
/// judged with the caller's tokens read from `token_headers` (a `Bearer ` prefix ignored).
pub fn cookie_edits<'a, K: AsRef<str>, V: AsRef<[u8]>>(
    headers: &[(K, V)],
    token_headers: impl Iterator<Item = &'a str>,
) -> Vec<HeaderEdit> {
    let cookies: Vec<&[u8]> = headers
        .iter()
        .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case("cookie"))
        .map(|(_, v)| v.as_ref())
        .collect();
    if cookies.is_empty() {
        return Vec::new();
    }
    let mut own: Vec<&str> = Vec::new();
    for name in token_headers {
        for (_, v) in headers
            .iter()
            .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
        {
            if let Ok(v) = std::str::from_utf8(v.as_ref()) {
                let v = v.trim();
                own.push(match v.get(..7) {
                    Some(p) if p.eq_ignore_ascii_case("bearer ") => v.get(7..).unwrap_or("").trim(),
                    _ => v,
                });
            }
        }
    }
    match strip_token_cookies(&cookies, &own) {
        CookieVerdict::Keep => Vec::new(),
        CookieVerdict::Rewrite { header, .. } => {
            let mut edits = vec![HeaderEdit::Remove("cookie".into())];
            if let Some(h) = header {
                edits.push(HeaderEdit::Set("cookie".into(), h));
            }
            edits
        }
    }
}

fn carries_token(pair: &str, own_tokens: &[&str]) -> bool {
    if !pair.is_ascii() || pair.bytes().any(|b| b.is_ascii_control()) {
        return true;
    }
    let (name, value) = pair.split_once('=').unwrap_or(("", pair));
    let name = decoded(name.trim()).to_ascii_lowercase();
    if TOKEN_NAME_PARTS.iter().any(|p| name.contains(p)) {
        return true;
    }
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    let value = decoded(value);
    let value = value.trim();
    let value = match value.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => value.get(7..).unwrap_or("").trim(),
        _ => value,
    };
    (!value.is_empty() && own_tokens.contains(&value)) || jwt_shaped(value)
}

/// Three or five dot-separated base64url segments, the first a JSON object.
fn jwt_shaped(value: &str) -> bool {
    let segments: Vec<&str> = value.split('.').collect();
    if segments.len() != 3 && segments.len() != 5 {
        return false;
    }
    let b64url = |s: &str| {
        s.trim_end_matches('=')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !segments.iter().all(|s| b64url(s)) {
        return false;
    }
    let header = segments[0].trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|v| v.is_object())
}

/// Percent-decoded until nothing changes (at most three rounds: `%252E` is a `.` to a server
/// that decodes twice).
fn decoded(s: &str) -> String {
    let mut text = s.to_string();
    for _ in 0..3 {
        let next = percent_decode(&text);
        if next == text {
            break;
        }
        text = next;
    }
    text
}

/// `%XX` escapes decoded (as bytes; invalid escapes kept); a result that is not UTF-8 is
/// read lossily (it is only compared).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let v = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(v as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
