//! The bench's floor filter. Plugin configuration (a StringValue):
//! - `noop`: every callback returns Continue at once (the cost of having a wasm filter at all);
//! - `read`: like mcp-warden's request path without its logic: read all request headers, pause,
//!   buffer the body until end of stream, read it, continue.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { read: false }) });
}}

struct Root {
    read: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        match self.get_plugin_configuration().as_deref() {
            Some(b"noop") => self.read = false,
            Some(b"read") => self.read = true,
            _ => return false,
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            read: self.read,
            seen: 0,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    read: bool,
    seen: usize,
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if !self.read {
            return Action::Continue;
        }
        self.seen = self.get_http_request_headers_bytes().len();
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.read {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.seen += self
            .get_http_request_body(0, body_size)
            .map_or(0, |b| b.len());
        Action::Continue
    }
}
