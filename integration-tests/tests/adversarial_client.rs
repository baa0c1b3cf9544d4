//! A hostile client against a real Envoy with mcp-warden (the demo policy), over HTTP/1.1 and
//! HTTP/2: batches hiding a refused call, forged identity and routing headers, bodies that end
//! early, bodies split into many chunks or frames. Each case asserts what the client got and
//! what reached the server (a scripted server that logs every request it receives).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::evil::{case, EvilServer, EvilStack};
use mcp_warden_integration_tests::{HttpRequest, Tokens, RAW_PROTOCOL_VERSION};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

/// Whether any request that reached the server calls `tool`.
fn reached_tool(evil: &EvilServer, tool: &str) -> bool {
    evil.requests().iter().any(|r| {
        let body: Value =
            serde_json::from_str(r["body"].as_str().unwrap_or("")).unwrap_or(Value::Null);
        let msgs = match body {
            Value::Array(a) => a,
            v => vec![v],
        };
        msgs.iter().any(|m| m["params"]["name"] == json!(tool))
    })
}

/// `curl --http2-prior-knowledge` POST to the listener; (status, body).
fn h2_post(port: u16, tokens: &Tokens, session: &str, body: &str, extra: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "--http2-prior-knowledge",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        "POST",
    ])
    .args(["-H", "content-type: application/json"])
    .args(["-H", "accept: application/json, text/event-stream"])
    .args(["-H", &format!("mcp-session-id: {session}")])
    .args(["--max-time", "10"]);
    for (k, v) in tokens.headers() {
        cmd.args(["-H", &format!("{k}: {v}")]);
    }
    for e in extra {
        cmd.arg(e);
    }
    cmd.args(["--data-binary", body])
        .arg(format!("http://127.0.0.1:{port}/mcp"));
    let out = cmd.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn a_hostile_client_gets_nothing_past_the_decision() {
    let s = EvilStack::start("adversarial_client", |_| {});
    let port = s.port();
    let mut failed = Vec::new();

    // 1. A refused call hidden as the second element of a batch (batches are legal without
    //    MCP-Protocol-Version): the whole batch is refused, nothing reaches the server.
    case(&mut failed, "batch hides a refused call", || {
        let batch = json!([
            {"jsonrpc": "2.0", "id": 1, "method": "ping"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "delete_file", "arguments": {"path": "/etc"}}}
        ]);
        let resp = HttpRequest::mcp_post(batch.to_string())
            .header("Mcp-Session-Id", &s.session)
            .tokens(&s.bob)
            .send(port)
            .unwrap();
        assert_eq!(resp.status, 403, "{resp}");
        assert_eq!(
            resp.json().unwrap()["error"]["data"]["reason"],
            json!("policy_denied")
        );
        assert!(!reached_tool(&s.evil, "delete_file"));
    });

    // 2. Identity and routing headers forged by the client never reach the server.
    case(&mut failed, "forged identity headers", || {
        let before = s.evil.requests().len();
        let resp =
            HttpRequest::mcp_post(json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}).to_string())
                .header("Mcp-Session-Id", &s.session)
                .header("MCP-Protocol-Version", RAW_PROTOCOL_VERSION)
                .header("x-mcp-user", "admin")
                .header("X-MCP-Agent", "root-agent")
                .header("x-mcp-delegation", "admin>root-agent")
                .header("x-mcp-upstream-host", "10.0.0.1:22")
                .tokens(&s.bob)
                .send(port)
                .unwrap();
        assert_eq!(resp.status, 200, "{resp}");
        let reqs = s.evil.requests();
        assert_eq!(reqs.len(), before + 1);
        let h = &reqs[before]["headers"];
        assert_eq!(h["x-mcp-user"], json!("bob"), "{h}");
        assert!(!h.to_string().contains("admin"), "{h}");
        assert!(!h.to_string().contains("root-agent"), "{h}");
        assert!(!h.to_string().contains("10.0.0.1"), "{h}");
        assert_eq!(
            h["authorization"],
            Value::Null,
            "the user's token never goes upstream"
        );
    });

    // 3. Over HTTP/2 the same decisions hold: a refused call, and a batch hiding one.
    case(&mut failed, "http2", || {
        let call = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "delete_file", "arguments": {}}});
        let (status, body) = h2_post(
            port,
            &s.bob,
            &s.session,
            &call.to_string(),
            &[
                "-H",
                &format!("mcp-protocol-version: {RAW_PROTOCOL_VERSION}"),
            ],
        );
        assert_eq!(status, 403, "{body}");
        let batch = json!([{"jsonrpc": "2.0", "id": 5, "method": "ping"}, call]);
        let (status, body) = h2_post(port, &s.bob, &s.session, &batch.to_string(), &[]);
        assert_eq!(status, 403, "{body}");
        let (status, body) = h2_post(
            port,
            &s.bob,
            &s.session,
            &json!({"jsonrpc": "2.0", "id": 6, "method": "ping"}).to_string(),
            &[
                "-H",
                &format!("mcp-protocol-version: {RAW_PROTOCOL_VERSION}"),
            ],
        );
        assert_eq!(status, 200, "{body}");
        assert!(!reached_tool(&s.evil, "delete_file"));
    });

    // 4. A body that ends early (Content-Length larger than what is sent, then the connection
    //    closes): nothing reaches the server.
    case(&mut failed, "early end of body", || {
        let before = s.evil.requests().len();
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}).to_string();
        let mut head = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-session-id: {}\r\ncontent-length: {}\r\n",
            s.session,
            body.len() + 40
        );
        for (k, v) in s.bob.headers() {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.write_all(head.as_bytes()).unwrap();
        conn.write_all(body.as_bytes()).unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            s.evil.requests().len(),
            before,
            "{}",
            String::from_utf8_lossy(&answer)
        );
    });

    // 5. A refused call in a body split into one-byte chunks (HTTP/1.1 chunked): decided whole.
    case(&mut failed, "chunked body", || {
        let call = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "delete_file", "arguments": {}}}).to_string();
        let pieces: Vec<Vec<u8>> = call.bytes().map(|b| vec![b]).collect();
        let resp = HttpRequest::mcp_post(Vec::new())
            .chunked(pieces)
            .header("Mcp-Session-Id", &s.session)
            .header("MCP-Protocol-Version", RAW_PROTOCOL_VERSION)
            .tokens(&s.bob)
            .send(port)
            .unwrap();
        assert_eq!(resp.status, 403, "{resp}");
        assert!(!reached_tool(&s.evil, "delete_file"));
    });

    // 6. A token in the URL (RFC 6750's query method) would reach the server and every access
    //    log: refused before the server.
    case(&mut failed, "token in the URL", || {
        let before = s.evil.requests().len();
        let user_token = s.bob.user.clone();
        let resp = HttpRequest::new("POST", &format!("/mcp?access_token={user_token}"))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .header("Mcp-Session-Id", &s.session)
            .header("MCP-Protocol-Version", RAW_PROTOCOL_VERSION)
            .tokens(&s.bob)
            .body(json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}).to_string())
            .send(port)
            .unwrap();
        assert_eq!(resp.status, 400, "{resp}");
        assert_eq!(
            resp.json().unwrap()["error"]["data"]["rule"],
            json!("identity.token_in_url")
        );
        assert_eq!(
            s.evil.requests().len(),
            before,
            "nothing reached the server"
        );
    });

    assert!(
        failed.is_empty(),
        "cases that let the attack through: {failed:?}"
    );
}
