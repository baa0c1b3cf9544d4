//! The bench's floor filter. Plugin configuration (a StringValue), `+`-separated steps:
//! - `noop`: every callback returns Continue at once (the cost of having a wasm filter at all);
//! - `read`: like mcp-warden's request path without its logic: read all request headers, pause,
//!   buffer the body until end of stream, read it, continue.
//!
//! Probes that add one kind of host call each to `read` (to price mcp-warden's host calls):
//! - `time`: read the clock once per request;
//! - `prop`: read one jwt_authn claim from dynamic metadata (`user.iss`);
//! - `removeN` / `setN`: N request-header removals (of absent headers) / N header sets;
//! - `log`: one 300-byte info log line per request;
//! - `resp`: read all response headers.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { plan: Plan::default() }) });
}}

#[derive(Clone, Copy, Default)]
struct Plan {
    read: bool,
    time: bool,
    prop: bool,
    remove: usize,
    set: usize,
    log: bool,
    resp: bool,
}

impl Plan {
    fn parse(config: &[u8]) -> Option<Plan> {
        let text = std::str::from_utf8(config).ok()?;
        let mut plan = Plan::default();
        for step in text.split('+') {
            match step {
                "noop" => {}
                "read" => plan.read = true,
                "time" => plan.time = true,
                "prop" => plan.prop = true,
                "log" => plan.log = true,
                "resp" => plan.resp = true,
                _ => {
                    if let Some(n) = step.strip_prefix("remove") {
                        plan.remove = n.parse().ok()?;
                    } else if let Some(n) = step.strip_prefix("set") {
                        plan.set = n.parse().ok()?;
                    } else {
                        return None;
                    }
                }
            }
        }
        Some(plan)
    }
}

struct Root {
    plan: Plan,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        match self.get_plugin_configuration().as_deref().and_then(Plan::parse) {
            Some(plan) => {
                self.plan = plan;
                true
            }
            None => false,
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            plan: self.plan,
            seen: 0,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    plan: Plan,
    seen: usize,
}

impl Context for Http {}

const NAMES: [&str; 8] = [
    "x-probe-0", "x-probe-1", "x-probe-2", "x-probe-3", "x-probe-4", "x-probe-5", "x-probe-6",
    "x-probe-7",
];

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let p = self.plan;
        if !p.read {
            return Action::Continue;
        }
        self.seen = self.get_http_request_headers_bytes().len();
        if p.time {
            self.seen += hostcalls::get_current_time().map_or(0, |_| 1);
        }
        if p.prop {
            let path = vec![
                "metadata",
                "filter_metadata",
                "envoy.filters.http.jwt_authn",
                "user",
                "iss",
            ];
            self.seen += hostcalls::get_property(path).map_or(0, |v| v.map_or(0, |b| b.len()));
        }
        for name in NAMES.iter().cycle().take(p.remove) {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None);
        }
        for name in NAMES.iter().cycle().take(p.set) {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some("bench-user"));
        }
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.plan.read {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.seen += self
            .get_http_request_body(0, body_size)
            .map_or(0, |b| b.len());
        if self.plan.log {
            log::info!(
                "floor {{\"user\":\"bench-user\",\"method\":\"tools/call\",\"tool\":\"get_weather\",\"server\":\"default\",\"outcome\":\"forwarded\",\"seen\":{},\"padding\":\"{}\"}}",
                self.seen,
                "x".repeat(160)
            );
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.plan.resp {
            self.seen += self.get_http_response_headers_bytes().len();
        }
        Action::Continue
    }
}
