//! `authenticate`: every rule, one failing case each, over claims encoded as Envoy encodes them.

use super::*;
use crate::config::Config;
use crate::identity::claims::JsonClaims;
use crate::identity::payload::{encode, WithHeaders};
use serde_json::{json, Value};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: u64 = 1_800_000_000;
const RES: &str = "http://gw/mcp";

fn config(extra_agent: Value) -> IdentityConfig {
    let mut agent = json!({
        "issuers": ["idp"],
        "allowed_types": ["assistant"],
        "min_trust_level": "medium",
        "required_capabilities": ["tools:call"],
        "delegation": {"max_chain_length": 2}
    });
    if let (Some(a), Some(e)) = (agent.as_object_mut(), extra_agent.as_object()) {
        for (k, v) in e {
            a.insert(k.clone(), v.clone());
        }
    }
    // Identity only: the policy is not what these tests are about.
    let cfg = json!({
        "mode": "open",
        "identity": {
            "protected_resource": {"resource": RES, "authorization_servers": ["idp"]},
            "user": {"issuers": ["idp"], "required_scopes": ["mcp:tools"]},
            "agent": agent
        }
    });
    let c = Config::from_json(cfg.to_string().as_bytes()).unwrap();
    c.identity.unwrap()
}

fn user() -> Value {
    json!({"iss":"idp","sub":"alice","aud":RES,"exp":NOW+600,"nbf":NOW-5,"iat":NOW-5,"scope":"mcp:tools sql:read","groups":["it"]})
}

fn agent() -> Value {
    json!({"iss":"idp","sub":"agent:claude","aud":[RES],"exp":NOW+600,"iat":NOW-5,"scope":"mcp:tools",
        "agent_type":"assistant","agent_model":"m","agent_provider":"p","agent_instance_id":"i1",
        "delegator_sub":"alice","agent_capabilities":["tools:call"],"agent_trust_level":"high",
        "delegation_chain":[{"iss":"idp","sub":"alice","aud":"agent:claude","delegated_at":NOW-10,"scope":"mcp:tools sql:read",
            "constraints":{"max_duration":3600,"allowed_resources":[RES]}}]})
}

fn set(mut v: Value, path: &str, new: Value) -> Value {
    if let Some(slot) = v.pointer_mut(path) {
        *slot = new;
    }
    v
}

fn unset(mut v: Value, key: &str) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove(key);
    }
    v
}

fn source(entries: Vec<(&str, Value)>) -> JsonClaims {
    JsonClaims(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// The claims as jwt_authn hands them on: in its metadata and in the forwarded headers.
fn run(cfg: &IdentityConfig, entries: Vec<(&str, Value)>) -> Result<Identity, Rejection> {
    let meta = source(entries);
    let headers = meta.payload_headers();
    run_with(cfg, &meta, &headers)
}

fn run_with(
    cfg: &IdentityConfig,
    meta: &JsonClaims,
    headers: &[(String, Vec<u8>)],
) -> Result<Identity, Rejection> {
    let src = WithHeaders {
        metadata: meta,
        headers,
    };
    authenticate(cfg, &src, &mut AttestationCache::default(), NOW)
}

/// `cfg` reading claims from jwt_authn's metadata alone (`payload_header: null`).
fn metadata_only(cfg: &IdentityConfig) -> IdentityConfig {
    let mut cfg = cfg.clone();
    cfg.user.payload_header = None;
    if let Some(a) = &mut cfg.agent {
        a.payload_header = None;
    }
    cfg
}

/// The refusal, the same whether claims come from the payload headers or the metadata.
fn rule(cfg: &IdentityConfig, entries: Vec<(&str, Value)>) -> (Reason, String) {
    let r = run(cfg, entries.clone()).expect_err("expected a refusal");
    let m = run(&metadata_only(cfg), entries).expect_err("expected a refusal (metadata)");
    assert_eq!((&r.reason, &r.rule), (&m.reason, &m.rule), "{}", r.detail);
    (r.reason, r.rule.unwrap_or_default())
}

#[test]
fn a_valid_user_and_agent_pass() {
    let id = run(
        &config(json!({})),
        vec![("user", user()), ("agent", agent())],
    )
    .unwrap();
    assert_eq!(id.user.token.sub, "alice");
    assert_eq!(
        id.agent.as_ref().map(|a| a.token.sub.as_str()),
        Some("agent:claude")
    );
    assert_eq!(id.delegation_summary(), "alice>agent:claude");
}

#[test]
fn every_rule_refuses_with_its_own_reason() {
    let cfg = config(json!({}));
    let u = user;
    let a = agent;
    let failure = |m: &str| json!({"code": 3, "message": m});
    type Case = (Vec<(&'static str, Value)>, Reason, &'static str);
    let cases: Vec<Case> = vec![
        (vec![("agent", a())], Reason::MissingToken, "user.missing"),
        (
            vec![("user_failure", failure("Jwt is missing")), ("agent", a())],
            Reason::MissingToken,
            "user.missing",
        ),
        (vec![("user", u())], Reason::MissingToken, "agent.missing"),
        (
            vec![("user_failure", failure("Jwt is expired")), ("agent", a())],
            Reason::InvalidToken,
            "user.expired",
        ),
        (
            vec![
                ("user_failure", failure("Jwt not yet valid")),
                ("agent", a()),
            ],
            Reason::InvalidToken,
            "user.not_yet_valid",
        ),
        (
            vec![
                ("user_failure", failure("Jwt issuer is not configured")),
                ("agent", a()),
            ],
            Reason::InvalidToken,
            "user.issuer",
        ),
        (
            vec![
                ("user_failure", failure("Audiences in Jwt are not allowed")),
                ("agent", a()),
            ],
            Reason::InvalidToken,
            "user.audience",
        ),
        (
            vec![
                ("user_failure", failure("Jwt verification fails")),
                ("agent", a()),
            ],
            Reason::InvalidToken,
            "user.signature",
        ),
        (
            vec![
                ("user", u()),
                ("agent_failure", failure("Jwt verification fails")),
            ],
            Reason::InvalidToken,
            "agent.signature",
        ),
        (
            vec![("user", set(u(), "/iss", json!("other"))), ("agent", a())],
            Reason::InvalidToken,
            "user.issuer",
        ),
        (
            vec![
                ("user", set(u(), "/aud", json!("elsewhere"))),
                ("agent", a()),
            ],
            Reason::InvalidToken,
            "user.audience",
        ),
        (
            vec![("user", set(u(), "/exp", json!(NOW - 100))), ("agent", a())],
            Reason::InvalidToken,
            "user.expired",
        ),
        (
            vec![("user", unset(u(), "exp")), ("agent", a())],
            Reason::InvalidToken,
            "user.expired",
        ),
        (
            vec![("user", set(u(), "/nbf", json!(NOW + 100))), ("agent", a())],
            Reason::InvalidToken,
            "user.not_yet_valid",
        ),
        (
            vec![("user", set(u(), "/exp", json!("soon"))), ("agent", a())],
            Reason::InvalidToken,
            "user.claims",
        ),
        (
            vec![
                ("user", {
                    let mut v = u();
                    v["act"] = json!({"sub": "agent:agent-claude"});
                    v
                }),
                ("agent", a()),
            ],
            Reason::InvalidToken,
            "user.exchanged",
        ),
        (
            vec![("user", a()), ("agent", a())],
            Reason::InvalidToken,
            "user.kind",
        ),
        (
            vec![("user", u()), ("agent", u())],
            Reason::InvalidToken,
            "agent.kind",
        ),
        (
            vec![
                ("user", set(u(), "/scope", json!("sql:read"))),
                ("agent", a()),
            ],
            Reason::InsufficientScope,
            "user.scope",
        ),
        (
            vec![
                ("user", u()),
                ("agent", set(a(), "/delegator_sub", json!("bob"))),
            ],
            Reason::DelegationInvalid,
            "agent.delegator",
        ),
        (
            vec![("user", u()), ("agent", unset(a(), "delegator_sub"))],
            Reason::DelegationInvalid,
            "agent.delegator",
        ),
        (
            vec![
                ("user", u()),
                ("agent", set(a(), "/agent_type", json!("autonomous"))),
            ],
            Reason::AgentNotAllowed,
            "agent.type",
        ),
        (
            vec![
                ("user", u()),
                ("agent", set(a(), "/agent_trust_level", json!("low"))),
            ],
            Reason::AgentNotAllowed,
            "agent.trust_level",
        ),
        (
            vec![
                ("user", u()),
                ("agent", set(a(), "/agent_trust_level", json!("galactic"))),
            ],
            Reason::AgentNotAllowed,
            "agent.trust_level",
        ),
        (
            vec![
                ("user", u()),
                ("agent", set(a(), "/agent_capabilities", json!([]))),
            ],
            Reason::AgentNotAllowed,
            "agent.capability",
        ),
        (
            vec![
                ("user", u()),
                ("agent", set(a(), "/delegation_chain/0/sub", json!("bob"))),
            ],
            Reason::DelegationInvalid,
            "delegation.start",
        ),
        (
            vec![
                ("user", u()),
                (
                    "agent",
                    set(a(), "/delegation_chain/0/scope", json!("mcp:tools admin")),
                ),
            ],
            Reason::DelegationInvalid,
            "delegation.scope_widened",
        ),
        (
            vec![
                ("user", u()),
                ("agent", set(a(), "/delegation_chain/0/iss", json!("evil"))),
            ],
            Reason::DelegationInvalid,
            "delegation.issuer",
        ),
        (
            vec![
                ("user", u()),
                (
                    "agent",
                    set(
                        a(),
                        "/delegation_chain/0/constraints/allowed_resources",
                        json!(["x"]),
                    ),
                ),
            ],
            Reason::DelegationInvalid,
            "delegation.allowed_resources",
        ),
        (
            vec![("user", u()), ("agent", unset(a(), "delegation_chain"))],
            Reason::DelegationInvalid,
            "delegation.missing",
        ),
    ];
    for (entries, reason, want) in cases {
        let what = format!("{entries:?}");
        assert_eq!(rule(&cfg, entries), (reason, want.to_string()), "{what}");
    }
}

#[test]
fn long_chains_are_refused() {
    let cfg = config(json!({}));
    let step = |sub: &str, aud: &str, at: u64| json!({"iss":"idp","sub":sub,"aud":aud,"delegated_at":at,"scope":"mcp:tools"});
    let chain = json!([
        step("alice", "agent:a", NOW - 30),
        step("agent:a", "agent:b", NOW - 20),
        step("agent:b", "agent:claude", NOW - 10)
    ]);
    let a = set(agent(), "/delegation_chain", chain);
    assert_eq!(
        rule(&cfg, vec![("user", user()), ("agent", a)]),
        (Reason::DelegationInvalid, "delegation.length".into())
    );
}

#[test]
fn agent_is_optional_when_not_configured() {
    let cfg = Config::from_json(
        json!({"mode": "open", "identity": {"protected_resource": {"resource": RES, "authorization_servers": ["idp"]}, "user": {"issuers": ["idp"]}}})
            .to_string()
            .as_bytes(),
    )
    .unwrap()
    .identity
    .unwrap();
    let id = run(&cfg, vec![("user", user())]).unwrap();
    assert!(id.agent.is_none());
    assert_eq!(id.delegation_summary(), "alice");
}

#[test]
fn attestation_is_required_when_configured() {
    let pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8xOUetsCa8EfOlDEBAfREhJqspDo\nyEh6Szz2in47Tv5n52m9dLYyPCbqZkOB5nTSqtscpkQD/HpykCggvx09iQ==\n-----END PUBLIC KEY-----\n";
    let cfg = config(
        json!({"attestation": {"issuers": ["attester"], "keys": [{"alg": "ES256", "pem": pem}]}}),
    );
    assert_eq!(
        rule(&cfg, vec![("user", user()), ("agent", agent())]),
        (Reason::AttestationInvalid, "attestation.missing".into())
    );
    let a = set(
        agent(),
        "/agent_attestation",
        json!({"format":"urn:ietf:params:oauth:token-type:eat","token":"a.b.c","timestamp":NOW-1}),
    );
    let a = {
        let mut a = a;
        a["agent_attestation"] = json!({"format":"urn:ietf:params:oauth:token-type:eat","token":"a.b.c","timestamp":NOW-1});
        a
    };
    assert_eq!(
        rule(&cfg, vec![("user", user()), ("agent", a)]),
        (Reason::AttestationInvalid, "attestation.signature".into())
    );
}

#[test]
fn config_errors_name_the_field() {
    let base = |identity: Value| {
        Config::from_json(
            json!({"mode": "open", "identity": identity})
                .to_string()
                .as_bytes(),
        )
        .map(|_| ())
        .unwrap_err()
        .field
    };
    let pr = json!({"resource": RES, "authorization_servers": ["idp"]});
    assert_eq!(
        base(
            json!({"protected_resource": {"resource": "gw/mcp", "authorization_servers": ["idp"]}, "user": {"issuers": ["idp"]}})
        ),
        "identity.protected_resource.resource"
    );
    assert_eq!(
        base(json!({"protected_resource": pr, "user": {"issuers": []}})),
        "identity.user.issuers"
    );
    assert_eq!(
        base(
            json!({"protected_resource": pr, "user": {"issuers": ["idp"], "token_header": "Bad Header"}})
        ),
        "identity.user.token_header"
    );
    assert_eq!(
        base(
            json!({"protected_resource": pr, "user": {"issuers": ["idp"]}, "agent": {"issuers": ["idp"], "min_trust_level": "max"}})
        ),
        "identity.agent.min_trust_level"
    );
    assert_eq!(
        base(
            json!({"protected_resource": pr, "user": {"issuers": ["idp"]}, "agent": {"issuers": ["idp"], "attestation": {"issuers": ["a"], "keys": [{"alg": "ES256", "pem": "nope"}]}}})
        ),
        "identity.agent.attestation.keys[0]"
    );
    assert_eq!(
        base(json!({"protected_resource": pr, "user": {"issuers": ["idp"], "colour": 1}})),
        "identity.user.colour"
    );
    assert_eq!(
        base(
            json!({"protected_resource": pr, "user": {"issuers": ["idp"]}, "agent": {"issuers": ["idp"], "token_header": "authorization"}})
        ),
        "identity.agent"
    );
}

#[test]
fn metadata_document_and_url_follow_rfc_9728() {
    let cfg = config(json!({}));
    assert_eq!(
        &*cfg.resource_metadata_url,
        "http://gw/.well-known/oauth-protected-resource/mcp"
    );
    assert_eq!(
        cfg.metadata_paths,
        vec![
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource"
        ]
    );
    assert_eq!(cfg.metadata_document["resource"], json!(RES));
    assert_eq!(
        cfg.stripped_headers().collect::<Vec<_>>(),
        vec![
            "authorization",
            "x-agent-token",
            "x-warden-user-payload",
            "x-warden-agent-payload",
            "x-mcp-user",
            "x-mcp-user-issuer",
            "x-mcp-agent",
            "x-mcp-delegation"
        ]
    );
}

struct Counting<'a>(&'a dyn ClaimSource, std::cell::Cell<usize>);

impl ClaimSource for Counting<'_> {
    fn get(&self, path: &[&str]) -> Result<Option<Vec<u8>>, metadata::HostError> {
        self.1.set(self.1.get() + 1);
        self.0.get(path)
    }
    fn payload(&self, name: &str) -> payload::Forwarded<'_> {
        self.0.payload(name)
    }
}

#[test]
fn verified_identities_are_reused_only_while_jwt_authn_still_vouches_and_time_allows() {
    let cfg = config(json!({}));
    let meta = JsonClaims(vec![("user".into(), user()), ("agent".into(), agent())]);
    let headers = meta.payload_headers();
    let claims = WithHeaders {
        metadata: &meta,
        headers: &headers,
    };
    let src = Counting(&claims, std::cell::Cell::new(0));
    let mut att = AttestationCache::default();
    let mut ids = IdentityCache::default();
    let key = Some(ids.key("user.tok", Some("agent.tok")));
    let first = authenticate_cached(&cfg, &src, &mut att, &mut ids, key, NOW).unwrap();
    let full_reads = src.1.replace(0);
    let again = authenticate_cached(&cfg, &src, &mut att, &mut ids, key, NOW + 1).unwrap();
    assert_eq!(first, again);
    assert!(
        src.1.get() <= 2 && full_reads > 10,
        "cached: {} reads, full: {full_reads}",
        src.1.get()
    );
    // jwt_authn did not verify the tokens on this request: no reuse, the precise refusal.
    let empty = JsonClaims(vec![]);
    let r = authenticate_cached(&cfg, &empty, &mut att, &mut ids, key, NOW + 2).unwrap_err();
    assert_eq!(r.rule.as_deref(), Some("user.missing"));
    // Past the TTL the claims are checked again.
    src.1.set(0);
    authenticate_cached(
        &cfg,
        &src,
        &mut att,
        &mut ids,
        key,
        NOW + IDENTITY_CACHE_TTL + 1,
    )
    .unwrap();
    assert!(src.1.get() > 10);
    // Never past the token's expiry.
    let short = set(user(), "/exp", json!(NOW + 5));
    let id = run(&cfg, vec![("user", short), ("agent", agent())]).unwrap();
    assert_eq!(valid_until(&cfg, &id, NOW), NOW + 5);
}

/// A payload header that is not jwt_authn's copy of the verified token.
fn forged(header_payload: Value) -> Vec<(String, Vec<u8>)> {
    vec![
        ("x-warden-user-payload".to_string(), encode(&header_payload)),
        ("x-warden-agent-payload".to_string(), encode(&agent())),
    ]
}

fn refusal(r: Result<Identity, Rejection>) -> (Reason, String, String) {
    let r = r.expect_err("expected a refusal");
    (r.reason, r.rule.unwrap_or_default(), r.detail)
}

#[test]
fn a_payload_header_that_disagrees_with_jwt_authn_is_refused() {
    let cfg = config(json!({}));
    let meta = source(vec![("user", user()), ("agent", agent())]);
    let mut with_admin = user();
    with_admin["groups"] = json!(["it", "admin"]);
    let mut string_groups = user();
    string_groups["groups"] = json!("it");
    let cases: Vec<(Value, &str)> = vec![
        (with_admin, "groups"),
        (string_groups, "groups"),
        (unset(user(), "groups"), "groups"),
        (set(user(), "/iss", json!("evil")), "iss"),
        (set(user(), "/sub", json!("admin")), "sub"),
        (set(user(), "/exp", json!(NOW + 99_999)), "exp"),
        (set(user(), "/scope", json!("mcp:tools admin")), "scope"),
        (
            {
                let mut v = user();
                v["roles"] = json!(["admin"]);
                v
            },
            "roles",
        ),
        (
            {
                let mut v = user();
                v["scp"] = json!(["admin"]);
                v
            },
            "scp",
        ),
    ];
    for (header, claim) in cases {
        let (reason, rule, detail) = refusal(run_with(&cfg, &meta, &forged(header.clone())));
        assert_eq!(
            (reason, rule.as_str()),
            (Reason::InvalidToken, "user.payload_mismatch"),
            "{header}"
        );
        assert!(detail.contains(&format!("`{claim}`")), "{detail}");
    }
    // A claim the gateway does not read is not compared (and not used).
    let mut extra = user();
    extra["favourite_colour"] = json!("blue");
    assert!(run_with(&cfg, &meta, &forged(extra)).is_ok());
    // The agent's header is checked as well.
    let mut headers = meta.payload_headers();
    headers[1].1 = encode(&set(agent(), "/agent_trust_level", json!("high ")));
    let (_, rule, _) = refusal(run_with(&cfg, &meta, &headers));
    assert_eq!(rule, "agent.payload_mismatch");
}

#[test]
fn unreadable_duplicated_or_missing_payload_headers_are_refused() {
    let cfg = config(json!({}));
    let meta = source(vec![("user", user()), ("agent", agent())]);
    let good = meta.payload_headers();
    let with_user = |v: &[u8]| {
        let mut h = good.clone();
        h[0].1 = v.to_vec();
        h
    };
    for bad in [&b"%%%"[..], b"", b"e30", b"WzFd"] {
        let (reason, rule, _) = refusal(run_with(&cfg, &meta, &with_user(bad)));
        assert_eq!(
            (reason, rule.as_str()),
            (Reason::InvalidToken, "user.payload_mismatch")
        );
    }
    let mut twice = good.clone();
    twice.push(good[0].clone());
    let (_, rule, detail) = refusal(run_with(&cfg, &meta, &twice));
    assert_eq!(rule, "user.payload_mismatch");
    assert!(detail.contains("more than once"), "{detail}");
    // The token itself has a key twice (jwt_authn kept one, which?): refused as its claims.
    let dup = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        br#"{"iss":"idp","sub":"alice","groups":["it"],"groups":["admin"]}"#,
    );
    let (_, rule, detail) = refusal(run_with(&cfg, &meta, &with_user(dup.as_bytes())));
    assert_eq!(rule, "user.claims");
    assert!(detail.contains("groups"), "{detail}");
    // jwt_authn verified the tokens but forwarded no header: the configuration is wrong (500).
    for (kind, headers) in [
        ("user", vec![good[1].clone()]),
        ("agent", vec![good[0].clone()]),
    ] {
        let (reason, rule, detail) = refusal(run_with(&cfg, &meta, &headers));
        assert_eq!(
            (reason, rule),
            (Reason::Internal, format!("{kind}.payload_header"))
        );
        assert!(
            detail.contains(&format!("forward_payload_header: x-warden-{kind}-payload")),
            "{detail}"
        );
    }
    // A client's copy without a verified token changes nothing: no token is no token.
    let none = source(vec![]);
    let (reason, rule, _) = refusal(run_with(&cfg, &none, &good));
    assert_eq!(
        (reason, rule.as_str()),
        (Reason::MissingToken, "user.missing")
    );
    // Reading from the metadata, the header is not read at all.
    assert!(run_with(&metadata_only(&cfg), &meta, &with_user(b"%%%")).is_ok());
}

#[test]
fn mapped_claims_missing_or_mistyped_are_refused_naming_them() {
    let cfg = {
        let c = json!({"mode": "open", "identity": {
            "protected_resource": {"resource": RES, "authorization_servers": ["idp"]},
            "user": {"issuers": [{"issuer": "idp", "claims": {
                "groups": "/realm_access/roles", "email": {"from": "/email", "required": false}}}]}}});
        Config::from_json(c.to_string().as_bytes())
            .unwrap()
            .identity
            .unwrap()
    };
    let mut u = user();
    u["realm_access"] = json!({"roles": ["it", "finance"]});
    let id = run(&cfg, vec![("user", u.clone())]).unwrap();
    assert_eq!(id.user.groups, vec!["it", "finance"]);
    let (reason, rule, detail) = refusal(run(&cfg, vec![("user", user())]));
    assert_eq!(
        (reason, rule.as_str()),
        (Reason::InvalidToken, "user.claims")
    );
    assert_eq!(detail, "user token has no groups (/realm_access/roles)");
    let mistyped = set(u.clone(), "/realm_access/roles", json!(7));
    let (_, rule, detail) = refusal(run(&cfg, vec![("user", mistyped)]));
    assert_eq!(rule, "user.claims");
    assert_eq!(
        detail,
        "user token groups (/realm_access/roles) is a number, not a string or a list of strings"
    );
    let mistyped = set(u.clone(), "/realm_access/roles", json!(["it", 1]));
    let (_, _, detail) = refusal(run(&cfg, vec![("user", mistyped)]));
    assert!(detail.contains("is a list holding a number"), "{detail}");
    let mut email = u;
    email["email"] = json!({"address": "a@b"});
    let (_, _, detail) = refusal(run(&cfg, vec![("user", email)]));
    assert_eq!(
        detail,
        "user token email (/email) is an object, not a string"
    );
}
