//! The scripted malicious token service (`integration-tests/stack/sts/evil-sts.mjs`): it
//! forwards each token request to the demo IdP and tampers with the answer as the selected
//! scenario of `stack/sts/attacks.json` says.

use super::{free_port, require_file, require_node_stack, stack_dir, tail, wait_for};
use super::{HttpRequest, Proc, TestCtx, INSTALL_NODE};
use std::process::Command;
use std::time::Duration;

/// The scenario script: `integration-tests/stack/sts/attacks.json`.
pub fn attack_scenarios() -> Vec<serde_json::Value> {
    let path = stack_dir().join("sts/attacks.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    match serde_json::from_str(&text) {
        Ok(serde_json::Value::Array(a)) => a,
        other => panic!("{} is not a JSON array: {other:?}", path.display()),
    }
}

/// `node stack/sts/evil-sts.mjs --port P --upstream http://127.0.0.1:<idp>/token`.
pub struct EvilSts {
    pub port: u16,
    pub proc: Proc,
}

impl EvilSts {
    /// Starts it in front of the demo IdP on `idp_port`, answering `honest`ly.
    pub fn start(ctx: &TestCtx, idp_port: u16) -> EvilSts {
        require_node_stack();
        let script = stack_dir().join("sts/evil-sts.mjs");
        require_file(&script, "the evil token service script", INSTALL_NODE);
        let port = free_port();
        let mut cmd = Command::new("node");
        cmd.current_dir(stack_dir()).arg(&script).args([
            "--port",
            &port.to_string(),
            "--upstream",
            &format!("http://127.0.0.1:{idp_port}/token"),
        ]);
        let mut proc = Proc::spawn(ctx, "evil-sts", cmd);
        let healthy = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
            if let Some(st) = proc.try_wait() {
                panic!("evil STS exited early ({st}):\n{}", tail(&proc.log(), 50));
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
                "evil STS not healthy on port {port}:\n{}",
                tail(&proc.log(), 50)
            );
        }
        EvilSts { port, proc }
    }

    /// Selects the scenario every later token request is answered with.
    pub fn scenario(&self, name: &str) {
        let r = HttpRequest::new("POST", "/evil/scenario")
            .header("Content-Type", "application/json")
            .body(serde_json::json!({ "name": name }).to_string())
            .send(self.port)
            .unwrap_or_else(|e| panic!("select scenario {name}: {e}"));
        assert_eq!(r.status, 200, "select scenario {name}:\n{r}");
    }

    /// Token requests answered so far.
    pub fn requests(&self) -> u64 {
        let r = HttpRequest::get("/evil/stats")
            .send(self.port)
            .unwrap_or_else(|e| panic!("evil STS stats: {e}"));
        r.json().expect("stats are JSON")["requests"]
            .as_u64()
            .unwrap_or(0)
    }
}
