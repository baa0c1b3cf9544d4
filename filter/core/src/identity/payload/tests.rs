//! The forwarded payload: decoding hostile headers, and agreement with jwt_authn's metadata.

use super::*;
use crate::identity::metadata::encode;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::json;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn unreadable(header: &[u8]) -> &'static str {
    match decode(header) {
        Err(PayloadError::Unreadable(why)) => why,
        other => panic!("{other:?}"),
    }
}

#[test]
fn padded_and_unpadded_base64url_json_objects_decode() {
    // `?>` encodes to `Pz4` in base64url: both alphabets' special characters appear.
    let payload = json!({"sub": "a?>", "groups": ["ü", "g"], "n": 1.5});
    let text = payload.to_string();
    for header in [URL_SAFE_NO_PAD.encode(&text), URL_SAFE.encode(&text)] {
        assert_eq!(decode(header.as_bytes()).unwrap(), payload);
    }
    assert_eq!(encode(&payload), URL_SAFE_NO_PAD.encode(&text).into_bytes());
}

#[test]
fn hostile_headers_are_refused_never_panic() {
    let b64 = |s: &[u8]| URL_SAFE_NO_PAD.encode(s).into_bytes();
    // The standard alphabet (`+`, `/`) is not what jwt_authn writes.
    let std_only = STANDARD.encode(r#"{"a":"??>>"}"#);
    assert!(std_only.contains('/') || std_only.contains('+'));
    assert_eq!(unreadable(std_only.as_bytes()), "it is not base64url");
    for bad in [
        &b"not base64!"[..],
        b"e",
        b"eyJhb",
        b"e30===",
        b" e30",
        b"e30\0",
        b"e3\xff0",
    ] {
        assert_eq!(unreadable(bad), "it is not base64url", "{bad:?}");
    }
    assert_eq!(unreadable(&b64(b"{\"a\":\"\xff\"}")), "it is not UTF-8");
    assert_eq!(unreadable(&b64(b"{\"a\":")), "it is not JSON");
    // Non-zero trailing bits are tolerated (jwt_authn forwards the segment as signed).
    assert_eq!(unreadable(b"eyJ"), "it is not JSON");
    assert_eq!(unreadable(&b64(b"{} {}")), "it is not JSON");
    assert_eq!(unreadable(&b64(b"[1]")), "it is not a JSON object");
    assert_eq!(unreadable(&b64(b"\"x\"")), "it is not a JSON object");
    assert_eq!(unreadable(&b64(b"null")), "it is not a JSON object");
    let huge = b64(format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_PAYLOAD_HEADER_BYTES)).as_bytes());
    assert_eq!(unreadable(&huge), "it is too large");
    // A NUL inside a JSON string is a string like any other.
    assert_eq!(
        decode(&b64(br#"{"sub":"a\u0000b"}"#)).unwrap()["sub"],
        json!("a\0b")
    );
    // Ambiguous or too deep: the token's own fault, named.
    match decode(&b64(br#"{"sub":"a","groups":[],"groups":["admin"]}"#)) {
        Err(PayloadError::Ambiguous(why)) => assert!(why.contains("`/groups` twice"), "{why}"),
        other => panic!("{other:?}"),
    }
    match decode(&b64(br#"{"x":{"sub":1,"sub":2}}"#)) {
        Err(PayloadError::Ambiguous(why)) => assert!(why.contains("sub"), "{why}"),
        other => panic!("{other:?}"),
    }
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(40), "]".repeat(40));
    match decode(&b64(deep.as_bytes())) {
        Err(PayloadError::Ambiguous(why)) => assert!(why.contains("deeper than 32"), "{why}"),
        other => panic!("{other:?}"),
    }
    let very_deep = format!("{{\"a\":{}{}}}", "[".repeat(20_000), "]".repeat(20_000));
    assert!(decode(&b64(very_deep.as_bytes())).is_err());
}

#[test]
fn find_tells_one_copy_from_many() {
    let h = vec![
        ("X-Warden-User-Payload".to_string(), b"a".to_vec()),
        ("x-other".to_string(), b"b".to_vec()),
    ];
    assert_eq!(find(&h, "x-warden-user-payload"), Forwarded::One(b"a"));
    assert_eq!(find(&h, "x-warden-agent-payload"), Forwarded::Absent);
    let mut twice = h.clone();
    twice.push(("x-warden-user-payload".to_string(), b"a".to_vec()));
    assert_eq!(find(&twice, "x-warden-user-payload"), Forwarded::Many);
}

#[test]
fn agreement_compares_types_and_values() {
    let same = |v: Value| agrees(&v, &encode::json(&v));
    for v in [
        json!("alice"),
        json!(""),
        json!(1_800_000_000),
        json!(1.5),
        json!(-0.0),
        json!(true),
        json!(false),
        json!([]),
        json!(["a", "b"]),
        json!([1, "a", [true]]),
        json!({}),
        json!({"roles": ["x"], "n": {"m": 2}}),
    ] {
        assert!(same(v.clone()), "{v}");
    }
    let differ = |v: Value, envoy: Value| !agrees(&v, &encode::json(&envoy));
    assert!(differ(json!("alice"), json!("bob")));
    assert!(differ(json!(["admin"]), json!(["admin", "it"])));
    assert!(differ(json!(["admin", "it"]), json!(["admin"])));
    assert!(differ(json!(["it", "admin"]), json!(["admin", "it"])));
    assert!(differ(json!({"a": 1}), json!({"a": 1, "b": 2})));
    assert!(differ(json!({"a": 1, "b": 2}), json!({"a": 1})));
    assert!(differ(json!({"a": 1}), json!({"b": 1})));
    assert!(differ(json!({"a": 1}), json!({"a": 2})));
    assert!(differ(json!(1), json!(2)));
    assert!(differ(json!(1), json!("1")));
    assert!(differ(json!(true), json!(1)));
    assert!(differ(json!([1]), json!(1)));
    assert!(differ(json!(null), json!("")));
    // What the metadata cannot tell apart (a string crafted as a list encoding) agrees by
    // bytes: the header's type is what is read.
    let crafted = encode::list(&[b"admin".to_vec()]);
    let s = String::from_utf8(crafted.clone()).unwrap();
    assert!(agrees(&json!(s), &crafted));
    assert!(agrees(&json!(["admin"]), &crafted));
    assert!(has_null(&json!({"a": [1, null]})) && !has_null(&json!({"a": [1]})));
}
