use super::*;
use serde_json::json;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn config(auth: serde_json::Value) -> ExchangeConfig {
    let raw = json!({
        "cluster": "sts", "authority": "idp:4000", "client_auth": auth,
        "servers": {
            "demo": {"audience": "http://up/mcp", "scopes": ["mcp:tools"], "lifetime_seconds": 30,
                     "tools": {"delete_file": {"scopes": ["files:delete", "mcp:tools"]}, "echo": {"unprotected": true}}},
            "public": {"unprotected": true}
        }
    });
    serde_json::from_value::<RawExchange>(raw)
        .unwrap()
        .compile("token_exchange")
        .unwrap()
}

fn basic() -> ExchangeConfig {
    config(
        json!({"method": "client_secret_basic", "client_id": "mcp-warden", "client_secret": "s3cr:t"}),
    )
}

#[test]
fn plans_follow_server_and_tool_settings() {
    let c = basic();
    let p = |s: &str, t: Target| c.plan(s, &t);
    assert_eq!(
        p("demo", Target::Tool("delete_file".into())).unwrap(),
        Grant::Exchange(Params {
            audience: "http://up/mcp".into(),
            scopes: vec!["files:delete".into(), "mcp:tools".into()],
            lifetime: 30
        })
    );
    assert_eq!(
        p("demo", Target::Tool("echo".into())).unwrap(),
        Grant::Unprotected
    );
    assert_eq!(
        p("demo", Target::None).unwrap(),
        Grant::Exchange(Params {
            audience: "http://up/mcp".into(),
            scopes: vec!["mcp:tools".into()],
            lifetime: 30
        })
    );
    assert_eq!(
        p("public", Target::Tool("x".into())).unwrap(),
        Grant::Unprotected
    );
    assert_eq!(
        p("ghost", Target::None).unwrap_err().rule.as_deref(),
        Some("exchange.unknown_server")
    );
}

#[test]
fn request_is_an_rfc_8693_form_post_with_basic_auth() {
    let c = basic();
    let params = Params {
        audience: "http://up/mcp".into(),
        scopes: vec!["a".into(), "b".into()],
        lifetime: 30,
    };
    let call = build_call(&c, "user.tok", Some("agent.tok"), &params, 1000, 1).unwrap();
    assert_eq!(call.cluster, "sts");
    let h = |k: &str| {
        call.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(h(":authority"), "idp:4000");
    assert_eq!(h(":path"), "/token");
    assert_eq!(h("authorization"), "Basic bWNwLXdhcmRlbjpzM2NyJTNBdA==");
    let body = String::from_utf8(call.body).unwrap();
    assert!(body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"));
    assert!(body.contains("subject_token=user.tok") && body.contains("actor_token=agent.tok"));
    assert!(body.contains("audience=http%3A%2F%2Fup%2Fmcp") && body.contains("scope=a+b"));
}

#[test]
fn private_key_jwt_signs_an_assertion() {
    let key = ES256KeyPair::generate();
    let pem = key.to_pem().unwrap();
    let c = config(
        json!({"method": "private_key_jwt", "client_id": "mcp-warden-pkjwt", "key_pem": pem, "key_id": "k1", "audience": "http://idp"}),
    );
    let params = Params {
        audience: "x".into(),
        scopes: vec![],
        lifetime: 30,
    };
    let call = build_call(&c, "u", None, &params, 1_800_000_000, 7).unwrap();
    let body = String::from_utf8(call.body).unwrap();
    let assertion = body
        .split('&')
        .find_map(|kv| kv.strip_prefix("client_assertion="))
        .unwrap();
    let opts = VerificationOptions {
        artificial_time: Some(UnixTimeStamp::from_secs(1_800_000_010)),
        ..VerificationOptions::default()
    };
    let claims = key
        .public_key()
        .verify_token::<NoCustomClaims>(assertion, Some(opts))
        .unwrap();
    assert_eq!(claims.subject.as_deref(), Some("mcp-warden-pkjwt"));
    assert!(!call.headers.iter().any(|(k, _)| k == "authorization"));
    let other = build_call(&c, "u", None, &params, 1_800_000_000, 8).unwrap();
    assert_ne!(
        other.body,
        String::from_utf8(body.into_bytes()).unwrap().into_bytes()
    );
    // The same inputs (another worker or replica: same second, same request number, same
    // caller) still give distinct ids.
    let jti = |call: &StsCall| {
        let body = String::from_utf8(call.body.clone()).unwrap();
        let assertion = body
            .split('&')
            .find_map(|kv| kv.strip_prefix("client_assertion="))
            .unwrap()
            .to_string();
        key.public_key()
            .verify_token::<NoCustomClaims>(
                &assertion,
                Some(VerificationOptions {
                    artificial_time: Some(UnixTimeStamp::from_secs(1_800_000_010)),
                    ..VerificationOptions::default()
                }),
            )
            .unwrap()
            .jwt_id
            .unwrap()
    };
    let ids: std::collections::HashSet<String> = (0..50)
        .map(|_| jti(&build_call(&c, "u", None, &params, 1_800_000_000, 7).unwrap()))
        .collect();
    assert_eq!(ids.len(), 50);
}

#[test]
fn cache_keys_hash_all_inputs_and_tokens_expire_early() {
    let p = Params {
        audience: "a".into(),
        scopes: vec!["s".into()],
        lifetime: 30,
    };
    let k = cache_key("u", Some("g"), &p);
    assert_ne!(k, cache_key("u", None, &p));
    assert_ne!(k, cache_key("u2", Some("g"), &p));
    assert_ne!(
        k,
        cache_key(
            "u",
            Some("g"),
            &Params {
                scopes: vec!["t".into()],
                ..p.clone()
            }
        )
    );
    assert_ne!(
        cache_key("ab", Some("c"), &p),
        cache_key("a", Some("bc"), &p)
    );
    let mut cache = TokenCache::default();
    cache.put(
        k,
        Issued {
            access_token: "t".into(),
            expires_at: 100,
        },
        0,
    );
    assert!(cache.get(&k, 90, 5).is_some());
    assert!(cache.get(&k, 96, 5).is_none());
}

#[test]
fn config_errors_name_the_field() {
    let field = |raw: serde_json::Value| {
        serde_json::from_value::<RawExchange>(raw)
            .unwrap()
            .compile("token_exchange")
            .unwrap_err()
            .field
    };
    let auth = json!({"method": "client_secret_basic", "client_id": "a", "client_secret": "b"});
    assert_eq!(
        field(
            json!({"cluster": "sts", "authority": "a", "client_auth": auth, "servers": {"s": {}}})
        ),
        "token_exchange.servers.s.audience"
    );
    assert_eq!(
        field(
            json!({"cluster": "sts", "authority": "a", "client_auth": auth, "timeout_ms": 5, "servers": {}})
        ),
        "token_exchange.timeout_ms"
    );
    for wrong in [
        "urn:ietf:params:oauth:token-type:id_token",
        "urn:ietf:params:oauth:token-type:refresh_token",
        "urn:ietf:params:oauth:token-type:saml2",
        "",
    ] {
        assert_eq!(
            field(
                json!({"cluster": "sts", "authority": "a", "client_auth": auth, "requested_token_type": wrong, "servers": {}})
            ),
            "token_exchange.requested_token_type"
        );
    }
    assert_eq!(
        field(
            json!({"cluster": "sts", "authority": "a", "client_auth": {"method": "private_key_jwt", "client_id": "a", "key_pem": "x", "audience": "b"}, "servers": {}})
        ),
        "token_exchange.client_auth.key_pem"
    );
    assert_eq!(
        field(
            json!({"cluster": "sts", "authority": "a", "client_auth": auth, "servers": {"s": {"unprotected": true, "tools": {"t": {}}}}})
        ),
        "token_exchange.servers.s.tools.t"
    );
}
