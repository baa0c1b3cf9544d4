use super::*;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const JWT: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
const JWE: &str = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a2V5.aXY.Y2lwaGVy.dGFn";

fn strip(headers: &[&str], own: &[&str]) -> CookieVerdict {
    let values: Vec<&[u8]> = headers.iter().map(|h| h.as_bytes()).collect();
    strip_token_cookies(&values, own)
}

fn rewritten(headers: &[&str], own: &[&str]) -> Option<String> {
    match strip(headers, own) {
        CookieVerdict::Rewrite { header, .. } => header,
        CookieVerdict::Keep => panic!("{headers:?}: nothing removed"),
    }
}

#[test]
fn ordinary_cookies_pass() {
    for h in [
        "theme=dark",
        "theme=dark; lang=en",
        "sid=abc123; _ga=GA1.2.3.4",
        "v=1.2.3",
        "a.b.c=x",
        "x=%7B%7D.e30.e30", // `{}` is no JOSE header once the segments are checked as base64url
        "",
    ] {
        assert_eq!(strip(&[h], &[]), CookieVerdict::Keep, "{h}");
    }
}

#[test]
fn token_names_are_removed_in_any_case_and_encoding() {
    for name in [
        "access_token",
        "id_token",
        "token",
        "Access_Token",
        "refresh-token",
        "AUTHORIZATION",
        "oauth_state",
        "jwt",
        "x-jwt-assertion",
        "bearer",
        "api_key",
        "apiKey",
        "client_secret",
        "credentials",
        "access%5Ftoken",
        "%74oken",
    ] {
        assert_eq!(
            rewritten(&[&format!("theme=dark; {name}=opaque; lang=en")], &[]),
            Some("theme=dark; lang=en".to_string()),
            "{name}"
        );
    }
}

#[test]
fn jwt_shaped_values_are_removed_whatever_the_name() {
    for value in [
        JWT.to_string(),
        JWE.to_string(),
        format!("\"{JWT}\""),
        format!("Bearer {JWT}"),
        format!("bearer%20{JWT}"),
        JWT.replace('.', "%2E"),
        JWT.replace('.', "%2e"),
        format!("{JWT}=="),
        // Padded header segment.
        "eyJhbGciOiJub25lIn0=.e30.".to_string(),
    ] {
        assert_eq!(rewritten(&[&format!("sid={value}")], &[]), None, "{value}");
    }
}

#[test]
fn the_callers_own_tokens_are_removed_whatever_their_shape() {
    let opaque = "2YotnFZFEjr1zCsicMWpAA";
    assert_eq!(strip(&[&format!("sid={opaque}")], &[]), CookieVerdict::Keep);
    assert_eq!(
        strip(&[&format!("sid={opaque}; theme=dark")], &["other", opaque]),
        CookieVerdict::Rewrite {
            header: Some("theme=dark".into()),
            removed: 1
        }
    );
    // An empty value is nobody's token.
    assert_eq!(strip(&["sid="], &[""]), CookieVerdict::Keep);
}

#[test]
fn every_cookie_header_is_judged_and_merged() {
    // HTTP/2 clients may send one `cookie` header per cookie.
    assert_eq!(
        strip(&["theme=dark", &format!("s={JWT}"), "lang=en"], &[]),
        CookieVerdict::Rewrite {
            header: Some("theme=dark; lang=en".into()),
            removed: 1
        }
    );
    assert_eq!(
        strip(&[&format!("a={JWT};b={JWE}"), "token=1"], &[]),
        CookieVerdict::Rewrite {
            header: None,
            removed: 3
        }
    );
}

#[test]
fn cookies_that_cannot_be_judged_are_removed() {
    assert_eq!(
        strip(&["theme=dark; n=caf\u{e9}"], &[]),
        CookieVerdict::Rewrite {
            header: Some("theme=dark".into()),
            removed: 1
        }
    );
    let values: Vec<&[u8]> = vec![b"a=\xff; b=1", b"theme=dark"];
    assert_eq!(
        strip_token_cookies(&values, &[]),
        CookieVerdict::Rewrite {
            header: Some("theme=dark".into()),
            removed: 2
        }
    );
    assert_eq!(
        rewritten(&["theme=dark; x=a\u{1}b"], &[]),
        Some("theme=dark".into())
    );
}
