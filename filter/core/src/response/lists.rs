//! Filtering the results of the MCP list methods (`tools/list`, `prompts/list`,
//! `resources/list`, `resources/templates/list`).
//!
//! Only the list array is touched: items the caller does not keep are removed, items without a
//! string key are removed too (fail closed), and every other member of the result (`nextCursor`,
//! `_meta`, unknown ones) stays as it was.

use crate::json::{parse_strict, JsonError};
use serde_json::Value;
use std::fmt;

/// Nesting accepted in a response message (the most [`parse_strict`] allows).
const MAX_MESSAGE_DEPTH: usize = 120;

/// Which list method a result answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// `tools/list`: `result.tools[].name`.
    Tools,
    /// `prompts/list`: `result.prompts[].name`.
    Prompts,
    /// `resources/list`: `result.resources[].uri`.
    Resources,
    /// `resources/templates/list`: `result.resourceTemplates[].uriTemplate`.
    ResourceTemplates,
}

impl ListKind {
    /// The kind of list a request method returns; `None` for any other method.
    pub fn from_method(method: &str) -> Option<ListKind> {
        match method {
            "tools/list" => Some(ListKind::Tools),
            "prompts/list" => Some(ListKind::Prompts),
            "resources/list" => Some(ListKind::Resources),
            "resources/templates/list" => Some(ListKind::ResourceTemplates),
            _ => None,
        }
    }

    /// The request method.
    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
        }
    }

    /// The member of `result` holding the array.
    pub fn array_key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The member of each item naming it (the string handed to the keep decision).
    pub fn item_key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        }
    }
}

/// Why a list result could not be filtered (the caller should not forward it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    /// `result` is not a JSON object.
    ResultNotObject,
    /// `result` has no member holding the list.
    MissingList {
        /// The expected member (`tools`, `prompts`, ...).
        key: &'static str,
    },
    /// The list member is not an array.
    NotAnArray {
        /// The member (`tools`, `prompts`, ...).
        key: &'static str,
    },
    /// The message is not (unambiguous) JSON.
    Json(JsonError),
    /// The message has a key twice, so clients could read it differently than the filter.
    DuplicateKeys(Vec<String>),
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListError::ResultNotObject => f.write_str("list result is not an object"),
            ListError::MissingList { key } => write!(f, "list result has no `{key}`"),
            ListError::NotAnArray { key } => write!(f, "list result `{key}` is not an array"),
            ListError::Json(JsonError::Syntax(msg)) => write!(f, "response is not JSON: {msg}"),
            ListError::Json(JsonError::TooDeep { limit }) => {
                write!(f, "response nests deeper than {limit} levels")
            }
            ListError::DuplicateKeys(paths) => {
                write!(f, "response has duplicate keys: {}", paths.join(", "))
            }
        }
    }
}

impl std::error::Error for ListError {}

/// What filtering did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// Items kept.
    pub kept: usize,
    /// Items removed (refused by the decision, or without a string key).
    pub removed: usize,
}

/// Removes from `result`'s list every item for which `keep(key, item)` is false, and every
/// item without a string key (never shown to `keep`). Nothing else in `result` changes.
pub fn filter_result(
    kind: ListKind,
    result: &mut Value,
    keep: &mut dyn FnMut(&str, &Value) -> bool,
) -> Result<FilterStats, ListError> {
    let key = kind.array_key();
    let items = result
        .as_object_mut()
        .ok_or(ListError::ResultNotObject)?
        .get_mut(key)
        .ok_or(ListError::MissingList { key })?
        .as_array_mut()
        .ok_or(ListError::NotAnArray { key })?;
    let mut stats = FilterStats::default();
    items.retain(|item| {
        let kept = match item.get(kind.item_key()).and_then(Value::as_str) {
            Some(name) => keep(name, item),
            None => false,
        };
        if kept {
            stats.kept += 1;
        } else {
            stats.removed += 1;
        }
        kept
    });
    Ok(stats)
}

/// Filters one JSON-RPC message from the upstream (a whole JSON body, or the data of one SSE
/// event) that may answer the list request `request_id`.
///
/// - A response with a `result` whose `id` matches `request_id` (see [`ids_match`]) is filtered
///   and returned re-serialised: `Ok(Some(bytes))`. In a batch (a JSON array), every such
///   element is filtered and the whole batch returned.
/// - Anything else (notification, server request, error response, another id): `Ok(None)`,
///   forward the original bytes unchanged.
/// - Not JSON, too deep, duplicate keys anywhere, or a matching result that cannot be
///   filtered: an error; the caller must not forward the message.
pub fn filter_message(
    kind: ListKind,
    message_json: &[u8],
    request_id: &Value,
    keep: &mut dyn FnMut(&str, &Value) -> bool,
) -> Result<Option<Vec<u8>>, ListError> {
    let parsed = parse_strict(message_json, MAX_MESSAGE_DEPTH).map_err(ListError::Json)?;
    if !parsed.duplicate_keys.is_empty() {
        return Err(ListError::DuplicateKeys(parsed.duplicate_keys));
    }
    let mut message = parsed.value;
    let mut changed = false;
    match &mut message {
        Value::Array(batch) => {
            for element in batch {
                changed |= filter_if_answer(kind, element, request_id, keep)?;
            }
        }
        single => changed = filter_if_answer(kind, single, request_id, keep)?,
    }
    if !changed {
        return Ok(None);
    }
    // Serialising a `Value` with string keys cannot fail; map the error anyway.
    serde_json::to_vec(&message)
        .map(Some)
        .map_err(|e| ListError::Json(JsonError::Syntax(e.to_string())))
}

/// Filters `message` if it is a response with a result answering `request_id`; returns whether
/// it was.
fn filter_if_answer(
    kind: ListKind,
    message: &mut Value,
    request_id: &Value,
    keep: &mut dyn FnMut(&str, &Value) -> bool,
) -> Result<bool, ListError> {
    let Some(object) = message.as_object_mut() else {
        return Ok(false);
    };
    let answers = object.get("id").is_some_and(|id| ids_match(id, request_id));
    match object.get_mut("result") {
        Some(result) if answers => {
            filter_result(kind, result, keep)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Whether a response id answers a request id, as loosely as any client may compare them:
/// equal JSON values, or equal numbers after reading strings the way JavaScript's `Number()`
/// does (the TypeScript SDK looks responses up by `Number(id)`, so `"1"` and `1.0` answer `1`).
/// Matching too much only filters more; matching too little would let a list through unfiltered.
pub fn ids_match(response_id: &Value, request_id: &Value) -> bool {
    if response_id == request_id {
        return true;
    }
    match (js_number(response_id), js_number(request_id)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// `Number(v)` in JavaScript for a JSON number or string; `None` for NaN or another type.
fn js_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}');
            if s.is_empty() {
                return Some(0.0);
            }
            for (prefix, radix) in [
                ("0x", 16),
                ("0X", 16),
                ("0o", 8),
                ("0O", 8),
                ("0b", 2),
                ("0B", 2),
            ] {
                if let Some(digits) = s.strip_prefix(prefix) {
                    return radix_value(digits, radix);
                }
            }
            match s {
                "Infinity" | "+Infinity" => return Some(f64::INFINITY),
                "-Infinity" => return Some(f64::NEG_INFINITY),
                _ => {}
            }
            // Rust also reads `inf` and `nan`, which JavaScript does not; neither can equal a
            // finite JSON id, so accepting them changes nothing.
            s.parse::<f64>().ok().filter(|x| !x.is_nan())
        }
        _ => None,
    }
}

fn radix_value(digits: &str, radix: u32) -> Option<f64> {
    if digits.is_empty() {
        return None;
    }
    let mut value = 0f64;
    for c in digits.chars() {
        value = value * f64::from(radix) + f64::from(c.to_digit(radix)?);
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn keep_names<'a>(names: &'a [&'a str]) -> impl FnMut(&str, &Value) -> bool + 'a {
        move |name, _| names.contains(&name)
    }

    #[test]
    fn kinds_map_methods_arrays_and_keys() {
        let cases = [
            ("tools/list", ListKind::Tools, "tools", "name"),
            ("prompts/list", ListKind::Prompts, "prompts", "name"),
            ("resources/list", ListKind::Resources, "resources", "uri"),
            (
                "resources/templates/list",
                ListKind::ResourceTemplates,
                "resourceTemplates",
                "uriTemplate",
            ),
        ];
        for (method, kind, array, key) in cases {
            assert_eq!(ListKind::from_method(method), Some(kind));
            assert_eq!(kind.method(), method);
            assert_eq!(kind.array_key(), array);
            assert_eq!(kind.item_key(), key);
        }
        assert_eq!(ListKind::from_method("tools/call"), None);
        assert_eq!(ListKind::from_method("Tools/List"), None);
    }

    #[test]
    fn removes_refused_items_and_keeps_the_rest_of_the_result() {
        let mut result = json!({
            "tools": [
                {"name": "read", "inputSchema": {"type": "object"}},
                {"name": "write", "inputSchema": {"type": "object"}},
                {"name": "delete", "inputSchema": {"type": "object"}}
            ],
            "nextCursor": "abc",
            "_meta": {"x": 1}
        });
        let stats = filter_result(
            ListKind::Tools,
            &mut result,
            &mut keep_names(&["read", "delete"]),
        )
        .unwrap();
        assert_eq!(
            stats,
            FilterStats {
                kept: 2,
                removed: 1
            }
        );
        assert_eq!(
            result,
            json!({
                "tools": [
                    {"name": "read", "inputSchema": {"type": "object"}},
                    {"name": "delete", "inputSchema": {"type": "object"}}
                ],
                "nextCursor": "abc",
                "_meta": {"x": 1}
            })
        );
    }

    #[test]
    fn keep_sees_the_key_and_the_item() {
        let mut result = json!({"resources": [
            {"uri": "file:///a", "name": "a", "mimeType": "text/plain"},
            {"uri": "file:///b", "name": "b"}
        ]});
        let mut seen = Vec::new();
        let stats = filter_result(ListKind::Resources, &mut result, &mut |uri, item| {
            seen.push(uri.to_owned());
            item.get("mimeType").is_some()
        })
        .unwrap();
        assert_eq!(seen, ["file:///a", "file:///b"]);
        assert_eq!(
            stats,
            FilterStats {
                kept: 1,
                removed: 1
            }
        );
        assert_eq!(result["resources"][0]["uri"], "file:///a");
    }

    #[test]
    fn items_without_a_string_key_are_removed_unseen() {
        let mut result = json!({"prompts": [
            {"name": "ok"}, {"name": 5}, {"title": "no name"}, "string item", null, {"name": null}
        ]});
        let mut calls = 0;
        let stats = filter_result(ListKind::Prompts, &mut result, &mut |_, _| {
            calls += 1;
            true
        })
        .unwrap();
        assert_eq!(calls, 1);
        assert_eq!(
            stats,
            FilterStats {
                kept: 1,
                removed: 5
            }
        );
        assert_eq!(result, json!({"prompts": [{"name": "ok"}]}));
    }

    #[test]
    fn templates_use_uri_template() {
        let mut result = json!({"resourceTemplates": [
            {"uriTemplate": "db://{table}", "name": "t"},
            {"uri": "db://x", "name": "u"}
        ]});
        let stats = filter_result(ListKind::ResourceTemplates, &mut result, &mut |k, _| {
            k == "db://{table}"
        })
        .unwrap();
        assert_eq!(
            stats,
            FilterStats {
                kept: 1,
                removed: 1
            }
        );
    }

    #[test]
    fn missing_or_wrong_list_is_an_error() {
        let mut keep = |_: &str, _: &Value| true;
        assert_eq!(
            filter_result(ListKind::Tools, &mut json!({"prompts": []}), &mut keep),
            Err(ListError::MissingList { key: "tools" })
        );
        assert_eq!(
            filter_result(
                ListKind::Tools,
                &mut json!({"tools": {"name": "x"}}),
                &mut keep
            ),
            Err(ListError::NotAnArray { key: "tools" })
        );
        assert_eq!(
            filter_result(ListKind::Tools, &mut json!([]), &mut keep),
            Err(ListError::ResultNotObject)
        );
        assert_eq!(
            filter_result(ListKind::Tools, &mut json!({"tools": []}), &mut keep),
            Ok(FilterStats::default())
        );
    }

    #[test]
    fn filter_message_rewrites_the_matching_response() {
        let body = br#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"a"},{"name":"b"}],"nextCursor":"n"}}"#;
        let out = filter_message(ListKind::Tools, body, &json!(3), &mut keep_names(&["b"]))
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"b"}],"nextCursor":"n"}})
        );
    }

    #[test]
    fn filter_message_returns_bytes_even_when_nothing_is_removed() {
        let body = br#"{"jsonrpc":"2.0","id":"x","result":{"tools":[]}}"#;
        let out = filter_message(ListKind::Tools, body, &json!("x"), &mut |_, _| true).unwrap();
        assert!(out.is_some());
    }

    #[test]
    fn filter_message_leaves_other_messages_alone() {
        let mut keep = |_: &str, _: &Value| false;
        let id = json!(1);
        for body in [
            &br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}"#,
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#,
            br#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"a"}]}}"#,
            br#"{"jsonrpc":"2.0","id":"abc","result":{"tools":[{"name":"a"}]}}"#,
            br#"{"jsonrpc":"2.0","result":{"tools":[{"name":"a"}]}}"#,
            br#"[{"jsonrpc":"2.0","method":"notifications/progress"}]"#,
            br#"[]"#,
            br#""just a string""#,
        ] {
            assert_eq!(
                filter_message(ListKind::Tools, body, &id, &mut keep),
                Ok(None),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn filter_message_fails_closed() {
        let mut keep = |_: &str, _: &Value| true;
        let id = json!(1);
        assert!(matches!(
            filter_message(ListKind::Tools, b"{not json", &id, &mut keep),
            Err(ListError::Json(JsonError::Syntax(_)))
        ));
        assert_eq!(
            filter_message(
                ListKind::Tools,
                br#"{"id":2,"id":1,"result":{"tools":[]}}"#,
                &id,
                &mut keep
            ),
            Err(ListError::DuplicateKeys(vec!["/id".into()]))
        );
        assert_eq!(
            filter_message(
                ListKind::Tools,
                br#"{"id":1,"result":{"prompts":[]}}"#,
                &id,
                &mut keep
            ),
            Err(ListError::MissingList { key: "tools" })
        );
        assert_eq!(
            filter_message(
                ListKind::Tools,
                br#"{"id":1,"result":"x","error":{}}"#,
                &id,
                &mut keep
            ),
            Err(ListError::ResultNotObject)
        );
        let deep = format!("{}{}", "[".repeat(130), "]".repeat(130));
        assert!(matches!(
            filter_message(ListKind::Tools, deep.as_bytes(), &id, &mut keep),
            Err(ListError::Json(JsonError::TooDeep { .. }))
        ));
    }

    #[test]
    fn filter_message_handles_batches() {
        let body = br#"[{"jsonrpc":"2.0","method":"notifications/x"},{"jsonrpc":"2.0","id":7,"result":{"prompts":[{"name":"p"},{"name":"q"}]}}]"#;
        let out = filter_message(ListKind::Prompts, body, &json!(7), &mut keep_names(&["q"]))
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[0]["method"], "notifications/x");
        assert_eq!(v[1]["result"]["prompts"], json!([{"name": "q"}]));
    }

    #[test]
    fn loosely_equal_ids_are_filtered_too() {
        for response_id in [
            json!(1),
            json!(1.0),
            json!("1"),
            json!(" 1 "),
            json!("1e0"),
            json!("0x1"),
            json!("+1"),
        ] {
            let body = serde_json::to_vec(
                &json!({"id": response_id, "result": {"tools": [{"name": "a"}]}}),
            )
            .unwrap();
            let out = filter_message(ListKind::Tools, &body, &json!(1), &mut |_, _| false).unwrap();
            let v: Value = serde_json::from_slice(&out.unwrap()).unwrap();
            assert_eq!(v["result"]["tools"], json!([]), "{response_id}");
        }
    }

    #[test]
    fn ids_match_like_javascript_number() {
        assert!(ids_match(&json!("abc"), &json!("abc")));
        assert!(!ids_match(&json!("abc"), &json!("abd")));
        assert!(ids_match(&json!(""), &json!(0)));
        assert!(ids_match(&json!("0b101"), &json!(5)));
        assert!(ids_match(&json!("0o17"), &json!(15)));
        assert!(ids_match(&json!(2), &json!("2")));
        assert!(!ids_match(&json!("1x"), &json!(1)));
        assert!(!ids_match(&json!("0x"), &json!(0)));
        assert!(!ids_match(&json!("nan"), &json!("NaN")));
        assert!(!ids_match(&json!(null), &json!(0)));
        assert!(!ids_match(&json!(true), &json!(1)));
        assert!(!ids_match(&json!(-1), &json!(1)));
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            ListError::MissingList { key: "tools" }.to_string(),
            "list result has no `tools`"
        );
        assert_eq!(
            ListError::DuplicateKeys(vec!["/id".into()]).to_string(),
            "response has duplicate keys: /id"
        );
    }
}
