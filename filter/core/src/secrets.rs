//! Secrets of the plugin configuration: each secret field holds its value, or
//! `{"env": "NAME"}`, the name of an environment variable that holds it.
//!
//! References are resolved once, when the configuration is compiled, before the typed
//! configuration is read: the compiled configuration never knows where a secret came from. The
//! core reads no environment itself; the caller hands it a lookup (the wasm adapter: the VM's
//! WASI environment, which Envoy fills from `vm_config.environment_variables`; tests: a map).
//! Only the fields in [`SECRET_FIELDS`] take references: anywhere else `{"env": …}` is an
//! ordinary JSON object (a policy may compare an argument with one).

use crate::config::{err, ConfigError};
use serde_json::Value;

/// What a secret field holds, so `warden check` can stand in a valid placeholder for a
/// variable it does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// Any non-empty text (a client secret).
    Text,
    /// Base64 of 32 bytes (a session key).
    SessionKey,
    /// A PKCS#8 PEM private key (P-256).
    PrivateKeyPem,
}

/// The secret fields of the configuration: a dotted path (`[]`: every element of a list) and
/// what the field holds.
pub const SECRET_FIELDS: &[(&str, SecretKind)] = &[
    ("token_exchange.client_auth.client_secret", SecretKind::Text),
    (
        "token_exchange.client_auth.key_pem",
        SecretKind::PrivateKeyPem,
    ),
    ("sessions.keys[].secret", SecretKind::SessionKey),
    ("routing.session_keys[].secret", SecretKind::SessionKey),
];

/// Where `{"env": …}` references are resolved from.
#[derive(Clone, Copy)]
pub enum Environment<'a> {
    /// Read each variable with the lookup; an unset or empty variable refuses the
    /// configuration (what Envoy does).
    Read(&'a dyn Fn(&str) -> Option<String>),
    /// `warden check`: variables the lookup has are read; one it does not have is replaced by
    /// a valid placeholder for its field, so the rest of the configuration is still checked.
    Check(&'a dyn Fn(&str) -> Option<String>),
}

/// One `{"env": …}` reference found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvReference {
    /// The secret field (`token_exchange.client_auth.client_secret`, `sessions.keys[0].secret`).
    pub field: String,
    /// The variable named.
    pub variable: String,
    /// Whether the variable was set (false only under [`Environment::Check`]).
    pub resolved: bool,
}

/// Replaces every `{"env": "NAME"}` at a secret field of `config` by the variable's value.
pub fn resolve(config: &mut Value, env: Environment<'_>) -> Result<Vec<EnvReference>, ConfigError> {
    let mut found = Vec::new();
    for (path, kind) in SECRET_FIELDS {
        let segments: Vec<&str> = path.split('.').collect();
        visit(config, &segments, String::new(), &mut |field, value| {
            resolve_one(field, value, *kind, env, &mut found)
        })?;
    }
    Ok(found)
}

/// Calls `f` on each value at `segments` below `value` (with its field path).
fn visit(
    value: &mut Value,
    segments: &[&str],
    at: String,
    f: &mut dyn FnMut(&str, &mut Value) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let Some((first, rest)) = segments.split_first() else {
        return f(&at, value);
    };
    let (name, each) = match first.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (*first, false),
    };
    let Some(child) = value.as_object_mut().and_then(|o| o.get_mut(name)) else {
        return Ok(());
    };
    let field = if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    };
    if !each {
        return visit(child, rest, field, f);
    }
    if let Some(items) = child.as_array_mut() {
        for (i, item) in items.iter_mut().enumerate() {
            visit(item, rest, format!("{field}[{i}]"), f)?;
        }
    }
    Ok(())
}

fn resolve_one(
    field: &str,
    value: &mut Value,
    kind: SecretKind,
    env: Environment<'_>,
    found: &mut Vec<EnvReference>,
) -> Result<(), ConfigError> {
    let Some(object) = value.as_object() else {
        // A plain value (or a wrong type, which the typed reader reports).
        return Ok(());
    };
    let variable = match object.get("env") {
        Some(Value::String(name)) if object.len() == 1 => name.clone(),
        _ => {
            return Err(err(
                field,
                "a secret is its value (a string) or {\"env\": \"NAME\"}, the environment variable that holds it",
            ))
        }
    };
    if !valid_variable_name(&variable) {
        return Err(err(
            field,
            format!(
                "{variable:?} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*, at most 128 characters)"
            ),
        ));
    }
    let (lookup, check) = match env {
        Environment::Read(l) => (l, false),
        Environment::Check(l) => (l, true),
    };
    let resolved = match lookup(&variable) {
        Some(v) if !v.is_empty() => v,
        Some(_) if !check => {
            return Err(err(
                field,
                format!("environment variable `{variable}` is empty"),
            ))
        }
        None if !check => {
            return Err(err(
                field,
                format!(
                    "environment variable `{variable}` is not set (Envoy passes a variable to the filter only when vm_config.environment_variables.host_env_keys names it)"
                ),
            ))
        }
        _ => {
            found.push(EnvReference {
                field: field.to_string(),
                variable,
                resolved: false,
            });
            *value = Value::String(placeholder(kind)?);
            return Ok(());
        }
    };
    found.push(EnvReference {
        field: field.to_string(),
        variable,
        resolved: true,
    });
    *value = Value::String(resolved);
    Ok(())
}

fn valid_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 128
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A valid value of `kind` standing in for a variable `warden check` does not have.
fn placeholder(kind: SecretKind) -> Result<String, ConfigError> {
    use base64::Engine;
    match kind {
        SecretKind::Text => Ok("placeholder".into()),
        SecretKind::SessionKey => Ok(base64::engine::general_purpose::STANDARD.encode([0u8; 32])),
        SecretKind::PrivateKeyPem => {
            use jwt_simple::prelude::ES256KeyPair;
            ES256KeyPair::generate()
                .to_pem()
                .map_err(|e| err(".", format!("cannot make a placeholder key: {e}")))
        }
    }
}

#[cfg(test)]
mod tests;
