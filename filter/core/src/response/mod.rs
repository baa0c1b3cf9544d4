//! The response path: what the filter does to an upstream answer.
//!
//! The filter remembers the method and the id of the request it forwarded. The answer to a
//! list request (`tools/list`, `prompts/list`, `resources/list`, `resources/templates/list`,
//! see [`lists::ListKind::from_method`]) is filtered by the policy; with `response_filters`
//! configured, every answer (JSON, SSE, the GET stream) also goes through [`content`]
//! (redaction, injected-instruction markers). Without them, everything else passes untouched.
//!
//! - **`application/json` response**: the body is buffered to its end and handed once to
//!   [`lists::filter_message`] with the request id and the keep decision (the same policy
//!   decision that guards `tools/call`, so a hidden tool is also a refused one). `Ok(Some(bytes))`
//!   replaces the body (drop `content-length` in the response headers first), `Ok(None)` forwards
//!   it as it was, an error means the answer cannot be checked and must not reach the client.
//! - **`text/event-stream` response**: chunks go to an [`sse::SseSplitter`] as they arrive.
//!   Each completed [`sse::SseEvent`] whose [`data`](sse::SseEvent::data) is the response to the
//!   list request (`filter_message` returns `Ok(Some(json))`) is replaced by
//!   [`SseEvent::with_data(json)`](sse::SseEvent::with_data); every other event (notifications,
//!   server requests, comments/keep-alives, responses to other ids) is forwarded as its exact
//!   [`raw`](sse::SseEvent::raw) bytes the moment it is complete, so streaming gains no delay
//!   beyond one event. Bytes of an unfinished event are held until its blank line; at end of
//!   stream [`SseSplitter::finish`](sse::SseSplitter::finish) returns them (clients discard an
//!   unterminated event, so forwarding or dropping them is equivalent).
//!   An event over the size limit ([`sse::SseError::EventTooLarge`]) ends the stream: the rest
//!   cannot be framed safely.
//!
//! [`tool_hash::tool_definition_hash`] fingerprints each tool of a `tools/list` answer (from the
//! keep callback, which sees every item) so a definition that changes after it was trusted can be
//! noticed.

pub mod answers;
pub mod content;
pub mod lists;
pub mod resume;
pub mod sse;
pub mod tool_hash;
