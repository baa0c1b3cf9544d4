//! Reading claims: from the forwarded payload (typed) and from the metadata alone, and the
//! identity facts through each issuer's mapping, as Keycloak, Auth0, Entra ID and Okta shape them.

use super::*;
use crate::config::Config;
use crate::identity::config::IdentityConfig;
use crate::identity::payload::WithHeaders;
use serde_json::{json, Value};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn identity(user: Value, agent: Value) -> IdentityConfig {
    let cfg = json!({"mode": "open", "identity": {
        "protected_resource": {"resource": "http://gw/mcp", "authorization_servers": ["i"]},
        "user": user, "agent": agent}});
    let c = Config::from_json(cfg.to_string().as_bytes()).unwrap();
    c.identity.unwrap()
}

fn default_rules(forwarded: bool) -> (UserRules, AgentRules) {
    let payload = |name: &str| if forwarded { json!(name) } else { Value::Null };
    let id = identity(
        json!({"issuers": ["i"], "payload_header": payload("x-warden-user-payload")}),
        json!({"issuers": ["i"], "payload_header": payload("x-warden-agent-payload")}),
    );
    (id.user, id.agent.unwrap())
}

/// Reads the user token `payload` as jwt_authn hands it over (metadata and header).
fn user_of(rules: &UserRules, payload: Value) -> Result<UserClaims, ClaimError> {
    let meta = JsonClaims(vec![("user".into(), payload)]);
    let headers = meta.payload_headers();
    read_user(
        &WithHeaders {
            metadata: &meta,
            headers: &headers,
        },
        rules,
    )
}

#[test]
fn reads_user_and_agent_claims_from_either_source() {
    let src = JsonClaims(vec![
        (
            "user".into(),
            json!({"iss":"i","sub":"alice","aud":"mcp","exp":10,"scope":"a b","groups":["g"],"roles":["r"]}),
        ),
        (
            "agent".into(),
            json!({"iss":"i","sub":"agent:x","aud":["mcp","other"],"agent_type":"assistant","delegator_sub":"alice",
            "agent_capabilities":["tools:call"],"agent_trust_level":"high",
            "delegation_chain":[{"iss":"i","sub":"alice","aud":"agent:x","delegated_at":5,"scope":"a","constraints":{"max_duration":60,"allowed_resources":["mcp"],"geo":"eu"}}],
            "agent_attestation":{"format":"eat","token":"t.t.t","timestamp":4}}),
        ),
    ]);
    let headers = src.payload_headers();
    let forwarded = WithHeaders {
        metadata: &src,
        headers: &headers,
    };
    for (source, header) in [(&forwarded as &dyn ClaimSource, true), (&src, false)] {
        let (u_rules, a_rules) = default_rules(header);
        let u = read_user(source, &u_rules).unwrap();
        assert_eq!(
            (
                u.token.sub.as_str(),
                u.token.aud.clone(),
                u.token.scopes.clone()
            ),
            (
                "alice",
                vec!["mcp".to_string()],
                vec!["a".to_string(), "b".to_string()]
            )
        );
        assert_eq!(u.groups, vec!["g"]);
        assert!(!u.has_agent_claims);
        let a = read_agent(source, &a_rules).unwrap();
        assert_eq!(a.token.aud, vec!["mcp", "other"]);
        assert_eq!(a.delegation_chain[0].max_duration, Some(60.0));
        assert_eq!(
            a.delegation_chain[0].allowed_resources,
            Some(vec!["mcp".to_string()])
        );
        assert_eq!(a.delegation_chain[0].unknown_constraints, vec!["geo"]);
        assert_eq!(a.attestation.unwrap().timestamp, Some(4.0));
        let mut as_user = u_rules.clone();
        as_user.metadata_key = "agent".into();
        as_user.payload_header = header.then(|| "x-warden-agent-payload".into());
        assert!(read_user(source, &as_user).unwrap().has_agent_claims);
    }
    assert!(present(&src, "user").unwrap());
    assert!(!present(&src, "nobody").unwrap());
}

#[test]
fn wrongly_typed_claims_are_errors() {
    for header in [true, false] {
        let (u, a) = default_rules(header);
        let src = JsonClaims(vec![(
            "agent".into(),
            json!({"iss":"i","sub":"a","delegation_chain":"alice>a"}),
        )]);
        let headers = src.payload_headers();
        let with = WithHeaders {
            metadata: &src,
            headers: &headers,
        };
        assert!(matches!(
            read_agent(&with, &a),
            Err(ClaimError::Malformed { .. })
        ));
        let e = user_of(&u, json!({"iss":"i","sub":"a","exp":"soon"})).unwrap_err();
        assert!(matches!(e, ClaimError::Malformed { claim, .. } if claim == "exp"));
    }
}

#[test]
fn the_payload_keeps_json_types_that_the_metadata_loses() {
    let (u, _) = default_rules(true);
    let (meta_only, _) = default_rules(false);
    // A string crafted to be Envoy's list encoding of ["admin", "it"].
    let crafted = String::from_utf8(crate::identity::metadata::encode::list(&[
        b"admin".to_vec(),
        b"it".to_vec(),
    ]))
    .unwrap();
    let token = json!({"iss":"i","sub":"alice","aud":crafted,"groups":crafted});
    let typed = user_of(&u, token.clone()).unwrap();
    assert_eq!(typed.token.aud, vec![crafted.clone()]);
    assert_eq!(typed.groups, vec![crafted.clone()]);
    // The metadata alone cannot tell: the string decodes as a list (the weakness documented
    // for `payload_header: null`).
    let untyped = user_of(&meta_only, token).unwrap();
    assert_eq!(untyped.groups, vec!["admin", "it"]);
    // A number-looking string stays a string; a real number where a string belongs is refused.
    let eight = String::from_utf8(1.0f64.to_le_bytes().to_vec()).unwrap_or_default();
    let r = user_of(&u, json!({"iss":"i","sub":"alice","exp":1, "jti": eight}));
    assert!(r.is_ok());
    let e = user_of(&u, json!({"iss":"i","sub":"alice","jti":5})).unwrap_err();
    assert_eq!(e, ClaimError::malformed("jti", "is a number, not a string"));
}

#[test]
fn an_untrusted_issuer_is_refused_before_any_mapping_is_read() {
    let (u, _) = default_rules(true);
    let e = user_of(&u, json!({"iss":"evil","sub":"alice","groups":7})).unwrap_err();
    assert_eq!(e, ClaimError::UntrustedIssuer);
}

fn mapped(issuer: Value) -> UserRules {
    identity(json!({"issuers": ["i", issuer]}), json!({"issuers": ["i"]})).user
}

#[test]
fn keycloak_roles_are_united_from_realm_and_client() {
    let rules = mapped(json!({"issuer": "kc", "name": "corp", "claims": {
        "groups": "/groups",
        "roles": ["/realm_access/roles", "/resource_access/mcp-gateway/roles"],
        "email": {"from": "/email", "required": false}}}));
    let u = user_of(
        &rules,
        json!({"iss":"kc","sub":"f:1","groups":["/it"],"scope":"openid mcp",
            "realm_access":{"roles":["user","admin"]},
            "resource_access":{"mcp-gateway":{"roles":["admin","tools"]},"other":{"roles":["x"]}}}),
    )
    .unwrap();
    assert_eq!(u.roles, vec!["user", "admin", "tools"]);
    assert_eq!(u.groups, vec!["/it"]);
    assert_eq!(u.email, None);
    assert_eq!(u.token.scopes, vec!["openid", "mcp"]);
    // One of the two present is enough; neither is a refusal naming both.
    let u = user_of(
        &rules,
        json!({"iss":"kc","sub":"f:1","groups":[],"resource_access":{"mcp-gateway":{"roles":["tools"]}}}),
    )
    .unwrap();
    assert_eq!(u.roles, vec!["tools"]);
    let e = user_of(&rules, json!({"iss":"kc","sub":"f:1","groups":[]})).unwrap_err();
    assert_eq!(
        e,
        ClaimError::Missing {
            fact: "roles",
            pointers: "/realm_access/roles, /resource_access/mcp-gateway/roles".into()
        }
    );
}

#[test]
fn auth0_namespaced_claims_entra_scp_strings_and_okta_scp_lists() {
    let auth0 = mapped(json!({"issuer": "a0", "claims": {
        "groups": "/https:~1~1mcp.example.com~1groups", "scopes": "/scope"}}));
    let u = user_of(
        &auth0,
        json!({"iss":"a0","sub":"auth0|1","https://mcp.example.com/groups":["eng"],"scope":"read:x"}),
    )
    .unwrap();
    assert_eq!(
        (u.groups, u.token.scopes),
        (vec!["eng".into()], vec!["read:x".into()])
    );
    let entra = mapped(json!({"issuer": "entra", "claims": {
        "subject": "/oid", "scopes": "/scp", "roles": "/roles", "groups": {"from": "/groups", "required": false}}}));
    let u = user_of(
        &entra,
        json!({"iss":"entra","sub":"pairwise","oid":"0000-1","scp":"Tools.Read Tools.Call","roles":"Admin"}),
    )
    .unwrap();
    assert_eq!(u.token.sub, "0000-1");
    assert_eq!(u.token.scopes, vec!["Tools.Read", "Tools.Call"]);
    assert_eq!(u.roles, vec!["Admin"]);
    assert!(u.groups.is_empty());
    let okta = mapped(json!({"issuer": "okta", "claims": {"scopes": "/scp", "groups": "/groups"}}));
    let u = user_of(
        &okta,
        json!({"iss":"okta","sub":"00u1","scp":["openid","mcp:call","openid"],"groups":"Everyone"}),
    )
    .unwrap();
    assert_eq!(u.token.scopes, vec!["openid", "mcp:call"]);
    assert_eq!(u.groups, vec!["Everyone"]);
}

#[test]
fn a_denied_fact_is_empty_whatever_the_token_says() {
    let rules = mapped(json!({"issuer": "partner", "claims": {"groups": null, "roles": null}}));
    let u = user_of(
        &rules,
        json!({"iss":"partner","sub":"bob","groups":["admins"],"roles":{"not":"even a list"}}),
    )
    .unwrap();
    assert!(u.groups.is_empty() && u.roles.is_empty());
}

#[test]
fn mapped_facts_missing_or_mistyped_are_refused_naming_fact_and_pointer() {
    let rules = mapped(json!({"issuer": "kc", "claims": {
        "groups": "/realm_access/groups", "email": "/email", "scopes": ["/scope", "/scp"]}}));
    let base =
        json!({"iss":"kc","sub":"s","realm_access":{"groups":["g"]},"email":"a@b","scope":"x"});
    assert!(user_of(&rules, base.clone()).is_ok());
    let with = |path: &str, v: Value| {
        let mut t = base.clone();
        if let Some(slot) = t.pointer_mut(path) {
            *slot = v;
        }
        user_of(&rules, t).unwrap_err()
    };
    let mistyped = |fact: &'static str, pointer: &str, problem: &str| ClaimError::Mistyped {
        fact,
        pointer: pointer.into(),
        problem: problem.into(),
    };
    assert_eq!(
        with("/realm_access/groups", json!(3)),
        mistyped(
            "groups",
            "/realm_access/groups",
            "is a number, not a string or a list of strings"
        )
    );
    assert_eq!(
        with("/realm_access/groups", json!(["a", {"b": 1}])),
        mistyped(
            "groups",
            "/realm_access/groups",
            "is a list holding an object, not a string or a list of strings"
        )
    );
    assert_eq!(
        with("/realm_access/groups", json!(true)),
        mistyped(
            "groups",
            "/realm_access/groups",
            "is a boolean, not a string or a list of strings"
        )
    );
    assert_eq!(
        with("/email", json!(["a@b"])),
        mistyped("email", "/email", "is a list, not a string")
    );
    assert_eq!(
        with("/scope", json!({"x": true})),
        mistyped(
            "scopes",
            "/scope",
            "is an object, not a space-separated string or a list of strings"
        )
    );
    assert_eq!(
        with("/sub", json!(1)),
        mistyped("subject", "/sub", "is a number, not a string")
    );
    // Missing: absent, or null, or the parent is not an object.
    for t in [
        json!({"iss":"kc","sub":"s","email":"a@b","scope":"x"}),
        json!({"iss":"kc","sub":"s","realm_access":{"groups":null},"email":"a@b","scope":"x"}),
        json!({"iss":"kc","sub":"s","realm_access":"groups","email":"a@b","scope":"x"}),
    ] {
        assert_eq!(
            user_of(&rules, t).unwrap_err(),
            ClaimError::Missing {
                fact: "groups",
                pointers: "/realm_access/groups".into()
            }
        );
    }
    let e = user_of(
        &rules,
        json!({"iss":"kc","realm_access":{"groups":[]},"email":"a","scope":"x"}),
    )
    .unwrap_err();
    assert_eq!(
        e,
        ClaimError::Missing {
            fact: "subject",
            pointers: "/sub".into()
        }
    );
    // Default facts (not listed) stay optional.
    let plain = mapped(json!({"issuer": "kc"}));
    assert!(user_of(&plain, json!({"iss":"kc","sub":"s"})).is_ok());
}

#[test]
fn agent_facts_are_mapped_too() {
    let id = identity(
        json!({"issuers": ["i"]}),
        json!({"issuers": [{"issuer": "i", "claims": {
            "capabilities": ["/caps", "/extra/caps"], "trust_level": "/trust/level", "scopes": null}}]}),
    );
    let a_rules = id.agent.unwrap();
    let meta = JsonClaims(vec![(
        "agent".into(),
        json!({"iss":"i","sub":"agent:x","caps":"tools:call","extra":{"caps":["tools:list"]},
            "trust":{"level":"high"},"scope":"everything","agent_trust_level":"low"}),
    )]);
    let headers = meta.payload_headers();
    let src = WithHeaders {
        metadata: &meta,
        headers: &headers,
    };
    let a = read_agent(&src, &a_rules).unwrap();
    assert_eq!(a.capabilities, vec!["tools:call", "tools:list"]);
    assert_eq!(a.trust_level.as_deref(), Some("high"));
    assert!(a.token.scopes.is_empty());
}

#[test]
fn a_verified_token_without_its_payload_header_is_a_configuration_error() {
    let (u, _) = default_rules(true);
    let meta = JsonClaims(vec![("user".into(), json!({"iss":"i","sub":"a"}))]);
    let none: Vec<(String, Vec<u8>)> = Vec::new();
    let src = WithHeaders {
        metadata: &meta,
        headers: &none,
    };
    assert_eq!(
        read_user(&src, &u).unwrap_err(),
        ClaimError::NoPayloadHeader("x-warden-user-payload".into())
    );
    // Without the wrapper (no headers at all) too.
    assert_eq!(
        read_user(&meta, &u).unwrap_err(),
        ClaimError::NoPayloadHeader("x-warden-user-payload".into())
    );
}
