//! The four IdPs' token layouts (claims from each IdP's documentation, values invented) and
//! what each example configuration must decide for them.

#[path = "auth0.rs"]
mod auth0;
#[path = "entra.rs"]
mod entra;
#[path = "keycloak.rs"]
mod keycloak;
#[path = "okta.rs"]
mod okta;

pub use auth0::auth0;
pub use entra::entra;
pub use keycloak::keycloak;
pub use okta::okta;

use serde_json::{json, Value};

/// A token of one IdP's shape.
pub struct Token {
    /// Short name used in cases and reports.
    pub name: &'static str,
    /// The claims (`iss`, `iat`, `nbf`, `exp` are added).
    pub claims: Value,
    /// `x-mcp-user` under the example's mapping.
    pub mapped_user: &'static str,
}

/// A `tools/call` and whether each mapping allows it.
pub struct Call {
    pub token: &'static str,
    pub tool: &'static str,
    pub mapped: bool,
    pub default: bool,
    /// The rule a refusal names.
    pub deny_rule: &'static str,
}

/// A token refused for a mapped claim: `token` with `edits` applied (JSON Pointer → new value,
/// `None` removes it).
pub struct Bad {
    pub what: &'static str,
    pub token: &'static str,
    pub edits: Vec<(&'static str, Option<Value>)>,
    /// The fact and the pointers the detail must name.
    pub fact: &'static str,
    pub pointers: &'static [&'static str],
    /// For a type error: the JSON type the detail must name.
    pub found: Option<&'static str>,
}

pub struct Shape {
    pub name: &'static str,
    /// JWT header `typ` the IdP uses for access tokens.
    pub typ: &'static str,
    pub tokens: Vec<Token>,
    pub calls: Vec<Call>,
    pub bad: Vec<Bad>,
    /// Rules appended to the example's policy (for cases about what a mapping ignores).
    pub extra_rules: Vec<Value>,
}

/// `call(token, tool, allowed under the mapping, allowed under the default mapping)`.
pub fn call(token: &'static str, tool: &'static str, mapped: bool, default: bool) -> Call {
    Call {
        token,
        tool,
        mapped,
        default,
        deny_rule: "default.deny",
    }
}

/// A call both mappings refuse by the deny rule `rule`.
pub fn denied_by(token: &'static str, tool: &'static str, rule: &'static str) -> Call {
    Call {
        deny_rule: rule,
        ..call(token, tool, false, false)
    }
}

pub fn args(tool: &str) -> Value {
    match tool {
        "echo" => json!({"text": "hi"}),
        "delete_file" => json!({"path": "/srv/shared/old.txt"}),
        "hr_lookup" => json!({"employee": "bob"}),
        "query_table" => json!({"table": "customers"}),
        "send_mail" => json!({"to": "bob@example.com", "subject": "hi", "body": "hello"}),
        _ => json!({}),
    }
}
