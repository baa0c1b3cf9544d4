//! Tokens laid out like Okta's.

use super::{call, Bad, Shape, Token};
use mcp_warden_integration_tests::{now_secs, MCP_RESOURCE};
use serde_json::{json, Value};

/// Okta (custom authorization server): `scp` a list, `groups` by group name (a groups claim
/// with a filter), `uid` the user's id, `cid` the client, `sub` the login (usually an e-mail,
/// and renamable).
pub fn okta() -> Shape {
    let user = |uid: &str, login: &str, scp: Value, groups: Value| {
        json!({
            "ver": 1,
            "jti": format!("AT.{}", uid.chars().rev().collect::<String>()),
            "aud": MCP_RESOURCE,
            "cid": "0oa9z8y7x6W5v4U3t2s1",
            "uid": uid,
            "scp": scp,
            "auth_time": now_secs() - 60,
            "sub": login,
            "groups": groups,
        })
    };
    let alice = "00u1a2b3c4D5e6F7g8h9";
    let bob = "00u9h8g7F6e5D4c3b2a1";
    Shape {
        name: "okta",
        typ: "JWT",
        tokens: vec![
            Token {
                name: "alice",
                claims: user(
                    alice,
                    "alice.smith@corp.example.com",
                    json!(["openid", "profile", "mcp.tools", "tables.read"]),
                    json!(["Everyone", "MCP File Admins", "HR"]),
                ),
                mapped_user: alice,
            },
            Token {
                name: "bob",
                claims: user(
                    bob,
                    "bob.jones@corp.example.com",
                    json!(["openid", "mcp.tools"]),
                    json!(["Everyone", "MCP File Admins Pending"]),
                ),
                mapped_user: bob,
            },
            // A `roles` claim (say, an expression over a profile attribute users can edit):
            // this issuer may not assert roles (`"roles": null`).
            Token {
                name: "bob-roles-claim",
                claims: {
                    let mut c = user(
                        bob,
                        "bob.jones@corp.example.com",
                        json!(["mcp.tools"]),
                        json!(["Everyone"]),
                    );
                    c["roles"] = json!(["file-admin"]);
                    c
                },
                mapped_user: bob,
            },
            // `groups` as one string is one group (groups are never split at spaces, unlike a
            // scope string): a group named "Everyone HR" is not HR.
            Token {
                name: "bob-one-group-string",
                claims: user(
                    bob,
                    "bob.jones@corp.example.com",
                    json!(["mcp.tools"]),
                    json!("Everyone HR"),
                ),
                mapped_user: bob,
            },
            Token {
                name: "alice-one-group-string",
                claims: user(
                    alice,
                    "alice.smith@corp.example.com",
                    json!(["mcp.tools"]),
                    json!("MCP File Admins"),
                ),
                mapped_user: alice,
            },
        ],
        calls: vec![
            call("alice", "echo", true, true),
            call("alice", "delete_file", true, true), // a group name with spaces is one group
            call("alice", "hr_lookup", true, true),
            call("alice", "query_table", true, true), // `scp` list: both read it
            call("alice", "send_mail", true, false),  // users by `uid`: only mapped
            call("bob", "echo", true, true),
            call("bob", "delete_file", false, false),
            call("bob", "hr_lookup", false, false),
            call("bob", "query_table", false, false),
            call("bob", "send_mail", false, false),
            call("bob-roles-claim", "delete_file", false, true),
            call("bob-one-group-string", "hr_lookup", false, false),
            call("alice-one-group-string", "delete_file", true, true),
        ],
        bad: vec![
            Bad {
                what: "no uid",
                token: "alice",
                edits: vec![("/uid", None)],
                fact: "subject",
                pointers: &["/uid"],
                found: None,
            },
            Bad {
                what: "scp a list of numbers",
                token: "alice",
                edits: vec![("/scp", Some(json!([1, 2])))],
                fact: "scopes",
                pointers: &["/scp"],
                found: Some("number"),
            },
            Bad {
                what: "no groups claim (the groups claim filter matched nothing)",
                token: "bob",
                edits: vec![("/groups", None)],
                fact: "groups",
                pointers: &["/groups"],
                found: None,
            },
            Bad {
                what: "groups an object",
                token: "alice",
                edits: vec![("/groups", Some(json!({"HR": 1})))],
                fact: "groups",
                pointers: &["/groups"],
                found: Some("object"),
            },
        ],
        // Under the default mapping a `roles` claim counts; under Okta's it never does.
        extra_rules: vec![json!({
            "id": "files.delete.role", "effect": "allow", "tools": ["delete_file"],
            "roles": ["file-admin"],
        })],
    }
}
