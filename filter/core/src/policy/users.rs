//! Policy `users` entries: a user is an (issuer, subject) pair, never a bare subject, since two
//! trusted issuers may both have an `alice`.
//!
//! An entry is written as
//! - `"<subject>"`: only when exactly one user issuer is configured (that issuer);
//! - `"<name>:<subject>"`: `<name>` is the `name` of a user issuer (`identity.user.issuers`);
//!   the first `:` splits, so the subject may contain `:`;
//! - `{"issuer": "<URL or name>", "subject": "<subject>"}` (a TOML inline table in bundles).
//!
//! A policy compiled without an identity section (a bundle checked on its own) cannot resolve
//! entries: they are checked for form only and match nobody (without identity there is no
//! caller to match anyway).

use crate::config::{err, ConfigError};
use crate::identity::mapping::Issuer;
use serde::Deserialize;

/// A `users` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawUser {
    /// `subject` or `name:subject`.
    Text(String),
    /// `{issuer, subject}`.
    Pair(RawUserPair),
}

/// The object form of a `users` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUserPair {
    /// The issuer's URL (`iss`) or `name`.
    pub issuer: String,
    /// The user's subject at that issuer.
    pub subject: String,
}

/// A user: the issuer of its token and its subject there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserId {
    /// The `iss` URL (empty when the policy was compiled without identity: matches nobody).
    pub issuer: String,
    /// The subject.
    pub subject: String,
}

impl UserId {
    /// Whether this is the user `subject` of `issuer`.
    pub fn is(&self, issuer: &str, subject: &str) -> bool {
        !self.issuer.is_empty() && self.issuer == issuer && self.subject == subject
    }
}

/// Resolves the entries of one rule's `users` (`at`: their field path) against the user issuers
/// (`None`: no identity section, form checked only).
pub fn resolve(
    raw: Vec<RawUser>,
    issuers: Option<&[Issuer]>,
    at: &str,
) -> Result<Vec<UserId>, ConfigError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, u)| resolve_one(u, issuers, &format!("{at}[{i}]")))
        .collect()
}

fn resolve_one(raw: RawUser, issuers: Option<&[Issuer]>, at: &str) -> Result<UserId, ConfigError> {
    let (issuer, subject) = match raw {
        RawUser::Pair(p) => {
            if p.issuer.is_empty() {
                return Err(err(&format!("{at}.issuer"), "must not be empty"));
            }
            if p.subject.is_empty() {
                return Err(err(&format!("{at}.subject"), "must not be empty"));
            }
            let issuer = match issuers {
                None => String::new(),
                Some(list) => list
                    .iter()
                    .find(|i| i.url == p.issuer || i.name.as_deref() == Some(p.issuer.as_str()))
                    .map(|i| i.url.clone())
                    .ok_or_else(|| {
                        err(
                            &format!("{at}.issuer"),
                            format!(
                                "`{}` is not the URL or name of a user issuer (identity.user.issuers)",
                                p.issuer
                            ),
                        )
                    })?,
            };
            (issuer, p.subject)
        }
        RawUser::Text(text) => match text.split_once(':') {
            Some((name, subject)) => {
                if name.is_empty() || subject.is_empty() {
                    return Err(err(
                        at,
                        format!("`{text}` is not `<issuer name>:<subject>`"),
                    ));
                }
                let issuer = match issuers {
                    None => String::new(),
                    Some(list) => list
                        .iter()
                        .find(|i| i.name.as_deref() == Some(name))
                        .map(|i| i.url.clone())
                        .ok_or_else(|| {
                            err(
                                at,
                                format!(
                                    "`{name}` (in `{text}`) is not the name of a user issuer (identity.user.issuers[].name); a subject containing `:` is written {{issuer, subject}}"
                                ),
                            )
                        })?,
                };
                (issuer, subject.to_string())
            }
            None => {
                if text.is_empty() {
                    return Err(err(at, "must not be empty"));
                }
                let issuer = match issuers {
                    None => String::new(),
                    Some([one]) => one.url.clone(),
                    Some(list) => {
                        return Err(err(
                            at,
                            format!(
                                "`{text}` names no issuer and {} user issuers are configured: qualify it as `<issuer name>:{text}` or {{issuer, subject}}",
                                list.len()
                            ),
                        ))
                    }
                };
                (issuer, text)
            }
        },
    };
    Ok(UserId { issuer, subject })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::mapping::{compile_issuers, RawIssuer, TokenKind};
    use serde_json::json;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn issuers(v: serde_json::Value) -> Vec<Issuer> {
        let raw: Vec<RawIssuer> = serde_json::from_value(v).unwrap();
        compile_issuers("identity.user.issuers", TokenKind::User, raw).unwrap()
    }

    fn users(v: serde_json::Value, iss: Option<&[Issuer]>) -> Result<Vec<UserId>, ConfigError> {
        resolve(
            serde_json::from_value(v).unwrap(),
            iss,
            "policy.rules[0].users",
        )
    }

    fn id(issuer: &str, subject: &str) -> UserId {
        UserId {
            issuer: issuer.into(),
            subject: subject.into(),
        }
    }

    #[test]
    fn one_issuer_takes_bare_subjects() {
        let one = issuers(json!([{"issuer": "https://corp", "name": "corp"}]));
        assert_eq!(
            users(
                json!(["alice", "corp:bob", {"issuer": "https://corp", "subject": "c:d"}]),
                Some(&one)
            ),
            Ok(vec![
                id("https://corp", "alice"),
                id("https://corp", "bob"),
                id("https://corp", "c:d")
            ])
        );
        let plain = issuers(json!(["https://corp"]));
        assert_eq!(
            users(json!(["alice"]), Some(&plain)),
            Ok(vec![id("https://corp", "alice")])
        );
    }

    #[test]
    fn several_issuers_need_qualified_entries() {
        let two = issuers(json!([
            {"issuer": "https://corp", "name": "corp"},
            {"issuer": "https://partner", "name": "partner"}
        ]));
        assert_eq!(
            users(
                json!(["corp:alice", "partner:alice", "corp:x:y", {"issuer": "partner", "subject": "z"}]),
                Some(&two)
            ),
            Ok(vec![
                id("https://corp", "alice"),
                id("https://partner", "alice"),
                id("https://corp", "x:y"),
                id("https://partner", "z"),
            ])
        );
        let e = users(json!(["corp:alice", "alice"]), Some(&two)).unwrap_err();
        assert_eq!(e.field, "policy.rules[0].users[1]");
        assert!(
            e.message.contains("`alice`") && e.message.contains("qualify"),
            "{}",
            e.message
        );
        let e = users(json!(["acme:alice"]), Some(&two)).unwrap_err();
        assert_eq!(e.field, "policy.rules[0].users[0]");
        assert!(e.message.contains("`acme`"), "{}", e.message);
        // A URL is not a name: `https://corp:alice` would name issuer `https`.
        assert!(users(json!(["https://corp:alice"]), Some(&two)).is_err());
        let e = users(
            json!([{"issuer": "https://acme", "subject": "a"}]),
            Some(&two),
        )
        .unwrap_err();
        assert_eq!(e.field, "policy.rules[0].users[0].issuer");
        for bad in [json!([":alice"]), json!(["corp:"]), json!([""])] {
            assert!(users(bad.clone(), Some(&two)).is_err(), "{bad}");
        }
        assert_eq!(
            users(json!([{"issuer": "corp", "subject": ""}]), Some(&two))
                .unwrap_err()
                .field,
            "policy.rules[0].users[0].subject"
        );
    }

    #[test]
    fn a_rule_for_one_issuers_alice_is_not_for_anothers() {
        use crate::identity::claims::{TokenClaims, UserClaims};
        use crate::identity::Identity;
        use crate::jsonrpc::Target;
        use crate::policy::{Facts, Purpose};
        let cfg = json!({
            "identity": {
                "protected_resource": {"resource": "http://gw/mcp", "authorization_servers": ["https://corp"]},
                "user": {"issuers": [{"issuer": "https://corp", "name": "corp"},
                                     {"issuer": "https://partner", "name": "partner"}]}
            },
            "policy": {"rules": [{"id": "corp-alice", "effect": "allow", "methods": ["ping"],
                                  "users": ["corp:alice"]}]}
        });
        let policy = crate::config::Config::from_json(cfg.to_string().as_bytes())
            .unwrap()
            .policy
            .unwrap();
        let decide = |iss: &str, sub: &str| {
            let who = Identity {
                user: UserClaims {
                    token: TokenClaims {
                        iss: iss.into(),
                        sub: sub.into(),
                        ..TokenClaims::default()
                    },
                    ..UserClaims::default()
                },
                agent: None,
            };
            let d = policy.decide(&Facts {
                identity: Some(&who),
                server: "",
                method: "ping",
                target: &Target::None,
                arguments: None,
                live_hash: None,
                now: 0,
                purpose: Purpose::Call,
            });
            (d.allowed(), d.rule)
        };
        assert_eq!(decide("https://corp", "alice"), (true, "corp-alice".into()));
        assert_eq!(
            decide("https://partner", "alice"),
            (false, "default.deny".into())
        );
        assert_eq!(
            decide("https://corp", "bob"),
            (false, "default.deny".into())
        );
    }

    #[test]
    fn without_identity_entries_are_checked_and_match_nobody() {
        let u = users(json!(["alice", "corp:bob"]), None).unwrap();
        assert!(u
            .iter()
            .all(|u| !u.is(u.issuer.as_str(), u.subject.as_str())));
        assert!(users(json!([":x"]), None).is_err());
        // An issuer's user matches only at that issuer.
        assert!(id("https://corp", "alice").is("https://corp", "alice"));
        assert!(!id("https://corp", "alice").is("https://partner", "alice"));
    }
}
