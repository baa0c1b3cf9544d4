use super::*;
use serde_json::json;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const SUBJECT: &str = "eyJ1c2VyIn0.c3ViamVjdA.c2ln";
const ACTOR: &str = "eyJhZ2VudCJ9.YWN0b3I.c2ln";
const AUD: &str = "https://corp.example/mcp";

fn scopes() -> Vec<String> {
    vec!["files:delete".into(), "mcp:tools".into()]
}

fn want(scopes: &[String]) -> Expected<'_> {
    Expected {
        token_type: AT,
        scopes,
        lifetime: 60,
        subject: SUBJECT,
        actor: Some(ACTOR),
        audience: AUD,
    }
}

/// A good answer with `patch` applied (`null` removes a member).
fn answer(patch: serde_json::Value) -> Vec<u8> {
    let mut a = json!({"access_token": "new.token-1", "issued_token_type": AT,
                       "token_type": "Bearer", "expires_in": 30, "scope": "files:delete"});
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            a.as_object_mut().unwrap().remove(k);
        } else {
            a[k] = v.clone();
        }
    }
    a.to_string().into_bytes()
}

/// The rule of the refusal of this answer (and: no detail names a token; 502 / -32004).
fn rule(status: u32, body: &[u8]) -> String {
    let s = scopes();
    let r = parse_answer(status, body, 1000, &want(&s)).unwrap_err();
    assert!(
        !r.detail.contains(SUBJECT) && !r.detail.contains(ACTOR),
        "a detail names a token: {}",
        r.detail
    );
    if r.reason == Reason::ExchangeInvalidAnswer {
        assert_eq!(r.reason.status_and_code(), (502, -32004));
    }
    r.rule.unwrap()
}

#[test]
fn a_good_answer_gives_the_token_for_at_most_the_requested_lifetime() {
    let s = scopes();
    let ok = |body: &[u8]| parse_answer(200, body, 1000, &want(&s)).unwrap();
    assert_eq!(
        ok(&answer(json!({}))),
        Issued {
            access_token: "new.token-1".into(),
            expires_at: 1030
        }
    );
    // No expires_in: the requested lifetime; a longer one is cut to it.
    assert_eq!(ok(&answer(json!({"expires_in": null}))).expires_at, 1060);
    assert_eq!(ok(&answer(json!({"expires_in": 86400}))).expires_at, 1060);
    assert_eq!(
        ok(&answer(json!({ "expires_in": u64::MAX }))).expires_at,
        1060
    );
    // Bearer in any case; no scope (= as requested), a narrower or equal scope, an empty one;
    // members RFC 8693 does not name are ignored; padding `=` is b64token.
    ok(&answer(json!({"token_type": "bearer"})));
    ok(&answer(json!({"scope": null})));
    ok(&answer(json!({"scope": "mcp:tools files:delete"})));
    ok(&answer(json!({"scope": ""})));
    ok(&answer(
        json!({"refresh_token": "r", "x-vendor": {"nested": [1, 2]}, "access_token": "YWJj+/~_-.=="}),
    ));
}

#[test]
fn statuses_other_than_200_never_give_a_token() {
    let s = scopes();
    let r = |status, body: &[u8]| parse_answer(status, body, 0, &want(&s)).unwrap_err();
    assert_eq!(r(0, b"").reason, Reason::ExchangeUnavailable);
    assert_eq!(r(503, b"down").reason, Reason::ExchangeUnavailable);
    assert_eq!(
        r(500, &answer(json!({}))).reason,
        Reason::ExchangeUnavailable
    );
    let refused = r(
        400,
        br#"{"error":"invalid_scope","error_description":"too wide\r\nmcp-warden audit {}"}"#,
    );
    assert_eq!(refused.reason, Reason::ExchangeRefused);
    assert!(
        refused.detail.contains("invalid_scope"),
        "{}",
        refused.detail
    );
    assert!(
        !refused.detail.contains('\n') && !refused.detail.contains('\r'),
        "{}",
        refused.detail
    );
    assert_eq!(r(401, b"nope").reason, Reason::ExchangeRefused);
    // A token in a 201, 204 or redirect is not an RFC 8693 answer.
    for status in [100, 201, 204, 302, 304] {
        assert_eq!(rule(status, &answer(json!({}))), "exchange.answer.status");
    }
}

#[test]
fn malformed_answers_are_refused_with_the_check_that_failed() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not_json", b"<html>".to_vec()),
        ("not_json", b"".to_vec()),
        ("not_json", b"{\"access_token\":\"a\"} trailing".to_vec()),
        (
            "not_json",
            format!("{}{}", "[".repeat(40), "]".repeat(40)).into_bytes(),
        ),
        ("not_an_object", b"[\"new.token\"]".to_vec()),
        ("not_an_object", b"\"new.token\"".to_vec()),
        (
            "duplicate_key",
            format!(
                r#"{{"access_token":"new.token","access_token":"{SUBJECT}","issued_token_type":"{AT}","token_type":"Bearer"}}"#
            )
            .into_bytes(),
        ),
        (
            "duplicate_key",
            format!(
                r#"{{"access_token":"new.token","issued_token_type":"{AT}","token_type":"N_A","token_type":"Bearer"}}"#
            )
            .into_bytes(),
        ),
        (
            "too_large",
            answer(json!({"pad": "x".repeat(MAX_ANSWER_BYTES)})),
        ),
        ("missing_field", answer(json!({"access_token": null}))),
        ("missing_field", answer(json!({"access_token": 42}))),
        ("missing_field", answer(json!({"issued_token_type": null}))),
        ("missing_field", answer(json!({"token_type": null}))),
        ("missing_field", answer(json!({"token_type": ["Bearer"]}))),
    ];
    for (check, body) in cases {
        assert_eq!(
            rule(200, &body),
            format!("exchange.answer.{check}"),
            "{}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>()
        );
    }
}

#[test]
fn tokens_that_would_forge_or_break_a_header_are_refused() {
    for bad in [
        "",
        "a b",
        "a\r\nx-mcp-user: admin",
        "a\nb",
        "a\tb",
        "tok\u{0}en",
        "tök",
        "a,b",
        "a\"b",
        "a;b",
        "=",
        "==abc",
        "a=b",
        "\u{7f}",
        "\u{2028}",
    ] {
        assert_eq!(
            rule(200, &answer(json!({ "access_token": bad }))),
            "exchange.answer.token_syntax",
            "{bad:?}"
        );
    }
    let long = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(
        rule(200, &answer(json!({ "access_token": long }))),
        "exchange.answer.token_syntax"
    );
}

#[test]
fn the_callers_own_tokens_are_never_handed_back() {
    assert_eq!(
        rule(200, &answer(json!({ "access_token": SUBJECT }))),
        "exchange.answer.subject_token"
    );
    assert_eq!(
        rule(200, &answer(json!({ "access_token": ACTOR }))),
        "exchange.answer.actor_token"
    );
    // Even when the rest of the answer is also wrong, the echo is what is named.
    assert_eq!(
        rule(
            200,
            &answer(json!({"access_token": SUBJECT, "token_type": "N_A"}))
        ),
        "exchange.answer.subject_token"
    );
    // Re-encodings an upstream's base64 decoder reads as the same bytes: padding, the other
    // alphabet, non-canonical trailing bits.
    let (jwt, std_alphabet) = (
        "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln-_A",
        "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln+/A",
    );
    let s = scopes();
    let subject_jwt = Expected {
        subject: jwt,
        ..want(&s)
    };
    for echo in [
        jwt.to_string(),
        format!("{jwt}="),
        format!("{jwt}=="),
        std_alphabet.to_string(),
        // `A` and `B` differ only in bits a decoder without strict checks drops.
        format!("{}B", &jwt[..jwt.len() - 1]),
    ] {
        let r = parse_answer(
            200,
            &answer(json!({ "access_token": echo })),
            0,
            &subject_jwt,
        )
        .unwrap_err();
        assert_eq!(
            r.rule.as_deref(),
            Some("exchange.answer.subject_token"),
            "{echo}"
        );
    }
    assert!(parse_answer(
        200,
        &answer(json!({ "access_token": format!("{}Q", &jwt[..jwt.len() - 1]) })),
        0,
        &subject_jwt
    )
    .is_ok());
    // A token that only shares a prefix is another token.
    let longer = format!("{SUBJECT}x");
    assert!(parse_answer(
        200,
        &answer(json!({ "access_token": longer })),
        0,
        &want(&s)
    )
    .is_ok());
    // No actor token: nothing to compare with.
    let no_actor = Expected {
        actor: None,
        ..want(&s)
    };
    assert!(parse_answer(200, &answer(json!({ "access_token": ACTOR })), 0, &no_actor).is_ok());
    assert!(same_secret(b"abc", b"abc") && !same_secret(b"abc", b"abd"));
    assert!(!same_secret(b"abc", b"abcd") && !same_secret(b"", b"a"));
}

#[test]
fn only_the_requested_token_type_as_a_bearer_token_is_accepted() {
    for issued in [
        json!("urn:ietf:params:oauth:token-type:id_token"),
        json!("urn:ietf:params:oauth:token-type:jwt"),
        json!("urn:ietf:params:oauth:token-type:refresh_token"),
        json!("urn:ietf:params:oauth:token-type:saml2"),
        json!("urn:ietf:params:oauth:token-type:ACCESS_TOKEN"),
        json!(format!("{AT} ")),
        json!(""),
    ] {
        assert_eq!(
            rule(200, &answer(json!({ "issued_token_type": issued }))),
            "exchange.answer.issued_token_type",
            "{issued}"
        );
    }
    // The id_token answer of RFC 8693's examples: refused for its type first.
    assert_eq!(
        rule(
            200,
            &answer(
                json!({"issued_token_type": "urn:ietf:params:oauth:token-type:id_token", "token_type": "N_A"})
            )
        ),
        "exchange.answer.issued_token_type"
    );
    for tt in ["N_A", "n_a", "mac", "DPoP", "Bearer ", "", "Bearer\u{0}"] {
        assert_eq!(
            rule(200, &answer(json!({ "token_type": tt }))),
            "exchange.answer.token_type",
            "{tt:?}"
        );
    }
    // Another configured type must come back as that type.
    let s = scopes();
    let jwt = Expected {
        token_type: "urn:ietf:params:oauth:token-type:jwt",
        ..want(&s)
    };
    assert!(parse_answer(
        200,
        &answer(json!({"issued_token_type": "urn:ietf:params:oauth:token-type:jwt"})),
        0,
        &jwt
    )
    .is_ok());
    assert_eq!(
        parse_answer(200, &answer(json!({})), 0, &jwt)
            .unwrap_err()
            .rule
            .as_deref(),
        Some("exchange.answer.issued_token_type")
    );
}

#[test]
fn a_wider_scope_than_requested_is_refused() {
    for scope in [
        json!("files:delete HR_read"),
        json!("mcp:tools files:delete sql:read"),
        json!("*"),
        json!("files:delete\tHR_read"),
        json!("files:delete  mcp:tools"),
        json!(" files:delete"),
        json!("files:delete\nHR_read"),
        json!("files:delete\"x"),
        json!(["files:delete"]),
        json!(7),
    ] {
        assert_eq!(
            rule(200, &answer(json!({ "scope": scope }))),
            "exchange.answer.scope",
            "{scope}"
        );
    }
    // Nothing asked for: any granted scope is wider.
    let none: Vec<String> = Vec::new();
    let r = parse_answer(200, &answer(json!({"scope": "mcp:tools"})), 0, &want(&none)).unwrap_err();
    assert_eq!(r.rule.as_deref(), Some("exchange.answer.scope"));
    assert!(r.detail.contains("asked for: none"), "{}", r.detail);
    assert!(parse_answer(200, &answer(json!({"scope": null})), 0, &want(&none)).is_ok());
    // The detail names what was too much, once each.
    let s = scopes();
    let r = parse_answer(
        200,
        &answer(json!({"scope": "files:delete HR_read sql:read HR_read"})),
        0,
        &want(&s),
    )
    .unwrap_err();
    assert!(
        r.detail
            .contains("HR_read sql:read (asked for: files:delete mcp:tools)"),
        "{}",
        r.detail
    );
}

#[test]
fn absurd_lifetimes_are_refused_and_long_ones_bounded() {
    for bad in [
        json!(0),
        json!(-1),
        json!(i64::MIN),
        json!(1.5),
        json!(1e300),
        json!("60"),
        json!(true),
        json!({}),
    ] {
        assert_eq!(
            rule(200, &answer(json!({ "expires_in": bad }))),
            "exchange.answer.expires_in",
            "{bad}"
        );
    }
    let explicit_null = String::from_utf8(answer(json!({})))
        .unwrap()
        .replace("\"expires_in\":30", "\"expires_in\":null");
    assert_eq!(
        rule(200, explicit_null.as_bytes()),
        "exchange.answer.expires_in"
    );
    // A number too large for any integer type is not a lifetime either.
    let huge = String::from_utf8(answer(json!({}))).unwrap().replace(
        "\"expires_in\":30",
        "\"expires_in\":1000000000000000000000000",
    );
    assert_eq!(rule(200, huge.as_bytes()), "exchange.answer.expires_in");
    // Near the end of time the expiry saturates instead of wrapping.
    let s = scopes();
    let issued = parse_answer(200, &answer(json!({})), u64::MAX - 5, &want(&s)).unwrap();
    assert_eq!(issued.expires_at, u64::MAX);
}

/// An unsigned-looking JWS with these claims (the signature is the upstream's to check).
fn jwt(claims: serde_json::Value) -> String {
    use base64::Engine;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(br#"{"alg":"ES256","typ":"at+jwt"}"#),
        b64(claims.to_string().as_bytes())
    )
}

#[test]
fn a_jwt_must_not_grant_more_than_asked_nor_be_for_another_audience() {
    let s = scopes();
    let check = |claims: serde_json::Value| {
        parse_answer(
            200,
            &answer(json!({ "access_token": jwt(claims) })),
            0,
            &want(&s),
        )
        .map(|_| ())
        .map_err(|r| r.rule.unwrap())
    };
    // What it says of itself agrees with the request: accepted.
    assert_eq!(check(json!({"aud": AUD, "scope": "files:delete"})), Ok(()));
    assert_eq!(check(json!({"aud": [AUD], "scp": ["mcp:tools"]})), Ok(()));
    assert_eq!(check(json!({"sub": "alice", "scope": ""})), Ok(()));
    // The answer says files:delete, the token grants HR_read too.
    for claims in [
        json!({"aud": AUD, "scope": "files:delete HR_read"}),
        json!({"aud": AUD, "scp": ["files:delete", "HR_read"]}),
        json!({"aud": AUD, "scp": "admin"}),
        json!({"aud": AUD, "scope": "files:delete\nHR_read"}),
        json!({"aud": AUD, "scope": 7}),
        json!({"aud": AUD, "scp": [1]}),
    ] {
        assert_eq!(
            check(claims.clone()),
            Err("exchange.answer.token_scope".into()),
            "{claims}"
        );
    }
    // Minted for another server (or for this one and another): it must not be handed here.
    for aud in [
        json!("https://other.example/mcp"),
        json!(["https://other.example/mcp"]),
        json!([AUD, "https://other.example/mcp"]),
        json!([]),
        json!(42),
    ] {
        assert_eq!(
            check(json!({ "aud": aud, "scope": "files:delete" })),
            Err("exchange.answer.token_audience".into()),
            "{aud}"
        );
    }
    // A JWS whose claims cannot be read one way.
    use base64::Engine;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let header = b64(br#"{"alg":"ES256"}"#);
    for payload in [
        b64(br#"{"scope":"files:delete","scope":"HR_read"}"#),
        b64(b"not json"),
        b64(b"[1]"),
        "!!".to_string(),
    ] {
        let token = format!("{header}.{payload}.c2ln");
        let r = parse_answer(200, &answer(json!({ "access_token": token })), 0, &want(&s));
        let rule = r.map(|_| String::new()).unwrap_or_else(|r| r.rule.unwrap());
        assert!(
            rule == "exchange.answer.token_claims" || rule == "exchange.answer.token_syntax",
            "{payload}: {rule}"
        );
    }
    // Opaque tokens and tokens that only look like three segments are not read.
    for token in ["opaque-token", "a.b.c", "YQ.YQ.YQ", "a.b.c.d.e"] {
        assert!(
            parse_answer(200, &answer(json!({ "access_token": token })), 0, &want(&s)).is_ok(),
            "{token}"
        );
    }
}
