//! Checking JSON text without building it: the strict reader's rules (duplicate keys recorded,
//! nesting depth capped, numbers finite, and `serde_json`'s own syntax, UTF-8 and surrogate
//! checks) for a subtree kept as text. Keys are borrowed from the text unless they hold escapes.

use super::Ctx;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;

/// Checks `text`, a value found at `depth` in the body; duplicates and excess depth are
/// recorded in `ctx` as the building reader records them.
pub(super) fn check(text: &str, depth: usize, ctx: &Ctx) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let spare = RefCell::new(Vec::new());
    Check {
        ctx,
        depth,
        spare: &spare,
    }
    .deserialize(&mut de)?;
    de.end()
}

struct Check<'c, 'de> {
    ctx: &'c Ctx,
    depth: usize,
    /// Emptied key lists, reused by the next objects (one allocation per nesting level).
    spare: &'c RefCell<Vec<Vec<Cow<'de, str>>>>,
}

impl<'de> DeserializeSeed<'de> for Check<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Check<'_, 'de> {
    fn child(&self) -> Check<'_, 'de> {
        Check {
            ctx: self.ctx,
            depth: self.depth + 1,
            spare: self.spare,
        }
    }
}

impl<'de> Visitor<'de> for Check<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(E::custom("number is not finite"))
        }
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.ctx.enter(self.depth)?;
        while seq.next_element_seed(self.child())?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.ctx.enter(self.depth)?;
        let list = self.spare.borrow_mut().pop().unwrap_or_default();
        let mut keys = Keys::Few(list);
        while let Some(key) = map.next_key_seed(Key)? {
            map.next_value_seed(self.child())?;
            if let Some(again) = keys.insert(key) {
                self.ctx.duplicate(self.depth, &again);
            }
        }
        if let Keys::Few(mut list) = keys {
            list.clear();
            self.spare.borrow_mut().push(list);
        }
        Ok(())
    }
}

/// Up to this many keys an object's keys are compared one by one; beyond, they go in a tree.
const FEW_KEYS: usize = 16;

/// The keys seen so far in one object.
enum Keys<'de> {
    Few(Vec<Cow<'de, str>>),
    Many(BTreeSet<Cow<'de, str>>),
}

impl<'de> Keys<'de> {
    /// Adds `key`; gives it back when it was already there.
    fn insert(&mut self, key: Cow<'de, str>) -> Option<Cow<'de, str>> {
        match self {
            Keys::Few(v) if v.contains(&key) => Some(key),
            Keys::Few(v) if v.len() < FEW_KEYS => {
                v.push(key);
                None
            }
            Keys::Few(v) => {
                let mut set: BTreeSet<_> = v.drain(..).collect();
                set.insert(key);
                *self = Keys::Many(set);
                None
            }
            Keys::Many(set) if set.contains(&key) => Some(key),
            Keys::Many(set) => {
                set.insert(key);
                None
            }
        }
    }
}

/// An object key, borrowed from the text when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn keys_find_repeats_before_and_after_growing() {
        let mut keys = Keys::Few(Vec::new());
        for i in 0..40 {
            assert_eq!(keys.insert(Cow::Owned(format!("k{i}"))), None);
        }
        assert!(matches!(keys, Keys::Many(_)));
        assert_eq!(keys.insert(Cow::Borrowed("k3")), Some(Cow::Borrowed("k3")));
        assert_eq!(
            keys.insert(Cow::Borrowed("k39")),
            Some(Cow::Borrowed("k39"))
        );
        let mut few = Keys::Few(Vec::new());
        assert_eq!(few.insert(Cow::Borrowed("a")), None);
        assert_eq!(few.insert(Cow::Borrowed("a")), Some(Cow::Borrowed("a")));
    }
}
