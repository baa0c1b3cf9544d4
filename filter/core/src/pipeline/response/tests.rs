//! The answer invariant: every message of every answer is classified and filtered for what it
//! is, whatever the stream, event type, status or batch shape.

use super::super::tests::{
    compile, demo_server_json, forwarded, hdrs, names, policy_config, post_headers, TOOLS,
};
use super::super::{BodyStep, HeaderEdit, Outcome, RequestFlow, ResponseMode, Step};
use crate::config::Config;
use crate::jsonrpc::{Message, Payload};
use crate::registry::{LiveDefinitions, MemoryDefinitions};
use serde_json::{json, Value};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn headers(status: &str, content_type: &str) -> Vec<(String, Vec<u8>)> {
    vec![
        (":status".into(), status.as_bytes().to_vec()),
        ("content-type".into(), content_type.as_bytes().to_vec()),
    ]
}

/// Sends `stream` through the flow in chunks of `step` bytes.
fn through_sse(flow: &mut RequestFlow, cfg: &Config, stream: &str, step: usize) -> String {
    let live = MemoryDefinitions::default();
    through_sse_live(flow, cfg, stream, step, &live)
}

fn through_sse_live(
    flow: &mut RequestFlow,
    cfg: &Config,
    stream: &str,
    step: usize,
    live: &dyn LiveDefinitions,
) -> String {
    assert_eq!(
        flow.on_response_headers(cfg, &headers("200", "text/event-stream"), &(None, None)),
        ResponseMode::StreamSse
    );
    let chunks: Vec<&[u8]> = stream.as_bytes().chunks(step.max(1)).collect();
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        out.extend(flow.on_response_chunk(cfg, c, i + 1 == chunks.len(), live));
    }
    String::from_utf8(out).unwrap()
}

fn tools_answer(id: Value) -> String {
    let mut v: Value = serde_json::from_str(TOOLS).unwrap();
    v["id"] = id;
    v.to_string()
}

fn list_all_config() -> Config {
    compile(&demo_server_json(
        json!([
            {"name": "echo", "status": "approved", "approved_for": ["*"]},
            {"name": "admin", "status": "approved", "approved_for": ["it"]}
        ]),
        json!([
            {"id": "discovery", "effect": "allow", "methods": ["tools/list", "prompts/list", "ping"]},
            {"id": "tools", "effect": "allow", "tools": ["*"]}
        ]),
    ))
}

#[test]
fn a_list_request_in_a_batch_gets_its_answer_filtered() {
    let cfg = list_all_config();
    let live = MemoryDefinitions::default();
    let batch = r#"[{"jsonrpc":"2.0","id":"p","method":"ping"},{"jsonrpc":"2.0","id":5,"method":"tools/list"}]"#;
    // As a JSON batch answer, in any order, and as SSE events.
    let (mut flow, step) = forwarded(&cfg, batch, &live);
    assert_eq!(step, Step::Continue);
    assert_eq!(
        flow.on_response_headers(&cfg, &headers("200", "application/json"), &(None, None)),
        ResponseMode::BufferJson
    );
    let answer = format!(
        r#"[{},{{"jsonrpc":"2.0","id":"p","result":{{}}}}]"#,
        tools_answer(json!(5))
    );
    let out = flow
        .on_response_json(&cfg, answer.as_bytes(), &live)
        .unwrap();
    let v: Vec<Value> = serde_json::from_slice(&out).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(names(v[0].to_string().as_bytes()), vec!["echo"]);
    assert_eq!(v[1]["id"], json!("p"));

    let stream = format!(
        "data: {{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"result\":{{}}}}\n\ndata: {}\n\n",
        tools_answer(json!(5))
    );
    for step in [1, 9, stream.len()] {
        let (mut flow, _) = forwarded(&cfg, batch, &live);
        let text = through_sse(&mut flow, &cfg, &stream, step);
        assert!(text.contains("\"echo\""), "{text}");
        assert!(!text.contains("admin"), "{text}");
        assert!(!text.contains("unknown"), "{text}");
    }
}

#[test]
fn decoys_before_the_real_list_do_not_pass_it_unfiltered() {
    let cfg = policy_config();
    let list = r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;
    let decoys = [
        // Another event type, then the real list.
        format!("event: decoy\ndata: {}\n\n", tools_answer(json!(5))),
        // Not quite JSON-RPC.
        "data: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"tools\":[]},\"x\":1}\n\n".to_string(),
        "data: {\"jsonrpc\":\"2.0\",\"id\":5}\n\n".to_string(),
        "data: not json\n\n".to_string(),
        // An answer to another id.
        format!("data: {}\n\n", tools_answer(json!(6))),
        // A batch holding the list.
        format!("data: [{}]\n\n", tools_answer(json!(5))),
    ];
    for decoy in decoys {
        let stream = format!(
            "{decoy}event: message\nid: 2\ndata: {}\n\n",
            tools_answer(json!(5))
        );
        for step in [1, 13, stream.len()] {
            let live = MemoryDefinitions::default();
            let (mut flow, _) = forwarded(&cfg, list, &live);
            let text = through_sse_live(&mut flow, &cfg, &stream, step, &live);
            assert!(!text.contains("admin"), "{decoy}: {text}");
            assert!(!text.contains("unknown"), "{decoy}: {text}");
            assert!(!text.contains("\"x\""), "{decoy}: {text}");
            assert!(!text.contains("not json"), "{decoy}: {text}");
            assert!(!text.contains("event: decoy"), "{decoy}: {text}");
            // Exactly one answer reaches the client, filtered.
            assert_eq!(text.matches("\"echo\"").count(), 1, "{decoy}: {text}");
        }
    }
}

#[test]
fn answers_to_no_request_of_the_stream_are_dropped() {
    let cfg = policy_config();
    let live = MemoryDefinitions::default();
    // On a tools/call's stream: an unsolicited list answer, a second answer, notifications.
    let call = r#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    let (mut flow, _) = forwarded(&cfg, call, &live);
    let stream = format!(
        concat!(
            "data: {}\n\n",
            "data: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":1,\"progress\":1}}}}\n\n",
            "data: {{\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"method\":\"sampling/createMessage\",\"params\":{{}}}}\n\n",
            "data: {{\"jsonrpc\":\"2.0\",\"id\":11,\"result\":{{\"content\":[]}}}}\n\n",
            "data: {{\"jsonrpc\":\"2.0\",\"id\":11,\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"second\"}}]}}}}\n\n"
        ),
        tools_answer(json!(5))
    );
    let text = through_sse(&mut flow, &cfg, &stream, 7);
    assert!(!text.contains("tools"), "{text}");
    assert!(text.contains("notifications/progress"), "{text}");
    assert!(text.contains("sampling/createMessage"), "{text}");
    assert!(text.contains("\"content\":[]"), "{text}");
    assert!(!text.contains("second"), "{text}");
    let notices = flow.take_notices();
    assert!(
        notices
            .iter()
            .any(|n| n.contains("no request of this stream")),
        "{notices:?}"
    );

    // The GET stream asks nothing: every answer on it is dropped; the rest passes.
    let mut get = RequestFlow::new();
    let h: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), b"GET".to_vec()),
        (":path".into(), b"/mcp".to_vec()),
        ("accept".into(), b"text/event-stream".to_vec()),
    ];
    let open = Config::default();
    assert_eq!(hdrs(&mut get, &open, &h, true), Step::Continue);
    let stream = format!(
        "id: 1\ndata: {}\n\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}}\n\n",
        tools_answer(json!(5))
    );
    let text = through_sse(&mut get, &open, &stream, 5);
    assert!(!text.contains("echo"), "{text}");
    assert!(
        text.starts_with("id: 1\n\n"),
        "the dropped event's id stays: {text}"
    );
    assert!(text.contains("list_changed"), "{text}");
}

#[test]
fn priming_events_comments_and_retry_hints_pass_as_they_are() {
    let cfg = policy_config();
    let live = MemoryDefinitions::default();
    let (mut flow, _) = forwarded(
        &cfg,
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#,
        &live,
    );
    let head = "id: abc-0\ndata:\n\n: keep-alive\n\nretry: 3000\n\nid: abc-1\ndata: \n\n";
    let stream = format!("{head}id: abc-2\ndata: {}\n\n", tools_answer(json!(5)));
    let text = through_sse(&mut flow, &cfg, &stream, 3);
    // Every event reaches the client in order, its id sealed (identity is on).
    let shape: Vec<String> = text
        .split("\n\n")
        .map(|e| {
            e.lines()
                .map(|l| match l.strip_prefix("id: ") {
                    Some(id) if id.starts_with("mwe1.") => "id: <sealed>".to_string(),
                    _ if l.starts_with("data: {") => "data: <list>".to_string(),
                    _ => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            "id: <sealed>\ndata:",
            ": keep-alive",
            "retry: 3000",
            "id: <sealed>\ndata:",
            "id: <sealed>\ndata: <list>",
            ""
        ],
        "{text}"
    );
    assert!(!text.contains("abc-"), "{text}");
}

#[test]
fn an_unfinished_event_at_the_end_is_never_sent() {
    let cfg = Config::default();
    let live = MemoryDefinitions::default();
    let (mut flow, _) = forwarded(&cfg, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, &live);
    let text = through_sse(
        &mut flow,
        &cfg,
        "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,",
        4,
    );
    assert_eq!(
        text,
        "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"
    );
}

#[test]
fn json_answers_that_answer_nothing_become_an_error_for_the_request() {
    let cfg = Config::default();
    let live = MemoryDefinitions::default();
    for body in [
        r#"{"jsonrpc":"2.0","id":2,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{},"extra":true}"#,
        r#"[{"jsonrpc":"2.0","id":2,"result":{}}]"#,
        r#"[]"#,
        r#""text""#,
    ] {
        let (mut flow, _) = forwarded(&cfg, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, &live);
        flow.on_response_headers(&cfg, &headers("200", "application/json"), &(None, None));
        let out = flow.on_response_json(&cfg, body.as_bytes(), &live).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], json!(1), "{body}");
        assert_eq!(
            v["error"]["data"]["reason"],
            json!("unreadable_upstream_answer"),
            "{body}"
        );
    }
    // The answer itself passes untouched.
    let (mut flow, _) = forwarded(&cfg, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, &live);
    flow.on_response_headers(&cfg, &headers("200", "application/json"), &(None, None));
    assert_eq!(
        flow.on_response_json(&cfg, br#"{"jsonrpc":"2.0","id":"1","result":{}}"#, &live),
        None
    );
}

#[test]
fn ambiguous_content_types_are_replaced_by_the_type_that_was_checked() {
    let cfg = Config::default();
    let live = MemoryDefinitions::default();
    let (mut flow, _) = forwarded(&cfg, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, &live);
    flow.on_response_headers(
        &cfg,
        &headers("200", "application/json; x=text/event-stream"),
        &(None, None),
    );
    assert!(flow
        .take_response_edits()
        .contains(&super::super::HeaderEdit::Set(
            "content-type".into(),
            "application/json".into()
        )));
}

#[test]
fn batches_whose_ids_clients_could_confuse_are_refused() {
    let cfg = list_all_config();
    let live = MemoryDefinitions::default();
    let (flow, step) = forwarded(
        &cfg,
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":"1","method":"ping"}]"#,
        &live,
    );
    let Step::Reply(reply) = step else {
        panic!("{step:?}")
    };
    assert_eq!(reply.status, 400);
    assert!(matches!(flow.outcome(), Outcome::Rejected(_)));
}

#[test]
fn a_forwarded_request_keeps_no_copy_of_its_params() {
    let cfg = Config::default();
    let live = MemoryDefinitions::default();
    let big = "x".repeat(100_000);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{big}"}},"_meta":{{"m":"{big}"}}}}}}"#
    );
    let mut flow = RequestFlow::new();
    assert_eq!(hdrs(&mut flow, &cfg, &post_headers(), false), Step::Pause);
    let BodyStep::ReadBody(n) = flow.on_request_body(&cfg, body.len(), true) else {
        panic!()
    };
    assert_eq!(
        flow.on_body(&cfg, &body.as_bytes()[..n], &live),
        Step::Continue
    );
    let Outcome::Forwarded(Some(Payload::Single(Message::Request {
        params, arguments, ..
    }))) = flow.outcome()
    else {
        panic!("{:?}", flow.outcome())
    };
    assert!(params.is_empty());
    assert!(arguments.is_none());
    assert!(format!("{flow:?}").len() < 10_000);
}

#[test]
fn a_body_without_content_type_is_not_forwarded() {
    let cfg = Config::default();
    let live = MemoryDefinitions::default();
    let (mut flow, _) = forwarded(&cfg, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, &live);
    let h: Vec<(String, Vec<u8>)> = vec![(":status".into(), b"202".to_vec())];
    assert_eq!(
        flow.on_response_headers(&cfg, &h, &(None, None)),
        ResponseMode::BufferJson
    );
    assert!(flow.take_response_edits().is_empty());
    assert_eq!(flow.on_response_json(&cfg, b"", &live), None);
    assert_eq!(
        flow.on_response_json(&cfg, br#"{"jsonrpc":"2.0","id":1,"result":{}}"#, &live),
        Some(Vec::new())
    );
}

/// The sealed `id:` values of a stream, in order.
fn event_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(str::to_string)
        .collect()
}

fn get_with_last_event_id(
    cfg: &Config,
    sub: &str,
    last: &str,
) -> (RequestFlow, Step, Vec<super::super::HeaderEdit>) {
    let mut flow = RequestFlow::new();
    let h: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), b"GET".to_vec()),
        (":path".into(), b"/mcp".to_vec()),
        ("accept".into(), b"text/event-stream".to_vec()),
        ("last-event-id".into(), last.as_bytes().to_vec()),
    ];
    let step = super::super::tests::hdrs_with(
        &mut flow,
        cfg,
        &h,
        true,
        &super::super::tests::claims_for(sub),
    );
    let edits = flow.take_header_edits();
    (flow, step, edits)
}

#[test]
fn a_resumed_stream_gets_what_its_sealed_event_id_says_it_owes() {
    let cfg = super::super::tests::routing_config();
    let live = MemoryDefinitions::default();
    // alice's tools/list stream: a priming event, then the connection breaks.
    let mut flow = RequestFlow::new();
    let h = post_headers();
    super::super::tests::hdrs_with(
        &mut flow,
        &cfg,
        &h,
        false,
        &super::super::tests::claims_for("alice"),
    );
    let body = r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;
    let BodyStep::ReadBody(n) = flow.on_request_body(&cfg, body.len(), true) else {
        panic!()
    };
    assert_eq!(
        flow.on_body(&cfg, &body.as_bytes()[..n], &live),
        Step::Continue
    );
    let text = through_sse(&mut flow, &cfg, "id: up-1\ndata:\n\n", 4);
    let ids = event_ids(&text);
    assert_eq!(ids.len(), 1, "{text}");
    assert!(
        ids[0].starts_with("mwe1."),
        "the upstream id is sealed: {text}"
    );
    assert!(!text.contains("up-1"), "{text}");

    // Resumed by alice: the upstream gets its own id, the list answer on the GET stream is
    // the answer owed, filtered.
    let (mut get, step, edits) = get_with_last_event_id(&cfg, "alice", &ids[0]);
    assert_eq!(step, Step::Continue, "{edits:?}");
    assert!(edits.contains(&super::super::HeaderEdit::Set(
        "last-event-id".into(),
        "up-1".into()
    )));
    let text = through_sse(
        &mut get,
        &cfg,
        &format!("id: up-2\ndata: {}\n\n", tools_answer(json!(5))),
        9,
    );
    assert!(text.contains("\"echo\""), "{text}");
    assert!(!text.contains("admin"), "{text}");
    assert!(!text.contains("unknown"), "{text}");
    // Once answered, the stream owes nothing more: resuming after it answers nothing.
    let after = event_ids(&text);
    let (mut again, _, _) = get_with_last_event_id(&cfg, "alice", &after[0]);
    let text = through_sse(
        &mut again,
        &cfg,
        &format!("data: {}\n\n", tools_answer(json!(5))),
        50,
    );
    assert!(!text.contains("echo"), "{text}");

    // Another caller, or an id the gateway never handed out, is refused.
    let (_, step, _) = get_with_last_event_id(&cfg, "bob", &ids[0]);
    let Step::Reply(r) = step else {
        panic!("{step:?}")
    };
    assert_eq!(r.status, 403);
    for forged in ["up-1", "mwe1.k1.AAAA", &ids[0].replace('.', "x")] {
        let (_, step, _) = get_with_last_event_id(&cfg, "alice", forged);
        let Step::Reply(r) = step else {
            panic!("{forged}: {step:?}")
        };
        assert_eq!(r.status, 400, "{forged}");
    }
}

#[test]
fn compressed_answers_are_never_forwarded_and_never_asked_for() {
    let cfg = Config::default();
    let live = MemoryDefinitions::default();
    let mut flow = RequestFlow::new();
    let mut h = post_headers();
    h.push(("accept-encoding".into(), b"gzip, br".to_vec()));
    assert_eq!(hdrs(&mut flow, &cfg, &h, false), Step::Pause);
    assert!(flow
        .take_header_edits()
        .contains(&super::super::HeaderEdit::Remove("accept-encoding".into())));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let BodyStep::ReadBody(n) = flow.on_request_body(&cfg, body.len(), true) else {
        panic!()
    };
    flow.on_body(&cfg, &body.as_bytes()[..n], &live);
    let mut h = headers("200", "application/json");
    h.push(("content-encoding".into(), b"gzip".to_vec()));
    assert_eq!(
        flow.on_response_headers(&cfg, &h, &(None, None)),
        ResponseMode::BufferJson
    );
    let edits = flow.take_response_edits();
    assert!(edits.contains(&super::super::HeaderEdit::Remove("content-encoding".into())));
    let out = flow
        .on_response_json(&cfg, b"\x1f\x8b\x08\x00garbage", &live)
        .unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["id"], json!(1));
}

#[test]
fn routing_headers_from_the_client_are_removed_even_without_routing() {
    let cfg = Config::default();
    let mut flow = RequestFlow::new();
    let mut h = post_headers();
    h.push(("x-mcp-upstream-host".into(), b"10.0.0.1:22".to_vec()));
    h.push(("X-MCP-Server".into(), b"other".to_vec()));
    assert_eq!(hdrs(&mut flow, &cfg, &h, false), Step::Pause);
    let edits = flow.take_header_edits();
    for name in ["x-mcp-upstream-host", "x-mcp-server"] {
        assert!(
            edits.contains(&super::super::HeaderEdit::Remove(name.into())),
            "{edits:?}"
        );
    }
}

/// Found by the `flow` fuzz target. Clients drop a BOM only at the start of their stream (the
/// TypeScript SDK's parser does). Upstream, an event whose text starts with a BOM mid-stream
/// has a first line named `\u{feff}data`, unknown to everyone; once the events before it are
/// dropped it becomes the first bytes the client gets, the client drops the BOM and reads a
/// `data` line the gateway never classified: here an unfiltered tool list.
#[test]
fn a_stray_bom_never_reaches_the_start_of_the_client_stream() {
    let cfg = policy_config();
    let list = r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;
    for before in [
        "data: junk\n\n",
        "\u{feff}: stream start\n\ndata: junk\n\n",
        "",
    ] {
        let stream = format!("{before}\u{feff}data: {}\n\n", tools_answer(json!(5)));
        for step in [1, 7, stream.len()] {
            let live = MemoryDefinitions::default();
            let (mut flow, _) = forwarded(&cfg, list, &live);
            let text = through_sse_live(&mut flow, &cfg, &stream, step, &live);
            // What a client reads (its splitter drops a stream-start BOM, as clients do).
            let mut client = crate::response::sse::SseSplitter::new(usize::MAX);
            let events = client.push(text.as_bytes()).unwrap();
            for data in events.iter().filter_map(|e| e.data()) {
                assert!(!data.contains("admin"), "{before:?}: {text:?}");
                assert!(!data.contains("unknown"), "{before:?}: {text:?}");
            }
        }
    }
}

#[test]
fn resources_listed_by_a_text_not_in_normal_form_are_hidden() {
    let cfg = compile(&demo_server_json(
        json!([]),
        json!([
            {"id": "list", "effect": "allow", "methods": ["resources/list"]},
            {"id": "read", "effect": "allow", "methods": ["resources/read"], "resources": ["file:///srv/shared/**"]}
        ]),
    ));
    let live = MemoryDefinitions::default();
    let (mut flow, step) = forwarded(
        &cfg,
        r#"{"jsonrpc":"2.0","id":3,"method":"resources/list"}"#,
        &live,
    );
    assert_eq!(step, Step::Continue);
    flow.on_response_headers(&cfg, &headers("200", "application/json"), &(None, None));
    let answer = json!({"jsonrpc": "2.0", "id": 3, "result": {"resources": [
        {"uri": "file:///srv/shared/a.txt", "name": "a"},
        {"uri": "file:///srv/shared/../../etc/passwd", "name": "p"},
        {"uri": "file:///srv/shared/%2e%2e/x", "name": "x"},
        {"uri": "file:///etc/hosts", "name": "h"}
    ]}})
    .to_string();
    let out = flow
        .on_response_json(&cfg, answer.as_bytes(), &live)
        .unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    let uris: Vec<&str> = v["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris, vec!["file:///srv/shared/a.txt"]);
}

/// alice's POST to `path` (headers only), on the routing configuration.
fn alice_posts_to(path: &str) -> Step {
    let cfg = super::super::tests::routing_config();
    let mut flow = RequestFlow::new();
    let mut h = post_headers();
    for (k, v) in h.iter_mut() {
        if k == ":path" {
            *v = path.as_bytes().to_vec();
        }
    }
    super::super::tests::hdrs_with(
        &mut flow,
        &cfg,
        &h,
        false,
        &super::super::tests::claims_for("alice"),
    )
}

#[test]
fn a_token_in_the_url_is_refused_before_anything_else() {
    for path in [
        "/mcp?access_token=eyJabc",
        "/mcp?x=1&access_token=eyJabc",
        "/mcp?ACCESS_TOKEN=eyJabc",
        "/mcp?access%5Ftoken=eyJabc",
        "/mcp?x=1;access_token=e",
        "/mcp?access_token",
    ] {
        let step = alice_posts_to(path);
        let Step::Reply(r) = step else {
            panic!("{path}: {step:?}")
        };
        assert_eq!(r.status, 400, "{path}");
        assert!(String::from_utf8_lossy(&r.body).contains("identity.token_in_url"));
    }
    for path in ["/mcp?x=access_token", "/mcp?my_access_token=1", "/mcp"] {
        assert_eq!(alice_posts_to(path), Step::Pause, "{path}");
    }
}

#[test]
fn token_cookies_are_taken_out_even_when_the_request_is_refused() {
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
    let cfg = super::super::tests::routing_config();
    for (path, refused) in [("/mcp", false), ("/mcp?access_token=x", true)] {
        let mut flow = RequestFlow::new();
        let mut h = post_headers();
        h.push((
            "cookie".into(),
            format!("theme=dark; at={jwt}").into_bytes(),
        ));
        h.push(("Cookie".into(), b"access_token=opaque".to_vec()));
        h[1].1 = path.as_bytes().to_vec();
        let step = super::super::tests::hdrs_with(
            &mut flow,
            &cfg,
            &h,
            false,
            &super::super::tests::claims_for("alice"),
        );
        assert_eq!(matches!(step, Step::Reply(_)), refused, "{path}: {step:?}");
        let edits = flow.take_header_edits();
        let at = edits
            .iter()
            .position(|e| *e == HeaderEdit::Remove("cookie".into()))
            .unwrap_or_else(|| panic!("{path}: cookies not removed: {edits:?}"));
        assert_eq!(
            edits.get(at + 1),
            Some(&HeaderEdit::Set("cookie".into(), "theme=dark".into())),
            "{path}"
        );
    }
    // Without a token cookie the cookie header is not touched.
    let mut flow = RequestFlow::new();
    let mut h = post_headers();
    h.push(("cookie".into(), b"theme=dark".to_vec()));
    super::super::tests::hdrs_with(
        &mut flow,
        &cfg,
        &h,
        false,
        &super::super::tests::claims_for("alice"),
    );
    assert!(!flow
        .take_header_edits()
        .iter()
        .any(|e| matches!(e, HeaderEdit::Remove(n) | HeaderEdit::Set(n, _) if n == "cookie")));
}
