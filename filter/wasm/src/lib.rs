//! mcp-warden as a proxy-wasm HTTP filter: the thin glue between Envoy and `mcp-warden-core`.
//!
//! Each callback reads what Envoy offers through `proxy_wasm::hostcalls` (which return
//! `Result`s instead of panicking), hands it to the core's [`RequestFlow`] and carries out the
//! step it returns. A host call that fails ends the request with a local 500: fail closed.

use log::{error, info, warn};
use mcp_warden_core::audit;
use mcp_warden_core::config::Config;
use mcp_warden_core::error::{Reason, Rejection, Reply, RpcId};
use mcp_warden_core::exchange::{Begin, ExchangeState, Issued};
use mcp_warden_core::identity::attestation::AttestationCache;
use mcp_warden_core::identity::metadata::{ClaimSource, HostError};
use mcp_warden_core::identity::IdentityCache;
use mcp_warden_core::pipeline::{
    BodyStep, HeaderEdit, Outcome, RequestContext, RequestFlow, ResponseFacts, ResponseMode, Step,
};
use mcp_warden_core::registry::LiveDefinitions;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

mod header_map;

#[link(wasm_import_module = "env")]
extern "C" {
    /// The raw host call behind `resume_http_request`, whose SDK wrapper panics on an
    /// unexpected status (e.g. a stream that went away while it waited).
    fn proxy_continue_stream(stream_type: u32) -> u32;
}

/// How often the worker re-reads Envoy's log level (`/logging?wasm=…` changes it at run time).
const LOG_LEVEL_REFRESH: Duration = Duration::from_secs(1);

/// Lets through only the log lines Envoy would write: audit records and other info lines are
/// not even formatted while Envoy's wasm logger is above `info`.
fn follow_envoy_log_level() {
    let filter = match hostcalls::get_log_level() {
        Ok(LogLevel::Trace) => log::LevelFilter::Trace,
        Ok(LogLevel::Debug) => log::LevelFilter::Debug,
        Ok(LogLevel::Info) | Err(_) => log::LevelFilter::Info,
        Ok(LogLevel::Warn) => log::LevelFilter::Warn,
        Ok(LogLevel::Error) | Ok(LogLevel::Critical) => log::LevelFilter::Error,
    };
    log::set_max_level(filter);
}

/// Resumes the current request; false if the host refused.
fn continue_request() -> bool {
    // SAFETY: a plain host call with an integer argument (StreamType::HttpRequest = 0).
    unsafe { proxy_continue_stream(0) == 0 }
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(WardenRoot {
            config: Rc::new(Config::default()),
            attestation_cache: Rc::new(RefCell::new(AttestationCache::default())),
            exchanges: Rc::new(RefCell::new(ExchangeState::default())),
            identities: Rc::new(RefCell::new(IdentityCache::default())),
        })
    });
}}

/// Plugin-wide state (per worker VM): the compiled configuration and caches.
struct WardenRoot {
    config: Rc<Config>,
    attestation_cache: Rc<RefCell<AttestationCache>>,
    exchanges: Rc<RefCell<ExchangeState>>,
    identities: Rc<RefCell<IdentityCache>>,
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
                follow_envoy_log_level();
                if hostcalls::set_tick_period(LOG_LEVEL_REFRESH).is_err() {
                    warn!("mcp-warden: no timer: the log level is read at start only");
                }
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

    fn on_tick(&mut self) {
        follow_envoy_log_level();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(WardenHttp {
            config: Rc::clone(&self.config),
            attestation_cache: Rc::clone(&self.attestation_cache),
            exchanges: Rc::clone(&self.exchanges),
            identities: Rc::clone(&self.identities),
            flow: RequestFlow::new(),
            context_id,
            buffered: 0,
            sts_call: None,
            now: 0,
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
    exchanges: Rc<RefCell<ExchangeState>>,
    identities: Rc<RefCell<IdentityCache>>,
    /// The STS call this request made: (callout token, exchange key).
    sts_call: Option<(u32, [u8; 32])>,
    /// Seconds since the epoch at the request's start.
    now: u64,
    flow: RequestFlow,
    context_id: u32,
    /// Size of the request body buffered so far.
    buffered: usize,
    /// What the response body needs.
    response_mode: ResponseMode,
    /// Whether the audit record was written.
    audited: bool,
}

impl Context for WardenHttp {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some((token, key)) = self.sts_call.take() else {
            error!(
                "mcp-warden: request {}: unexpected callout answer",
                self.context_id
            );
            return;
        };
        if token != token_id {
            error!(
                "mcp-warden: request {}: answer for another callout",
                self.context_id
            );
        }
        let status = match hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status") {
            Ok(Some(s)) => s.parse::<u32>().unwrap_or(0),
            _ => 0,
        };
        let body = match hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size) {
            Ok(b) => b.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let result = self.flow.read_sts_answer(status, &body);
        if let Err(r) = &result {
            warn!(
                "mcp-warden: request {}: token exchange failed: {} ({})",
                self.context_id,
                r.detail,
                r.rule.as_deref().unwrap_or("-")
            );
        }
        self.finish_exchange(key, result.clone());
        let step = self.flow.on_token(result.map(|i| i.access_token));
        if self.apply(step) == Action::Continue && !continue_request() {
            warn!(
                "mcp-warden: request {}: could not be resumed",
                self.context_id
            );
        }
    }
}

impl WardenHttp {
    fn audit(&mut self) {
        if self.config.audit_log
            && !self.audited
            && !matches!(self.flow.outcome(), Outcome::Pending)
            && log::log_enabled!(log::Level::Info)
        {
            self.audited = true;
            info!("mcp-warden audit {}", audit::record(&self.flow));
        }
    }

    fn log_notices(&mut self) {
        for notice in self.flow.take_notices() {
            warn!("mcp-warden: request {}: {notice}", self.context_id);
        }
    }

    fn apply_edits(&mut self) -> bool {
        edit_headers(MapType::HttpRequestHeaders, self.flow.take_header_edits())
    }

    fn need_token(&mut self, key: [u8; 32]) -> Action {
        let margin = self
            .config
            .token_exchange
            .as_ref()
            .map(|x| x.refresh_margin)
            .unwrap_or(0);
        let waiter = (self.context_id, self.flow.echo_id().map(|i| i.to_value()));
        let begin = {
            let Ok(mut state) = self.exchanges.try_borrow_mut() else {
                return self.host_failure("exchange state busy");
            };
            state.begin(&key, waiter, self.now, margin)
        };
        match begin {
            Begin::Cached(token) => {
                let step = self.flow.on_token(Ok(token));
                self.apply(step)
            }
            Begin::Wait => Action::Pause,
            Begin::Dispatch => {
                let call = match self.flow.sts_call(&self.config, u64::from(self.context_id)) {
                    Ok(call) => call,
                    Err(step) => {
                        self.finish_exchange(
                            key,
                            Err(Rejection::new(
                                Reason::Internal,
                                "cannot build the exchange",
                            )),
                        );
                        return self.apply(step);
                    }
                };
                let headers: Vec<(&str, &str)> = call
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                match hostcalls::dispatch_http_call(
                    &call.cluster,
                    headers,
                    Some(&call.body),
                    vec![],
                    Duration::from_millis(call.timeout_ms),
                ) {
                    Ok(token) => {
                        self.sts_call = Some((token, key));
                        Action::Pause
                    }
                    Err(status) => {
                        warn!(
                            "mcp-warden: request {}: cannot call the token service: {status:?}",
                            self.context_id
                        );
                        let result = self.flow.read_sts_answer(0, &[]);
                        self.finish_exchange(key, result.clone());
                        let step = self.flow.on_token(result.map(|i| i.access_token));
                        self.apply(step)
                    }
                }
            }
        }
    }

    /// Ends an exchange: caches it and resumes (or refuses) every request that waited for it.
    fn finish_exchange(&mut self, key: [u8; 32], result: Result<Issued, Rejection>) {
        let waiters = match self.exchanges.try_borrow_mut() {
            Ok(mut state) => state.finish(&key, &result, self.now),
            Err(_) => Vec::new(),
        };
        for (ctx, id) in waiters {
            if hostcalls::set_effective_context(ctx).is_err() {
                continue;
            }
            match &result {
                Ok(issued) => {
                    let bearer = format!("Bearer {}", issued.access_token);
                    if hostcalls::set_map_value(
                        MapType::HttpRequestHeaders,
                        "authorization",
                        Some(&bearer),
                    )
                    .is_err()
                        || !continue_request()
                    {
                        warn!("mcp-warden: request {ctx} could not be resumed after the token exchange");
                    }
                }
                Err(r) => {
                    let id = id.as_ref().and_then(RpcId::from_value);
                    let reply = r.clone().with_id(id).to_reply();
                    let headers: Vec<(&str, &str)> = reply
                        .headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    if hostcalls::send_http_response(reply.status, headers, Some(&reply.body))
                        .is_err()
                    {
                        warn!("mcp-warden: request {ctx} could not be refused after the failed exchange");
                    }
                }
            }
        }
        if hostcalls::set_effective_context(self.context_id).is_err() {
            error!(
                "mcp-warden: request {}: lost its own context",
                self.context_id
            );
        }
    }

    fn apply(&mut self, step: Step) -> Action {
        if !self.apply_edits() {
            return self.host_failure("edit request headers");
        }
        if let Step::NeedToken(key) = step {
            return self.need_token(key);
        }
        if step != Step::Pause {
            self.audit();
        }
        match step {
            Step::NeedToken(_) => Action::Pause,
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

/// Applies header edits to a header map; false if any of them failed (all are attempted).
fn edit_headers(map: MapType, edits: Vec<HeaderEdit>) -> bool {
    let mut ok = true;
    for edit in &edits {
        let result = match edit {
            HeaderEdit::Remove(name) => hostcalls::set_map_value(map, name, None),
            HeaderEdit::Set(name, value) => hostcalls::set_map_value(map, name, Some(value)),
        };
        ok &= result.is_ok();
    }
    ok
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

/// Which instance answered, and why Envoy answered as it did: read only when routing asks.
struct EnvoyResponseFacts;

impl EnvoyResponseFacts {
    fn property(path: Vec<&str>) -> Option<String> {
        match hostcalls::get_property(path) {
            Ok(Some(bytes)) => String::from_utf8(bytes).ok(),
            _ => None,
        }
    }
}

impl ResponseFacts for EnvoyResponseFacts {
    fn upstream_address(&self) -> Option<String> {
        Self::property(vec!["upstream", "address"])
    }

    fn code_details(&self) -> Option<String> {
        Self::property(vec!["response", "code_details"])
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
        let raw = match header_map::read(MapType::HttpRequestHeaders) {
            Ok(raw) => raw,
            Err(e) => return self.host_failure(&format!("get request headers: {e:?}")),
        };
        let headers = match header_map::split(&raw) {
            Ok(h) => h,
            Err(e) => return self.host_failure(&format!("read request headers: {e:?}")),
        };
        let now = match hostcalls::get_current_time() {
            Ok(t) => t
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            Err(_) => return self.host_failure("get current time"),
        };
        self.now = now;
        let (attestations, identities) = (
            Rc::clone(&self.attestation_cache),
            Rc::clone(&self.identities),
        );
        let (Ok(mut cache), Ok(mut identities)) =
            (attestations.try_borrow_mut(), identities.try_borrow_mut())
        else {
            return self.host_failure("caches busy");
        };
        let step = {
            let ctx = RequestContext {
                claims: &JwtAuthnMetadata,
                attestation_cache: &mut cache,
                identity_cache: &mut identities,
                now,
            };
            self.flow
                .on_request_headers(&self.config, &headers, end_of_stream, ctx)
        };
        drop(cache);
        drop(identities);
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
        if !self.flow.inspects_response(&self.config) {
            // Nothing to rewrite or route: not even a host call for the headers.
            self.log_notices();
            return Action::Continue;
        }
        let raw = match header_map::read(MapType::HttpResponseHeaders) {
            Ok(raw) => raw,
            Err(e) => return self.host_failure(&format!("get response headers: {e:?}")),
        };
        let headers = match header_map::split(&raw) {
            Ok(h) => h,
            Err(e) => return self.host_failure(&format!("read response headers: {e:?}")),
        };
        self.response_mode =
            self.flow
                .on_response_headers(&self.config, &headers, &EnvoyResponseFacts);
        if !edit_headers(
            MapType::HttpResponseHeaders,
            self.flow.take_response_edits(),
        ) {
            error!(
                "mcp-warden: request {}: cannot edit response headers",
                self.context_id
            );
        }
        self.log_notices();
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
            ResponseMode::Replace if !end_of_stream => Action::Pause,
            ResponseMode::Replace => {
                if let Some(new) = self.flow.replacement_body() {
                    if hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &new)
                        .is_err()
                    {
                        error!(
                            "mcp-warden: request {}: cannot replace the response",
                            self.context_id
                        );
                    }
                }
                Action::Continue
            }
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

    fn on_log(&mut self) {
        // The request ends while its exchange is in flight: the requests waiting for it must
        // not hang — they are refused (fail closed) and will retry.
        if let Some((_, key)) = self.sts_call.take() {
            let abandoned = Rejection::new(
                Reason::ExchangeUnavailable,
                "the token exchange was abandoned; retry",
            )
            .with_rule("exchange.abandoned");
            self.finish_exchange(key, Err(abandoned));
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // With HTTP/2 trailers the last body callback may not say end_of_stream: finish here.
        let step = self.flow.on_request_trailers(&self.config, self.buffered);
        self.body_step(step)
    }
}
