//! The record is the same JSON text the earlier `serde_json::Value` builder produced.

use super::record;
use crate::config::Config;
use crate::identity::attestation::AttestationCache;
use crate::identity::claims::JsonClaims;
use crate::identity::IdentityCache;
use crate::pipeline::{BodyStep, Outcome, RequestContext, RequestFlow, Step};
use crate::registry::MemoryDefinitions;
use serde_json::{json, Map, Value};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: u64 = 1_800_000_000;
const RES: &str = "http://gw/mcp";

/// The record as it was built before: a `serde_json::Value`, printed with `{}`.
fn legacy(flow: &RequestFlow) -> String {
    let mut r = Map::new();
    if let Some(id) = flow.identity() {
        r.insert("user".into(), json!(id.user.token.sub));
        if !id.user.groups.is_empty() {
            r.insert("groups".into(), json!(id.user.groups));
        }
        if let Some(a) = &id.agent {
            r.insert("agent".into(), json!(a.token.sub));
            if let Some(t) = &a.agent_type {
                r.insert("agent_type".into(), json!(t));
            }
            if let Some(m) = &a.agent_model {
                r.insert("agent_model".into(), json!(m));
            }
            if let Some(i) = &a.agent_instance_id {
                r.insert("agent_instance".into(), json!(i));
            }
        }
        r.insert("delegation".into(), json!(id.delegation_summary()));
    }
    if !flow.server().is_empty() {
        r.insert("server".into(), json!(flow.server()));
    }
    match flow.outcome() {
        Outcome::Pending => {
            r.insert("outcome".into(), json!("pending"));
        }
        Outcome::Forwarded(payload) => {
            r.insert("outcome".into(), json!("allowed"));
            if let Some(p) = payload {
                let msgs: Vec<Value> = p
                    .messages()
                    .iter()
                    .map(|m| {
                        let mut o = Map::new();
                        if let Some(method) = m.method() {
                            o.insert("method".into(), json!(method));
                        } else {
                            o.insert("response".into(), json!(true));
                        }
                        if let Some(name) = m.target().name() {
                            o.insert("target".into(), json!(name));
                        }
                        if let Some(id) = m.id() {
                            o.insert("id".into(), id.to_value());
                        }
                        Value::Object(o)
                    })
                    .collect();
                r.insert("messages".into(), Value::Array(msgs));
            }
        }
        Outcome::Rejected(rej) => {
            let (status, code) = rej.reason.status_and_code();
            r.insert("outcome".into(), json!("refused"));
            r.insert("status".into(), json!(status));
            r.insert("code".into(), json!(code));
            r.insert("reason".into(), json!(rej.reason.as_str()));
            r.insert("detail".into(), json!(rej.detail));
            if let Some(rule) = &rej.rule {
                r.insert("rule".into(), json!(rule));
            }
            if let Some(id) = &rej.id {
                r.insert("id".into(), id.to_value());
            }
        }
    }
    let decisions: Vec<Value> = flow
        .decisions()
        .iter()
        .map(|d| json!({"effect": if d.allowed() { "allow" } else { "deny" }, "rule": d.rule}))
        .collect();
    if !decisions.is_empty() {
        r.insert("decisions".into(), Value::Array(decisions));
    }
    Value::Object(r).to_string()
}

fn config(agent: bool) -> Config {
    let mut cfg = json!({
        "identity": {
            "protected_resource": {"resource": RES, "authorization_servers": ["idp"]},
            "user": {"issuers": ["idp"]}
        },
        "policy": {
            "servers": [{"name": "demo", "path": "/mcp", "tools": [
                {"name": "echo", "status": "approved", "approved_for": ["*"]},
                {"name": "admin", "status": "approved", "approved_for": ["it"]}
            ]}],
            "rules": [
                {"id": "all-methods", "effect": "allow", "methods": ["*"]},
                {"id": "tools", "effect": "allow", "tools": ["*"]},
                {"id": "no-prompts", "effect": "deny", "methods": ["prompts/get"]}
            ]
        }
    });
    if agent {
        cfg["identity"]["agent"] = json!({"issuers": ["idp"]});
    }
    Config::from_json(cfg.to_string().as_bytes()).unwrap()
}

fn user(sub: &str, groups: Value) -> Value {
    json!({"iss":"idp","sub":sub,"aud":RES,"exp":NOW+600,"groups":groups})
}

fn agent(extra: Value) -> Value {
    let mut a = json!({"iss":"idp","sub":"agent:\"c\"","aud":[RES],"exp":NOW+600,
        "agent_type":"assistant","delegator_sub":"al\"ice\n\u{e9}"});
    if let (Some(a), Some(e)) = (a.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            a.insert(k.clone(), v.clone());
        }
    }
    a
}

fn headers(version: &str) -> Vec<(String, Vec<u8>)> {
    [
        (":method", "POST"),
        (":path", "/mcp"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", version),
        ("authorization", "Bearer t"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect()
}

/// A flow through headers and (when given) a body.
fn flow(cfg: &Config, claims: &JsonClaims, version: &str, body: Option<&str>) -> RequestFlow {
    let mut flow = RequestFlow::new();
    let ctx = RequestContext {
        claims,
        attestation_cache: &mut AttestationCache::default(),
        identity_cache: &mut IdentityCache::default(),
        now: NOW,
    };
    let h = claims.with_payloads(&headers(version));
    let step = flow.on_request_headers(cfg, &h, false, ctx);
    if let (Step::Pause, Some(body)) = (step, body) {
        let BodyStep::ReadBody(n) = flow.on_request_body(cfg, body.len(), true) else {
            panic!("body not read")
        };
        flow.on_body(cfg, &body.as_bytes()[..n], &MemoryDefinitions::default());
    }
    flow
}

fn same(flow: &RequestFlow) -> String {
    let (new, old) = (record(flow), legacy(flow));
    assert_eq!(new, old);
    new
}

#[test]
fn records_are_the_same_text_as_before() {
    let alice = JsonClaims(vec![(
        "user".into(),
        user("al\"ice\n\u{e9}", json!(["it", "ops"])),
    )]);
    let bob = JsonClaims(vec![("user".into(), user("bob", json!([])))]);
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}}"#;
    let cfg = config(false);
    // Allowed call with groups and a decision.
    let r = same(&flow(&cfg, &alice, "2025-06-18", Some(call)));
    assert!(r.contains(r#""outcome":"allowed""#), "{r}");
    assert!(
        r.contains(r#""decisions":[{"effect":"allow","rule":"all-methods"}]"#),
        "{r}"
    );
    // No groups; a string id; a notification.
    for body in [
        r#"{"jsonrpc":"2.0","id":"a\"b","method":"tools/call","params":{"name":"echo"}}"#,
        r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":7,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///x"}}"#,
    ] {
        same(&flow(&cfg, &bob, "2025-06-18", Some(body)));
    }
    // Batches: requests and notifications; responses to the server.
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","method":"notifications/progress","params":{}}]"#;
    let r = same(&flow(&cfg, &alice, "2025-03-26", Some(batch)));
    assert!(r.contains(r#"{"method":"notifications/progress"}"#), "{r}");
    let batch = r#"[{"jsonrpc":"2.0","id":"s1","result":{}},{"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"m"}}]"#;
    let r = same(&flow(&cfg, &alice, "2025-03-26", Some(batch)));
    assert!(r.contains(r#"{"id":"s1","response":true}"#), "{r}");
    // Refusals: by the registry (rule, id), by a deny rule, for a bad body, for no token.
    let denied = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"admin"}}"#;
    let r = same(&flow(&cfg, &bob, "2025-06-18", Some(denied)));
    assert!(
        r.contains(r#""outcome":"refused""#) && r.contains(r#""id":9"#),
        "{r}"
    );
    let prompt = r#"{"jsonrpc":"2.0","id":"p","method":"prompts/get","params":{"name":"x"}}"#;
    same(&flow(&cfg, &bob, "2025-06-18", Some(prompt)));
    same(&flow(&cfg, &bob, "2025-06-18", Some("{nope")));
    let r = same(&flow(&cfg, &JsonClaims(vec![]), "2025-06-18", None));
    assert!(r.contains(r#""reason":"missing_token""#), "{r}");
    // Pending (headers only); no identity, no policy.
    let r = same(&flow(&cfg, &alice, "2025-06-18", None));
    assert!(r.contains(r#""outcome":"pending""#), "{r}");
    same(&flow(&Config::default(), &bob, "2025-06-18", Some(call)));
}

#[test]
fn agent_records_are_the_same_text_as_before() {
    let cfg = config(true);
    let user = user("al\"ice\n\u{e9}", json!(["it"]));
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
    let one =
        json!([{"iss":"idp","sub":"al\"ice\n\u{e9}","aud":"agent:\"c\"","delegated_at":NOW-10}]);
    let two = json!([{"iss":"idp","sub":"al\"ice\n\u{e9}","aud":"agent:x","delegated_at":NOW-10},
        {"iss":"idp","sub":"agent:x","aud":"agent:\"c\"","delegated_at":NOW-5}]);
    for extra in [
        json!({"delegation_chain": one}),
        json!({"agent_model":"m-1","agent_instance_id":"i\u{1}1","delegation_chain": one}),
        json!({"agent_model":"m","delegation_chain": two}),
    ] {
        let claims = JsonClaims(vec![
            ("user".into(), user.clone()),
            ("agent".into(), agent(extra)),
        ]);
        let f = flow(&cfg, &claims, "2025-06-18", Some(call));
        assert!(
            f.identity().is_some_and(|i| i.agent.is_some()),
            "{}",
            record(&f)
        );
        same(&f);
    }
}

/// `config(false)` plus a token exchange for server `demo`.
fn exchange_config() -> Config {
    let mut cfg: Value = json!({
        "identity": {
            "protected_resource": {"resource": RES, "authorization_servers": ["idp"]},
            "user": {"issuers": ["idp"]}
        },
        "policy": {
            "servers": [{"name": "demo", "path": "/mcp", "tools": [
                {"name": "echo", "status": "approved", "approved_for": ["*"]}
            ]}],
            "rules": [{"id": "tools", "effect": "allow", "tools": ["*"]}]
        }
    });
    cfg["token_exchange"] = json!({
        "cluster": "sts", "authority": "idp",
        "client_auth": {"method": "client_secret_basic", "client_id": "gw", "client_secret": "s"},
        "servers": {"demo": {"audience": "http://up/mcp", "scopes": ["mcp:tools"]}}
    });
    Config::from_json(cfg.to_string().as_bytes()).unwrap()
}

/// A `tools/call echo` with this id through headers and body: the flow and its last step.
fn call_flow(cfg: &Config, claims: &JsonClaims, id: u64) -> (RequestFlow, Step) {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo"}}}}"#
    );
    let mut flow = RequestFlow::new();
    let ctx = RequestContext {
        claims,
        attestation_cache: &mut AttestationCache::default(),
        identity_cache: &mut IdentityCache::default(),
        now: NOW,
    };
    assert_eq!(
        flow.on_request_headers(
            cfg,
            &claims.with_payloads(&headers("2025-06-18")),
            false,
            ctx
        ),
        Step::Pause
    );
    let BodyStep::ReadBody(n) = flow.on_request_body(cfg, body.len(), true) else {
        panic!("body not read")
    };
    let step = flow.on_body(cfg, &body.as_bytes()[..n], &MemoryDefinitions::default());
    (flow, step)
}

/// N identical calls needing one exchange, as the adapter runs them: the first makes the
/// exchange, the others wait for it and collect how it ended. Each gets one record of its own.
fn burst_records(sts_answer: &[u8]) -> Vec<Value> {
    use crate::audit::Once;
    use crate::exchange::{Begin, ExchangeState};
    const N: u32 = 8;
    let cfg = exchange_config();
    let alice = JsonClaims(vec![("user".into(), user("alice", json!([])))]);
    let mut state = ExchangeState::default();
    let mut flows: Vec<(u32, RequestFlow, Once)> = Vec::new();
    let mut key = None;
    for ctx in 1..=N {
        let (flow, step) = call_flow(&cfg, &alice, u64::from(ctx) + 100);
        let Step::NeedToken(k) = step else {
            panic!("no exchange needed: {step:?}")
        };
        let begin = state.begin(&k, (ctx, flow.echo_id().map(|i| i.to_value())), NOW, 5);
        assert_eq!(
            begin,
            if ctx == 1 {
                Begin::Dispatch
            } else {
                Begin::Wait
            }
        );
        key = Some(k);
        flows.push((ctx, flow, Once::default()));
    }
    // Nobody is decided while the exchange is in flight.
    for (_, flow, once) in flows.iter_mut() {
        assert!(flow.awaits_token() && once.take(flow).is_none());
    }
    let (_, first, _) = &mut flows[0];
    let result = first.read_sts_answer(200, sts_answer);
    let waiters = state.finish(&key.unwrap(), &result, NOW);
    assert_eq!(waiters.len(), N as usize - 1);
    first.on_token(result.map(|i| i.access_token));
    let mut out = Vec::new();
    for (ctx, flow, once) in flows.iter_mut() {
        if *ctx != 1 {
            let how = state.collect(*ctx).expect("settled");
            flow.on_shared_token(how);
        }
        let record = once.take(flow).expect("a record once decided");
        assert!(once.take(flow).is_none(), "one record only");
        out.push(serde_json::from_str(&record).unwrap());
    }
    out
}

#[test]
fn a_burst_sharing_one_exchange_gives_one_record_per_request() {
    let good = br#"{"access_token":"new.tok","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":60}"#;
    let records = burst_records(good);
    assert_eq!(records.len(), 8);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["outcome"], "allowed", "{r}");
        assert_eq!(r["messages"][0]["id"], json!(101 + i as u64), "{r}");
    }
    // The answer is an ID token: every request is refused, each with its own id.
    let id_token = br#"{"access_token":"new.tok","issued_token_type":"urn:ietf:params:oauth:token-type:id_token","token_type":"N_A"}"#;
    let records = burst_records(id_token);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            (&r["outcome"], &r["status"], &r["rule"], &r["id"]),
            (
                &json!("refused"),
                &json!(502),
                &json!("exchange.answer.issued_token_type"),
                &json!(101 + i as u64)
            ),
            "{r}"
        );
    }
}

#[test]
fn names_with_line_breaks_or_hidden_characters_forge_no_line() {
    use crate::audit::{escape::is_unsafe_in_log, notice_line, refusal_line};
    let cfg = config(false);
    let bob = JsonClaims(vec![("user".into(), user("bob", json!([])))]);
    let forged = r#"mcp-warden audit {"outcome":"allowed","user":"mallory"}"#;
    for sep in [
        "\n",
        "\r\n",
        "\r",
        "\u{85}",
        "\u{2028}",
        "\u{2029}",
        "\u{202e}",
        "\u{1b}[2K",
        "\u{e0041}",
    ] {
        let name = format!("admin{sep}{forged}");
        for (method, params) in [
            ("tools/call", json!({ "name": name })),
            ("prompts/get", json!({ "name": name })),
            (
                "resources/read",
                json!({ "uri": format!("file:///x{sep}{forged}") }),
            ),
        ] {
            let body = json!({"jsonrpc": "2.0", "id": 5, "method": method, "params": params});
            let f = flow(&cfg, &bob, "2025-06-18", Some(&body.to_string()));
            let line = record(&f);
            assert!(!line.chars().any(is_unsafe_in_log), "{sep:?}: {line}");
            // The record is JSON that gives the name back as it was.
            let v: Value = serde_json::from_str(&line).unwrap();
            let named = v["messages"][0]["target"] == params["name"]
                || v["messages"][0]["target"] == params["uri"]
                || v["detail"].as_str().is_some_and(|d| d.contains(sep));
            assert!(named, "{sep:?}: {line}");
            if let Outcome::Rejected(r) = f.outcome() {
                let l = refusal_line(7, 403, r);
                assert!(!l.chars().any(is_unsafe_in_log), "{sep:?}: {l}");
                assert!(
                    l.starts_with("mcp-warden: request 7 refused: status=403"),
                    "{l}"
                );
            }
        }
    }
    let n = notice_line(3, "tool `x\nmcp-warden audit {}` changed");
    assert_eq!(
        n,
        "mcp-warden: request 3: tool `x\\nmcp-warden audit {}` changed"
    );
}
