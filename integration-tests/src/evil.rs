//! A scripted malicious MCP server (`stack/servers/evil-server.mjs`) for the adversarial tests:
//! it answers each request with what the test wrote into its script file, and logs every
//! request it received, so a test can assert what reached it.

use crate::{free_port, repo_root, tail, wait_for, HttpRequest, Proc, TestCtx};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The session id the evil server hands out.
pub const EVIL_SESSION: &str = "evil-session-1";

/// A running evil server.
pub struct EvilServer {
    pub port: u16,
    script: PathBuf,
    proc: Proc,
}

/// One scripted answer: status, headers, body chunks written `delay_ms` apart.
pub fn answer(status: u16, content_type: &str, chunks: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "status": status,
        "headers": {"content-type": content_type},
        "chunks": chunks,
        "delay_ms": 20,
    })
}

impl EvilServer {
    pub fn start(ctx: &TestCtx) -> EvilServer {
        let script = ctx.path("evil-script.json");
        std::fs::write(&script, "{}").expect("write the evil script");
        let port = free_port();
        let mut cmd = Command::new("node");
        cmd.current_dir(repo_root()).args([
            "integration-tests/stack/servers/evil-server.mjs",
            "--port",
            &port.to_string(),
            "--script",
            &script.display().to_string(),
        ]);
        let mut proc = Proc::spawn(ctx, "evil-server", cmd);
        let up = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
            if let Some(st) = proc.try_wait() {
                panic!("evil server exited ({st}):\n{}", tail(&proc.log(), 40));
            }
            HttpRequest::get("/healthz")
                .timeout(Duration::from_secs(2))
                .send(port)
                .ok()
                .filter(|r| r.status == 200)
        });
        assert!(
            up.is_some(),
            "evil server not up:\n{}",
            tail(&proc.log(), 40)
        );
        EvilServer { port, script, proc }
    }

    /// Replaces the script: `{ "<method>" | "tools/call:<tool>" | "GET" | "*": answer }`.
    pub fn script(&self, script: &serde_json::Value) {
        std::fs::write(&self.script, script.to_string()).expect("write the evil script");
    }

    /// Every request that reached the server (but its health checks), oldest first.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.proc
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["ev"] == "req" && v["path"] != "/healthz")
            .collect()
    }
}

/// The demo IdP, the evil server and Envoy with the demo plugin configuration (without token
/// exchange: the evil server verifies no token), with an open session of bob's.
pub struct EvilStack {
    pub ctx: TestCtx,
    pub idp: crate::Idp,
    pub evil: EvilServer,
    pub envoy: crate::Envoy,
    pub bob: crate::Tokens,
    pub session: String,
}

impl EvilStack {
    /// Starts the stack; `tweak` changes the plugin configuration first.
    pub fn start(test: &str, tweak: impl FnOnce(&mut serde_json::Value)) -> EvilStack {
        let ctx = TestCtx::new(test);
        let idp = crate::Idp::start(&ctx);
        let evil = EvilServer::start(&ctx);
        let mut cfg = crate::demo_plugin_config();
        if let Some(o) = cfg.as_object_mut() {
            o.remove("token_exchange");
        }
        tweak(&mut cfg);
        let config = crate::EnvoyConfig::demo(evil.port, idp.port).plugin_config(&cfg.to_string());
        let envoy = crate::Envoy::start(&ctx, "envoy", &config);
        let bob = idp.tokens("bob", "agent-claude", crate::ALL_MCP_SCOPES);
        let session = crate::open_session(envoy.listener_port, &bob.headers())
            .unwrap_or_else(|e| panic!("{e}"));
        EvilStack {
            ctx,
            idp,
            evil,
            envoy,
            bob,
            session,
        }
    }

    /// Envoy's listener port.
    pub fn port(&self) -> u16 {
        self.envoy.listener_port
    }
}

/// Runs one case of a suite; a failing case is recorded and the others still run.
pub fn case(failed: &mut Vec<&'static str>, name: &'static str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        failed.push(name);
    }
}
