//! Issuer lists and claim mappings: parsing, defaults, and every refusal naming its field.

use super::*;
use crate::config::Config;
use serde_json::json;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn identity(user_issuers: Value, agent_issuers: Option<Value>) -> Result<Config, ConfigError> {
    let mut id = json!({
        "protected_resource": {"resource": "http://gw/mcp", "authorization_servers": ["idp"]},
        "user": {"issuers": user_issuers},
    });
    if let Some(a) = agent_issuers {
        id["agent"] = json!({"issuers": a});
    }
    Config::from_json(
        json!({ "mode": "open", "identity": id })
            .to_string()
            .as_bytes(),
    )
}

fn field(user_issuers: Value) -> (String, String) {
    let e = identity(user_issuers, None).unwrap_err();
    (e.field, e.message)
}

fn ptrs(s: &Source) -> Vec<&str> {
    match s {
        Source::Denied => vec![],
        Source::From { pointers, .. } => pointers.iter().map(Pointer::as_str).collect(),
    }
}

#[test]
fn pointers_follow_rfc_6901() {
    let p = Pointer::parse("/https:~1~1example.com~1groups").unwrap();
    assert_eq!(p.tokens(), ["https://example.com/groups"]);
    let p = Pointer::parse("/a~01/b/").unwrap();
    assert_eq!(p.tokens(), ["a~1", "b", ""]);
    let doc = json!({"a~1": {"b": {"": 7}}, "l": ["x", "y"], "https://example.com/groups": ["g"]});
    assert_eq!(p.lookup(&doc), Some(&json!(7)));
    let at = |s: &str| Pointer::parse(s).unwrap().lookup(&doc).cloned();
    assert_eq!(at("/l/1"), Some(json!("y")));
    assert_eq!(at("/l/01"), None);
    assert_eq!(at("/l/-"), None);
    assert_eq!(at("/l/2"), None);
    assert_eq!(at("/l/x"), None);
    assert_eq!(at("/l/1/z"), None);
    assert_eq!(at("/https:~1~1example.com~1groups"), Some(json!(["g"])));
    for bad in ["", "sub", "#/sub", "/a~", "/a~2", "/~x", "/a\0b"] {
        assert!(Pointer::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_url_keeps_todays_claim_names() {
    let c = identity(json!(["idp"]), Some(json!(["agents"]))).unwrap();
    let id = c.identity.unwrap();
    let u = &id.user.issuers[0];
    assert_eq!((u.url.as_str(), u.name.as_deref()), ("idp", None));
    assert_eq!(u.claims, ClaimMapping::defaults(TokenKind::User));
    let m = &u.claims;
    assert_eq!(ptrs(m.source(Fact::Subject)), ["/sub"]);
    assert_eq!(ptrs(m.source(Fact::Groups)), ["/groups"]);
    assert_eq!(ptrs(m.source(Fact::Roles)), ["/roles"]);
    assert_eq!(ptrs(m.source(Fact::Scopes)), ["/scope", "/scp"]);
    assert_eq!(ptrs(m.source(Fact::Email)), ["/email"]);
    assert_eq!(m.source(Fact::Capabilities), &Source::Denied);
    let required: Vec<Fact> = m
        .entries()
        .filter(|(_, s)| matches!(s, Source::From { required: true, .. }))
        .map(|(f, _)| f)
        .collect();
    assert_eq!(required, [Fact::Subject]);
    let a = &id.agent.unwrap().issuers[0].claims;
    assert_eq!(ptrs(a.source(Fact::Capabilities)), ["/agent_capabilities"]);
    assert_eq!(ptrs(a.source(Fact::TrustLevel)), ["/agent_trust_level"]);
    assert_eq!(a.source(Fact::Groups), &Source::Denied);
}

#[test]
fn an_object_maps_each_fact() {
    let c = identity(
        json!([
            "https://plain.example.com",
            {"issuer": "https://kc.example.com/realms/corp", "name": "corp",
             "claims": {
                "subject": "/sub",
                "groups": "/groups",
                "roles": ["/realm_access/roles", "/resource_access/mcp-gateway/roles"],
                "scopes": "/scope",
                "email": {"from": "/email", "required": false}
             }},
            {"issuer": "https://partner.example.com", "name": "partner-2",
             "claims": {"groups": null, "roles": {"from": ["/r1", "/r2"]}}}
        ]),
        None,
    )
    .unwrap();
    let id = c.identity.unwrap();
    let kc = id
        .user
        .issuer("https://kc.example.com/realms/corp")
        .unwrap();
    assert_eq!(kc.name.as_deref(), Some("corp"));
    assert_eq!(
        kc.claims.source(Fact::Roles),
        &Source::From {
            pointers: vec![
                Pointer::parse("/realm_access/roles").unwrap(),
                Pointer::parse("/resource_access/mcp-gateway/roles").unwrap()
            ],
            required: true
        }
    );
    assert!(matches!(
        kc.claims.source(Fact::Email),
        Source::From {
            required: false,
            ..
        }
    ));
    assert!(matches!(
        kc.claims.source(Fact::Groups),
        Source::From { required: true, .. }
    ));
    let p = id.user.issuer("https://partner.example.com").unwrap();
    assert_eq!(p.claims.source(Fact::Groups), &Source::Denied);
    assert_eq!(p.claims.source(Fact::Groups).describe(), "null");
    assert_eq!(p.claims.source(Fact::Roles).describe(), "/r1, /r2");
    // Unlisted facts keep the defaults, optional.
    assert_eq!(
        p.claims.source(Fact::Scopes),
        ClaimMapping::defaults(TokenKind::User).source(Fact::Scopes)
    );
    assert!(id.user.issuer("https://other.example.com").is_none());
    assert_eq!(id.user.issuers[0].name, None);
}

#[test]
fn bad_issuers_and_mappings_are_refused_naming_the_field() {
    let at = "identity.user.issuers";
    let cases: Vec<(Value, String, &str)> = vec![
        (json!([]), at.into(), "at least one"),
        (json!([""]), format!("{at}[0]"), "empty"),
        (json!([{"issuer": " "}]), format!("{at}[0].issuer"), "empty"),
        (json!([7]), format!("{at}[0]"), "URL"),
        (json!(["a", "a"]), format!("{at}[1]"), "twice"),
        (
            json!(["a", {"issuer": "a", "name": "x"}]),
            format!("{at}[1]"),
            "twice",
        ),
        (json!([{"name": "x"}]), format!("{at}[0]"), "issuer"),
        (
            json!([{"issuer": "a", "colour": 1}]),
            format!("{at}[0]"),
            "colour",
        ),
        (
            json!([{"issuer": "a", "name": "Corp"}]),
            format!("{at}[0].name"),
            "not a name",
        ),
        (
            json!([{"issuer": "a", "name": "-corp"}]),
            format!("{at}[0].name"),
            "not a name",
        ),
        (
            json!([{"issuer": "a", "name": "a:b"}]),
            format!("{at}[0].name"),
            "not a name",
        ),
        (
            json!([{"issuer": "a", "name": ""}]),
            format!("{at}[0].name"),
            "not a name",
        ),
        (
            json!([{"issuer": "a", "name": "x".repeat(65)}]),
            format!("{at}[0].name"),
            "64",
        ),
        (
            json!([{"issuer": "a", "name": "corp"}, {"issuer": "b", "name": "corp"}]),
            format!("{at}[1].name"),
            "another issuer",
        ),
        (
            json!([{"issuer": "a", "claims": {"group": "/groups"}}]),
            format!("{at}[0].claims.group"),
            "unknown fact for user tokens",
        ),
        (
            json!([{"issuer": "a", "claims": {"capabilities": "/c"}}]),
            format!("{at}[0].claims.capabilities"),
            "unknown fact",
        ),
        (
            json!([{"issuer": "a", "claims": {"groups": "groups"}}]),
            format!("{at}[0].claims.groups"),
            "must start with `/`",
        ),
        (
            json!([{"issuer": "a", "claims": {"groups": ""}}]),
            format!("{at}[0].claims.groups"),
            "must start with `/`",
        ),
        (
            json!([{"issuer": "a", "claims": {"groups": "/a~2b"}}]),
            format!("{at}[0].claims.groups"),
            "~",
        ),
        (
            json!([{"issuer": "a", "claims": {"groups": ["/g", 1]}}]),
            format!("{at}[0].claims.groups[1]"),
            "Pointer",
        ),
        (
            json!([{"issuer": "a", "claims": {"groups": []}}]),
            format!("{at}[0].claims.groups"),
            "non-empty",
        ),
        (
            json!([{"issuer": "a", "claims": {"groups": ["/g", "/g"]}}]),
            format!("{at}[0].claims.groups"),
            "twice",
        ),
        (
            json!([{"issuer": "a", "claims": {"groups": true}}]),
            format!("{at}[0].claims.groups"),
            "JSON Pointer",
        ),
        (
            json!([{"issuer": "a", "claims": {"groups": {"required": true}}}]),
            format!("{at}[0].claims.groups.from"),
            "missing",
        ),
        (
            json!([{"issuer": "a", "claims": {"groups": {"from": "/g", "required": "yes"}}}]),
            format!("{at}[0].claims.groups.required"),
            "true or false",
        ),
        (
            json!([{"issuer": "a", "claims": {"groups": {"from": "/g", "optional": true}}}]),
            format!("{at}[0].claims.groups.optional"),
            "unknown field",
        ),
        (
            json!([{"issuer": "a", "claims": {"groups": {"from": ["/g", "x"]}}}]),
            format!("{at}[0].claims.groups.from[1]"),
            "must start with `/`",
        ),
        (
            json!([{"issuer": "a", "claims": {"subject": null}}]),
            format!("{at}[0].claims.subject"),
            "cannot be null",
        ),
        (
            json!([{"issuer": "a", "claims": {"subject": {"from": "/oid", "required": false}}}]),
            format!("{at}[0].claims.subject.required"),
            "always required",
        ),
    ];
    for (issuers, want_field, want_text) in cases {
        let (got_field, message) = field(issuers.clone());
        assert_eq!(got_field, want_field, "{issuers}: {message}");
        assert!(message.contains(want_text), "{issuers}: {message}");
    }
    // Agent issuers: their own facts, their own names.
    let e = identity(
        json!(["u"]),
        Some(json!([{"issuer": "a", "claims": {"groups": "/g"}}])),
    )
    .unwrap_err();
    assert_eq!(e.field, "identity.agent.issuers[0].claims.groups");
    assert!(
        e.message.contains("unknown fact for agent tokens"),
        "{}",
        e.message
    );
    let ok = identity(
        json!([{"issuer": "u", "name": "corp"}]),
        Some(json!([{"issuer": "a", "name": "corp", "claims": {"capabilities": "/caps", "trust_level": null}}])),
    )
    .unwrap();
    let agent = ok.identity.unwrap().agent.unwrap();
    assert_eq!(
        ptrs(agent.issuers[0].claims.source(Fact::Capabilities)),
        ["/caps"]
    );
    assert_eq!(
        agent.issuers[0].claims.source(Fact::TrustLevel),
        &Source::Denied
    );
}

#[test]
fn payload_headers_default_can_be_turned_off_and_are_checked() {
    let base = |user: Value, agent: Value| {
        Config::from_json(
            json!({"mode": "open", "identity": {
                "protected_resource": {"resource": "http://gw/mcp", "authorization_servers": ["idp"]},
                "user": user, "agent": agent}})
            .to_string()
            .as_bytes(),
        )
    };
    let c = base(json!({"issuers": ["i"]}), json!({"issuers": ["i"]})).unwrap();
    let id = c.identity.unwrap();
    assert_eq!(
        id.user.payload_header.as_deref(),
        Some("x-warden-user-payload")
    );
    assert_eq!(
        id.agent.as_ref().and_then(|a| a.payload_header.as_deref()),
        Some("x-warden-agent-payload")
    );
    assert_eq!(
        id.payload_headers().collect::<Vec<_>>(),
        ["x-warden-user-payload", "x-warden-agent-payload"]
    );
    let c = base(
        json!({"issuers": ["i"], "payload_header": null}),
        json!({"issuers": ["i"], "payload_header": "x-p"}),
    )
    .unwrap();
    let id = c.identity.unwrap();
    assert_eq!(id.user.payload_header, None);
    assert_eq!(id.payload_headers().collect::<Vec<_>>(), ["x-p"]);
    for (user, agent, want) in [
        (
            json!({"issuers": ["i"], "payload_header": "X Bad"}),
            json!({"issuers": ["i"]}),
            "identity.user.payload_header",
        ),
        (
            json!({"issuers": ["i"], "payload_header": "x-p"}),
            json!({"issuers": ["i"], "payload_header": "x-p"}),
            "identity.agent.payload_header",
        ),
        (
            json!({"issuers": ["i"], "payload_header": "x-agent-token"}),
            json!({"issuers": ["i"]}),
            "identity.user.payload_header",
        ),
        (
            json!({"issuers": ["i"]}),
            json!({"issuers": ["i"], "payload_header": "authorization"}),
            "identity.agent.payload_header",
        ),
    ] {
        assert_eq!(base(user, agent).unwrap_err().field, want);
    }
}
