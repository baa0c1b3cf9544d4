//! Checking JSON text without building it: the strict reader's rules (duplicate keys recorded,
//! nesting depth capped, numbers finite, and `serde_json`'s own syntax, UTF-8 and surrogate
//! checks) for a subtree kept as text, and with `strict_keys` keys equal once case-folded.
//! Keys are borrowed from the text unless they hold escapes.

use super::fold::{fold_eq, folded, FEW_KEYS};
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
        let mut keys = Keys::Few(list, false);
        while let Some(key) = map.next_key_seed(Key)? {
            map.next_value_seed(self.child())?;
            match keys.insert(key, self.ctx.strict_keys) {
                Repeat::No => {}
                Repeat::Exact(again) => self.ctx.duplicate(self.depth, &again),
                Repeat::Folded(twin) => self.ctx.case_twin(self.depth, &twin),
            }
        }
        if let Keys::Few(mut list, _) = keys {
            list.clear();
            self.spare.borrow_mut().push(list);
        }
        Ok(())
    }
}

/// The keys seen so far in one object: up to [`FEW_KEYS`] compared one by one (and whether
/// one of them is not ASCII), beyond that in a tree (and, with `strict_keys`, a tree of their
/// case-folded forms).
enum Keys<'de> {
    Few(Vec<Cow<'de, str>>, bool),
    Many(BTreeSet<Cow<'de, str>>, BTreeSet<String>),
}

/// Whether a key was seen before in its object.
#[derive(Debug, PartialEq)]
enum Repeat<'de> {
    /// No.
    No,
    /// The same key.
    Exact(Cow<'de, str>),
    /// A key equal to it once case-folded (`strict`).
    Folded(Cow<'de, str>),
}

impl<'de> Keys<'de> {
    /// Adds `key`; says whether it (or, when `strict`, a case-folded twin) was already there.
    fn insert(&mut self, key: Cow<'de, str>, strict: bool) -> Repeat<'de> {
        match self {
            Keys::Few(v, wide) => {
                // One pass. Keys that are all ASCII fold alike only at equal lengths; a
                // non-ASCII key (the Kelvin sign is 3 bytes, `k` one) needs the char-wise fold.
                let ascii = !strict || key.is_ascii();
                let found = if !strict {
                    v.iter().position(|k| *k == key)
                } else if ascii && !*wide {
                    v.iter()
                        .position(|k| k.len() == key.len() && k.eq_ignore_ascii_case(&key))
                } else {
                    v.iter().position(|k| fold_eq(k, &key))
                };
                if let Some(i) = found {
                    return if v.get(i) == Some(&key) {
                        Repeat::Exact(key)
                    } else {
                        Repeat::Folded(key)
                    };
                }
                *wide |= !ascii;
                if v.len() < FEW_KEYS {
                    v.push(key);
                    return Repeat::No;
                }
                let folds = if strict {
                    v.iter()
                        .chain([&key])
                        .map(|k| folded(k).into_owned())
                        .collect()
                } else {
                    BTreeSet::new()
                };
                let mut set: BTreeSet<_> = v.drain(..).collect();
                set.insert(key);
                *self = Keys::Many(set, folds);
                Repeat::No
            }
            Keys::Many(set, _) if set.contains(&key) => Repeat::Exact(key),
            Keys::Many(set, folds) => {
                if strict && !folds.insert(folded(&key).into_owned()) {
                    return Repeat::Folded(key);
                }
                set.insert(key);
                Repeat::No
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
        for strict in [false, true] {
            let mut keys = Keys::Few(Vec::new(), false);
            for i in 0..40 {
                assert_eq!(keys.insert(Cow::Owned(format!("k{i}")), strict), Repeat::No);
            }
            assert!(matches!(keys, Keys::Many(..)));
            let k3 = Cow::Borrowed("k3");
            assert_eq!(keys.insert(k3.clone(), strict), Repeat::Exact(k3));
            let k39 = Cow::Borrowed("k39");
            assert_eq!(keys.insert(k39.clone(), strict), Repeat::Exact(k39));
            let twin = Cow::Borrowed("K39");
            let want = if strict {
                Repeat::Folded(twin.clone())
            } else {
                Repeat::No
            };
            assert_eq!(keys.insert(twin, strict), want);
            let mut few = Keys::Few(Vec::new(), false);
            let a = Cow::Borrowed("a");
            assert_eq!(few.insert(a.clone(), strict), Repeat::No);
            assert_eq!(few.insert(a.clone(), strict), Repeat::Exact(a));
            let twin = Cow::Borrowed("A");
            let want = if strict {
                Repeat::Folded(twin.clone())
            } else {
                Repeat::No
            };
            assert_eq!(few.insert(twin, strict), want);
        }
        // ASCII keys after a non-ASCII one, and the other way round.
        for (first, second) in [
            ("\u{212A}ey", "key"),
            ("key", "\u{212A}EY"),
            ("\u{17F}", "S"),
        ] {
            let mut keys = Keys::Few(Vec::new(), false);
            assert_eq!(keys.insert(Cow::Borrowed("other"), true), Repeat::No);
            assert_eq!(keys.insert(Cow::Borrowed(first), true), Repeat::No);
            let twin = Cow::Borrowed(second);
            assert_eq!(keys.insert(twin.clone(), true), Repeat::Folded(twin));
        }
        // The twin that makes a list grow into a tree is found as well.
        let mut keys = Keys::Few(Vec::new(), false);
        for i in 0..FEW_KEYS {
            assert_eq!(keys.insert(Cow::Owned(format!("k{i}")), true), Repeat::No);
        }
        let twin = Cow::Borrowed("K0");
        assert_eq!(keys.insert(twin.clone(), true), Repeat::Folded(twin));
    }
}
