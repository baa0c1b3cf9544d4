//! `warden`: the mcp-warden command line. It checks, tests, compiles and pins policy bundles
//! with the filter's own code (`mcp-warden-core`), so what passes here is what Envoy accepts
//! and what the filter decides.

pub mod bundle;
pub mod cases;
pub mod check;
pub mod envoy;
pub mod example_secrets;
pub mod jwt_authn;
pub mod pin;
pub mod problem;
