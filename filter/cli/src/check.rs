//! `warden check`: validates bundles, plugin configurations and Envoy files with the core, and
//! warns about what is valid but dangerous: open mode, keys and secrets copied from examples.

use crate::bundle;
use crate::envoy;
use crate::example_secrets;
use crate::jwt_authn;
use crate::problem::Problem;
use mcp_warden_core::config::{Config, Mode};
use mcp_warden_core::secrets::EnvReference;

/// What a warning is about; each kind fails the check unless accepted (see [`Accept`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningKind {
    /// `"mode": "open"`: running without identity or policy is allowed.
    OpenMode,
    /// A key or secret copied from this repository's examples.
    ExampleSecret,
}

/// A warning about a valid file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// What it is about.
    pub kind: WarningKind,
    /// Where and what (a [`Problem`] with `warning` set).
    pub problem: Problem,
}

/// The warnings that do not fail the check (`--allow-open`, `--allow-example-secrets`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accept {
    /// Accept `"mode": "open"`.
    pub open: bool,
    /// Accept keys and secrets copied from the examples (the shipped demo files).
    pub example_secrets: bool,
}

impl Accept {
    /// Whether a warning of this kind is accepted.
    pub fn accepts(&self, kind: WarningKind) -> bool {
        match kind {
            WarningKind::OpenMode => self.open,
            WarningKind::ExampleSecret => self.example_secrets,
        }
    }
}

/// A valid file: a one-line summary and its warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// What the file holds.
    pub summary: String,
    /// What is valid but needs attention.
    pub warnings: Vec<Warning>,
}

/// What kind of file a path is, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A policy bundle (`.toml`).
    Bundle,
    /// A plugin configuration (`.json`).
    Plugin,
    /// An Envoy configuration (`.yaml`, `.yml`).
    Envoy,
}

impl Kind {
    /// The kind of `path`, or `None` for an unknown extension.
    pub fn of(path: &str) -> Option<Kind> {
        let ext = std::path::Path::new(path)
            .extension()
            .and_then(|e| e.to_str())?
            .to_ascii_lowercase();
        match ext.as_str() {
            "toml" => Some(Kind::Bundle),
            "json" => Some(Kind::Plugin),
            "yaml" | "yml" => Some(Kind::Envoy),
            _ => None,
        }
    }
}

/// Checks one file: a summary and warnings when it is valid, else every problem found.
pub fn check_file(path: &str) -> Result<Checked, Vec<Problem>> {
    let kind = Kind::of(path).ok_or_else(|| {
        vec![Problem::file(
            path,
            "unknown kind of file: expected a bundle (.toml), a plugin configuration (.json) or an Envoy configuration (.yaml)",
        )]
    })?;
    if kind == Kind::Bundle {
        let b = bundle::load(path).map_err(|p| vec![p])?;
        return Ok(Checked {
            summary: format!(
                "policy bundle: {}, {}",
                plural(b.policy.len(), "rule"),
                plural(b.server_names().len(), "server")
            ),
            warnings: Vec::new(),
        });
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![Problem::file(path, format!("cannot read: {e}"))])?;
    match kind {
        Kind::Plugin => check_plugin_text(path, &text).map_err(|p| vec![p]),
        _ => check_envoy_text(path, &text),
    }
}

/// Checks a plugin configuration (JSON).
pub fn check_plugin_text(file: &str, text: &str) -> Result<Checked, Problem> {
    let (config, refs) = Config::check_json(text.as_bytes(), &process_env)
        .map_err(|e| Problem::file(file, e.message).with_field(e.field))?;
    Ok(Checked {
        summary: format!(
            "plugin configuration: {}{}",
            describe(&config),
            describe_env(&refs)
        ),
        warnings: warnings(&config, text, &|p| p, file),
    })
}

/// The warnings about a compiled configuration and its text; `at` places them in the file.
fn warnings(
    config: &Config,
    text: &str,
    at: &dyn Fn(Problem) -> Problem,
    file: &str,
) -> Vec<Warning> {
    let warning = |kind, field: &str, message: &str| Warning {
        kind,
        problem: at(Problem {
            warning: true,
            ..Problem::file(file, message).with_field(field)
        }),
    };
    let mut out: Vec<Warning> = config
        .warnings
        .iter()
        .map(|w| {
            let message = w.message.strip_prefix("mcp-warden: ").unwrap_or(&w.message);
            warning(WarningKind::OpenMode, &w.field, message)
        })
        .collect();
    if config.mode == Mode::Open && out.is_empty() {
        out.push(warning(
            WarningKind::OpenMode,
            "mode",
            "\"mode\": \"open\" with identity and policy both set: an edit that drops either is then accepted with a warning in Envoy's log instead of refused; remove the mode",
        ));
    }
    // The text compiled, so it is JSON.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        out.extend(
            example_secrets::find(&value)
                .into_iter()
                .map(|f| warning(WarningKind::ExampleSecret, &f.field, &f.message)),
        );
    }
    out
}

/// Secrets given as `{"env": …}` are read from warden's own environment; one that is not set
/// there is checked with a placeholder (Envoy's environment is what counts).
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn describe_env(refs: &[EnvReference]) -> String {
    if refs.is_empty() {
        return String::new();
    }
    let list: Vec<String> = refs
        .iter()
        .map(|r| {
            let state = if r.resolved {
                "set"
            } else {
                "not set here: checked with a placeholder"
            };
            format!("{} from ${} ({state})", r.field, r.variable)
        })
        .collect();
    format!("; secrets from the environment: {}", list.join(", "))
}

/// Checks every plugin configuration of an Envoy file.
pub fn check_envoy_text(file: &str, text: &str) -> Result<Checked, Vec<Problem>> {
    let configs = envoy::plugin_configs(text).map_err(|(line, message)| {
        vec![Problem {
            line: Some(line),
            ..Problem::file(file, message)
        }]
    })?;
    if configs.is_empty()
        && text.contains("config_discovery:")
        && text.contains("envoy.extensions.filters.http.wasm.v3.Wasm")
    {
        // The filter's configuration comes from ECDS: the delivered file is checked on its own.
        return Ok(Checked {
            summary:
                "filter configuration delivered by ECDS (config_discovery); check the delivered file"
                    .into(),
            warnings: Vec::new(),
        });
    }
    if configs.is_empty() {
        return Err(vec![Problem::file(
            file,
            "no plugin configuration found (a `configuration:` with \"@type\": type.googleapis.com/google.protobuf.StringValue)",
        )]);
    }
    let mut problems = Vec::new();
    let mut summaries = Vec::new();
    let mut found = Vec::new();
    let providers = jwt_authn::providers(text);
    for c in &configs {
        match Config::check_json(c.json.as_bytes(), &process_env) {
            Ok((config, refs)) => {
                // jwt_authn must forward the payloads where the plugin reads them.
                if let Some(identity) = &config.identity {
                    problems.extend(jwt_authn::check(file, &providers, identity));
                }
                summaries.push(format!(
                    "line {} ({}{})",
                    c.line,
                    describe(&config),
                    describe_env(&refs)
                ));
                let at = |p: Problem| Problem {
                    line: Some(c.line),
                    column: Some(c.column),
                    ..p
                };
                found.extend(warnings(&config, &c.json, &at, file));
            }
            Err(e) => problems.push(Problem {
                line: Some(c.line),
                column: Some(c.column),
                field: Some(e.field),
                ..Problem::file(file, e.message)
            }),
        }
    }
    if problems.is_empty() {
        Ok(Checked {
            summary: format!(
                "{}: {}",
                plural(configs.len(), "plugin configuration"),
                summaries.join("; ")
            ),
            warnings: found,
        })
    } else {
        Err(problems)
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn describe(c: &Config) -> String {
    let identity = if c.identity.is_some() {
        "identity checks"
    } else {
        "no identity checks"
    };
    let mut out = match &c.policy {
        Some(p) => format!("{identity}, policy with {}", plural(p.len(), "rule")),
        None => format!("{identity}, no policy"),
    };
    if c.mode == Mode::Open {
        out.insert_str(0, "OPEN MODE: ");
    }
    if let Some(f) = &c.response_filters {
        out.push_str(&format!(", response filters ({})", f.summary()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_extension() {
        assert_eq!(Kind::of("a/bundle.toml"), Some(Kind::Bundle));
        assert_eq!(Kind::of("x.JSON"), Some(Kind::Plugin));
        assert_eq!(Kind::of("envoy/demo.yml"), Some(Kind::Envoy));
        assert_eq!(Kind::of("README"), None);
    }

    #[test]
    fn plugin_errors_name_the_field() {
        let p = check_plugin_text(
            "p.json",
            r#"{"policy":{"rules":[{"id":"a","effect":"maybe"}]}}"#,
        )
        .unwrap_err();
        assert_eq!(p.field.as_deref(), Some("policy.rules[0].effect"));
        assert_eq!(p.to_string().split(": ").next(), Some("p.json"));
        let empty = check_plugin_text("p.json", "{}").unwrap_err();
        assert_eq!(empty.field.as_deref(), Some("identity"));
        assert!(empty.message.contains(r#""mode": "open""#), "{empty}");
        assert!(check_plugin_text("p.json", r#"{"mode":"open"}"#).is_ok());
    }

    fn kinds_and_fields(c: &Checked) -> Vec<(WarningKind, String)> {
        c.warnings
            .iter()
            .map(|w| (w.kind, w.problem.field.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn open_mode_is_a_warning_per_missing_section() {
        use WarningKind::OpenMode;
        let c = check_plugin_text("p.json", r#"{"mode":"open"}"#).unwrap();
        assert_eq!(
            kinds_and_fields(&c),
            [(OpenMode, "identity".into()), (OpenMode, "policy".into())]
        );
        assert!(c.summary.contains("OPEN MODE"), "{}", c.summary);
        let line = c.warnings[0].problem.to_string();
        assert!(
            line.starts_with("p.json: warning: field `identity`: OPEN MODE: no identity section"),
            "{line}"
        );
        // Open with both sections: still a warning (the next edit could drop one silently).
        let both = r#"{"mode":"open","identity":{"protected_resource":{"resource":"http://gw/mcp","authorization_servers":["i"]},"user":{"issuers":["i"]}},"policy":{}}"#;
        let c = check_plugin_text("p.json", both).unwrap();
        assert_eq!(kinds_and_fields(&c), [(OpenMode, "mode".into())]);
        let enforced = both.replace(r#""mode":"open","#, "");
        assert!(check_plugin_text("p.json", &enforced)
            .unwrap()
            .warnings
            .is_empty());
        assert!(Accept {
            open: true,
            example_secrets: false
        }
        .accepts(OpenMode));
        assert!(!Accept::default().accepts(OpenMode));
    }

    #[test]
    fn example_secrets_are_warnings_at_the_config_line() {
        let yaml = "a:\n  \"@type\": type.googleapis.com/google.protobuf.StringValue\n  value: '{\"mode\":\"open\",\"routing\":{},\"sessions\":{\"keys\":[{\"id\":\"k\",\"secret\":\"QLPlh2LIKRAJecQbCuXzKC1FGssgQJoNoid9OAr1QF4=\"}]}}'\n";
        // Sessions need identity: an error first.
        assert!(check_envoy_text("e.yaml", yaml).is_err());
        let yaml = yaml.replace(
            r#""routing":{},"#,
            r#""identity":{"protected_resource":{"resource":"http://gw/mcp","authorization_servers":["i"]},"user":{"issuers":["i"]}},"policy":{},"#,
        );
        let c = check_envoy_text("e.yaml", &yaml).unwrap();
        assert_eq!(
            kinds_and_fields(&c),
            [
                (WarningKind::OpenMode, "mode".into()),
                (WarningKind::ExampleSecret, "sessions.keys[0].secret".into())
            ]
        );
        let line = c.warnings[1].problem.to_string();
        assert!(
            line.starts_with("e.yaml:3:11: warning: field `sessions.keys[0].secret`: the test session key of envoy/routing.yaml"),
            "{line}"
        );
        assert!(!line.contains("QLPlh2"), "{line}");
    }

    #[test]
    fn secrets_from_the_environment_are_checked_with_a_placeholder_when_unset() {
        let identity = r#""identity":{"protected_resource":{"resource":"http://gw/mcp","authorization_servers":["i"]},"user":{"issuers":["i"]}}"#;
        let text = format!(
            r#"{{"mode":"open",{identity},"sessions":{{"keys":[{{"id":"k","secret":{{"env":"WARDEN_CHECK_TEST_UNSET_KEY"}}}}]}}}}"#
        );
        let summary = check_plugin_text("p.json", &text).unwrap().summary;
        assert!(
            summary.contains("sessions.keys[0].secret from $WARDEN_CHECK_TEST_UNSET_KEY (not set here: checked with a placeholder)"),
            "{summary}"
        );
        let bad = text.replace("WARDEN_CHECK_TEST_UNSET_KEY", "1BAD");
        let p = check_plugin_text("p.json", &bad).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("sessions.keys[0].secret"));
    }

    #[test]
    fn envoy_errors_point_at_the_value_line() {
        let yaml = "a:\n  \"@type\": type.googleapis.com/google.protobuf.StringValue\n  value: '{\"max_json_depth\":500}'\n";
        let ps = check_envoy_text("e.yaml", yaml).unwrap_err();
        assert_eq!(ps.len(), 1);
        assert_eq!(ps[0].line, Some(3));
        assert_eq!(ps[0].field.as_deref(), Some("max_json_depth"));
        assert!(check_envoy_text("e.yaml", "a: 1\n").is_err());
        let ok = yaml.replace("500", "50");
        let e = check_envoy_text("e.yaml", &ok).unwrap_err();
        assert_eq!(e[0].field.as_deref(), Some("identity"));
        let open = yaml.replace(
            r#"{"max_json_depth":500"#,
            r#"{"mode":"open","max_json_depth":50"#,
        );
        assert!(check_envoy_text("e.yaml", &open).is_ok());
    }
}
