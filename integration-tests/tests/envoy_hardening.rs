//! The shipped `envoy/demo.yaml` hardened as an Envoy operator would, tested through it:
//!
//! - [`client_envoy_headers_are_not_obeyed`]: `use_remote_address` and no internal address
//!   (loopback included): a client's `x-envoy-upstream-rq-timeout-ms: 1` does not cut its
//!   request, and `x-envoy-original-path`, `x-envoy-max-retries`, `x-envoy-retry-on`,
//!   `x-envoy-internal` never reach the server; a header with `_` (`x_mcp_user`, which CGI/WSGI
//!   servers read as `x-mcp-user`) is refused by Envoy.
//! - [`stalled_requests_are_cut_and_streams_stay_open`]: with the request idle timeout made
//!   2 s, a request whose server says nothing is cut (504) after about 2 s, while a tool call
//!   answered as an SSE stream with progress every 0.9 s runs for 4.5 s and completes, and a
//!   GET event stream stays open past the bound.
//! - [`http2_limits_and_connection_limit`]: SETTINGS advertise 100 concurrent streams; with the
//!   overload manager's connection limit made 3, a 4th connection is closed; the heap monitor
//!   reports.
//! - [`request_trailers_are_refused`]: an HTTP/2 request whose body ends with trailers
//!   (carrying an identity header and a token) is refused and never reaches the server.
//! - [`token_cookies_never_reach_the_server_nor_the_access_log`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{
    h2_probe, open_session, rpc_message, tail, tool_call, wait_for, Envoy, EnvoyConfig,
    HttpRequest, Idp, McpServer, RecordingUpstream, StubResponse, StubServer, TestCtx,
    ALL_MCP_SCOPES, RAW_PROTOCOL_VERSION,
};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

fn ping_answer() -> StubResponse {
    StubResponse::json(200, json!({"jsonrpc": "2.0", "id": 1, "result": {}}))
}

fn header_names(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect()
}

#[test]
fn client_envoy_headers_are_not_obeyed() {
    let ctx = TestCtx::new("hardening_envoy_headers");
    // The server takes 500 ms: a 1 ms upstream timeout, if obeyed, would cut every request.
    let upstream = StubServer::start(ping_answer().delayed(Duration::from_millis(500)));
    let envoy = Envoy::start(
        &ctx,
        "envoy",
        &EnvoyConfig::demo_without_identity(upstream.port),
    );
    let mut problems = Vec::new();
    let resp = HttpRequest::mcp_post(PING)
        .header("x-envoy-upstream-rq-timeout-ms", "1")
        .header("x-envoy-upstream-rq-per-try-timeout-ms", "1")
        .header("x-envoy-max-retries", "5")
        .header("x-envoy-retry-on", "5xx,reset,connect-failure")
        .header("x-envoy-original-path", "/innocent")
        .header("x-envoy-internal", "true")
        .send(envoy.listener_port)
        .unwrap();
    if resp.status != 200 {
        problems.push(format!(
            "a client's x-envoy-upstream-rq-timeout-ms was obeyed:\n{resp}"
        ));
    }
    let seen = upstream.requests();
    match seen.as_slice() {
        [r] => {
            let names = header_names(&r.headers);
            for h in [
                "x-envoy-upstream-rq-timeout-ms",
                "x-envoy-max-retries",
                "x-envoy-retry-on",
                "x-envoy-original-path",
                "x-envoy-internal",
            ] {
                if names.iter().any(|n| n == h) {
                    problems.push(format!("the server got the client's {h}"));
                }
            }
        }
        other => problems.push(format!(
            "the server got {} requests (expected 1)",
            other.len()
        )),
    }
    // x_mcp_user is x-mcp-user to a CGI/WSGI server: Envoy refuses it.
    let resp = HttpRequest::mcp_post(PING)
        .header("x_mcp_user", "admin")
        .send(envoy.listener_port)
        .unwrap();
    if resp.status != 400 {
        problems.push(format!("a header with `_` was not refused:\n{resp}"));
    }
    if upstream.requests().len() > 1 {
        problems.push("the request with x_mcp_user reached the server".into());
    }
    assert!(
        problems.is_empty(),
        "{}\n\nEnvoy log:\n{}",
        problems.join("\n"),
        tail(&envoy.proc.log(), 30)
    );
}

/// `envoy/demo.yaml` with its request idle timeout (60 s) made 2 s.
fn short_idle(upstream: u16) -> EnvoyConfig {
    EnvoyConfig::demo_without_identity(upstream).replace("idle_timeout: 60s", "idle_timeout: 2s")
}

#[test]
fn stalled_requests_are_cut_and_streams_stay_open() {
    let ctx = TestCtx::new("hardening_stream_timeouts");
    let mut problems = Vec::new();

    // A server that says nothing for 30 s: cut after the idle timeout.
    let stalled = StubServer::start(ping_answer().delayed(Duration::from_secs(30)));
    let envoy = Envoy::start(&ctx, "envoy-stalled", &short_idle(stalled.port));
    let started = Instant::now();
    let resp = HttpRequest::mcp_post(PING)
        .timeout(Duration::from_secs(20))
        .send(envoy.listener_port);
    let took = started.elapsed();
    match resp {
        Ok(r) if r.status == 504 && took < Duration::from_secs(8) => {}
        Ok(r) => problems.push(format!("a stalled request ended after {took:?} with:\n{r}")),
        Err(e) => problems.push(format!(
            "a stalled request was not cut within 20 s: {e} (after {took:?})"
        )),
    }
    drop(envoy);

    // The demo server: a tool call answered as an SSE stream, an event every 0.9 s for 4.5 s.
    let server = McpServer::start(&ctx, "demo");
    let envoy = Envoy::start(&ctx, "envoy-streams", &short_idle(server.port));
    let session = open_session(envoy.listener_port, &[]).unwrap();
    let mut call = tool_call(
        &session,
        2,
        "slow_count",
        json!({"steps": 5, "delay_ms": 900}),
    );
    call.body = mcp_warden_integration_tests::ReqBody::Fixed(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "slow_count", "arguments": {"steps": 5, "delay_ms": 900},
            "_meta": {"progressToken": "p"}}})
        .to_string()
        .into_bytes(),
    );
    let started = Instant::now();
    let resp = call
        .timeout(Duration::from_secs(20))
        .send(envoy.listener_port)
        .unwrap();
    let took = started.elapsed();
    let done = resp.status == 200
        && rpc_message(&resp).is_some_and(|m| m["id"] == 2 && m.get("result").is_some());
    if !done || took < Duration::from_secs(4) {
        problems.push(format!(
            "the streamed tool call did not run to its end ({took:?}):\n{resp}"
        ));
    }

    // The GET event stream: still open after twice the request idle timeout.
    let mut stream = TcpStream::connect(("127.0.0.1", envoy.listener_port)).unwrap();
    write!(
        stream,
        "GET /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\nmcp-session-id: {session}\r\nmcp-protocol-version: {RAW_PROTOCOL_VERSION}\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut head = [0u8; 4096];
    let n = stream.read(&mut head).unwrap_or(0);
    let head = String::from_utf8_lossy(&head[..n]).to_string();
    if !head.starts_with("HTTP/1.1 200") {
        problems.push(format!("GET stream not opened: {head}"));
    } else {
        let opened = Instant::now();
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 4096];
        while opened.elapsed() < Duration::from_secs(5) {
            match stream.read(&mut buf) {
                Ok(0) => {
                    problems.push(format!(
                        "the GET stream was closed after {:?}",
                        opened.elapsed()
                    ));
                    break;
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => {
                    problems.push(format!("the GET stream failed: {e}"));
                    break;
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\nEnvoy log:\n{}",
        problems.join("\n"),
        tail(&envoy.proc.log(), 30)
    );
}

#[test]
fn http2_limits_and_connection_limit() {
    let ctx = TestCtx::new("hardening_limits");
    let upstream = StubServer::start(ping_answer());
    let config = EnvoyConfig::demo_without_identity(upstream.port).replace(
        "max_active_downstream_connections: 10000",
        "max_active_downstream_connections: 3",
    );
    let envoy = Envoy::start(&ctx, "envoy", &config);
    let mut problems = Vec::new();

    let probe = h2_probe(envoy.listener_port, "/mcp", Some(PING), &mcp_headers(), &[]);
    if probe["settings"]["maxConcurrentStreams"] != 100 {
        problems.push(format!("HTTP/2 SETTINGS: {}", probe["settings"]));
    }
    if probe["status"] != 200 {
        problems.push(format!("HTTP/2 ping: {probe}"));
    }

    // Three connections held open; the fourth is closed by Envoy.
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", envoy.listener_port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut fourth = TcpStream::connect(("127.0.0.1", envoy.listener_port)).unwrap();
    let _ = fourth.write_all(format!("POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{PING}", PING.len()).as_bytes());
    fourth
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 256];
    match fourth.read(&mut buf) {
        Ok(0) | Err(_) => {}
        Ok(n) => problems.push(format!(
            "a 4th connection was served: {}",
            String::from_utf8_lossy(&buf[..n])
        )),
    }
    drop(held);
    let stats = envoy.admin_get("/stats?filter=overload");
    if !stats.contains("overload.envoy.resource_monitors.fixed_heap.pressure") {
        problems.push(format!("no heap monitor in the stats:\n{stats}"));
    }
    assert!(
        problems.is_empty(),
        "{}\n\nEnvoy log:\n{}",
        problems.join("\n"),
        tail(&envoy.proc.log(), 30)
    );
}

fn mcp_headers() -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        (
            "accept".into(),
            "application/json, text/event-stream".into(),
        ),
    ]
}

#[test]
fn request_trailers_are_refused() {
    let ctx = TestCtx::new("hardening_trailers");
    let upstream = RecordingUpstream::start();
    let envoy = Envoy::start(
        &ctx,
        "envoy",
        &EnvoyConfig::demo_without_identity(upstream.port),
    );
    // Control: the same request without trailers is forwarded.
    let plain = h2_probe(envoy.listener_port, "/mcp", Some(PING), &mcp_headers(), &[]);
    assert_eq!(plain["status"], 200, "{plain}");
    let before = upstream.count();
    let probe = h2_probe(
        envoy.listener_port,
        "/mcp",
        Some(PING),
        &mcp_headers(),
        &[("x-mcp-user", "admin"), ("authorization", "Bearer forged")],
    );
    let refused = probe["status"] == 400
        && probe["body"]
            .as_str()
            .is_some_and(|b| b.contains("transport.trailers"));
    assert!(
        refused,
        "a request with trailers was not refused: {probe}\n{}",
        tail(&envoy.proc.log(), 20)
    );
    assert_eq!(
        upstream.count(),
        before,
        "the request with trailers reached the server"
    );
}

#[test]
fn token_cookies_never_reach_the_server_nor_the_access_log() {
    let ctx = TestCtx::new("hardening_cookies");
    let idp = Idp::start(&ctx);
    let upstream = RecordingUpstream::start();
    let tokens = idp.tokens("alice", "agent-claude", ALL_MCP_SCOPES);
    // The access log records the cookies the request has when it ends.
    let config = EnvoyConfig::demo_without_policy(upstream.port, idp.port).replace(
        "\"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        "\"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog\n              log_format: { text_format_source: { inline_string: \"ACCESS cookie=%REQ(COOKIE)%\\n\" } }",
    );
    let envoy = Envoy::start(&ctx, "envoy", &config);
    let jwt = &tokens.user;
    let cookie = format!(
        "theme=dark; id_token=opaque-id; s={jwt}; sid={}",
        tokens.agent
    );
    let resp = HttpRequest::mcp_post(PING)
        .tokens(&tokens)
        .header("cookie", &cookie)
        .send(envoy.listener_port)
        .unwrap();
    let mut problems = Vec::new();
    if resp.status != 200 {
        problems.push(format!("ping with cookies:\n{resp}"));
    }
    let got: Vec<String> = upstream
        .requests()
        .iter()
        .flat_map(|r| r.headers.clone())
        .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
        .map(|(_, v)| v)
        .collect();
    if got != vec!["theme=dark".to_string()] {
        problems.push(format!("the server got cookies {got:?}"));
    }
    // A refused request (a token in the URL) does not log its token cookies either.
    let mut refused = HttpRequest::mcp_post(PING)
        .tokens(&tokens)
        .header("cookie", &cookie);
    refused.path = "/mcp?access_token=x".into();
    let _ = refused.send(envoy.listener_port);
    // Envoy writes access log lines in batches.
    let log = wait_for(Duration::from_secs(15), Duration::from_millis(200), || {
        let log = envoy.proc.log();
        (log.matches("ACCESS cookie=").count() >= 2).then_some(log)
    })
    .unwrap_or_else(|| envoy.proc.log());
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ACCESS cookie="))
        .collect();
    if access.len() != 2
        || access
            .iter()
            .any(|l| !l.ends_with("ACCESS cookie=theme=dark"))
    {
        problems.push(format!("access log lines: {access:?}"));
    }
    if log.contains(jwt.as_str())
        || log.contains(tokens.agent.as_str())
        || log.contains("opaque-id")
    {
        problems.push("Envoy's log holds a token from a cookie".into());
    }
    assert!(
        problems.is_empty(),
        "{}\n\nEnvoy log:\n{}",
        problems.join("\n"),
        tail(&log, 30)
    );
}
