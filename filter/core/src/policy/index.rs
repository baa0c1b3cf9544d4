//! Rules by the tool names they can match, so a decision looks only at the rules that apply
//! to its tool: rules about other tools, literal or wildcard, are never touched.
//!
//! A literal pattern is indexed by the name itself. A wildcard pattern can only match names
//! that start with its literal prefix (the text before its first `*` or `?`), so it is indexed
//! by that prefix, and a name looks up each of its own prefixes of a length some pattern has.
//! The patterns found there are matched from the index's own compact copy (one string per
//! prefix, read in order), not from the rules, whose memory a decision then touches only for
//! rules whose tool pattern matches: with 1,000 patterns that start with `*`, a cold scan of
//! 1,000 rules becomes a scan of one short string. The caller still checks each rule in full.

use super::matcher::{glob_match, Glob};
use std::collections::HashMap;

/// A rule as the index holds it: its position in the policy and whether it denies (a decision
/// skips rules that can no longer change it without looking at them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Indexed {
    /// The rule's position in the policy.
    pub rule: usize,
    /// Whether it is a deny rule.
    pub deny: bool,
}

/// Rule indices by the tool patterns of their `tools` lists.
#[derive(Debug, Clone, Default)]
pub(super) struct ToolIndex {
    /// Literal tool names → the rules naming them.
    exact: HashMap<String, Vec<Indexed>>,
    /// Literal prefixes of wildcard patterns (possibly empty) → those patterns and their rules.
    prefixed: HashMap<String, Wildcards>,
    /// The distinct lengths (bytes) of the keys of `prefixed`, ascending.
    prefix_lens: Vec<usize>,
}

impl ToolIndex {
    /// Indexes one pattern of rule `rule`'s `tools` list.
    pub(super) fn add(&mut self, pattern: &Glob, rule: Indexed) {
        if let Some(name) = pattern.literal() {
            let rules = self.exact.entry(name.to_string()).or_default();
            if rules.last() != Some(&rule) {
                rules.push(rule);
            }
            return;
        }
        let prefix = pattern.literal_prefix();
        if let Err(at) = self.prefix_lens.binary_search(&prefix.len()) {
            self.prefix_lens.insert(at, prefix.len());
        }
        let rest = pattern.as_str().get(prefix.len()..).unwrap_or_default();
        self.prefixed
            .entry(prefix.to_string())
            .or_default()
            .push(rest, rule);
    }

    /// Calls `found` with every rule that has a pattern matching `tool` and that `wanted`
    /// accepts (asked first, so an unwanted rule's patterns are not even matched); a rule
    /// more than once when several of its patterns match.
    pub(super) fn candidates(
        &self,
        tool: &str,
        wanted: impl Fn(Indexed) -> bool,
        found: impl Fn(Indexed),
    ) {
        for &r in self.exact.get(tool).into_iter().flatten() {
            if wanted(r) {
                found(r);
            }
        }
        for &len in self
            .prefix_lens
            .iter()
            .take_while(|&&len| len <= tool.len())
        {
            // A prefix ending inside a multi-byte character is no pattern's prefix.
            let (Some(prefix), Some(rest)) = (tool.get(..len), tool.get(len..)) else {
                continue;
            };
            if let Some(w) = self.prefixed.get(prefix) {
                w.matching(rest, &wanted, &found);
            }
        }
    }

    /// How many rules [`ToolIndex::candidates`] gives for `tool`.
    #[cfg(test)]
    pub(super) fn count(&self, tool: &str) -> usize {
        let n = std::cell::Cell::new(0);
        self.candidates(tool, |_| true, |_| n.set(n.get() + 1));
        n.get()
    }
}

/// The wildcard patterns sharing one literal prefix, without it: their texts end to end in
/// one string, with (end of the text, rule) per pattern, in policy order.
#[derive(Debug, Clone, Default)]
struct Wildcards {
    texts: String,
    ends: Vec<(usize, Indexed)>,
}

impl Wildcards {
    fn push(&mut self, rest: &str, rule: Indexed) {
        self.texts.push_str(rest);
        self.ends.push((self.texts.len(), rule));
    }

    /// Calls `found` with each wanted rule whose pattern matches `rest` (the name after the
    /// prefix).
    fn matching(&self, rest: &str, wanted: &impl Fn(Indexed) -> bool, found: &impl Fn(Indexed)) {
        let mut start = 0;
        for &(end, rule) in &self.ends {
            let pattern = self.texts.as_bytes().get(start..end).unwrap_or_default();
            start = end;
            if wanted(rule) && glob_match(pattern, rest.as_bytes()) {
                found(rule);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn index(rules: &[&[&str]]) -> ToolIndex {
        let mut ix = ToolIndex::default();
        for (i, patterns) in rules.iter().enumerate() {
            for p in *patterns {
                ix.add(&Glob::new(p).unwrap(), allow(i));
            }
        }
        ix
    }

    fn allow(rule: usize) -> Indexed {
        Indexed { rule, deny: false }
    }

    fn found(ix: &ToolIndex, tool: &str) -> Vec<usize> {
        let v = std::cell::RefCell::new(Vec::new());
        ix.candidates(tool, |_| true, |r| v.borrow_mut().push(r.rule));
        let mut v = v.into_inner();
        v.sort_unstable();
        v
    }

    #[test]
    fn a_name_finds_every_rule_whose_pattern_matches_it() {
        let ix = index(&[
            &["get_weather"],
            &["get_*"],
            &["*"],
            &["?et_weather"],
            &["get_weather*"],
            &["list_*", "get_w*"],
            &["delete_*"],
            &["get_weatherman"],
        ]);
        assert_eq!(found(&ix, "get_weather"), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(found(&ix, "delete_repo"), vec![2, 6]);
        assert_eq!(found(&ix, "xet_weather"), vec![2, 3]);
        assert_eq!(found(&ix, ""), vec![2]);
    }

    #[test]
    fn the_candidates_are_exactly_the_matches() {
        let patterns = [
            "a*", "ab", "a?c", "*c", "abc*", "a*c", "?", "??", "é*", "é", "*é?", "x*y*z", "abc",
        ];
        let rules: Vec<&[&str]> = patterns.iter().map(std::slice::from_ref).collect();
        let ix = index(&rules);
        for tool in [
            "", "a", "ab", "abc", "abcd", "ac", "xc", "é", "éa", "aéb", "xyz", "xaybz",
        ] {
            let matching: Vec<usize> = (0..patterns.len())
                .filter(|&i| Glob::new(patterns[i]).unwrap().matches(tool))
                .collect();
            assert_eq!(found(&ix, tool), matching, "{tool}");
        }
    }

    #[test]
    fn rules_about_other_prefixes_are_not_candidates() {
        let mut ix = ToolIndex::default();
        for i in 0..10_000 {
            ix.add(&Glob::new(&format!("ns{i}_*")).unwrap(), allow(i));
        }
        assert_eq!(ix.count("get_weather"), 0);
        assert_eq!(found(&ix, "ns42_search"), vec![42]);
        assert_eq!(ix.prefix_lens, vec![4, 5, 6, 7]);
    }

    #[test]
    fn rules_that_start_with_a_wildcard_are_matched_from_the_index() {
        let mut ix = ToolIndex::default();
        for i in 0..1_000 {
            ix.add(&Glob::new(&format!("*_{i}x")).unwrap(), allow(i));
        }
        assert_eq!(ix.prefix_lens, vec![0]);
        assert_eq!(ix.count("get_weather"), 0);
        assert_eq!(found(&ix, "get_weather_7x"), vec![7]);
    }

    #[test]
    fn unwanted_rules_are_not_matched_or_found() {
        let ix = index(&[&["get_*"], &["*"], &["get_weather"], &["g*"]]);
        let asked = std::cell::RefCell::new(Vec::new());
        let got = std::cell::RefCell::new(Vec::new());
        ix.candidates(
            "get_weather",
            |r| {
                asked.borrow_mut().push(r.rule);
                r.rule < 2
            },
            |r| got.borrow_mut().push(r.rule),
        );
        let (mut asked, mut got) = (asked.into_inner(), got.into_inner());
        asked.sort_unstable();
        got.sort_unstable();
        assert_eq!(asked, vec![0, 1, 2, 3]);
        assert_eq!(got, vec![0, 1]);
    }
}
