//! JSON-RPC 2.0 and the MCP message model.
//!
//! [`parse_payload`] turns a request body into a [`Payload`]: one message or (2025-03-26 only)
//! a batch. Each message is classified as request, notification or response, and for requests
//! the MCP target is extracted (tool name, resource URI, prompt name), with the `params`
//! shape checked for the methods where a wrong shape would let a call slip past later checks.
//! `params.arguments` is checked like the rest of the body but kept as text ([`RawJson`]):
//! only argument conditions read it, and building it is most of the cost of a large call.
//! Resource URIs must be in normal form ([`uri`]); a `completion/complete` names what it
//! completes ([`Target::Completion`]).

pub mod uri;

use crate::error::{Reason, Rejection, RpcId};
use crate::json::{fold_eq, parse_body, JsonError, RawJson};
use serde_json::{Map, Value};

/// What a message asks for, beyond its method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// No tool, resource or prompt is named.
    None,
    /// `tools/call` of this tool.
    Tool(String),
    /// `resources/read`, `resources/subscribe`, `resources/unsubscribe` of this URI.
    Resource(String),
    /// `prompts/get` of this prompt.
    Prompt(String),
    /// `completion/complete` of an argument of this prompt ([`Target::Prompt`], from a
    /// `ref/prompt`) or resource template ([`Target::Resource`], from a `ref/resource`): the
    /// policy decides it as a use of that prompt or resource as well.
    Completion(Box<Target>),
}

impl Target {
    /// The value the 2026-07-28 `Mcp-Name` header mirrors (none for a completion).
    pub fn name(&self) -> Option<&str> {
        match self {
            Target::None | Target::Completion(_) => None,
            Target::Tool(n) | Target::Prompt(n) | Target::Resource(n) => Some(n),
        }
    }

    /// The method that uses this target itself: `tools/call`, `prompts/get`,
    /// `resources/read` (none for [`Target::None`] and [`Target::Completion`]).
    pub fn use_method(&self) -> Option<&'static str> {
        match self {
            Target::Tool(_) => Some("tools/call"),
            Target::Prompt(_) => Some("prompts/get"),
            Target::Resource(_) => Some("resources/read"),
            Target::None | Target::Completion(_) => None,
        }
    }
}

/// One JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A call that expects an answer.
    Request {
        /// The request id.
        id: RpcId,
        /// The method.
        method: String,
        /// What the method names.
        target: Target,
        /// The params object (empty when absent), without `arguments`.
        params: Map<String, Value>,
        /// `params.arguments`, as checked text.
        arguments: Option<RawJson>,
    },
    /// A call without an id.
    Notification {
        /// The method.
        method: String,
        /// The params object (empty when absent), without `arguments`.
        params: Map<String, Value>,
        /// `params.arguments`, as checked text.
        arguments: Option<RawJson>,
    },
    /// A client's answer to a server-to-client request (sampling, elicitation, roots).
    Response {
        /// The id of the request being answered (`None` for an error answer with a null id).
        id: Option<RpcId>,
        /// Whether this is an error answer.
        is_error: bool,
    },
}

impl Message {
    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response { .. } => None,
        }
    }

    /// The id of a request or response.
    pub fn id(&self) -> Option<&RpcId> {
        match self {
            Message::Request { id, .. } => Some(id),
            Message::Response { id, .. } => id.as_ref(),
            Message::Notification { .. } => None,
        }
    }

    /// `params.arguments` of a request or notification, as checked text (parse it with
    /// [`RawJson::to_value`] when it must be read).
    pub fn arguments(&self) -> Option<&RawJson> {
        match self {
            Message::Request { arguments, .. } | Message::Notification { arguments, .. } => {
                arguments.as_ref()
            }
            Message::Response { .. } => None,
        }
    }

    /// The MCP target of a request.
    pub fn target(&self) -> &Target {
        match self {
            Message::Request { target, .. } => target,
            _ => &Target::None,
        }
    }
}

/// A POST body: one message or a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A single message.
    Single(Message),
    /// A batch (protocol 2025-03-26).
    Batch(Vec<Message>),
}

impl Payload {
    /// All messages, in order.
    pub fn messages(&self) -> &[Message] {
        match self {
            Payload::Single(m) => std::slice::from_ref(m),
            Payload::Batch(ms) => ms,
        }
    }

    /// The payload without `params` and `arguments` (methods, ids and targets stay): what is
    /// kept once the request is decided, so a request waiting for its answer holds no copy of
    /// its body.
    pub fn into_envelope(self) -> Payload {
        fn strip(m: Message) -> Message {
            match m {
                Message::Request {
                    id, method, target, ..
                } => Message::Request {
                    id,
                    method,
                    target,
                    params: Map::new(),
                    arguments: None,
                },
                Message::Notification { method, .. } => Message::Notification {
                    method,
                    params: Map::new(),
                    arguments: None,
                },
                response => response,
            }
        }
        match self {
            Payload::Single(m) => Payload::Single(strip(m)),
            Payload::Batch(ms) => Payload::Batch(ms.into_iter().map(strip).collect()),
        }
    }

    /// The id to echo in an error about the payload as a whole.
    pub fn echo_id(&self) -> Option<RpcId> {
        match self {
            Payload::Single(m) => m.id().cloned(),
            Payload::Batch(_) => None,
        }
    }
}

/// Methods a client sends to an MCP server, across the revisions this gateway supports.
pub const CLIENT_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    "server/discover",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "notifications/tasks/status",
];

/// The method prefix of MCP notifications: exactly these messages are sent without an `id`.
pub const NOTIFICATION_PREFIX: &str = "notifications/";

/// Limits and switches for reading a payload.
#[derive(Debug, Clone)]
pub struct ParseRules<'a> {
    /// Maximum JSON nesting depth.
    pub max_depth: usize,
    /// Maximum number of messages in a batch.
    pub max_batch: usize,
    /// Extra method names accepted besides [`CLIENT_METHODS`].
    pub extra_methods: &'a [String],
    /// Refuse objects with keys equal once case-folded (`strict_keys`).
    pub strict_keys: bool,
}

/// Reads a POST body as an MCP payload. `batch_allowed` comes from the protocol revision.
pub fn parse_payload(
    body: &[u8],
    rules: &ParseRules<'_>,
    batch_allowed: bool,
) -> Result<Payload, Rejection> {
    let parsed = parse_body(body, rules.max_depth, rules.strict_keys).map_err(|e| match e {
        JsonError::Syntax(msg) => {
            Rejection::new(Reason::ParseError, format!("body is not JSON: {msg}"))
        }
        JsonError::TooDeep { limit } => Rejection::new(
            Reason::TooDeep,
            format!("JSON nesting deeper than max_json_depth ({limit})"),
        ),
    })?;
    let duplicate = parsed
        .duplicate_keys
        .first()
        .map(|path| format!("duplicate key at {path}: parsers could read this body differently"));
    let twin = parsed.case_twins.first().map(|path| {
        format!(
            "key at {path} equals another key of its object once case-folded \
             (strict_keys): case-insensitive decoders could read either"
        )
    });
    if let Some(detail) = duplicate.or(twin) {
        // The id is echoed only when nothing else could be read as the id.
        let id_is_ambiguous = parsed
            .duplicate_keys
            .iter()
            .chain(&parsed.case_twins)
            .any(|p| p.strip_prefix('/').is_some_and(|k| fold_eq(k, "id")));
        let id = match &parsed.value {
            Value::Object(o) if !id_is_ambiguous => o.get("id").and_then(RpcId::from_value),
            _ => None,
        };
        return Err(Rejection::new(Reason::DuplicateKey, detail).with_id(id));
    }
    let mut arguments = parsed.arguments;
    match parsed.value {
        Value::Object(obj) => {
            parse_message(obj, take(&mut arguments, 0), rules).map(Payload::Single)
        }
        Value::Array(items) => {
            if !batch_allowed {
                return Err(Rejection::new(
                    Reason::BatchNotAllowed,
                    "JSON-RPC batches are only allowed with MCP protocol 2025-03-26",
                ));
            }
            parse_batch(items, arguments, rules).map(Payload::Batch)
        }
        _ => Err(Rejection::new(
            Reason::InvalidRequest,
            "a JSON-RPC message must be an object (or an array for a batch)",
        )),
    }
}

/// The arguments of message `index`, taken out of the reader's list.
fn take(arguments: &mut Vec<(usize, RawJson)>, index: usize) -> Option<RawJson> {
    let at = arguments.iter().position(|(i, _)| *i == index)?;
    Some(arguments.swap_remove(at).1)
}

fn parse_batch(
    items: Vec<Value>,
    mut arguments: Vec<(usize, RawJson)>,
    rules: &ParseRules<'_>,
) -> Result<Vec<Message>, Rejection> {
    if items.is_empty() {
        return Err(Rejection::new(Reason::InvalidRequest, "empty batch"));
    }
    if items.len() > rules.max_batch {
        return Err(Rejection::new(
            Reason::InvalidRequest,
            format!(
                "batch of {} messages exceeds the limit of {}",
                items.len(),
                rules.max_batch
            ),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(obj) = item else {
            return Err(Rejection::new(
                Reason::InvalidRequest,
                format!("batch element {i} is not an object"),
            ));
        };
        let msg = parse_message(obj, take(&mut arguments, i), rules).map_err(|mut r| {
            r.detail = format!("batch element {i}: {}", r.detail);
            r
        })?;
        if msg.method() == Some("initialize") {
            return Err(Rejection::new(
                Reason::InvalidRequest,
                "initialize must not be part of a batch",
            ));
        }
        out.push(msg);
    }
    let responses = out
        .iter()
        .filter(|m| matches!(m, Message::Response { .. }))
        .count();
    if responses != 0 && responses != out.len() {
        return Err(Rejection::new(
            Reason::InvalidRequest,
            "a batch holds either requests/notifications or responses, not both",
        ));
    }
    let mut seen = Vec::new();
    for id in out.iter().filter_map(|m| match m {
        Message::Request { id, .. } => Some(id),
        _ => None,
    }) {
        if seen.contains(&id) {
            return Err(Rejection::new(
                Reason::InvalidRequest,
                "duplicate request id in batch",
            ));
        }
        seen.push(id);
    }
    Ok(out)
}

const MEMBERS: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];

fn parse_message(
    mut obj: Map<String, Value>,
    arguments: Option<RawJson>,
    rules: &ParseRules<'_>,
) -> Result<Message, Rejection> {
    // Taken out, not cloned: params can be most of a large body.
    let params_raw = obj.remove("params");
    let raw_id = obj.get("id");
    let id = raw_id.and_then(RpcId::from_value);
    let invalid =
        |detail: String| Rejection::new(Reason::InvalidRequest, detail).with_id(id.clone());

    if let Some(unknown) = obj.keys().find(|k| !MEMBERS.contains(&k.as_str())) {
        return Err(invalid(format!(
            "unknown member `{unknown}` in JSON-RPC message"
        )));
    }
    if obj.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Err(invalid("`jsonrpc` must be \"2.0\"".into()));
    }
    if raw_id.is_some() && id.is_none() && raw_id != Some(&Value::Null) {
        return Err(invalid("`id` must be a string or an integer".into()));
    }

    if let Some(method) = obj.get("method") {
        let Value::String(method) = method else {
            return Err(invalid("`method` must be a string".into()));
        };
        if obj.contains_key("result") || obj.contains_key("error") {
            return Err(invalid("a request cannot carry `result` or `error`".into()));
        }
        if method.is_empty() {
            return Err(invalid("`method` must not be empty".into()));
        }
        if !CLIENT_METHODS.contains(&method.as_str()) && !rules.extra_methods.contains(method) {
            return Err(Rejection::new(
                Reason::UnknownMethod,
                format!("method `{}` is not an MCP client method", truncate(method)),
            )
            .with_id(id));
        }
        let params = match params_raw {
            None => Map::new(),
            Some(Value::Object(p)) => p,
            Some(_) => {
                return Err(
                    Rejection::new(Reason::InvalidParams, "`params` must be an object").with_id(id),
                )
            }
        };
        // JSON-RPC tells a notification from a request by the absence of `id`; MCP names its
        // notifications `notifications/*`. A request method without `id` would skip what is
        // decided for requests (the tool registry, list filtering) yet still be served by
        // servers that dispatch on the method alone; a notification with an `id` expects an
        // answer nothing checks. Neither is valid MCP.
        let is_notification_method = method.starts_with(NOTIFICATION_PREFIX);
        return match raw_id {
            None if !is_notification_method => Err(Rejection::new(
                Reason::InvalidRequest,
                format!(
                    "`{}` is a request method and needs an `id`: only `notifications/*` methods are sent without one",
                    truncate(method)
                ),
            )),
            Some(_) if is_notification_method => Err(invalid(format!(
                "`{}` is a notification and must not carry an `id`",
                truncate(method)
            ))),
            None => Ok(Message::Notification {
                method: method.clone(),
                params,
                arguments,
            }),
            Some(_) => {
                let Some(id) = id else {
                    return Err(invalid("a request `id` must not be null".into()));
                };
                let target = target_of(method, &params, arguments.as_ref()).map_err(|d| {
                    Rejection::new(Reason::InvalidParams, d).with_id(Some(id.clone()))
                })?;
                Ok(Message::Request {
                    id,
                    method: method.clone(),
                    target,
                    params,
                    arguments,
                })
            }
        };
    }

    if params_raw.is_some() {
        return Err(invalid("a response cannot carry `params`".into()));
    }
    let is_error = match (obj.get("result"), obj.get("error")) {
        (Some(Value::Object(_)), None) => false,
        (None, Some(Value::Object(e))) => {
            let code_ok = e.get("code").is_some_and(|c| c.is_i64());
            let msg_ok = e.get("message").is_some_and(Value::is_string);
            if !code_ok || !msg_ok {
                return Err(invalid(
                    "`error` needs an integer `code` and a string `message`".into(),
                ));
            }
            true
        }
        (Some(_), None) => return Err(invalid("`result` must be an object".into())),
        (None, Some(_)) => return Err(invalid("`error` must be an object".into())),
        (None, None) => {
            return Err(invalid(
                "not a request, notification or response: no `method`, `result` or `error`".into(),
            ))
        }
        (Some(_), Some(_)) => {
            return Err(invalid(
                "a response has `result` or `error`, not both".into(),
            ))
        }
    };
    if raw_id.is_none() || (id.is_none() && !is_error) {
        return Err(invalid(
            "a response needs the `id` of the request it answers".into(),
        ));
    }
    Ok(Message::Response { id, is_error })
}

fn target_of(
    method: &str,
    params: &Map<String, Value>,
    arguments: Option<&RawJson>,
) -> Result<Target, String> {
    let string_param = |key: &str| -> Result<String, String> {
        match params.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::String(_)) => Err(format!("params.{key} must not be empty")),
            Some(_) => Err(format!("params.{key} must be a string")),
            None => Err(format!("{method} needs params.{key}")),
        }
    };
    let object_param = |key: &str, required: bool| -> Result<(), String> {
        match params.get(key) {
            Some(Value::Object(_)) => Ok(()),
            None if !required => Ok(()),
            None => Err(format!("{method} needs params.{key}")),
            Some(_) => Err(format!("params.{key} must be an object")),
        }
    };
    let arguments_object = || match arguments {
        Some(a) if !a.is_object() => Err("params.arguments must be an object".to_string()),
        _ => Ok(()),
    };
    match method {
        "tools/call" => {
            arguments_object()?;
            Ok(Target::Tool(string_param("name")?))
        }
        "prompts/get" => {
            arguments_object()?;
            Ok(Target::Prompt(string_param("name")?))
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let u = string_param("uri")?;
            uri::check(&u).map_err(|why| format!("params.uri is not in normal form: {why}"))?;
            Ok(Target::Resource(u))
        }
        "completion/complete" => completion_ref(params.get("ref")),
        "initialize" => {
            string_param("protocolVersion")?;
            object_param("capabilities", true)?;
            object_param("clientInfo", true)?;
            Ok(Target::None)
        }
        _ => Ok(Target::None),
    }
}

/// What a `completion/complete` completes: `params.ref` is `{"type": "ref/prompt", "name"}`
/// or `{"type": "ref/resource", "uri"}` (a URI or URI template, in normal form).
fn completion_ref(reference: Option<&Value>) -> Result<Target, String> {
    let r = match reference {
        Some(Value::Object(r)) => r,
        Some(_) => return Err("params.ref must be an object".into()),
        None => return Err("completion/complete needs params.ref".into()),
    };
    let string = |key: &str| -> Result<String, String> {
        match r.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::String(_)) => Err(format!("params.ref.{key} must not be empty")),
            Some(_) => Err(format!("params.ref.{key} must be a string")),
            None => Err(format!(
                "a completion ref of this type needs params.ref.{key}"
            )),
        }
    };
    let target = match r.get("type").and_then(Value::as_str) {
        Some("ref/prompt") => Target::Prompt(string("name")?),
        Some("ref/resource") => {
            let u = string("uri")?;
            uri::check(&u).map_err(|why| format!("params.ref.uri is not in normal form: {why}"))?;
            Target::Resource(u)
        }
        _ => return Err("params.ref.type must be \"ref/prompt\" or \"ref/resource\"".into()),
    };
    Ok(Target::Completion(Box::new(target)))
}

fn truncate(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn rules() -> ParseRules<'static> {
        ParseRules {
            max_depth: 32,
            max_batch: 4,
            extra_methods: &[],
            strict_keys: true,
        }
    }

    fn parse(body: &str) -> Result<Payload, Rejection> {
        parse_payload(body.as_bytes(), &rules(), true)
    }

    fn reject(body: &str) -> Rejection {
        parse(body).expect_err(body)
    }

    #[test]
    fn reads_a_tool_call() {
        let p = parse(r#"{"jsonrpc":"2.0","id":"a1","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#).unwrap();
        let Payload::Single(Message::Request {
            id, method, target, ..
        }) = p
        else {
            panic!()
        };
        assert_eq!(id, RpcId::Str("a1".into()));
        assert_eq!(method, "tools/call");
        assert_eq!(target, Target::Tool("echo".into()));
    }

    #[test]
    fn reads_resources_prompts_and_notifications() {
        let p = parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://x"}}"#,
        )
        .unwrap();
        assert_eq!(
            p.messages()[0].target(),
            &Target::Resource("demo://x".into())
        );
        let p =
            parse(r#"{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"greet"}}"#)
                .unwrap();
        assert_eq!(p.messages()[0].target(), &Target::Prompt("greet".into()));
        let p = parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(p.messages()[0], Message::Notification { .. }));
    }

    #[test]
    fn reads_client_responses_to_server_requests() {
        let p = parse(r#"{"jsonrpc":"2.0","id":0,"result":{"role":"assistant"}}"#).unwrap();
        assert_eq!(
            p.messages()[0],
            Message::Response {
                id: Some(RpcId::Num(0.into())),
                is_error: false
            }
        );
        let p = parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"no"}}"#).unwrap();
        assert_eq!(
            p.messages()[0],
            Message::Response {
                id: None,
                is_error: true
            }
        );
    }

    #[test]
    fn refuses_non_jsonrpc_with_the_right_reason_and_id() {
        let cases: &[(&str, Reason, Option<Value>)] = &[
            (r#"{"hello":1}"#, Reason::InvalidRequest, None),
            (
                r#"{"jsonrpc":"1.0","id":3,"method":"ping"}"#,
                Reason::InvalidRequest,
                Some(json!(3)),
            ),
            (
                r#"{"jsonrpc":2.0,"id":3,"method":"ping"}"#,
                Reason::InvalidRequest,
                Some(json!(3)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
                Reason::InvalidRequest,
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
                Reason::InvalidRequest,
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
                Reason::InvalidRequest,
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                Reason::InvalidRequest,
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":5,"method":7}"#,
                Reason::InvalidRequest,
                Some(json!(5)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":5,"method":""}"#,
                Reason::InvalidRequest,
                Some(json!(5)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":5,"method":"ping","extra":1}"#,
                Reason::InvalidRequest,
                Some(json!(5)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":5,"method":"ping","result":{}}"#,
                Reason::InvalidRequest,
                Some(json!(5)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":5}"#,
                Reason::InvalidRequest,
                Some(json!(5)),
            ),
            (
                r#"{"jsonrpc":"2.0","result":{}}"#,
                Reason::InvalidRequest,
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":5,"result":{},"error":{"code":1,"message":"x"}}"#,
                Reason::InvalidRequest,
                Some(json!(5)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":5,"error":{"code":"x","message":"x"}}"#,
                Reason::InvalidRequest,
                Some(json!(5)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":5,"result":[]}"#,
                Reason::InvalidRequest,
                Some(json!(5)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{}}"#,
                Reason::InvalidParams,
                Some(json!(4)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":""}}"#,
                Reason::InvalidParams,
                Some(json!(4)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":["echo"]}}"#,
                Reason::InvalidParams,
                Some(json!(4)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"e","arguments":[]}}"#,
                Reason::InvalidParams,
                Some(json!(4)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"method":"tools/list","params":[]}"#,
                Reason::InvalidParams,
                Some(json!(4)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"url":"x"}}"#,
                Reason::InvalidParams,
                Some(json!(4)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#,
                Reason::InvalidParams,
                Some(json!(4)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"q","method":"rpc.discover"}"#,
                Reason::UnknownMethod,
                Some(json!("q")),
            ),
            (
                r#"{"jsonrpc":"2.0","id":7,"method":"ping","method":"tools/call"}"#,
                Reason::DuplicateKey,
                Some(json!(7)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":7,"id":8,"method":"ping"}"#,
                Reason::DuplicateKey,
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"a","arguments":{"x":1,"x":2}}}"#,
                Reason::DuplicateKey,
                Some(json!(9)),
            ),
            ("42", Reason::InvalidRequest, None),
            ("\"ping\"", Reason::InvalidRequest, None),
            ("null", Reason::InvalidRequest, None),
            ("{nope", Reason::ParseError, None),
            ("", Reason::ParseError, None),
        ];
        for (body, reason, id) in cases {
            let r = reject(body);
            assert_eq!(r.reason, *reason, "{body}: {}", r.detail);
            assert_eq!(r.id.as_ref().map(RpcId::to_value), *id, "{body}");
        }
    }

    #[test]
    fn extra_methods_can_be_allowed() {
        let extra = vec!["x-vendor/thing".to_string()];
        let rules = ParseRules {
            extra_methods: &extra,
            ..rules()
        };
        assert!(parse_payload(
            br#"{"jsonrpc":"2.0","id":1,"method":"x-vendor/thing"}"#,
            &rules,
            false
        )
        .is_ok());
    }

    #[test]
    fn too_deep_params_are_refused() {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"a":{}1{}}}}}"#,
            "[".repeat(40),
            "]".repeat(40)
        );
        assert_eq!(reject(&body).reason, Reason::TooDeep);
    }

    #[test]
    fn batches_follow_the_2025_03_26_rules() {
        let ok = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
        assert_eq!(parse(ok).unwrap().messages().len(), 2);
        let ok = r#"[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","id":2,"result":{}}]"#;
        assert_eq!(parse(ok).unwrap().messages().len(), 2);
        assert_eq!(
            parse_payload(ok.as_bytes(), &rules(), false)
                .unwrap_err()
                .reason,
            Reason::BatchNotAllowed
        );
        for bad in [
            "[]",
            "[1]",
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"result":{}}]"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"x","capabilities":{},"clientInfo":{}}}]"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"},{"jsonrpc":"2.0","id":3,"method":"ping"},{"jsonrpc":"2.0","id":4,"method":"ping"},{"jsonrpc":"2.0","id":5,"method":"ping"}]"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}]"#,
        ] {
            let r = reject(bad);
            assert!(
                matches!(r.reason, Reason::InvalidRequest | Reason::InvalidParams),
                "{bad}"
            );
        }
    }

    #[test]
    fn big_integer_ids_keep_their_value() {
        let p = parse(r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"ping"}"#).unwrap();
        assert_eq!(
            p.echo_id().map(|i| i.to_value()),
            Some(json!(18446744073709551615u64))
        );
        assert_eq!(
            reject(r#"{"jsonrpc":"2.0","id":18446744073709551616,"method":"ping"}"#).reason,
            Reason::InvalidRequest
        );
    }

    fn call(arguments: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"q","arguments":{arguments}}}}}"#
        )
    }

    #[test]
    fn duplicate_keys_inside_arguments_are_refused_at_any_depth() {
        for (arguments, path) in [
            (r#"{"sql":"a","sql":"b"}"#, "…/sql"),
            (r#"{"a":{"b":{"c":1,"c":2}}}"#, "…/c"),
            (r#"{"a":[1,{"b":[{"x/y":1,"x/y":2}]}]}"#, "…/x~1y"),
            (r#"{"a":1,"\u0061":2}"#, "…/a"),
        ] {
            let body = call(arguments);
            let r = reject(&body);
            assert_eq!(r.reason, Reason::DuplicateKey, "{body}");
            assert_eq!(
                r.detail,
                format!("duplicate key at {path}: parsers could read this body differently")
            );
            assert_eq!(r.id, Some(RpcId::Num(9.into())), "{body}");
        }
        let twice = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"q","arguments":{},"arguments":{"a":1}}}"#;
        assert_eq!(reject(twice).reason, Reason::DuplicateKey);
        let batch = format!(
            "[{},{}]",
            call("{}").replace(r#""id":9"#, r#""id":1"#),
            call(r#"{"k":[{"z":0,"z":1}]}"#)
        );
        let r = reject(&batch);
        assert_eq!((r.reason, r.id), (Reason::DuplicateKey, None));
    }

    #[test]
    fn nesting_inside_arguments_is_capped() {
        // max_depth 32: body 1, params 2, arguments 3, `a` holds n arrays from depth 4.
        let nested = |n: usize| call(&format!(r#"{{"a":{}0{}}}"#, "[".repeat(n), "]".repeat(n)));
        assert!(parse(&nested(29)).is_ok());
        let r = reject(&nested(30));
        assert_eq!(r.reason, Reason::TooDeep);
        assert_eq!(r.detail, "JSON nesting deeper than max_json_depth (32)");
        assert_eq!(reject(&nested(50_000)).reason, Reason::TooDeep);
    }

    #[test]
    fn arguments_must_be_an_object() {
        for method in ["tools/call", "prompts/get"] {
            for arguments in ["[]", "null", "\"x\"", "1", "true", "[{}]"] {
                let body = call(arguments).replace("tools/call", method);
                let r = reject(&body);
                assert_eq!(r.reason, Reason::InvalidParams, "{body}");
                assert_eq!(r.detail, "params.arguments must be an object");
                assert_eq!(r.id, Some(RpcId::Num(9.into())));
            }
        }
        // Other methods do not look at a member of that name.
        assert!(parse(&call("[]").replace("tools/call", "ping")).is_ok());
    }

    #[test]
    fn arguments_are_kept_as_their_text() {
        let p = parse(&call(r#" { "sql" : "SELECT 1", "n": [1, 2.50] } "#)).unwrap();
        let msg = &p.messages()[0];
        let arguments = msg.arguments().unwrap();
        assert_eq!(
            arguments.text(),
            r#"{ "sql" : "SELECT 1", "n": [1, 2.50] }"#
        );
        assert_eq!(
            arguments.to_value(),
            Some(json!({"sql": "SELECT 1", "n": [1, 2.5]}))
        );
        let Message::Request { params, .. } = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(params.get("name"), Some(&json!("q")));
        assert!(!params.contains_key("arguments"));
        let batch = format!(
            r#"[{{"jsonrpc":"2.0","method":"notifications/initialized"}},{}]"#,
            call(r#"{"b":2}"#)
        );
        let p = parse(&batch).unwrap();
        assert_eq!(p.messages()[0].arguments(), None);
        assert_eq!(
            p.messages()[1].arguments().map(RawJson::text),
            Some(r#"{"b":2}"#)
        );
    }

    #[test]
    fn request_methods_need_an_id_and_notifications_have_none() {
        let extra = vec![
            "x-vendor/thing".to_string(),
            "notifications/x-vendor".to_string(),
        ];
        let rules = ParseRules {
            extra_methods: &extra,
            ..rules()
        };
        let read = |body: &str| parse_payload(body.as_bytes(), &rules, true);
        for method in CLIENT_METHODS.iter().copied().chain(["x-vendor/thing"]) {
            if method.starts_with(NOTIFICATION_PREFIX) {
                continue;
            }
            let params = r#"{"name":"delete_file","uri":"demo://x","arguments":{}}"#;
            let body = format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":{params}}}"#);
            let r = read(&body).expect_err(&body);
            assert_eq!(r.reason, Reason::InvalidRequest, "{body}");
            assert_eq!(r.id, None);
            assert_eq!(
                r.detail,
                format!("`{method}` is a request method and needs an `id`: only `notifications/*` methods are sent without one")
            );
            // In a batch, whatever its place.
            let ok = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
            for batch in [format!("[{ok},{body}]"), format!("[{body},{ok}]")] {
                let r = read(&batch).expect_err(&batch);
                assert_eq!(r.reason, Reason::InvalidRequest, "{batch}");
                assert!(r.detail.contains("needs an `id`"), "{batch}: {}", r.detail);
            }
        }
        for method in CLIENT_METHODS
            .iter()
            .copied()
            .chain(["notifications/x-vendor"])
            .filter(|m| m.starts_with(NOTIFICATION_PREFIX))
        {
            let ok = format!(r#"{{"jsonrpc":"2.0","method":"{method}"}}"#);
            assert!(matches!(
                read(&ok).unwrap().messages()[0],
                Message::Notification { .. }
            ));
            for id in ["1", "\"n\"", "null"] {
                let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}"}}"#);
                let r = read(&body).expect_err(&body);
                assert_eq!(r.reason, Reason::InvalidRequest, "{body}");
                assert_eq!(
                    r.detail,
                    format!("`{method}` is a notification and must not carry an `id`")
                );
                let batch = format!(r#"[{{"jsonrpc":"2.0","id":7,"method":"ping"}},{body}]"#);
                assert_eq!(read(&batch).unwrap_err().reason, Reason::InvalidRequest);
            }
        }
    }

    #[test]
    fn case_folded_twin_keys_are_refused_at_any_depth() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"delete_file"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","NAME":"delete_file","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"query_table","arguments":{"table":"customers","TABLE":"financials"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q","arguments":{"a":{"b":[{"sql":1,"ſql":2}]}}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q","arguments":{"k":1,"K":2}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q","arguments":{"K":1,"K":2}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q","arguments":{},"Arguments":{"x":1}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q","ARGUMENTS":{"x":1},"arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://a","URI":"file:///etc/passwd"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"x":1,"X":2}}}"#,
        ] {
            let r = reject(body);
            assert_eq!(r.reason, Reason::DuplicateKey, "{body}");
            assert!(
                r.detail.contains("once case-folded"),
                "{body}: {}",
                r.detail
            );
            assert_eq!(r.id, Some(RpcId::Num(1.into())), "{body}");
        }
        // An object with many keys, the twin after the others.
        let many: Vec<String> = (0..40).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let body = call(&format!(r#"{{{},"K39":0}}"#, many.join(",")));
        assert_eq!(reject(&body).reason, Reason::DuplicateKey);
        // Whatever could be read as the id is not echoed.
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"ID":2,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"ıd":2,"method":"ping"}"#,
        ] {
            let r = reject(body);
            assert_eq!((r.reason, r.id), (Reason::DuplicateKey, None), "{body}");
        }
        // Batches.
        let batch = format!(
            "[{},{}]",
            call("{}").replace(r#""id":9"#, r#""id":1"#),
            call(r#"{"Path":"a","path":"b"}"#)
        );
        assert_eq!(reject(&batch).reason, Reason::DuplicateKey);
        // Keys that only look alike are fine: `ß` is not `ss`, `İ` is not `i`.
        for body in [
            call(r#"{"ss":1,"ß":2,"i":3,"İ":4,"name":5,"names":6}"#),
            call(r#"{"a":{"x":1},"b":{"x":2},"c":[{"x":3},{"x":4}]}"#),
        ] {
            assert!(parse(&body).is_ok(), "{body}");
        }
        // strict_keys off: decided on the exact keys, as before.
        let lax = ParseRules {
            strict_keys: false,
            ..rules()
        };
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"query_table","Name":"x","arguments":{"table":"customers","TABLE":"financials"}}}"#;
        assert!(parse_payload(body.as_bytes(), &lax, false).is_ok());
        let dup = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q","arguments":{"a":1,"a":2}}}"#;
        assert_eq!(
            parse_payload(dup.as_bytes(), &lax, false)
                .unwrap_err()
                .reason,
            Reason::DuplicateKey
        );
    }

    #[test]
    fn resource_uris_must_be_in_normal_form() {
        for method in [
            "resources/read",
            "resources/subscribe",
            "resources/unsubscribe",
        ] {
            let body = |uri: &str| {
                format!(
                    r#"{{"jsonrpc":"2.0","id":3,"method":"{method}","params":{{"uri":{}}}}}"#,
                    serde_json::to_string(uri).unwrap()
                )
            };
            let ok = parse(&body("file:///srv/shared/a.txt")).unwrap();
            assert_eq!(
                ok.messages()[0].target(),
                &Target::Resource("file:///srv/shared/a.txt".into())
            );
            for bad in [
                "file:///srv/shared/../../etc/passwd",
                "file:///srv/shared/%2e%2e/%2e%2e/etc/passwd",
                "file:///srv/shared/..%2fetc",
                "file:///srv/shared\\..\\x",
                "file:///srv/shared//etc",
                "FILE:///etc/passwd",
            ] {
                let r = reject(&body(bad));
                assert_eq!(r.reason, Reason::InvalidParams, "{bad}");
                assert!(
                    r.detail.starts_with("params.uri is not in normal form: "),
                    "{bad}: {}",
                    r.detail
                );
                assert_eq!(r.id, Some(RpcId::Num(3.into())));
            }
        }
    }

    #[test]
    fn completions_name_what_they_complete() {
        let body = |reference: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":4,"method":"completion/complete","params":{{"ref":{reference},"argument":{{"name":"a","value":"b"}}}}}}"#
            )
        };
        let target = |reference: &str| {
            parse(&body(reference)).unwrap().messages()[0]
                .target()
                .clone()
        };
        assert_eq!(
            target(r#"{"type":"ref/prompt","name":"greet"}"#),
            Target::Completion(Box::new(Target::Prompt("greet".into())))
        );
        assert_eq!(
            target(r#"{"type":"ref/resource","uri":"demo://items/{id}"}"#),
            Target::Completion(Box::new(Target::Resource("demo://items/{id}".into())))
        );
        assert_eq!(
            target(r#"{"type":"ref/prompt","name":"greet"}"#).name(),
            None
        );
        for bad in [
            "null",
            "[]",
            r#""greet""#,
            "{}",
            r#"{"type":"ref/tool","name":"x"}"#,
            r#"{"type":"ref/prompt"}"#,
            r#"{"type":"ref/prompt","name":""}"#,
            r#"{"type":"ref/prompt","name":7}"#,
            r#"{"type":"ref/prompt","uri":"demo://x"}"#,
            r#"{"type":"ref/resource","name":"x"}"#,
            r#"{"type":"ref/resource","uri":"file:///srv/{a}/../../etc"}"#,
        ] {
            let r = reject(&body(bad));
            assert_eq!(r.reason, Reason::InvalidParams, "{bad}: {}", r.detail);
            assert_eq!(r.id, Some(RpcId::Num(4.into())));
        }
        let no_ref = r#"{"jsonrpc":"2.0","id":4,"method":"completion/complete","params":{}}"#;
        assert_eq!(
            reject(no_ref).detail,
            "completion/complete needs params.ref"
        );
    }

    #[test]
    fn a_call_without_arguments_has_none() {
        let p = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q"}}"#)
            .unwrap();
        assert_eq!(p.messages()[0].target(), &Target::Tool("q".into()));
        assert_eq!(p.messages()[0].arguments(), None);
        assert_eq!(
            parse(&call("{}")).unwrap().messages()[0]
                .arguments()
                .map(RawJson::text),
            Some("{}")
        );
    }
}
