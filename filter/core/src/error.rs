//! The one place where a refusal becomes an HTTP status and a JSON-RPC error.
//!
//! Every module reports a [`Rejection`] (a [`Reason`] plus a human-readable detail and,
//! when it could be read, the JSON-RPC id of the request); [`Rejection::to_reply`] maps it.

use serde_json::{json, Value};

/// Why a request was refused. The snake_case name is stable: it appears in the JSON-RPC
/// error's `data.reason`, in logs and in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The body is not JSON (syntax, encoding, empty).
    ParseError,
    /// The same key appears twice in one object: two JSON parsers could read it differently.
    DuplicateKey,
    /// Nesting deeper than `max_json_depth`.
    TooDeep,
    /// JSON, but not a valid JSON-RPC 2.0 / MCP message.
    InvalidRequest,
    /// A known MCP method with malformed `params`.
    InvalidParams,
    /// A method this gateway does not know (and is not configured to allow).
    UnknownMethod,
    /// A JSON-RPC batch where the protocol revision does not allow batches.
    BatchNotAllowed,
    /// `Content-Type` (or `Content-Encoding`) the gateway cannot inspect.
    UnsupportedMediaType,
    /// `Accept` does not list what the Streamable HTTP transport requires.
    NotAcceptable,
    /// HTTP method outside POST / GET / DELETE.
    MethodNotAllowed,
    /// Body larger than `max_body_bytes`.
    BodyTooLarge,
    /// `Mcp-Method` / `Mcp-Name` header disagrees with the body (or is missing where required).
    HeaderMismatch,
    /// `MCP-Protocol-Version` names a revision this gateway does not support.
    UnsupportedProtocolVersion,
    /// A request that needs `Mcp-Session-Id` does not carry one.
    MissingSessionId,
    /// `Mcp-Session-Id` is not made of visible ASCII, or too long.
    InvalidSessionId,
    /// A header that must appear at most once appears several times, or has bad bytes.
    InvalidHeader,
    /// The gateway itself failed (a host call did not work); the request is not forwarded.
    Internal,
    /// No user or agent token.
    MissingToken,
    /// A token jwt_authn or our claim rules refused (issuer, audience, expiry, kind, claims).
    InvalidToken,
    /// The agent does not validly act for this user (delegator, delegation chain).
    DelegationInvalid,
    /// The agent's attestation is missing, forged or stale.
    AttestationInvalid,
    /// The user token lacks a required scope (step-up possible).
    InsufficientScope,
    /// The agent is authenticated but not allowed here (type, provider, model, trust, capability).
    AgentNotAllowed,
    /// The policy or the tool registry refuses this request.
    PolicyDenied,
    /// The token service is down, slow or answered garbage (fail closed).
    ExchangeUnavailable,
    /// The token service refused the exchange.
    ExchangeRefused,
    /// The token service answered, but not with what was asked for (wrong token type, wider
    /// scope, the caller's own token, malformed): its token is not used.
    ExchangeInvalidAnswer,
    /// The session id is unknown, tampered with, or its instance is gone: re-initialize.
    SessionNotFound,
    /// The session belongs to another user or agent.
    SessionForbidden,
    /// The request path is not a configured MCP endpoint (only the exact `policy.servers[].path`
    /// is; the 2024-11-05 HTTP+SSE transport's `/sse` and `/messages` are not supported).
    UnknownEndpoint,
}

impl Reason {
    /// Stable snake_case name of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ParseError => "parse_error",
            Reason::DuplicateKey => "duplicate_key",
            Reason::TooDeep => "too_deep",
            Reason::InvalidRequest => "invalid_request",
            Reason::InvalidParams => "invalid_params",
            Reason::UnknownMethod => "unknown_method",
            Reason::BatchNotAllowed => "batch_not_allowed",
            Reason::UnsupportedMediaType => "unsupported_media_type",
            Reason::NotAcceptable => "not_acceptable",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::BodyTooLarge => "body_too_large",
            Reason::HeaderMismatch => "header_mismatch",
            Reason::UnsupportedProtocolVersion => "unsupported_protocol_version",
            Reason::MissingSessionId => "missing_session_id",
            Reason::InvalidSessionId => "invalid_session_id",
            Reason::InvalidHeader => "invalid_header",
            Reason::Internal => "internal_error",
            Reason::MissingToken => "missing_token",
            Reason::InvalidToken => "invalid_token",
            Reason::DelegationInvalid => "delegation_invalid",
            Reason::AttestationInvalid => "attestation_invalid",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::AgentNotAllowed => "agent_not_allowed",
            Reason::PolicyDenied => "policy_denied",
            Reason::ExchangeUnavailable => "token_service_unavailable",
            Reason::ExchangeRefused => "token_exchange_refused",
            Reason::ExchangeInvalidAnswer => "token_service_invalid_answer",
            Reason::SessionNotFound => "session_not_found",
            Reason::SessionForbidden => "session_forbidden",
            Reason::UnknownEndpoint => "unknown_endpoint",
        }
    }

    /// HTTP status and JSON-RPC error code (DESIGN.md §5).
    pub fn status_and_code(self) -> (u32, i64) {
        match self {
            Reason::ParseError => (400, -32700),
            Reason::InvalidParams => (400, -32602),
            Reason::UnknownMethod => (400, -32601),
            Reason::UnsupportedMediaType => (415, -32600),
            Reason::NotAcceptable => (406, -32600),
            Reason::MethodNotAllowed => (405, -32600),
            Reason::BodyTooLarge => (413, -32600),
            Reason::Internal => (500, -32603),
            Reason::MissingToken
            | Reason::InvalidToken
            | Reason::DelegationInvalid
            | Reason::AttestationInvalid => (401, -32001),
            Reason::InsufficientScope
            | Reason::AgentNotAllowed
            | Reason::PolicyDenied
            | Reason::ExchangeRefused
            | Reason::SessionForbidden => (403, -32003),
            Reason::ExchangeUnavailable => (503, -32004),
            Reason::ExchangeInvalidAnswer => (502, -32004),
            Reason::SessionNotFound => (404, -32001),
            Reason::UnknownEndpoint => (404, -32600),
            Reason::DuplicateKey
            | Reason::TooDeep
            | Reason::InvalidRequest
            | Reason::BatchNotAllowed
            | Reason::HeaderMismatch
            | Reason::UnsupportedProtocolVersion
            | Reason::MissingSessionId
            | Reason::InvalidSessionId
            | Reason::InvalidHeader => (400, -32600),
        }
    }

    fn message(self) -> &'static str {
        match self {
            Reason::ParseError => "Parse error",
            Reason::InvalidParams => "Invalid params",
            Reason::UnknownMethod => "Method not found",
            Reason::Internal => "Internal error",
            Reason::MissingToken
            | Reason::InvalidToken
            | Reason::DelegationInvalid
            | Reason::AttestationInvalid => "Unauthorized",
            Reason::InsufficientScope
            | Reason::AgentNotAllowed
            | Reason::PolicyDenied
            | Reason::ExchangeRefused
            | Reason::SessionForbidden => "Forbidden",
            Reason::ExchangeUnavailable => "Token service unavailable",
            Reason::ExchangeInvalidAnswer => "Bad Gateway",
            Reason::SessionNotFound => "Session not found",
            _ => "Invalid Request",
        }
    }
}

/// A JSON-RPC id as read from a request: only strings and integers are valid MCP ids.
/// Serialises as the bare id, like [`RpcId::to_value`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum RpcId {
    /// A string id.
    Str(String),
    /// An integer id (kept as its exact JSON number).
    Num(serde_json::Number),
}

impl RpcId {
    /// The id as a JSON value, for echoing.
    pub fn to_value(&self) -> Value {
        match self {
            RpcId::Str(s) => Value::String(s.clone()),
            RpcId::Num(n) => Value::Number(n.clone()),
        }
    }

    /// Reads an id from a JSON value; `None` if it is not a string or an integer.
    pub fn from_value(v: &Value) -> Option<RpcId> {
        match v {
            Value::String(s) => Some(RpcId::Str(s.clone())),
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(RpcId::Num(n.clone())),
            _ => None,
        }
    }
}

/// A refusal, before it is turned into an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// What went wrong.
    pub reason: Reason,
    /// Human-readable detail; never contains a credential.
    pub detail: String,
    /// The JSON-RPC id of the refused request, when it could be read.
    pub id: Option<RpcId>,
    /// Stable id of the rule that refused (e.g. `user.expired`), when one did.
    pub rule: Option<String>,
    /// Scopes to ask for (step-up), for `insufficient_scope`.
    pub scope: Option<String>,
}

impl Rejection {
    /// A rejection with no id.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
            id: None,
            rule: None,
            scope: None,
        }
    }

    /// Names the rule that refused.
    pub fn with_rule(mut self, rule: &str) -> Self {
        self.rule = Some(rule.to_string());
        self
    }

    /// Names the scopes a step-up should request.
    pub fn with_scope(mut self, scope: String) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Attaches the request id (keeps an id already set).
    pub fn with_id(mut self, id: Option<RpcId>) -> Self {
        if self.id.is_none() {
            self.id = id;
        }
        self
    }

    /// The HTTP answer for this rejection, without an identity challenge.
    pub fn to_reply(&self) -> Reply {
        self.to_reply_with(None)
    }

    /// The HTTP answer; `resource_metadata` (RFC 9728 URL) goes into `WWW-Authenticate`.
    pub fn to_reply_with(&self, resource_metadata: Option<&str>) -> Reply {
        let (status, code) = self.reason.status_and_code();
        let mut data = json!({ "reason": self.reason.as_str(), "detail": self.detail });
        if let Some(rule) = &self.rule {
            data["rule"] = json!(rule);
        }
        let body = json!({
            "jsonrpc": "2.0",
            "id": self.id.as_ref().map(RpcId::to_value).unwrap_or(Value::Null),
            "error": {
                "code": code,
                "message": self.reason.message(),
                "data": data,
            }
        });
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if self.reason == Reason::MethodNotAllowed {
            headers.push(("allow".to_string(), "GET, POST, DELETE".to_string()));
        }
        if let Some(challenge) = self.challenge(resource_metadata) {
            headers.push(("www-authenticate".to_string(), challenge));
        }
        Reply {
            status,
            headers,
            body: body.to_string().into_bytes(),
        }
    }
}

impl Rejection {
    /// The `WWW-Authenticate` value (RFC 6750 + RFC 9728) for identity refusals.
    fn challenge(&self, resource_metadata: Option<&str>) -> Option<String> {
        let error = match self.reason {
            Reason::MissingToken => None,
            Reason::InvalidToken | Reason::DelegationInvalid | Reason::AttestationInvalid => {
                Some("invalid_token")
            }
            Reason::InsufficientScope => Some("insufficient_scope"),
            _ => return None,
        };
        let mut parts = vec![];
        if let Some(url) = resource_metadata {
            parts.push(format!("resource_metadata=\"{}\"", quoted(url)));
        }
        if let Some(error) = error {
            parts.push(format!("error=\"{error}\""));
            parts.push(format!("error_description=\"{}\"", quoted(&self.detail)));
        }
        if let Some(scope) = &self.scope {
            parts.push(format!("scope=\"{}\"", quoted(scope)));
        }
        Some(if parts.is_empty() {
            "Bearer".to_string()
        } else {
            format!("Bearer {}", parts.join(", "))
        })
    }
}

/// Makes a value safe inside a quoted-string: printable ASCII without `"` and `\\`.
fn quoted(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A local reply the adapter sends instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u32,
    /// Response headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn reply_echoes_id_and_reason() {
        let r = Rejection::new(Reason::InvalidParams, "params.name must be a string")
            .with_id(Some(RpcId::Num(7.into())));
        let reply = r.to_reply();
        assert_eq!(reply.status, 400);
        let v: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        assert_eq!(v["id"], json!(7));
        assert_eq!(v["error"]["code"], json!(-32602));
        assert_eq!(v["error"]["data"]["reason"], json!("invalid_params"));
    }

    #[test]
    fn reply_without_id_has_null_id() {
        let reply = Rejection::new(Reason::ParseError, "x").to_reply();
        let v: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Bool(false));
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"]["code"], json!(-32700));
    }

    #[test]
    fn method_not_allowed_lists_allowed_methods() {
        let reply = Rejection::new(Reason::MethodNotAllowed, "PUT").to_reply();
        assert_eq!(reply.status, 405);
        assert!(reply
            .headers
            .iter()
            .any(|(k, v)| k == "allow" && v.contains("POST")));
    }

    #[test]
    fn identity_refusals_carry_a_challenge() {
        let url = Some("https://gw/.well-known/oauth-protected-resource/mcp");
        let missing = Rejection::new(Reason::MissingToken, "no user token")
            .with_rule("user.missing")
            .to_reply_with(url);
        assert_eq!(missing.status, 401);
        let www = |r: &Reply| {
            r.headers
                .iter()
                .find(|(k, _)| k == "www-authenticate")
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            www(&missing).unwrap(),
            "Bearer resource_metadata=\"https://gw/.well-known/oauth-protected-resource/mcp\""
        );
        let v: Value = serde_json::from_slice(&missing.body).unwrap();
        assert_eq!(
            (
                v["error"]["code"].clone(),
                v["error"]["data"]["rule"].clone()
            ),
            (json!(-32001), json!("user.missing"))
        );
        let expired =
            Rejection::new(Reason::InvalidToken, "user token \"x\" expired").to_reply_with(url);
        assert!(www(&expired)
            .unwrap()
            .contains("error=\"invalid_token\", error_description=\"user token _x_ expired\""));
        let scope = Rejection::new(Reason::InsufficientScope, "lacks HR_read")
            .with_scope("HR_read mcp".into())
            .to_reply_with(url);
        assert_eq!(scope.status, 403);
        assert!(www(&scope).unwrap().ends_with("scope=\"HR_read mcp\""));
        let agent = Rejection::new(Reason::AgentNotAllowed, "low trust").to_reply_with(url);
        assert_eq!((agent.status, www(&agent)), (403, None));
    }

    #[test]
    fn first_id_wins() {
        let r = Rejection::new(Reason::InvalidRequest, "x")
            .with_id(Some(RpcId::Str("a".into())))
            .with_id(Some(RpcId::Str("b".into())));
        assert_eq!(r.id, Some(RpcId::Str("a".into())));
    }
}
