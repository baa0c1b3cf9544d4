//! A problem found in a file, reported as `file:line:column: field `path`: message`
//! (`file:line:column: warning: field `path`: message` for a warning).

use std::fmt;

/// Something wrong with an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as named on the command line.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters), when known.
    pub column: Option<usize>,
    /// Field path inside the document (`rules[2].effect`), when the problem has one.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// A warning (the file is valid, but something in it needs attention) rather than an error.
    pub warning: bool,
}

impl Problem {
    /// A problem with the file as a whole.
    pub fn file(file: &str, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_string(),
            line: None,
            column: None,
            field: None,
            message: message.into(),
            warning: false,
        }
    }

    /// The same problem at a byte offset of `text` (the file's contents).
    pub fn at_offset(mut self, text: &str, offset: usize) -> Problem {
        let (line, column) = line_column(text, offset);
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// The same problem about this field.
    pub fn with_field(mut self, field: impl Into<String>) -> Problem {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": ")?;
        if self.warning {
            write!(f, "warning: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// 1-based line and column (in characters) of a byte offset; offsets past the end or inside a
/// character are clamped.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // After the two-byte `é`: column counts characters.
        assert_eq!(line_column(text, 9), (2, 3));
        // Inside `é`: clamped back to its start.
        assert_eq!(line_column(text, 8), (2, 2));
        assert_eq!(line_column(text, 999), (3, 1));
    }

    #[test]
    fn display_names_file_position_and_field() {
        let p = Problem::file("b.toml", "bad")
            .at_offset("x\ny", 2)
            .with_field("rules[0].id");
        assert_eq!(p.to_string(), "b.toml:2:1: field `rules[0].id`: bad");
        assert_eq!(Problem::file("b.toml", "bad").to_string(), "b.toml: bad");
        let w = Problem {
            warning: true,
            ..Problem::file("p.json", "careful").with_field("mode")
        };
        assert_eq!(w.to_string(), "p.json: warning: field `mode`: careful");
    }
}
