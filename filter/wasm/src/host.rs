//! Envoy's host calls (proxy-wasm ABI 0.2.1), made directly (all but the callout).
//!
//! The SDK's wrappers in `proxy_wasm::hostcalls` panic on any status they do not expect (a
//! header map that is no longer writable, a buffer that went away, a log call the host
//! refuses), and a panic traps the VM: with `FAIL_CLOSED` every later request of that worker
//! fails. Here every status other than Ok is a [`HostCallError`] that the adapter answers like
//! any other failure: the request is refused, or the response stream is closed.

use mcp_warden_core::audit::escape::log_safe;
use proxy_wasm::types::{BufferType, MapType};
use std::fmt;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// The ABI's Ok and NotFound statuses.
const OK: u32 = 0;
const NOT_FOUND: u32 = 1;

/// `proxy_continue_stream` / `proxy_close_stream` stream types.
const REQUEST_STREAM: u32 = 0;
const RESPONSE_STREAM: u32 = 1;

/// A host call that returned a status other than the ones it may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCallError {
    /// The host call, e.g. `proxy_replace_header_map_value`.
    pub call: &'static str,
    /// The status it returned (proxy-wasm `WasmResult`: 1 NotFound, 2 BadArgument, …).
    pub status: u32,
}

impl fmt::Display for HostCallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} returned status {}", self.call, self.status)
    }
}

/// Ok, or the error naming the call.
fn check(call: &'static str, status: u32) -> Result<(), HostCallError> {
    if status == OK {
        Ok(())
    } else {
        Err(HostCallError { call, status })
    }
}

/// Bytes the host returned through a (pointer, size) pair: owned here from now on.
///
/// # Safety
/// `data` is null, or a buffer of exactly `size` bytes that the host obtained from this
/// module's `proxy_on_memory_allocate` (the SDK's: a boxed slice of that length) and handed
/// over with the call that just returned Ok.
unsafe fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

/// A call that returns bytes: Ok(Some(bytes)), Ok(None) when `not_found_is_none` and the host
/// says NotFound, an error otherwise.
fn bytes_call(
    call: &'static str,
    not_found_is_none: bool,
    f: impl FnOnce(*mut *mut u8, *mut usize) -> u32,
) -> Result<Option<Vec<u8>>, HostCallError> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    let status = f(&mut data, &mut size);
    if status == NOT_FOUND && not_found_is_none {
        return Ok(None);
    }
    check(call, status)?;
    // SAFETY: the call returned Ok; see `take`.
    Ok(Some(unsafe { take(data, size) }))
}

/// Writes a log line; a refused log call is dropped (there is nowhere else to say it).
pub fn log(level: u32, message: &str) {
    // SAFETY: pointer and length of a live str.
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// Envoy's current log level for wasm (0 trace … 5 critical).
pub fn log_level() -> Result<u32, HostCallError> {
    let mut level = 0u32;
    // SAFETY: the host writes one u32 into `level`.
    check("proxy_get_log_level", unsafe {
        proxy_get_log_level(&mut level)
    })?;
    Ok(level)
}

/// Seconds since the Unix epoch, by the host's clock.
pub fn now_seconds() -> Result<u64, HostCallError> {
    let mut nanos = 0u64;
    // SAFETY: the host writes one u64 into `nanos`.
    check("proxy_get_current_time_nanoseconds", unsafe {
        proxy_get_current_time_nanoseconds(&mut nanos)
    })?;
    Ok(nanos / 1_000_000_000)
}

/// Asks for `on_tick` every `millis` milliseconds.
pub fn set_tick_period(millis: u32) -> Result<(), HostCallError> {
    // SAFETY: a plain host call with an integer argument.
    check("proxy_set_tick_period_milliseconds", unsafe {
        proxy_set_tick_period_milliseconds(millis)
    })
}

/// Makes the next host calls act on the stream of `context_id`.
pub fn set_effective_context(context_id: u32) -> Result<(), HostCallError> {
    // SAFETY: a plain host call with an integer argument.
    check("proxy_set_effective_context", unsafe {
        proxy_set_effective_context(context_id)
    })
}

/// Resumes the current request.
pub fn continue_request() -> Result<(), HostCallError> {
    // SAFETY: a plain host call with an integer argument.
    check("proxy_continue_stream", unsafe {
        proxy_continue_stream(REQUEST_STREAM)
    })
}

/// Resets the current request's stream: nothing more of it goes anywhere.
pub fn close_request() -> Result<(), HostCallError> {
    // SAFETY: a plain host call with an integer argument.
    check("proxy_close_stream", unsafe {
        proxy_close_stream(REQUEST_STREAM)
    })
}

/// Resets the current response's stream: the client gets no more of it (fail closed when a
/// response that must be rewritten cannot be).
pub fn close_response() -> Result<(), HostCallError> {
    // SAFETY: a plain host call with an integer argument.
    check("proxy_close_stream", unsafe {
        proxy_close_stream(RESPONSE_STREAM)
    })
}

/// The first `max` bytes of a buffer the host said has them (`max` from the callback's size).
/// NotFound is an error: a body the filter was told about and cannot read must not pass
/// unread (the host would forward its own copy).
pub fn get_buffer(buffer: BufferType, max: usize) -> Result<Vec<u8>, HostCallError> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let got = bytes_call("proxy_get_buffer_bytes", false, |data, size| {
        // SAFETY: the host writes a pointer and a size (see `take`).
        unsafe { proxy_get_buffer_bytes(buffer as u32, 0, max, data, size) }
    })?;
    Ok(got.unwrap_or_default())
}

/// Replaces the first `size` bytes of a buffer with `data`.
pub fn set_buffer(buffer: BufferType, size: usize, data: &[u8]) -> Result<(), HostCallError> {
    // SAFETY: pointer and length of a live slice.
    check("proxy_set_buffer_bytes", unsafe {
        proxy_set_buffer_bytes(buffer as u32, 0, size, data.as_ptr(), data.len())
    })
}

/// A whole header map, serialised (see `header_map::split`); empty when the host has none.
pub fn get_header_pairs(map: MapType) -> Result<Vec<u8>, HostCallError> {
    let got = bytes_call("proxy_get_header_map_pairs", false, |data, size| {
        // SAFETY: the host writes a pointer and a size (see `take`).
        unsafe { proxy_get_header_map_pairs(map as u32, data, size) }
    })?;
    Ok(got.unwrap_or_default())
}

/// One header's value; None when the map does not have it.
pub fn get_header(map: MapType, name: &str) -> Result<Option<Vec<u8>>, HostCallError> {
    bytes_call("proxy_get_header_map_value", true, |data, size| {
        // SAFETY: pointer and length of a live str; the host writes a pointer and a size.
        unsafe { proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), data, size) }
    })
}

/// Sets a header (replacing every value it had), or removes it (`None`).
pub fn set_header(map: MapType, name: &str, value: Option<&str>) -> Result<(), HostCallError> {
    match value {
        // SAFETY: pointers and lengths of live strs.
        Some(v) => check("proxy_replace_header_map_value", unsafe {
            proxy_replace_header_map_value(
                map as u32,
                name.as_ptr(),
                name.len(),
                v.as_ptr(),
                v.len(),
            )
        }),
        // SAFETY: pointer and length of a live str.
        None => check("proxy_remove_header_map_value", unsafe {
            proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len())
        }),
    }
}

/// An Envoy property (path segments joined by NUL); None when Envoy does not have it.
pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, HostCallError> {
    let joined = path.join("\u{0}");
    bytes_call("proxy_get_property", true, |data, size| {
        // SAFETY: pointer and length of a live String; the host writes a pointer and a size.
        unsafe { proxy_get_property(joined.as_ptr(), joined.len(), data, size) }
    })
}

/// A value of the VM's shared data; None when there is none.
pub fn get_shared(key: &str) -> Result<Option<Vec<u8>>, HostCallError> {
    let mut cas = 0u32;
    bytes_call("proxy_get_shared_data", true, |data, size| {
        // SAFETY: pointer and length of a live str; the host writes a pointer, a size and a u32.
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), data, size, &mut cas) }
    })
}

/// Stores a value in the VM's shared data (last writer wins).
pub fn set_shared(key: &str, value: &[u8]) -> Result<(), HostCallError> {
    // SAFETY: pointers and lengths of live slices.
    check("proxy_set_shared_data", unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), 0)
    })
}

/// proxy-wasm `WasmResult::CasMismatch`.
pub const CAS_MISMATCH: u32 = 8;

/// Stores a value in the VM's shared data only if the key does not exist yet: Envoy ignores
/// the CAS of a new key and refuses (CasMismatch) a write to an existing one whose CAS differs,
/// and no entry has the CAS `u32::MAX` before 2^32 - 1 writes.
pub fn create_shared(key: &str, value: &[u8]) -> Result<(), HostCallError> {
    // SAFETY: pointers and lengths of live slices.
    check("proxy_set_shared_data", unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            u32::MAX,
        )
    })
}

/// Answers the current request locally (nothing reaches the upstream).
pub fn send_local_reply(
    status: u32,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), HostCallError> {
    let pairs = crate::header_map::join(headers);
    // SAFETY: pointers and lengths of live slices; no details string; -1: not gRPC.
    check("proxy_send_local_response", unsafe {
        proxy_send_local_response(
            status,
            std::ptr::null(),
            0,
            body.as_ptr(),
            body.len(),
            pairs.as_ptr(),
            pairs.len(),
            -1,
        )
    })
}

/// Calls a cluster (`on_http_call_response` gets the answer); the call's token.
///
/// The one call made through the SDK: its dispatcher must know the token to deliver the answer
/// (an answer to a token it does not know panics). Its wrapper panics only on statuses other
/// than Ok, BadArgument and InternalFailure, which are the ones Envoy returns for this call.
pub fn http_call(
    cluster: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout_ms: u64,
) -> Result<u32, HostCallError> {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    proxy_wasm::hostcalls::dispatch_http_call(
        cluster,
        headers,
        Some(body),
        vec![],
        std::time::Duration::from_millis(timeout_ms),
    )
    .map_err(|status| HostCallError {
        call: "proxy_http_call",
        status: status as u32,
    })
}

/// The `log` crate's logger, writing through `proxy_log` (the SDK's panics if the host
/// refuses a line). Installed once per VM, with a panic hook that logs the same way.
pub struct HostLogger;

static LOGGER: HostLogger = HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => 0,
            log::Level::Debug => 1,
            log::Level::Info => 2,
            log::Level::Warn => 3,
            log::Level::Error => 4,
        };
        // Whatever a line holds, it stays one line (names and details come from clients,
        // servers and token services).
        log(level, &log_safe(&record.args().to_string()));
    }

    fn flush(&self) {}
}

/// Routes `log` and panic messages to Envoy's log (critical for a panic, which traps the VM).
pub fn install_logger() {
    // Only fails when a logger is already set: this VM's, from an earlier start.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    std::panic::set_hook(Box::new(|info| log(5, &log_safe(&info.to_string()))));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ok_is_ok_and_errors_name_the_call() {
        assert_eq!(check("proxy_log", 0), Ok(()));
        for status in 1..=13 {
            let e = check("proxy_close_stream", status).unwrap_err();
            assert_eq!(e.status, status);
            assert_eq!(
                e.to_string(),
                format!("proxy_close_stream returned status {status}")
            );
        }
    }

    #[test]
    fn not_found_is_none_only_where_the_call_may_say_so() {
        assert_eq!(bytes_call("c", true, |_, _| NOT_FOUND), Ok(None));
        assert_eq!(
            bytes_call("c", false, |_, _| NOT_FOUND),
            Err(HostCallError {
                call: "c",
                status: NOT_FOUND
            })
        );
        assert_eq!(
            bytes_call("c", true, |_, _| 2),
            Err(HostCallError {
                call: "c",
                status: 2
            })
        );
        // Ok without a buffer: empty.
        assert_eq!(bytes_call("c", true, |_, _| OK), Ok(Some(Vec::new())));
    }
}
