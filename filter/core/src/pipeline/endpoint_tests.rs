//! Only the configured endpoint is MCP; GET and DELETE are decided; sessions are sealed and
//! bound to their caller whenever identity is on (with or without routing).

use super::*;
use crate::identity::claims::JsonClaims;
use crate::registry::MemoryDefinitions;
use serde_json::{json, Value};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const ACCEPT_BOTH: &str = "application/json, text/event-stream";
const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#;

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn request(method: &str, path: &str, session: Option<&str>) -> Vec<(String, Vec<u8>)> {
    let mut h = vec![(":method", method), (":path", path)];
    match method {
        "POST" => h.extend([
            ("content-type", "application/json"),
            ("accept", ACCEPT_BOTH),
        ]),
        "GET" => h.push(("accept", "text/event-stream")),
        _ => {}
    }
    if let Some(s) = session {
        h.push(("mcp-session-id", s));
    }
    headers(&h)
}

fn claims(iss: &str, sub: &str) -> JsonClaims {
    JsonClaims(vec![(
        "user".into(),
        json!({"iss": iss, "sub": sub, "aud": "http://gw/mcp", "exp": 1_800_000_600u64, "groups": ["finance"]}),
    )])
}

fn start(cfg: &Config, h: &[(String, Vec<u8>)], who: &JsonClaims) -> (RequestFlow, Step) {
    let mut flow = RequestFlow::new();
    let mut cache = AttestationCache::default();
    let mut identities = IdentityCache::default();
    let ctx = RequestContext {
        claims: who,
        attestation_cache: &mut cache,
        identity_cache: &mut identities,
        now: 1_800_000_000,
    };
    let is_post = h.iter().any(|(k, v)| k == ":method" && v == b"POST");
    let step = flow.on_request_headers(cfg, &who.with_payloads(h), !is_post, ctx);
    (flow, step)
}

fn reply(step: &Step) -> (u32, String, Option<String>) {
    let Step::Reply(r) = step else {
        panic!("expected a reply, got {step:?}")
    };
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    (
        r.status,
        v["error"]["data"]["reason"].as_str().unwrap().to_string(),
        v["error"]["data"]["rule"].as_str().map(str::to_string),
    )
}

/// Identity (two issuers trusted), servers `corp` at /mcp and `hr` at /mcp/hr, and `rules`.
fn config(rules: Value) -> Config {
    let raw = json!({
        "identity": {
            "protected_resource": {"resource": "http://gw/mcp", "authorization_servers": ["http://idp"]},
            "user": {"issuers": ["http://idp", "http://other-idp"]},
            "upstream_headers": {}
        },
        "policy": {
            "servers": [{"name": "corp", "path": "/mcp"}, {"name": "hr", "path": "/mcp/hr"}],
            "rules": rules
        }
    });
    Config::from_json(raw.to_string().as_bytes()).unwrap()
}

fn allow_all() -> Config {
    config(json!([{"id": "all", "effect": "allow"}]))
}

#[test]
fn only_the_exact_endpoint_is_mcp() {
    let cfg = allow_all();
    let alice = claims("http://idp", "alice");
    for method in ["POST", "GET", "DELETE"] {
        for path in [
            "/mcp/",
            "/MCP",
            "/mcp/extra",
            "/mcp/sse",
            "/mcp/messages",
            "/mcp/messages?sessionId=abc",
            "/mcp;x",
            "/mcp%2Fx",
            "/mcp/..",
            "/actuator/env",
            "/mcp/hr/",
            "/mcp/hrx",
            "/",
            "",
        ] {
            let (flow, step) = start(&cfg, &request(method, path, Some("s")), &alice);
            assert_eq!(
                reply(&step),
                (
                    404,
                    "unknown_endpoint".into(),
                    Some("endpoint.unknown".into())
                ),
                "{method} {path:?}"
            );
            assert!(
                flow.decisions().is_empty(),
                "{method} {path:?}: no decision, nothing forwarded"
            );
        }
    }
    // The query string aside, the endpoint itself is MCP, for each server.
    for (path, server) in [("/mcp", "corp"), ("/mcp?x=1", "corp"), ("/mcp/hr", "hr")] {
        let (flow, step) = start(&cfg, &request("POST", path, None), &alice);
        assert_eq!(step, Step::Pause, "{path}");
        assert_eq!(flow.server(), server);
    }
}

#[test]
fn get_and_delete_are_decided_as_initialize() {
    let alice = claims("http://idp", "alice");
    // May initialize (and nothing else): the stream and the end of the session are allowed.
    let cfg = config(json!([{"id": "open", "effect": "allow", "methods": ["initialize"]}]));
    for method in ["GET", "DELETE"] {
        let (flow, step) = start(&cfg, &request(method, "/mcp", Some("x")), &alice);
        // The raw id is not one of ours: refused before any decision.
        assert_eq!(reply(&step).1, "session_not_found", "{method}");
        assert!(flow.decisions().is_empty());
    }
    let (flow, step) = start(&cfg, &request("GET", "/mcp", None), &alice);
    assert_eq!(step, Step::Continue);
    assert_eq!(flow.decisions().len(), 1);
    assert_eq!(flow.decisions()[0].rule, "open");
    // Everything but initialize: no stream, no DELETE.
    let cfg = config(json!([
        {"id": "calls", "effect": "allow", "methods": ["tools/*", "ping"]}
    ]));
    let (flow, step) = start(&cfg, &request("GET", "/mcp", None), &alice);
    assert_eq!(
        reply(&step),
        (403, "policy_denied".into(), Some("default.deny".into()))
    );
    assert_eq!(flow.decisions().len(), 1);
    assert!(!flow.decisions()[0].allowed());
    // A deny on initialize (a group, a server) covers its stream too.
    let cfg = config(json!([
        {"id": "all", "effect": "allow"},
        {"id": "no-hr-sessions", "effect": "deny", "servers": ["hr"], "methods": ["initialize"]}
    ]));
    let (_, step) = start(&cfg, &request("GET", "/mcp/hr", None), &alice);
    assert_eq!(
        reply(&step),
        (403, "policy_denied".into(), Some("no-hr-sessions".into()))
    );
    assert_eq!(
        start(&cfg, &request("GET", "/mcp", None), &alice).1,
        Step::Continue
    );
    // Without a token nothing is decided: 401.
    let (_, step) = start(&cfg, &request("GET", "/mcp", None), &JsonClaims(vec![]));
    assert_eq!(reply(&step).0, 401);
}

/// Runs an initialize for `who` on `path` and returns the sealed id the client gets for the
/// server's `real` id; the upstream address is never asked for without routing.
fn open_session(cfg: &Config, path: &str, who: &JsonClaims, real: &str) -> String {
    let mut flow = RequestFlow::new();
    let mut h = request("POST", path, None);
    h.push(("x-mcp-upstream-host".into(), b"10.0.0.1:1".to_vec()));
    let mut cache = AttestationCache::default();
    let mut identities = IdentityCache::default();
    let ctx = RequestContext {
        claims: who,
        attestation_cache: &mut cache,
        identity_cache: &mut identities,
        now: 1_800_000_000,
    };
    let h = who.with_payloads(&h);
    assert_eq!(flow.on_request_headers(cfg, &h, false, ctx), Step::Pause);
    // Without routing the filter sets no routing header, and removes a client's copy.
    let edits = flow.take_header_edits();
    assert!(edits.contains(&HeaderEdit::Remove("x-mcp-upstream-host".into())));
    assert!(
        !edits
            .iter()
            .any(|e| matches!(e, HeaderEdit::Set(n, _) if ROUTING_HEADERS.contains(&n.as_str()))),
        "{edits:?}"
    );
    let BodyStep::ReadBody(n) = flow.on_request_body(cfg, INIT.len(), true) else {
        panic!()
    };
    let live = MemoryDefinitions::default();
    assert_eq!(
        flow.on_body(cfg, &INIT.as_bytes()[..n], &live),
        Step::Continue
    );
    assert!(flow.inspects_response(cfg));
    let answer = headers(&[(":status", "200"), ("mcp-session-id", real)]);
    struct NoFacts;
    impl ResponseFacts for NoFacts {
        fn upstream_address(&self) -> Option<String> {
            panic!("the upstream address is read only with routing")
        }
        fn code_details(&self) -> Option<String> {
            panic!("code details are read only with routing")
        }
    }
    flow.on_response_headers(cfg, &answer, &NoFacts);
    match flow.take_response_edits().as_slice() {
        [HeaderEdit::Set(name, v)] if name == "mcp-session-id" => v.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn with_identity_sessions_are_sealed_and_bound_without_routing() {
    let cfg = allow_all();
    assert!(cfg.routing.is_none());
    assert!(cfg.sessions.as_ref().is_some_and(|s| s.is_generated()));
    let alice = claims("http://idp", "alice");
    let sealed = open_session(&cfg, "/mcp", &alice, "real-1");
    assert!(sealed.starts_with("mw1.auto."), "{sealed}");
    assert!(!sealed.contains("real-1"));
    // The owner's follow-ups (POST, GET, DELETE) carry the real id upstream.
    for method in ["POST", "GET", "DELETE"] {
        let (mut flow, step) = start(&cfg, &request(method, "/mcp", Some(&sealed)), &alice);
        assert!(
            matches!(step, Step::Pause | Step::Continue),
            "{method}: {step:?}"
        );
        let edits = flow.take_header_edits();
        assert!(
            edits.contains(&HeaderEdit::Set("mcp-session-id".into(), "real-1".into())),
            "{method}: {edits:?}"
        );
        assert!(!edits
            .iter()
            .any(|e| matches!(e, HeaderEdit::Set(n, _) if n == "x-mcp-upstream-host")));
    }
    // Anyone else, the same id on another server, a raw or altered id: refused, nothing set.
    let refusals = [
        (
            claims("http://idp", "bob"),
            "/mcp",
            sealed.clone(),
            403,
            "session_forbidden",
        ),
        // The same `sub` from another trusted issuer is another user.
        (
            claims("http://other-idp", "alice"),
            "/mcp",
            sealed.clone(),
            403,
            "session_forbidden",
        ),
        (
            claims("http://idp", "alice"),
            "/mcp/hr",
            sealed.clone(),
            403,
            "session_forbidden",
        ),
        (
            claims("http://idp", "alice"),
            "/mcp",
            "real-1".to_string(),
            404,
            "session_not_found",
        ),
        (
            claims("http://idp", "alice"),
            "/mcp",
            format!("{sealed}x"),
            404,
            "session_not_found",
        ),
    ];
    for (who, path, sid, status, reason) in refusals {
        for method in ["POST", "GET", "DELETE"] {
            let (mut flow, step) = start(&cfg, &request(method, path, Some(&sid)), &who);
            let (s, r, _) = reply(&step);
            assert_eq!((s, r.as_str()), (status, reason), "{method} {path} {sid}");
            assert!(!flow
                .take_header_edits()
                .iter()
                .any(|e| matches!(e, HeaderEdit::Set(n, _) if n == "mcp-session-id")));
        }
    }
}

#[test]
fn identity_needs_no_session_key_and_a_configured_one_is_used() {
    let mut raw = json!({
        "identity": {
            "protected_resource": {"resource": "http://gw/mcp", "authorization_servers": ["http://idp"]},
            "user": {"issuers": ["http://idp"]}
        },
        "policy": {"servers": [{"name": "corp", "path": "/mcp"}], "rules": [{"id": "all", "effect": "allow"}]},
        "sessions": {"keys": [{"id": "k7", "secret": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}]}
    });
    let cfg = Config::from_json(raw.to_string().as_bytes()).unwrap();
    let alice = claims("http://idp", "alice");
    let sealed = open_session(&cfg, "/mcp", &alice, "real-2");
    assert!(sealed.starts_with("mw1.k7."), "{sealed}");
    // Two workers (two compiled configs) with the same configured key open each other's ids.
    let again = Config::from_json(raw.to_string().as_bytes()).unwrap();
    let (_, step) = start(&again, &request("GET", "/mcp", Some(&sealed)), &alice);
    assert_eq!(step, Step::Continue);
    // Generated keys differ per compiled config until the adapter installs the shared one.
    raw.as_object_mut().unwrap().remove("sessions");
    let mut a = Config::from_json(raw.to_string().as_bytes()).unwrap();
    let mut b = Config::from_json(raw.to_string().as_bytes()).unwrap();
    let sealed = open_session(&a, "/mcp", &alice, "real-3");
    assert_eq!(
        reply(&start(&b, &request("GET", "/mcp", Some(&sealed)), &alice).1).1,
        "session_not_found"
    );
    for c in [&mut a, &mut b] {
        c.sessions.as_mut().unwrap().install_generated([5; 32]);
    }
    let sealed = open_session(&a, "/mcp", &alice, "real-3");
    assert_eq!(
        start(&b, &request("GET", "/mcp", Some(&sealed)), &alice).1,
        Step::Continue
    );
}

#[test]
fn without_identity_session_ids_pass_unchanged() {
    let raw = json!({"policy": {"servers": [{"name": "corp", "path": "/mcp"}], "rules": [{"id": "all", "effect": "allow"}]}});
    let cfg = Config::from_json(raw.to_string().as_bytes()).unwrap();
    assert!(cfg.sessions.is_none());
    let (mut flow, step) = start(
        &cfg,
        &request("GET", "/mcp", Some("raw-1")),
        &JsonClaims(vec![]),
    );
    assert_eq!(step, Step::Continue);
    assert!(flow.take_header_edits().is_empty());
}
