//! What an issued JWT says of itself. The answer's `scope` member may understate what the token
//! grants, and a token minted for another audience would be handed to this server, which could
//! replay it there: when the token is a JWS (three segments, a header naming `alg`), its claims
//! must be one unambiguous JSON object whose `scope` / `scp` lie within the scopes asked for and
//! whose `aud`, when present, names only the audience asked for. Opaque tokens (and JWEs) are
//! not read. The signature is the upstream's to check, not ours.

use super::{beyond, decode_segment, invalid, quote, wider_detail, Expected, MAX_ANSWER_DEPTH};
use crate::error::Rejection;
use crate::json::parse_strict;
use serde_json::Value;

/// Checks the claims of `token` when it is a JWS.
pub(super) fn check(token: &str, want: &Expected<'_>) -> Result<(), Rejection> {
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(_), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Ok(());
    };
    let is_jws = decode_segment(header)
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
        .is_some_and(|h| h.get("alg").is_some_and(Value::is_string));
    if !is_jws {
        return Ok(());
    }
    let claims = decode_segment(payload)
        .and_then(|p| parse_strict(&p, MAX_ANSWER_DEPTH).ok())
        .filter(|p| p.duplicate_keys.is_empty())
        .map(|p| p.value);
    let Some(Value::Object(claims)) = claims else {
        return Err(invalid(
            "token_claims",
            "the issued token is a JWT whose claims are not one unambiguous JSON object",
        ));
    };
    for name in ["scope", "scp"] {
        let granted: Option<Vec<&str>> = match claims.get(name) {
            None => continue,
            Some(Value::String(s)) if s.is_empty() => Some(Vec::new()),
            Some(Value::String(s)) => Some(s.split(' ').collect()),
            Some(Value::Array(a)) => a.iter().map(Value::as_str).collect(),
            Some(_) => None,
        };
        let detail = match granted.and_then(|g| beyond(g.into_iter(), want.scopes)) {
            Some(w) if w.is_empty() => continue,
            Some(w) => format!(
                "the issued token grants scope beyond the request in `{name}`: {}",
                wider_detail(&w, want.scopes)
            ),
            None => format!("the issued token's `{name}` is not a list of scope tokens"),
        };
        return Err(invalid("token_scope", detail));
    }
    let for_us = match claims.get("aud") {
        None => true,
        Some(Value::String(a)) => a == want.audience,
        Some(Value::Array(a)) => {
            !a.is_empty() && a.iter().all(|x| x.as_str() == Some(want.audience))
        }
        Some(_) => false,
    };
    if !for_us {
        let aud = claims.get("aud").map(Value::to_string).unwrap_or_default();
        return Err(invalid(
            "token_audience",
            format!(
                "the issued token is for {}, not only for the requested audience {}",
                quote(&aud, 200),
                want.audience
            ),
        ));
    }
    Ok(())
}
