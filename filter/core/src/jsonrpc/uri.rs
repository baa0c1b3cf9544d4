//! Resource URIs in normal form.
//!
//! The policy decides on a resource URI's text (`resources` globs), so the text must name one
//! resource only: what the server reads must be what was decided. URL parsers and servers
//! resolve dot segments (`a/../b` is `b`; the WHATWG URL parser of the TypeScript SDK, and the
//! `url` crate under the Python SDK, also read `%2e` as a dot, `\` as `/`, drop tabs and
//! newlines and lower-case the scheme), decode percent-encoded characters and often merge
//! empty segments. Rather than guess which of these a server does, a URI that any of them
//! would change is refused ([`check`]): what is forwarded is exactly what was decided.
//!
//! A URI in normal form here: an absolute URI (`scheme:` then the rest) with a lower-case
//! scheme; no ASCII control characters, spaces or backslashes; `%` only as `%XX` with hex
//! digits, never encoding an unreserved character (`A-Z a-z 0-9 - . _ ~`, written as
//! themselves in normal form), `/`, `\`, a control character, or (double encoding) `%2E`,
//! `%2F`, `%5C` behind `%25`; in the path no `.` or `..` segment and no empty segment
//! (`//`) other than a trailing one; for the schemes whose host URL parsers rewrite
//! (`http`, `https`, `ws`, `wss`, `ftp`, `file`) a host without upper-case or non-ASCII letters.
//! URI templates (`completion/complete` of a `ref/resource`) follow the same rules.

/// Schemes whose host the WHATWG URL parser lower-cases and maps (IDNA).
const SPECIAL_SCHEMES: &[&str] = &["http", "https", "ws", "wss", "ftp", "file"];

/// Checks that `uri` is in normal form; the error says what is not.
pub fn check(uri: &str) -> Result<(), String> {
    if let Some(c) = uri.chars().find(|c| c.is_ascii_control() || *c == ' ') {
        return Err(format!(
            "it contains the control or space character U+{:04X}",
            c as u32
        ));
    }
    if uri.contains('\\') {
        return Err("it contains a backslash".into());
    }
    check_percent_encoding(uri)?;
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err("it is not an absolute URI (`scheme:…`)".into());
    };
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err("it is not an absolute URI (`scheme:…`)".into());
    }
    if scheme.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("its scheme is not in lower case".into());
    }
    // The path ends at the query or fragment.
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let hier = &rest[..end];
    let path = match hier.strip_prefix("//") {
        Some(after) => {
            let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
            if SPECIAL_SCHEMES.contains(&scheme) {
                let host = authority.rsplit('@').next().unwrap_or_default();
                if host
                    .chars()
                    .any(|c| c.is_ascii_uppercase() || !c.is_ascii())
                {
                    return Err("its host is not in lower-case ASCII".into());
                }
            }
            path
        }
        None => hier,
    };
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => return Err(format!("its path has a `{segment}` segment")),
            // The empty segment before a leading `/`, and a trailing one, are not repeats.
            "" if i != 0 && i + 1 != segments.len() => {
                return Err("its path has an empty segment (`//`)".into())
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_percent_encoding(uri: &str) -> Result<(), String> {
    let bytes = uri.as_bytes();
    let hex = |i: usize| -> Option<u8> {
        let pair = bytes.get(i..i + 2)?;
        let text = std::str::from_utf8(pair).ok()?;
        if !pair.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u8::from_str_radix(text, 16).ok()
    };
    let mut i = 0;
    while let Some(at) = bytes
        .get(i..)
        .and_then(|b| b.iter().position(|&c| c == b'%'))
    {
        let at = i + at;
        let Some(byte) = hex(at + 1) else {
            return Err("it has a `%` that is not followed by two hex digits".into());
        };
        let bad = match byte {
            b'/' | b'\\' => Some("a slash or backslash"),
            b'.' => Some("a dot"),
            b if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'~' => {
                Some("an unreserved character (written as itself in normal form)")
            }
            b if b.is_ascii_control() => Some("a control character"),
            b'%' if matches!(hex(at + 3), Some(b'.' | b'/' | b'\\')) => {
                Some("a percent-encoded dot, slash or backslash (double encoding)")
            }
            _ => None,
        };
        if let Some(what) = bad {
            return Err(format!(
                "`%{}` percent-encodes {what}",
                &uri[at + 1..at + 3]
            ));
        }
        i = at + 3;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn uris_in_normal_form_pass() {
        for ok in [
            "demo://readme",
            "demo://items/42",
            "demo://items/{id}",
            "file:///srv/shared/report.txt",
            "file:///srv/shared/",
            "file:///srv/shared/.hidden",
            "file:///srv/shared/a..b/...",
            "https://example.com/a/b?x=1&y=../..#frag//",
            "https://user:Secret@example.com:8443/Path/To",
            "urn:isbn:0451450523",
            "mailto:someone@example.com",
            "github://Owner/Repo/blob/x",
            "file:///srv/caf%C3%A9/%20space%3F",
            "data:text/plain,hello",
            "x-vendor+scheme.v1:thing",
            "demo:items/42",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn uris_a_parser_would_rewrite_are_refused() {
        for (bad, why) in [
            ("file:///srv/shared/../../etc/passwd", "`..` segment"),
            ("file:///srv/shared/./x", "`.` segment"),
            ("file:///srv/shared/..", "`..` segment"),
            ("demo:../x", "`..` segment"),
            ("file:/srv/shared/../x", "`..` segment"),
            (
                "file:///srv/shared/%2e%2e/etc",
                "`%2e` percent-encodes a dot",
            ),
            (
                "file:///srv/shared/%2E%2E/etc",
                "`%2E` percent-encodes a dot",
            ),
            ("file:///srv/shared/.%2e/etc", "a dot"),
            (
                "file:///srv/shared/..%2Fetc",
                "`%2F` percent-encodes a slash",
            ),
            (
                "file:///srv/shared/..%5cetc",
                "`%5c` percent-encodes a slash or backslash",
            ),
            ("file:///srv/shared/%252e%252e/x", "double encoding"),
            ("file:///srv/shared/%252F", "double encoding"),
            ("file:///srv/shared/..\\..\\etc", "backslash"),
            ("file:///srv/shared//etc/passwd", "empty segment"),
            ("file:////etc/passwd", "empty segment"),
            ("file:///%65tc/passwd", "unreserved character"),
            ("file:///etc/passw%64", "unreserved character"),
            ("file:///etc/x%00.txt", "control character"),
            ("file:///srv/shared/x%", "two hex digits"),
            ("file:///srv/shared/%zz", "two hex digits"),
            ("file:///srv/shared/%4", "two hex digits"),
            ("file:///srv/sha\tred/x", "U+0009"),
            ("file:///srv/shared/x\n", "U+000A"),
            (" file:///etc/passwd", "U+0020"),
            ("FILE:///etc/passwd", "scheme is not in lower case"),
            ("File:///etc/passwd", "scheme is not in lower case"),
            ("http://EXAMPLE.com/", "host"),
            ("http://exämple.com/", "host"),
            ("/etc/passwd", "not an absolute URI"),
            ("readme", "not an absolute URI"),
            ("1x:foo", "not an absolute URI"),
            (":foo", "not an absolute URI"),
            ("", "not an absolute URI"),
        ] {
            let err = check(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
