//! Request side: the strict JSON reader, the JSON-RPC payload reader, policy compile and decide.

use super::{show, Parts};
use crate::identity::claims::{AgentClaims, DelegationStep, TokenClaims, UserClaims};
use crate::identity::Identity;
use crate::json::{parse_body, parse_strict, JsonError, Parsed};
use crate::jsonrpc::{parse_payload, Message, ParseRules, Payload, Target, CLIENT_METHODS};
use crate::policy::config::RawPolicy;
use crate::policy::matcher::Glob;
use crate::policy::{Effect, Facts, Purpose};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// A JSON value as any parser sees it: every member of every object, duplicates included.
enum Tree {
    Leaf,
    Array(Vec<Tree>),
    Object(Vec<(String, Tree)>),
}

impl Tree {
    /// Nesting of arrays and objects (a scalar is 0).
    fn depth(&self) -> usize {
        match self {
            Tree::Leaf => 0,
            Tree::Array(items) => 1 + items.iter().map(Tree::depth).max().unwrap_or(0),
            Tree::Object(members) => 1 + members.iter().map(|(_, v)| v.depth()).max().unwrap_or(0),
        }
    }

    /// How many members repeat an earlier key of their object.
    fn duplicates(&self) -> usize {
        match self {
            Tree::Leaf => 0,
            Tree::Array(items) => items.iter().map(Tree::duplicates).sum(),
            Tree::Object(members) => {
                let repeated = members
                    .iter()
                    .enumerate()
                    .filter(|(i, (k, _))| members[..*i].iter().any(|(j, _)| j == k))
                    .count();
                repeated + members.iter().map(|(_, v)| v.duplicates()).sum::<usize>()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tree, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }
    fn visit_str<E>(self, _: &str) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }
    fn visit_unit<E>(self) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(t) = seq.next_element()? {
            items.push(t);
        }
        Ok(Tree::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut members = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Tree>()? {
            members.push((k, v));
        }
        Ok(Tree::Object(members))
    }
}

/// `parse_body`'s value with the arguments kept as text put back.
fn rebuilt(p: &Parsed) -> Value {
    let mut value = p.value.clone();
    for (i, raw) in &p.arguments {
        let params = match &mut value {
            Value::Array(items) => items.get_mut(*i),
            v => Some(v),
        }
        .and_then(|m| m.get_mut("params"))
        .and_then(Value::as_object_mut)
        .expect("arguments recorded for a message without params");
        params.insert("arguments".into(), raw.to_value().expect("checked text"));
    }
    value
}

/// The strict reader, the body reader and the payload reader on one body.
pub fn json(data: &[u8]) {
    let reference = serde_json::from_slice::<Tree>(data);
    for limit in [64, 4] {
        let strict = parse_strict(data, limit);
        match (&strict, &reference) {
            (Ok(s), Ok(tree)) => {
                assert!(
                    tree.depth() <= limit,
                    "depth over {limit} accepted: {}",
                    show(data)
                );
                let dups = tree.duplicates();
                assert_eq!(
                    s.duplicate_keys.len(),
                    dups.min(8),
                    "duplicates {:?} recorded, {dups} present: {}",
                    s.duplicate_keys,
                    show(data)
                );
                if dups == 0 {
                    let plain: Value = serde_json::from_slice(data).expect("reference read it");
                    assert_eq!(s.value, plain, "{}", show(data));
                }
            }
            (Ok(_), Err(e)) => panic!("accepted what serde_json refuses ({e}): {}", show(data)),
            (Err(JsonError::TooDeep { .. }), Ok(tree)) => {
                assert!(tree.depth() > limit, "refused as too deep: {}", show(data))
            }
            (Err(JsonError::Syntax(m)), Ok(_)) => {
                panic!("refused valid JSON ({m}): {}", show(data))
            }
            (Err(_), Err(_)) => {}
        }
        let lazy = parse_body(data, limit, false);
        match (&strict, &lazy) {
            (Ok(s), Ok(l)) => {
                assert_eq!(s.duplicate_keys, l.duplicate_keys, "{}", show(data));
                if s.duplicate_keys.is_empty() {
                    assert_eq!(s.value, rebuilt(l), "{}", show(data));
                }
            }
            // Too deep and not JSON: either reason may be found first.
            (Err(_), Err(_)) => {}
            (a, b) => panic!("parse_strict {a:?}, parse_body {b:?}: {}", show(data)),
        }
    }
    payload(data);
}

/// `parse_payload`: what it accepts is unambiguous, and what it decides on is what any parser
/// reads.
fn payload(data: &[u8]) {
    let rules = ParseRules {
        max_depth: 64,
        max_batch: 16,
        extra_methods: &[],
        strict_keys: true,
    };
    for batch_allowed in [true, false] {
        let Ok(p) = parse_payload(data, &rules, batch_allowed) else {
            continue;
        };
        let strict = parse_strict(data, 64).expect("payload accepted, strict reader refuses");
        assert!(strict.duplicate_keys.is_empty(), "{}", show(data));
        let values: Vec<&Value> = match (&p, &strict.value) {
            (Payload::Single(_), v @ Value::Object(_)) => vec![v],
            (Payload::Batch(ms), Value::Array(items)) => {
                assert!(
                    batch_allowed,
                    "batch accepted without batches: {}",
                    show(data)
                );
                assert_eq!(ms.len(), items.len());
                items.iter().collect()
            }
            (p, v) => panic!("payload {p:?} from {v}"),
        };
        for (m, v) in p.messages().iter().zip(values) {
            let obj = v.as_object().expect("a message is an object");
            assert!(
                obj.keys()
                    .all(|k| ["jsonrpc", "id", "method", "params", "result", "error"]
                        .contains(&k.as_str())),
                "unknown member accepted: {v}"
            );
            assert_eq!(obj.get("jsonrpc"), Some(&Value::from("2.0")));
            if let Some(method) = m.method() {
                assert_eq!(obj.get("method"), Some(&Value::from(method)));
                assert!(CLIENT_METHODS.contains(&method), "{method}");
            }
            let param = |k: &str| v.pointer(&format!("/params/{k}")).and_then(Value::as_str);
            match (m, m.target()) {
                (Message::Request { id, .. }, target) => {
                    assert_eq!(obj.get("id"), Some(&id.to_value()));
                    match target {
                        Target::Tool(n) | Target::Prompt(n) => {
                            assert_eq!(param("name"), Some(&**n))
                        }
                        Target::Resource(u) => assert_eq!(param("uri"), Some(&**u)),
                        Target::Completion(inner) => {
                            let r = |k: &str| {
                                v.pointer(&format!("/params/ref/{k}"))
                                    .and_then(Value::as_str)
                            };
                            match &**inner {
                                Target::Prompt(n) => assert_eq!(r("name"), Some(&**n)),
                                Target::Resource(u) => assert_eq!(r("uri"), Some(&**u)),
                                other => panic!("a completion of {other:?}"),
                            }
                        }
                        Target::None => {}
                    }
                }
                (Message::Notification { .. }, _) => assert!(!obj.contains_key("id")),
                (Message::Response { .. }, _) => assert!(!obj.contains_key("method")),
            }
        }
    }
}

/// Glob matching by the definition: `*` any run of bytes, `?` one byte.
fn glob_reference(p: &[u8], t: &[u8]) -> bool {
    // can[j]: the pattern read so far matches t[..j].
    let mut can = vec![false; t.len() + 1];
    can[0] = true;
    for &c in p {
        let mut next = vec![false; t.len() + 1];
        for j in 0..=t.len() {
            next[j] = match c {
                b'*' => can[j] || (j > 0 && next[j - 1]),
                b'?' => j > 0 && can[j - 1],
                c => j > 0 && can[j - 1] && t[j - 1] == c,
            };
        }
        can = next;
    }
    can[t.len()]
}

fn list(text: &str, sep: char) -> Vec<String> {
    text.split(sep)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A policy compiled from input 0 (JSON), a decision on facts from the other inputs:
/// 1 server, 2 method, 3 target (first byte: kind; the rest: name), 4 user, 5 groups (`,`),
/// 6 roles (`,`), 7 scopes (` `), 8 agent (`type,provider,model,trust,capabilities…`;
/// empty: none), 9 delegation chain length (first byte), 10 arguments (JSON), 11 live hash,
/// 12 now (8 bytes, little-endian).
pub fn policy(data: &[u8]) {
    let parts = Parts::of(data);
    let (server, method) = (parts.text(1), parts.text(2));
    let name = String::from_utf8_lossy(parts.bytes(3).get(1..).unwrap_or_default()).into_owned();
    if let Ok(g) = Glob::new(&server) {
        assert_eq!(
            g.matches(&name),
            glob_reference(server.as_bytes(), name.as_bytes()),
            "glob {server:?} on {name:?}"
        );
    }
    let Ok(raw) = serde_json::from_slice::<RawPolicy>(parts.bytes(0)) else {
        return;
    };
    let Ok(policy) = raw.compile("policy") else {
        return;
    };
    let target = match parts.byte(3) % 4 {
        0 => Target::None,
        1 => Target::Tool(name),
        2 => Target::Prompt(name),
        _ => Target::Resource(name),
    };
    let identity = (parts.len() > 4).then(|| {
        let user = UserClaims {
            token: TokenClaims {
                sub: parts.text(4),
                scopes: list(&parts.text(7), ' '),
                ..TokenClaims::default()
            },
            groups: list(&parts.text(5), ','),
            roles: list(&parts.text(6), ','),
            ..UserClaims::default()
        };
        let agent_text = parts.text(8);
        let agent = (!agent_text.is_empty()).then(|| {
            let fields: Vec<String> = agent_text.split(',').map(str::to_string).collect();
            let field = |i: usize| fields.get(i).filter(|s| !s.is_empty()).cloned();
            AgentClaims {
                agent_type: field(0),
                agent_provider: field(1),
                agent_model: field(2),
                trust_level: field(3),
                capabilities: fields.iter().skip(4).cloned().collect(),
                delegation_chain: vec![DelegationStep::default(); usize::from(parts.byte(9) % 8)],
                ..AgentClaims::default()
            }
        });
        Identity { user, agent }
    });
    let arguments: Option<Value> = serde_json::from_slice(parts.bytes(10)).ok();
    let live_hash = parts.text(11);
    let mut now = [0u8; 8];
    for (i, b) in parts.bytes(12).iter().take(8).enumerate() {
        now[i] = *b;
    }
    let facts = |purpose| Facts {
        identity: identity.as_ref(),
        server: &server,
        method: &method,
        target: &target,
        arguments: arguments.as_ref(),
        live_hash: (!live_hash.is_empty()).then_some(live_hash.as_str()),
        now: u64::from_le_bytes(now) % 8_000_000_000,
        purpose,
    };
    let call = facts(Purpose::Call);
    let decision = policy.decide(&call);
    assert_eq!(
        (decision.effect, decision.rule.clone()),
        policy.decide_by_scan(&call),
        "indexed decision differs from a scan of the rules: {}",
        show(data)
    );
    assert_eq!(decision.allowed(), policy.allows(&call));
    let listing = facts(Purpose::Listing);
    assert_eq!(
        policy.decide(&listing).effect,
        policy.decide_by_scan(&listing).0
    );
    if decision.effect == Effect::Allow {
        assert!(
            policy.allows(&listing),
            "allowed to call but not listed: {}",
            show(data)
        );
    }
}
