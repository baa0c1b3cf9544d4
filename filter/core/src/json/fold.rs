//! Case folding of object keys, as case-insensitive JSON decoders compare them.
//!
//! Go's `encoding/json` (used by Go MCP servers) matches a key to a struct field exactly or,
//! failing that, case-insensitively with Unicode *simple* case folding: `"Name"` fills `name`,
//! and so do `"NAME"`, and the Kelvin sign `K` (U+212A) stands for `k`, the long s `ſ`
//! (U+017F) for `s`, the dotless `ı` (U+0131) for `i`. When one object holds two such keys,
//! the gateway and the server can read different values, so `strict_keys` refuses them.
//!
//! [`fold_char`] maps a char to one representative of its case class: its upper case (when
//! that is one char), then the lower case of that (when one char). Chars whose simple case
//! mappings link them (`K`, `k`, `K`; `S`, `s`, `ſ`; `Σ`, `σ`, `ς`; `I`, `i`, `ı`; …) get the
//! same representative; tests check this for every char against its single-char case mappings
//! and against Unicode's simple case folding orbits (three pairs are linked by folding only).
//! Keys are compared char by char, like Go does, so folding never changes how many chars a
//! key has (`ß` is not `ss`).

use std::borrow::Cow;

/// The representative of `c`'s case class.
pub(crate) fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    // Simple case folding pairs that no single-char case mapping links (Unicode 14).
    match c {
        '\u{1FD3}' => return '\u{390}',
        '\u{1FE3}' => return '\u{3B0}',
        '\u{FB05}' => return '\u{FB06}',
        _ => {}
    }
    let upper = single(c.to_uppercase()).unwrap_or(c);
    single(upper.to_lowercase()).unwrap_or(upper)
}

/// The only char of a case mapping, if it has exactly one.
fn single(mut chars: impl Iterator<Item = char>) -> Option<char> {
    let first = chars.next()?;
    chars.next().is_none().then_some(first)
}

/// Whether `a` and `b` are equal once case-folded (char by char).
pub(crate) fn fold_eq(a: &str, b: &str) -> bool {
    if a.len() == b.len() && a.eq_ignore_ascii_case(b) {
        return true;
    }
    // Two ASCII keys of different spelling: no fold can make them equal.
    if a.is_ascii() && b.is_ascii() {
        return false;
    }
    let (mut x, mut y) = (a.chars(), b.chars());
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) if p == q || fold_char(p) == fold_char(q) => {}
            _ => return false,
        }
    }
}

/// `key` case-folded; borrowed when folding changes nothing (lower-case ASCII keys).
pub(crate) fn folded(key: &str) -> Cow<'_, str> {
    if key.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        return Cow::Borrowed(key);
    }
    Cow::Owned(key.chars().map(fold_char).collect())
}

/// Up to this many keys an object's keys are compared pair by pair; beyond, folded keys go in
/// a set.
pub(crate) const FEW_KEYS: usize = 16;

/// A key of `keys` (an object's keys, none repeated exactly) that equals an earlier one once
/// case-folded. Objects of up to [`FEW_KEYS`] keys are compared pair by pair, without
/// allocating; larger ones through a set of folded keys.
pub(crate) fn find_twin<'a, I>(keys: I) -> Option<&'a str>
where
    I: Iterator<Item = &'a str> + Clone,
{
    let count = keys.clone().take(FEW_KEYS + 1).count();
    if count < 2 {
        return None;
    }
    if count <= FEW_KEYS {
        let mut rest = keys;
        while let Some(a) = rest.next() {
            if let Some(b) = rest.clone().find(|b| fold_eq(a, b)) {
                return Some(b);
            }
        }
        return None;
    }
    let mut seen = std::collections::BTreeSet::new();
    keys.into_iter().find(|k| !seen.insert(folded(k)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn keys_fold_like_case_insensitive_decoders() {
        for (a, b) in [
            ("name", "Name"),
            ("table", "TABLE"),
            ("k", "\u{212A}"),
            ("K", "\u{212A}"),
            ("sql", "\u{17F}ql"),
            ("SQL", "\u{17F}QL"),
            ("id", "\u{131}d"),
            ("ID", "\u{131}d"),
            ("σ", "ς"),
            ("Σ", "ς"),
            ("µ", "μ"),
            ("Μ", "µ"),
            ("θ", "ϑ"),
            ("ϴ", "θ"),
            ("ǅ", "ǆ"),
            ("Ǆ", "ǅ"),
            ("ß", "ẞ"),
            ("ι", "\u{345}"),
            ("ι", "\u{1FBE}"),
            ("ᾳ", "ᾼ"),
            ("straße", "STRAẞE"),
            ("\u{390}", "\u{1FD3}"),
            ("\u{FB05}", "\u{FB06}"),
            ("", ""),
        ] {
            assert!(fold_eq(a, b), "{a} vs {b}");
            assert!(fold_eq(b, a), "{b} vs {a}");
            assert_eq!(folded(a), folded(b), "{a} vs {b}");
        }
        for (a, b) in [
            ("name", "names"),
            ("ss", "ß"),
            ("SS", "ẞ"),
            ("i", "\u{130}"),
            ("a", "b"),
            ("k", "\u{212A}\u{212A}"),
            ("", "a"),
        ] {
            assert!(!fold_eq(a, b), "{a} vs {b}");
            assert!(!fold_eq(b, a), "{b} vs {a}");
            assert_ne!(folded(a), folded(b), "{a} vs {b}");
        }
        assert!(matches!(folded("lower_case"), Cow::Borrowed(_)));
        assert!(matches!(folded("Upper"), Cow::Owned(_)));
    }

    #[test]
    fn twins_are_found_in_small_and_large_objects() {
        assert_eq!(find_twin(["a"].into_iter()), None);
        assert_eq!(find_twin(["a", "b", "A"].into_iter()), Some("A"));
        assert_eq!(find_twin(["name", "Name"].into_iter()), Some("Name"));
        for n in [FEW_KEYS - 1, FEW_KEYS, FEW_KEYS + 1, 200] {
            let keys: Vec<String> = (0..n).map(|i| format!("key{i}")).collect();
            let refs = || keys.iter().map(String::as_str);
            assert_eq!(find_twin(refs()), None, "{n}");
            let twin = "KEY1".to_string();
            let with: Vec<&str> = refs().chain([twin.as_str()]).collect();
            assert_eq!(find_twin(with.iter().copied()), Some("KEY1"), "{n}");
            let first: Vec<&str> = [twin.as_str()].into_iter().chain(refs()).collect();
            assert!(find_twin(first.iter().copied()).is_some(), "{n}");
        }
    }

    #[test]
    fn every_simple_case_folding_orbit_folds_to_one_char() {
        // Unicode's simple case folding (CaseFolding.txt C + S, as Go's unicode.SimpleFold
        // orbits): every char of an orbit must get the same representative.
        use regex_syntax::hir::{ClassUnicode, ClassUnicodeRange};
        let mut wrong = Vec::new();
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let mut class = ClassUnicode::new([ClassUnicodeRange::new(c, c)]);
            class.case_fold_simple();
            let f = fold_char(c);
            for other in class.iter().flat_map(|r| r.start()..=r.end()) {
                if fold_char(other) != f {
                    wrong.push(format!("U+{:04X} U+{:04X}", c as u32, other as u32));
                }
            }
        }
        assert!(wrong.is_empty(), "{wrong:?}");
    }

    #[test]
    fn every_char_folds_like_its_case_mappings() {
        // A char and each single-char case mapping of it share a representative, so keys that
        // a decoder's simple folding equates are equal here too.
        let mut checked = 0;
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let f = fold_char(c);
            for m in [single(c.to_lowercase()), single(c.to_uppercase())]
                .into_iter()
                .flatten()
            {
                assert_eq!(fold_char(m), f, "U+{:04X} vs U+{:04X}", c as u32, m as u32);
                checked += 1;
            }
            assert_eq!(
                fold_char(f),
                f,
                "U+{:04X} folds to an unstable char",
                c as u32
            );
        }
        assert!(checked > 1_100_000);
    }
}
