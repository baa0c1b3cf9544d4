#![no_main]
//! See `mcp_warden_core::fuzzing::sse`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_warden_core::fuzzing::sse(data));
