//! No silent open mode: a configuration without `identity` or without `policy` must say
//! `"mode": "open"`, and then every missing section gives a warning the adapter logs at start.

use super::{err, ConfigError};
use serde::Deserialize;
use std::fmt;

/// Whether the gateway must authenticate and authorize (`enforce`) or may run without either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `identity` and `policy` are both required (the default).
    #[default]
    Enforce,
    /// Either may be absent: anonymous callers, or every valid request forwarded. Said loudly.
    Open,
}

impl Mode {
    /// The name written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Open => "open",
        }
    }
}

/// A section the gateway can run without, in open mode only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `identity`: who may call.
    Identity,
    /// `policy`: what callers may do.
    Policy,
}

impl Section {
    /// The field name in the configuration.
    pub fn field(self) -> &'static str {
        match self {
            Section::Identity => "identity",
            Section::Policy => "policy",
        }
    }

    /// What running without the section means.
    fn consequence(self) -> &'static str {
        match self {
            Section::Identity => {
                "every caller is anonymous and no token is checked: anyone who reaches Envoy reaches the MCP servers"
            }
            Section::Policy => {
                "every valid request is forwarded: no rule and no tool registry decides what a caller may do"
            }
        }
    }
}

/// Something the operator must hear about a configuration that was accepted: the adapter logs
/// each at `warn` when the configuration is loaded; `warden check` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The field the warning is about (a missing section's name).
    pub field: String,
    /// The whole line to log.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The missing sections, in the order they are reported.
fn missing(has_identity: bool, has_policy: bool) -> Vec<Section> {
    let mut out = Vec::new();
    if !has_identity {
        out.push(Section::Identity);
    }
    if !has_policy {
        out.push(Section::Policy);
    }
    out
}

/// Checks the mode against the sections present: in `enforce`, a missing section is an error
/// naming it (the first missing one; the message names the other too); in `open`, one warning
/// per missing section.
pub fn check(
    mode: Mode,
    has_identity: bool,
    has_policy: bool,
) -> Result<Vec<ConfigWarning>, ConfigError> {
    let missing = missing(has_identity, has_policy);
    match mode {
        Mode::Enforce => match missing.as_slice() {
            [] => Ok(Vec::new()),
            [first, rest @ ..] => {
                let also = rest
                    .iter()
                    .map(|s| format!(" (`{}` is missing too)", s.field()))
                    .collect::<String>();
                Err(err(
                    first.field(),
                    format!(
                        "missing{also}: without it {}. Configure it, or set `\"mode\": \"open\"` to run without it on purpose (logged as a warning at start)",
                        first.consequence()
                    ),
                ))
            }
        },
        Mode::Open => Ok(missing.into_iter().map(warning).collect()),
    }
}

/// The warnings of a configuration in open mode without `identity` / `policy`.
pub fn open_warnings(has_identity: bool, has_policy: bool) -> Vec<ConfigWarning> {
    missing(has_identity, has_policy)
        .into_iter()
        .map(warning)
        .collect()
}

fn warning(section: Section) -> ConfigWarning {
    ConfigWarning {
        field: section.field().to_string(),
        message: format!(
            "mcp-warden: OPEN MODE: no {} section — {} (\"mode\": \"open\"; remove it to make a missing `{}` an error)",
            section.field(),
            section.consequence(),
            section.field()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn enforce_needs_both_sections_and_names_the_missing_one() {
        assert_eq!(check(Mode::Enforce, true, true), Ok(Vec::new()));
        for (identity, policy, field, other) in [
            (false, true, "identity", None),
            (true, false, "policy", None),
            (false, false, "identity", Some("policy")),
        ] {
            let e = check(Mode::Enforce, identity, policy).unwrap_err();
            assert_eq!(e.field, field);
            assert!(e.message.contains(r#""mode": "open""#), "{e}");
            assert_eq!(
                e.message.contains("`policy` is missing too"),
                other.is_some(),
                "{e}"
            );
        }
    }

    #[test]
    fn open_warns_once_per_missing_section() {
        assert_eq!(check(Mode::Open, true, true), Ok(Vec::new()));
        let fields = |i, p| {
            check(Mode::Open, i, p)
                .unwrap()
                .iter()
                .map(|w| w.field.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(fields(false, true), ["identity"]);
        assert_eq!(fields(true, false), ["policy"]);
        assert_eq!(fields(false, false), ["identity", "policy"]);
        for w in check(Mode::Open, false, false).unwrap() {
            assert!(
                w.to_string()
                    .starts_with(&format!("mcp-warden: OPEN MODE: no {} section", w.field)),
                "{w}"
            );
        }
        assert_eq!(
            open_warnings(false, false),
            check(Mode::Open, false, false).unwrap()
        );
    }
}
