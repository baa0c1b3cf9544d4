//! Tokens laid out like Microsoft Entra ID's.

use super::{call, denied_by, Bad, Shape, Token};
use serde_json::{json, Value};

/// Entra ID v2.0 access token: `scp` a space-separated string, app roles in `roles`, groups as
/// object ids, `oid` the user's stable id (`sub` is pairwise: per application), `tid`, `ver`.
pub fn entra() -> Shape {
    const TID: &str = "9b2d4c1e-3f5a-4e6b-8c7d-1a2b3c4d5e6f";
    const API: &str = "6e5f4d3c-2b1a-4987-8a6b-5c4d3e2f1a0b";
    const HR: &str = "c4e6a8f0-2b4d-4f6a-8c0e-2a4c6e8f0a1b";
    const CONTRACTORS: &str = "5d7f9b1c-3e5a-4c7e-9a1c-3e5a7c9e1b2d";
    const ALL_STAFF: &str = "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b";
    let user =
        |oid: &str, sub: &str, name: &str, scp: &str, roles: Option<Value>, groups: Value| {
            let mut c = json!({
                "aud": API,
                "aio": "AWQAm/8XAAAAx9z0cG5vdCBhIHJlYWwgdG9rZW4=",
                "azp": "1f2e3d4c-5b6a-4978-8c9d-0e1f2a3b4c5d",
                "azpacr": "0",
                "groups": groups,
                "name": name,
                "oid": oid,
                "preferred_username": format!("{}@corp.example.com", name.to_lowercase()),
                "rh": "1.AXkAHkwtm1o_a06MfRorPE1ebz1NXm4aK4dJimtcTT4vGgt5AAA.",
                "scp": scp,
                "sid": "0075a2c4-e6f8-4a0c-8e1d-3f5b7d9f1a2c",
                "sub": sub,
                "tid": TID,
                "uti": "Zk9vYmFyYmF6cXV4cXV1eA",
                "ver": "2.0",
            });
            if let Some(r) = roles {
                c["roles"] = r;
            }
            c
        };
    let alice_oid = "0a1b2c3d-4e5f-4a6b-9c8d-7e6f5a4b3c2d";
    let bob_oid = "7c6b5a4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d";
    let carol_oid = "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e";
    Shape {
        name: "entra",
        typ: "JWT",
        tokens: vec![
            Token {
                name: "alice",
                claims: user(
                    alice_oid,
                    "pZ3l0dGVkLWFsaWNlLXBhaXJ3aXNlLXN1Yi0x",
                    "Alice",
                    "Mcp.Call Tables.Read",
                    Some(json!(["Files.Admin"])),
                    json!([ALL_STAFF, HR]),
                ),
                mapped_user: alice_oid,
            },
            Token {
                name: "bob",
                claims: user(
                    bob_oid,
                    "dGhpcy1pcy1ib2ItcGFpcndpc2Utc3ViLTI",
                    "Bob",
                    "Mcp.Call",
                    None,
                    json!([ALL_STAFF]),
                ),
                mapped_user: bob_oid,
            },
            // In HR and in Contractors: the deny rule on the Contractors group wins.
            Token {
                name: "carol-contractor",
                claims: user(
                    carol_oid,
                    "Y2Fyb2wtcGFpcndpc2Utc3ViLTM",
                    "Carol",
                    "Mcp.Call",
                    None,
                    json!([ALL_STAFF, HR, CONTRACTORS]),
                ),
                mapped_user: carol_oid,
            },
        ],
        calls: vec![
            call("alice", "echo", true, true),
            call("alice", "delete_file", true, true),
            call("alice", "hr_lookup", true, true),
            call("alice", "query_table", true, true), // `scp` string: both read it
            call("alice", "send_mail", true, false),  // users by `oid`: only mapped
            call("bob", "echo", true, true),
            call("bob", "delete_file", false, false),
            call("bob", "hr_lookup", false, false),
            call("bob", "query_table", false, false),
            call("bob", "send_mail", false, false),
            denied_by("carol-contractor", "hr_lookup", "hr.never-contractors"),
        ],
        bad: vec![
            // More than 200 groups: Entra leaves `groups` out and points at Graph instead. A deny
            // rule by group must not be skipped because the groups are elsewhere.
            Bad {
                what: "groups overage (no groups, _claim_names instead)",
                token: "carol-contractor",
                edits: vec![
                    ("/groups", None),
                    ("/_claim_names", Some(json!({"groups": "src1"}))),
                    (
                        "/_claim_sources",
                        Some(
                            json!({"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e/getMemberObjects"}}),
                        ),
                    ),
                ],
                fact: "groups",
                pointers: &["/groups"],
                found: None,
            },
            Bad {
                what: "no oid (an app-only token or another tenant's shape)",
                token: "alice",
                edits: vec![("/oid", None)],
                fact: "subject",
                pointers: &["/oid"],
                found: None,
            },
            Bad {
                what: "oid a number",
                token: "alice",
                edits: vec![("/oid", Some(json!(12345)))],
                fact: "subject",
                pointers: &["/oid"],
                found: Some("number"),
            },
            Bad {
                what: "scp a number",
                token: "alice",
                edits: vec![("/scp", Some(json!(42)))],
                fact: "scopes",
                pointers: &["/scp"],
                found: Some("number"),
            },
            Bad {
                what: "groups a list of numbers",
                token: "alice",
                edits: vec![("/groups", Some(json!([1, 2, 3])))],
                fact: "groups",
                pointers: &["/groups"],
                found: Some("number"),
            },
            Bad {
                what: "roles an object (optional, but present: still typed)",
                token: "alice",
                edits: vec![("/roles", Some(json!({"Files.Admin": true})))],
                fact: "roles",
                pointers: &["/roles"],
                found: Some("object"),
            },
        ],
        extra_rules: vec![],
    }
}
