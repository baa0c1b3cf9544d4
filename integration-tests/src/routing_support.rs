//! Helpers for the session-routing tests (`tests/routing.rs`): the nine MCP server instances of
//! `envoy/routing.yaml`, Envoy on chosen ports (so a restarted Envoy takes over the same
//! listener), minted callers, and a raw-HTTP MCP session client that reports which instance
//! answered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{
    free_port, repo_root, rpc_message, tail, wait_for, Envoy, EnvoyConfig, HttpRequest,
    HttpResponse, Idp, McpServer, Proc, TestCtx, Tokens, IDP_TEMPLATE_PORT,
};
use serde_json::{json, Value};
use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The Envoy template of the routing tests.
pub const ROUTING_TEMPLATE: &str = "envoy/routing.yaml";

/// The instances of `envoy/routing.yaml`: (name, port literal in the template, stateless).
/// corp runs the stateful SDK demo server (sessions, `whoami` with a per-session counter), hr
/// the stateless 2026-07-28 server.
pub const INSTANCES: [(&str, u16, bool); 9] = [
    ("corp-stable-1", 8111, false),
    ("corp-stable-2", 8112, false),
    ("corp-stable-3", 8113, false),
    ("corp-canary-1", 8121, false),
    ("corp-canary-2", 8122, false),
    ("corp-canary-3", 8123, false),
    ("hr-1", 8131, true),
    ("hr-2", 8132, true),
    ("hr-3", 8133, true),
];

/// One MCP server instance.
pub struct Instance {
    pub name: String,
    /// Its port literal in the template.
    pub template_port: u16,
    pub port: u16,
    pub proc: Proc,
}

impl Instance {
    /// `127.0.0.1:<port>`, as Envoy names the endpoint.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every request to `/mcp` the instance has logged (JSON lines with `ev: "req"`).
    pub fn mcp_requests(&self) -> Vec<Value> {
        self.proc
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["ev"] == "req" && v["path"] == "/mcp")
            .collect()
    }

    /// The session ids the instance created (`session-open` events of the demo server).
    pub fn opened_sessions(&self) -> Vec<String> {
        self.proc
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["ev"] == "session-open")
            .filter_map(|v| v["session"].as_str().map(str::to_string))
            .collect()
    }
}

/// The IdP and the nine instances.
pub struct RoutingStack {
    pub ctx: TestCtx,
    pub idp: Idp,
    pub instances: Vec<Instance>,
}

fn start_stateless(ctx: &TestCtx, name: &str, template_port: u16) -> Instance {
    let script = repo_root().join("integration-tests/stack/servers/stateless-server.mjs");
    assert!(script.exists(), "missing {}", script.display());
    let port = free_port();
    let mut cmd = Command::new("node");
    cmd.current_dir(repo_root())
        .arg(&script)
        .args(["--port", &port.to_string(), "--name", name]);
    let mut proc = Proc::spawn(ctx, &format!("server-{name}"), cmd);
    let ok = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        if let Some(st) = proc.try_wait() {
            panic!("{name} exited early ({st}):\n{}", tail(&proc.log(), 30));
        }
        match HttpRequest::get("/healthz")
            .timeout(Duration::from_secs(2))
            .send(port)
        {
            Ok(r) if r.status == 200 => Some(()),
            _ => None,
        }
    });
    assert!(ok.is_some(), "{name} not healthy on port {port} after 20 s");
    Instance {
        name: name.to_string(),
        template_port,
        port,
        proc,
    }
}

impl RoutingStack {
    /// Starts the IdP and the nine instances (in parallel).
    pub fn start(ctx: &TestCtx) -> RoutingStack {
        let (idp, instances) = thread::scope(|s| {
            let idp = s.spawn(|| Idp::start(ctx));
            let handles: Vec<_> = INSTANCES
                .iter()
                .map(|&(name, template_port, stateless)| {
                    s.spawn(move || {
                        if stateless {
                            start_stateless(ctx, name, template_port)
                        } else {
                            let McpServer { port, name, proc } = McpServer::start(ctx, name);
                            Instance {
                                name,
                                template_port,
                                port,
                                proc,
                            }
                        }
                    })
                })
                .collect();
            let instances: Vec<Instance> = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| panic!("an instance failed to start"))
                })
                .collect();
            (
                idp.join()
                    .unwrap_or_else(|_| panic!("the IdP failed to start")),
                instances,
            )
        });
        RoutingStack {
            ctx: ctx.clone(),
            idp,
            instances,
        }
    }

    /// `envoy/routing.yaml` with every instance port and the IdP port substituted.
    pub fn envoy_config(&self) -> EnvoyConfig {
        let mut upstreams: Vec<(u16, u16)> = self
            .instances
            .iter()
            .map(|i| (i.template_port, i.port))
            .collect();
        upstreams.push((IDP_TEMPLATE_PORT, self.idp.port));
        EnvoyConfig {
            template: repo_root().join(ROUTING_TEMPLATE),
            upstreams,
            plugin_config: None,
            with_filter: true,
            replacements: Vec::new(),
            removed_filters: Vec::new(),
            cluster_ports: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn instance(&self, name: &str) -> &Instance {
        self.instances
            .iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("no instance {name}"))
    }

    pub fn instance_mut(&mut self, name: &str) -> &mut Instance {
        self.instances
            .iter_mut()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("no instance {name}"))
    }

    /// A user token (`sub`, `groups`, scope `mcp:tools`) and an `agent-claude` token acting for
    /// that user, minted by the IdP's test mode.
    pub fn caller(&self, sub: &str, groups: &[&str]) -> Tokens {
        caller_at(self.idp.port, sub, groups)
    }

    /// [`RoutingStack::caller`] for many users, minted on `threads` threads.
    pub fn callers(&self, users: &[(String, Vec<String>)], threads: usize) -> Vec<Tokens> {
        callers_at(self.idp.port, users, threads)
    }
}

fn mint_at(idp_port: u16, spec: &Value) -> String {
    let resp = HttpRequest::new("POST", "/test/mint")
        .header("Content-Type", "application/json")
        .body(spec.to_string())
        .send(idp_port)
        .unwrap_or_else(|e| panic!("IdP /test/mint {spec}: {e}"));
    assert_eq!(resp.status, 200, "IdP /test/mint {spec}:\n{resp}");
    let v: Value = resp
        .json()
        .unwrap_or_else(|e| panic!("IdP /test/mint: {e}"));
    v["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in mint answer {v}"))
        .to_string()
}

/// [`RoutingStack::caller`] from the IdP on `idp_port` (usable from a thread of its own).
pub fn caller_at(idp_port: u16, sub: &str, groups: &[&str]) -> Tokens {
    let user = mint_at(
        idp_port,
        &json!({"kind": "user", "base": {"username": sub, "scope": "mcp:tools"}, "set": {"groups": groups}}),
    );
    let agent = mint_at(
        idp_port,
        &json!({"kind": "agent", "base": {"username": sub, "agent": "agent-claude", "scope": "mcp:tools"}}),
    );
    Tokens { user, agent }
}

/// [`caller_at`] for many users, on `threads` threads.
pub fn callers_at(idp_port: u16, users: &[(String, Vec<String>)], threads: usize) -> Vec<Tokens> {
    par_map(users, threads, |(sub, groups)| {
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        caller_at(idp_port, sub, &groups)
    })
}

/// Maps `f` over `items` on `threads` threads (order kept).
pub fn par_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| {
                let f = &f;
                s.spawn(move || c.iter().map(f).collect::<Vec<R>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| panic!("worker thread panicked"))
            })
            .collect()
    })
}

static BASE_ID: AtomicU32 = AtomicU32::new(50);

/// Starts Envoy with `config` on the given listener and admin ports (a restarted Envoy takes
/// over the same listener) and waits until admin `/ready` says `LIVE`.
pub fn start_envoy_at(
    ctx: &TestCtx,
    name: &str,
    config: &EnvoyConfig,
    listener_port: u16,
    admin_port: u16,
) -> Envoy {
    let yaml = config.render(listener_port, admin_port);
    let config_path = ctx.path(&format!("{name}.yaml"));
    fs::write(&config_path, yaml)
        .unwrap_or_else(|e| panic!("write {}: {e}", config_path.display()));
    let base_id =
        std::process::id() % 100_000 * 100 + BASE_ID.fetch_add(1, Ordering::Relaxed) % 100;
    let mut cmd = Command::new(crate::envoy_bin());
    cmd.current_dir(repo_root())
        .arg("-c")
        .arg(&config_path)
        .args([
            "--concurrency",
            "1",
            "--log-level",
            "info",
            "--disable-hot-restart",
        ])
        .args(["--base-id", &base_id.to_string()]);
    config.apply_env(&mut cmd);
    let mut proc = Proc::spawn(ctx, name, cmd);
    let ready = wait_for(Duration::from_secs(30), Duration::from_millis(50), || {
        if let Some(st) = proc.try_wait() {
            panic!("Envoy {name} exited ({st}):\n{}", tail(&proc.log(), 60));
        }
        match HttpRequest::get("/ready")
            .timeout(Duration::from_secs(2))
            .send(admin_port)
        {
            Ok(r) if r.status == 200 && r.body_str().trim() == "LIVE" => Some(()),
            _ => None,
        }
    });
    if ready.is_none() {
        panic!(
            "Envoy {name} not ready after 30 s:\n{}",
            tail(&proc.log(), 60)
        );
    }
    Envoy {
        listener_port,
        admin_port,
        config_path,
        proc,
    }
}

/// Waits (bounded) until Envoy's health checks see `address` in `cluster` as `healthy` (or
/// not, with `healthy = false`).
pub fn wait_health(
    envoy: &Envoy,
    cluster: &str,
    address: &str,
    healthy: bool,
    timeout: Duration,
) -> bool {
    let key = format!("{cluster}::{address}::health_flags::");
    wait_for(timeout, Duration::from_millis(100), || {
        let clusters = envoy.admin_get("/clusters");
        let flags = clusters
            .lines()
            .find_map(|l| l.strip_prefix(&key))?
            .to_string();
        ((flags == "healthy") == healthy).then_some(())
    })
    .is_some()
}

// ---------------------------------------------------------------------------------------------
// raw MCP client

/// The protocol version of the session tests.
pub const SESSION_PROTOCOL: &str = "2025-06-18";
/// The stateless revision.
pub const STATELESS_PROTOCOL: &str = "2026-07-28";

/// A POST of a JSON-RPC body to `path` with the caller's tokens.
pub fn post(path: &str, tokens: &Tokens, body: &Value) -> HttpRequest {
    let mut r = HttpRequest::mcp_post(body.to_string()).tokens(tokens);
    r.path = path.to_string();
    r
}

/// A POST on a session.
pub fn session_post(path: &str, tokens: &Tokens, session: &str, body: &Value) -> HttpRequest {
    post(path, tokens, body)
        .header("Mcp-Session-Id", session)
        .header("MCP-Protocol-Version", SESSION_PROTOCOL)
}

/// The answer to `initialize`: the session id the client got (if any) and the instance name
/// (`serverInfo.name`).
#[derive(Debug, Clone)]
pub struct Initialized {
    pub session: Option<String>,
    pub instance: String,
    pub elapsed: Duration,
}

/// `initialize` on `path`.
pub fn initialize(port: u16, path: &str, tokens: &Tokens) -> Result<Initialized, String> {
    let body = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion": SESSION_PROTOCOL, "capabilities": {},
        "clientInfo": {"name":"it-routing","version":"1"}}});
    let started = Instant::now();
    let resp = post(path, tokens, &body)
        .send(port)
        .map_err(|e| format!("initialize: {e}"))?;
    if resp.status != 200 {
        return Err(format!("initialize: {resp}"));
    }
    let msg =
        rpc_message(&resp).ok_or_else(|| format!("initialize: no JSON-RPC answer: {resp}"))?;
    let instance = msg["result"]["serverInfo"]["name"]
        .as_str()
        .ok_or_else(|| format!("initialize: no serverInfo.name: {msg}"))?
        .to_string();
    Ok(Initialized {
        session: resp.header("mcp-session-id").map(str::to_string),
        instance,
        elapsed: started.elapsed(),
    })
}

/// `notifications/initialized` on a session (expects 202).
pub fn initialized(port: u16, path: &str, tokens: &Tokens, session: &str) -> Result<(), String> {
    let body = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    let resp = session_post(path, tokens, session, &body)
        .send(port)
        .map_err(|e| format!("notifications/initialized: {e}"))?;
    if resp.status != 202 {
        return Err(format!("notifications/initialized: {resp}"));
    }
    Ok(())
}

/// What the `whoami` tool answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whoami {
    /// The instance.
    pub name: String,
    /// The session id the server knows (its real one).
    pub session: Option<String>,
    /// Calls of `whoami` in this session (demo server) or on this instance (stateless server).
    pub counter: u64,
    /// The whole answer.
    pub raw: Value,
}

/// Reads the `whoami` answer out of a `tools/call` response.
pub fn parse_whoami(resp: &HttpResponse) -> Result<Whoami, String> {
    if resp.status != 200 {
        return Err(format!("whoami: HTTP {}: {}", resp.status, resp.body_str()));
    }
    let msg = rpc_message(resp).ok_or_else(|| format!("whoami: no JSON-RPC answer: {resp}"))?;
    let text = msg["result"]["content"][0]["text"]
        .as_str()
        .ok_or_else(|| format!("whoami: no text content: {msg}"))?;
    let v: Value = serde_json::from_str(text).map_err(|e| format!("whoami: {e}: {text}"))?;
    Ok(Whoami {
        name: v["name"].as_str().unwrap_or_default().to_string(),
        session: v["sessionId"].as_str().map(str::to_string),
        counter: v["counter"].as_u64().unwrap_or_default(),
        raw: v,
    })
}

/// The `tools/call whoami` body.
pub fn whoami_body(id: u64) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"whoami","arguments":{}}})
}

/// `tools/call whoami` on a session; the raw response.
pub fn whoami_raw(
    port: u16,
    path: &str,
    tokens: &Tokens,
    session: &str,
    timeout: Duration,
) -> std::io::Result<HttpResponse> {
    session_post(path, tokens, session, &whoami_body(7))
        .timeout(timeout)
        .send(port)
}

/// `tools/call whoami` on a session.
pub fn whoami(port: u16, path: &str, tokens: &Tokens, session: &str) -> Result<Whoami, String> {
    let resp = whoami_raw(port, path, tokens, session, Duration::from_secs(15))
        .map_err(|e| format!("whoami: {e}"))?;
    parse_whoami(&resp)
}

/// Opens the session's GET stream, checks its head (200, `text/event-stream`) and closes it.
pub fn get_stream(port: u16, path: &str, tokens: &Tokens, session: &str) -> Result<(), String> {
    let mut req = HttpRequest::get(path)
        .tokens(tokens)
        .header("Accept", "text/event-stream")
        .header("Mcp-Session-Id", session)
        .header("MCP-Protocol-Version", SESSION_PROTOCOL)
        .timeout(Duration::from_secs(10));
    req.path = path.to_string();
    let stream = req.open(port).map_err(|e| format!("GET stream: {e}"))?;
    if stream.status != 200
        || !stream
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
    {
        return Err(format!(
            "GET stream: HTTP {} content-type {:?}",
            stream.status,
            stream.header("content-type")
        ));
    }
    drop(stream); // closes the connection: the server ends the stream
    Ok(())
}

/// `DELETE` of a session; the status.
pub fn delete_session(
    port: u16,
    path: &str,
    tokens: &Tokens,
    session: &str,
) -> Result<u16, String> {
    let mut req = HttpRequest::new("DELETE", path)
        .tokens(tokens)
        .header("Mcp-Session-Id", session)
        .header("MCP-Protocol-Version", SESSION_PROTOCOL);
    req.path = path.to_string();
    req.send(port)
        .map(|r| r.status)
        .map_err(|e| format!("DELETE: {e}"))
}

/// A filter refusal's (HTTP status, JSON-RPC code, `data.reason`).
pub fn refusal(resp: &HttpResponse) -> (u16, Option<i64>, Option<String>) {
    let body = resp.json().unwrap_or(Value::Null);
    (
        resp.status,
        body["error"]["code"].as_i64(),
        body["error"]["data"]["reason"].as_str().map(str::to_string),
    )
}

/// CPU time (user + system, seconds) the process `pid` has used so far (Linux `/proc`).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    (ticks(11) + ticks(12)) / 100.0
}
