//! The answer side of a request: every message the upstream sends back is classified
//! ([`crate::response::answers`]) and filtered for what it is, on every stream, whatever its
//! status, content type or SSE event type says.
//!
//! - A `text/event-stream` 2xx answer is read event by event; an `application/json` answer (any
//!   status) is buffered and read as one message or a batch.
//! - An answer to a request of this stream is forwarded once; an answer to a list request is
//!   list-filtered by the policy. Answers to nothing this stream asked are dropped (the GET stream
//!   asks nothing).
//! - With `response_filters`, every message kept (answers, server requests, notifications) goes
//!   through [`crate::response::content`].
//! - A 2xx body of any other type is not MCP: it is replaced by a JSON-RPC error. A non-2xx body
//!   of another type (an error page; SDK clients put its text into the error the model sees) is
//!   sent as `text/plain`, through the response filters when they apply.
//! - What cannot be read is not forwarded: an SSE event whose data is not a JSON-RPC message is
//!   dropped (its `id` kept, so resumption still works), a JSON body becomes a JSON-RPC error.

use super::{HeaderEdit, Outcome, RequestFlow, ResponseFacts, ResponseMode};
use crate::config::Config;
use crate::error::{Reason, Rejection};
use crate::policy::{Facts, Purpose};
use crate::registry::LiveDefinitions;
use crate::response::answers::{classify, split, Claim, Kind, Media, Messages, Outstanding};
use crate::response::content::{Filtered, Findings, TextFiltered};
use crate::response::lists::{filter_message, ListItem, ListKind};
use crate::response::resume::{open_event_id, seal_event_id, EventBinding, ResumeError};
use crate::response::sse::SseSplitter;
use crate::response::tool_hash::tool_definition_hash;
use crate::sealing::KeyRing;
use serde_json::Value;

/// Nesting accepted in an upstream message checked by the response filters.
const MAX_CONTENT_DEPTH: usize = 120;

/// Largest response event / JSON body the filter buffers.
pub const MAX_RESPONSE_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// How the body of the current answer is read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Not read (no body, or the answer is not the upstream's).
    #[default]
    Untouched,
    /// JSON-RPC messages: a JSON body, or SSE events.
    Messages,
    /// A 2xx body that is not MCP: replaced by an error when it is not empty.
    NotMcp,
    /// A non-2xx body that is not JSON-RPC: text, sent as `text/plain`.
    Text,
}

/// What happens to one upstream message.
enum Verdict {
    /// Forward it as it was.
    Keep,
    /// Forward these bytes instead.
    Replace(Vec<u8>),
    /// Forward nothing.
    Drop,
}

/// The answer side of a request.
#[derive(Debug, Default)]
pub(super) struct ResponseState {
    /// The requests of this stream not answered yet.
    pub(super) outstanding: Outstanding,
    body: Body,
    /// Whether a non-2xx JSON body that is not JSON-RPC may be read as text.
    error_status: bool,
    /// Whether the answer had a content type.
    typed: bool,
    /// Whether the body is encoded (compressed): it cannot be read at all.
    unreadable: bool,
    splitter: Option<SseSplitter>,
    /// Whether SSE bytes were sent to the client already.
    sse_started: bool,
    failed: bool,
}

impl RequestFlow {
    /// Whether the response needs looking at: every answer to a forwarded request does (its
    /// messages are classified), and with sealed sessions (identity on) every answer (session
    /// ids; with routing, lost instances).
    pub fn inspects_response(&self, cfg: &Config) -> bool {
        match self.outcome {
            Outcome::Forwarded(_) => true,
            // A refused request's answer is the filter's own local reply.
            Outcome::Rejected(_) => false,
            Outcome::Pending => cfg.sessions.is_some(),
        }
    }

    /// Response headers arrived: decide how the body is read. `facts` are read only when
    /// routing needs them (a new session to pin, a session's instance gone).
    pub fn on_response_headers<K: AsRef<str>, V: AsRef<[u8]>>(
        &mut self,
        cfg: &Config,
        headers: &[(K, V)],
        facts: &dyn ResponseFacts,
    ) -> ResponseMode {
        // Header values as text, copied only when they are not UTF-8.
        let value = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v.as_ref()))
        };
        let status = value(":status");
        let status = status.as_deref().map(str::trim);
        if cfg.sessions.is_some() {
            let session = value("mcp-session-id");
            if self.route_response(cfg, session.as_deref().map(str::trim), status, facts) {
                return ResponseMode::Replace;
            }
        }
        if !matches!(self.outcome, Outcome::Forwarded(_)) {
            return ResponseMode::Untouched;
        }
        let no_body = matches!(status, Some("204" | "304"))
            || value("content-length").is_some_and(|l| l.trim() == "0");
        if no_body {
            return ResponseMode::Untouched;
        }
        let ok = status.is_some_and(|s| s.starts_with('2'));
        let content_type = value("content-type");
        // A compressed body cannot be read (the request asked for none): never forwarded.
        let encoded = value("content-encoding")
            .is_some_and(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity"));
        let media = if encoded {
            self.response_edits
                .push(HeaderEdit::Remove("content-encoding".into()));
            self.response.unreadable = true;
            Media::Other
        } else {
            Media::of(content_type.as_deref())
        };
        let set_type = |flow: &mut RequestFlow, ct: &str| {
            flow.response_edits
                .push(HeaderEdit::Set("content-type".into(), ct.into()));
        };
        self.response.error_status = !ok;
        self.response.typed = content_type.is_some();
        let mode = match (media, ok) {
            (Media::EventStream, true) => {
                self.response.body = Body::Messages;
                self.response.splitter = Some(SseSplitter::new(MAX_RESPONSE_EVENT_BYTES));
                ResponseMode::StreamSse
            }
            (Media::Json, _) => {
                self.response.body = Body::Messages;
                ResponseMode::BufferJson
            }
            (_, true) => {
                // Without a content type no client reads the body as MCP (a 202 has none):
                // a body there is dropped; with another type it becomes a JSON-RPC error.
                self.response.body = Body::NotMcp;
                if content_type.is_some() || self.response.unreadable {
                    set_type(self, "application/json");
                }
                return ResponseMode::BufferJson;
            }
            (_, false) => {
                self.response.body = Body::Text;
                set_type(self, "text/plain; charset=utf-8");
                return ResponseMode::BufferJson;
            }
        };
        // `application/json; x=text/event-stream`: a client testing substrings could read
        // another type than the one checked here.
        if let Some(ct) = content_type.as_deref() {
            if media.is_ambiguous(ct) {
                let plain = match media {
                    Media::EventStream => "text/event-stream",
                    _ => "application/json",
                };
                set_type(self, plain);
            }
        }
        mode
    }

    /// Whether this request's answers go through `response_filters`.
    fn filters_content(&self, cfg: &Config) -> bool {
        cfg.response_filters
            .as_ref()
            .is_some_and(|f| f.applies_to(&self.server))
            && matches!(self.outcome, Outcome::Forwarded(_))
    }

    /// Runs the response filters over one message; what they found becomes a notice.
    /// `Err`: not JSON, withhold it.
    fn filter_content(
        &mut self,
        cfg: &Config,
        bytes: &[u8],
    ) -> Result<Filtered, crate::json::JsonError> {
        let Some(filters) = &cfg.response_filters else {
            return Ok(Filtered::Unchanged);
        };
        let mut findings = Findings::default();
        let out = filters.filter(bytes, &self.server, MAX_CONTENT_DEPTH, &mut findings)?;
        if !findings.is_empty() {
            self.notices
                .push(format!("response filters: {}", findings.describe()));
        }
        Ok(out)
    }

    /// The whole buffered response body: the bytes to send instead, if they differ.
    pub fn on_response_json(
        &mut self,
        cfg: &Config,
        body: &[u8],
        live: &dyn LiveDefinitions,
    ) -> Option<Vec<u8>> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        match self.response.body {
            Body::Untouched => None,
            Body::NotMcp => {
                self.notices.push(
                    "the upstream answered with a body that is not MCP (content type); replaced"
                        .into(),
                );
                if self.response.typed || self.response.unreadable {
                    Some(self.error_body("the upstream's answer is not an MCP message"))
                } else {
                    Some(Vec::new())
                }
            }
            Body::Text if self.response.unreadable => {
                self.notices
                    .push("the upstream's error body is compressed; replaced".into());
                Some(WITHHELD_TEXT.as_bytes().to_vec())
            }
            Body::Text => self.text_body(cfg, body),
            Body::Messages if self.response.error_status && !is_jsonrpc(body) => {
                // A JSON error page that is not JSON-RPC: text for the client's error.
                self.response_edits.push(HeaderEdit::Set(
                    "content-type".into(),
                    "text/plain; charset=utf-8".into(),
                ));
                self.text_body(cfg, body)
            }
            Body::Messages => match self.messages(cfg, body, live) {
                Ok(Verdict::Keep) => None,
                Ok(Verdict::Replace(b)) => Some(b),
                Ok(Verdict::Drop) => Some(self.error_body("the upstream's answer was withheld")),
                Err(e) => {
                    self.notices
                        .push(format!("answer could not be read and was withheld: {e}"));
                    Some(self.error_body(&e))
                }
            },
        }
    }

    /// The JSON-RPC error that replaces an answer that is not forwarded: for the first request
    /// of this stream still unanswered (an empty body when there is none).
    fn error_body(&self, detail: &str) -> Vec<u8> {
        if self.response.outstanding.is_empty() {
            return Vec::new();
        }
        unreadable_answer_body(&self.response.outstanding.first_unanswered(), &detail)
    }

    /// A non-2xx body that is not JSON-RPC: through the response filters as text.
    fn text_body(&mut self, cfg: &Config, body: &[u8]) -> Option<Vec<u8>> {
        let filters = cfg
            .response_filters
            .as_ref()
            .filter(|_| self.filters_content(cfg))?;
        let text = String::from_utf8_lossy(body);
        let mut findings = Findings::default();
        let out = match filters.filter_text(&text, &self.server, &mut findings) {
            // Not UTF-8: the checked text replaces the bytes.
            TextFiltered::Unchanged => {
                (std::str::from_utf8(body).is_err()).then(|| text.into_owned().into_bytes())
            }
            TextFiltered::Replaced(new) => Some(new.into_bytes()),
            TextFiltered::Withheld { .. } => Some(WITHHELD_TEXT.as_bytes().to_vec()),
        };
        if !findings.is_empty() {
            self.notices
                .push(format!("response filters: {}", findings.describe()));
        }
        out
    }

    /// One body or event data: a message or a batch, each message judged on its own.
    /// `Err` when it is neither a JSON object nor an array of messages.
    fn messages(
        &mut self,
        cfg: &Config,
        bytes: &[u8],
        live: &dyn LiveDefinitions,
    ) -> Result<Verdict, String> {
        match split(bytes)? {
            Messages::Single(text) => Ok(self.message(cfg, text, live)),
            Messages::Batch(items) => {
                let mut changed = false;
                let mut kept: Vec<std::borrow::Cow<'_, [u8]>> = Vec::with_capacity(items.len());
                for item in &items {
                    match self.message(cfg, item.get().as_bytes(), live) {
                        Verdict::Keep => kept.push(item.get().as_bytes().into()),
                        Verdict::Replace(b) => {
                            changed = true;
                            kept.push(b.into());
                        }
                        Verdict::Drop => changed = true,
                    }
                }
                if kept.is_empty() {
                    return Ok(Verdict::Drop);
                }
                if !changed {
                    return Ok(Verdict::Keep);
                }
                let mut out = Vec::with_capacity(bytes.len());
                out.push(b'[');
                for (i, m) in kept.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(m);
                }
                out.push(b']');
                Ok(Verdict::Replace(out))
            }
        }
    }

    /// One upstream message: classified, list-filtered if it answers a list request, then
    /// through the response filters.
    fn message(&mut self, cfg: &Config, text: &[u8], live: &dyn LiveDefinitions) -> Verdict {
        let kind = match classify(text) {
            Ok(k) => k,
            Err(e) => {
                self.notices.push(format!("upstream message dropped: {e}"));
                return Verdict::Drop;
            }
        };
        let mut current: Option<Vec<u8>> = None;
        match kind {
            Kind::Answer(id) => match self.response.outstanding.claim(&id) {
                None => {
                    self.notices.push(format!(
                        "upstream answer to no request of this stream (id {id}) dropped"
                    ));
                    return Verdict::Drop;
                }
                Some(Claim {
                    id,
                    list: Some(kind),
                }) => match self.filter_list(cfg, kind, &id, text, live) {
                    Ok(filtered) => current = filtered,
                    Err(e) => {
                        self.notices.push(format!(
                            "list answer could not be checked and was withheld: {e}"
                        ));
                        return Verdict::Replace(unreadable_answer_body(&id, &e));
                    }
                },
                Some(_) => {}
            },
            Kind::ErrorWithoutId if self.response.outstanding.is_empty() => {
                self.notices
                    .push("upstream error answer on a stream that asked nothing dropped".into());
                return Verdict::Drop;
            }
            Kind::ErrorWithoutId | Kind::ServerRequest | Kind::Notification => {}
        }
        if self.filters_content(cfg) {
            let bytes = current.as_deref().unwrap_or(text);
            match self.filter_content(cfg, bytes) {
                Ok(Filtered::Unchanged) => {}
                Ok(Filtered::Replaced(b)) => current = Some(b),
                Ok(Filtered::Dropped) => return Verdict::Drop,
                Err(e) => {
                    self.notices.push(format!(
                        "message could not be read by the response filters and was dropped: {e}"
                    ));
                    return Verdict::Drop;
                }
            }
        }
        current.map_or(Verdict::Keep, Verdict::Replace)
    }

    /// One SSE response chunk: the bytes to forward in its place (events completed so far).
    pub fn on_response_chunk(
        &mut self,
        cfg: &Config,
        chunk: &[u8],
        end_of_stream: bool,
        live: &dyn LiveDefinitions,
    ) -> Vec<u8> {
        if self.response.failed {
            return Vec::new();
        }
        let Some(mut splitter) = self.response.splitter.take() else {
            return chunk.to_vec();
        };
        let mut out = Vec::with_capacity(chunk.len());
        match splitter.push(chunk) {
            Ok(events) => {
                for event in events {
                    // The first bytes the client gets may not have been the stream's first: a
                    // BOM there would be dropped, so one starting with a BOM gets one more.
                    if !self.response.sse_started && out.is_empty() && event.starts_with_stray_bom()
                    {
                        out.extend_from_slice(b"\xEF\xBB\xBF");
                    }
                    // Comments, keep-alives, retry hints, and priming events (an `id` with an
                    // empty `data`, for resumption): nothing a client dispatches.
                    let data = match event.data() {
                        None | Some("") => {
                            match self.sealed_event_id(cfg, event.id()) {
                                Some(id) => {
                                    out.extend_from_slice(&event.rewritten(Some(&id), None))
                                }
                                None => out.extend_from_slice(event.raw()),
                            }
                            continue;
                        }
                        Some(d) => d,
                    };
                    // Clients dispatch only `message` events: another type is never read by
                    // them, so it must not stand for (or claim) an answer either.
                    let verdict = if !matches!(event.event_type(), None | Some("" | "message")) {
                        self.notices
                            .push("upstream event of a type clients ignore dropped".into());
                        Verdict::Drop
                    } else {
                        match self.messages(cfg, data.as_bytes(), live) {
                            Ok(v) => v,
                            Err(e) => {
                                self.notices.push(format!("upstream event dropped: {e}"));
                                Verdict::Drop
                            }
                        }
                    };
                    // Sealed after the verdict: it carries what the stream still owes.
                    let sealed = self.sealed_event_id(cfg, event.id());
                    match verdict {
                        Verdict::Keep => match &sealed {
                            Some(id) => out.extend_from_slice(&event.rewritten(Some(id), None)),
                            None => out.extend_from_slice(event.raw()),
                        },
                        Verdict::Replace(b) => out.extend_from_slice(
                            &event.rewritten(sealed.as_deref(), Some(&String::from_utf8_lossy(&b))),
                        ),
                        Verdict::Drop => {
                            // The id still moves the client's resumption point forward.
                            let id = sealed.as_deref().or(event.id());
                            if let Some(id) = id.filter(|id| !id.contains(['\r', '\n'])) {
                                out.extend_from_slice(b"id: ");
                                out.extend_from_slice(id.as_bytes());
                                out.extend_from_slice(b"\n\n");
                            }
                        }
                    }
                }
            }
            Err(e) => {
                self.notices
                    .push(format!("SSE stream ended by the gateway: {e:?}"));
                self.response.failed = true;
                return out;
            }
        }
        if !end_of_stream {
            self.response.splitter = Some(splitter);
        }
        self.response.sse_started |= !out.is_empty();
        // At the end, an unfinished event is discarded by clients; unchecked, it is not sent.
        out
    }

    /// The keys that seal event ids (the session keys), if any.
    fn key_ring<'c>(&self, cfg: &'c Config) -> Option<&'c dyn KeyRing> {
        // Whenever sessions are sealed (identity on), so are event ids.
        cfg.sessions.as_ref().map(|k| k as &dyn KeyRing)
    }

    /// The id the client sees for an upstream event id: sealed with what the stream still owes
    /// (`None`: no id, an id reset, or no keys to seal with: the id passes as it is).
    fn sealed_event_id(&self, cfg: &Config, id: Option<&str>) -> Option<String> {
        let id = id.filter(|id| !id.is_empty())?;
        let keys = cfg.sessions.as_ref()?;
        let owner = self.owner();
        seal_event_id(
            keys,
            &EventBinding {
                event_id: id.to_string(),
                // Valid for `sessions.max_age_seconds` from the request that opened the stream.
                owner: keys.owner_record(&owner.of_session(&self.server), self.now),
                outstanding: self.response.outstanding.unanswered(),
            },
        )
    }

    /// A stream resumed with `Last-Event-ID`: the upstream gets its own event id back and the
    /// stream may carry the answers the sealed id says it still owes. Without keys the header
    /// passes as it is (and the resumed stream answers nothing).
    pub(super) fn resume(&mut self, cfg: &Config, last_event_id: &str) -> Result<(), Rejection> {
        let Some(ring) = self.key_ring(cfg) else {
            return Ok(());
        };
        let owner = self.owner();
        let binding = open_event_id(
            ring,
            last_event_id,
            &owner.of_session(&self.server),
            self.now,
        )
        .map_err(|e| match e {
            ResumeError::Unknown => Rejection::new(
                Reason::InvalidHeader,
                "Last-Event-ID is not an event id this gateway handed out",
            )
            .with_rule("resume.unknown_event_id"),
            ResumeError::Expired => Rejection::new(
                Reason::InvalidHeader,
                "Last-Event-ID has expired (sessions.max_age_seconds)",
            )
            .with_rule("resume.expired"),
            ResumeError::Foreign => Rejection::new(
                Reason::SessionForbidden,
                "this stream belongs to another caller",
            )
            .with_rule("resume.owner"),
        })?;
        self.edits
            .push(HeaderEdit::Set("last-event-id".into(), binding.event_id));
        self.response.outstanding = binding.outstanding;
        Ok(())
    }

    fn filter_list(
        &mut self,
        cfg: &Config,
        kind: ListKind,
        id: &Value,
        message: &[u8],
        live: &dyn LiveDefinitions,
    ) -> Result<Option<Vec<u8>>, crate::response::lists::ListError> {
        let Some(policy) = &cfg.policy else {
            return Ok(None);
        };
        let identity = self.identity.as_deref();
        let server = self.server.as_str();
        let now = self.now;
        let mut notices = Vec::new();
        let mut keep = |name: &str, item: &ListItem<'_>| -> bool {
            let (method, target, hash) = match kind {
                ListKind::Tools => {
                    // Only a pinned tool can be refused for a changed definition: only its
                    // definition is hashed, and its live hash recorded (shared by all workers).
                    let hash = policy.registry().pinned_hash(server, name).map(|pinned| {
                        // An item that does not parse (never: the reader checked it) gets no
                        // hash, so it cannot match its pin and is withheld.
                        let hash = item
                            .value()
                            .map(|v| tool_definition_hash(&v))
                            .unwrap_or_default();
                        if pinned != hash {
                            notices.push(format!(
                                "tool `{name}` on `{server}` changed since approval: pinned {pinned}, live {hash}; withheld"
                            ));
                        }
                        live.put(server, name, &hash);
                        hash
                    });
                    (
                        "tools/call",
                        crate::jsonrpc::Target::Tool(name.to_string()),
                        hash,
                    )
                }
                ListKind::Prompts => (
                    "prompts/get",
                    crate::jsonrpc::Target::Prompt(name.to_string()),
                    None,
                ),
                ListKind::Resources | ListKind::ResourceTemplates => (
                    "resources/read",
                    crate::jsonrpc::Target::Resource(name.to_string()),
                    None,
                ),
            };
            // A resource the client could not read by that text (it is not in normal form, so a
            // read would be refused) is not shown either: what is listed is what was decided.
            if matches!(kind, ListKind::Resources | ListKind::ResourceTemplates)
                && crate::jsonrpc::uri::check(name).is_err()
            {
                return false;
            }
            // Only whether it is shown matters: no reason is written for a hidden item.
            policy.allows(&Facts {
                identity,
                server,
                method,
                target: &target,
                arguments: None,
                live_hash: hash.as_deref(),
                now,
                purpose: Purpose::Listing,
            })
        };
        let result = filter_message(kind, message, id, &mut keep);
        self.notices.extend(notices);
        result
    }
}

/// Whether a body is made of JSON-RPC messages only (one, or a batch).
fn is_jsonrpc(body: &[u8]) -> bool {
    match split(body) {
        Ok(Messages::Single(m)) => classify(m).is_ok(),
        Ok(Messages::Batch(items)) => {
            !items.is_empty() && items.iter().all(|m| classify(m.get().as_bytes()).is_ok())
        }
        Err(_) => false,
    }
}

/// What a client sees in place of an upstream error text the response filters withheld.
const WITHHELD_TEXT: &str =
    "[mcp-warden: the upstream's error text was withheld by the response filters]";

/// What replaces an upstream answer that cannot be checked (it is not forwarded).
fn unreadable_answer_body(id: &Value, e: &dyn std::fmt::Display) -> Vec<u8> {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": -32603, "message": "Internal error", "data": {"reason": "unreadable_upstream_answer", "detail": e.to_string()}}
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests;
