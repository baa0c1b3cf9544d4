use super::*;
use crate::config::Config;
use std::collections::HashMap;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const KEY_A: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const IDENTITY: &str = r#""identity":{"protected_resource":{"resource":"http://gw/mcp","authorization_servers":["i"]},"user":{"issuers":["i"]}}"#;
const POLICY: &str = r#""policy":{"servers":[{"name":"a","path":"/mcp"}]}"#;

/// A fake environment.
fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn exchange(client_secret: &str) -> String {
    format!(
        r#""token_exchange":{{"cluster":"sts","authority":"s","client_auth":{{"method":"client_secret_basic","client_id":"c","client_secret":{client_secret}}},"servers":{{"a":{{"audience":"x"}}}}}}"#
    )
}

fn config(sections: &[&str]) -> String {
    format!("{{\"mode\":\"open\",{}}}", sections.join(","))
}

fn basic_header(c: &Config) -> String {
    match c.token_exchange.as_ref().map(|x| &x.client_auth) {
        Some(crate::exchange::ClientAuth::Basic(h)) => h.clone(),
        other => panic!("not basic auth: {other:?}"),
    }
}

#[test]
fn client_secret_from_env_is_the_same_as_inline() {
    let inline = config(&[IDENTITY, POLICY, &exchange(r#""s3cret""#)]);
    let by_env = config(&[IDENTITY, POLICY, &exchange(r#"{"env":"STS_SECRET"}"#)]);
    let a = Config::from_json(inline.as_bytes()).unwrap();
    let b =
        Config::from_json_with_env(by_env.as_bytes(), &env(&[("STS_SECRET", "s3cret")])).unwrap();
    assert_eq!(basic_header(&a), basic_header(&b));
}

#[test]
fn a_missing_or_empty_variable_names_field_and_variable() {
    let by_env = config(&[IDENTITY, POLICY, &exchange(r#"{"env":"STS_SECRET"}"#)]);
    for e in [
        Config::from_json(by_env.as_bytes()).unwrap_err(),
        Config::from_json_with_env(by_env.as_bytes(), &env(&[("OTHER", "x")])).unwrap_err(),
    ] {
        assert_eq!(e.field, "token_exchange.client_auth.client_secret");
        assert!(e.message.contains("`STS_SECRET` is not set"), "{e}");
    }
    let e = Config::from_json_with_env(by_env.as_bytes(), &env(&[("STS_SECRET", "")])).unwrap_err();
    assert_eq!(e.field, "token_exchange.client_auth.client_secret");
    assert!(e.message.contains("`STS_SECRET` is empty"), "{e}");
}

#[test]
fn session_keys_from_env_seal_like_inline_keys() {
    let inline = config(&[
        IDENTITY,
        &format!(r#""sessions":{{"keys":[{{"id":"k1","secret":"{KEY_A}"}}]}}"#),
    ]);
    let by_env = config(&[
        IDENTITY,
        r#""sessions":{"keys":[{"id":"k1","secret":{"env":"SESSION_KEY"}}]}"#,
    ]);
    let a = Config::from_json(inline.as_bytes()).unwrap();
    let b = Config::from_json_with_env(by_env.as_bytes(), &env(&[("SESSION_KEY", KEY_A)])).unwrap();
    let (a, b) = (a.sessions.unwrap(), b.sessions.unwrap());
    assert!(!b.is_generated());
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    // The second key of a list, and the legacy place, name their index.
    let second = config(&[
        IDENTITY,
        &format!(
            r#""sessions":{{"keys":[{{"id":"k2","secret":"{KEY_A}"}},{{"id":"k1","secret":{{"env":"OLD_KEY"}}}}]}}"#
        ),
    ]);
    let e = Config::from_json(second.as_bytes()).unwrap_err();
    assert_eq!(e.field, "sessions.keys[1].secret");
    assert!(e.message.contains("OLD_KEY"), "{e}");
    let legacy = config(&[
        IDENTITY,
        POLICY,
        r#""routing":{"session_keys":[{"id":"k1","secret":{"env":"ROUTING_KEY"}}]}"#,
    ]);
    assert_eq!(
        Config::from_json(legacy.as_bytes()).unwrap_err().field,
        "routing.session_keys[0].secret"
    );
    assert!(Config::from_json_with_env(legacy.as_bytes(), &env(&[("ROUTING_KEY", KEY_A)])).is_ok());
    // A variable's value is checked like an inline value.
    let e = Config::from_json_with_env(by_env.as_bytes(), &env(&[("SESSION_KEY", "c2hvcnQ=")]))
        .unwrap_err();
    assert_eq!(e.field, "sessions.keys[0].secret");
}

#[test]
fn a_private_key_comes_from_env() {
    let pem = jwt_simple::prelude::ES256KeyPair::generate()
        .to_pem()
        .unwrap();
    let section = r#""token_exchange":{"cluster":"sts","authority":"s","client_auth":{"method":"private_key_jwt","client_id":"c","key_pem":{"env":"STS_KEY"},"audience":"https://sts"},"servers":{"a":{"audience":"x"}}}"#;
    let c = config(&[IDENTITY, POLICY, section]);
    let ok = Config::from_json_with_env(c.as_bytes(), &env(&[("STS_KEY", &pem)])).unwrap();
    assert!(matches!(
        ok.token_exchange.unwrap().client_auth,
        crate::exchange::ClientAuth::Jwt { .. }
    ));
    let e =
        Config::from_json_with_env(c.as_bytes(), &env(&[("STS_KEY", "not a key")])).unwrap_err();
    assert_eq!(e.field, "token_exchange.client_auth.key_pem");
    let e = Config::from_json(c.as_bytes()).unwrap_err();
    assert_eq!(e.field, "token_exchange.client_auth.key_pem");
    assert!(e.message.contains("STS_KEY"), "{e}");
}

#[test]
fn malformed_references_are_refused() {
    for bad in [
        r#"{"env":"A","x":1}"#,
        r#"{"env":5}"#,
        r#"{"file":"/run/secret"}"#,
        r#"{}"#,
        r#"{"env":""}"#,
        r#"{"env":"1ABC"}"#,
        r#"{"env":"A-B"}"#,
        r#"{"env":"A B"}"#,
        r#"{"env":"A=B"}"#,
    ] {
        let c = config(&[IDENTITY, POLICY, &exchange(bad)]);
        let e = Config::from_json_with_env(c.as_bytes(), &|_| Some("v".into())).unwrap_err();
        assert_eq!(e.field, "token_exchange.client_auth.client_secret", "{bad}");
    }
}

#[test]
fn only_secret_fields_take_references() {
    // Anywhere else an {"env": …} object is plain JSON: here a policy argument value.
    let policy = r#""policy":{"servers":[{"name":"a","path":"/mcp","tools":[{"name":"t","status":"approved","approved_for":["*"]}]}],"rules":[{"id":"r","effect":"allow","tools":["t"],"arguments":[{"path":"/x","equals":{"env":"HOME"}}]}]}"#;
    let looked_up = std::cell::Cell::new(0);
    let lookup = |_: &str| {
        looked_up.set(looked_up.get() + 1);
        Some("v".to_string())
    };
    assert!(Config::from_json_with_env(config(&[policy]).as_bytes(), &lookup).is_ok());
    assert_eq!(looked_up.get(), 0);
    // A secret-looking name elsewhere is not read either: the identity section has none.
    let c = config(&[r#""audit_log":{"env":"X"}"#]);
    assert_eq!(
        Config::from_json_with_env(c.as_bytes(), &lookup)
            .unwrap_err()
            .field,
        "audit_log"
    );
    assert_eq!(looked_up.get(), 0);
}

#[test]
fn check_stands_in_placeholders_and_reports_references() {
    let pem_section = r#""token_exchange":{"cluster":"sts","authority":"s","client_auth":{"method":"private_key_jwt","client_id":"c","key_pem":{"env":"STS_KEY"},"audience":"https://sts"},"servers":{"a":{"audience":"x"}}}"#;
    let c = config(&[
        IDENTITY,
        POLICY,
        pem_section,
        r#""sessions":{"keys":[{"id":"k1","secret":{"env":"SESSION_KEY"}}]}"#,
    ]);
    let (_, refs) = Config::check_json(c.as_bytes(), &env(&[("SESSION_KEY", KEY_A)])).unwrap();
    assert_eq!(
        refs,
        vec![
            EnvReference {
                field: "token_exchange.client_auth.key_pem".into(),
                variable: "STS_KEY".into(),
                resolved: false
            },
            EnvReference {
                field: "sessions.keys[0].secret".into(),
                variable: "SESSION_KEY".into(),
                resolved: true
            },
        ]
    );
    // A set variable is still checked.
    let e = Config::check_json(c.as_bytes(), &env(&[("SESSION_KEY", "c2hvcnQ=")])).unwrap_err();
    assert_eq!(e.field, "sessions.keys[0].secret");
    let text = config(&[IDENTITY, POLICY, &exchange(r#"{"env":"S"}"#)]);
    assert!(Config::check_json(text.as_bytes(), &|_| None).is_ok());
}
