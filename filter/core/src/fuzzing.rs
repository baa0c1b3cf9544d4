//! Fuzz target bodies, shared by the `cargo fuzz` targets (`fuzz/`, feature `fuzzing`) and the
//! bounded property run of `cargo test` ([`smoke`], on every unit test run).
//!
//! Each target takes arbitrary bytes and checks properties, not only the absence of a panic: a
//! broken property panics with what was seen, which libFuzzer (or the smoke test) reports with
//! the input. Targets that need several inputs (a policy and the facts to decide, a token and
//! what to seal) cut the bytes at [`SEP`] (0xFF, a byte no UTF-8 text holds).
//!
//! | target | what | properties |
//! |---|---|---|
//! | `json` | `parse_strict`, `parse_body`, `parse_payload` | agree with each other and with a reference reader: duplicates never silently accepted, depth limit exact, a decided tool name is what any parser reads |
//! | `sse` | `SseSplitter` | any chunking gives the same events; raw bytes concatenate back to the input; a rewritten event reads back the same |
//! | `answers` | `classify`, `split`, `Outstanding` | a message is accepted only with known members, no duplicate, `jsonrpc: "2.0"`, and the kind its members say |
//! | `lists` | `filter_message` | never forwards an item the keep decision refused, nor an answer it did not filter; only the list changes |
//! | `content` | `ResponseFilters::filter` | nothing left to redact or withhold in what it forwards; flagged text stays between unforgeable markers |
//! | `claims` | metadata decoding, `read_user`, `read_agent` | the pairs encoding is read canonically; JSON claims read back as written |
//! | `unseal` | session ids, sealed tokens, SSE event ids | arbitrary or altered tokens never open; sealed ones open for their owner only |
//! | `policy` | `RawPolicy::compile`, `Policy::decide` | the indexed decision equals a plain scan of the rules; `decide` and `allows` agree; a call allowed is listed |
//! | `flow` | a whole `RequestFlow` | no panic; a tool list answered to a `tools/list` only shows allowed tools, on JSON and SSE answers |
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod answers;
mod flow;
mod identity;
mod requests;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod smoke;

pub use answers::{answers, content, lists, sse};
pub use flow::flow;
pub use identity::{claims, unseal};
pub use requests::{json, policy};

/// Separates the inputs of a target that needs several.
pub const SEP: u8 = 0xFF;

/// A fuzz target body.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `cargo fuzz` target and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("json", json),
    ("sse", sse),
    ("answers", answers),
    ("lists", lists),
    ("content", content),
    ("claims", claims),
    ("unseal", unseal),
    ("policy", policy),
    ("flow", flow),
];

/// The inputs of a target, cut at [`SEP`]; a missing one is empty.
pub(crate) struct Parts<'a>(Vec<&'a [u8]>);

impl<'a> Parts<'a> {
    pub(crate) fn of(data: &'a [u8]) -> Parts<'a> {
        Parts(data.split(|&b| b == SEP).collect())
    }

    /// Input `i` as bytes.
    pub(crate) fn bytes(&self, i: usize) -> &'a [u8] {
        self.0.get(i).copied().unwrap_or_default()
    }

    /// Input `i` as text (invalid UTF-8 replaced).
    pub(crate) fn text(&self, i: usize) -> String {
        String::from_utf8_lossy(self.bytes(i)).into_owned()
    }

    /// The first byte of input `i` (0 when empty).
    pub(crate) fn byte(&self, i: usize) -> u8 {
        self.bytes(i).first().copied().unwrap_or(0)
    }

    /// How many inputs there are.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Shows bytes in a failure message.
pub(crate) fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}
