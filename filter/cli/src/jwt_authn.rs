//! The jwt_authn providers of an Envoy YAML file, as far as mcp-warden depends on them: where
//! each stores its verified payload (`payload_in_metadata`) and in which header it forwards it
//! (`forward_payload_header`).
//!
//! Read line by line like [`crate::envoy`] (no YAML parser): block mappings, and a provider
//! written as one flow mapping (`user: { payload_in_metadata: user, … }`).

use crate::problem::Problem;
use mcp_warden_core::identity::IdentityConfig;

/// One jwt_authn provider that stores its payload in metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Its name (the key above its mapping), when found.
    pub name: Option<String>,
    /// 1-based line of its `payload_in_metadata`.
    pub line: usize,
    /// `payload_in_metadata`.
    pub metadata_key: String,
    /// `forward_payload_header`, if set.
    pub payload_header: Option<String>,
}

fn indent(line: &str) -> usize {
    let spaces = line.len() - line.trim_start().len();
    let rest = line.trim_start();
    match rest.strip_prefix("- ") {
        Some(after) => spaces + 2 + (after.len() - after.trim_start().len()),
        None => spaces,
    }
}

fn scalar(v: &str) -> String {
    let v = v.split(" #").next().unwrap_or(v).trim();
    v.trim_matches(|c| c == '"' || c == '\'').to_string()
}

/// The value of `key:` in a line that is that key (block style).
fn block_value(line: &str, key: &str) -> Option<String> {
    let t = line.trim_start().trim_start_matches("- ");
    let t = t
        .strip_prefix(key)
        .or_else(|| t.strip_prefix(&format!("\"{key}\"")))?;
    Some(scalar(t.strip_prefix(':')?))
}

/// The value of `key:` inside a one-line flow mapping `{ …, key: v, … }`.
fn flow_value(line: &str, key: &str) -> Option<String> {
    let open = line.find('{')?;
    let inner = line[open + 1..].split('}').next()?;
    inner
        .split(',')
        .find_map(|part| block_value(part.trim(), key))
}

/// Every provider of the file that has `payload_in_metadata`.
pub fn providers(text: &str) -> Vec<Provider> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(key) = flow_value(line, "payload_in_metadata") {
            let name = line
                .trim_start()
                .trim_start_matches("- ")
                .split(':')
                .next()
                .filter(|n| !n.starts_with('{'))
                .map(scalar);
            out.push(Provider {
                name,
                line: i + 1,
                metadata_key: key,
                payload_header: flow_value(line, "forward_payload_header"),
            });
            continue;
        }
        let Some(key) = block_value(line, "payload_in_metadata") else {
            continue;
        };
        let at = indent(line);
        let sibling =
            |l: &&&str| l.trim().is_empty() || l.trim_start().starts_with('#') || indent(l) >= at;
        let after = lines[i + 1..].iter().take_while(sibling);
        let before: Vec<&&str> = lines[..i].iter().rev().take_while(sibling).collect();
        let payload_header = after
            .chain(before.iter().copied())
            .filter(|l| indent(l) == at)
            .find_map(|l| block_value(l, "forward_payload_header"));
        let name = lines[..i - before.len()]
            .last()
            .filter(|l| indent(l) < at)
            .and_then(|l| l.trim_start().trim_start_matches("- ").strip_suffix(':'))
            .map(scalar);
        out.push(Provider {
            name,
            line: i + 1,
            metadata_key: key,
            payload_header,
        });
    }
    out
}

/// Problems of the providers with a plugin's identity configuration: each provider whose
/// metadata key is a token kind's must forward that kind's payload header.
pub fn check(file: &str, providers: &[Provider], identity: &IdentityConfig) -> Vec<Problem> {
    let kinds = [
        (
            "user",
            identity.user.metadata_key.as_str(),
            identity.user.payload_header.as_deref(),
        ),
        (
            "agent",
            identity
                .agent
                .as_ref()
                .map_or("", |a| a.metadata_key.as_str()),
            identity
                .agent
                .as_ref()
                .and_then(|a| a.payload_header.as_deref()),
        ),
    ];
    let mut problems = Vec::new();
    for (kind, key, header) in kinds {
        let Some(header) = header else { continue };
        for p in providers.iter().filter(|p| p.metadata_key == key) {
            if p.payload_header.as_deref() == Some(header) {
                continue;
            }
            let name = p.name.as_deref().unwrap_or("?");
            let found = match &p.payload_header {
                None => "does not forward it".to_string(),
                Some(other) => format!("forwards it in `{other}`"),
            };
            problems.push(Problem {
                line: Some(p.line),
                ..Problem::file(
                    file,
                    format!(
                        "jwt_authn provider `{name}` stores the {kind} token's payload under `{key}` but {found}: \
                         the plugin reads it from `{header}` (identity.{kind}.payload_header); set \
                         forward_payload_header: {header} on the provider"
                    ),
                )
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_warden_core::config::Config;

    const YAML: &str = r#"
          - name: envoy.filters.http.jwt_authn
            typed_config:
              providers:
                user:
                  issuer: http://idp
                  forward: true
                  payload_in_metadata: user
                  # comment
                  forward_payload_header: x-warden-user-payload
                  failed_status_in_metadata: user_failure
          - name: envoy.filters.http.jwt_authn
            typed_config:
              providers:
                agent:
                  forward_payload_header: "x-other"
                  payload_in_metadata: agent
                spare: { issuer: x, payload_in_metadata: spare }
                flow: { issuer: x, payload_in_metadata: user, forward_payload_header: x-warden-user-payload }
"#;

    fn identity() -> IdentityConfig {
        let c = Config::from_json(
            br#"{"mode":"open","identity":{"protected_resource":{"resource":"http://gw/mcp","authorization_servers":["i"]},
                "user":{"issuers":["i"]},"agent":{"issuers":["i"]}}}"#,
        )
        .unwrap();
        c.identity.unwrap()
    }

    #[test]
    fn providers_are_read_in_block_and_flow_style() {
        let ps = providers(YAML);
        let got: Vec<(Option<&str>, usize, &str, Option<&str>)> = ps
            .iter()
            .map(|p| {
                (
                    p.name.as_deref(),
                    p.line,
                    p.metadata_key.as_str(),
                    p.payload_header.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("user"), 8, "user", Some("x-warden-user-payload")),
                (Some("agent"), 17, "agent", Some("x-other")),
                (Some("spare"), 18, "spare", None),
                (Some("flow"), 19, "user", Some("x-warden-user-payload")),
            ]
        );
    }

    #[test]
    fn a_provider_not_forwarding_the_expected_header_is_named() {
        let ps = providers(YAML);
        let problems = check("e.yaml", &ps, &identity());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, Some(17));
        let m = &problems[0].message;
        assert!(
            m.contains("provider `agent`") && m.contains("forwards it in `x-other`"),
            "{m}"
        );
        assert!(
            m.contains("forward_payload_header: x-warden-agent-payload"),
            "{m}"
        );
        let missing = YAML.replace(
            "                  forward_payload_header: x-warden-user-payload\n",
            "",
        );
        let problems = check("e.yaml", &providers(&missing), &identity());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0]
                .message
                .contains("`user` but does not forward it"),
            "{}",
            problems[0].message
        );
        // Reading from the metadata (`payload_header: null`): nothing to forward.
        let mut id = identity();
        id.user.payload_header = None;
        if let Some(a) = &mut id.agent {
            a.payload_header = None;
        }
        assert!(check("e.yaml", &providers(&missing), &id).is_empty());
    }
}
