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
use crate::error::{Rejection, Reply};
use crate::jsonrpc::{parse_payload, ParseRules, Payload};
use crate::transport::{batch_allowed, check_body_agrees, check_head, RequestHead};

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

/// Per-request state.
#[derive(Debug)]
pub struct RequestFlow {
    state: State,
    outcome: Outcome,
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
        }
    }

    /// What happened so far.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    fn reject(&mut self, rejection: Rejection) -> Step {
        let reply = rejection.to_reply();
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
    ) -> Step {
        if self.state != State::Headers {
            return self.reject_unexpected("request headers");
        }
        let head = match RequestHead::from_headers(headers) {
            Ok(h) => h,
            Err(r) => return self.reject(r),
        };
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
            return self.on_body(cfg, &[]);
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
                crate::error::Reason::BodyTooLarge,
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

    /// The complete request body.
    pub fn on_body(&mut self, cfg: &Config, body: &[u8]) -> Step {
        let State::AwaitingBody {
            head,
            protocol_version,
        } = std::mem::replace(&mut self.state, State::Forwarding)
        else {
            return self.reject_unexpected("request body");
        };
        if body.len() as u64 > cfg.max_body_bytes {
            return self.reject(Rejection::new(
                crate::error::Reason::BodyTooLarge,
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
        self.outcome = Outcome::Forwarded(Some(payload));
        Step::Continue
    }

    fn reject_unexpected(&mut self, what: &str) -> Step {
        // Fail closed on a callback order we do not expect.
        self.reject(Rejection::new(
            crate::error::Reason::InvalidRequest,
            format!("unexpected {what} callback"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Reason;
    use serde_json::Value;

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
        assert_eq!(
            flow.on_request_headers(cfg, &post_headers(), false),
            Step::Pause
        );
        let mut buf = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            buf.extend_from_slice(c);
            match flow.on_request_body(cfg, buf.len(), i + 1 == chunks.len()) {
                BodyStep::ReadBody(n) => return flow.on_body(cfg, &buf[..n]),
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
        flow.on_request_headers(&cfg, &post_headers(), false);
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
        flow.on_request_headers(&cfg, &post_headers(), false);
        assert_eq!(
            flow.on_request_body(&cfg, 5, false),
            BodyStep::Step(Step::Pause)
        );
        assert_eq!(flow.on_request_trailers(&cfg, 5), BodyStep::ReadBody(5));
        assert_eq!(
            reply_reason(&flow.on_body(&cfg, b"{nope")),
            (400, "parse_error".into())
        );
    }

    #[test]
    fn post_without_body_is_a_parse_error() {
        let cfg = Config::default();
        let mut flow = RequestFlow::new();
        assert_eq!(
            reply_reason(&flow.on_request_headers(&cfg, &post_headers(), true)),
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
        assert_eq!(flow.on_request_headers(&cfg, &h, true), Step::Continue);
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
}
