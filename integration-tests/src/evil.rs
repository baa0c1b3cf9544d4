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
