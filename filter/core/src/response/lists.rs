//! Filtering the results of the MCP list methods (`tools/list`, `prompts/list`,
//! `resources/list`, `resources/templates/list`).
//!
//! Only the list array is touched: items the caller does not keep are removed, items without a
//! string key are removed too (fail closed), and every other member of the result (`nextCursor`,
//! `_meta`, unknown ones) stays as it was.
//!
//! The items are never built into a tree: the strict reader checks them and keeps the array as
//! text ([`parse_list_answer`]), each item's key is read from its text, and the items kept are
//! copied into the answer byte for byte. Only the envelope is re-serialised.

use crate::json::{parse_list_answer, JsonError, RawJson};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::value::RawValue;
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

/// One item of a list answer, as the upstream wrote it (already checked by the strict reader).
#[derive(Debug, Clone, Copy)]
pub struct ListItem<'a>(&'a RawValue);

impl ListItem<'_> {
    /// The item's JSON text.
    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// The item, parsed now (`None` only if the text were not JSON, which the strict reader has
    /// already ruled out).
    pub fn value(&self) -> Option<Value> {
        serde_json::from_str(self.0.get()).ok()
    }
}

/// The decision for one item: its key (name or URI) and the item.
pub type Keep<'k> = dyn FnMut(&str, &ListItem<'_>) -> bool + 'k;

/// Keeps from the list array `text` every item for which `keep(key, item)` is true; items
/// without a string key are removed unseen.
fn filter_items<'t>(
    kind: ListKind,
    text: &'t str,
    keep: &mut Keep<'_>,
) -> Result<Vec<&'t RawValue>, ListError> {
    let items: Vec<&RawValue> = serde_json::from_str(text)
        .map_err(|e| ListError::Json(JsonError::Syntax(e.to_string())))?;
    let mut kept = Vec::with_capacity(items.len());
    for raw in items {
        let mut de = serde_json::Deserializer::from_str(raw.get());
        let key = KeyOf(kind.item_key())
            .deserialize(&mut de)
            .map_err(|e| ListError::Json(JsonError::Syntax(e.to_string())))?;
        if key.is_some_and(|name| keep(&name, &ListItem(raw))) {
            kept.push(raw);
        }
    }
    Ok(kept)
}

/// Reads the string member `.0` of an object; `None` for another type or a non-string member.
struct KeyOf<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyOf<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyOf<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list item")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut twin = false;
        while let Some(key) = map.next_key_seed(IsKey(self.0))? {
            match key {
                // The strict reader refused duplicate keys: this is the only one.
                Key::Exact => {
                    if let Value::String(s) = map.next_value::<Value>()? {
                        found = Some(s);
                    }
                }
                Key::Twin => {
                    twin = true;
                    map.next_value::<IgnoredAny>()?;
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        // `{"name":"echo","Name":"delete_file"}`: a case-insensitive decoder (Go's) reads the
        // other one; such an item is removed unseen.
        Ok(found.filter(|_| !twin))
    }
}

/// How an object key compares with `.0`.
enum Key {
    /// The key itself.
    Exact,
    /// Another key equal to it once case-folded.
    Twin,
    /// Any other key.
    Other,
}

/// Compares an object key with `.0`.
struct IsKey<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for IsKey<'_> {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for IsKey<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(if v == self.0 {
            Key::Exact
        } else if crate::json::fold::fold_eq(v, self.0) {
            Key::Twin
        } else {
            Key::Other
        })
    }
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
    keep: &mut Keep<'_>,
) -> Result<Option<Vec<u8>>, ListError> {
    let parsed = parse_list_answer(message_json, MAX_MESSAGE_DEPTH, kind.array_key())
        .map_err(ListError::Json)?;
    if !parsed.duplicate_keys.is_empty() {
        return Err(ListError::DuplicateKeys(parsed.duplicate_keys));
    }
    let list_of = |i: usize| {
        parsed
            .lists
            .iter()
            .find(|(at, _)| *at == i)
            .map(|(_, text)| text)
    };
    let mut changed = false;
    let out = match &parsed.value {
        Value::Array(batch) => {
            let mut splices = Vec::with_capacity(batch.len());
            for (i, element) in batch.iter().enumerate() {
                let list = list_of(i);
                let splice = filter_if_answer(kind, element, list, request_id, keep)?;
                changed |= splice.is_some();
                splices.push(splice_or_original(kind, splice, list));
            }
            if !changed {
                return Ok(None);
            }
            let batch = batch.iter().zip(&splices).map(|(message, list)| Spliced {
                message,
                list: list.as_ref(),
            });
            to_vec(&SplicedBatch(batch.collect()))?
        }
        single => {
            let list = list_of(0);
            let Some(splice) = filter_if_answer(kind, single, list, request_id, keep)? else {
                return Ok(None);
            };
            let splice = Splice {
                key: kind.array_key(),
                items: Items::Kept(splice),
            };
            to_vec(&Spliced {
                message: single,
                list: Some(&splice),
            })?
        }
    };
    Ok(Some(out))
}

/// The items to write back into a message: the kept ones if it was filtered, else all of them
/// as they were (a list kept as text is an empty array in the envelope).
fn splice_or_original<'t>(
    kind: ListKind,
    filtered: Option<Vec<&'t RawValue>>,
    original: Option<&'t RawJson>,
) -> Option<Splice<'t>> {
    match (filtered, original) {
        (Some(kept), _) => Some(Splice {
            key: kind.array_key(),
            items: Items::Kept(kept),
        }),
        (None, Some(text)) => Some(Splice {
            key: kind.array_key(),
            items: Items::Original(text.raw()),
        }),
        (None, None) => None,
    }
}

fn to_vec(value: &impl Serialize) -> Result<Vec<u8>, ListError> {
    // Serialising `Value`s and checked raw text cannot fail; map the error anyway.
    serde_json::to_vec(value).map_err(|e| ListError::Json(JsonError::Syntax(e.to_string())))
}

/// Filters `message` if it is a response with a result answering `request_id`: the items kept
/// of its list (`list`: the array as text), or `None` if it does not answer.
fn filter_if_answer<'t>(
    kind: ListKind,
    message: &Value,
    list: Option<&'t RawJson>,
    request_id: &Value,
    keep: &mut Keep<'_>,
) -> Result<Option<Vec<&'t RawValue>>, ListError> {
    let Some(object) = message.as_object() else {
        return Ok(None);
    };
    let answers = object.get("id").is_some_and(|id| ids_match(id, request_id));
    let result = match object.get("result") {
        Some(result) if answers => result,
        _ => return Ok(None),
    };
    let key = kind.array_key();
    let member = result
        .as_object()
        .ok_or(ListError::ResultNotObject)?
        .get(key)
        .ok_or(ListError::MissingList { key })?;
    match (member, list) {
        // The reader kept the array as text and left an empty one in its place.
        (Value::Array(_), Some(text)) => filter_items(kind, text.text(), keep).map(Some),
        _ => Err(ListError::NotAnArray { key }),
    }
}

/// The list written back into one message.
struct Splice<'t> {
    /// The member of `result` (`tools`, ...).
    key: &'static str,
    items: Items<'t>,
}

enum Items<'t> {
    /// The items kept, each as the upstream wrote it.
    Kept(Vec<&'t RawValue>),
    /// The whole array as the upstream wrote it (a message that was not filtered).
    Original(&'t RawValue),
}

impl Serialize for Items<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Items::Kept(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Items::Original(raw) => raw.serialize(s),
        }
    }
}

/// A message with its `result.<key>` replaced by the spliced items.
struct Spliced<'a, 't> {
    message: &'a Value,
    list: Option<&'a Splice<'t>>,
}

impl Serialize for Spliced<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (Value::Object(message), Some(list)) = (self.message, self.list) else {
            return self.message.serialize(s);
        };
        let mut map = s.serialize_map(Some(message.len()))?;
        for (k, v) in message {
            match v {
                Value::Object(result) if k == "result" => {
                    map.serialize_entry(k, &SplicedResult { result, list })?
                }
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

struct SplicedResult<'a, 't> {
    result: &'a serde_json::Map<String, Value>,
    list: &'a Splice<'t>,
}

impl Serialize for SplicedResult<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.result.len()))?;
        for (k, v) in self.result {
            if k == self.list.key {
                map.serialize_entry(k, &self.list.items)?;
            } else {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

struct SplicedBatch<'a, 't>(Vec<Spliced<'a, 't>>);

impl Serialize for SplicedBatch<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for message in &self.0 {
            seq.serialize_element(message)?;
        }
        seq.end()
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

    fn keep_names<'a>(names: &'a [&'a str]) -> impl FnMut(&str, &ListItem<'_>) -> bool + 'a {
        move |name, _| names.contains(&name)
    }

    /// What filtering did.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    struct FilterStats {
        /// Items kept.
        kept: usize,
        /// Items removed (refused by the decision, or without a string key).
        removed: usize,
    }

    /// Filters `result` as the answer to request 1, in place; what filtering did.
    fn filter_result(
        kind: ListKind,
        result: &mut Value,
        keep: &mut Keep<'_>,
    ) -> Result<FilterStats, ListError> {
        let body = serde_json::to_vec(&json!({"id": 1, "result": result.clone()})).unwrap();
        let parsed = parse_list_answer(&body, MAX_MESSAGE_DEPTH, kind.array_key()).unwrap();
        let list = parsed.lists.first().map(|(_, text)| text);
        let kept = filter_if_answer(kind, &parsed.value, list, &json!(1), keep)?.unwrap();
        let kept: Vec<Value> = kept
            .iter()
            .map(|raw| serde_json::from_str(raw.get()).unwrap())
            .collect();
        let total = result[kind.array_key()].as_array().map_or(0, Vec::len);
        let stats = FilterStats {
            kept: kept.len(),
            removed: total - kept.len(),
        };
        result[kind.array_key()] = Value::Array(kept);
        Ok(stats)
    }

    #[test]
    fn items_whose_key_has_a_case_twin_are_removed_unseen() {
        let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [
            {"name": "echo", "Name": "delete_file"},
            {"NAME": "delete_file"},
            {"name": "echo", "\u{17f}\u{212a}ip": 1},
            {"name": "add", "naMe": "x"},
            {"name": "ok"}
        ]}})
        .to_string();
        let mut seen = Vec::new();
        let out = filter_message(
            ListKind::Tools,
            answer.as_bytes(),
            &json!(1),
            &mut |n, _| {
                seen.push(n.to_string());
                true
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(seen, vec!["echo", "ok"]);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 2);
        assert!(!String::from_utf8_lossy(&out).contains("delete_file"));
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
            item.value().is_some_and(|v| v.get("mimeType").is_some())
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
        let mut keep = |_: &str, _: &ListItem<'_>| true;
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
        let mut keep = |_: &str, _: &ListItem<'_>| false;
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
        let mut keep = |_: &str, _: &ListItem<'_>| true;
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
    fn kept_items_are_copied_as_the_upstream_wrote_them() {
        // Key order, number spelling, escapes and spacing inside an item survive: only the
        // envelope is re-serialised.
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[ {"name":"a","z":1.50,"b":"\u00e9"} , {"name":"b"}]}}"#;
        let out = filter_message(ListKind::Tools, body, &json!(1), &mut keep_names(&["a"]))
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"id":1,"jsonrpc":"2.0","result":{"tools":[{"name":"a","z":1.50,"b":"\u00e9"}]}}"#
        );
    }

    #[test]
    fn an_escaped_key_is_the_key() {
        // Clients decode `n\u0061me` as `name`: so does the filter.
        let body = br#"{"id":1,"result":{"tools":[{"n\u0061me":"secret"},{"name":"ok"}]}}"#;
        let mut seen = Vec::new();
        let out = filter_message(ListKind::Tools, body, &json!(1), &mut |name, _| {
            seen.push(name.to_string());
            name == "ok"
        })
        .unwrap()
        .unwrap();
        assert_eq!(seen, ["secret", "ok"]);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["tools"], json!([{"name": "ok"}]));
    }

    #[test]
    fn other_lists_in_a_batch_are_kept_whole() {
        let body = br#"[{"id":2,"result":{"tools":[{"name":"x"},{"name":"y"}]}},{"id":1,"result":{"tools":[{"name":"x"},{"name":"y"}]}}]"#;
        let out = filter_message(ListKind::Tools, body, &json!(1), &mut keep_names(&["y"]))
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v[0]["result"]["tools"],
            json!([{"name": "x"}, {"name": "y"}])
        );
        assert_eq!(v[1]["result"]["tools"], json!([{"name": "y"}]));
    }

    #[test]
    fn items_are_read_as_strictly_as_the_envelope() {
        let mut keep = |_: &str, _: &ListItem<'_>| true;
        let id = json!(1);
        for (body, dup) in [
            (
                &br#"{"id":1,"result":{"tools":[{"name":"a","name":"b"}]}}"#[..],
                "…/name",
            ),
            (
                br#"{"id":1,"result":{"tools":[],"tools":[{"name":"b"}]}}"#,
                "…/tools",
            ),
        ] {
            assert_eq!(
                filter_message(ListKind::Tools, body, &id, &mut keep),
                Err(ListError::DuplicateKeys(vec![dup.into()])),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let deep = format!(
            r#"{{"id":1,"result":{{"tools":[{{"name":"a","x":{}{}}}]}}}}"#,
            "[".repeat(120),
            "]".repeat(120)
        );
        assert!(matches!(
            filter_message(ListKind::Tools, deep.as_bytes(), &id, &mut keep),
            Err(ListError::Json(JsonError::TooDeep { .. }))
        ));
        assert!(matches!(
            filter_message(
                ListKind::Tools,
                br#"{"id":1,"result":{"tools":[{"name":"a","x":01}]}}"#,
                &id,
                &mut keep
            ),
            Err(ListError::Json(JsonError::Syntax(_)))
        ));
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
