//! `warden check`: validates bundles, plugin configurations and Envoy files with the core.

use crate::bundle;
use crate::envoy;
use crate::problem::Problem;
use mcp_warden_core::config::Config;
use mcp_warden_core::secrets::EnvReference;

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

/// Checks one file: a one-line summary when it is valid, else every problem found.
pub fn check_file(path: &str) -> Result<String, Vec<Problem>> {
    let kind = Kind::of(path).ok_or_else(|| {
        vec![Problem::file(
            path,
            "unknown kind of file: expected a bundle (.toml), a plugin configuration (.json) or an Envoy configuration (.yaml)",
        )]
    })?;
    if kind == Kind::Bundle {
        let b = bundle::load(path).map_err(|p| vec![p])?;
        return Ok(format!(
            "policy bundle: {}, {}",
            plural(b.policy.len(), "rule"),
            plural(b.server_names().len(), "server")
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![Problem::file(path, format!("cannot read: {e}"))])?;
    match kind {
        Kind::Plugin => check_plugin_text(path, &text).map_err(|p| vec![p]),
        _ => check_envoy_text(path, &text),
    }
}

/// Checks a plugin configuration (JSON).
pub fn check_plugin_text(file: &str, text: &str) -> Result<String, Problem> {
    let (config, refs) = Config::check_json(text.as_bytes(), &process_env)
        .map_err(|e| Problem::file(file, e.message).with_field(e.field))?;
    Ok(format!(
        "plugin configuration: {}{}",
        describe(&config),
        describe_env(&refs)
    ))
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
pub fn check_envoy_text(file: &str, text: &str) -> Result<String, Vec<Problem>> {
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
        return Ok(
            "filter configuration delivered by ECDS (config_discovery); check the delivered file"
                .into(),
        );
    }
    if configs.is_empty() {
        return Err(vec![Problem::file(
            file,
            "no plugin configuration found (a `configuration:` with \"@type\": type.googleapis.com/google.protobuf.StringValue)",
        )]);
    }
    let mut problems = Vec::new();
    let mut summaries = Vec::new();
    for c in &configs {
        match Config::check_json(c.json.as_bytes(), &process_env) {
            Ok((config, refs)) => summaries.push(format!(
                "line {} ({}{})",
                c.line,
                describe(&config),
                describe_env(&refs)
            )),
            Err(e) => problems.push(Problem {
                line: Some(c.line),
                column: Some(c.column),
                field: Some(e.field),
                ..Problem::file(file, e.message)
            }),
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "{}: {}",
            plural(configs.len(), "plugin configuration"),
            summaries.join("; ")
        ))
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
        assert!(check_plugin_text("p.json", "{}").is_ok());
    }

    #[test]
    fn secrets_from_the_environment_are_checked_with_a_placeholder_when_unset() {
        let identity = r#""identity":{"protected_resource":{"resource":"http://gw/mcp","authorization_servers":["i"]},"user":{"issuers":["i"]}}"#;
        let text = format!(
            r#"{{{identity},"sessions":{{"keys":[{{"id":"k","secret":{{"env":"WARDEN_CHECK_TEST_UNSET_KEY"}}}}]}}}}"#
        );
        let summary = check_plugin_text("p.json", &text).unwrap();
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
        assert!(check_envoy_text("e.yaml", &ok).is_ok());
    }
}
