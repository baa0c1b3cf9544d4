//! Identity and sessions: jwt_authn's claim encoding, sealed session ids and event ids.

use super::{show, Parts};
use crate::config::Config;
use crate::identity::claims::{read_agent, read_user, JsonClaims};
use crate::identity::config::{AgentRules, UserRules};
use crate::identity::metadata::{
    as_bool, as_f64, as_list, as_map, as_str, as_str_list, encode, pairs, ClaimSource, HostError,
};
use crate::identity::payload::WithHeaders;
use crate::identity::IdentityConfig;
use crate::jsonrpc::{parse_payload, ParseRules};
use crate::response::answers::Outstanding;
use crate::response::resume::{open_event_id, seal_event_id, EventBinding, ResumeError};
use crate::sealing;
use crate::sessions::{
    RawKey, SealedOwner, SessionBinding, SessionError, SessionKeys, SessionOwner,
};
use serde_json::{json, Value};
use std::sync::OnceLock;

/// The claims a [`Parts`] source serves, input `i` for `CLAIMS[i]`.
const CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "scope",
    "scp",
    "groups",
    "roles",
    "email",
    "agent_type",
    "agent_model",
    "agent_capabilities",
    "agent_trust_level",
    "delegator_sub",
    "delegation_chain",
    "agent_attestation",
    "message",
];

impl ClaimSource for Parts<'_> {
    fn get(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        let Some(i) = path.get(1).and_then(|c| CLAIMS.iter().position(|k| k == c)) else {
            return Ok(None);
        };
        Ok((i < self.len()).then(|| self.bytes(i).to_vec()))
    }
}

/// Envoy's property encoding of claims, and the claims read from it.
pub fn claims(data: &[u8]) {
    if let Ok(p) = pairs(data) {
        let owned: Vec<(Vec<u8>, Vec<u8>)> =
            p.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        assert_eq!(encode::pairs(&owned), data, "pairs read non-canonically");
    }
    let _ = (
        as_list(data),
        as_map(data),
        as_str_list(data),
        as_bool(data),
    );
    if let Ok(v) = as_f64(data) {
        assert_eq!(v.to_le_bytes().as_slice(), data);
    }
    if let Ok(s) = as_str(data) {
        assert_eq!(s.as_bytes(), data);
    }
    let parts = Parts::of(data);
    let iss = as_str(parts.bytes(0)).unwrap_or_default();
    for key in ["user", "agent"] {
        let (user_rules, agent_rules) = rules(key, &iss, false);
        if let Ok(u) = read_user(&parts, &user_rules) {
            if let Ok(sub) = as_str(parts.bytes(1)) {
                assert!(parts.len() < 2 || u.token.sub == sub);
            }
        }
        let _ = read_agent(&parts, &agent_rules);
        let _ = crate::identity::claims::present(&parts, key);
        let _ = crate::identity::claims::failure(&parts, key);
    }
    // A JSON payload, encoded as Envoy encodes it, reads back as written.
    let Ok(Value::Object(payload)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let metadata = JsonClaims(vec![("user".into(), Value::Object(payload.clone()))]);
    let iss = payload
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (user_rules, agent_rules) = rules("user", iss, false);
    typed(&metadata, &payload, iss);
    let source = metadata;
    let strings = |v: Option<&Value>| -> Option<Vec<String>> {
        v?.as_array()?
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    if let Ok(u) = read_user(&source, &user_rules) {
        if let Some(Value::String(sub)) = payload.get("sub") {
            assert_eq!(&u.token.sub, sub);
        }
        if let Some(groups) = strings(payload.get("groups")) {
            assert_eq!(u.groups, groups);
        }
        match payload.get("aud") {
            // A string that happens to be a valid list encoding reads as that list: see
            // `Reader::str_or_list` (only NUL-bearing strings can).
            Some(Value::String(a)) if !a.contains('\0') => assert_eq!(u.token.aud, vec![a.clone()]),
            Some(v @ Value::Array(_)) => {
                if let Some(list) = strings(Some(v)).filter(|l| !l.is_empty()) {
                    assert_eq!(u.token.aud, list);
                }
            }
            _ => {}
        }
        if let Some(Value::String(scope)) = payload.get("scope") {
            let want: Vec<&str> = scope.split_ascii_whitespace().collect();
            assert!(u
                .token
                .scopes
                .iter()
                .map(String::as_str)
                .take(want.len())
                .eq(want));
        }
    }
    if let Ok(a) = read_agent(&source, &agent_rules) {
        if let Some(Value::Array(chain)) = payload.get("delegation_chain") {
            assert_eq!(a.delegation_chain.len(), chain.len());
        }
    }
}

/// User and agent rules reading from metadata `key`, trusting `iss` with the default mapping;
/// with `forwarded`, from the default payload headers.
fn rules(key: &str, iss: &str, forwarded: bool) -> (UserRules, AgentRules) {
    static BASE: OnceLock<Option<IdentityConfig>> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let cfg = json!({"mode": "open", "identity": {
            "protected_resource": {"resource": "http://gw/mcp", "authorization_servers": ["i"]},
            "user": {"issuers": ["i"]}, "agent": {"issuers": ["i"]}}});
        Config::from_json(cfg.to_string().as_bytes())
            .ok()
            .and_then(|c| c.identity)
    });
    let Some((mut u, Some(mut a))) = base.as_ref().map(|b| (b.user.clone(), b.agent.clone()))
    else {
        panic!("the fuzz identity config compiles");
    };
    u.metadata_key = key.to_string();
    a.metadata_key = key.to_string();
    u.issuers[0].url = iss.to_string();
    a.issuers[0].url = iss.to_string();
    if !forwarded {
        u.payload_header = None;
        a.payload_header = None;
    } else if key == "user" {
        a.payload_header = Some("x-warden-user-payload".into());
    }
    (u, a)
}

/// The same payload forwarded as jwt_authn forwards it: read with its JSON types, and agreeing
/// with the metadata copy; a forged header that changes any claim read is refused.
fn typed(metadata: &JsonClaims, payload: &serde_json::Map<String, Value>, iss: &str) {
    let (user_rules, agent_rules) = rules("user", iss, true);
    let headers = metadata.payload_headers();
    let source = WithHeaders {
        metadata,
        headers: &headers,
    };
    let user = read_user(&source, &user_rules);
    let _ = read_agent(&source, &agent_rules);
    if let Ok(u) = &user {
        if let Some(Value::String(sub)) = payload.get("sub") {
            assert_eq!(&u.token.sub, sub);
        }
        match payload.get("aud") {
            // Typed: a string is one audience, whatever bytes it holds.
            Some(Value::String(a)) => assert_eq!(u.token.aud, vec![a.clone()]),
            Some(Value::Array(items)) => assert_eq!(u.token.aud.len(), items.len()),
            _ => {}
        }
        match payload.get("groups") {
            Some(Value::String(g)) => assert_eq!(u.groups, vec![g.clone()]),
            Some(Value::Array(items)) => assert!(u.groups.len() <= items.len()),
            _ => assert!(u.groups.is_empty()),
        }
    }
    // A header that adds a group the verified token does not have is refused.
    let mut forged = payload.clone();
    forged.insert("groups".into(), json!(["fuzz-admin"]));
    if payload.get("groups") == forged.get("groups") {
        return;
    }
    let headers = vec![(
        "x-warden-user-payload".to_string(),
        crate::identity::payload::encode(&Value::Object(forged)),
    )];
    let source = WithHeaders {
        metadata,
        headers: &headers,
    };
    if let Ok(u) = read_user(&source, &user_rules) {
        assert!(
            !u.groups.iter().any(|g| g == "fuzz-admin"),
            "forged group read"
        );
    }
}

/// Two session keys (`k2` seals, `k1` still opens).
fn routing() -> &'static SessionKeys {
    static KEYS: OnceLock<SessionKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let raw: Vec<RawKey> = serde_json::from_value(json!([
            {"id": "k2", "secret": "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="},
            {"id": "k1", "secret": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="},
        ]))
        .expect("keys parse");
        SessionKeys::compile(raw, "sessions.keys").expect("keys compile")
    })
}

/// The owner `(server, user, agent)` with the one issuer and agent instance the fuzz target
/// uses.
fn owner<'a>(server: &'a str, user: &'a str, agent: &'a str) -> SessionOwner<'a> {
    SessionOwner {
        server,
        user_issuer: "iss",
        user,
        agent_issuer: if agent.is_empty() { "" } else { "iss" },
        agent,
        agent_instance: if agent.is_empty() { "" } else { "i-1" },
    }
}

/// When the fuzz target's tokens are opened.
const NOW: u64 = 1_800_000_000;

/// `token` with byte `at` (modulo its length) replaced by the ASCII byte `with`, if that
/// changes it.
fn altered(token: &str, at: u8, with: u8) -> Option<String> {
    let mut bytes = token.as_bytes().to_vec();
    let at = usize::from(at) % bytes.len().max(1);
    let with = with & 0x7F;
    let b = bytes.get_mut(at)?;
    if !b.is_ascii() || *b == with {
        return None;
    }
    *b = with;
    String::from_utf8(bytes).ok()
}

/// Sealed session ids and SSE event ids: the whole input as a presented token must not open;
/// inputs 0-5 (session id, host, variant, server, user, agent) sealed must open for their
/// owner only, and not once altered at input 6's first byte into input 7's.
pub fn unseal(data: &[u8]) {
    let r = routing();
    let presented = String::from_utf8_lossy(data);
    assert!(
        r.open(&presented, &owner("srv", "alice", ""), NOW).is_err(),
        "{}",
        show(data)
    );
    assert!(open_event_id(r, &presented, &owner("srv", "alice", ""), NOW).is_err());
    for (prefix, purpose) in [("mw1", "session"), ("mwe1", "sse event id")] {
        assert!(sealing::open(r, prefix, purpose, &presented).is_none());
    }

    let parts = Parts::of(data);
    let variant = parts.text(2);
    let (server, user, agent) = (parts.text(3), parts.text(4), parts.text(5));
    let (server, user, agent) = (server.as_str(), user.as_str(), agent.as_str());
    let session = SessionBinding {
        session_id: parts.text(0),
        host: parts.text(1),
        variant: (!variant.is_empty()).then_some(variant),
        owner: r.owner_record(&owner(server, user, agent), NOW),
    };
    let token = r.seal(&session).expect("a key seals");
    assert_eq!(
        r.open(&token, &owner(server, user, agent), NOW).as_ref(),
        Ok(&session)
    );
    let other = format!("{user}!");
    assert_eq!(
        r.open(&token, &owner(server, &other, agent), NOW),
        Err(SessionError::Foreign)
    );
    assert_eq!(
        r.open(&token, &owner(&format!("{server}!"), user, agent), NOW),
        Err(SessionError::Foreign)
    );
    assert_eq!(
        r.open(&token, &owner(server, user, agent), session.owner.expires),
        Err(SessionError::Expired)
    );
    assert!(open_event_id(r, &token, &owner(server, user, agent), NOW).is_err());
    if let Some(t) = altered(&token, parts.byte(6), parts.byte(7)) {
        assert_eq!(
            r.open(&t, &owner(server, user, agent), NOW),
            Err(SessionError::Unknown),
            "altered {token} to {t}"
        );
    }

    let rules = ParseRules {
        max_depth: 16,
        max_batch: 16,
        extra_methods: &[],
        strict_keys: true,
    };
    let outstanding = parse_payload(parts.bytes(8), &rules, true)
        .map(|p| Outstanding::of(&p))
        .unwrap_or_default();
    let event = EventBinding {
        event_id: parts.text(0),
        owner: SealedOwner::new(&owner(server, user, agent), NOW + 1),
        outstanding,
    };
    let id = seal_event_id(r, &event).expect("a key seals");
    assert_eq!(
        open_event_id(r, &id, &owner(server, user, agent), NOW).as_ref(),
        Ok(&event)
    );
    assert_eq!(
        open_event_id(r, &id, &owner(server, user, &format!("{agent}!")), NOW),
        Err(ResumeError::Foreign)
    );
    assert_eq!(
        open_event_id(r, &id, &owner(server, user, agent), NOW + 1),
        Err(ResumeError::Expired)
    );
    assert!(r.open(&id, &owner(server, user, agent), NOW).is_err());
    if let Some(t) = altered(&id, parts.byte(6), parts.byte(7)) {
        if t.trim() != id {
            assert_eq!(
                open_event_id(r, &t, &owner(server, user, agent), NOW),
                Err(ResumeError::Unknown),
                "altered {id} to {t}"
            );
        }
    }
}
