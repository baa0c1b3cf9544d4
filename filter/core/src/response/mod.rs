//! The response path: what the filter does to an upstream answer.
//!
//! Every message of every answer is classified by [`answers::classify`] and filtered for what it
//! is (the driver is `pipeline/response.rs`): an answer only if it answers an
//! [`answers::Outstanding`] request of its stream, a list answer through [`lists`] (the same
//! policy decision that guards `tools/call`, so a hidden tool is also a refused one), and, with
//! `response_filters`, every message through [`content`] (redaction, injected-instruction
//! markers).
//!
//! - **`application/json` response** (any status): buffered to its end, read as one message or
//!   a batch, each message judged on its own.
//! - **`text/event-stream` response** (2xx): chunks go to an [`sse::SseSplitter`]; each complete
//!   event is judged as it arrives (no delay beyond one event). Events without data (comments,
//!   retry hints, priming events) pass; events of a type other than `message` are dropped (clients
//!   do not dispatch them). Their ids are sealed by [`resume`] when keys are configured, so a
//!   stream resumed with `Last-Event-ID` knows what it still owes. An unfinished event at the end
//!   is never sent; an event over the size limit ends the stream.
//! - Any other 2xx body is not MCP (replaced); any other error body is text (filtered).
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
