//! Policy bundles: TOML files holding what goes under `"policy"` in the plugin configuration.
//!
//! A bundle is read as TOML, converted to JSON and compiled by the core exactly as the filter
//! compiles its configuration (`Config::from_json` of `{"mode": "open", "policy": <bundle>}`:
//! open only because a bundle carries no `identity`), so a bundle that
//! passes here is accepted by Envoy. Errors carry the field path the core reports, located back
//! to a line and column of the TOML file.

use crate::problem::Problem;
use mcp_warden_core::config::{Config, ConfigError};
use mcp_warden_core::policy::Policy;
use serde_json::{Map, Number, Value};
use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// A compiled bundle.
#[derive(Debug)]
pub struct Bundle {
    /// The file, as named on the command line.
    pub file: String,
    /// The bundle as JSON (what `warden compile` prints).
    pub json: Value,
    /// The compiled policy.
    pub policy: Policy,
}

impl Bundle {
    /// The bundle's default time zone (`timezone`, default `UTC`).
    pub fn timezone(&self) -> &str {
        self.json
            .get("timezone")
            .and_then(Value::as_str)
            .unwrap_or("UTC")
    }

    /// The rule ids, in order.
    pub fn rule_ids(&self) -> Vec<String> {
        self.json
            .get("rules")
            .and_then(Value::as_array)
            .map(|rules| {
                rules
                    .iter()
                    .filter_map(|r| r.get("id").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The server names, in order.
    pub fn server_names(&self) -> Vec<String> {
        self.json
            .get("servers")
            .and_then(Value::as_array)
            .map(|servers| {
                servers
                    .iter()
                    .filter_map(|s| s.get("name").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Reads and compiles a bundle file.
pub fn load(path: &str) -> Result<Bundle, Problem> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Problem::file(path, format!("cannot read: {e}")))?;
    parse(path, &text)
}

/// Compiles bundle text; `file` names it in problems. Without the user issuers (which live in
/// the plugin's `identity` section), `users` entries are checked for form only.
pub fn parse(file: &str, text: &str) -> Result<Bundle, Problem> {
    parse_for_issuers(file, text, None)
}

/// Reads and compiles a bundle file with `users` entries resolved against `user_issuers` (the
/// JSON of `identity.user.issuers`, already valid), as the filter would with that identity.
pub fn load_for_issuers(path: &str, user_issuers: &Value) -> Result<Bundle, Problem> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Problem::file(path, format!("cannot read: {e}")))?;
    parse_for_issuers(path, &text, Some(user_issuers))
}

/// [`parse`], resolving `users` entries against `user_issuers` when given.
pub fn parse_for_issuers(
    file: &str,
    text: &str,
    user_issuers: Option<&Value>,
) -> Result<Bundle, Problem> {
    let table: toml::Table = toml::from_str(text).map_err(|e| toml_problem(file, text, &e))?;
    let json = toml_table_to_json(&table).map_err(|(field, message)| {
        locate(
            Problem::file(file, message).with_field(field.clone()),
            text,
            &field,
        )
    })?;
    // `"mode": "open"`: the bundle is the policy alone (with test issuers when given); the real
    // identity comes with the plugin configuration.
    let mut config = serde_json::json!({ "mode": "open", "policy": json.clone() });
    if let Some(issuers) = user_issuers {
        config["identity"] = serde_json::json!({
            "protected_resource": {"resource": "https://warden-test.invalid/mcp",
                                   "authorization_servers": ["https://warden-test.invalid"]},
            "user": {"issuers": issuers}
        });
    }
    let config = serde_json::to_vec(&config)
        .map_err(|e| Problem::file(file, format!("cannot encode as JSON: {e}")))?;
    let compiled = Config::from_json(&config).map_err(|e| config_problem(file, text, &e))?;
    let policy = compiled
        .policy
        .ok_or_else(|| Problem::file(file, "the bundle compiled to no policy"))?;
    Ok(Bundle {
        file: file.to_string(),
        json,
        policy,
    })
}

/// A TOML syntax or type error, at its line and column.
pub fn toml_problem(file: &str, text: &str, e: &toml::de::Error) -> Problem {
    let message = format!("TOML: {}", e.message().trim_end());
    match e.span() {
        Some(span) => Problem::file(file, message).at_offset(text, span.start),
        None => Problem::file(file, message),
    }
}

/// A core configuration error about the bundle: the field path relative to the bundle, located
/// in the TOML text.
fn config_problem(file: &str, text: &str, e: &ConfigError) -> Problem {
    let field = e
        .field
        .strip_prefix("policy.")
        .or_else(|| e.field.strip_prefix("policy"))
        .unwrap_or(&e.field);
    let field = if field.is_empty() { "." } else { field };
    locate(
        Problem::file(file, e.message.clone()).with_field(field),
        text,
        field,
    )
}

/// Adds the line and column of `field` (or of its nearest enclosing field that exists).
pub fn locate(problem: Problem, text: &str, field: &str) -> Problem {
    let Ok(doc) = DeTable::parse(text) else {
        return problem;
    };
    let mut span: Option<Range<usize>> = None;
    let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
    let mut array: Option<&[toml::Spanned<DeValue<'_>>]> = None;
    for segment in path_segments(field) {
        let next = match (segment, table, array) {
            (Segment::Key(k), Some(t), _) => t
                .iter()
                .find(|(key, _)| key.get_ref().as_ref() == k)
                .map(|(key, value)| (key.span(), value)),
            (Segment::Index(i), _, Some(a)) => a.get(i).map(|v| (v.span(), v)),
            _ => None,
        };
        let Some((key_span, value)) = next else { break };
        // Point at the key of a `key = value` line; array items at themselves.
        span = Some(key_span);
        table = None;
        array = None;
        match value.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(a),
            _ => {}
        }
    }
    match span {
        Some(s) => problem.at_offset(text, s.start),
        None => problem,
    }
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `rules[2].arguments[0].regex` → rules, 2, arguments, 0, regex.
fn path_segments(field: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in field.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Segment::Key(name));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else { break };
            if let Ok(i) = stripped[..end].parse() {
                out.push(Segment::Index(i));
            }
            rest = &stripped[end + 1..];
        }
    }
    out
}

/// TOML → JSON. Datetimes become RFC 3339 strings; a non-finite float is an error naming its
/// field.
pub fn toml_table_to_json(table: &toml::Table) -> Result<Value, (String, String)> {
    convert_table(table, "")
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

fn convert_table(table: &toml::Table, at: &str) -> Result<Value, (String, String)> {
    let mut map = Map::new();
    for (k, v) in table {
        map.insert(k.clone(), toml_to_json(v, &join(at, k))?);
    }
    Ok(Value::Object(map))
}

/// One TOML value → JSON (`at` is its field path, for errors).
pub fn toml_to_json(value: &toml::Value, at: &str) -> Result<Value, (String, String)> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::Number((*i).into()),
        toml::Value::Float(f) => Value::Number(
            Number::from_f64(*f)
                .ok_or_else(|| (at.to_string(), format!("{f} has no JSON form")))?,
        ),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| toml_to_json(v, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(t) => convert_table(t, at)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> Problem {
        parse("b.toml", text).unwrap_err()
    }

    const GOOD: &str = r#"
timezone = "Europe/Berlin"

[[servers]]
name = "corp"
path = "/mcp"
tools = [{ name = "echo", status = "approved", approved_for = ["*"] }]

[[rules]]
id = "echo"
effect = "allow"
tools = ["echo"]
"#;

    #[test]
    fn a_good_bundle_compiles_and_converts() {
        let b = parse("b.toml", GOOD).unwrap();
        assert_eq!(b.policy.len(), 1);
        assert_eq!(b.timezone(), "Europe/Berlin");
        assert_eq!(b.rule_ids(), vec!["echo"]);
        assert_eq!(b.server_names(), vec!["corp"]);
        assert_eq!(b.json["servers"][0]["tools"][0]["approved_for"][0], "*");
    }

    #[test]
    fn compile_errors_name_the_field_and_its_line() {
        let text = GOOD.replace(r#"effect = "allow""#, r#"effect = "permit""#);
        let p = problem(&text);
        assert_eq!(p.field.as_deref(), Some("rules[0].effect"));
        assert_eq!((p.line, p.column), (Some(11), Some(1)));
        assert!(p.message.contains("`permit` is not allow or deny"), "{p}");

        let text = GOOD.replace(r#"status = "approved""#, r#"status = "ok""#);
        let p = problem(&text);
        assert_eq!(p.field.as_deref(), Some("servers[0].tools[0].status"));
        assert_eq!(p.line, Some(7));
    }

    #[test]
    fn type_errors_and_unknown_fields_name_the_field() {
        let p = problem(&GOOD.replace(r#"tools = ["echo"]"#, r#"tools = "echo""#));
        assert_eq!(p.field.as_deref(), Some("rules[0].tools"));
        assert_eq!(p.line, Some(12));
        let p = problem(&GOOD.replace(r#"tools = ["echo"]"#, "tool = [\"echo\"]"));
        assert!(p.message.contains("unknown field `tool`"), "{p}");
        assert!(
            p.field.as_deref().unwrap_or("").starts_with("rules[0]"),
            "{p}"
        );
    }

    #[test]
    fn toml_syntax_errors_have_line_and_column() {
        let p = problem("timezone = \"UTC\"\n[[rules]\nid = 1\n");
        assert_eq!(p.line, Some(2));
        assert!(p.message.starts_with("TOML:"), "{p}");
        assert!(p.field.is_none());
    }

    #[test]
    fn datetimes_become_strings() {
        let t: toml::Table = toml::from_str("a = 2026-01-05T10:00:00Z\nb = [1.5, true]").unwrap();
        let j = toml_table_to_json(&t).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"a": "2026-01-05T10:00:00Z", "b": [1.5, true]})
        );
        let t: toml::Table = toml::from_str("x = { y = [nan] }").unwrap();
        assert_eq!(toml_table_to_json(&t).unwrap_err().0, "x.y[0]");
    }
}
