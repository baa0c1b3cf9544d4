//! Tokens laid out like Auth0's.

use super::{call, Bad, Shape, Token};
use mcp_warden_integration_tests::MCP_RESOURCE;
use serde_json::{json, Value};

/// Auth0: custom claims namespaced by URL (`https://mcp.example.com/groups`), RBAC permissions
/// in `permissions`, scopes as a `scope` string, `sub` = `<connection>|<id>`.
pub fn auth0() -> Shape {
    let user = |sub: &str, scope: &str, permissions: Value, groups: Value, roles: Value| {
        json!({
            "https://mcp.example.com/groups": groups,
            "https://mcp.example.com/roles": roles,
            "sub": sub,
            "aud": [MCP_RESOURCE, "https://corp.eu.auth0.com/userinfo"],
            "azp": "Xq3b9Zt2LmP8vRk1Yw5nC7dF0gH4jS6a",
            "scope": scope,
            "permissions": permissions,
        })
    };
    let alice = "auth0|6543210fedcba9876543210f";
    let bob = "google-oauth2|104375629018473920174";
    Shape {
        name: "auth0",
        typ: "JWT",
        tokens: vec![
            Token {
                name: "alice",
                claims: user(
                    alice,
                    "openid profile email mcp:tools read:tables",
                    json!(["delete:files", "mcp:tools", "read:tables"]),
                    json!(["engineering", "hr"]),
                    json!(["File Admin"]),
                ),
                mapped_user: alice,
            },
            Token {
                name: "bob",
                claims: user(
                    bob,
                    "openid mcp:tools",
                    json!(["mcp:tools", "read:tables"]),
                    json!(["finance"]),
                    json!([]),
                ),
                mapped_user: bob,
            },
            // A private (non-namespaced) `groups` claim, say copied from user_metadata by a
            // careless Action: not where this issuer's groups come from.
            Token {
                name: "bob-private-groups",
                claims: {
                    let mut c = user(
                        bob,
                        "openid mcp:tools",
                        json!(["mcp:tools"]),
                        json!(["finance"]),
                        json!([]),
                    );
                    c["groups"] = json!(["hr"]);
                    c
                },
                mapped_user: bob,
            },
        ],
        calls: vec![
            call("alice", "echo", true, true),
            call("alice", "delete_file", true, false), // `permissions`: only mapped
            call("alice", "hr_lookup", true, false),   // namespaced groups: only mapped
            call("alice", "query_table", true, true),
            call("alice", "send_mail", true, true),
            call("bob", "echo", true, true),
            call("bob", "delete_file", false, false),
            call("bob", "hr_lookup", false, false),
            // `read:tables` is one of bob's permissions, but this client was not granted the
            // scope: permissions are roles here, never scopes.
            call("bob", "query_table", false, false),
            call("bob", "send_mail", false, false),
            call("bob-private-groups", "hr_lookup", false, true),
        ],
        bad: vec![
            Bad {
                what: "no namespaced groups (the Action did not run)",
                token: "alice",
                edits: vec![("/https:~1~1mcp.example.com~1groups", None)],
                fact: "groups",
                pointers: &["/https:~1~1mcp.example.com~1groups"],
                found: None,
            },
            Bad {
                what: "namespaced groups an object",
                token: "alice",
                edits: vec![(
                    "/https:~1~1mcp.example.com~1groups",
                    Some(json!({"hr": true})),
                )],
                fact: "groups",
                pointers: &["/https:~1~1mcp.example.com~1groups"],
                found: Some("object"),
            },
            Bad {
                what: "permissions a boolean",
                token: "alice",
                edits: vec![("/permissions", Some(json!(true)))],
                fact: "roles",
                pointers: &["/permissions"],
                found: Some("bool"),
            },
            Bad {
                what: "no roles anywhere (neither namespaced roles nor permissions)",
                token: "bob",
                edits: vec![
                    ("/https:~1~1mcp.example.com~1roles", None),
                    ("/permissions", None),
                ],
                fact: "roles",
                pointers: &["/https:~1~1mcp.example.com~1roles", "/permissions"],
                found: None,
            },
        ],
        extra_rules: vec![],
    }
}
