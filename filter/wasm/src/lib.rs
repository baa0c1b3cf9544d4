//! mcp-warden as a proxy-wasm HTTP filter: the thin glue between Envoy and `mcp-warden-core`.
//!
//! Each callback reads what Envoy offers through `proxy_wasm::hostcalls` (which return
//! `Result`s instead of panicking), hands it to the core's [`RequestFlow`] and carries out the
//! step it returns. A host call that fails ends the request with a local 500: fail closed.

use log::{error, info, warn};
use mcp_warden_core::audit;
use mcp_warden_core::config::Config;
use mcp_warden_core::error::{Reason, Rejection, Reply};
use mcp_warden_core::identity::attestation::AttestationCache;
use mcp_warden_core::identity::metadata::{ClaimSource, HostError};
use mcp_warden_core::pipeline::{
    BodyStep, HeaderEdit, Outcome, RequestContext, RequestFlow, ResponseMode, Step,
};
use mcp_warden_core::registry::LiveDefinitions;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(WardenRoot {
            config: Rc::new(Config::default()),
            attestation_cache: Rc::new(RefCell::new(AttestationCache::default())),
        })
    });
}}

/// Plugin-wide state (per worker VM): the compiled configuration and caches.
struct WardenRoot {
    config: Rc<Config>,
    attestation_cache: Rc<RefCell<AttestationCache>>,
}

impl Context for WardenRoot {}

impl RootContext for WardenRoot {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let raw = match hostcalls::get_buffer(
            BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        ) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                error!("mcp-warden: cannot read the plugin configuration: {status:?}");
                return false;
            }
        };
        match Config::from_json(&raw) {
            Ok(config) => {
                info!(
                    "mcp-warden: configured (max_body_bytes={}, max_json_depth={}, protocol_versions={})",
                    config.max_body_bytes,
                    config.max_json_depth,
                    config.protocol_versions.join(",")
                );
                self.config = Rc::new(config);
                true
            }
            Err(e) => {
                // Envoy refuses the plugin when on_configure returns false; say why.
                error!("{e}");
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(WardenHttp {
            config: Rc::clone(&self.config),
            attestation_cache: Rc::clone(&self.attestation_cache),
            flow: RequestFlow::new(),
            context_id,
            buffered: 0,
            response_mode: ResponseMode::Untouched,
            audited: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Per-request state.
struct WardenHttp {
    config: Rc<Config>,
    attestation_cache: Rc<RefCell<AttestationCache>>,
    flow: RequestFlow,
    context_id: u32,
    /// Size of the request body buffered so far.
    buffered: usize,
    /// What the response body needs.
    response_mode: ResponseMode,
    /// Whether the audit record was written.
    audited: bool,
}

impl Context for WardenHttp {}

impl WardenHttp {
    fn audit(&mut self) {
        if !self.audited && !matches!(self.flow.outcome(), Outcome::Pending) {
            self.audited = true;
            info!("mcp-warden audit {}", audit::record(&self.flow));
        }
    }

    fn log_notices(&mut self) {
        for notice in self.flow.take_notices() {
            warn!("mcp-warden: request {}: {notice}", self.context_id);
        }
    }

    fn apply(&mut self, step: Step) -> Action {
        if step != Step::Pause {
            self.audit();
        }
        match step {
            Step::Continue => Action::Continue,
            Step::Pause => Action::Pause,
            Step::Reply(reply) => {
                if let Outcome::Rejected(r) = self.flow.outcome() {
                    warn!(
                        "mcp-warden: request {} refused: status={} reason={} detail={}",
                        self.context_id,
                        reply.status,
                        r.reason.as_str(),
                        r.detail
                    );
                }
                self.send(&reply);
                Action::Pause
            }
        }
    }

    fn send(&self, reply: &Reply) {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Err(status) = hostcalls::send_http_response(reply.status, headers, Some(&reply.body))
        {
            error!(
                "mcp-warden: request {}: cannot send local reply: {status:?}",
                self.context_id
            );
        }
    }

    fn host_failure(&mut self, what: &str) -> Action {
        error!(
            "mcp-warden: request {}: host call failed: {what}",
            self.context_id
        );
        self.send(&Rejection::new(Reason::Internal, "gateway error").to_reply());
        Action::Pause
    }

    fn body_step(&mut self, step: BodyStep) -> Action {
        match step {
            BodyStep::Step(step) => self.apply(step),
            BodyStep::ReadBody(size) => {
                let body = match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size) {
                    Ok(b) => b.unwrap_or_default(),
                    Err(_) => return self.host_failure("get request body"),
                };
                let step = self.flow.on_body(&self.config, &body, &SharedDefinitions);
                self.apply(step)
            }
        }
    }
}

/// Live tool definition hashes in Envoy's shared data (visible to every worker of this VM id).
struct SharedDefinitions;

impl SharedDefinitions {
    fn key(server: &str, tool: &str) -> String {
        // Length-prefixed server name: unambiguous whatever characters the names hold.
        format!("mcp-warden/tool-def/{}:{server}/{tool}", server.len())
    }
}

impl LiveDefinitions for SharedDefinitions {
    fn get(&self, server: &str, tool: &str) -> Option<String> {
        match hostcalls::get_shared_data(&Self::key(server, tool)) {
            Ok((Some(bytes), _)) => String::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    fn put(&self, server: &str, tool: &str, hash: &str) {
        if hostcalls::set_shared_data(&Self::key(server, tool), Some(hash.as_bytes()), None)
            .is_err()
        {
            warn!("mcp-warden: cannot record the definition of tool {tool} on {server}");
        }
    }
}

/// jwt_authn's verified payloads, read from Envoy's dynamic metadata.
struct JwtAuthnMetadata;

impl ClaimSource for JwtAuthnMetadata {
    fn get(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        let mut full = vec![
            "metadata",
            "filter_metadata",
            "envoy.filters.http.jwt_authn",
        ];
        full.extend_from_slice(path);
        hostcalls::get_property(full).map_err(|s| HostError(format!("get_property: {s:?}")))
    }
}

impl HttpContext for WardenHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let headers = match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
            Ok(h) => h,
            Err(_) => return self.host_failure("get request headers"),
        };
        let now = match hostcalls::get_current_time() {
            Ok(t) => t
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            Err(_) => return self.host_failure("get current time"),
        };
        let step = {
            let Ok(mut cache) = self.attestation_cache.try_borrow_mut() else {
                return self.host_failure("attestation cache busy");
            };
            let ctx = RequestContext {
                claims: &JwtAuthnMetadata,
                attestation_cache: &mut cache,
                now,
            };
            self.flow
                .on_request_headers(&self.config, &headers, end_of_stream, ctx)
        };
        for edit in self.flow.take_header_edits() {
            let result = match &edit {
                HeaderEdit::Remove(name) => {
                    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None)
                }
                HeaderEdit::Set(name, value) => {
                    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
                }
            };
            if result.is_err() {
                return self.host_failure("edit request headers");
            }
        }
        self.apply(step)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.buffered = body_size;
        let step = self
            .flow
            .on_request_body(&self.config, body_size, end_of_stream);
        self.body_step(step)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let headers = match hostcalls::get_map_bytes(MapType::HttpResponseHeaders) {
            Ok(h) => h,
            Err(_) => return self.host_failure("get response headers"),
        };
        self.response_mode = self.flow.on_response_headers(&self.config, &headers);
        if self.response_mode != ResponseMode::Untouched
            && hostcalls::set_map_value(MapType::HttpResponseHeaders, "content-length", None)
                .is_err()
        {
            error!(
                "mcp-warden: request {}: cannot drop content-length",
                self.context_id
            );
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match self.response_mode {
            ResponseMode::Untouched => Action::Continue,
            ResponseMode::BufferJson if !end_of_stream => Action::Pause,
            ResponseMode::BufferJson => {
                let body = match hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size) {
                    Ok(b) => b.unwrap_or_default(),
                    Err(_) => return self.host_failure("get response body"),
                };
                let replacement =
                    self.flow
                        .on_response_json(&self.config, &body, &SharedDefinitions);
                self.log_notices();
                if let Some(new) = replacement {
                    if hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &new)
                        .is_err()
                    {
                        error!(
                            "mcp-warden: request {}: cannot rewrite the list answer",
                            self.context_id
                        );
                    }
                }
                Action::Continue
            }
            ResponseMode::StreamSse => {
                let chunk = match hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
                {
                    Ok(b) => b.unwrap_or_default(),
                    Err(_) => return self.host_failure("get response body"),
                };
                let out = self.flow.on_response_chunk(
                    &self.config,
                    &chunk,
                    end_of_stream,
                    &SharedDefinitions,
                );
                self.log_notices();
                if out != chunk
                    && hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &out)
                        .is_err()
                {
                    error!(
                        "mcp-warden: request {}: cannot rewrite the event stream",
                        self.context_id
                    );
                }
                Action::Continue
            }
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // With HTTP/2 trailers the last body callback may not say end_of_stream: finish here.
        let step = self.flow.on_request_trailers(&self.config, self.buffered);
        self.body_step(step)
    }
}
