//! Claim mapping: per trusted issuer, where each identity fact (subject, groups, roles, scopes,
//! email; for agents subject, scopes, capabilities, trust level) comes from in the verified
//! payload, as RFC 6901 JSON Pointers.
//!
//! An issuer is configured as a plain URL (today's claim names) or as an object
//! `{"issuer", "name", "claims"}`. A source is a pointer, a list of pointers (values united in
//! order), `null` (this issuer may not assert the fact) or `{"from", "required"}`. A fact listed
//! explicitly is required unless `"required": false`.

use crate::config::{err, ConfigError};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// Which token a mapping is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// The user's access token.
    User,
    /// The agent's OIDC-A token.
    Agent,
}

impl TokenKind {
    /// `user` or `agent` (rule ids and messages).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::User => "user",
            TokenKind::Agent => "agent",
        }
    }

    /// The facts a token of this kind has, in a fixed order.
    pub fn facts(self) -> &'static [Fact] {
        match self {
            TokenKind::User => &[
                Fact::Subject,
                Fact::Groups,
                Fact::Roles,
                Fact::Scopes,
                Fact::Email,
            ],
            TokenKind::Agent => &[
                Fact::Subject,
                Fact::Scopes,
                Fact::Capabilities,
                Fact::TrustLevel,
            ],
        }
    }
}

/// An identity fact read through the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fact {
    /// Who (string; always required).
    Subject,
    /// Group memberships (string or list of strings).
    Groups,
    /// Roles (string or list of strings).
    Roles,
    /// Scopes (space-separated string or list of strings).
    Scopes,
    /// E-mail address (string).
    Email,
    /// OIDC-A agent capabilities (string or list of strings).
    Capabilities,
    /// OIDC-A agent trust level (string).
    TrustLevel,
}

/// The JSON shape a fact accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One string.
    Str,
    /// A string (one value) or a list of strings.
    StrOrList,
    /// A space-separated string or a list of strings.
    Scopes,
}

impl Fact {
    /// The name used in the configuration and in refusals.
    pub fn name(self) -> &'static str {
        match self {
            Fact::Subject => "subject",
            Fact::Groups => "groups",
            Fact::Roles => "roles",
            Fact::Scopes => "scopes",
            Fact::Email => "email",
            Fact::Capabilities => "capabilities",
            Fact::TrustLevel => "trust_level",
        }
    }

    /// The JSON shape the fact accepts.
    pub fn shape(self) -> Shape {
        match self {
            Fact::Subject | Fact::Email | Fact::TrustLevel => Shape::Str,
            Fact::Groups | Fact::Roles | Fact::Capabilities => Shape::StrOrList,
            Fact::Scopes => Shape::Scopes,
        }
    }

    /// Where the fact comes from when the issuer's mapping does not list it.
    fn default_pointers(self) -> &'static [&'static str] {
        match self {
            Fact::Subject => &["/sub"],
            Fact::Groups => &["/groups"],
            Fact::Roles => &["/roles"],
            Fact::Scopes => &["/scope", "/scp"],
            Fact::Email => &["/email"],
            Fact::Capabilities => &["/agent_capabilities"],
            Fact::TrustLevel => &["/agent_trust_level"],
        }
    }
}

/// An RFC 6901 JSON Pointer (never the empty pointer: a fact is always below the payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    tokens: Vec<String>,
}

impl Pointer {
    /// Parses a pointer: `/a/b`, with `~0` for `~` and `~1` for `/` in a reference token.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "`{text}` is not a JSON Pointer (RFC 6901): it must start with `/`"
            ));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut token = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                match c {
                    '~' => match chars.next() {
                        Some('0') => token.push('~'),
                        Some('1') => token.push('/'),
                        _ => {
                            return Err(format!(
                                "`{text}` is not a JSON Pointer (RFC 6901): `~` must be followed by 0 or 1"
                            ))
                        }
                    },
                    '\0' => return Err(format!("`{}` contains a NUL", text.escape_debug())),
                    c => token.push(c),
                }
            }
            tokens.push(token);
        }
        Ok(Pointer {
            text: text.to_string(),
            tokens,
        })
    }

    /// The pointer as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The unescaped reference tokens (claim name first).
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The value the pointer designates in `doc`, if any (array elements by decimal index).
    pub fn lookup<'v>(&self, doc: &'v Value) -> Option<&'v Value> {
        let mut v = doc;
        for t in &self.tokens {
            v = match v {
                Value::Object(m) => m.get(t)?,
                Value::Array(a) => a.get(array_index(t)?)?,
                _ => return None,
            };
        }
        Some(v)
    }
}

/// An RFC 6901 array index: `0` or digits without a leading zero.
pub(crate) fn array_index(token: &str) -> Option<usize> {
    let ok = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    if ok {
        token.parse().ok()
    } else {
        None
    }
}

impl std::fmt::Display for Pointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where one fact comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The issuer may not assert this fact: always empty, whatever the token says.
    Denied,
    /// The fact is read from these pointers (string facts: the first present; list facts: the
    /// values of all, united in order, duplicates removed).
    From {
        /// The pointers, in order.
        pointers: Vec<Pointer>,
        /// Whether a token without any of them is refused.
        required: bool,
    },
}

impl Source {
    /// The pointers as written, comma-separated (for refusals).
    pub fn describe(&self) -> String {
        match self {
            Source::Denied => "null".into(),
            Source::From { pointers, .. } => pointers
                .iter()
                .map(Pointer::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// Fact → source for one issuer; every fact of its token kind has an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    facts: Vec<(Fact, Source)>,
}

impl ClaimMapping {
    /// Today's claim names for every fact of `kind` (only `subject` required).
    pub fn defaults(kind: TokenKind) -> ClaimMapping {
        ClaimMapping {
            facts: kind
                .facts()
                .iter()
                .map(|&f| (f, default_source(f)))
                .collect(),
        }
    }

    /// Where `fact` comes from (`Denied` for a fact this kind of token does not have).
    pub fn source(&self, fact: Fact) -> &Source {
        self.facts
            .iter()
            .find(|(f, _)| *f == fact)
            .map_or(&Source::Denied, |(_, s)| s)
    }

    /// Every (fact, source), in the kind's order.
    pub fn entries(&self) -> impl Iterator<Item = (Fact, &Source)> {
        self.facts.iter().map(|(f, s)| (*f, s))
    }
}

fn default_source(fact: Fact) -> Source {
    Source::From {
        pointers: fact
            .default_pointers()
            .iter()
            .filter_map(|p| Pointer::parse(p).ok())
            .collect(),
        required: fact == Fact::Subject,
    }
}

/// A trusted issuer as configured: its URL, or `{"issuer", "name", "claims"}`.
#[derive(Debug)]
pub enum RawIssuer {
    /// An issuer URL with today's claim names.
    Url(String),
    /// An issuer with a name and a claim mapping.
    Full(RawIssuerObject),
}

/// The object form of a trusted issuer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuerObject {
    /// The `iss` value, exactly as the tokens carry it.
    pub issuer: String,
    /// Short alias `[a-z0-9][a-z0-9-]*` (at most 64 characters), unique among this token
    /// kind's issuers; policy `users` entries may qualify a subject with it (`name:subject`).
    #[serde(default)]
    pub name: Option<String>,
    /// Fact → source: a JSON Pointer, a list of pointers, `null` (the issuer may not assert
    /// the fact) or `{"from": pointer-or-list, "required": bool}`. A fact listed is required
    /// unless `"required": false`; facts not listed keep today's claim names, optional.
    #[serde(default)]
    pub claims: Map<String, Value>,
}

impl<'de> Deserialize<'de> for RawIssuer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(RawIssuer::Url(s)),
            v @ Value::Object(_) => serde_path_to_error::deserialize(v)
                .map(RawIssuer::Full)
                .map_err(|e| {
                    let path = e.path().to_string();
                    let inner = e.into_inner();
                    if path == "." {
                        D::Error::custom(inner)
                    } else {
                        D::Error::custom(format!("{path}: {inner}"))
                    }
                }),
            _ => Err(D::Error::custom(
                "an issuer is its URL (a string) or an object {\"issuer\", \"name\", \"claims\"}",
            )),
        }
    }
}

/// A compiled trusted issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// The `iss` value tokens carry.
    pub url: String,
    /// Its short alias, if configured.
    pub name: Option<String>,
    /// Where each fact comes from in its tokens.
    pub claims: ClaimMapping,
}

/// Compiles a kind's `issuers` list (`at` is its field path): at least one, URLs and names
/// unique, names well-formed, pointers valid, facts known for the kind.
pub fn compile_issuers(
    at: &str,
    kind: TokenKind,
    raw: Vec<RawIssuer>,
) -> Result<Vec<Issuer>, ConfigError> {
    if raw.is_empty() {
        return Err(err(at, "must list at least one value"));
    }
    let mut out: Vec<Issuer> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let here = format!("{at}[{i}]");
        let (issuer, url_field) = match r {
            RawIssuer::Url(url) => (
                Issuer {
                    url,
                    name: None,
                    claims: ClaimMapping::defaults(kind),
                },
                here.clone(),
            ),
            RawIssuer::Full(o) => (compile_object(&here, kind, o)?, format!("{here}.issuer")),
        };
        if issuer.url.trim().is_empty() {
            return Err(err(&url_field, "must not be empty"));
        }
        if out.iter().any(|o| o.url == issuer.url) {
            return Err(err(
                &here,
                format!("issuer `{}` is listed twice", issuer.url),
            ));
        }
        if let Some(name) = &issuer.name {
            if out.iter().any(|o| o.name.as_ref() == Some(name)) {
                return Err(err(
                    &format!("{here}.name"),
                    format!("name `{name}` is used by another issuer"),
                ));
            }
        }
        out.push(issuer);
    }
    Ok(out)
}

fn compile_object(at: &str, kind: TokenKind, o: RawIssuerObject) -> Result<Issuer, ConfigError> {
    if let Some(name) = &o.name {
        let ok = name.len() <= 64
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(err(
                &format!("{at}.name"),
                format!(
                    "`{}` is not a name: lower-case letters, digits and `-`, starting with a letter or digit, at most 64 characters",
                    name.escape_debug()
                ),
            ));
        }
    }
    let mut claims = ClaimMapping::defaults(kind);
    for (fact_name, v) in o.claims {
        let field = format!("{at}.claims.{fact_name}");
        let Some(&fact) = kind.facts().iter().find(|f| f.name() == fact_name) else {
            let known: Vec<&str> = kind.facts().iter().map(|f| f.name()).collect();
            return Err(err(
                &field,
                format!(
                    "unknown fact for {} tokens (known: {})",
                    kind.as_str(),
                    known.join(", ")
                ),
            ));
        };
        let source = compile_source(&field, fact, v)?;
        if let Some(slot) = claims.facts.iter_mut().find(|(f, _)| *f == fact) {
            slot.1 = source;
        }
    }
    Ok(Issuer {
        url: o.issuer,
        name: o.name,
        claims,
    })
}

fn compile_source(at: &str, fact: Fact, v: Value) -> Result<Source, ConfigError> {
    let (from, required, from_at) = match v {
        Value::Null if fact == Fact::Subject => {
            return Err(err(at, "the subject cannot be null: every token needs one"))
        }
        Value::Null => return Ok(Source::Denied),
        Value::Object(mut o) => {
            let from = o
                .remove("from")
                .ok_or_else(|| err(&format!("{at}.from"), "missing: a pointer or a list"))?;
            let required = match o.remove("required") {
                None => true,
                Some(Value::Bool(b)) => b,
                Some(_) => return Err(err(&format!("{at}.required"), "must be true or false")),
            };
            if let Some(k) = o.keys().next() {
                return Err(err(
                    &format!("{at}.{k}"),
                    "unknown field, expected `from` or `required`",
                ));
            }
            if !required && fact == Fact::Subject {
                return Err(err(
                    &format!("{at}.required"),
                    "the subject is always required",
                ));
            }
            (from, required, format!("{at}.from"))
        }
        other => (other, true, at.to_string()),
    };
    let at = from_at.as_str();
    let pointers = match from {
        Value::String(s) => vec![Pointer::parse(&s).map_err(|m| err(at, m))?],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Pointer::parse(s).map_err(|m| err(&format!("{at}[{i}]"), m)),
                _ => Err(err(&format!("{at}[{i}]"), "must be a JSON Pointer string")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(err(
                at,
                "must be a JSON Pointer, a non-empty list of pointers, null or {\"from\", \"required\"}",
            ))
        }
    };
    for (i, p) in pointers.iter().enumerate() {
        if pointers[..i].contains(p) {
            return Err(err(at, format!("pointer `{p}` is listed twice")));
        }
    }
    Ok(Source::From { pointers, required })
}

#[cfg(test)]
mod tests;
