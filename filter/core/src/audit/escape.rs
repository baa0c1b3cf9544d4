//! Log lines nobody can forge: text that reaches a log line (tool, prompt and resource names,
//! URIs, details, notices — written by clients, servers and token services) never carries a
//! character that ends the line, starts another, hides text or reorders it on screen.
//!
//! Such characters are written as escapes: in JSON (audit records) as `\uXXXX`, which a JSON
//! reader turns back into the original text; in plain text as `\n`, `\r`, `\t` or `\u{XXXX}`,
//! with `\` itself doubled so an escape cannot be faked either.

use serde_json::ser::Formatter;
use std::borrow::Cow;
use std::io;

/// Whether `c` must not appear raw in a log line: C0 and C1 controls and DEL (line feed,
/// carriage return, NEL, escape sequences), the Unicode line and paragraph separators,
/// bidirectional embeddings, overrides, isolates and marks, and invisible format characters
/// (zero-width, word joiner, BOM, soft hyphen, interlinear annotations, tag characters).
pub fn is_unsafe_in_log(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{ad}'
            | '\u{61c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e007f}'
    )
}

/// `s` as plain text for a log line: unsafe characters escaped (`\n`, `\r`, `\t`,
/// `\u{XXXX}`) and `\` doubled. Borrowed when there is nothing to escape.
pub fn escape_text(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// The last line of defence for a whole formatted log line: unsafe characters escaped as in
/// [`escape_text`], backslashes left alone (the line may hold JSON, whose escapes must stay
/// as they are). Borrowed when there is nothing to escape.
pub fn log_safe(line: &str) -> Cow<'_, str> {
    escape(line, false)
}

fn escape(s: &str, backslashes: bool) -> Cow<'_, str> {
    let clean = |c: char| !is_unsafe_in_log(c) && (!backslashes || c != '\\');
    if s.chars().all(clean) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            _ if clean(c) => out.push(c),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            _ => out.push_str(&format!("\\u{{{:04x}}}", u32::from(c))),
        }
    }
    Cow::Owned(out)
}

/// serde_json's compact output, with every character [`is_unsafe_in_log`] written as a
/// `\uXXXX` escape (serde_json escapes only C0 controls, `"` and `\`).
pub struct LogSafeJson;

impl Formatter for LogSafeJson {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if is_unsafe_in_log(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// `value` as one line of JSON that is safe in a log ([`LogSafeJson`]).
pub fn to_log_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, LogSafeJson);
    value.serialize(&mut ser)?;
    // serde_json writes only UTF-8.
    String::from_utf8(out).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Text that would break, hide or reorder a line if written raw.
    const HOSTILE: &[&str] = &[
        "a\nmcp-warden audit {\"outcome\":\"allowed\"}",
        "a\r\nb",
        "a\rb",
        "a\u{b}b\u{c}c",
        "\u{1b}[2J\u{1b}[31mred",
        "nel\u{85}next",
        "ls\u{2028}ps\u{2029}",
        "bidi\u{202e}txt.exe\u{202c}",
        "iso\u{2066}x\u{2069}",
        "zw\u{200b}j\u{200d}\u{feff}",
        "tag\u{e0041}\u{e007f}",
        "del\u{7f}",
        "nul\u{0}",
    ];

    fn no_unsafe(s: &str) -> bool {
        !s.chars().any(is_unsafe_in_log)
    }

    #[test]
    fn text_escapes_are_visible_unambiguous_and_only_when_needed() {
        assert!(matches!(escape_text("delete_file"), Cow::Borrowed(_)));
        assert!(matches!(log_safe("{\"a\":\"\\n\"}"), Cow::Borrowed(_)));
        assert_eq!(escape_text("a\nb"), "a\\nb");
        assert_eq!(
            escape_text("a\\nb"),
            "a\\\\nb",
            "a literal \\n is not a newline"
        );
        assert_eq!(log_safe("a\\nb"), "a\\nb", "the net keeps JSON escapes");
        assert_eq!(escape_text("x\u{2028}y"), "x\\u{2028}y");
        assert_eq!(escape_text("\u{e0041}"), "\\u{e0041}");
        assert_eq!(escape_text("é ü 日本 😀"), "é ü 日本 😀");
        for h in HOSTILE {
            assert!(no_unsafe(&escape_text(h)), "{h:?}");
            assert!(no_unsafe(&log_safe(h)), "{h:?}");
            assert!(!escape_text(h).contains('\n'));
        }
    }

    #[test]
    fn json_escapes_round_trip_and_leave_no_unsafe_character() {
        for h in HOSTILE {
            let v = json!({ "target": h, *h: 1 });
            let line = to_log_json(&v).unwrap();
            assert!(no_unsafe(&line), "{line}");
            let back: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(back, v, "{line}");
        }
        assert_eq!(
            to_log_json(&json!({"t": "a\u{2028}😀\u{e0001}"})).unwrap(),
            r#"{"t":"a\u2028😀\udb40\udc01"}"#
        );
        assert_eq!(
            to_log_json(&json!({"t": "plain"})).unwrap(),
            serde_json::to_string(&json!({"t": "plain"})).unwrap()
        );
    }
}
