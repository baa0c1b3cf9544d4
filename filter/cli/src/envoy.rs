//! The mcp-warden plugin configurations inside an Envoy YAML file.
//!
//! Envoy hands the plugin its configuration as a `google.protobuf.StringValue`:
//!
//! ```yaml
//! configuration:
//!   "@type": type.googleapis.com/google.protobuf.StringValue
//!   value: '{"max_body_bytes":1048576, ...}'
//! ```
//!
//! Every such `value` is extracted (a one-line single-quoted YAML string, `''` standing for
//! `'`), without a YAML parser: this is the form the shipped files use, and any other form is
//! reported rather than skipped.

const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// One plugin configuration found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    /// 1-based line of its `value:`.
    pub line: usize,
    /// 1-based column where the JSON text starts.
    pub column: usize,
    /// The JSON text.
    pub json: String,
}

/// Indentation of a mapping key on this line (a leading `- ` counts as indentation).
fn key_indent(line: &str) -> usize {
    let spaces = line.len() - line.trim_start().len();
    let rest = line.trim_start();
    match rest.strip_prefix("- ") {
        Some(after) => spaces + 2 + (after.len() - after.trim_start().len()),
        None => spaces,
    }
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

fn is_string_value_type(line: &str) -> bool {
    let t = line.trim_start().trim_start_matches("- ");
    let Some(rest) = t
        .strip_prefix("\"@type\":")
        .or_else(|| t.strip_prefix("'@type':"))
    else {
        return false;
    };
    rest.trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .eq(STRING_VALUE)
}

/// Every plugin configuration in the file, or the line of one that cannot be read and why.
pub fn plugin_configs(text: &str) -> Result<Vec<PluginConfig>, (usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !is_string_value_type(line) {
            continue;
        }
        let indent = key_indent(line);
        // The sibling keys of `"@type"`: the lines around it at the same indentation, up to the
        // first line indented less (the end of the mapping).
        let in_mapping = |l: &str| is_blank_or_comment(l) || key_indent(l) >= indent;
        let after = lines[i + 1..].iter().take_while(|l| in_mapping(l));
        let before = lines[..i].iter().rev().take_while(|l| in_mapping(l));
        let value_line = after
            .enumerate()
            .map(|(k, l)| (i + 1 + k, l))
            .chain(before.enumerate().map(|(k, l)| (i - 1 - k, l)))
            .find(|(_, l)| {
                key_indent(l) == indent && {
                    let t = l.trim_start();
                    t.starts_with("value:") || t.starts_with("\"value\":")
                }
            });
        let Some((n, l)) = value_line else {
            return Err((
                i + 1,
                "a StringValue `@type` without a `value:` beside it".into(),
            ));
        };
        let (column, json) = single_quoted_value(l).map_err(|e| (n + 1, e))?;
        out.push(PluginConfig {
            line: n + 1,
            column,
            json,
        });
    }
    Ok(out)
}

/// The text of `value: '...'` and the 1-based column where it starts.
fn single_quoted_value(line: &str) -> Result<(usize, String), String> {
    let Some(colon) = line.find(':') else {
        return Err("expected `value: '…'`".into());
    };
    let rest = &line[colon + 1..];
    let body = rest.trim_start();
    let Some(quoted) = body.strip_prefix('\'') else {
        return Err(
            "the plugin configuration must be a one-line single-quoted YAML string: value: '{…}'"
                .into(),
        );
    };
    let start = line.len() - quoted.len();
    let mut json = String::with_capacity(quoted.len());
    let mut chars = quoted.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            if chars.peek() == Some(&'\'') {
                chars.next();
                json.push('\'');
                continue;
            }
            let tail: String = chars.collect();
            let tail = tail.trim();
            if !(tail.is_empty() || tail.starts_with('#')) {
                return Err(format!("unexpected `{tail}` after the quoted value"));
            }
            return Ok((line[..start].chars().count() + 1, json));
        }
        json.push(c);
    }
    Err("the single-quoted value does not end on its line (write the JSON on one line)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_after_or_before_the_type_line() {
        let yaml = r#"
filters:
- name: a
  typed_config:
    config:
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        # the plugin config
        value: '{"max_json_depth":8,"extra_methods":["it''s/x"]}'
      other: 1
- name: b
  configuration:
    value: '{}'   # trailing comment
    "@type": "type.googleapis.com/google.protobuf.StringValue"
"#;
        let found = plugin_configs(yaml).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].line, 9);
        assert_eq!(found[0].column, 17);
        assert_eq!(
            found[0].json,
            r#"{"max_json_depth":8,"extra_methods":["it's/x"]}"#
        );
        assert_eq!(found[1].json, "{}");
    }

    #[test]
    fn other_forms_are_reported_not_skipped() {
        let missing = "c:\n  \"@type\": type.googleapis.com/google.protobuf.StringValue\nd: 1\n";
        assert_eq!(plugin_configs(missing).unwrap_err().0, 2);
        let double =
            "c:\n  \"@type\": type.googleapis.com/google.protobuf.StringValue\n  value: \"{}\"\n";
        assert_eq!(plugin_configs(double).unwrap_err().0, 3);
        let open = "c:\n  \"@type\": type.googleapis.com/google.protobuf.StringValue\n  value: '{\n   }'\n";
        assert!(plugin_configs(open).unwrap_err().1.contains("does not end"));
        assert!(plugin_configs("a: 1\n").unwrap().is_empty());
    }
}
