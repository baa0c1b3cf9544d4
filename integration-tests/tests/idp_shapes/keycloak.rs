//! Tokens laid out like Keycloak's.

use super::{call, Bad, Shape, Token};
use mcp_warden_integration_tests::MCP_RESOURCE;
use serde_json::{json, Value};

/// Keycloak: realm roles in `realm_access.roles`, client roles in
/// `resource_access.<client>.roles`, groups by full path (group membership mapper with "Full
/// group path" on), scopes as a space-separated `scope` string, the user id as `sub`.
pub fn keycloak() -> Shape {
    let user = |sub: &str,
                username: &str,
                client_roles: Option<Value>,
                groups: Value,
                scope: &str| {
        let mut resource_access = json!({"account": {"roles": ["manage-account", "view-profile"]}});
        if let Some(roles) = client_roles {
            resource_access["mcp-gateway"] = json!({"roles": roles});
        }
        json!({
            "jti": format!("onrtac:{sub}"),
            "aud": [MCP_RESOURCE, "account"],
            "sub": sub,
            "typ": "Bearer",
            "azp": "mcp-client",
            "sid": "8d3c1e0a-5b7f-4a2d-9e6c-1f0b3a5d7c9e",
            "acr": "1",
            "allowed-origins": ["https://mcp-client.example.com"],
            "realm_access": {"roles": ["default-roles-corp", "offline_access", "uma_authorization"]},
            "resource_access": resource_access,
            "scope": scope,
            "email_verified": true,
            "name": username,
            "preferred_username": username,
            "email": format!("{username}@corp.example.com"),
            "groups": groups,
        })
    };
    let alice = "3f0c2e9a-6b1d-4c57-9d2e-8a41b7f0c913";
    let bob = "b7d14f2e-8c3a-4e59-a1d6-2c9f0e8b7a53";
    Shape {
        name: "keycloak",
        typ: "JWT",
        tokens: vec![
            Token {
                name: "alice",
                claims: user(
                    alice,
                    "alice",
                    Some(json!(["file-admin"])),
                    json!(["/hr", "/engineering/platform"]),
                    "openid profile email mcp:tools tables:read",
                ),
                mapped_user: alice,
            },
            Token {
                name: "bob",
                claims: user(
                    bob,
                    "bob",
                    None,
                    json!(["/engineering/platform", "/hr-alumni"]),
                    "openid profile email mcp:tools",
                ),
                mapped_user: bob,
            },
            // A realm role of that name is a role too (roles from both places are united).
            Token {
                name: "realm-role",
                claims: {
                    let mut c = user(bob, "bob", None, json!([]), "mcp:tools");
                    c["realm_access"]["roles"] = json!(["default-roles-corp", "file-admin"]);
                    c
                },
                mapped_user: bob,
            },
        ],
        calls: vec![
            call("alice", "echo", true, true),
            call("alice", "delete_file", true, false), // client role: only mapped
            call("alice", "hr_lookup", true, true),
            call("alice", "query_table", true, true),
            call("alice", "send_mail", true, true),
            call("bob", "echo", true, true),
            call("bob", "delete_file", false, false),
            call("bob", "hr_lookup", false, false), // `/hr-alumni` is not `/hr`
            call("bob", "query_table", false, false),
            call("bob", "send_mail", false, false),
            call("realm-role", "delete_file", true, false),
        ],
        bad: vec![
            Bad {
                what: "no realm_access nor resource_access.mcp-gateway",
                token: "bob",
                edits: vec![("/realm_access", None)],
                fact: "roles",
                pointers: &["/realm_access/roles", "/resource_access/mcp-gateway/roles"],
                found: None,
            },
            Bad {
                what: "no groups claim (group mapper removed)",
                token: "alice",
                edits: vec![("/groups", None)],
                fact: "groups",
                pointers: &["/groups"],
                found: None,
            },
            Bad {
                what: "realm roles a number",
                token: "alice",
                edits: vec![("/realm_access/roles", Some(json!(5)))],
                fact: "roles",
                pointers: &["/realm_access/roles"],
                found: Some("number"),
            },
            Bad {
                what: "client roles an object",
                token: "alice",
                edits: vec![(
                    "/resource_access/mcp-gateway/roles",
                    Some(json!({"file-admin": true})),
                )],
                fact: "roles",
                pointers: &["/resource_access/mcp-gateway/roles"],
                found: Some("object"),
            },
            Bad {
                what: "scope a list of numbers",
                token: "alice",
                edits: vec![("/scope", Some(json!([1, 2])))],
                fact: "scopes",
                pointers: &["/scope"],
                found: Some("number"),
            },
            Bad {
                what: "sub missing",
                token: "alice",
                edits: vec![("/sub", None)],
                fact: "subject",
                pointers: &["/sub"],
                found: None,
            },
        ],
        extra_rules: vec![],
    }
}
