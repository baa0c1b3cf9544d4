//! Claims through a real Envoy 1.40: jwt_authn's `forward_payload_header` (typed claims), what
//! a client can do with its own copy of that header, the agreement check against jwt_authn's
//! metadata, claim mapping refusals naming the claim, and the `Bearer` prefix in any case.
//!
//! Each refusal is checked for status, reason and rule, and that the MCP server never saw the
//! call; each forwarded call for what the server saw.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{
    demo_plugin_config, jwt_payload, jwt_with_payload, open_session, refusal_problems, tool_call,
    Envoy, EnvoyConfig, HttpRequest, HttpResponse, Idp, McpServer, RecordingUpstream, TestCtx,
    Tokens, IDP_ISSUER,
};
use serde_json::{json, Value};

const USER_PAYLOAD: &str = "x-warden-user-payload";
const AGENT_PAYLOAD: &str = "x-warden-agent-payload";

fn b64url(data: &[u8]) -> String {
    mcp_warden_integration_tests::b64_encode(data, mcp_warden_integration_tests::B64_URL)
}

/// A payload header carrying `payload` (what a forger would send).
fn payload_header(payload: &Value) -> String {
    b64url(payload.to_string().as_bytes())
}

fn headers(user: &str, agent: &str) -> Vec<(String, String)> {
    vec![
        ("Authorization".into(), format!("Bearer {user}")),
        ("x-agent-token".into(), agent.to_string()),
    ]
}

/// The refusal's problems (empty: as expected), and that the server did not see it.
fn refused(
    name: &str,
    resp: &HttpResponse,
    server: &McpServer,
    before: usize,
    (status, reason, rule): (u16, &str, &str),
    id: u64,
) -> Vec<String> {
    let code = if status == 403 {
        -32003
    } else if status == 500 {
        -32603
    } else {
        -32001
    };
    let mut bad = refusal_problems(resp, status, code, reason, rule, &json!(null));
    // Refusals before the body is read carry no id; after it, the call's id.
    if bad.len() == 1 && bad[0].starts_with("id ") {
        bad = refusal_problems(resp, status, code, reason, rule, &json!(id));
    }
    if server.mcp_requests().len() != before {
        bad.push("the server saw the request".into());
    }
    bad.into_iter()
        .map(|p| format!("{name}: {p}\n{resp}"))
        .collect()
}

fn detail(resp: &HttpResponse) -> String {
    resp.json().map_or(String::new(), |b| {
        b["error"]["data"]["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    })
}

/// jwt_authn itself (no mcp-warden): the upstream gets the payload header only from jwt_authn,
/// for a token it verified; a client's copy never passes, whether the token is valid, missing
/// or invalid.
#[test]
fn jwt_authn_replaces_or_drops_a_client_copy_of_the_payload_headers() {
    let ctx = TestCtx::new("claims_jwt_authn_sanitizes");
    let idp = Idp::start(&ctx);
    let upstream = RecordingUpstream::start();
    let envoy = Envoy::start(
        &ctx,
        "envoy",
        &EnvoyConfig::demo(upstream.port, idp.port).without_filter(),
    );
    let good = idp.tokens("alice", "agent-claude", "mcp:tools");
    let forged_user =
        payload_header(&json!({"iss": IDP_ISSUER, "sub": "admin", "groups": ["it-admins"]}));
    let forged_agent = payload_header(&json!({"iss": IDP_ISSUER, "sub": "agent:evil"}));
    let mut tampered = jwt_payload(&good.user);
    tampered["groups"] = json!(["it-admins", "root"]);
    let tampered = jwt_with_payload(&good.user, &tampered);
    let segment = |t: &str| t.split('.').nth(1).unwrap_or_default().to_string();
    type Want = (Option<String>, Option<String>);
    type Case<'a> = (&'a str, Vec<(String, String)>, Want);
    let cases: Vec<Case> = vec![
        (
            "valid tokens",
            headers(&good.user, &good.agent),
            (Some(segment(&good.user)), Some(segment(&good.agent))),
        ),
        ("no tokens", vec![], (None, None)),
        (
            "invalid user token, no agent token",
            vec![("Authorization".into(), format!("Bearer {tampered}"))],
            (None, None),
        ),
        ("garbage tokens", headers("not.a.jwt", "nope"), (None, None)),
    ];
    let mut bad = Vec::new();
    for (name, mut h, (want_user, want_agent)) in cases {
        h.push((USER_PAYLOAD.into(), forged_user.clone()));
        h.push(("X-Warden-User-Payload".into(), forged_user.clone()));
        h.push((AGENT_PAYLOAD.into(), forged_agent.clone()));
        let before = upstream.count();
        let resp = HttpRequest::mcp_post(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .headers(&h)
            .send(envoy.listener_port)
            .unwrap();
        let reqs = upstream.requests();
        let Some(seen) = reqs.get(before) else {
            bad.push(format!("{name}: not forwarded by plain jwt_authn:\n{resp}"));
            continue;
        };
        let all = |n: &str| -> Vec<&str> {
            seen.headers
                .iter()
                .filter(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        for (header, want) in [(USER_PAYLOAD, &want_user), (AGENT_PAYLOAD, &want_agent)] {
            let got = all(header);
            let expected: Vec<&str> = want.iter().map(String::as_str).collect();
            if got != expected {
                bad.push(format!(
                    "{name}: upstream saw {header} = {got:?}, expected {expected:?}"
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Through mcp-warden: a client's copy of the payload header cannot add groups, whatever else
/// the request carries; bob's real groups decide.
#[test]
fn a_forged_payload_header_cannot_add_groups() {
    let ctx = TestCtx::new("claims_forged_payload");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "demo");
    let envoy = Envoy::start(&ctx, "envoy", &EnvoyConfig::demo(server.port, idp.port));
    let port = envoy.listener_port;
    let bob = idp.tokens("bob", "agent-claude", "mcp:tools");
    let alice = idp.tokens("alice", "agent-claude", "mcp:tools files:delete");
    let bob_session = open_session(port, &bob.headers()).unwrap_or_else(|e| panic!("{e}"));
    let alice_session = open_session(port, &alice.headers()).unwrap_or_else(|e| panic!("{e}"));
    let delete =
        |session: &str, id: u64| tool_call(session, id, "delete_file", json!({"path": "/tmp/x"}));
    // Control: alice (it-admins) may delete; the server sees the call.
    let before = server.mcp_requests().len();
    let resp = delete(&alice_session, 2)
        .headers(&alice.headers())
        .send(port)
        .unwrap();
    assert_eq!(resp.status, 200, "alice's delete_file:\n{resp}");
    assert_eq!(server.mcp_requests().len(), before + 1);

    let mut as_admin = jwt_payload(&bob.user);
    as_admin["groups"] = json!(["it-admins"]);
    let forged = payload_header(&as_admin);
    let mut tampered = jwt_payload(&bob.user);
    tampered["groups"] = json!(["it-admins"]);
    let tampered = jwt_with_payload(&bob.user, &tampered);
    let with_forgery = |h: Vec<(String, String)>| {
        let mut h = h;
        h.push((USER_PAYLOAD.into(), forged.clone()));
        h
    };
    type Case<'a> = (&'a str, Vec<(String, String)>, (u16, &'a str, &'a str));
    let cases: Vec<Case> = vec![
        (
            "valid bob tokens and a forged header",
            with_forgery(bob.headers()),
            (403, "policy_denied", "*"),
        ),
        (
            "no user token, a forged header",
            with_forgery(vec![("x-agent-token".into(), bob.agent.clone())]),
            (401, "missing_token", "user.missing"),
        ),
        (
            "invalid user token, a forged header",
            with_forgery(headers(&tampered, &bob.agent)),
            (401, "invalid_token", "user.signature"),
        ),
    ];
    let mut bad = Vec::new();
    for (i, (name, h, want)) in cases.into_iter().enumerate() {
        let id = 10 + i as u64;
        let before = server.mcp_requests().len();
        let resp = delete(&bob_session, id).headers(&h).send(port).unwrap();
        bad.extend(refused(name, &resp, &server, before, want, id));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// A filter between jwt_authn and mcp-warden that lets a client's value into the payload
/// header (here: a header mutation copying `x-client-payload`, as a misconfigured chain could):
/// the agreement check with jwt_authn's metadata refuses any claim it changes.
#[test]
fn a_payload_header_that_disagrees_with_jwt_authn_is_refused() {
    let ctx = TestCtx::new("claims_payload_mismatch");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "demo");
    let mutation = "          - name: envoy.filters.http.header_mutation
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations:
                request_mutations:
                - append:
                    header: { key: x-warden-user-payload, value: \"%REQ(x-client-payload)%\" }
                    append_action: OVERWRITE_IF_EXISTS_OR_ADD
          - name: envoy.filters.http.wasm
";
    let envoy = Envoy::start(
        &ctx,
        "envoy",
        &EnvoyConfig::demo(server.port, idp.port)
            .replace("          - name: envoy.filters.http.wasm\n", mutation),
    );
    let port = envoy.listener_port;
    let bob = idp.tokens("bob", "agent-claude", "mcp:tools");
    let session = open_session(port, &bob.headers()).unwrap_or_else(|e| panic!("{e}"));
    let call = |id: u64, client_payload: &str| {
        let mut h = bob.headers();
        h.push(("x-client-payload".into(), client_payload.to_string()));
        tool_call(&session, id, "echo", json!({"text": "hi"})).headers(&h)
    };
    // Control: the genuine payload passes the same way.
    let genuine = bob.user.split('.').nth(1).unwrap().to_string();
    let before = server.mcp_requests().len();
    let resp = call(2, &genuine).send(port).unwrap();
    assert_eq!(
        resp.status, 200,
        "genuine payload through the mutation:\n{resp}"
    );
    let seen = server.mcp_requests();
    assert_eq!(seen.len(), before + 1);
    assert_eq!(seen[before]["x-mcp-user"], "bob", "{}", seen[before]);

    let payload = jwt_payload(&bob.user);
    let changed = |path: &str, v: Value| {
        let mut p = payload.clone();
        p[path] = v;
        payload_header(&p)
    };
    let mut without_groups = payload.clone();
    without_groups.as_object_mut().unwrap().remove("groups");
    let cases = vec![
        (
            "an added group",
            changed("groups", json!(["finance", "it-admins"])),
            "`groups`",
        ),
        ("another subject", changed("sub", json!("alice")), "`sub`"),
        (
            "another issuer",
            changed("iss", json!("https://evil.example")),
            "`iss`",
        ),
        (
            "a later expiry",
            changed("exp", json!(4_000_000_000u64)),
            "`exp`",
        ),
        (
            "a list where a string is",
            changed("sub", json!(["bob"])),
            "`sub`",
        ),
        (
            "a claim left out",
            payload_header(&without_groups),
            "`groups`",
        ),
        (
            "added roles",
            changed("roles", json!(["admin", "analyst"])),
            "`roles`",
        ),
    ];
    let mut bad = Vec::new();
    for (i, (name, header, claim)) in cases.into_iter().enumerate() {
        let before = server.mcp_requests().len();
        let resp = call(10 + i as u64, &header).send(port).unwrap();
        bad.extend(refused(
            name,
            &resp,
            &server,
            before,
            (401, "invalid_token", "user.payload_mismatch"),
            10 + i as u64,
        ));
        if !detail(&resp).contains(claim) {
            bad.push(format!(
                "{name}: detail does not name {claim}: {}",
                detail(&resp)
            ));
        }
    }
    for (i, (name, header)) in [("not base64url", "%%%"), ("not JSON", "bm9wZQ")]
        .into_iter()
        .enumerate()
    {
        let before = server.mcp_requests().len();
        let resp = call(30 + i as u64, header).send(port).unwrap();
        bad.extend(refused(
            name,
            &resp,
            &server,
            before,
            (401, "invalid_token", "user.payload_mismatch"),
            30 + i as u64,
        ));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The demo plugin configuration with the user issuer mapped: groups from
/// `/realm_access/groups` (required), email optional from `/mail`.
fn mapped_config() -> String {
    let mut cfg = demo_plugin_config();
    cfg["identity"]["user"]["issuers"] = json!([{
        "issuer": IDP_ISSUER, "name": "demo",
        "claims": {"groups": "/realm_access/groups", "email": {"from": "/mail", "required": false}}
    }]);
    cfg.to_string()
}

/// Mapped claims on a real Envoy: present → decided on the mapped value; missing or mistyped
/// → 401 `user.claims` naming the fact and the pointer; a provider that forwards no payload
/// header → 500 `user.payload_header` naming the header.
#[test]
fn mapped_claims_missing_or_mistyped_are_refused_naming_them() {
    let ctx = TestCtx::new("claims_mapping");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "demo");
    let envoy = Envoy::start(
        &ctx,
        "envoy",
        &EnvoyConfig::demo(server.port, idp.port).plugin_config(&mapped_config()),
    );
    let port = envoy.listener_port;
    // alice without the IdP's `groups` (it-admins there): only the realm's groups count.
    let tokens = |set: Value| -> Tokens {
        let user = idp.mint_token(json!({"kind": "user",
            "base": {"username": "alice", "scope": "mcp:tools files:delete"},
            "set": set, "unset": ["groups"]}));
        let agent = idp.agent_token("agent-claude", &user, "mcp:tools files:delete");
        Tokens { user, agent }
    };
    let admin = tokens(json!({"realm_access": {"groups": ["it-admins"]}}));
    let session = open_session(port, &admin.headers()).unwrap_or_else(|e| panic!("{e}"));
    let delete = |id: u64, t: &Tokens| {
        tool_call(&session, id, "delete_file", json!({"path": "/tmp/x"})).headers(&t.headers())
    };
    // This issuer's groups are the realm's.
    let before = server.mcp_requests().len();
    let resp = delete(2, &admin).send(port).unwrap();
    assert_eq!(resp.status, 200, "mapped groups grant delete_file:\n{resp}");
    assert_eq!(server.mcp_requests().len(), before + 1);
    // An optional claim that is null is absent (jwt_authn's metadata cannot even hold it for
    // proxy-wasm: compared by presence).
    let null_mail = tokens(json!({"realm_access": {"groups": ["it-admins"]}, "mail": null}));
    let resp = delete(3, &null_mail).send(port).unwrap();
    assert_eq!(resp.status, 200, "null optional claim:\n{resp}");
    // A string group is one group (typed), even one crafted like Envoy's list encoding.
    let crafted = String::from_utf8(vec![
        1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, b'i', b't', b'-', b'a', b'd', b'm', b'i', b'n', b's',
        0, 0,
    ])
    .unwrap();
    type Case<'a> = (&'a str, Tokens, (u16, &'a str, &'a str), &'a str);
    let cases: Vec<Case> = vec![
        (
            "groups missing",
            tokens(json!({"realm_access": {"roles": ["x"]}})),
            (401, "invalid_token", "user.claims"),
            "user token has no groups (/realm_access/groups)",
        ),
        (
            "groups a number",
            tokens(json!({"realm_access": {"groups": 7}})),
            (401, "invalid_token", "user.claims"),
            "user token groups (/realm_access/groups) is a number, not a string or a list of strings",
        ),
        (
            "groups holding an object",
            tokens(json!({"realm_access": {"groups": ["it-admins", {"x": 1}]}})),
            (401, "invalid_token", "user.claims"),
            "user token groups (/realm_access/groups) is a list holding an object, not a string or a list of strings",
        ),
        (
            "email an object",
            tokens(json!({"realm_access": {"groups": ["it-admins"]}, "mail": {"a": "b"}})),
            (401, "invalid_token", "user.claims"),
            "user token email (/mail) is an object, not a string",
        ),
        (
            "a string crafted as a list encoding is one group",
            tokens(json!({"realm_access": {"groups": crafted}})),
            (403, "policy_denied", "*"),
            "",
        ),
        (
            "groups null is missing",
            tokens(json!({"realm_access": {"groups": null}})),
            (401, "invalid_token", "user.claims"),
            "user token has no groups (/realm_access/groups)",
        ),
        (
            "groups holding a null",
            tokens(json!({"realm_access": {"groups": ["it-admins", null]}})),
            (401, "invalid_token", "user.claims"),
            "user token groups (/realm_access/groups) is a list holding null, not a string or a list of strings",
        ),
    ];
    let mut bad = Vec::new();
    for (i, (name, t, want, want_detail)) in cases.into_iter().enumerate() {
        let id = 10 + i as u64;
        let before = server.mcp_requests().len();
        let resp = delete(id, &t).send(port).unwrap();
        bad.extend(refused(name, &resp, &server, before, want, id));
        if !want_detail.is_empty() && detail(&resp) != want_detail {
            bad.push(format!(
                "{name}: detail {:?}, expected {want_detail:?}",
                detail(&resp)
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// A jwt_authn provider that does not forward the payload header: every verified call is a
/// configuration error (500) naming the header, never a silent fallback.
#[test]
fn a_provider_without_forward_payload_header_is_a_named_500() {
    let ctx = TestCtx::new("claims_no_forward");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "demo");
    let envoy = Envoy::start(
        &ctx,
        "envoy",
        &EnvoyConfig::demo(server.port, idp.port)
            .replace("forward_payload_header: x-warden-user-payload\n", "\n"),
    );
    let alice = idp.tokens("alice", "agent-claude", "mcp:tools");
    let before = server.mcp_requests().len();
    let resp = HttpRequest::mcp_post(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .headers(&alice.headers())
        .send(envoy.listener_port)
        .unwrap();
    let bad = refused(
        "no forward_payload_header",
        &resp,
        &server,
        before,
        (500, "internal_error", "user.payload_header"),
        1,
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(
        detail(&resp).contains("forward_payload_header: x-warden-user-payload"),
        "{}",
        detail(&resp)
    );
}

/// `Bearer`, `bearer`, `BEARER`: the user token is read and verified in each spelling of the
/// scheme (RFC 7235: case-insensitive; jwt_authn matches a prefix exactly, so the shipped
/// configs list the three; a mixed case such as `BeArEr` is not read: no token).
#[test]
fn the_bearer_prefix_works_in_its_three_spellings() {
    let ctx = TestCtx::new("claims_bearer_case");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "demo");
    let envoy = Envoy::start(&ctx, "envoy", &EnvoyConfig::demo(server.port, idp.port));
    let port = envoy.listener_port;
    let alice = idp.tokens("alice", "agent-claude", "mcp:tools");
    let mut bad = Vec::new();
    for (i, scheme) in ["Bearer", "bearer", "BEARER"].into_iter().enumerate() {
        let h = vec![
            (
                "Authorization".to_string(),
                format!("{scheme} {}", alice.user),
            ),
            ("x-agent-token".to_string(), alice.agent.clone()),
        ];
        let session = match open_session(port, &h) {
            Ok(s) => s,
            Err(e) => {
                bad.push(format!("{scheme}: initialize refused: {e}"));
                continue;
            }
        };
        let before = server.mcp_requests().len();
        let resp = tool_call(&session, 2 + i as u64, "echo", json!({"text": "hi"}))
            .headers(&h)
            .send(port)
            .unwrap();
        let seen = server.mcp_requests();
        if resp.status != 200 || seen.len() != before + 1 || seen[before]["x-mcp-user"] != "alice" {
            bad.push(format!("{scheme}: echo not forwarded as alice:\n{resp}"));
        }
    }
    // A spelling jwt_authn is not configured for: no token was read, said so.
    let before = server.mcp_requests().len();
    let resp = HttpRequest::mcp_post(r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#)
        .header("Authorization", &format!("BeArEr {}", alice.user))
        .header("x-agent-token", &alice.agent)
        .send(port)
        .unwrap();
    bad.extend(refused(
        "BeArEr",
        &resp,
        &server,
        before,
        (401, "missing_token", "user.missing"),
        9,
    ));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
