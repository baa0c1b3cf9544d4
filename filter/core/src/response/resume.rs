//! Resumable streams: SSE event ids the client sees are sealed, and carry what the stream still
//! owes, so a stream resumed with `Last-Event-ID` (a GET, possibly on another worker or
//! replica) knows which answers it may carry and which of them are lists to filter.
//!
//! Every event id the upstream sends (priming events included) is replaced by a sealed token:
//! the upstream's own id, the owner ([`SealedOwner`], the record a session id carries: server,
//! user and agent issuer and subject, agent instance, expiry) and the requests of the stream
//! not answered yet. A GET with `Last-Event-ID` must present such a token, unexpired, for this
//! server and this caller: the upstream gets its own id back, and the resumed stream the
//! requests.
//! Without sealing keys the ids pass as they are and a resumed stream answers nothing (its
//! answers are dropped).

use crate::response::answers::Outstanding;
use crate::sealing::{open, seal, KeyRing};
use crate::sessions::{SealedOwner, SessionError, SessionOwner};
use serde::{Deserialize, Serialize};

const PREFIX: &str = "mwe1";
const PURPOSE: &str = "sse event id";

/// What a sealed event id carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBinding {
    /// The upstream's event id.
    #[serde(rename = "e")]
    pub event_id: String,
    /// Who the stream belongs to, and until when.
    #[serde(rename = "w")]
    pub owner: SealedOwner,
    /// The requests of the stream still unanswered after this event.
    #[serde(rename = "o", default)]
    pub outstanding: Outstanding,
}

/// Why a presented `Last-Event-ID` is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeError {
    /// Not an id this gateway handed out, altered, or sealed with a key no longer configured.
    Unknown,
    /// Older than `sessions.max_age_seconds` (refused like an unknown id).
    Expired,
    /// Sealed for another caller or server.
    Foreign,
}

/// The event id the client sees in place of the upstream's.
pub fn seal_event_id(ring: &dyn KeyRing, binding: &EventBinding) -> Option<String> {
    let plain = serde_json::to_vec(binding).ok()?;
    seal(ring, PREFIX, PURPOSE, &plain)
}

/// Opens a `Last-Event-ID` and checks it has not expired at `now` and belongs to this caller
/// and server.
pub fn open_event_id(
    ring: &dyn KeyRing,
    token: &str,
    owner: &SessionOwner<'_>,
    now: u64,
) -> Result<EventBinding, ResumeError> {
    let plain = open(ring, PREFIX, PURPOSE, token.trim()).ok_or(ResumeError::Unknown)?;
    let b: EventBinding = serde_json::from_slice(&plain).map_err(|_| ResumeError::Unknown)?;
    b.owner.check(owner, now).map_err(|e| match e {
        SessionError::Foreign => ResumeError::Foreign,
        SessionError::Expired => ResumeError::Expired,
        SessionError::Unknown => ResumeError::Unknown,
    })?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::{parse_payload, ParseRules};
    use serde_json::json;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: u64 = 1_800_000_000;

    struct Ring([u8; 32]);

    impl KeyRing for Ring {
        fn sealing_key(&self) -> Option<(&str, &[u8; 32])> {
            Some(("k", &self.0))
        }
        fn key(&self, id: &str) -> Option<&[u8; 32]> {
            (id == "k").then_some(&self.0)
        }
    }

    #[test]
    fn event_ids_round_trip_for_their_owner_only() {
        let rules = ParseRules {
            max_depth: 8,
            max_batch: 4,
            extra_methods: &[],
            strict_keys: true,
        };
        let p = parse_payload(
            br#"[{"jsonrpc":"2.0","id":5,"method":"tools/list"},{"jsonrpc":"2.0","id":"x","method":"ping"}]"#,
            &rules,
            true,
        )
        .unwrap();
        let owner = |server: &'static str, iss: &'static str, user: &'static str| SessionOwner {
            server,
            user_issuer: iss,
            user,
            agent_issuer: "https://idp",
            agent: "agent-claude",
            agent_instance: "i-1",
        };
        let alice = owner("corp", "https://idp", "alice");
        let b = EventBinding {
            event_id: "upstream-7".into(),
            owner: SealedOwner::new(&alice, NOW + 60),
            outstanding: Outstanding::of(&p),
        };
        let ring = Ring([9; 32]);
        let t = seal_event_id(&ring, &b).unwrap();
        assert!(!t.contains("upstream-7"));
        let mut back = open_event_id(&ring, &t, &alice, NOW).unwrap();
        assert_eq!(back, b);
        assert!(back
            .outstanding
            .claim(&json!(5))
            .is_some_and(|c| c.list.is_some()));
        for other in [
            owner("corp", "https://idp", "bob"),
            owner("other", "https://idp", "alice"),
            // The same `sub` from another issuer is another user.
            owner("corp", "https://partner-idp", "alice"),
            // Another instance of the same agent.
            SessionOwner {
                agent_instance: "i-2",
                ..alice
            },
        ] {
            assert_eq!(
                open_event_id(&ring, &t, &other, NOW),
                Err(ResumeError::Foreign)
            );
        }
        // Expired, for its owner too.
        assert_eq!(
            open_event_id(&ring, &t, &alice, NOW + 60),
            Err(ResumeError::Expired)
        );
        assert_eq!(
            open_event_id(&ring, "upstream-7", &alice, NOW),
            Err(ResumeError::Unknown)
        );
        assert_eq!(
            open_event_id(&Ring([8; 32]), &t, &alice, NOW),
            Err(ResumeError::Unknown)
        );
    }
}
