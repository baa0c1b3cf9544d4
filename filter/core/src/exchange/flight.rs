//! The per-worker token cache and the single flight: concurrent requests for the same key
//! cause one exchange, and every request that waited for it learns how it ended.

use super::{Issued, StsCall};
use crate::error::{Reason, Rejection};
use std::collections::HashMap;

/// Exchanged tokens by cache key, per worker.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: HashMap<[u8; 32], Issued>,
}

/// Most cached tokens; when full, expired ones go, then all.
pub const TOKEN_CACHE_CAPACITY: usize = 10_000;

impl TokenCache {
    /// A token still valid for more than `margin` seconds.
    pub fn get(&self, key: &[u8; 32], now: u64, margin: u64) -> Option<&Issued> {
        self.entries
            .get(key)
            .filter(|t| t.expires_at > now + margin)
    }

    /// Stores a token.
    pub fn put(&mut self, key: [u8; 32], issued: Issued, now: u64) {
        if self.entries.len() >= TOKEN_CACHE_CAPACITY {
            self.entries.retain(|_, t| t.expires_at > now);
            if self.entries.len() >= TOKEN_CACHE_CAPACITY {
                self.entries.clear();
            }
        }
        self.entries.insert(key, issued);
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What a request needs from the STS, as the pipeline hands it to the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// Cache / single-flight key.
    pub key: [u8; 32],
    /// The call to make if nobody is making it yet.
    pub call: StsCall,
    /// Requested lifetime (bounds what the answer may claim).
    pub lifetime: u64,
}

/// Whether a request may use a cached token, must wait for an exchange in flight, or must
/// make the exchange itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// A cached token.
    Cached(String),
    /// Another request is exchanging the same inputs: wait for it.
    Wait,
    /// Make the call.
    Dispatch,
}

/// A request waiting for an exchange: its context id and the JSON-RPC id to echo on failure.
pub type Waiter = (u32, Option<serde_json::Value>);

/// How a request that waited for another request's exchange ended: resumed with the token
/// (`Ok`), or refused with this rejection.
pub type Settled = Result<(), Rejection>;

/// Token cache plus exchanges in flight (per worker): concurrent requests for the same key
/// cause one exchange.
///
/// The request that makes the exchange resumes (or refuses) the requests that waited for it;
/// each of those then learns how it ended from here ([`ExchangeState::collect`], at its next
/// callback, or [`ExchangeState::leave`] when it ends), so that its outcome and its audit
/// record are its own.
#[derive(Debug, Default)]
pub struct ExchangeState {
    /// Issued tokens.
    pub cache: TokenCache,
    inflight: HashMap<[u8; 32], Vec<Waiter>>,
    /// Waiters resumed or refused by another request's exchange, until each collects how.
    settled: HashMap<u32, Settled>,
}

impl ExchangeState {
    /// Registers a request for `key`.
    pub fn begin(&mut self, key: &[u8; 32], waiter: Waiter, now: u64, margin: u64) -> Begin {
        if let Some(t) = self.cache.get(key, now, margin) {
            return Begin::Cached(t.access_token.clone());
        }
        match self.inflight.get_mut(key) {
            Some(waiters) => {
                waiters.push(waiter);
                Begin::Wait
            }
            None => {
                self.inflight.insert(*key, Vec::new());
                Begin::Dispatch
            }
        }
    }

    /// The exchange for `key` ended: caches a success and returns the requests that waited,
    /// each recorded as settled by `result` (see [`ExchangeState::settle`] for a waiter the
    /// adapter could not resume).
    pub fn finish(
        &mut self,
        key: &[u8; 32],
        result: &Result<Issued, Rejection>,
        now: u64,
    ) -> Vec<Waiter> {
        if let Ok(issued) = result {
            self.cache.put(*key, issued.clone(), now);
        }
        let waiters = self.inflight.remove(key).unwrap_or_default();
        for (context, _) in &waiters {
            let how = match result {
                Ok(_) => Ok(()),
                Err(r) => Err(r.clone()),
            };
            self.settled.insert(*context, how);
        }
        waiters
    }

    /// Records how a waiter ended when it differs from its exchange's result (its token could
    /// not be set: it was refused instead).
    pub fn settle(&mut self, context: u32, how: Settled) {
        self.settled.insert(context, how);
    }

    /// How the wait of request `context` ended, once (`None`: not settled, or already
    /// collected).
    pub fn collect(&mut self, context: u32) -> Option<Settled> {
        self.settled.remove(&context)
    }

    /// Request `context` ends: it waits no more. How its wait ended, if another request
    /// settled it; refused (abandoned) if it was still waiting; `None` if it was not waiting.
    pub fn leave(&mut self, context: u32) -> Option<Settled> {
        if let Some(how) = self.settled.remove(&context) {
            return Some(how);
        }
        let mut found = false;
        for waiters in self.inflight.values_mut() {
            let before = waiters.len();
            waiters.retain(|(c, _)| *c != context);
            found |= waiters.len() != before;
        }
        found.then(|| {
            Err(Rejection::new(
                Reason::ExchangeUnavailable,
                "the request ended while it waited for its token exchange",
            )
            .with_rule("exchange.abandoned"))
        })
    }

    /// Waiters settled and not yet collected.
    pub fn settled(&self) -> usize {
        self.settled.len()
    }

    /// Exchanges in flight.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn issued() -> Result<Issued, Rejection> {
        Ok(Issued {
            access_token: "t".into(),
            expires_at: 60,
        })
    }

    #[test]
    fn concurrent_requests_share_one_exchange() {
        let mut s = ExchangeState::default();
        let k = [7u8; 32];
        assert_eq!(s.begin(&k, (1, None), 0, 5), Begin::Dispatch);
        for ctx in 2..=50 {
            assert_eq!(s.begin(&k, (ctx, None), 0, 5), Begin::Wait);
        }
        let waiters = s.finish(&k, &issued(), 0);
        assert_eq!(waiters.len(), 49);
        assert_eq!(s.begin(&k, (51, None), 10, 5), Begin::Cached("t".into()));
        assert_eq!(s.in_flight(), 0);
        // A failure is not cached: the next request tries again.
        let k2 = [8u8; 32];
        assert_eq!(s.begin(&k2, (1, None), 0, 5), Begin::Dispatch);
        s.finish(
            &k2,
            &Err(Rejection::new(Reason::ExchangeUnavailable, "down")),
            0,
        );
        assert_eq!(s.begin(&k2, (2, None), 0, 5), Begin::Dispatch);
    }

    #[test]
    fn every_waiter_learns_how_its_wait_ended_once() {
        let mut s = ExchangeState::default();
        let (ok, bad) = ([1u8; 32], [2u8; 32]);
        assert_eq!(s.begin(&ok, (1, None), 0, 5), Begin::Dispatch);
        assert_eq!(s.begin(&bad, (2, None), 0, 5), Begin::Dispatch);
        for ctx in 10..20 {
            assert_eq!(s.begin(&ok, (ctx, None), 0, 5), Begin::Wait);
            assert_eq!(s.begin(&bad, (ctx + 10, None), 0, 5), Begin::Wait);
        }
        // Not settled while the exchange is in flight.
        assert_eq!(s.collect(10), None);
        assert_eq!(s.finish(&ok, &issued(), 0).len(), 10);
        let refused = Rejection::new(Reason::ExchangeInvalidAnswer, "wrong type")
            .with_rule("exchange.answer.token_type");
        assert_eq!(s.finish(&bad, &Err(refused.clone()), 0).len(), 10);
        assert_eq!(s.settled(), 20);
        // The adapter could not set one waiter's token: it was refused instead.
        let internal = Rejection::new(Reason::Internal, "gateway error");
        s.settle(11, Err(internal.clone()));
        assert_eq!(s.collect(10), Some(Ok(())));
        assert_eq!(s.collect(10), None, "collected once");
        assert_eq!(s.collect(11), Some(Err(internal)));
        assert_eq!(s.collect(20), Some(Err(refused.clone())));
        // A waiter that ends before collecting gets its outcome from `leave`.
        assert_eq!(s.leave(21), Some(Err(refused)));
        assert_eq!(s.leave(21), None);
        // The requesters themselves never waited.
        assert_eq!(s.collect(1), None);
        for ctx in (12..20).chain(22..30) {
            assert!(s.collect(ctx).is_some());
        }
        assert_eq!(s.settled(), 0);
    }

    #[test]
    fn a_waiter_that_ends_first_leaves_the_flight() {
        let mut s = ExchangeState::default();
        let k = [3u8; 32];
        assert_eq!(s.begin(&k, (1, None), 0, 5), Begin::Dispatch);
        assert_eq!(s.begin(&k, (2, None), 0, 5), Begin::Wait);
        assert_eq!(s.begin(&k, (3, None), 0, 5), Begin::Wait);
        let left = s.leave(2).unwrap().unwrap_err();
        assert_eq!(left.rule.as_deref(), Some("exchange.abandoned"));
        // Only the waiter still there is resumed; nothing is kept for the one that left.
        let waiters: Vec<u32> = s.finish(&k, &issued(), 0).iter().map(|w| w.0).collect();
        assert_eq!(waiters, vec![3]);
        assert_eq!(s.settled(), 1);
        assert_eq!(s.leave(99), None);
    }
}
