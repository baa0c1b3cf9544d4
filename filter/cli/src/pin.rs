//! `warden pin`: asks an MCP server for its tools (Streamable HTTP, plain `http://`) and prints
//! registry entries with each tool's definition hash, for an administrator to review and approve.
//!
//! The exchange: `initialize` (protocol 2025-06-18), the `Mcp-Session-Id` answer header kept,
//! `notifications/initialized`, `tools/list` following `nextCursor`, then `DELETE` of the
//! session. Answers may be JSON or an SSE stream (`data:` lines of events). Tool names and
//! descriptions come from the server and are untrusted: names are written as TOML strings,
//! descriptions only inside comments with control characters replaced.

use mcp_warden_core::response::tool_hash::tool_definition_hash;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

/// The protocol revision `pin` asks for.
pub const PROTOCOL_VERSION: &str = "2025-06-18";
/// Largest answer read, in bytes.
const MAX_BODY: u64 = 16 * 1024 * 1024;
/// Most `tools/list` pages followed.
const MAX_PAGES: usize = 1000;

/// What `pin` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct PinOptions {
    /// The MCP endpoint, e.g. `http://127.0.0.1:8101/mcp`.
    pub url: String,
    /// Registry name of the server (default: the server's `serverInfo.name`).
    pub server: Option<String>,
    /// Extra request headers (`Authorization`, …).
    pub headers: Vec<(String, String)>,
    /// Groups to approve the tools for; empty: print them as `registered` (not yet usable).
    pub approved_for: Vec<String>,
    /// Timeout of the whole exchange.
    pub timeout: Option<Duration>,
}

/// What the server said.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerTools {
    /// `serverInfo.name`.
    pub name: String,
    /// `serverInfo.version`.
    pub version: String,
    /// The tool objects, in the server's order.
    pub tools: Vec<Value>,
}

/// Parses a `--header "Name: value"` argument.
pub fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("header `{text}` is not `Name: value`"))?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("header name `{name}` is not valid"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

struct Session<'a> {
    agent: ureq::Agent,
    opts: &'a PinOptions,
    session_id: Option<String>,
    protocol: Option<String>,
    next_id: u64,
}

/// Reads one answer: the JSON-RPC response with `id` from a JSON body or an SSE stream.
pub fn read_answer(content_type: &str, body: impl Read, id: u64) -> Result<Value, String> {
    let is_sse = content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"));
    if !is_sse {
        let mut text = String::new();
        body.take(MAX_BODY)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| format!("the answer is not JSON ({e}): {}", excerpt(&text)))?;
        let messages = match v {
            Value::Array(items) => items,
            one => vec![one],
        };
        return messages
            .into_iter()
            .find(|m| is_response_to(m, id))
            .ok_or_else(|| format!("the answer holds no response to request {id}"));
    }
    let mut data: Vec<String> = Vec::new();
    let mut reader = BufReader::new(body.take(MAX_BODY));
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the event stream: {e}"))?;
        let text = line.trim_end_matches(['\r', '\n']);
        if n == 0 || text.is_empty() {
            // End of an event (or of the stream): its data lines form one message.
            if !data.is_empty() {
                let joined = data.join("\n");
                data.clear();
                if let Ok(m) = serde_json::from_str::<Value>(&joined) {
                    if is_response_to(&m, id) {
                        return Ok(m);
                    }
                }
            }
            if n == 0 {
                return Err(format!(
                    "the event stream ended without a response to request {id}"
                ));
            }
            continue;
        }
        if let Some(rest) = text.strip_prefix("data:") {
            data.push(rest.strip_prefix(' ').unwrap_or(rest).to_string());
        }
        // `event:`, `id:`, `retry:` and `:` comments carry nothing pin needs.
    }
}

fn is_response_to(m: &Value, id: u64) -> bool {
    m.get("id").and_then(Value::as_u64) == Some(id)
        && (m.get("result").is_some() || m.get("error").is_some())
}

fn excerpt(text: &str) -> String {
    let t: String = text.chars().take(300).collect();
    sanitize(&t)
}

/// Control characters (terminal escapes, newlines) replaced by `?` — for untrusted text.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl Session<'_> {
    fn request(
        &self,
        builder: ureq::RequestBuilder<ureq::typestate::WithBody>,
    ) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let mut b = builder
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream");
        if let Some(s) = &self.session_id {
            b = b.header("Mcp-Session-Id", s);
        }
        if let Some(p) = &self.protocol {
            b = b.header("MCP-Protocol-Version", p);
        }
        for (k, v) in &self.opts.headers {
            b = b.header(k, v);
        }
        b
    }

    /// Sends a request and returns its `result`.
    fn call(&mut self, method: &str, params: Value) -> Result<(Value, Option<String>), String> {
        self.next_id += 1;
        let id = self.next_id;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut resp = self
            .request(self.agent.post(&self.opts.url))
            .send(body.to_string())
            .map_err(|e| format!("{method}: {e}"))?;
        let status = resp.status().as_u16();
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let reader = resp.body_mut().with_config().limit(MAX_BODY).reader();
        if !(200..300).contains(&status) {
            let mut text = String::new();
            let _ = reader.take(4096).read_to_string(&mut text);
            return Err(format!("{method}: HTTP {status}: {}", excerpt(&text)));
        }
        let answer =
            read_answer(&content_type, reader, id).map_err(|e| format!("{method}: {e}"))?;
        if let Some(err) = answer.get("error") {
            return Err(format!(
                "{method}: JSON-RPC error {}: {}",
                err.get("code").and_then(Value::as_i64).unwrap_or_default(),
                sanitize(
                    err.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                )
            ));
        }
        Ok((
            answer.get("result").cloned().unwrap_or(Value::Null),
            session,
        ))
    }

    fn notify(&mut self, method: &str) -> Result<(), String> {
        let body = json!({"jsonrpc": "2.0", "method": method});
        let mut resp = self
            .request(self.agent.post(&self.opts.url))
            .send(body.to_string())
            .map_err(|e| format!("{method}: {e}"))?;
        let status = resp.status().as_u16();
        // Drain whatever came with it.
        let _ = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .reader()
            .read_to_end(&mut Vec::new());
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("{method}: HTTP {status}"))
        }
    }

    fn close(&mut self) {
        let Some(sid) = self.session_id.clone() else {
            return;
        };
        let mut b = self
            .agent
            .delete(&self.opts.url)
            .header("Mcp-Session-Id", &sid);
        if let Some(p) = &self.protocol {
            b = b.header("MCP-Protocol-Version", p);
        }
        for (k, v) in &self.opts.headers {
            b = b.header(k, v);
        }
        // A server may refuse DELETE (405): the session then simply expires.
        let _ = b.call();
    }
}

/// Talks to the server and returns its tools.
pub fn fetch_tools(opts: &PinOptions) -> Result<ServerTools, String> {
    if !opts.url.starts_with("http://") {
        return Err(format!(
            "`{}`: only plain http:// URLs are supported (pin through a local port-forward or the gateway's upstream address)",
            opts.url
        ));
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(opts.timeout.unwrap_or(Duration::from_secs(30))))
        .user_agent(concat!("mcp-warden-cli/", env!("CARGO_PKG_VERSION")))
        .build();
    let mut s = Session {
        agent: config.into(),
        opts,
        session_id: None,
        protocol: None,
        next_id: 0,
    };
    let result = exchange(&mut s);
    s.close();
    result
}

fn exchange(s: &mut Session<'_>) -> Result<ServerTools, String> {
    let (init, session) = s.call(
        "initialize",
        json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "warden-pin", "version": env!("CARGO_PKG_VERSION")}
        }),
    )?;
    s.session_id = session;
    s.protocol = Some(
        init.get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(PROTOCOL_VERSION)
            .to_string(),
    );
    let info = init.get("serverInfo");
    let text = |k: &str| {
        info.and_then(|i| i.get(k))
            .and_then(Value::as_str)
            .map(sanitize)
            .unwrap_or_default()
    };
    let (name, version) = (text("name"), text("version"));
    s.notify("notifications/initialized")?;
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    let mut cursors = BTreeSet::new();
    for _ in 0..MAX_PAGES {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let (page, _) = s.call("tools/list", params)?;
        let items = page
            .get("tools")
            .and_then(Value::as_array)
            .ok_or("tools/list: the result has no `tools` array")?;
        tools.extend(items.iter().cloned());
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(next) => {
                if !cursors.insert(next.to_string()) {
                    return Err(format!(
                        "tools/list: the server repeated cursor `{}`",
                        sanitize(next)
                    ));
                }
                cursor = Some(next.to_string());
            }
            None => {
                return Ok(ServerTools {
                    name,
                    version,
                    tools,
                })
            }
        }
    }
    Err(format!("tools/list: more than {MAX_PAGES} pages"))
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The request path of an `http://host:port/path` URL (`/` when it has none).
pub fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or("/").to_string()
}

/// The registry entries (TOML) for these tools.
pub fn render(found: &ServerTools, opts: &PinOptions) -> Result<String, String> {
    let server = opts.server.clone().unwrap_or_else(|| found.name.clone());
    if server.trim().is_empty() || server.contains(char::is_whitespace) {
        return Err(format!(
            "the server name `{server}` cannot be a registry name: give --server NAME"
        ));
    }
    let mut out = String::new();
    out.push_str(&format!(
        "# Pinned by `warden pin` from {} ({} {}): {} tools.\n",
        sanitize(&opts.url),
        if found.name.is_empty() {
            "unnamed server"
        } else {
            &found.name
        },
        found.version,
        found.tools.len()
    ));
    out.push_str("# Review every definition (descriptions below; the hash covers name, title, description,\n");
    out.push_str("# schemas and annotations), then approve: status = \"approved\", approved_for = [groups].\n");
    out.push_str("[[servers]]\n");
    out.push_str(&format!("name = {}\n", toml_string(&server)));
    out.push_str(&format!("path = {}\n", toml_string(&url_path(&opts.url))));
    let mut names = BTreeSet::new();
    for (i, tool) in found.tools.iter().enumerate() {
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("tool #{i} has no name"))?;
        if !names.insert(name) {
            return Err(format!(
                "the server lists tool `{}` twice: refusing to pin an ambiguous definition",
                sanitize(name)
            ));
        }
        out.push('\n');
        let title = tool.get("title").and_then(Value::as_str);
        if let Some(t) = title {
            out.push_str(&format!("# {}\n", sanitize(t)));
        }
        match tool.get("description").and_then(Value::as_str) {
            Some(d) if !d.trim().is_empty() => {
                for l in d.lines() {
                    out.push_str(&format!("# {}\n", sanitize(l)).replace("# \n", "#\n"));
                }
            }
            _ => out.push_str("# (no description)\n"),
        }
        out.push_str("[[servers.tools]]\n");
        out.push_str(&format!("name = {}\n", toml_string(name)));
        if opts.approved_for.is_empty() {
            out.push_str("status = \"registered\"\n");
        } else {
            out.push_str("status = \"approved\"\n");
            let groups: Vec<String> = opts.approved_for.iter().map(|g| toml_string(g)).collect();
            out.push_str(&format!("approved_for = [{}]\n", groups.join(", ")));
        }
        if !found.version.is_empty() {
            out.push_str(&format!("version = {}\n", toml_string(&found.version)));
        }
        out.push_str(&format!(
            "hash = {}\n",
            toml_string(&tool_definition_hash(tool))
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn headers_parse() {
        assert_eq!(
            parse_header("Authorization: Bearer a:b"),
            Ok(("Authorization".into(), "Bearer a:b".into()))
        );
        assert!(parse_header("nocolon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }

    #[test]
    fn answers_are_read_from_json_or_sse() {
        let json = br#"{"jsonrpc":"2.0","id":3,"result":{"ok":true}}"#;
        assert_eq!(
            read_answer("application/json", &json[..], 3).unwrap()["result"]["ok"],
            true
        );
        assert!(read_answer("application/json", &json[..], 4).is_err());
        let sse = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\r\n\r\n: keep-alive\n\nid: 7\ndata: {\"jsonrpc\":\"2.0\",\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\ndata: \"result\":{\"x\":1}}\n\n";
        let m = read_answer("text/event-stream; charset=utf-8", sse.as_bytes(), 2).unwrap();
        assert_eq!(m["result"]["x"], 1);
        assert!(read_answer("text/event-stream", sse.as_bytes(), 9)
            .unwrap_err()
            .contains("ended without"));
    }

    #[test]
    fn rendered_entries_parse_as_a_bundle_and_escape_untrusted_text() {
        let found = ServerTools {
            name: "demo".into(),
            version: "1.0.0".into(),
            tools: vec![
                json!({"name": "echo", "description": "Echo\nback \u{1b}[31m", "inputSchema": {"type": "object"}}),
                json!({"name": "we\"ird", "title": "Weird"}),
            ],
        };
        let opts = PinOptions {
            url: "http://127.0.0.1:8101/mcp?x=1".into(),
            server: Some("corp".into()),
            ..PinOptions::default()
        };
        let text = render(&found, &opts).unwrap();
        assert!(text.contains("# Echo\n# back ?[31m\n[[servers.tools]]\nname = \"echo\"\nstatus = \"registered\"\nversion = \"1.0.0\"\nhash = \"sha256:"), "{text}");
        assert!(!text.contains('\u{1b}'));
        let b = crate::bundle::parse("pinned.toml", &text).unwrap();
        assert_eq!(b.server_names(), vec!["corp"]);
        assert_eq!(b.json["servers"][0]["path"], "/mcp");
        assert_eq!(b.json["servers"][0]["tools"][1]["name"], "we\"ird");
        assert_eq!(
            b.json["servers"][0]["tools"][0]["hash"],
            tool_definition_hash(&found.tools[0])
        );
        let approved = PinOptions {
            approved_for: vec!["it-admins".into(), "*".into()],
            ..opts.clone()
        };
        let text = render(&found, &approved).unwrap();
        assert!(text.contains("status = \"approved\"\napproved_for = [\"it-admins\", \"*\"]"));
        assert!(crate::bundle::parse("pinned.toml", &text).is_ok());
        let twice = ServerTools {
            tools: vec![json!({"name": "a"}), json!({"name": "a"})],
            ..found.clone()
        };
        assert!(render(&twice, &opts).unwrap_err().contains("twice"));
    }

    /// A one-thread HTTP/1.1 server answering a scripted exchange; returns what it was sent.
    fn serve(
        answers: Vec<(u16, &'static str, String)>,
    ) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for (status, content_type, body) in answers {
                let (mut stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let mut body_in = vec![0; length];
                reader.read_exact(&mut body_in).unwrap();
                seen.push(format!("{head}\n{}", String::from_utf8_lossy(&body_in)));
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nMcp-Session-Id: s-1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(reply.as_bytes()).unwrap();
            }
            seen
        });
        (url, handle)
    }

    #[test]
    fn pin_speaks_streamable_http_with_pagination() {
        let init = r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"demo-a","version":"1.2.3"}}}"#;
        let page1 = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"echo\",\"description\":\"Echo\"}],\"nextCursor\":\"p2\"}}\n\n";
        let page2 = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"add"}]}}"#;
        let (url, handle) = serve(vec![
            (200, "application/json", init.into()),
            (202, "text/plain", String::new()),
            (200, "text/event-stream", page1.into()),
            (200, "application/json", page2.into()),
            (200, "text/plain", String::new()),
        ]);
        let opts = PinOptions {
            url,
            headers: vec![("Authorization".into(), "Bearer t".into())],
            ..PinOptions::default()
        };
        let found = fetch_tools(&opts).unwrap();
        assert_eq!(
            (found.name.as_str(), found.version.as_str()),
            ("demo-a", "1.2.3")
        );
        let names: Vec<&str> = found
            .tools
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(names, vec!["echo", "add"]);
        let seen = handle.join().unwrap();
        let lower: Vec<String> = seen.iter().map(|s| s.to_ascii_lowercase()).collect();
        assert!(lower[0].starts_with("post /mcp"));
        assert!(lower[0].contains("accept: application/json, text/event-stream"));
        assert!(lower[0].contains("authorization: bearer t"));
        assert!(seen[0].contains(r#""protocolVersion":"2025-06-18""#));
        assert!(!lower[0].contains("mcp-session-id"));
        assert!(seen[1].contains("notifications/initialized"));
        assert!(lower[1].contains("mcp-session-id: s-1"));
        assert!(lower[1].contains("mcp-protocol-version: 2025-06-18"));
        assert!(seen[3].contains(r#""cursor":"p2""#));
        assert!(lower[4].starts_with("delete /mcp"));
        assert!(lower[4].contains("mcp-session-id: s-1"));
        let text = render(&found, &opts).unwrap();
        assert!(
            text.contains("name = \"demo-a\"\npath = \"/mcp\""),
            "{text}"
        );
    }

    #[test]
    fn pin_reports_errors() {
        let (url, handle) = serve(vec![(
            401,
            "application/json",
            r#"{"error":"no token"}"#.into(),
        )]);
        let e = fetch_tools(&PinOptions {
            url,
            ..PinOptions::default()
        })
        .unwrap_err();
        assert!(e.starts_with("initialize: HTTP 401"), "{e}");
        handle.join().unwrap();
        let rpc_error = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"nope"}}"#;
        let (url, handle) = serve(vec![(200, "application/json", rpc_error.into())]);
        let e = fetch_tools(&PinOptions {
            url,
            ..PinOptions::default()
        })
        .unwrap_err();
        assert_eq!(e, "initialize: JSON-RPC error -32600: nope");
        handle.join().unwrap();
        assert!(fetch_tools(&PinOptions {
            url: "https://x/mcp".into(),
            ..PinOptions::default()
        })
        .is_err());
        assert_eq!(url_path("http://h:1"), "/");
        assert_eq!(url_path("http://h:1/a/b?c"), "/a/b");
    }
}
