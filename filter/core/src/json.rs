//! Strict JSON reading: one meaning for every body.
//!
//! `serde_json` alone keeps the last of two duplicate keys, where other parsers keep the first
//! or refuse; an MCP server could then see a different message than the gateway checked. This
//! reader builds a [`serde_json::Value`] but records duplicate keys (so the caller can refuse the
//! body) and stops at a configured nesting depth. Invalid UTF-8, lone surrogates, comments,
//! trailing data, `NaN` and a leading BOM are refused by `serde_json` itself.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
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

/// A parsed body plus what was ambiguous about it.
#[derive(Debug)]
pub struct Parsed {
    /// The value (for a duplicated key, the first occurrence is kept).
    pub value: Value,
    /// Keys that appeared more than once in their object, as `/key` at the top level and
    /// `…/key` deeper (paths are not tracked, to keep parsing cheap).
    pub duplicate_keys: Vec<String>,
}

const MAX_RECORDED_DUPLICATES: usize = 8;

struct Ctx {
    max_depth: usize,
    too_deep: RefCell<bool>,
    duplicates: RefCell<Vec<String>>,
}

/// Parses `bytes` as exactly one JSON value, nesting at most `max_depth` levels deep
/// (the top-level value is depth 1; `max_depth` must be at most 120).
pub fn parse_strict(bytes: &[u8], max_depth: usize) -> Result<Parsed, JsonError> {
    let ctx = Ctx {
        max_depth,
        too_deep: RefCell::new(false),
        duplicates: RefCell::new(Vec::new()),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = Node {
        ctx: &ctx,
        depth: 1,
    };
    let result = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match result {
        Ok(value) => Ok(Parsed {
            value,
            duplicate_keys: ctx.duplicates.into_inner(),
        }),
        Err(_) if *ctx.too_deep.borrow() => Err(JsonError::TooDeep { limit: max_depth }),
        Err(e) => Err(JsonError::Syntax(e.to_string())),
    }
}

struct Node<'c> {
    ctx: &'c Ctx,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Node<'_> {
    fn child(&self) -> Node<'_> {
        Node {
            ctx: self.ctx,
            depth: self.depth + 1,
        }
    }

    fn duplicate_name(&self, key: &str) -> String {
        let mut out = String::from(if self.depth == 1 { "/" } else { "…/" });
        for c in key.chars() {
            match c {
                '~' => out.push_str("~0"),
                '/' => out.push_str("~1"),
                c => out.push(c),
            }
        }
        out
    }

    fn enter<E: de::Error>(&self) -> Result<(), E> {
        if self.depth > self.ctx.max_depth {
            *self.ctx.too_deep.borrow_mut() = true;
            return Err(E::custom("nesting too deep"));
        }
        Ok(())
    }
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
        self.enter()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self.child())? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.child())?;
            if out.contains_key(&key) {
                let mut dups = self.ctx.duplicates.borrow_mut();
                if dups.len() < MAX_RECORDED_DUPLICATES {
                    dups.push(self.duplicate_name(&key));
                }
            } else {
                out.insert(key, value);
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

    #[test]
    fn accepts_surrogate_pairs_and_whitespace() {
        let p = parse_strict(b" {\"a\":\"\\ud83d\\ude00\"}\n", 64).unwrap();
        assert_eq!(p.value["a"], json!("\u{1F600}"));
    }
}
