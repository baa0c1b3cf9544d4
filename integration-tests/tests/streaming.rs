//! Streamable HTTP through Envoy + mcp-warden at the wire level: SSE responses are passed on
//! event by event as the server writes them (not buffered until the stream ends), and a
//! standalone GET stream opens at once and stays open. Every request carries a valid user +
//! agent token pair (the demo config requires both).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{
    sse_data, Envoy, EnvoyConfig, HttpRequest, HttpResponse, Idp, McpServer, TestCtx, Tokens,
};
use serde_json::{json, Value};
use std::io;
use std::time::{Duration, Instant};

const VERSION: &str = "2025-06-18";

/// The JSON-RPC message of a response that is either JSON or a one-event SSE stream.
fn message(resp: &HttpResponse) -> Value {
    if resp
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream"))
    {
        let body = resp.body_str().replace("\r\n", "\n");
        body.split("\n\n")
            .find_map(sse_data)
            .unwrap_or_else(|| panic!("no JSON data event in:\n{resp}"))
    } else {
        resp.json()
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{resp}"))
    }
}

fn session_post(tokens: &Tokens, session: &str, body: &Value) -> HttpRequest {
    HttpRequest::mcp_post(body.to_string())
        .tokens(tokens)
        .header("Mcp-Session-Id", session)
        .header("MCP-Protocol-Version", VERSION)
}

#[test]
fn sse_events_stream_through_without_buffering() {
    let ctx = TestCtx::new("streaming_sse");
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "demo");
    let envoy = Envoy::start(&ctx, "envoy", &EnvoyConfig::demo(server.port, idp.port));
    let port = envoy.listener_port;
    let tokens = idp.tokens("alice", "agent-claude", "mcp:tools");

    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name":"it-raw","version":"1"}}});
    let resp = HttpRequest::mcp_post(init.to_string())
        .tokens(&tokens)
        .send(port)
        .expect("initialize");
    assert_eq!(resp.status, 200, "initialize:\n{resp}");
    assert_eq!(
        message(&resp)["result"]["protocolVersion"],
        json!(VERSION),
        "{resp}"
    );
    let session = resp
        .header("mcp-session-id")
        .unwrap_or_else(|| panic!("no Mcp-Session-Id:\n{resp}"))
        .to_string();

    let initialized = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    let resp = session_post(&tokens, &session, &initialized)
        .send(port)
        .expect("initialized");
    assert_eq!(resp.status, 202, "notifications/initialized:\n{resp}");

    // slow_count sends a progress notification every 500 ms on the POST's SSE stream.
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
        "name":"slow_count","arguments":{"steps":3,"delay_ms":500},"_meta":{"progressToken":"p-1"}}});
    let sent = Instant::now();
    let mut stream = session_post(&tokens, &session, &call)
        .open(port)
        .expect("tools/call");
    assert_eq!(stream.status, 200);
    assert!(
        stream
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "tools/call answered {:?}, expected an SSE stream",
        stream.headers
    );
    let mut events: Vec<(Duration, Value)> = Vec::new();
    while let Some(ev) = stream.next_event().expect("reading the SSE stream") {
        if let Some(v) = sse_data(&ev) {
            events.push((sent.elapsed(), v));
        }
        assert!(
            sent.elapsed() < Duration::from_secs(15),
            "stream did not end in time: {events:?}"
        );
    }
    let progress: Vec<&(Duration, Value)> = events
        .iter()
        .filter(|(_, v)| v["method"] == json!("notifications/progress"))
        .collect();
    assert_eq!(
        progress.len(),
        3,
        "expected 3 progress notifications, got {events:?}"
    );
    let (done_at, result) = events.last().expect("events");
    assert_eq!(
        result["id"],
        json!(2),
        "last event is not the response: {events:?}"
    );
    assert_eq!(
        result["result"]["content"][0]["text"],
        json!("counted 3"),
        "{events:?}"
    );
    // Buffered, every event would arrive together at the end (~1.5 s); streamed, the first
    // arrives ~1 s before the response.
    let first_at = progress[0].0;
    let times: Vec<Duration> = events.iter().map(|(t, _)| *t).collect();
    eprintln!("SSE event arrival times after the POST: {times:?}");
    assert!(
        *done_at - first_at >= Duration::from_millis(700),
        "events arrived together (first progress at {first_at:?}, response at {done_at:?}): the SSE \
         response was buffered"
    );

    // A standalone GET stream: headers at once, and it stays open.
    let t = Instant::now();
    let mut get = HttpRequest::get("/mcp")
        .tokens(&tokens)
        .header("Accept", "text/event-stream")
        .header("Mcp-Session-Id", &session)
        .header("MCP-Protocol-Version", VERSION)
        .timeout(Duration::from_secs(5))
        .open(port)
        .expect("GET stream");
    assert_eq!(get.status, 200, "GET stream: {:?}", get.headers);
    assert!(get
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream")));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "GET stream headers took {:?}",
        t.elapsed()
    );
    get.set_read_timeout(Duration::from_millis(500)).unwrap();
    match get.read_some() {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        Ok(b) if !b.is_empty() => {}
        other => panic!("GET stream ended at once: {other:?}"),
    }
    drop(get);

    let resp = HttpRequest::new("DELETE", "/mcp")
        .tokens(&tokens)
        .header("Mcp-Session-Id", &session)
        .header("MCP-Protocol-Version", VERSION)
        .send(port)
        .expect("DELETE");
    assert_eq!(resp.status, 200, "DELETE session:\n{resp}");
}
