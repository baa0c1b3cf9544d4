//! Reading claims out of one verified payload: typed from the forwarded header (each claim
//! checked against jwt_authn's metadata copy), or untyped from the metadata alone; and the
//! identity facts through an issuer's [`ClaimMapping`].

use super::claims::ClaimError;
use super::mapping::{array_index, ClaimMapping, Fact, Shape, Source};
use super::metadata::{as_f64, as_list, as_map, as_str, as_str_list, ClaimSource};
use super::payload::{self, agrees, has_null, Forwarded};
use serde_json::Value;
use std::borrow::Cow;
use std::cell::RefCell;

/// Where a token's claims are read from.
pub(crate) struct Reader<'a> {
    source: &'a dyn ClaimSource,
    key: &'a str,
    /// The payload from the header, when configured; `None`: metadata only.
    json: Option<Value>,
    /// Top-level claims already checked against the metadata.
    checked: RefCell<Vec<String>>,
}

/// One claim value.
pub(crate) enum Val<'a> {
    /// From the payload header: typed.
    Json(&'a Value),
    /// From the metadata: Envoy's encoding, untyped.
    Envoy(Cow<'a, [u8]>),
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn not(v: &Value, want: &str) -> String {
    format!("is {}, not {want}", type_name(v))
}

fn strings(items: &[Value], want: &str) -> Result<Vec<String>, String> {
    items
        .iter()
        .map(|i| match i {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!(
                "is a list holding {}, not {want}",
                type_name(other)
            )),
        })
        .collect()
}

impl Val<'_> {
    /// A string.
    pub fn str(&self) -> Result<String, String> {
        match self {
            Val::Json(Value::String(s)) => Ok(s.clone()),
            Val::Json(v) => Err(not(v, "a string")),
            Val::Envoy(b) => as_str(b).map_err(|e| e.0.to_string()),
        }
    }

    /// A number.
    pub fn num(&self) -> Result<f64, String> {
        match self {
            Val::Json(Value::Number(n)) => n.as_f64().ok_or_else(|| "is not a number".into()),
            Val::Json(v) => Err(not(v, "a number")),
            Val::Envoy(b) => as_f64(b).map_err(|e| e.0.to_string()),
        }
    }

    /// A list of strings.
    pub fn str_list(&self) -> Result<Vec<String>, String> {
        match self {
            Val::Json(Value::Array(items)) => strings(items, "a list of strings"),
            Val::Json(v) => Err(not(v, "a list of strings")),
            Val::Envoy(b) => as_str_list(b).map_err(|e| e.0.to_string()),
        }
    }

    /// A string (one value) or a list of strings. From the metadata this is a guess: a list
    /// encoding is taken for a list (see [`super::metadata`]).
    pub fn str_or_list(&self) -> Result<Vec<String>, String> {
        match self {
            Val::Json(Value::String(s)) => Ok(vec![s.clone()]),
            Val::Json(Value::Array(items)) => strings(items, "a string or a list of strings"),
            Val::Json(v) => Err(not(v, "a string or a list of strings")),
            Val::Envoy(b) => match as_str_list(b) {
                Ok(list) if !list.is_empty() => Ok(list),
                _ => Ok(vec![as_str(b).map_err(|e| e.0.to_string())?]),
            },
        }
    }

    /// Scopes: a space-separated string or a list of strings.
    pub fn scopes(&self) -> Result<Vec<String>, String> {
        let split = |s: &str| s.split_ascii_whitespace().map(str::to_string).collect();
        match self {
            Val::Json(Value::String(s)) => Ok(split(s)),
            Val::Json(Value::Array(items)) => {
                strings(items, "a space-separated string or a list of strings")
            }
            Val::Json(v) => Err(not(v, "a space-separated string or a list of strings")),
            Val::Envoy(b) => match as_str_list(b) {
                Ok(list) if !list.is_empty() => Ok(list),
                _ => Ok(split(&as_str(b).map_err(|e| e.0.to_string())?)),
            },
        }
    }

    /// The elements of a list.
    pub fn items(&self) -> Result<Vec<Val<'_>>, String> {
        match self {
            Val::Json(Value::Array(items)) => Ok(items.iter().map(Val::Json).collect()),
            Val::Json(v) => Err(not(v, "a list")),
            Val::Envoy(b) => Ok(as_list(b)
                .map_err(|e| e.0.to_string())?
                .into_iter()
                .map(|e| Val::Envoy(Cow::Borrowed(e)))
                .collect()),
        }
    }

    /// The members of an object (nulls left out).
    pub fn entries(&self) -> Result<Vec<(String, Val<'_>)>, String> {
        match self {
            Val::Json(Value::Object(m)) => Ok(m
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), Val::Json(v)))
                .collect()),
            Val::Json(v) => Err(not(v, "an object")),
            Val::Envoy(b) => Ok(as_map(b)
                .map_err(|e| e.0.to_string())?
                .into_iter()
                .map(|(k, e)| (k, Val::Envoy(Cow::Borrowed(e))))
                .collect()),
        }
    }
}

impl<'a> Reader<'a> {
    /// A reader for the token jwt_authn verified under `key`; with `payload_header`, its claims
    /// come from that header (which must be there: jwt_authn verified a token).
    pub fn new(
        source: &'a dyn ClaimSource,
        key: &'a str,
        payload_header: Option<&str>,
    ) -> Result<Reader<'a>, ClaimError> {
        let json = match payload_header {
            None => None,
            Some(header) => match source.payload(header) {
                Forwarded::Absent => {
                    return Err(ClaimError::NoPayloadHeader(header.to_string()));
                }
                Forwarded::Many => {
                    return Err(ClaimError::Payload(payload::PayloadError::Unreadable(
                        "it is sent more than once",
                    )))
                }
                Forwarded::One(v) => Some(payload::decode(v).map_err(ClaimError::Payload)?),
            },
        };
        Ok(Reader {
            source,
            key,
            json,
            checked: RefCell::new(Vec::new()),
        })
    }

    /// The value at `path` (claim name first), `None` if absent (or JSON null).
    pub fn get(&self, path: &[&str]) -> Result<Option<Val<'_>>, ClaimError> {
        let Some((claim, rest)) = path.split_first() else {
            return Ok(None);
        };
        let Some(doc) = &self.json else {
            let mut full = vec![self.key];
            full.extend_from_slice(path);
            return Ok(self
                .source
                .get(&full)
                .map_err(ClaimError::Host)?
                .map(|b| Val::Envoy(Cow::Owned(b))));
        };
        let top = doc.get(*claim);
        self.check(claim, top)?;
        let mut v = top;
        for p in rest {
            v = match v {
                Some(Value::Object(m)) => m.get(*p),
                Some(Value::Array(a)) => array_index(p).and_then(|i| a.get(i)),
                _ => None,
            };
        }
        Ok(v.filter(|v| !v.is_null()).map(Val::Json))
    }

    /// Whether a claim is present (not null).
    pub fn has(&self, claim: &str) -> Result<bool, ClaimError> {
        Ok(self.get(&[claim])?.is_some())
    }

    /// Checks the header's `claim` against jwt_authn's metadata copy, once per claim.
    fn check(&self, claim: &str, from_header: Option<&Value>) -> Result<(), ClaimError> {
        if self.checked.borrow().iter().any(|c| c == claim) {
            return Ok(());
        }
        let mismatch = || ClaimError::Mismatch(claim.to_string());
        // A claim name the host path cannot carry cannot be checked: refused.
        if claim.contains('\0') {
            return Err(mismatch());
        }
        let ok = match (from_header, self.source.get(&[self.key, claim])) {
            (None, Ok(None)) => true,
            (Some(v), Ok(Some(envoy))) => agrees(v, &envoy),
            // Envoy cannot serialise a null for proxy-wasm: a claim holding one is compared
            // by presence (jwt_authn stored it, reading it fails).
            (Some(v), Err(_)) if has_null(v) => true,
            (Some(Value::Null), Ok(None)) => true,
            (_, Err(e)) => return Err(ClaimError::Host(e)),
            _ => false,
        };
        if !ok {
            return Err(mismatch());
        }
        self.checked.borrow_mut().push(claim.to_string());
        Ok(())
    }

    /// A string claim.
    pub fn str(&self, claim: &str) -> Result<Option<String>, ClaimError> {
        self.typed(claim, |v| v.str())
    }

    /// A number claim.
    pub fn num(&self, claim: &str) -> Result<Option<f64>, ClaimError> {
        self.typed(claim, |v| v.num())
    }

    /// A string or list-of-strings claim (`aud`), empty when absent.
    pub fn str_or_list(&self, claim: &str) -> Result<Vec<String>, ClaimError> {
        Ok(self.typed(claim, |v| v.str_or_list())?.unwrap_or_default())
    }

    fn typed<T>(
        &self,
        claim: &str,
        read: impl Fn(&Val<'_>) -> Result<T, String>,
    ) -> Result<Option<T>, ClaimError> {
        self.get(&[claim])?
            .map(|v| read(&v).map_err(|problem| ClaimError::malformed(claim, problem)))
            .transpose()
    }

    /// A string fact through the mapping: the first pointer present.
    pub fn fact_str(&self, m: &ClaimMapping, fact: Fact) -> Result<Option<String>, ClaimError> {
        let mut out = None;
        self.fact(m, fact, |v| {
            if out.is_none() {
                out = Some(v.str()?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// A list fact through the mapping: the values of every pointer, united in order.
    pub fn fact_list(&self, m: &ClaimMapping, fact: Fact) -> Result<Vec<String>, ClaimError> {
        let mut out: Vec<String> = Vec::new();
        self.fact(m, fact, |v| {
            let values = match fact.shape() {
                Shape::Scopes => v.scopes()?,
                Shape::StrOrList => v.str_or_list()?,
                Shape::Str => vec![v.str()?],
            };
            for value in values {
                if !out.contains(&value) {
                    out.push(value);
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn fact(
        &self,
        m: &ClaimMapping,
        fact: Fact,
        mut take: impl FnMut(&Val<'_>) -> Result<(), String>,
    ) -> Result<(), ClaimError> {
        let Source::From { pointers, required } = m.source(fact) else {
            return Ok(());
        };
        let mut found = false;
        for p in pointers {
            let path: Vec<&str> = p.tokens().iter().map(String::as_str).collect();
            if let Some(v) = self.get(&path)? {
                found = true;
                take(&v).map_err(|problem| ClaimError::Mistyped {
                    fact: fact.name(),
                    pointer: p.as_str().to_string(),
                    problem,
                })?;
            }
        }
        if !found && *required {
            return Err(ClaimError::Missing {
                fact: fact.name(),
                pointers: m.source(fact).describe(),
            });
        }
        Ok(())
    }
}
