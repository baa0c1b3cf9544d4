//! Strict JSON reading: one meaning for every body.
//!
//! `serde_json` alone keeps the last of two duplicate keys, where other parsers keep the first
//! or refuse; an MCP server could then see a different message than the gateway checked. This
//! reader builds a [`serde_json::Value`] but records duplicate keys (so the caller can refuse the
//! body) and stops at a configured nesting depth. Invalid UTF-8, lone surrogates, comments,
//! trailing data, `NaN` and a leading BOM are refused by `serde_json` itself.
//!
//! [`parse_body`] reads an MCP POST body the same way but builds no tree for a message's
//! `params.arguments` (most of a large `tools/call`, read only by argument conditions): that
//! subtree is checked by the same rules without being built (`validate`) and kept as
//! [`RawJson`] text, parsed later only if something reads it. [`parse_list_answer`] does the
//! same for the list array of a list result (`result.tools`, ...): only the envelope becomes a
//! tree; the items stay text the list filter copies as they are.
//!
//! With `strict_keys` ([`parse_body`]), keys of one object that are equal once case-folded
//! (`name` and `Name`, `k` and the Kelvin sign) are recorded like duplicates
//! ([`Parsed::case_twins`]): case-insensitive decoders (Go's `encoding/json`) read either.

pub(crate) mod fold;
pub(crate) use fold::fold_eq;
mod validate;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::fmt;

/// Why a body could not be read as one unambiguous JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON at all (message from the parser, with line and column).
    Syntax(String),
    /// Nesting beyond the limit.
    TooDeep {
        /// The configured limit.
        limit: usize,
    },
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax(m) => write!(f, "not JSON: {m}"),
            JsonError::TooDeep { limit } => write!(f, "nested deeper than {limit} levels"),
        }
    }
}

/// A JSON value kept as its text, already checked by the strict reader (syntax, duplicate keys,
/// nesting depth), so parsing it again cannot fail and gives the value the reader accepted.
#[derive(Debug, Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// The text, exactly as it was in the body (without surrounding whitespace).
    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// The text as a raw value (serialised as it is).
    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    /// Whether the value is an object.
    pub fn is_object(&self) -> bool {
        self.text().starts_with('{')
    }

    /// The value, parsed now (`None` only if the text were not JSON, which the strict reader
    /// has already ruled out).
    pub fn to_value(&self) -> Option<Value> {
        serde_json::from_str(self.text()).ok()
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.text() == other.text()
    }
}

/// A parsed body plus what was ambiguous about it.
#[derive(Debug)]
pub struct Parsed {
    /// The value (for a duplicated key, the first occurrence is kept).
    pub value: Value,
    /// Keys that appeared more than once in their object, as `/key` at the top level and
    /// `…/key` deeper (paths are not tracked, to keep parsing cheap).
    pub duplicate_keys: Vec<String>,
    /// With `strict_keys`: keys equal to an earlier key of their object once case-folded,
    /// as paths like [`Parsed::duplicate_keys`].
    pub case_twins: Vec<String>,
    /// From [`parse_body`]: each message's `params.arguments` as (index of the message: 0 for
    /// a single message, its position in a batch; the text). Such a member is not in `value`.
    pub arguments: Vec<(usize, RawJson)>,
    /// From [`parse_list_answer`]: each message's `result.<list key>` when it is an array, as
    /// (index of the message, the text). In `value` that member is an empty array.
    pub lists: Vec<(usize, RawJson)>,
}

const MAX_RECORDED_DUPLICATES: usize = 8;

struct Ctx {
    max_depth: usize,
    /// Whether case-folded twins are recorded (`strict_keys`).
    strict_keys: bool,
    too_deep: RefCell<bool>,
    duplicates: RefCell<Vec<String>>,
    case_twins: RefCell<Vec<String>>,
    arguments: RefCell<Vec<(usize, RawJson)>>,
    /// The list member kept as text by [`parse_list_answer`] (`tools`, `prompts`, ...).
    list_key: Option<&'static str>,
    lists: RefCell<Vec<(usize, RawJson)>>,
}

impl Ctx {
    /// Entering an array or object at `depth`.
    fn enter<E: de::Error>(&self, depth: usize) -> Result<(), E> {
        if depth > self.max_depth {
            *self.too_deep.borrow_mut() = true;
            return Err(E::custom("nesting too deep"));
        }
        Ok(())
    }

    /// `key` appeared again in an object at `depth`.
    fn duplicate(&self, depth: usize, key: &str) {
        record(&self.duplicates, depth, key);
    }

    /// `key` equals another key of its object at `depth` once case-folded.
    fn case_twin(&self, depth: usize, key: &str) {
        record(&self.case_twins, depth, key);
    }
}

/// Records `key` of an object at `depth` as a path (`/key` at the top, `…/key` deeper).
fn record(list: &RefCell<Vec<String>>, depth: usize, key: &str) {
    let mut dups = list.borrow_mut();
    if dups.len() >= MAX_RECORDED_DUPLICATES {
        return;
    }
    let mut out = String::from(if depth == 1 { "/" } else { "…/" });
    for c in key.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    dups.push(out);
}

/// Parses `bytes` as exactly one JSON value, nesting at most `max_depth` levels deep
/// (the top-level value is depth 1; `max_depth` must be at most 120).
pub fn parse_strict(bytes: &[u8], max_depth: usize) -> Result<Parsed, JsonError> {
    parse(bytes, max_depth, Place::Other, None, false)
}

/// Like [`parse_strict`], for an MCP POST body (a message or a batch): each message's
/// `params.arguments` is checked by the same rules but kept as text in [`Parsed::arguments`]
/// instead of being built into [`Parsed::value`]. With `strict_keys`, keys equal once
/// case-folded are recorded in [`Parsed::case_twins`], in `arguments` too.
pub fn parse_body(bytes: &[u8], max_depth: usize, strict_keys: bool) -> Result<Parsed, JsonError> {
    parse(bytes, max_depth, Place::Body, None, strict_keys)
}

/// Like [`parse_strict`], for an upstream message (or batch) that may answer a list request:
/// in each message's `result`, the member `list_key` (`tools`, ...), when it is an array, is
/// checked by the same rules but kept as text in [`Parsed::lists`] instead of being built.
pub fn parse_list_answer(
    bytes: &[u8],
    max_depth: usize,
    list_key: &'static str,
) -> Result<Parsed, JsonError> {
    parse(bytes, max_depth, Place::Answers, Some(list_key), false)
}

fn parse(
    bytes: &[u8],
    max_depth: usize,
    place: Place,
    list_key: Option<&'static str>,
    strict_keys: bool,
) -> Result<Parsed, JsonError> {
    let ctx = Ctx {
        max_depth,
        strict_keys,
        too_deep: RefCell::new(false),
        duplicates: RefCell::new(Vec::new()),
        case_twins: RefCell::new(Vec::new()),
        arguments: RefCell::new(Vec::new()),
        list_key,
        lists: RefCell::new(Vec::new()),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = Node {
        ctx: &ctx,
        depth: 1,
        place,
    };
    let result = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match result {
        Ok(value) => Ok(Parsed {
            value,
            duplicate_keys: ctx.duplicates.into_inner(),
            case_twins: ctx.case_twins.into_inner(),
            arguments: ctx.arguments.into_inner(),
            lists: ctx.lists.into_inner(),
        }),
        Err(_) if *ctx.too_deep.borrow() => Err(JsonError::TooDeep { limit: max_depth }),
        Err(e) => Err(JsonError::Syntax(e.to_string())),
    }
}

/// Where a node sits in an MCP body, for the member kept as text.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// Nothing special (or not an MCP body).
    Other,
    /// The whole body: a message, or a batch of them.
    Body,
    /// The message with this index in a batch.
    Message(usize),
    /// The `params` of the message with this index.
    Params(usize),
    /// The whole upstream body of [`parse_list_answer`]: a message, or a batch of them.
    Answers,
    /// The upstream message with this index in a batch.
    Answer(usize),
    /// The `result` of the upstream message with this index.
    AnswerResult(usize),
}

/// Which member [`Node::defer`] keeps as text.
#[derive(Debug, Clone, Copy)]
enum Deferred {
    /// A request's `params.arguments` ([`Parsed::arguments`]).
    Arguments,
    /// The list array of a list result ([`Parsed::lists`]).
    List,
}

struct Node<'c> {
    ctx: &'c Ctx,
    depth: usize,
    place: Place,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Node<'_> {
    fn child(&self, place: Place) -> Node<'_> {
        Node {
            ctx: self.ctx,
            depth: self.depth + 1,
            place,
        }
    }

    /// Reads the member `key` of this object (in message `message`) as checked text, kept as
    /// `what` says; a list member that is not an array is built into `out` instead (so the
    /// filter sees what it is). `seen` tells whether an earlier `key` member was read.
    fn defer<'de, A: MapAccess<'de>>(
        &self,
        map: &mut A,
        (what, key, message): (Deferred, &str, usize),
        out: &mut Map<String, Value>,
        seen: &mut bool,
    ) -> Result<(), A::Error> {
        // Syntax and UTF-8 only; `validate` applies the other rules.
        let raw: Box<RawValue> = map.next_value()?;
        validate::check(raw.get(), self.depth + 1, self.ctx)
            .map_err(|e| de::Error::custom(without_position(&e)))?;
        if *seen {
            self.ctx.duplicate(self.depth, key);
            return Ok(());
        }
        *seen = true;
        let into = match what {
            Deferred::Arguments => &self.ctx.arguments,
            Deferred::List if raw.get().starts_with('[') => {
                out.insert(key.to_string(), Value::Array(Vec::new()));
                &self.ctx.lists
            }
            Deferred::List => {
                let value = serde_json::from_str(raw.get())
                    .map_err(|e| de::Error::custom(without_position(&e)))?;
                out.insert(key.to_string(), value);
                return Ok(());
            }
        };
        into.borrow_mut().push((message, RawJson(raw)));
        Ok(())
    }
}

/// A `serde_json` error's message without its position, which is relative to the subtree (the
/// outer parser adds the position in the body).
fn without_position(e: &serde_json::Error) -> String {
    let mut msg = e.to_string();
    if e.line() != 0 {
        if let Some(at) = msg.rfind(" at line ") {
            msg.truncate(at);
        }
    }
    msg
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.ctx.enter(self.depth)?;
        let mut out = Vec::new();
        loop {
            let place = match self.place {
                Place::Body => Place::Message(out.len()),
                Place::Answers => Place::Answer(out.len()),
                _ => Place::Other,
            };
            let Some(v) = seq.next_element_seed(self.child(place))? else {
                break;
            };
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.ctx.enter(self.depth)?;
        let mut out = Map::new();
        let mut deferred_seen = false;
        while let Some(key) = map.next_key::<String>()? {
            let place = match (self.place, key.as_str()) {
                (Place::Body, "params") => Place::Params(0),
                (Place::Message(i), "params") => Place::Params(i),
                (Place::Params(i), "arguments") => {
                    let what = (Deferred::Arguments, key.as_str(), i);
                    self.defer(&mut map, what, &mut out, &mut deferred_seen)?;
                    continue;
                }
                (Place::Answers, "result") => Place::AnswerResult(0),
                (Place::Answer(i), "result") => Place::AnswerResult(i),
                (Place::AnswerResult(i), k) if Some(k) == self.ctx.list_key => {
                    let what = (Deferred::List, key.as_str(), i);
                    self.defer(&mut map, what, &mut out, &mut deferred_seen)?;
                    continue;
                }
                _ => Place::Other,
            };
            let value = map.next_value_seed(self.child(place))?;
            if out.contains_key(&key) {
                self.ctx.duplicate(self.depth, &key);
            } else {
                out.insert(key, value);
            }
        }
        if self.ctx.strict_keys {
            // The member kept as text is not in `out` (a list member may be): its key counts.
            let deferred = match self.place {
                Place::Params(_) if deferred_seen => Some("arguments"),
                Place::AnswerResult(_) if deferred_seen => self.ctx.list_key,
                _ => None,
            }
            .filter(|k| !out.contains_key(*k));
            let keys = out.keys().map(String::as_str).chain(deferred);
            if let Some(twin) = fold::find_twin(keys) {
                self.ctx.case_twin(self.depth, twin);
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn parses_plain_values() {
        let p = parse_strict(br#"{"a":[1,2.5,"x",true,null],"b":{}}"#, 10).unwrap();
        assert_eq!(p.value, json!({"a":[1,2.5,"x",true,null],"b":{}}));
        assert!(p.duplicate_keys.is_empty());
    }

    #[test]
    fn records_duplicate_keys_and_keeps_first() {
        let p = parse_strict(br#"{"m":"a","p":{"x/y":1,"x/y":2},"m":"b"}"#, 10).unwrap();
        assert_eq!(
            p.duplicate_keys,
            vec!["…/x~1y".to_string(), "/m".to_string()]
        );
        assert_eq!(p.value["m"], json!("a"));
    }

    #[test]
    fn refuses_nesting_beyond_limit() {
        let deep = format!("{}{}", "[".repeat(5), "]".repeat(5));
        assert!(parse_strict(deep.as_bytes(), 5).is_ok());
        assert_eq!(
            parse_strict(deep.as_bytes(), 4).unwrap_err(),
            JsonError::TooDeep { limit: 4 }
        );
        let very_deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            parse_strict(very_deep.as_bytes(), 64).unwrap_err(),
            JsonError::TooDeep { limit: 64 }
        );
    }

    #[test]
    fn refuses_what_parsers_disagree_on() {
        for bad in [
            &b"{\"a\":1} x"[..],
            b"{\"a\":1,}",
            b"[1,]",
            b"{'a':1}",
            b"{\"a\":NaN}",
            b"{\"a\":1e999}",
            b"\xef\xbb\xbf{}",
            b"{\"a\":\"\xff\"}",
            b"{\"a\":\"\\ud800\"}",
            b"// c\n{}",
            b"",
            b"   ",
            b"{\"a\":01}",
            b"{\"a\":\"tab\there\"}",
        ] {
            assert!(
                matches!(parse_strict(bad, 64), Err(JsonError::Syntax(_))),
                "accepted {:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Found by the `lists` fuzz target: serde_json's default number reading is not correctly
    /// rounded (an ulp or two off for long digit strings), so the gateway read other numbers
    /// than servers and clients do (an argument checked against `max: 100` that the server
    /// reads as 100.00000000000001), and a re-serialised answer changed its numbers.
    #[test]
    fn numbers_are_read_correctly_rounded() {
        let above_midpoint = "100.000000000000007105427357601001858711242675781250000000000001";
        let p = parse_strict(format!("[{above_midpoint}]").as_bytes(), 4).unwrap();
        let next = f64::from_bits(100f64.to_bits() + 1);
        assert_eq!(p.value[0].as_f64(), Some(next));
        let long = format!("7{}0", "3".repeat(89));
        let v = parse_strict(long.as_bytes(), 4).unwrap().value;
        assert_eq!(v.as_f64(), Some(7.333333333333333e90));
        let long = format!("7{}0", "7".repeat(89));
        let v = parse_strict(long.as_bytes(), 4).unwrap().value;
        assert_eq!(v.as_f64(), Some(7.777_777_777_777_777_5e90));
        // Written and read again, a number stays the same.
        assert_eq!(parse_strict(v.to_string().as_bytes(), 4).unwrap().value, v);
        let p = parse_body(
            format!("{{\"params\":{{\"arguments\":{{\"n\":{above_midpoint}}}}}}}").as_bytes(),
            4,
            true,
        )
        .unwrap();
        assert_eq!(
            p.arguments[0].1.to_value().unwrap()["n"].as_f64(),
            Some(next)
        );
    }

    #[test]
    fn accepts_surrogate_pairs_and_whitespace() {
        let p = parse_strict(b" {\"a\":\"\\ud83d\\ude00\"}\n", 64).unwrap();
        assert_eq!(p.value["a"], json!("\u{1F600}"));
    }

    /// `parse_body`'s value with the kept arguments put back, as `parse_strict` builds it.
    fn rebuilt(p: Parsed) -> Value {
        let mut value = p.value;
        for (i, raw) in p.arguments {
            let params = match &mut value {
                Value::Array(items) => items.get_mut(i),
                v => Some(v),
            }
            .and_then(|m| m.get_mut("params"))
            .and_then(Value::as_object_mut)
            .unwrap();
            params.insert("arguments".into(), raw.to_value().unwrap());
        }
        value
    }

    #[test]
    fn parse_body_decides_like_parse_strict() {
        let bodies: &[&[u8]] = &[
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"q":"x","n":[1,2.5,-3e2,{"d":null}]}}}"#,
            br#"{"params":{"arguments":{ "spaced" : [ true ] } ,"name":"a"},"method":"tools/call"}"#,
            br#"[{"params":{"arguments":{"a":1}}},{"params":{}},{"params":{"arguments":[7]}},3]"#,
            br#"{"params":{"arguments":"text"}}"#,
            br#"{"params":[{"arguments":{"a":1}}]}"#,
            br#"{"other":{"arguments":{"a":1}},"params":{"x":{"arguments":{"b":2}}}}"#,
            br#"{"params":{"arguments":{"k":1,"k":2}},"m":1,"m":2}"#,
            br#"{"m":1,"m":2,"params":{"arguments":{"x":{"y":[{"k":1,"k":2}]}}}}"#,
            br#"{"params":{"arguments":{"a":1},"arguments":{"b":2}}}"#,
            br#"{"params":{"arguments":{"a":1,"\u0061":2}}}"#,
            br#"{"params":{"arguments":{"a\/b~":1,"a/b~":2}}}"#,
            br#"{"params":{"arguments":{"a":"\ud800"}}}"#,
            br#"{"params":{"arguments":{"\udc00":1}}}"#,
            br#"{"params":{"arguments":{"a":"\ud83d\ude00"}}}"#,
            br#"{"params":{"arguments":{"a":1e999}}}"#,
            b"{\"params\":{\"arguments\":{\"a\":\"\xff\"}}}",
            b"{\"params\":{\"arguments\":{\"a\":\"tab\there\"}}}",
            br#"{"params":{"arguments":{"a":01}}}"#,
            br#"{"params":{"arguments":{"a":1,}}}"#,
            br#"{"params":{"arguments":{"a":NaN}}}"#,
            br#"{"params":{"arguments":{"a":1}}} x"#,
            br#"{"params":{"arguments":}}"#,
        ];
        for body in bodies {
            let show = String::from_utf8_lossy(body);
            match (parse_strict(body, 10), parse_body(body, 10, true)) {
                (Ok(strict), Ok(lazy)) => {
                    assert_eq!(strict.duplicate_keys, lazy.duplicate_keys, "{show}");
                    if strict.duplicate_keys.is_empty() {
                        assert_eq!(strict.value, rebuilt(lazy), "{show}");
                    }
                }
                (Err(JsonError::Syntax(_)), Err(JsonError::Syntax(_))) => {}
                (a, b) => panic!("{show}: {a:?} vs {b:?}"),
            }
        }
    }

    #[test]
    fn parse_body_records_duplicates_inside_arguments_in_order() {
        let many: Vec<String> = (0..40).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let body = format!(
            r#"{{"params":{{"arguments":{{{},"k7":0,"x":{{"y":[{{"z":1,"z":2}}]}}}}}},"m":1,"m":2}}"#,
            many.join(",")
        );
        let p = parse_body(body.as_bytes(), 10, true).unwrap();
        assert_eq!(p.duplicate_keys, vec!["…/k7", "…/z", "/m"]);
    }

    #[test]
    fn parse_body_records_case_twins_only_with_strict_keys() {
        for (body, twin) in [
            (&br#"{"method":"a","Method":"b"}"#[..], "/method"),
            (br#"{"params":{"name":"x","NAME":"y"}}"#, "…/name"),
            (
                br#"{"params":{"arguments":{"k":1,"\u212a":2}}}"#,
                "…/\u{212a}",
            ),
            (
                br#"{"params":{"arguments":{"a":[{"s":1,"\u017f":2}]}}}"#,
                "…/\u{17f}",
            ),
            (
                br#"{"params":{"arguments":{},"Arguments":{}}}"#,
                "…/arguments",
            ),
            (
                br#"[{"params":{}},{"params":{"Arguments":{},"arguments":{}}}]"#,
                "…/arguments",
            ),
        ] {
            let show = String::from_utf8_lossy(body);
            let strict = parse_body(body, 10, true).unwrap();
            assert_eq!(strict.case_twins, vec![twin.to_string()], "{show}");
            assert!(strict.duplicate_keys.is_empty(), "{show}");
            let lax = parse_body(body, 10, false).unwrap();
            assert!(lax.case_twins.is_empty(), "{show}");
            assert!(
                parse_strict(body, 10).unwrap().case_twins.is_empty(),
                "{show}"
            );
        }
        // An exact repeat is a duplicate, not a twin.
        let p = parse_body(br#"{"params":{"arguments":{"a":1,"a":2}}}"#, 10, true).unwrap();
        assert_eq!((p.duplicate_keys.len(), p.case_twins.len()), (1, 0));
    }

    #[test]
    fn parse_body_keeps_arguments_as_text() {
        let p = parse_body(
            br#"[{"params":{"arguments": {"sql" : "SELECT 1"} }},{"params":{"arguments":[]}}]"#,
            10,
            true,
        )
        .unwrap();
        let texts: Vec<(usize, &str, bool)> = p
            .arguments
            .iter()
            .map(|(i, a)| (*i, a.text(), a.is_object()))
            .collect();
        assert_eq!(
            texts,
            vec![(0, r#"{"sql" : "SELECT 1"}"#, true), (1, "[]", false)]
        );
        assert_eq!(p.value, json!([{"params":{}},{"params":{}}]));
        let p = parse_body(br#"{"params":{"name":"x"}}"#, 10, true).unwrap();
        assert!(p.arguments.is_empty());
    }

    #[test]
    fn parse_body_caps_depth_inside_arguments() {
        // body 1, params 2, arguments 3, then n arrays.
        let body = |n: usize| {
            format!(
                r#"{{"params":{{"arguments":{{"a":{}1{}}}}}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        for limit in [4, 10, 64] {
            let fits = body(limit - 3);
            assert!(parse_body(fits.as_bytes(), limit, true).is_ok(), "{limit}");
            assert!(parse_strict(fits.as_bytes(), limit).is_ok(), "{limit}");
            let over = body(limit - 2);
            for result in [
                parse_body(over.as_bytes(), limit, true),
                parse_strict(over.as_bytes(), limit),
            ] {
                assert_eq!(result.unwrap_err(), JsonError::TooDeep { limit });
            }
        }
        let batch = r#"[{"params":{"arguments":{"a":[]}}}]"#;
        assert!(parse_body(batch.as_bytes(), 5, true).is_ok());
        assert_eq!(
            parse_body(batch.as_bytes(), 4, true).unwrap_err(),
            JsonError::TooDeep { limit: 4 }
        );
        let very_deep = body(100_000);
        assert_eq!(
            parse_body(very_deep.as_bytes(), 64, true).unwrap_err(),
            JsonError::TooDeep { limit: 64 }
        );
    }
}
