//! Tokens shaped like those of Keycloak, Microsoft Entra ID (v2.0), Auth0 and Okta, through a
//! real Envoy (`jwt_authn` + mcp-warden), the demo IdP (test mode) and the demo MCP server.
//!
//! Each IdP's example configuration (`envoy/examples/idp-<name>.json`) is run as shipped, with
//! only its issuer and resource pointed at the test stack: the test IdP mints tokens whose
//! claims are laid out like that IdP's (nested Keycloak roles, Entra's string `scp` and `oid`,
//! Auth0's namespaced claims and `permissions`, Okta's `scp` list and `uid`), signed by its own
//! key and issued under its own issuer. For every token the test checks what the client got
//! and what reached the server (the tool call and the `x-mcp-user` it carried, never the token):
//!
//! - under the example's claim mapping, a group, role or scope taken from the IdP-specific place
//!   allows the tool that needs it, and its absence refuses it (403 `default.deny`);
//! - under the default mapping (the issuer as a plain string), the same tokens are decided
//!   differently where the IdP's layout differs from the default names (the mapping matters);
//! - a mapped claim that is missing, or of the wrong type (number, object, boolean, list of
//!   numbers), is refused with 401 `invalid_token`, rule `user.claims`, and a detail naming the
//!   fact and the JSON Pointer.
//!
//! One stack per IdP (its own test). `IT_VERBOSE=1 … -- --nocapture` prints every response.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{
    now_secs, open_session, refusal_problems, repo_root, rpc_message, tail, tool_call, Envoy,
    EnvoyConfig, HttpResponse, Idp, McpServer, TestCtx, IDP_ISSUER, MCP_RESOURCE,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

#[path = "idp_shapes/shapes.rs"]
mod shapes;

use shapes::{args, auth0, entra, keycloak, okta, Bad, Shape, Token};

// ---------------------------------------------------------------------------------------------
// the harness

/// The example plugin configuration of `shape`, pointed at the test stack: its issuer is the
/// test IdP's (with the example's claim mapping, or as a plain string for the default
/// mapping), its resource the test listener's. Audiences the example lists are kept.
fn plugin_config(shape: &Shape, mapped: bool) -> Value {
    let path = repo_root().join(format!("envoy/examples/idp-{}.json", shape.name));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut c: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let pr = &mut c["identity"]["protected_resource"];
    pr["resource"] = json!(MCP_RESOURCE);
    pr["authorization_servers"] = json!([IDP_ISSUER]);
    let issuers = c["identity"]["user"]["issuers"]
        .as_array_mut()
        .expect("identity.user.issuers is a list");
    assert_eq!(issuers.len(), 1, "{}: one issuer", path.display());
    issuers[0] = if mapped {
        let mut one = issuers[0].clone();
        one["issuer"] = json!(IDP_ISSUER);
        one
    } else {
        json!(IDP_ISSUER)
    };
    let rules = c["policy"]["rules"]
        .as_array_mut()
        .expect("policy.rules is a list");
    rules.extend(shape.extra_rules.iter().cloned());
    c
}

/// Sets (or with `None` removes) the value at a JSON Pointer, creating objects on the way.
fn edit(v: &mut Value, pointer: &str, new: Option<Value>) {
    let parts: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let (last, path) = parts.split_last().expect("a pointer below the root");
    let mut at = v;
    for p in path {
        at = at
            .as_object_mut()
            .expect("an object on the way")
            .entry(p.clone())
            .or_insert_with(|| json!({}));
    }
    let obj = at.as_object_mut().expect("an object at the end");
    match new {
        Some(n) => {
            obj.insert(last.clone(), n);
        }
        None => {
            obj.remove(last);
        }
    }
}

fn mint(idp: &Idp, shape: &Shape, claims: &Value) -> String {
    let t = now_secs();
    let mut set = claims.clone();
    set["iss"] = json!(IDP_ISSUER);
    set["iat"] = json!(t - 5);
    set["nbf"] = json!(t - 5);
    set["exp"] = json!(t + 600);
    idp.mint_token(json!({"kind": "raw", "set": set, "typ": shape.typ}))
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("Authorization".into(), format!("Bearer {token}"))]
}

/// One Envoy of a shape (mapped or default), its sessions per token.
struct Gateway {
    envoy: Envoy,
    label: &'static str,
    sessions: HashMap<&'static str, String>,
}

impl Gateway {
    fn start(ctx: &TestCtx, shape: &Shape, mapped: bool, server: &McpServer, idp: &Idp) -> Gateway {
        let label = if mapped { "mapped" } else { "default" };
        let config = plugin_config(shape, mapped);
        let name = format!("envoy-{}-{label}", shape.name);
        let config = EnvoyConfig::demo(server.port, idp.port).plugin_config(&config.to_string());
        // Two Envoys per shape, compiling the wasm on a shared machine: more time than
        // `Envoy::start` gives.
        let envoy =
            Envoy::try_start(ctx, &name, &config, Duration::from_secs(90)).unwrap_or_else(|f| {
                panic!(
                    "Envoy `{name}` did not become ready (status {:?} after {:?}):\n{}",
                    f.status,
                    f.elapsed,
                    tail(&f.log, 40)
                )
            });
        Gateway {
            envoy,
            label,
            sessions: HashMap::new(),
        }
    }

    fn session(&mut self, token: &'static str, jwt: &str) -> Result<String, String> {
        if let Some(s) = self.sessions.get(token) {
            return Ok(s.clone());
        }
        let s = open_session(self.envoy.listener_port, &bearer(jwt))?;
        self.sessions.insert(token, s.clone());
        Ok(s)
    }
}

fn verbose(label: &str, r: &HttpResponse) {
    if std::env::var_os("IT_VERBOSE").is_some() {
        eprintln!("{label}: {} {}", r.status, r.body_str());
    }
}

/// The problems of a call that should have been allowed: a result for the client, and exactly
/// that call at the server, for `user`, without the caller's token.
fn allowed_problems(r: &HttpResponse, seen: &[Value], tool: &str, user: &str) -> Vec<String> {
    let mut bad = Vec::new();
    if r.status != 200 {
        bad.push(format!("status {} (expected 200)", r.status));
    }
    match rpc_message(r) {
        Some(m) if m.get("result").is_some() && m["result"]["isError"] != true => {}
        other => bad.push(format!("no successful result: {other:?}")),
    }
    match seen {
        [s] if s["tools"] == json!([tool])
            && s["x-mcp-user"] == user
            && s["saw_authorization"] == false => {}
        other => bad.push(format!(
            "the server should have seen one tools/call {tool} for x-mcp-user {user} without the caller's token, saw {other:?}"
        )),
    }
    bad
}

/// The problems of a response that should be the 401 for a mapped claim.
fn claim_refusal_problems(r: &HttpResponse, bad: &Bad) -> Vec<String> {
    let mut p = refusal_problems(r, 401, -32001, "invalid_token", "user.claims", &Value::Null);
    let detail = r
        .json()
        .ok()
        .and_then(|b| b["error"]["data"]["detail"].as_str().map(str::to_string))
        .unwrap_or_default();
    let mut want: Vec<&str> = vec![bad.fact];
    want.extend(bad.pointers);
    want.extend(bad.found);
    for w in want {
        if !detail.contains(w) {
            p.push(format!("data.detail {detail:?} does not name {w:?}"));
        }
    }
    let challenge = r.header("www-authenticate").unwrap_or_default();
    if !challenge.contains("error=\"invalid_token\"") || !challenge.contains(bad.fact) {
        p.push(format!(
            "WWW-Authenticate {challenge:?} (expected error=\"invalid_token\" with a description naming {:?})",
            bad.fact
        ));
    }
    p
}

/// Runs every case of `shape` against its mapped and default gateways; panics with a report of
/// every failure.
fn run(shape: &Shape) {
    let ctx = TestCtx::new(&format!("idp_shapes_{}", shape.name));
    let idp = Idp::start(&ctx);
    let server = McpServer::start(&ctx, "demo");
    let mut mapped = Gateway::start(&ctx, shape, true, &server, &idp);
    let mut default = Gateway::start(&ctx, shape, false, &server, &idp);

    let jwts: HashMap<&str, String> = shape
        .tokens
        .iter()
        .map(|t| (t.name, mint(&idp, shape, &t.claims)))
        .collect();
    let token = |name: &str| -> &Token {
        shape
            .tokens
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{}: no token {name}", shape.name))
    };
    let mut report = String::new();
    let mut id = 10;

    for gw in [&mut mapped, &mut default] {
        for c in &shape.calls {
            id += 1;
            let what = format!("[{}] {} calls {}", gw.label, c.token, c.tool);
            let t = token(c.token);
            let expect_allowed = if gw.label == "mapped" {
                c.mapped
            } else {
                c.default
            };
            let user = if gw.label == "mapped" {
                t.mapped_user.to_string()
            } else {
                t.claims["sub"].as_str().unwrap_or_default().to_string()
            };
            let session = match gw.session(t.name, &jwts[t.name]) {
                Ok(s) => s,
                Err(e) => {
                    let _ = writeln!(report, "\n### {what}: no session: {e}");
                    continue;
                }
            };
            let before = server.mcp_requests().len();
            let req = tool_call(&session, id, c.tool, args(c.tool)).headers(&bearer(&jwts[t.name]));
            let r = match req.send(gw.envoy.listener_port) {
                Ok(r) => r,
                Err(e) => {
                    let _ = writeln!(report, "\n### {what}: request failed: {e}");
                    continue;
                }
            };
            verbose(&what, &r);
            let seen = server.mcp_requests().split_off(before);
            let problems = if expect_allowed {
                allowed_problems(&r, &seen, c.tool, &user)
            } else {
                let mut p =
                    refusal_problems(&r, 403, -32003, "policy_denied", c.deny_rule, &json!(id));
                if !seen.is_empty() {
                    p.push(format!("reached the server: {seen:?}"));
                }
                p
            };
            if !problems.is_empty() {
                let _ = writeln!(report, "\n### {what}: {}\n{r}", problems.join("; "));
            }
        }
    }

    // Mapped claims missing or mistyped: refused before anything reaches the server.
    for b in &shape.bad {
        id += 1;
        let what = format!("[mapped] {} ({})", b.what, b.token);
        let mut claims = token(b.token).claims.clone();
        for (ptr, v) in &b.edits {
            edit(&mut claims, ptr, v.clone());
        }
        let jwt = mint(&idp, shape, &claims);
        // The session of the token's own user, so only the claim can make it fail.
        let session = match mapped.session(b.token, &jwts[b.token]) {
            Ok(s) => s,
            Err(e) => {
                let _ = writeln!(report, "\n### {what}: no session: {e}");
                continue;
            }
        };
        let before = server.mcp_requests().len();
        let r = tool_call(&session, id, "echo", args("echo"))
            .headers(&bearer(&jwt))
            .send(mapped.envoy.listener_port);
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(report, "\n### {what}: request failed: {e}");
                continue;
            }
        };
        verbose(&what, &r);
        let mut p = claim_refusal_problems(&r, b);
        let seen = server.mcp_requests().split_off(before);
        if !seen.is_empty() {
            p.push(format!("reached the server: {seen:?}"));
        }
        if !p.is_empty() {
            let _ = writeln!(report, "\n### {what}: {}\n{r}", p.join("; "));
        }
    }

    assert!(report.is_empty(), "{} token shapes:{report}", shape.name);
}

#[test]
fn keycloak_tokens_are_mapped_and_decided() {
    run(&keycloak());
}

#[test]
fn entra_id_tokens_are_mapped_and_decided() {
    run(&entra());
}

#[test]
fn auth0_tokens_are_mapped_and_decided() {
    run(&auth0());
}

#[test]
fn okta_tokens_are_mapped_and_decided() {
    run(&okta());
}

/// Every plugin configuration in `envoy/examples/` is valid for `warden check` (the filter's own
/// configuration code), and the four IdPs' are there.
#[test]
fn idp_examples_pass_warden_check() {
    let dir = repo_root().join("envoy/examples");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    for name in ["keycloak", "entra", "auth0", "okta"] {
        assert!(
            files
                .iter()
                .any(|f| f.ends_with(&format!("/idp-{name}.json"))),
            "no envoy/examples/idp-{name}.json in {files:?}"
        );
    }
    let mut problems = Vec::new();
    for f in &files {
        if let Err(ps) = mcp_warden_cli::check::check_file(f) {
            problems.extend(ps.iter().map(|p| p.to_string()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
