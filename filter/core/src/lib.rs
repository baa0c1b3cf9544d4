//! mcp-warden-core: everything mcp-warden knows about MCP, with no proxy-wasm dependency.
//!
//! The adapter (`filter/wasm`) reads what Envoy hands it, feeds it to [`pipeline::RequestFlow`]
//! and carries out the returned [`pipeline::Step`]. Every module here is unit-tested natively
//! and under `wasm32` (wasm-bindgen-test).

pub mod audit;
pub mod config;
pub mod cookies;
pub mod error;
pub mod exchange;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod identity;
pub mod json;
pub mod jsonrpc;
pub mod pipeline;
pub mod policy;
pub mod registry;
pub mod response;
pub mod routing;
pub mod sealing;
pub mod secrets;
pub mod sessions;
pub mod transport;
