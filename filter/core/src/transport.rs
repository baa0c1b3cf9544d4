//! The Streamable HTTP transport rules (MCP 2025-03-26 … 2026-07-28).
//!
//! [`RequestHead::from_headers`] reads the headers that matter, refusing ambiguous ones
//! (a single-valued header sent twice, bytes that are not visible ASCII).
//! [`check_head`] applies the method / content-type / accept / version / session rules;
//! [`check_body_agrees`] makes sure the 2026-07-28 `Mcp-Method` / `Mcp-Name` headers say what
//! the body says, so that a router or policy reading headers sees the truth.

use crate::error::{Reason, Rejection};
use crate::jsonrpc::{Message, Payload};
use base64::Engine;

/// MCP protocol revisions this gateway understands.
pub const KNOWN_PROTOCOL_VERSIONS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

/// The revision assumed when a request carries no `MCP-Protocol-Version` (spec: 2025-03-26).
pub const DEFAULT_PROTOCOL_VERSION: &str = "2025-03-26";

/// The stateless revision that added `Mcp-Method` / `Mcp-Name` and dropped GET streams.
pub const STATELESS_REVISION: &str = "2026-07-28";

/// The HTTP methods of the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpMethod {
    /// Send a message.
    Post,
    /// Open a server-to-client SSE stream.
    Get,
    /// End a session.
    Delete,
    /// Anything else (refused).
    Other(String),
}

/// The request headers the transport rules look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// `:method`.
    pub method: HttpMethod,
    /// `:path`.
    pub path: String,
    /// `content-type`, lower-cased.
    pub content_type: Option<String>,
    /// `content-encoding`, lower-cased.
    pub content_encoding: Option<String>,
    /// All `accept` values, lower-cased and joined with commas.
    pub accept: String,
    /// `mcp-session-id`.
    pub session_id: Option<String>,
    /// `mcp-protocol-version`.
    pub protocol_version: Option<String>,
    /// `mcp-method` (2026-07-28).
    pub mcp_method: Option<String>,
    /// `mcp-name` (2026-07-28), raw (possibly `=?base64?…?=`).
    pub mcp_name: Option<String>,
    /// `content-length`, when sent.
    pub content_length: Option<u64>,
}

const SINGLE_VALUED: &[&str] = &[
    ":method",
    ":path",
    "content-type",
    "content-encoding",
    "content-length",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
];

/// Longest session id accepted.
pub const MAX_SESSION_ID_LEN: usize = 512;

impl RequestHead {
    /// Reads the head from header pairs as the host gives them (names in any case). Only the
    /// values it keeps are copied.
    pub fn from_headers<K: AsRef<str>, V: AsRef<[u8]>>(
        headers: &[(K, V)],
    ) -> Result<Self, Rejection> {
        let mut seen: [Option<&str>; SINGLE_VALUED.len()] = Default::default();
        let mut accept = String::new();
        let mut accepts = 0usize;
        for (name, value) in headers {
            let (name, value) = (name.as_ref(), value.as_ref());
            if name.eq_ignore_ascii_case("accept") {
                let v = visible_ascii(name, value)?;
                if accepts > 0 {
                    accept.push(',');
                }
                accept.reserve(v.len());
                accepts += 1;
                accept.extend(v.chars().map(|c| c.to_ascii_lowercase()));
                continue;
            }
            let Some(slot) = SINGLE_VALUED
                .iter()
                .position(|h| h.eq_ignore_ascii_case(name))
            else {
                continue;
            };
            if seen[slot].is_some() {
                return Err(Rejection::new(
                    Reason::InvalidHeader,
                    format!(
                        "header `{}` must appear at most once",
                        name.to_ascii_lowercase()
                    ),
                ));
            }
            seen[slot] = Some(visible_ascii(name, value)?);
        }
        let [method, path, content_type, content_encoding, content_length, session_id, protocol_version, mcp_method, mcp_name] =
            seen;
        let method = match method {
            Some("POST") => HttpMethod::Post,
            Some("GET") => HttpMethod::Get,
            Some("DELETE") => HttpMethod::Delete,
            Some(other) => HttpMethod::Other(other.to_string()),
            None => return Err(Rejection::new(Reason::InvalidHeader, "no :method")),
        };
        let content_length = match content_length {
            None => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                Rejection::new(Reason::InvalidHeader, "content-length is not a number")
            })?),
        };
        let owned = |v: Option<&str>| v.map(str::to_string);
        Ok(RequestHead {
            method,
            path: path.unwrap_or_default().to_string(),
            content_type: content_type.map(str::to_ascii_lowercase),
            content_encoding: content_encoding.map(str::to_ascii_lowercase),
            accept,
            session_id: owned(session_id),
            protocol_version: owned(protocol_version),
            mcp_method: owned(mcp_method),
            mcp_name: owned(mcp_name),
            content_length,
        })
    }
}

/// The trimmed value, if it is visible ASCII (plus space and tab inside): RFC 9110
/// field-content without obs-text.
fn visible_ascii<'v>(name: &str, value: &'v [u8]) -> Result<&'v str, Rejection> {
    let refused = || {
        Rejection::new(
            Reason::InvalidHeader,
            format!(
                "header `{}` holds bytes outside visible ASCII",
                name.to_ascii_lowercase()
            ),
        )
    };
    if !value
        .iter()
        .all(|&b| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b))
    {
        return Err(refused());
    }
    std::str::from_utf8(value)
        .map(str::trim)
        .map_err(|_| refused())
}

/// What the head tells the rest of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadVerdict {
    /// The effective protocol revision (header value, or the 2025-03-26 default).
    pub protocol_version: String,
    /// Whether a JSON body must follow (POST).
    pub expects_body: bool,
}

/// Applies the transport rules to the head.
pub fn check_head(
    head: &RequestHead,
    allowed_versions: &[String],
    max_body_bytes: u64,
    end_of_stream: bool,
) -> Result<HeadVerdict, Rejection> {
    let protocol_version = match &head.protocol_version {
        None => DEFAULT_PROTOCOL_VERSION.to_string(),
        Some(v) if allowed_versions.iter().any(|a| a == v) => v.clone(),
        Some(v) => {
            return Err(Rejection::new(
                Reason::UnsupportedProtocolVersion,
                format!(
                    "MCP-Protocol-Version `{}` is not supported (supported: {})",
                    v.chars().take(40).collect::<String>(),
                    allowed_versions.join(", ")
                ),
            ))
        }
    };
    if let Some(sid) = &head.session_id {
        if sid.is_empty()
            || sid.len() > MAX_SESSION_ID_LEN
            || sid.bytes().any(|b| !(0x21..=0x7e).contains(&b))
        {
            return Err(Rejection::new(
                Reason::InvalidSessionId,
                format!("Mcp-Session-Id must be 1..={MAX_SESSION_ID_LEN} visible ASCII characters"),
            ));
        }
    }
    if let Some(enc) = &head.content_encoding {
        if enc != "identity" {
            return Err(Rejection::new(
                Reason::UnsupportedMediaType,
                format!("Content-Encoding `{enc}` cannot be inspected; send the body uncompressed"),
            ));
        }
    }
    let body_announced = !end_of_stream || head.content_length.is_some_and(|l| l > 0);
    match &head.method {
        HttpMethod::Post => {
            check_post_content_type(head.content_type.as_deref())?;
            if !(accepts(&head.accept, "application/json")
                && accepts(&head.accept, "text/event-stream"))
            {
                return Err(Rejection::new(
                    Reason::NotAcceptable,
                    "POST must send Accept listing both application/json and text/event-stream (the 2024-11-05 HTTP+SSE transport is not supported)",
                ));
            }
            if let Some(len) = head.content_length {
                if len > max_body_bytes {
                    return Err(Rejection::new(
                        Reason::BodyTooLarge,
                        format!("body of {len} bytes exceeds max_body_bytes ({max_body_bytes})"),
                    ));
                }
            }
            Ok(HeadVerdict {
                protocol_version,
                expects_body: true,
            })
        }
        HttpMethod::Get => {
            if protocol_version == STATELESS_REVISION {
                return Err(Rejection::new(
                    Reason::MethodNotAllowed,
                    "protocol 2026-07-28 has no GET stream",
                ));
            }
            if !accepts(&head.accept, "text/event-stream") {
                return Err(Rejection::new(
                    Reason::NotAcceptable,
                    "GET must send Accept: text/event-stream",
                ));
            }
            if body_announced {
                return Err(Rejection::new(
                    Reason::InvalidRequest,
                    "GET must not carry a body",
                ));
            }
            Ok(HeadVerdict {
                protocol_version,
                expects_body: false,
            })
        }
        HttpMethod::Delete => {
            if head.session_id.is_none() {
                return Err(Rejection::new(
                    Reason::MissingSessionId,
                    "DELETE ends a session and needs Mcp-Session-Id",
                ));
            }
            if body_announced {
                return Err(Rejection::new(
                    Reason::InvalidRequest,
                    "DELETE must not carry a body",
                ));
            }
            Ok(HeadVerdict {
                protocol_version,
                expects_body: false,
            })
        }
        HttpMethod::Other(m) => Err(Rejection::new(
            Reason::MethodNotAllowed,
            format!(
                "HTTP method {} is not part of the MCP Streamable HTTP transport",
                m.chars().take(16).collect::<String>()
            ),
        )),
    }
}

fn check_post_content_type(ct: Option<&str>) -> Result<(), Rejection> {
    let Some(ct) = ct else {
        return Err(Rejection::new(
            Reason::UnsupportedMediaType,
            "POST needs Content-Type: application/json",
        ));
    };
    let mut parts = ct.split(';').map(str::trim);
    let essence = parts.next().unwrap_or_default();
    if essence != "application/json" {
        return Err(Rejection::new(
            Reason::UnsupportedMediaType,
            format!(
                "Content-Type `{}` is not application/json",
                essence.chars().take(64).collect::<String>()
            ),
        ));
    }
    for param in parts.filter(|p| !p.is_empty()) {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        if k.trim() == "charset" && !v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8") {
            return Err(Rejection::new(
                Reason::UnsupportedMediaType,
                "JSON bodies must be UTF-8",
            ));
        }
    }
    Ok(())
}

/// Whether an Accept header value lists `media` itself, with a non-zero quality. Ranges
/// (`*/*`, `text/*`) do not count: Streamable HTTP requires clients to list the types they can
/// read, and a client that sends only `*/*` (the 2024-11-05 HTTP+SSE transport's clients do)
/// may not understand an SSE answer to its POST.
pub fn accepts(accept: &str, media: &str) -> bool {
    accept.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let range = parts.next().unwrap_or_default();
        let q_zero = parts.any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim() == "q" && v.trim().parse::<f32>().is_ok_and(|q| q == 0.0)
            })
        });
        !q_zero && range == media
    })
}

/// Decodes an `Mcp-Name` value (`=?base64?…?=` carries non-ASCII names).
pub fn decode_mcp_name(raw: &str) -> Result<String, Rejection> {
    match raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        None => Ok(raw.to_string()),
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                Rejection::new(Reason::HeaderMismatch, "Mcp-Name is not valid base64 UTF-8")
            }),
    }
}

/// Checks that `Mcp-Method` / `Mcp-Name` agree with the body. Under 2026-07-28 they are
/// required for requests and notifications; for older revisions they are checked when sent.
pub fn check_body_agrees(
    head: &RequestHead,
    protocol_version: &str,
    payload: &Payload,
) -> Result<(), Rejection> {
    let required = protocol_version == STATELESS_REVISION;
    let id = payload.echo_id();
    let mismatch =
        |detail: String| Rejection::new(Reason::HeaderMismatch, detail).with_id(id.clone());
    let message = match payload {
        Payload::Single(m) => m,
        Payload::Batch(_) => {
            if head.mcp_method.is_some() || head.mcp_name.is_some() {
                return Err(mismatch(
                    "Mcp-Method / Mcp-Name cannot describe a batch".into(),
                ));
            }
            return Ok(());
        }
    };
    let method = message.method();
    match (&head.mcp_method, method) {
        (Some(h), Some(b)) if h == b => {}
        (Some(h), Some(b)) => {
            return Err(mismatch(format!(
                "Mcp-Method `{}` does not match the body's method `{b}`",
                h.chars().take(64).collect::<String>()
            )))
        }
        (Some(_), None) => return Err(mismatch("Mcp-Method sent with a response body".into())),
        (None, Some(_)) if required => {
            return Err(mismatch(
                "protocol 2026-07-28 requires the Mcp-Method header".into(),
            ))
        }
        (None, _) => {}
    }
    let body_name = match message {
        Message::Request { .. } => message.target().name(),
        _ => None,
    };
    match (&head.mcp_name, body_name) {
        (Some(raw), Some(b)) => {
            if decode_mcp_name(raw)? != b {
                return Err(mismatch(
                    "Mcp-Name does not match the name/uri in the body".into(),
                ));
            }
        }
        (Some(_), None) => {
            return Err(mismatch(
                "Mcp-Name sent for a message that names nothing".into(),
            ))
        }
        (None, Some(_)) if required => {
            return Err(mismatch(
                "protocol 2026-07-28 requires the Mcp-Name header".into(),
            ))
        }
        (None, _) => {}
    }
    Ok(())
}

/// Whether a batch is allowed under this revision.
pub fn batch_allowed(protocol_version: &str) -> bool {
    protocol_version == "2025-03-26"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::{parse_payload, ParseRules};

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const ACCEPT_BOTH: &str = "application/json, text/event-stream";

    fn versions() -> Vec<String> {
        KNOWN_PROTOCOL_VERSIONS
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn head(pairs: &[(&str, &str)]) -> Result<RequestHead, Rejection> {
        let owned: Vec<(String, Vec<u8>)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        RequestHead::from_headers(&owned)
    }

    fn check(pairs: &[(&str, &str)], eos: bool) -> Result<HeadVerdict, Rejection> {
        check_head(&head(pairs)?, &versions(), 1000, eos)
    }

    fn reason(pairs: &[(&str, &str)], eos: bool) -> Reason {
        check(pairs, eos).expect_err("expected a rejection").reason
    }

    #[test]
    fn a_normal_post_passes() {
        let v = check(
            &[
                (":method", "POST"),
                ("content-type", "application/json; charset=utf-8"),
                ("accept", ACCEPT_BOTH),
            ],
            false,
        )
        .unwrap();
        assert_eq!(v.protocol_version, "2025-03-26");
        assert!(v.expects_body);
    }

    #[test]
    fn post_rules() {
        let ct = ("content-type", "application/json");
        let acc = ("accept", ACCEPT_BOTH);
        assert_eq!(
            reason(&[(":method", "POST"), acc], false),
            Reason::UnsupportedMediaType
        );
        assert_eq!(
            reason(
                &[(":method", "POST"), ("content-type", "text/plain"), acc],
                false
            ),
            Reason::UnsupportedMediaType
        );
        assert_eq!(
            reason(
                &[
                    (":method", "POST"),
                    ("content-type", "application/json; charset=latin1"),
                    acc
                ],
                false
            ),
            Reason::UnsupportedMediaType
        );
        assert_eq!(
            reason(
                &[(":method", "POST"), ct, acc, ("content-encoding", "gzip")],
                false
            ),
            Reason::UnsupportedMediaType
        );
        assert_eq!(
            reason(
                &[(":method", "POST"), ct, ("accept", "application/json")],
                false
            ),
            Reason::NotAcceptable
        );
        assert_eq!(
            reason(&[(":method", "POST"), ct], false),
            Reason::NotAcceptable
        );
        assert_eq!(
            reason(
                &[(":method", "POST"), ct, acc, ("content-length", "1001")],
                false
            ),
            Reason::BodyTooLarge
        );
        // Ranges do not list the types: the legacy HTTP+SSE transport's `*/*` is refused.
        for accept in [
            "*/*",
            "application/*, text/*",
            "*/*, text/event-stream",
            "application/json, */*",
        ] {
            assert_eq!(
                reason(&[(":method", "POST"), ct, ("accept", accept)], false),
                Reason::NotAcceptable,
                "{accept}"
            );
        }
        assert!(check(
            &[
                (":method", "POST"),
                ct,
                ("accept", "application/json"),
                ("accept", "text/event-stream")
            ],
            false
        )
        .is_ok());
        assert_eq!(
            reason(
                &[
                    (":method", "POST"),
                    ct,
                    ("accept", "application/json, text/event-stream;q=0")
                ],
                false
            ),
            Reason::NotAcceptable
        );
    }

    #[test]
    fn get_delete_and_other_methods() {
        let sse = ("accept", "text/event-stream");
        assert!(check(&[(":method", "GET"), sse], true).is_ok());
        assert_eq!(reason(&[(":method", "GET")], true), Reason::NotAcceptable);
        assert_eq!(
            reason(&[(":method", "GET"), ("accept", "*/*")], true),
            Reason::NotAcceptable
        );
        assert_eq!(
            reason(&[(":method", "GET"), sse], false),
            Reason::InvalidRequest
        );
        assert_eq!(
            reason(
                &[
                    (":method", "GET"),
                    sse,
                    ("mcp-protocol-version", "2026-07-28")
                ],
                true
            ),
            Reason::MethodNotAllowed
        );
        assert_eq!(
            reason(&[(":method", "DELETE")], true),
            Reason::MissingSessionId
        );
        assert!(check(&[(":method", "DELETE"), ("mcp-session-id", "abc")], true).is_ok());
        assert_eq!(
            reason(&[(":method", "PUT")], true),
            Reason::MethodNotAllowed
        );
        assert_eq!(
            reason(&[(":method", "OPTIONS")], true),
            Reason::MethodNotAllowed
        );
        assert_eq!(
            reason(&[(":method", "post")], true),
            Reason::MethodNotAllowed
        );
    }

    #[test]
    fn versions_and_session_ids() {
        let sse = ("accept", "text/event-stream");
        assert_eq!(
            reason(
                &[
                    (":method", "GET"),
                    sse,
                    ("mcp-protocol-version", "1999-01-01")
                ],
                true
            ),
            Reason::UnsupportedProtocolVersion
        );
        assert_eq!(
            check(
                &[
                    (":method", "GET"),
                    sse,
                    ("mcp-protocol-version", "2025-06-18")
                ],
                true
            )
            .unwrap()
            .protocol_version,
            "2025-06-18"
        );
        let only_old = vec!["2025-03-26".to_string()];
        let h = head(&[
            (":method", "GET"),
            sse,
            ("mcp-protocol-version", "2025-06-18"),
        ])
        .unwrap();
        assert_eq!(
            check_head(&h, &only_old, 10, true).unwrap_err().reason,
            Reason::UnsupportedProtocolVersion
        );
        let long = "a".repeat(MAX_SESSION_ID_LEN + 1);
        assert_eq!(
            reason(&[(":method", "GET"), sse, ("mcp-session-id", &long)], true),
            Reason::InvalidSessionId
        );
        assert_eq!(
            reason(&[(":method", "GET"), sse, ("mcp-session-id", "a b")], true),
            Reason::InvalidSessionId
        );
    }

    #[test]
    fn ambiguous_headers_are_refused() {
        let dup = head(&[
            (":method", "GET"),
            ("mcp-session-id", "a"),
            ("mcp-session-id", "b"),
        ])
        .unwrap_err();
        assert_eq!(dup.reason, Reason::InvalidHeader);
        let dup = head(&[
            (":method", "POST"),
            ("Content-Type", "application/json"),
            ("content-type", "text/plain"),
        ])
        .unwrap_err();
        assert_eq!(dup.reason, Reason::InvalidHeader);
        let raw = vec![
            (":method".to_string(), b"GET".to_vec()),
            ("mcp-session-id".to_string(), b"caf\xc3\xa9".to_vec()),
        ];
        assert_eq!(
            RequestHead::from_headers(&raw).unwrap_err().reason,
            Reason::InvalidHeader
        );
        assert_eq!(
            head(&[(":method", "POST"), ("content-length", "12x")])
                .unwrap_err()
                .reason,
            Reason::InvalidHeader
        );
    }

    #[test]
    fn the_head_reads_names_in_any_case_and_keeps_trimmed_values() {
        let h = head(&[
            (":Method", " POST "),
            (":path", "/mcp?x=1"),
            ("Content-Type", "Application/JSON; Charset=UTF-8"),
            ("ACCEPT", " Application/Json "),
            ("x-other", "\u{e9}"),
            ("accept", ""),
            ("Accept", "Text/Event-Stream;q=1"),
            ("Content-Length", " 42"),
            ("Mcp-Session-Id", "S-1"),
            ("MCP-Protocol-Version", "2025-06-18"),
            ("mcp-method", "tools/call"),
            ("Mcp-Name", "=?base64?ZWNobw==?="),
            ("content-encoding", "Identity"),
        ])
        .unwrap();
        assert_eq!(
            h,
            RequestHead {
                method: HttpMethod::Post,
                path: "/mcp?x=1".into(),
                content_type: Some("application/json; charset=utf-8".into()),
                content_encoding: Some("identity".into()),
                accept: "application/json,,text/event-stream;q=1".into(),
                session_id: Some("S-1".into()),
                protocol_version: Some("2025-06-18".into()),
                mcp_method: Some("tools/call".into()),
                mcp_name: Some("=?base64?ZWNobw==?=".into()),
                content_length: Some(42),
            }
        );
        let other = head(&[(":method", "PATCH")]).unwrap();
        assert_eq!(
            (other.method, other.path, other.accept, other.content_type),
            (
                HttpMethod::Other("PATCH".into()),
                String::new(),
                String::new(),
                None
            )
        );
        // Refusals name the header in lower case.
        let dup = head(&[
            (":method", "GET"),
            ("MCP-Session-Id", "a"),
            ("mcp-session-id", "b"),
        ]);
        assert_eq!(
            dup.unwrap_err().detail,
            "header `mcp-session-id` must appear at most once"
        );
        let raw = vec![
            (":method".to_string(), b"GET".to_vec()),
            ("Accept".to_string(), b"text/\x7f".to_vec()),
        ];
        assert_eq!(
            RequestHead::from_headers(&raw).unwrap_err().detail,
            "header `accept` holds bytes outside visible ASCII"
        );
        assert_eq!(head(&[]).unwrap_err().detail, "no :method");
    }

    fn agree(pairs: &[(&str, &str)], version: &str, body: &str) -> Result<(), Rejection> {
        let rules = ParseRules {
            max_depth: 16,
            max_batch: 8,
            extra_methods: &[],
            strict_keys: true,
        };
        let payload = parse_payload(body.as_bytes(), &rules, true).unwrap();
        check_body_agrees(&head(pairs).unwrap(), version, &payload)
    }

    #[test]
    fn mcp_method_and_name_headers_must_match_the_body() {
        let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"}}"#;
        let m = (":method", "POST");
        assert!(agree(
            &[m, ("mcp-method", "tools/call"), ("mcp-name", "echo")],
            "2026-07-28",
            call
        )
        .is_ok());
        assert!(agree(&[m], "2025-06-18", call).is_ok());
        let r = agree(
            &[m, ("mcp-method", "tools/list"), ("mcp-name", "echo")],
            "2026-07-28",
            call,
        )
        .unwrap_err();
        assert_eq!(
            (r.reason, r.id.map(|i| i.to_value())),
            (Reason::HeaderMismatch, Some(serde_json::json!(3)))
        );
        assert!(agree(&[m, ("mcp-method", "tools/list")], "2025-06-18", call).is_err());
        assert!(agree(
            &[m, ("mcp-method", "tools/call"), ("mcp-name", "other")],
            "2026-07-28",
            call
        )
        .is_err());
        assert!(agree(&[m, ("mcp-method", "tools/call")], "2026-07-28", call).is_err());
        assert!(agree(&[m, ("mcp-name", "echo")], "2026-07-28", call).is_err());
        let enc = format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode("échø")
        );
        let call_utf8 =
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"échø"}}"#;
        assert!(agree(
            &[m, ("mcp-method", "tools/call"), ("mcp-name", &enc)],
            "2026-07-28",
            call_utf8
        )
        .is_ok());
        assert!(agree(
            &[
                m,
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?%%?=")
            ],
            "2026-07-28",
            call_utf8
        )
        .is_err());
        let read =
            r#"{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"demo://a"}}"#;
        assert!(agree(
            &[
                m,
                ("mcp-method", "resources/read"),
                ("mcp-name", "demo://a")
            ],
            "2026-07-28",
            read
        )
        .is_ok());
        let list = r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;
        assert!(agree(
            &[m, ("mcp-method", "tools/list"), ("mcp-name", "x")],
            "2026-07-28",
            list
        )
        .is_err());
        let resp = r#"{"jsonrpc":"2.0","id":5,"result":{}}"#;
        assert!(agree(&[m], "2026-07-28", resp).is_ok());
        assert!(agree(&[m, ("mcp-method", "ping")], "2025-06-18", resp).is_err());
        let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#;
        assert!(agree(&[m, ("mcp-method", "ping")], "2025-03-26", batch).is_err());
    }

    #[test]
    fn accept_matching() {
        assert!(accepts("text/event-stream;q=0.5", "text/event-stream"));
        assert!(!accepts("text/*", "text/event-stream"));
        assert!(!accepts("*/*", "text/event-stream"));
        assert!(!accepts("text/html", "text/event-stream"));
        assert!(!accepts("", "application/json"));
        assert!(!accepts("application/jsonx", "application/json"));
    }
}
