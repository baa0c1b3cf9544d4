//! What each message of an upstream answer is, and which answers a stream may carry.
//!
//! Every JSON-RPC message the upstream sends (a JSON body, each element of a batch, each SSE
//! event's data, on any stream) is [`classify`]d from its envelope alone:
//!
//! - an **answer** (`result` or `error` with an `id`) is forwarded only if it answers a request
//!   of this stream that is still [`Outstanding`] (by id, compared as loosely as clients compare
//!   them, see [`ids_match`]); an answer to a list request is list-filtered, whatever label the
//!   upstream put on the stream or the event;
//! - a **server request** (`method` and `id`: sampling, elicitation, roots) and a
//!   **notification** (`method` without `id`) are forwarded (through the response filters);
//! - anything else — not JSON, not JSON-RPC 2.0, unknown top-level members, a key twice — is
//!   not forwarded: what the gateway cannot read, a client could read differently.
//!
//! The envelope is read without building `params`, `result` or `error` (they are kept as text):
//! the list and content filters read them with the strict reader when they apply.

use crate::jsonrpc::{Message, Payload};
use crate::response::lists::{ids_match, ListKind};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// One request of the stream's POST body that has not been answered yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    #[serde(rename = "i")]
    id: Value,
    #[serde(rename = "l", default, with = "list_kind")]
    list: Option<ListKind>,
    #[serde(rename = "d", default)]
    answered: bool,
}

/// A list kind as its request method (in sealed event ids).
mod list_kind {
    use crate::response::lists::ListKind;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(k: &Option<ListKind>, s: S) -> Result<S::Ok, S::Error> {
        match k {
            Some(k) => s.serialize_some(k.method()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ListKind>, D::Error> {
        let m: Option<String> = Option::deserialize(d)?;
        match m {
            None => Ok(None),
            Some(m) => ListKind::from_method(&m)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("unknown list method")),
        }
    }
}

/// The requests a stream may answer: those of its own POST body. The GET stream and a DELETE
/// answer none; a resumed stream answers what its sealed `Last-Event-ID` says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Outstanding {
    entries: Vec<Entry>,
}

/// The request an answer claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The id of the request, as the client sent it.
    pub id: Value,
    /// The list it asked for, if it was a list request.
    pub list: Option<ListKind>,
}

impl Outstanding {
    /// The requests of a forwarded body (notifications and client answers expect nothing).
    pub fn of(payload: &Payload) -> Outstanding {
        let entries = payload
            .messages()
            .iter()
            .filter_map(|m| match m {
                Message::Request { id, method, .. } => Some(Entry {
                    id: id.to_value(),
                    list: ListKind::from_method(method),
                    answered: false,
                }),
                _ => None,
            })
            .collect();
        Outstanding { entries }
    }

    /// Whether two requests have ids a client could confuse (`1` and `"1"`): their answers
    /// could not be told apart, so neither could be filtered for what it is.
    pub fn has_confusable_ids(&self) -> bool {
        self.entries.iter().enumerate().any(|(i, a)| {
            self.entries
                .iter()
                .skip(i + 1)
                .any(|b| ids_match(&a.id, &b.id))
        })
    }

    /// Marks the request `id` answers as answered and returns it; `None` if it answers no
    /// request of this stream, or one already answered.
    pub fn claim(&mut self, id: &Value) -> Option<Claim> {
        let entry = self
            .entries
            .iter_mut()
            .find(|e| !e.answered && ids_match(id, &e.id))?;
        entry.answered = true;
        Some(Claim {
            id: entry.id.clone(),
            list: entry.list,
        })
    }

    /// The id of the first request not answered yet (`null` if none), for an error answer that
    /// replaces an unreadable body.
    pub fn first_unanswered(&self) -> Value {
        self.entries
            .iter()
            .find(|e| !e.answered)
            .map_or(Value::Null, |e| e.id.clone())
    }

    /// The requests not answered yet (what a resumed stream may still answer).
    pub fn unanswered(&self) -> Outstanding {
        Outstanding {
            entries: self
                .entries
                .iter()
                .filter(|e| !e.answered)
                .cloned()
                .collect(),
        }
    }

    /// Whether the stream has requests at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What one upstream message is.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// An answer (`result` or `error`) to the request with this id.
    Answer(Value),
    /// An error answer with a `null` id (the upstream could not read a request).
    ErrorWithoutId,
    /// A request from the server (`method` and `id`).
    ServerRequest,
    /// A notification from the server (`method`, no `id`).
    Notification,
}

/// The envelope of a JSON-RPC message; members other than these are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    jsonrpc: String,
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// A member that is there, even as `null`: `"result": null` next to an `error` is two answers to
/// a client that tests for the member, not one.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Reads what one message is from its envelope. `Err` says why it is not a JSON-RPC 2.0
/// message (the caller must not forward it).
pub fn classify(message: &[u8]) -> Result<Kind, String> {
    let e: Envelope<'_> =
        serde_json::from_slice(message).map_err(|e| format!("not a JSON-RPC message: {e}"))?;
    if e.jsonrpc != "2.0" {
        return Err("`jsonrpc` is not \"2.0\"".into());
    }
    let id = match e.id {
        None => None,
        Some(raw) => Some(
            serde_json::from_str::<Value>(raw.get()).map_err(|e| format!("unreadable id: {e}"))?,
        ),
    };
    let is_object = |raw: &RawValue| raw.get().trim_start().starts_with('{');
    let method = match e.method {
        None => None,
        Some(raw) => Some(
            serde_json::from_str::<String>(raw.get())
                .map_err(|_| "`method` is not a string".to_string())?,
        ),
    };
    match (method, e.result, e.error) {
        (Some(_), None, None) => {
            if e.params.is_some_and(|p| !is_object(p)) {
                return Err("`params` is not an object".into());
            }
            match id {
                None => Ok(Kind::Notification),
                Some(Value::String(_)) => Ok(Kind::ServerRequest),
                Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Kind::ServerRequest),
                Some(_) => Err("a request id must be a string or an integer".into()),
            }
        }
        (None, result, error) if e.params.is_none() && result.is_some() != error.is_some() => {
            if let Some(r) = result.or(error) {
                if !is_object(r) {
                    return Err("`result` / `error` is not an object".into());
                }
            }
            match id {
                Some(Value::Null) | None if error.is_some() => Ok(Kind::ErrorWithoutId),
                Some(v @ Value::String(_)) => Ok(Kind::Answer(v)),
                Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
                    Ok(Kind::Answer(Value::Number(n)))
                }
                _ => Err("an answer needs the string or integer id of its request".into()),
            }
        }
        _ => Err("neither a request, a notification nor an answer".into()),
    }
}

/// A body or event data split into its messages: one message, or each element of a batch.
pub enum Messages<'a> {
    /// One message (the whole text).
    Single(&'a [u8]),
    /// The elements of a batch, each as its text.
    Batch(Vec<&'a RawValue>),
}

/// Splits an answer body into messages. `Err` when it is neither a JSON object nor an array.
pub fn split(body: &[u8]) -> Result<Messages<'_>, String> {
    let start = body.iter().find(|b| !b.is_ascii_whitespace());
    match start {
        Some(b'{') => Ok(Messages::Single(body)),
        Some(b'[') => serde_json::from_slice::<Vec<&RawValue>>(body)
            .map(Messages::Batch)
            .map_err(|e| format!("not a JSON-RPC batch: {e}")),
        _ => Err("not a JSON-RPC message".into()),
    }
}

/// The media type of a `content-type` value, as the filter reads the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// `application/json` (parameters aside).
    Json,
    /// `text/event-stream` (parameters aside).
    EventStream,
    /// Anything else, or no content type.
    Other,
}

impl Media {
    /// The media type of `content-type`: the type/subtype before any `;`, compared without case.
    /// `text/plain; x=text/event-stream` is `Other`, however a client's substring test reads it.
    pub fn of(content_type: Option<&str>) -> Media {
        let Some(ct) = content_type else {
            return Media::Other;
        };
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/json") {
            Media::Json
        } else if essence.eq_ignore_ascii_case("text/event-stream") {
            Media::EventStream
        } else {
            Media::Other
        }
    }

    /// Whether a client that looks for substrings in the header could read it as another type
    /// than this one (`application/json; x=text/event-stream`): then the header is replaced by
    /// the plain type.
    pub fn is_ambiguous(self, content_type: &str) -> bool {
        let lower = content_type.to_ascii_lowercase();
        let json = lower.contains("application/json");
        let sse = lower.contains("text/event-stream");
        match self {
            Media::Json => sse || lower.matches("json").count() > 1,
            Media::EventStream => json || lower.matches("event-stream").count() > 1,
            Media::Other => json || sse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::{parse_payload, ParseRules};
    use serde_json::json;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn payload(body: &str) -> Payload {
        let rules = ParseRules {
            max_depth: 64,
            max_batch: 10,
            extra_methods: &[],
            strict_keys: true,
        };
        parse_payload(body.as_bytes(), &rules, true).unwrap()
    }

    #[test]
    fn classifies_by_envelope() {
        let k = |s: &str| classify(s.as_bytes());
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[]}}"#),
            Ok(Kind::Answer(json!(3)))
        );
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"x"}}"#),
            Ok(Kind::Answer(json!("a")))
        );
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}"#),
            Ok(Kind::ErrorWithoutId)
        );
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","id":9,"method":"sampling/createMessage","params":{}}"#),
            Ok(Kind::ServerRequest)
        );
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"p":1}}"#),
            Ok(Kind::Notification)
        );
        for bad in [
            "",
            "null",
            "[]",
            "not json",
            r#"{"jsonrpc":"2.0","id":1,"result":{},"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"result":{}}"#,
            r#"{"jsonrpc":"1.0","id":1,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{},"extra":1}"#,
            r#"{"jsonrpc":"2.0","ID":1,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":""}}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":null,"result":{}}"#,
            r#"{"jsonrpc":"2.0","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":[]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            r#"{"jsonrpc":"2.0","method":"x","params":[1]}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{}} trailing"#,
            // A member present as null is present: two answers, or no method.
            r#"{"jsonrpc":"2.0","id":1,"result":null,"error":{"code":1,"message":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":null,"result":{}}"#,
            r#"{"jsonrpc":"2.0","method":"x","params":null}"#,
        ] {
            assert!(k(bad).is_err(), "{bad} must not classify");
        }
    }

    #[test]
    fn answers_claim_their_request_once_by_loose_id() {
        let mut o = Outstanding::of(&payload(
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":"p","method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#,
        ));
        assert!(!o.has_confusable_ids());
        assert_eq!(o.first_unanswered(), json!(1));
        assert_eq!(
            o.claim(&json!("1")),
            Some(Claim {
                id: json!(1),
                list: Some(ListKind::Tools)
            })
        );
        assert_eq!(o.claim(&json!(1)), None, "answered once");
        assert_eq!(o.claim(&json!(2)), None, "never asked");
        assert_eq!(o.first_unanswered(), json!("p"));
        assert_eq!(
            o.claim(&json!("p")),
            Some(Claim {
                id: json!("p"),
                list: None
            })
        );
        assert_eq!(o.first_unanswered(), Value::Null);
        assert!(Outstanding::default().claim(&json!(1)).is_none());
    }

    #[test]
    fn confusable_ids_are_found() {
        let o = Outstanding::of(&payload(
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":"1","method":"ping"}]"#,
        ));
        assert!(o.has_confusable_ids());
    }

    #[test]
    fn media_types_are_read_by_their_essence() {
        assert_eq!(Media::of(Some("application/json")), Media::Json);
        assert_eq!(
            Media::of(Some(" Application/JSON ; charset=utf-8")),
            Media::Json
        );
        assert_eq!(Media::of(Some("text/event-stream")), Media::EventStream);
        assert_eq!(
            Media::of(Some("text/plain; x=text/event-stream")),
            Media::Other
        );
        assert_eq!(Media::of(Some("application/json-seq")), Media::Other);
        assert_eq!(Media::of(None), Media::Other);
        assert!(Media::Json.is_ambiguous("application/json; x=text/event-stream"));
        assert!(!Media::Json.is_ambiguous("application/json; charset=utf-8"));
        assert!(Media::Other.is_ambiguous("text/plain; x=text/event-stream"));
        assert!(!Media::Other.is_ambiguous("text/html"));
    }

    #[test]
    fn bodies_split_into_messages() {
        assert!(matches!(split(b" {\"a\":1}"), Ok(Messages::Single(_))));
        match split(br#"[{"a":1}, {"b":2}]"#) {
            Ok(Messages::Batch(items)) => assert_eq!(items.len(), 2),
            _ => panic!("a batch"),
        }
        assert!(split(b"\"x\"").is_err());
        assert!(split(b"[1,").is_err());
        assert!(split(b"").is_err());
    }
}
