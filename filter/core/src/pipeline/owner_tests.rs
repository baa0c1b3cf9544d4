//! Who a request belongs to: sealed session ids and event ids bind the user's and the agent's
//! issuer and subject, the agent's instance and an expiry; the upstream learns the user's
//! issuer beside its subject.

use super::*;
use crate::identity::claims::JsonClaims;
use crate::registry::MemoryDefinitions;
use serde_json::{json, Value};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: u64 = 1_800_000_000;
const RES: &str = "http://gw/mcp";
const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#;

/// Two user issuers, one agent issuer acting for both, sessions living `max_age` seconds,
/// everything allowed.
fn config(max_age: u64) -> Config {
    let cfg = json!({
        "identity": {
            "protected_resource": {"resource": RES, "authorization_servers": ["http://corp"]},
            "user": {"issuers": ["http://corp", "http://partner"]},
            "agent": {"issuers": [{"issuer": "http://corp",
                                   "delegators_from": ["http://corp", "http://partner"]}],
                      "delegation": null}
        },
        "sessions": {"keys": [{"id": "k1", "secret": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}],
                     "max_age_seconds": max_age},
        "policy": {"servers": [{"name": "corp", "path": "/mcp", "tools": []}],
                   "rules": [{"id": "all", "effect": "allow", "methods": ["*"]}]}
    });
    Config::from_json(cfg.to_string().as_bytes()).unwrap()
}

/// `sub` at `iss`, through agent `agent:claude` instance `instance`.
fn caller(iss: &str, sub: &str, instance: &str) -> JsonClaims {
    JsonClaims(vec![
        (
            "user".into(),
            json!({"iss": iss, "sub": sub, "aud": RES, "exp": NOW + 1_000_000}),
        ),
        (
            "agent".into(),
            json!({"iss": "http://corp", "sub": "agent:claude", "aud": RES, "exp": NOW + 1_000_000,
                   "agent_type": "assistant", "agent_instance_id": instance, "delegator_sub": sub}),
        ),
    ])
}

fn request(method: &str, session: Option<&str>, extra: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    let mut h = vec![(":method", method), (":path", "/mcp")];
    match method {
        "POST" => h.extend([
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ]),
        _ => h.push(("accept", "text/event-stream")),
    }
    if let Some(s) = session {
        h.push(("mcp-session-id", s));
    }
    h.extend_from_slice(extra);
    h.iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn start(cfg: &Config, h: &[(String, Vec<u8>)], who: &JsonClaims, now: u64) -> (RequestFlow, Step) {
    let mut flow = RequestFlow::new();
    let ctx = RequestContext {
        claims: who,
        attestation_cache: &mut AttestationCache::default(),
        identity_cache: &mut IdentityCache::default(),
        now,
    };
    let is_post = h.iter().any(|(k, v)| k == ":method" && v == b"POST");
    let step = flow.on_request_headers(cfg, &who.with_payloads(h), !is_post, ctx);
    (flow, step)
}

/// (status, reason, rule) of a refusal.
fn refusal(step: &Step) -> (u32, String, String) {
    let Step::Reply(r) = step else {
        panic!("expected a reply, got {step:?}")
    };
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (r.status, s("/error/data/reason"), s("/error/data/rule"))
}

/// Initializes a session for `who` at `now`; the sealed id the client gets.
fn open_session(cfg: &Config, who: &JsonClaims, now: u64) -> String {
    let (mut flow, step) = start(cfg, &request("POST", None, &[]), who, now);
    assert_eq!(step, Step::Pause);
    let BodyStep::ReadBody(n) = flow.on_request_body(cfg, INIT.len(), true) else {
        panic!("body not read")
    };
    let live = MemoryDefinitions::default();
    assert_eq!(
        flow.on_body(cfg, &INIT.as_bytes()[..n], &live),
        Step::Continue
    );
    let answer: Vec<(String, Vec<u8>)> = vec![
        (":status".into(), b"200".to_vec()),
        ("content-type".into(), b"application/json".to_vec()),
        ("mcp-session-id".into(), b"real-1".to_vec()),
    ];
    flow.on_response_headers(cfg, &answer, &(None, None));
    match flow.take_response_edits().as_slice() {
        [HeaderEdit::Set(name, v)] if name == "mcp-session-id" => v.clone(),
        other => panic!("{other:?}"),
    }
}

/// The outcome of `who` presenting `sealed` at `now`: the real id forwarded, or the refusal.
fn present(
    cfg: &Config,
    sealed: &str,
    who: &JsonClaims,
    now: u64,
) -> Result<(), (u32, String, String)> {
    for method in ["POST", "GET", "DELETE"] {
        let (mut flow, step) = start(cfg, &request(method, Some(sealed), &[]), who, now);
        if matches!(step, Step::Reply(_)) {
            return Err(refusal(&step));
        }
        let edits = flow.take_header_edits();
        assert!(
            edits.contains(&HeaderEdit::Set("mcp-session-id".into(), "real-1".into())),
            "{method}: {edits:?}"
        );
    }
    Ok(())
}

#[test]
fn a_session_belongs_to_one_issuer_subject_and_agent_instance() {
    let cfg = config(3600);
    let corp_alice = caller("http://corp", "alice", "i-1");
    let sealed = open_session(&cfg, &corp_alice, NOW);
    assert_eq!(present(&cfg, &sealed, &corp_alice, NOW + 10), Ok(()));
    let forbidden = Err((403, "session_forbidden".into(), "session.owner".into()));
    // The partner's `alice` is another user.
    let partner_alice = caller("http://partner", "alice", "i-1");
    assert_eq!(present(&cfg, &sealed, &partner_alice, NOW + 10), forbidden);
    // Another instance of the same agent, for the same user.
    let other_instance = caller("http://corp", "alice", "i-2");
    assert_eq!(present(&cfg, &sealed, &other_instance, NOW + 10), forbidden);
}

#[test]
fn a_session_expires_after_max_age_for_its_owner_too() {
    let cfg = config(60);
    let alice = caller("http://corp", "alice", "i-1");
    let sealed = open_session(&cfg, &alice, NOW);
    assert_eq!(present(&cfg, &sealed, &alice, NOW + 59), Ok(()));
    let expired = Err((404, "session_not_found".into(), "session.expired".into()));
    assert_eq!(present(&cfg, &sealed, &alice, NOW + 60), expired);
    // A follow-up that re-presents the id does not extend it: the answer carries the same id.
    let (mut flow, _) = start(&cfg, &request("GET", Some(&sealed), &[]), &alice, NOW + 30);
    let answer: Vec<(String, Vec<u8>)> = vec![
        (":status".into(), b"200".to_vec()),
        ("content-type".into(), b"text/event-stream".to_vec()),
        ("mcp-session-id".into(), b"real-1".to_vec()),
    ];
    flow.on_response_headers(&cfg, &answer, &(None, None));
    assert_eq!(
        flow.take_response_edits(),
        vec![HeaderEdit::Set("mcp-session-id".into(), sealed.clone())]
    );
    // The default is a day.
    let day = config(86_400);
    let sealed = open_session(&day, &alice, NOW);
    assert_eq!(present(&day, &sealed, &alice, NOW + 86_399), Ok(()));
    assert_eq!(present(&day, &sealed, &alice, NOW + 86_400), expired);
}

/// The sealed id of the first event of a GET stream of `who` opened at `now`.
fn event_id(cfg: &Config, who: &JsonClaims, now: u64) -> String {
    let (mut flow, step) = start(cfg, &request("GET", None, &[]), who, now);
    assert_eq!(step, Step::Continue);
    let answer: Vec<(String, Vec<u8>)> = vec![
        (":status".into(), b"200".to_vec()),
        ("content-type".into(), b"text/event-stream".to_vec()),
    ];
    assert_eq!(
        flow.on_response_headers(cfg, &answer, &(None, None)),
        ResponseMode::StreamSse
    );
    let out = flow.on_response_chunk(
        cfg,
        b"id: up-1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"x\"}}\n\n",
        false,
        &MemoryDefinitions::default(),
    );
    let text = String::from_utf8(out).unwrap();
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap_or_else(|| panic!("no id in {text}"));
    assert!(id.starts_with("mwe1."), "{id}");
    id.to_string()
}

fn resume(cfg: &Config, id: &str, who: &JsonClaims, now: u64) -> Result<(), (u32, String, String)> {
    let (mut flow, step) = start(
        cfg,
        &request("GET", None, &[("last-event-id", id)]),
        who,
        now,
    );
    if matches!(step, Step::Reply(_)) {
        return Err(refusal(&step));
    }
    assert!(flow
        .take_header_edits()
        .contains(&HeaderEdit::Set("last-event-id".into(), "up-1".into())));
    Ok(())
}

#[test]
fn event_ids_bind_the_same_owner_and_expire() {
    let cfg = config(60);
    let alice = caller("http://corp", "alice", "i-1");
    let id = event_id(&cfg, &alice, NOW);
    assert_eq!(resume(&cfg, &id, &alice, NOW + 59), Ok(()));
    let forbidden = Err((403, "session_forbidden".into(), "resume.owner".into()));
    for other in [
        caller("http://partner", "alice", "i-1"),
        caller("http://corp", "alice", "i-2"),
    ] {
        assert_eq!(resume(&cfg, &id, &other, NOW + 1), forbidden);
    }
    assert_eq!(
        resume(&cfg, &id, &alice, NOW + 60),
        Err((400, "invalid_header".into(), "resume.expired".into()))
    );
}

#[test]
fn the_upstream_learns_the_users_issuer_and_no_client_copy() {
    let cfg = config(60);
    let forged = [
        ("x-mcp-user-issuer", "http://corp"),
        ("X-MCP-User-Issuer", "http://corp"),
    ];
    let partner = caller("http://partner", "alice", "i-1");
    let (mut flow, _) = start(&cfg, &request("POST", None, &forged), &partner, NOW);
    let edits = flow.take_header_edits();
    let removed = edits
        .iter()
        .position(|e| *e == HeaderEdit::Remove("x-mcp-user-issuer".into()));
    let set = edits
        .iter()
        .position(|e| *e == HeaderEdit::Set("x-mcp-user-issuer".into(), "http://partner".into()));
    assert!(
        matches!((removed, set), (Some(r), Some(s)) if r < s),
        "{edits:?}"
    );
    assert!(edits.contains(&HeaderEdit::Set("x-mcp-user".into(), "alice".into())));
    // Renamed: the new name is removed and set; not set at all (null): a client's copy of the
    // default name is still removed.
    for name in [json!("x-idp"), Value::Null] {
        let mut raw = json!({
            "mode": "open",
            "identity": {
                "protected_resource": {"resource": RES, "authorization_servers": ["http://corp"]},
                "user": {"issuers": ["http://partner"]},
                "upstream_headers": {"user_issuer": name.clone()}
            }
        });
        raw["identity"]["upstream_headers"]["user_issuer"] = name.clone();
        let cfg = Config::from_json(raw.to_string().as_bytes()).unwrap();
        let user_only = JsonClaims(vec![(
            "user".into(),
            json!({"iss": "http://partner", "sub": "alice", "aud": RES, "exp": NOW + 60}),
        )]);
        let h = request(
            "POST",
            None,
            &[
                ("x-idp", "http://corp"),
                ("x-mcp-user-issuer", "http://corp"),
            ],
        );
        let (mut flow, _) = start(&cfg, &h, &user_only, NOW);
        let edits = flow.take_header_edits();
        if name.is_null() {
            assert!(
                !edits
                    .iter()
                    .any(|e| matches!(e, HeaderEdit::Set(_, v) if v == "http://partner")),
                "{edits:?}"
            );
            assert!(edits.contains(&HeaderEdit::Remove("x-mcp-user-issuer".into())));
            assert!(!edits.contains(&HeaderEdit::Remove("x-idp".into())));
        } else {
            assert!(
                edits.contains(&HeaderEdit::Remove("x-idp".into())),
                "{edits:?}"
            );
            assert!(edits.contains(&HeaderEdit::Set("x-idp".into(), "http://partner".into())));
        }
    }
}
