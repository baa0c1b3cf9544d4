//! The request state machine. The adapter calls one method per Envoy callback and carries
//! out the returned step; all decisions live here, so they are testable without Envoy.
//!
//! ```text
//! Headers ──(GET/DELETE ok)──────────────► Forwarding
//!    │ (POST ok)                               ▲
//!    ▼                                         │ (valid MCP)
//! AwaitingBody ──(end of stream / trailers)──► parse ──(invalid)──► Rejected
//!    └──(over max_body_bytes)────────────────────────────────────► Rejected
//! ```

use crate::config::Config;
use crate::error::{Reason, Rejection, Reply};
use crate::identity::attestation::AttestationCache;
use crate::identity::metadata::ClaimSource;
use crate::identity::{authenticate, Identity};
use crate::jsonrpc::Message;
use crate::jsonrpc::{parse_payload, ParseRules, Payload};
use crate::policy::{Decision, Facts, Purpose};
use crate::registry::LiveDefinitions;
use crate::transport::{batch_allowed, check_body_agrees, check_head, HttpMethod, RequestHead};

/// What the adapter must do after a header or trailer callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Let the request go on.
    Continue,
    /// Hold the request (headers until the body is read; body chunks while buffering).
    Pause,
    /// Answer locally with this reply and stop the request.
    Reply(Reply),
}

/// What the adapter must do after a body callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyStep {
    /// A header/trailer-style step.
    Step(Step),
    /// The body is complete: read these many bytes and hand them to [`RequestFlow::on_body`].
    ReadBody(usize),
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Headers,
    AwaitingBody {
        head: Box<RequestHead>,
        protocol_version: String,
    },
    Forwarding,
    Rejected,
}

/// What happened to a request, for the log line / audit record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing decided yet.
    Pending,
    /// Forwarded; the parsed payload when there was a body.
    Forwarded(Option<Payload>),
    /// Refused locally.
    Rejected(Rejection),
}

/// A change to the request headers the adapter must make before the request goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Remove every copy of this header.
    Remove(String),
    /// Set this header (replacing any copy).
    Set(String, String),
}

/// What the request carries besides its headers: the verified claims and the time.
pub struct RequestContext<'a> {
    /// jwt_authn's verified claims.
    pub claims: &'a dyn ClaimSource,
    /// The attestation verdict cache of this worker.
    pub attestation_cache: &'a mut AttestationCache,
    /// Seconds since the epoch.
    pub now: u64,
}

/// Per-request state.
#[derive(Debug)]
pub struct RequestFlow {
    state: State,
    outcome: Outcome,
    identity: Option<Identity>,
    edits: Vec<HeaderEdit>,
    resource_metadata: Option<String>,
    now: u64,
    server: String,
    decisions: Vec<Decision>,
}

impl Default for RequestFlow {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestFlow {
    /// A flow waiting for request headers.
    pub fn new() -> Self {
        RequestFlow {
            state: State::Headers,
            outcome: Outcome::Pending,
            identity: None,
            edits: Vec::new(),
            resource_metadata: None,
            now: 0,
            server: String::new(),
            decisions: Vec::new(),
        }
    }

    /// The policy decisions taken for this request's messages (for audit).
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// The server the request is for (`""` when no policy names servers).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The verified caller, once the headers passed.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Header edits to apply now (drained).
    pub fn take_header_edits(&mut self) -> Vec<HeaderEdit> {
        std::mem::take(&mut self.edits)
    }

    /// What happened so far.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    fn reject(&mut self, rejection: Rejection) -> Step {
        let reply = rejection.to_reply_with(self.resource_metadata.as_deref());
        self.outcome = Outcome::Rejected(rejection);
        self.state = State::Rejected;
        Step::Reply(reply)
    }

    /// Request headers arrived.
    pub fn on_request_headers<V: AsRef<[u8]>>(
        &mut self,
        cfg: &Config,
        headers: &[(String, V)],
        end_of_stream: bool,
        ctx: RequestContext<'_>,
    ) -> Step {
        if self.state != State::Headers {
            return self.reject_unexpected("request headers");
        }
        let head = match RequestHead::from_headers(headers) {
            Ok(h) => h,
            Err(r) => return self.reject(r),
        };
        self.now = ctx.now;
        if let Some(id_cfg) = &cfg.identity {
            self.resource_metadata = Some(id_cfg.resource_metadata_url.clone());
            if head.method == HttpMethod::Get
                && id_cfg
                    .metadata_paths
                    .iter()
                    .any(|p| path_only(&head.path) == p)
            {
                self.state = State::Rejected;
                return Step::Reply(metadata_reply(&id_cfg.metadata_document));
            }
            for h in id_cfg.stripped_headers() {
                self.edits.push(HeaderEdit::Remove(h.to_string()));
            }
            let identity = match authenticate(id_cfg, ctx.claims, ctx.attestation_cache, ctx.now) {
                Ok(i) => i,
                Err(r) => return self.reject(r),
            };
            let agent_sub = identity.agent.as_ref().map(|a| a.token.sub.clone());
            let values = [
                (&id_cfg.upstream_user, Some(identity.user.token.sub.clone())),
                (&id_cfg.upstream_agent, agent_sub),
                (
                    &id_cfg.upstream_delegation,
                    Some(identity.delegation_summary()),
                ),
            ];
            for (name, value) in values {
                if let (Some(name), Some(value)) = (name, value) {
                    self.edits
                        .push(HeaderEdit::Set(name.clone(), header_safe(&value)));
                }
            }
            self.identity = Some(identity);
        }
        let verdict = match check_head(
            &head,
            &cfg.protocol_versions,
            cfg.max_body_bytes,
            end_of_stream,
        ) {
            Ok(v) => v,
            Err(r) => return self.reject(r),
        };
        if !verdict.expects_body {
            self.state = State::Forwarding;
            self.outcome = Outcome::Forwarded(None);
            return Step::Continue;
        }
        self.state = State::AwaitingBody {
            head: Box::new(head),
            protocol_version: verdict.protocol_version,
        };
        if end_of_stream {
            // A POST without a body: judge the empty body now.
            return self.on_body(cfg, &[], &crate::registry::MemoryDefinitions::default());
        }
        Step::Pause
    }

    /// A request body chunk arrived; `buffered` is the size of everything buffered so far.
    pub fn on_request_body(
        &mut self,
        cfg: &Config,
        buffered: usize,
        end_of_stream: bool,
    ) -> BodyStep {
        match self.state {
            State::AwaitingBody { .. } => {}
            State::Forwarding => return BodyStep::Step(Step::Continue),
            State::Rejected => return BodyStep::Step(Step::Pause),
            State::Headers => return BodyStep::Step(self.reject_unexpected("request body")),
        }
        if buffered as u64 > cfg.max_body_bytes {
            return BodyStep::Step(self.reject(Rejection::new(
                Reason::BodyTooLarge,
                format!("body exceeds max_body_bytes ({})", cfg.max_body_bytes),
            )));
        }
        if end_of_stream {
            BodyStep::ReadBody(buffered)
        } else {
            BodyStep::Step(Step::Pause)
        }
    }

    /// Request trailers arrived: the body (if any) is complete.
    pub fn on_request_trailers(&mut self, cfg: &Config, buffered: usize) -> BodyStep {
        match self.state {
            State::AwaitingBody { .. } => self.on_request_body(cfg, buffered, true),
            State::Forwarding => BodyStep::Step(Step::Continue),
            State::Rejected => BodyStep::Step(Step::Pause),
            State::Headers => BodyStep::Step(self.reject_unexpected("request trailers")),
        }
    }

    /// The complete request body; `live` holds the tool definitions seen in list answers.
    pub fn on_body(&mut self, cfg: &Config, body: &[u8], live: &dyn LiveDefinitions) -> Step {
        let State::AwaitingBody {
            head,
            protocol_version,
        } = std::mem::replace(&mut self.state, State::Forwarding)
        else {
            return self.reject_unexpected("request body");
        };
        if body.len() as u64 > cfg.max_body_bytes {
            return self.reject(Rejection::new(
                Reason::BodyTooLarge,
                format!("body exceeds max_body_bytes ({})", cfg.max_body_bytes),
            ));
        }
        let rules = ParseRules {
            max_depth: cfg.max_json_depth,
            max_batch: cfg.max_batch_messages,
            extra_methods: &cfg.extra_methods,
        };
        let payload = match parse_payload(body, &rules, batch_allowed(&protocol_version)) {
            Ok(p) => p,
            Err(r) => return self.reject(r),
        };
        if let Err(r) = check_body_agrees(&head, &protocol_version, &payload) {
            return self.reject(r);
        }
        if let Some(policy) = &cfg.policy {
            for msg in payload.messages() {
                // Responses answer the server's own requests (sampling, elicitation): no decision.
                let (
                    Some(method),
                    Message::Request { params, .. } | Message::Notification { params, .. },
                ) = (msg.method(), msg)
                else {
                    continue;
                };
                let live_hash = match msg.target() {
                    crate::jsonrpc::Target::Tool(t) => live.get(&self.server, t),
                    _ => None,
                };
                let decision = policy.decide(&Facts {
                    identity: self.identity.as_ref(),
                    server: &self.server,
                    method,
                    target: msg.target(),
                    arguments: params.get("arguments"),
                    live_hash: live_hash.as_deref(),
                    now: self.now,
                    purpose: Purpose::Call,
                });
                let denied = (!decision.allowed()).then(|| {
                    Rejection::new(Reason::PolicyDenied, decision.reason.clone())
                        .with_rule(&decision.rule)
                        .with_id(msg.id().cloned())
                });
                self.decisions.push(decision);
                if let Some(r) = denied {
                    return self.reject(r);
                }
            }
        }
        self.outcome = Outcome::Forwarded(Some(payload));
        Step::Continue
    }

    fn reject_unexpected(&mut self, what: &str) -> Step {
        self.edits.clear();
        // Fail closed on a callback order we do not expect.
        self.reject(Rejection::new(
            Reason::InvalidRequest,
            format!("unexpected {what} callback"),
        ))
    }
}

fn path_only(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or_default()
}

fn metadata_reply(doc: &serde_json::Value) -> Reply {
    Reply {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "max-age=300".into()),
        ],
        body: doc.to_string().into_bytes(),
    }
}

/// Percent-encodes what cannot travel in a header value (controls, non-ASCII, `%`).
pub fn header_safe(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' || b == b' ' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Reason;
    use crate::identity::claims::JsonClaims;
    use crate::registry::MemoryDefinitions;
    use serde_json::{json, Value};

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn post_headers() -> Vec<(String, Vec<u8>)> {
        [
            (":method", "POST"),
            (":path", "/mcp"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
    }

    fn hdrs(flow: &mut RequestFlow, cfg: &Config, h: &[(String, Vec<u8>)], eos: bool) -> Step {
        hdrs_with(flow, cfg, h, eos, &JsonClaims(vec![]))
    }

    fn hdrs_with(
        flow: &mut RequestFlow,
        cfg: &Config,
        h: &[(String, Vec<u8>)],
        eos: bool,
        claims: &JsonClaims,
    ) -> Step {
        let mut cache = AttestationCache::default();
        let ctx = RequestContext {
            claims,
            attestation_cache: &mut cache,
            now: 1_800_000_000,
        };
        flow.on_request_headers(cfg, h, eos, ctx)
    }

    fn reply_reason(step: &Step) -> (u32, String) {
        let Step::Reply(r) = step else {
            panic!("expected a reply, got {step:?}")
        };
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        (
            r.status,
            v["error"]["data"]["reason"].as_str().unwrap().to_string(),
        )
    }

    fn run_post(cfg: &Config, chunks: &[&[u8]]) -> Step {
        let mut flow = RequestFlow::new();
        assert_eq!(hdrs(&mut flow, cfg, &post_headers(), false), Step::Pause);
        let mut buf = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            buf.extend_from_slice(c);
            match flow.on_request_body(cfg, buf.len(), i + 1 == chunks.len()) {
                BodyStep::ReadBody(n) => {
                    return flow.on_body(cfg, &buf[..n], &MemoryDefinitions::default())
                }
                BodyStep::Step(Step::Pause) => {}
                BodyStep::Step(other) => return other,
            }
        }
        panic!("body never completed")
    }

    #[test]
    fn valid_post_is_forwarded_after_the_whole_body() {
        let cfg = Config::default();
        let step = run_post(
            &cfg,
            &[b"{\"jsonrpc\":\"2.0\",", b"\"id\":1,\"method\":\"ping\"}"],
        );
        assert_eq!(step, Step::Continue);
    }

    #[test]
    fn invalid_body_is_answered_locally() {
        let cfg = Config::default();
        assert_eq!(
            reply_reason(&run_post(&cfg, &[b"{nope"])),
            (400, "parse_error".into())
        );
    }

    #[test]
    fn body_over_the_cap_is_refused_before_it_is_complete() {
        let cfg = Config {
            max_body_bytes: 10,
            ..Config::default()
        };
        let mut flow = RequestFlow::new();
        hdrs(&mut flow, &cfg, &post_headers(), false);
        assert_eq!(
            flow.on_request_body(&cfg, 8, false),
            BodyStep::Step(Step::Pause)
        );
        let BodyStep::Step(step) = flow.on_request_body(&cfg, 11, false) else {
            panic!()
        };
        assert_eq!(reply_reason(&step), (413, "body_too_large".into()));
        // Later callbacks for a rejected request stay paused.
        assert_eq!(
            flow.on_request_body(&cfg, 12, true),
            BodyStep::Step(Step::Pause)
        );
    }

    #[test]
    fn trailers_end_the_body() {
        let cfg = Config::default();
        let mut flow = RequestFlow::new();
        hdrs(&mut flow, &cfg, &post_headers(), false);
        assert_eq!(
            flow.on_request_body(&cfg, 5, false),
            BodyStep::Step(Step::Pause)
        );
        assert_eq!(flow.on_request_trailers(&cfg, 5), BodyStep::ReadBody(5));
        assert_eq!(
            reply_reason(&flow.on_body(&cfg, b"{nope", &MemoryDefinitions::default())),
            (400, "parse_error".into())
        );
    }

    #[test]
    fn post_without_body_is_a_parse_error() {
        let cfg = Config::default();
        let mut flow = RequestFlow::new();
        assert_eq!(
            reply_reason(&hdrs(&mut flow, &cfg, &post_headers(), true)),
            (400, "parse_error".into())
        );
    }

    #[test]
    fn get_stream_passes_without_buffering() {
        let cfg = Config::default();
        let mut flow = RequestFlow::new();
        let h: Vec<(String, Vec<u8>)> = vec![
            (":method".into(), b"GET".to_vec()),
            ("accept".into(), b"text/event-stream".to_vec()),
        ];
        assert_eq!(hdrs(&mut flow, &cfg, &h, true), Step::Continue);
        assert_eq!(flow.outcome(), &Outcome::Forwarded(None));
    }

    #[test]
    fn out_of_order_callbacks_fail_closed() {
        let cfg = Config::default();
        let mut flow = RequestFlow::new();
        let BodyStep::Step(step) = flow.on_request_body(&cfg, 3, true) else {
            panic!()
        };
        assert!(matches!(step, Step::Reply(_)));
        assert!(
            matches!(flow.outcome(), Outcome::Rejected(r) if r.reason == Reason::InvalidRequest)
        );
    }

    fn identity_config() -> Config {
        let cfg = json!({"identity": {
            "protected_resource": {"resource": "http://gw/mcp", "authorization_servers": ["http://idp"]},
            "user": {"issuers": ["http://idp"]}
        }});
        Config::from_json(cfg.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn protected_resource_metadata_is_served_without_a_token() {
        let cfg = identity_config();
        for path in [
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource?x=1",
        ] {
            let mut flow = RequestFlow::new();
            let h: Vec<(String, Vec<u8>)> = vec![
                (":method".into(), b"GET".to_vec()),
                (":path".into(), path.as_bytes().to_vec()),
            ];
            let Step::Reply(r) = hdrs(&mut flow, &cfg, &h, true) else {
                panic!("no reply for {path}")
            };
            assert_eq!(r.status, 200);
            let doc: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(doc["resource"], json!("http://gw/mcp"));
            assert_eq!(doc["authorization_servers"], json!(["http://idp"]));
        }
    }

    #[test]
    fn missing_identity_gets_401_with_a_challenge_and_nothing_is_buffered() {
        let cfg = identity_config();
        let mut flow = RequestFlow::new();
        let step = hdrs(&mut flow, &cfg, &post_headers(), false);
        assert_eq!(reply_reason(&step), (401, "missing_token".into()));
        let Step::Reply(r) = step else { panic!() };
        assert!(r.headers.iter().any(|(k, v)| k == "www-authenticate"
            && v == "Bearer resource_metadata=\"http://gw/.well-known/oauth-protected-resource/mcp\""));
        assert_eq!(
            flow.on_request_body(&cfg, 10, true),
            BodyStep::Step(Step::Pause)
        );
    }

    #[test]
    fn verified_identity_replaces_spoofable_headers() {
        let cfg = identity_config();
        let claims = JsonClaims(vec![(
            "user".into(),
            json!({"iss":"http://idp","sub":"al\nice","aud":"http://gw/mcp","exp":1_800_000_600u64}),
        )]);
        let mut flow = RequestFlow::new();
        let mut h = post_headers();
        h.push(("x-mcp-user".into(), b"admin".to_vec()));
        assert_eq!(hdrs_with(&mut flow, &cfg, &h, false, &claims), Step::Pause);
        let edits = flow.take_header_edits();
        let removed: Vec<&str> = edits
            .iter()
            .filter_map(|e| match e {
                HeaderEdit::Remove(h) => Some(h.as_str()),
                _ => None,
            })
            .collect();
        assert!(
            removed.contains(&"authorization") && removed.contains(&"x-mcp-user"),
            "{edits:?}"
        );
        assert!(
            edits.contains(&HeaderEdit::Set("x-mcp-user".into(), "al%0Aice".into())),
            "{edits:?}"
        );
        let remove_at = edits
            .iter()
            .position(|e| e == &HeaderEdit::Remove("x-mcp-user".into()));
        let set_at = edits
            .iter()
            .position(|e| matches!(e, HeaderEdit::Set(n, _) if n == "x-mcp-user"));
        assert!(remove_at < set_at);
        assert_eq!(
            flow.identity().map(|i| i.user.token.sub.as_str()),
            Some("al\nice")
        );
    }
}
