//! A whole request through [`RequestFlow`], as the adapter drives it: request headers, body,
//! response headers, response body (as JSON, or SSE chunks).

use super::{show, Parts};
use crate::config::Config;
use crate::identity::attestation::AttestationCache;
use crate::identity::claims::JsonClaims;
use crate::identity::IdentityCache;
use crate::jsonrpc::{parse_payload, Message, ParseRules};
use crate::pipeline::{BodyStep, HeaderEdit, RequestContext, RequestFlow, ResponseMode, Step};
use crate::registry::MemoryDefinitions;
use crate::response::answers::{classify, split, Kind, Media, Messages, Outstanding};
use crate::response::lists::ids_match;
use crate::response::sse::SseSplitter;
use serde_json::{json, Value};
use std::sync::OnceLock;

/// The tools the caller may list: approved for everyone and allowed by a rule.
const LISTED: &[&str] = &["echo", "add"];

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let cfg = json!({
            "identity": {
                "protected_resource": {"resource": "http://127.0.0.1/mcp",
                                       "authorization_servers": ["https://idp.fuzz.invalid"]},
                "user": {"issuers": ["https://idp.fuzz.invalid"], "audiences": ["mcp-warden"]}
            },
            "policy": {
                "servers": [{"name": "srv", "path": "/mcp", "tools": [
                    {"name": "echo", "status": "approved", "approved_for": ["*"]},
                    {"name": "add", "status": "approved", "approved_for": ["*"]},
                    {"name": "secret", "status": "approved", "approved_for": ["admins"]},
                    {"name": "delete_file", "status": "registered"}
                ]}],
                "rules": [
                    {"id": "allow.tools", "effect": "allow",
                     "tools": ["echo", "add", "secret", "delete_file"]},
                    {"id": "allow.rest", "effect": "allow",
                     "methods": ["initialize", "ping", "tools/list", "prompts/list",
                                 "resources/list", "resources/templates/list", "notifications/*"]}
                ]
            },
            "routing": {"session_keys": [
                {"id": "k1", "secret": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}
            ]},
            "response_filters": {"redact": [{"id": "api-key", "pattern": "sk-[A-Za-z0-9]{8,}"}]}
        });
        Config::from_json(cfg.to_string().as_bytes()).expect("flow config compiles")
    })
}

/// `name: value` lines over `base`: a line replaces the header of its name, or adds one.
fn headers(base: &[(&str, &str)], lines: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = base
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    for line in lines.lines() {
        let Some((name, value)) = line.split_once(": ") else {
            continue;
        };
        let value = value.as_bytes().to_vec();
        match out.iter_mut().find(|(k, _)| k == name) {
            Some(h) => h.1 = value,
            None => out.push((name.to_string(), value)),
        }
    }
    out
}

/// Checks one forwarded body or event data: every answer claims a request of the body, and
/// the tool list of an answer to `tools/list` shows only listed tools.
fn check_forwarded(text: &[u8], outstanding: &mut Outstanding, lists: &[Value], all: &[u8]) {
    let items: Vec<&[u8]> = match split(text) {
        Ok(Messages::Single(m)) => vec![m],
        Ok(Messages::Batch(items)) => items.iter().map(|i| i.get().as_bytes()).collect(),
        Err(_) => return,
    };
    for m in items {
        let Ok(Kind::Answer(id)) = classify(m) else {
            continue;
        };
        assert!(
            outstanding.claim(&id).is_some(),
            "answer {id} forwarded, which answers nothing outstanding: {}",
            show(all)
        );
        if !lists.iter().any(|l| ids_match(&id, l)) {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(m) else {
            continue;
        };
        for tool in v
            .pointer("/result/tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
            assert!(
                LISTED.contains(&name),
                "tool {tool} listed to a caller who may not see it: {}",
                show(all)
            );
        }
    }
}

/// Input 0: request header lines over a valid POST; 1: the body; 2: response header lines
/// over a 200 SSE answer; 3…: response body chunks.
pub fn flow(data: &[u8]) {
    let _ = drive(data);
}

/// [`flow`], returning how the answer was read (`None`: the request was refused).
pub(crate) fn drive(data: &[u8]) -> Option<ResponseMode> {
    let cfg = config();
    let parts = Parts::of(data);
    let request = headers(
        &[
            (":method", "POST"),
            (":path", "/mcp"),
            (":authority", "127.0.0.1:10000"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("authorization", "Bearer fuzz.fuzz.fuzz"),
        ],
        &parts.text(0),
    );
    let body = parts.bytes(1);
    let claims = JsonClaims(vec![(
        "user".into(),
        json!({"iss": "https://idp.fuzz.invalid", "aud": "mcp-warden", "sub": "fuzz-user",
               "exp": 1_900_000_000u64, "iat": 1_700_000_000u64, "groups": ["staff"]}),
    )]);
    let live = MemoryDefinitions::default();
    let mut flow = RequestFlow::new();
    let mut attestations = AttestationCache::default();
    let mut identities = IdentityCache::default();
    let ctx = RequestContext {
        claims: &claims,
        attestation_cache: &mut attestations,
        identity_cache: &mut identities,
        now: 1_800_000_000,
    };
    let request = claims.with_payloads(&request);
    match flow.on_request_headers(cfg, &request, body.is_empty(), ctx) {
        Step::Pause if !body.is_empty() => {
            let step = match flow.on_request_body(cfg, body.len(), true) {
                BodyStep::ReadBody(n) => flow.on_body(cfg, &body[..n.min(body.len())], &live),
                BodyStep::Step(s) => s,
            };
            if step != Step::Continue {
                return None;
            }
        }
        Step::Continue => {}
        _ => return None,
    }
    let _ = crate::audit::record(&flow);
    let response = headers(
        &[(":status", "200"), ("content-type", "text/event-stream")],
        &parts.text(2),
    );
    let facts = (Some("10.0.0.7:8000"), None);
    let mode = flow.on_response_headers(cfg, &response, &facts);
    // The content type the client sees: only JSON and SSE bodies are read as messages.
    let mut content_type = response
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
    for edit in flow.take_response_edits() {
        match edit {
            HeaderEdit::Set(k, v) if k.eq_ignore_ascii_case("content-type") => {
                content_type = Some(v)
            }
            HeaderEdit::Remove(k) if k.eq_ignore_ascii_case("content-type") => content_type = None,
            _ => {}
        }
    }
    let media = Media::of(content_type.as_deref());
    let chunks: Vec<&[u8]> = (3..parts.len()).map(|i| parts.bytes(i)).collect();
    let rules = ParseRules {
        max_depth: cfg.max_json_depth,
        max_batch: cfg.max_batch_messages,
        extra_methods: &[],
        strict_keys: true,
    };
    let payload = parse_payload(body, &rules, true).ok();
    let mut outstanding = payload.as_ref().map(Outstanding::of).unwrap_or_default();
    let lists: Vec<Value> = payload
        .iter()
        .flat_map(|p| p.messages())
        .filter_map(|m| match m {
            Message::Request { id, method, .. } if method == "tools/list" => Some(id.to_value()),
            _ => None,
        })
        .collect();
    match mode {
        ResponseMode::StreamSse if media == Media::EventStream => {
            let mut out = Vec::new();
            for (i, chunk) in chunks.iter().enumerate() {
                out.extend(flow.on_response_chunk(cfg, chunk, i + 1 == chunks.len(), &live));
            }
            let mut splitter = SseSplitter::new(usize::MAX);
            for event in splitter.push(&out).unwrap_or_default() {
                if let Some(d) = event.data().filter(|d| !d.is_empty()) {
                    check_forwarded(d.as_bytes(), &mut outstanding, &lists, data);
                }
            }
        }
        ResponseMode::BufferJson if media == Media::Json => {
            let body = chunks.concat();
            let out = flow.on_response_json(cfg, &body, &live).unwrap_or(body);
            check_forwarded(&out, &mut outstanding, &lists, data);
        }
        ResponseMode::Replace => {
            let _ = flow.replacement_body();
        }
        _ => {}
    }
    let _ = (flow.take_response_edits(), flow.take_notices());
    Some(mode)
}
