//! mcp-warden as a proxy-wasm HTTP filter: the thin glue between Envoy and `mcp-warden-core`.
//!
//! Each callback reads what Envoy offers through [`host`] (host calls that return errors where
//! the SDK's would panic), hands it to the core's [`RequestFlow`] and carries out the step it
//! returns. A host call that fails ends the request with a local 500, or closes the response
//! stream once the response has started: fail closed.

use log::{error, info, warn};
use mcp_warden_core::audit;
use mcp_warden_core::config::Config;
use mcp_warden_core::error::{Reason, Rejection, Reply, RpcId};
use mcp_warden_core::exchange::{self, Begin, ExchangeState, Issued};
use mcp_warden_core::identity::attestation::AttestationCache;
use mcp_warden_core::identity::metadata::{ClaimSource, HostError};
use mcp_warden_core::identity::IdentityCache;
use mcp_warden_core::pipeline::{
    BodyStep, HeaderEdit, Outcome, RequestContext, RequestFlow, ResponseFacts, ResponseMode, Step,
};
use mcp_warden_core::registry::LiveDefinitions;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};
use std::cell::RefCell;
use std::rc::Rc;

mod header_map;
pub mod host;

/// How often the worker re-reads Envoy's log level (`/logging?wasm=…` changes it at run time).
const LOG_LEVEL_REFRESH_MS: u32 = 1000;

/// Lets through only the log lines Envoy would write: audit records and other info lines are
/// not even formatted while Envoy's wasm logger is above `info`.
fn follow_envoy_log_level() {
    let filter = match host::log_level() {
        Ok(0) => log::LevelFilter::Trace,
        Ok(1) => log::LevelFilter::Debug,
        Ok(3) => log::LevelFilter::Warn,
        Ok(4..) => log::LevelFilter::Error,
        Ok(_) | Err(_) => log::LevelFilter::Info,
    };
    log::set_max_level(filter);
}

/// Resumes the current request; false if the host refused.
fn continue_request() -> bool {
    host::continue_request().is_ok()
}

/// Ends the current request's stream after a failure that left no other way to refuse it.
fn close_request(context_id: u32, why: &str) {
    error!("mcp-warden: request {context_id}: {why}; closing the request stream");
    if let Err(e) = host::close_request() {
        error!("mcp-warden: request {context_id}: cannot close the stream: {e}");
    }
}

/// Ends the response stream when a response that must be changed cannot be: the client never
/// gets the unchanged response (unfiltered lists, unsealed session ids, unredacted text).
fn close_response(context_id: u32, why: &str) {
    error!("mcp-warden: request {context_id}: {why}; closing the response stream");
    if let Err(e) = host::close_response() {
        error!("mcp-warden: request {context_id}: cannot close the response stream: {e}");
    }
}

proxy_wasm::main! {{
    host::install_logger();
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
        // The whole configuration, or nothing runs: a short read must not become the defaults
        // (validation only, no identity, no policy).
        let raw = match host::get_buffer(BufferType::PluginConfiguration, plugin_configuration_size)
        {
            Ok(bytes) if bytes.len() == plugin_configuration_size => bytes,
            Ok(bytes) => {
                error!(
                    "mcp-warden: cannot read the plugin configuration: got {} of {plugin_configuration_size} bytes",
                    bytes.len()
                );
                return false;
            }
            Err(e) => {
                error!("mcp-warden: cannot read the plugin configuration: {e}");
                return false;
            }
        };
        // Secrets given as {"env": "NAME"} are read from the VM's WASI environment, which Envoy
        // fills with the variables `vm_config.environment_variables` names.
        match Config::from_json_with_env(&raw, &|name| std::env::var(name).ok()) {
            Ok(mut config) => {
                if let Err(e) = share_generated_session_key(&mut config) {
                    error!("mcp-warden configuration: field `sessions.keys`: {e}");
                    return false;
                }
                if config.sessions.as_ref().is_some_and(|k| k.is_generated()) {
                    info!("mcp-warden: session ids are sealed with a key generated for this Envoy process; replicas that share sessions need `sessions.keys`");
                }
                follow_envoy_log_level();
                if host::set_tick_period(LOG_LEVEL_REFRESH_MS).is_err() {
                    warn!("mcp-warden: no timer: the log level is read at start only");
                }
                // Open mode: one line per missing section, as the core words it.
                for w in &config.warnings {
                    warn!("{w}");
                }
                info!(
                    "mcp-warden: configured (mode={}, max_body_bytes={}, max_json_depth={}, protocol_versions={})",
                    config.mode.as_str(),
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
            audit: audit::Once::default(),
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
    /// Hands out the audit record once, when the request is decided.
    audit: audit::Once,
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
        // An answer that cannot be read is no answer: the exchange fails (closed).
        let status = match host::get_header(MapType::HttpCallResponseHeaders, ":status") {
            Ok(Some(s)) => std::str::from_utf8(&s)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0),
            _ => 0,
        };
        // Never more than the core reads: one byte over its cap is enough to refuse (a huge
        // answer must not fill the VM's memory).
        let read = body_size.min(exchange::MAX_ANSWER_BYTES + 1);
        let body = match host::get_buffer(BufferType::HttpCallResponseBody, read) {
            Ok(b) if status != 0 => b,
            _ => Vec::new(),
        };
        let result = self.flow.read_sts_answer(status, &body);
        if let Err(r) = &result {
            warn!(
                "mcp-warden: request {}: token exchange failed: {} ({})",
                self.context_id,
                audit::escape::escape_text(&r.detail),
                r.rule.as_deref().unwrap_or("-")
            );
        }
        self.finish_exchange(key, result.clone());
        let step = self.flow.on_token(result.map(|i| i.access_token));
        if self.apply(step) == Action::Continue && !continue_request() {
            close_request(self.context_id, "could not be resumed");
        }
    }
}

impl WardenHttp {
    fn audit(&mut self) {
        if self.config.audit_log && log::log_enabled!(log::Level::Info) {
            if let Some(record) = self.audit.take(&self.flow) {
                info!("mcp-warden audit {record}");
            }
        }
    }

    /// A request that waited for another request's token exchange learns how that request
    /// carried it out for it (resumed, or refused): its outcome and audit record are its own.
    /// `ended`: the request is over (it leaves the exchange if still waiting).
    fn collect_wait(&mut self, ended: bool) {
        if self.sts_call.is_some() || !self.flow.awaits_token() {
            return;
        }
        let how = match self.exchanges.try_borrow_mut() {
            Ok(mut state) if ended => state.leave(self.context_id),
            Ok(mut state) => state.collect(self.context_id),
            Err(_) => None,
        };
        if let Some(how) = how {
            self.flow.on_shared_token(how);
            self.audit();
        }
    }

    /// Records how a waiter ended when that differs from its exchange's result.
    fn settle_waiter(&self, ctx: u32, how: Result<(), Rejection>) {
        if let Ok(mut state) = self.exchanges.try_borrow_mut() {
            state.settle(ctx, how);
        }
    }

    fn log_notices(&mut self) {
        for notice in self.flow.take_notices() {
            warn!("{}", audit::notice_line(self.context_id, &notice));
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
                match host::http_call(&call.cluster, &call.headers, &call.body, call.timeout_ms) {
                    Ok(token) => {
                        self.sts_call = Some((token, key));
                        Action::Pause
                    }
                    Err(e) => {
                        warn!(
                            "mcp-warden: request {}: cannot call the token service: {e}",
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
            if host::set_effective_context(ctx).is_err() {
                // Its stream is gone (or cannot be reached): nothing of it goes upstream.
                self.settle_waiter(ctx, Err(Rejection::new(Reason::Internal, "unreachable")));
                continue;
            }
            let id = id.as_ref().and_then(RpcId::from_value);
            let refusal = match &result {
                Ok(issued) => {
                    let bearer = format!("Bearer {}", issued.access_token);
                    match host::set_header(
                        MapType::HttpRequestHeaders,
                        "authorization",
                        Some(&bearer),
                    ) {
                        Ok(()) if continue_request() => None,
                        Ok(()) => {
                            close_request(ctx, "could not be resumed after the token exchange");
                            let closed = Rejection::new(Reason::Internal, "could not be resumed");
                            self.settle_waiter(ctx, Err(closed));
                            None
                        }
                        // Its own token must not go upstream: refuse it.
                        Err(_) => Some(Rejection::new(Reason::Internal, "gateway error")),
                    }
                }
                Err(r) => Some(r.clone()),
            };
            if let Some(r) = refusal {
                let r = r.with_id(id);
                let reply = r.to_reply();
                warn!("{}", audit::refusal_line(ctx, reply.status, &r));
                send_reply(ctx, &reply);
                if result.is_ok() {
                    self.settle_waiter(ctx, Err(r));
                }
            }
        }
        if host::set_effective_context(self.context_id).is_err() {
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
                    warn!("{}", audit::refusal_line(self.context_id, reply.status, r));
                }
                send_reply(self.context_id, &reply);
                Action::Pause
            }
        }
    }

    fn host_failure(&mut self, what: &str) -> Action {
        error!(
            "mcp-warden: request {}: host call failed: {what}",
            self.context_id
        );
        send_reply(
            self.context_id,
            &Rejection::new(Reason::Internal, "gateway error").to_reply(),
        );
        Action::Pause
    }

    /// A response that must be inspected or changed cannot be: the client gets none of it.
    fn response_failure(&mut self, what: &str) -> Action {
        self.log_notices();
        self.response_mode = ResponseMode::Closed;
        close_response(self.context_id, what);
        Action::Pause
    }

    fn body_step(&mut self, step: BodyStep) -> Action {
        match step {
            BodyStep::Step(step) => self.apply(step),
            BodyStep::ReadBody(size) => {
                let body = match host::get_buffer(BufferType::HttpRequestBody, size) {
                    Ok(b) => b,
                    Err(e) => return self.host_failure(&format!("get request body: {e}")),
                };
                let step = self.flow.on_body(&self.config, &body, &SharedDefinitions);
                self.apply(step)
            }
        }
    }
}

/// Answers the current request locally; if the host refuses, closes its stream instead (it
/// must not go on, nor hang).
fn send_reply(context_id: u32, reply: &Reply) {
    if let Err(e) = host::send_local_reply(reply.status, &reply.headers, &reply.body) {
        close_request(context_id, &format!("cannot send local reply: {e}"));
    }
}

/// Applies header edits to a header map; false if any of them failed (all are attempted).
fn edit_headers(map: MapType, edits: Vec<HeaderEdit>) -> bool {
    let mut ok = true;
    for edit in &edits {
        let result = match edit {
            HeaderEdit::Remove(name) => host::set_header(map, name, None),
            HeaderEdit::Set(name, value) => host::set_header(map, name, Some(value)),
        };
        ok &= result.is_ok();
    }
    ok
}

/// Shared-data key of the generated session key (one per Envoy process and VM id).
const SESSION_KEY_SHARED: &str = "mcp-warden/session-key/v1";

/// Without a configured session key every worker VM must seal with the same random key, or a
/// session opened through one worker would be unknown to the next: the first worker to
/// configure stores its key in shared data (create-only), every worker uses the stored one.
/// The key lives as long as the Envoy process (configuration reloads keep it).
fn share_generated_session_key(config: &mut Config) -> Result<(), String> {
    let Some(keys) = config.sessions.as_mut().filter(|k| k.is_generated()) else {
        return Ok(());
    };
    for _ in 0..4 {
        match host::get_shared(SESSION_KEY_SHARED) {
            Ok(Some(stored)) => {
                let secret: [u8; 32] = stored
                    .try_into()
                    .map_err(|_| "the shared session key is not 32 bytes".to_string())?;
                keys.install_generated(secret);
                return Ok(());
            }
            Ok(None) => {}
            Err(e) => return Err(format!("cannot read the shared session key: {e}")),
        }
        let Some(mine) = keys.generated_secret() else {
            return Err("no key configured and no random source to generate one".into());
        };
        match host::create_shared(SESSION_KEY_SHARED, &mine) {
            // Stored (or another worker was first): read back what everyone uses.
            Ok(()) => {}
            Err(e) if e.status == host::CAS_MISMATCH => {}
            Err(e) => return Err(format!("cannot store the generated session key: {e}")),
        }
    }
    Err("workers could not agree on a generated session key".into())
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
        match host::get_shared(&Self::key(server, tool)) {
            Ok(Some(bytes)) => String::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    fn put(&self, server: &str, tool: &str, hash: &str) {
        if host::set_shared(&Self::key(server, tool), hash.as_bytes()).is_err() {
            warn!("mcp-warden: cannot record the definition of tool {tool} on {server}");
        }
    }
}

/// Which instance answered, and why Envoy answered as it did: read only when routing asks.
/// A failed read is remembered: the response is then not forwarded (a session sealed without
/// its instance, or an Envoy error not recognised, would be a different answer).
#[derive(Default)]
struct EnvoyResponseFacts {
    failed: std::cell::Cell<Option<host::HostCallError>>,
}

impl EnvoyResponseFacts {
    fn property(&self, path: &[&str]) -> Option<String> {
        match host::get_property(path) {
            Ok(Some(bytes)) => String::from_utf8(bytes).ok(),
            Ok(None) => None,
            Err(e) => {
                self.failed.set(Some(e));
                None
            }
        }
    }
}

impl ResponseFacts for EnvoyResponseFacts {
    fn upstream_address(&self) -> Option<String> {
        // Asked only for a new session from an upstream, which Envoy always knows: without
        // it the session could not be pinned to its instance.
        let address = self.property(&["upstream", "address"]);
        if address.is_none() && self.failed.get().is_none() {
            self.failed.set(Some(host::HostCallError {
                call: "proxy_get_property(upstream.address)",
                status: 1,
            }));
        }
        address
    }

    fn code_details(&self) -> Option<String> {
        self.property(&["response", "code_details"])
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
        host::get_property(&full).map_err(|e| HostError(e.to_string()))
    }
}

impl HttpContext for WardenHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let raw = match host::get_header_pairs(MapType::HttpRequestHeaders) {
            Ok(raw) => raw,
            Err(e) => return self.host_failure(&format!("get request headers: {e}")),
        };
        let headers = match header_map::split(&raw) {
            Ok(h) => h,
            Err(e) => return self.host_failure(&format!("read request headers: {e:?}")),
        };
        let now = match host::now_seconds() {
            Ok(t) => t,
            Err(e) => return self.host_failure(&format!("get current time: {e}")),
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
        self.collect_wait(false);
        if !self.flow.inspects_response(&self.config) {
            // Nothing to rewrite or route: not even a host call for the headers.
            self.log_notices();
            return Action::Continue;
        }
        let raw = match host::get_header_pairs(MapType::HttpResponseHeaders) {
            Ok(raw) => raw,
            Err(e) => return self.response_failure(&format!("get response headers: {e}")),
        };
        let headers = match header_map::split(&raw) {
            Ok(h) => h,
            Err(e) => return self.response_failure(&format!("read response headers: {e:?}")),
        };
        let facts = EnvoyResponseFacts::default();
        self.response_mode = self
            .flow
            .on_response_headers(&self.config, &headers, &facts);
        if let Some(e) = facts.failed.take() {
            return self.response_failure(&format!("read response facts: {e}"));
        }
        self.log_notices();
        if !edit_headers(
            MapType::HttpResponseHeaders,
            self.flow.take_response_edits(),
        ) {
            return self.response_failure("cannot edit response headers");
        }
        if self.response_mode != ResponseMode::Untouched {
            if let Err(e) = host::set_header(MapType::HttpResponseHeaders, "content-length", None) {
                return self.response_failure(&format!("cannot drop content-length: {e}"));
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (replacement, what) = match self.response_mode {
            ResponseMode::Untouched => return Action::Continue,
            ResponseMode::Closed => return Action::Pause,
            ResponseMode::Replace | ResponseMode::BufferJson if !end_of_stream => {
                return Action::Pause
            }
            ResponseMode::Replace => (self.flow.replacement_body(), "replace the response"),
            ResponseMode::BufferJson => {
                let body = match host::get_buffer(BufferType::HttpResponseBody, body_size) {
                    Ok(b) => b,
                    Err(e) => return self.response_failure(&format!("get response body: {e}")),
                };
                let new = self
                    .flow
                    .on_response_json(&self.config, &body, &SharedDefinitions);
                (new, "rewrite the list answer")
            }
            ResponseMode::StreamSse => {
                let chunk = match host::get_buffer(BufferType::HttpResponseBody, body_size) {
                    Ok(b) => b,
                    Err(e) => return self.response_failure(&format!("get response body: {e}")),
                };
                let out = self.flow.on_response_chunk(
                    &self.config,
                    &chunk,
                    end_of_stream,
                    &SharedDefinitions,
                );
                ((out != chunk).then_some(out), "rewrite the event stream")
            }
        };
        self.log_notices();
        if let Some(new) = replacement {
            if let Err(e) = host::set_buffer(BufferType::HttpResponseBody, body_size, &new) {
                return self.response_failure(&format!("cannot {what}: {e}"));
            }
        }
        Action::Continue
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
            self.finish_exchange(key, Err(abandoned.clone()));
            self.flow.on_shared_token(Err(abandoned));
            self.audit();
        }
        self.collect_wait(true);
    }

    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        // A request with trailers is refused (they could carry headers past the filter); an
        // empty set ends the body (the last body callback may not have said end_of_stream).
        let step = self
            .flow
            .on_request_trailers(&self.config, self.buffered, num_trailers);
        self.body_step(step)
    }
}
