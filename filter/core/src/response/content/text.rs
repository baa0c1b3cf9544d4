//! One message's (or one plain text's) walk over its strings and keys.
//!
//! For each string, in this order:
//! 1. **Redaction**, for text that is not plain ASCII first on its normalised views
//!    ([`unicode::fold`], hidden characters left out; [`unicode::fold_spaced`], read as
//!    spaces): a match in a view replaces the original characters it came from, hidden ones
//!    inside included (a secret split by zero-width spaces or spelled in tag characters is
//!    removed whole); then on the text as it is.
//! 2. **Injection** patterns are matched against both views and the text as it is (a pattern
//!    the operator wrote with non-ASCII characters still matches).
//! 3. Flagged text is marked ([`marker::mark`]: defused, invisible characters shown); any other
//!    text loses its TAG characters ([`unicode::strip_tags`]): they have no use in MCP text
//!    but emoji flags, which are kept, and hide text from people while models read it.
//!
//! Plain ASCII text (the usual case) takes none of the Unicode steps: one byte scan decides.

use super::keys;
use super::marker::mark;
use super::unicode::{self, fold, is_plain, replace_mapped, Folded};
use super::{Findings, InjectionAction, ResponseFilters, LONG_TEXT, STRUCTURAL_KEYS};
use regex::NoExpand;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// JSON-RPC members whose string values are never changed (the client matches on them).
const RPC_KEYS: &[&str] = &["jsonrpc", "id", "method"];

/// What the walk found and changed.
pub(super) struct Text<'a> {
    filters: &'a ResponseFilters,
    server: &'a str,
    /// Injection pattern ids that matched, in order of first match.
    pub flagged: Vec<String>,
    /// Matches replaced, per redaction rule id.
    pub redacted: BTreeMap<String, usize>,
    /// Tag characters removed.
    pub hidden: usize,
    /// Whether anything was changed.
    pub changed: bool,
}

impl<'a> Text<'a> {
    pub fn new(filters: &'a ResponseFilters, server: &'a str) -> Self {
        Text {
            filters,
            server,
            flagged: Vec::new(),
            redacted: BTreeMap::new(),
            hidden: 0,
            changed: false,
        }
    }

    /// A message's members: every value but the string values of `jsonrpc`, `id` and
    /// `method`, and every key that is not a protocol name.
    pub fn message(&mut self, obj: &mut Map<String, Value>) {
        self.members(obj, |k| RPC_KEYS.contains(&k));
    }

    /// Adds what was found to `findings`.
    pub fn report(&self, findings: &mut Findings) {
        for (id, n) in &self.redacted {
            *findings.redacted.entry(id.clone()).or_default() += n;
        }
        for id in &self.flagged {
            findings.flag(id);
        }
        findings.hidden += self.hidden;
    }

    fn walk(&mut self, v: &mut Value) {
        match v {
            Value::String(s) => {
                if let Some(new) = self.text(s) {
                    *s = new;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|x| self.walk(x)),
            Value::Object(obj) => {
                let binary = matches!(
                    obj.get("type").and_then(Value::as_str),
                    Some("image" | "audio")
                );
                self.members(obj, |k| {
                    STRUCTURAL_KEYS.contains(&k) || (binary && k == "data")
                });
            }
            _ => {}
        }
    }

    /// Walks the members of `obj`, leaving the string values of the keys `skip` names, and
    /// renames keys whose text the filters changed.
    fn members(&mut self, obj: &mut Map<String, Value>, skip: impl Fn(&str) -> bool) {
        let mut renames = Vec::new();
        for (k, v) in obj.iter_mut() {
            if !(v.is_string() && skip(k)) {
                self.walk(v);
            }
            if !keys::is_protocol_key(k) {
                if let Some(new) = self.text(k) {
                    renames.push((k.clone(), new));
                }
            }
        }
        if !renames.is_empty() {
            keys::rename(obj, renames);
        }
    }

    /// Filters one string: its replacement, or None when it stays as it is.
    pub fn text(&mut self, s: &str) -> Option<String> {
        let f = self.filters;
        let mut out = Cow::Borrowed(s);
        let mut plain = is_plain(s);
        let mut views = Views::of(s, plain);
        if !f.redactions.is_empty() && self.redact(&mut out, &views) {
            plain = is_plain(&out);
            views = Views::of(&out, plain);
        }
        let rule = self.detect(&out, &views);
        let mark_it = f
            .injection
            .as_ref()
            .is_some_and(|i| i.action == InjectionAction::Mark);
        match rule {
            Some(rule) if mark_it => out = Cow::Owned(mark(&out, &rule, self.server)),
            _ if views.tags => {
                if let Some((stripped, n)) = unicode::strip_tags(&out) {
                    self.hidden += n;
                    out = Cow::Owned(stripped);
                }
            }
            _ => {}
        }
        match out {
            Cow::Borrowed(_) => None,
            Cow::Owned(new) => {
                self.changed = true;
                Some(new)
            }
        }
    }

    fn count(&mut self, id: &str, n: usize) {
        *self.redacted.entry(id.to_string()).or_default() += n;
    }

    /// Redaction: on the normalised views first (a secret is removed whole, whatever hides
    /// inside it), then on the text as it is (a pattern that only matches there). Whether
    /// anything was replaced.
    fn redact(&mut self, s: &mut Cow<'_, str>, views: &Views) -> bool {
        let f = self.filters;
        let mut changed = false;
        if let Some(v) = &views.folded {
            changed |= self.redact_view(s, v, fold);
        }
        match &views.spaced {
            Some(v) if !changed => changed |= self.redact_view(s, v, unicode::fold_spaced),
            Some(_) => {
                if let Some(v) = unicode::fold_spaced(s) {
                    self.redact_view(s, &v, unicode::fold_spaced);
                }
            }
            None => {}
        }
        // `is_match` stops at the first hit; most text has none.
        if f.redaction_set.is_match(s) {
            for i in f.redaction_set.matches(s).iter() {
                let Some(r) = f.redactions.get(i) else {
                    continue;
                };
                let n = r.regex.find_iter(s).count();
                if n > 0 {
                    self.count(&r.id, n);
                    let new = r
                        .regex
                        .replace_all(s, NoExpand(r.replacement.as_str()))
                        .into_owned();
                    *s = Cow::Owned(new);
                    changed = true;
                }
            }
        }
        changed
    }

    /// Redaction on `first`, the view `view` makes of `s`, each match mapped back to `s` (the
    /// view is made again after a replacement). Whether anything was replaced.
    fn redact_view(
        &mut self,
        s: &mut Cow<'_, str>,
        first: &Folded,
        view: fn(&str) -> Option<Folded>,
    ) -> bool {
        let f = self.filters;
        if !f.redaction_set.is_match(&first.text) {
            return false;
        }
        let hits = f.redaction_set.matches(&first.text);
        let mut again: Option<Folded> = None;
        let mut changed = false;
        for i in hits.iter() {
            let Some(r) = f.redactions.get(i) else {
                continue;
            };
            if changed {
                again = view(s);
            }
            let folded = match (&again, changed) {
                (_, false) => first,
                (Some(v), true) => v,
                (None, true) => break,
            };
            let found: Vec<(usize, usize)> = r
                .regex
                .find_iter(&folded.text)
                .map(|m| (m.start(), m.end()))
                .collect();
            if found.is_empty() {
                continue;
            }
            let mut new = s.to_string();
            let n = replace_mapped(&mut new, folded, found.into_iter(), &r.replacement);
            self.count(&r.id, n);
            *s = Cow::Owned(new);
            changed = true;
        }
        changed
    }

    /// The first injection pattern matching `s` or one of its views; every match is recorded.
    fn detect(&mut self, s: &str, views: &Views) -> Option<String> {
        let inj = self.filters.injection.as_ref()?;
        let mut first: Option<&str> = None;
        let views =
            [views.folded.as_ref(), views.spaced.as_ref()].map(|v| v.map(|f| f.text.as_str()));
        for text in views.into_iter().chain([Some(s)]).flatten() {
            if text.len() < LONG_TEXT && !inj.set.is_match(text) {
                continue;
            }
            for (id, re) in &inj.patterns {
                if re.is_match(text) {
                    first.get_or_insert(id);
                    if !self.flagged.contains(id) {
                        self.flagged.push(id.clone());
                    }
                }
            }
        }
        first.map(str::to_string)
    }
}

/// The two views of a string ([`fold`], [`unicode::fold_spaced`]), each None where it is the
/// string itself, and whether the string has TAG characters.
struct Views {
    folded: Option<Folded>,
    spaced: Option<Folded>,
    tags: bool,
}

impl Views {
    fn of(s: &str, plain: bool) -> Self {
        let found = if plain {
            unicode::Scan::default()
        } else {
            unicode::scan(s)
        };
        Views {
            folded: if found.foldable { fold(s) } else { None },
            spaced: if found.hidden {
                unicode::fold_spaced(s)
            } else {
                None
            },
            tags: found.tags,
        }
    }
}
