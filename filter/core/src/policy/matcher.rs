//! The building blocks of rule conditions: globs, argument conditions and time windows.

use serde_json::Value;
use std::collections::HashSet;

/// A glob over names: `*` matches any run of characters (also `/`), `?` exactly one.
/// A path glob ([`Glob::path`], for resource URIs) keeps within a path segment: there `*`
/// and `?` do not match `/`, and `**` matches any run of characters, `/` included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    literal: bool,
    /// A path glob.
    segments: bool,
}

impl Glob {
    /// Compiles a name pattern; an empty pattern is an error.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("pattern must not be empty".into());
        }
        Ok(Glob {
            pattern: pattern.to_string(),
            literal: !pattern.contains(['*', '?']),
            segments: false,
        })
    }

    /// Compiles a path pattern (resource URIs): `*` and `?` stay within a segment, `**`
    /// crosses `/`.
    pub fn path(pattern: &str) -> Result<Glob, String> {
        Ok(Glob {
            segments: true,
            ..Glob::new(pattern)?
        })
    }

    /// The pattern itself when it has no wildcard (used to index rules by tool name).
    pub fn literal(&self) -> Option<&str> {
        self.literal.then_some(self.pattern.as_str())
    }

    /// The text before the first wildcard: every name the pattern matches starts with it
    /// (the whole pattern when it has no wildcard).
    pub fn literal_prefix(&self) -> &str {
        let end = self.pattern.find(['*', '?']).unwrap_or(self.pattern.len());
        &self.pattern[..end]
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        if self.literal {
            return self.pattern == text;
        }
        if self.segments {
            return path_glob_match(self.pattern.as_bytes(), text.as_bytes());
        }
        glob_match(self.pattern.as_bytes(), text.as_bytes())
    }
}

/// A rule's list of globs (its tools, servers, methods, …): literal names in a hash set, so a
/// rule that names thousands of tools is checked in constant time; wildcard patterns in a list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Globs {
    all: Vec<Glob>,
    literals: HashSet<String>,
    patterns: Vec<Glob>,
}

impl Globs {
    /// The list, in configuration order.
    pub fn new(all: Vec<Glob>) -> Globs {
        let literals = all
            .iter()
            .filter_map(|g| g.literal().map(str::to_string))
            .collect();
        let patterns = all.iter().filter(|g| !g.literal).cloned().collect();
        Globs {
            all,
            literals,
            patterns,
        }
    }

    /// Whether the list is empty (no condition).
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The globs in configuration order.
    pub fn iter(&self) -> std::slice::Iter<'_, Glob> {
        self.all.iter()
    }

    /// Whether any glob matches `text` (never for an empty list).
    pub fn any_match(&self, text: &str) -> bool {
        self.literals.contains(text) || self.patterns.iter().any(|g| g.matches(text))
    }
}

/// Iterative glob matching with single-star backtracking: O(len(p) × len(t)) worst case.
/// The usual miss is decided first: the text must end with what follows the last `*`.
pub(super) fn glob_match(p: &[u8], t: &[u8]) -> bool {
    if let Some(last_star) = p.iter().rposition(|&c| c == b'*') {
        let tail = p.get(last_star + 1..).unwrap_or_default();
        let ends_alike = t.len() >= tail.len()
            && tail
                .iter()
                .zip(&t[t.len() - tail.len()..])
                .all(|(pc, tc)| *pc == b'?' || pc == tc);
        if !ends_alike {
            return false;
        }
    }
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(b'?') => {
                pi += 1;
                ti += 1;
            }
            Some(c) if *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// One element of a path glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathToken {
    /// This byte.
    Byte(u8),
    /// `?`: one byte other than `/`.
    One,
    /// `*`: a run of bytes other than `/`.
    Segment,
    /// `**` (or more stars): any run of bytes.
    Any,
}

/// Path glob matching ([`Glob::path`]): the pattern's positions reachable after each byte of
/// the text, O(len(p) × len(t)) whatever the pattern. Bytes, not chars: `/` never occurs
/// inside a multi-byte UTF-8 char, and `?` is meant for ASCII names.
pub(super) fn path_glob_match(p: &[u8], t: &[u8]) -> bool {
    let mut tokens = Vec::with_capacity(p.len());
    let mut i = 0;
    while let Some(&c) = p.get(i) {
        let token = match c {
            b'*' => {
                let run = p[i..].iter().take_while(|&&b| b == b'*').count();
                i += run - 1;
                if run == 1 {
                    PathToken::Segment
                } else {
                    PathToken::Any
                }
            }
            b'?' => PathToken::One,
            c => PathToken::Byte(c),
        };
        tokens.push(token);
        i += 1;
    }
    let n = tokens.len();
    // A position before a star also reaches the position after it (the star matches nothing).
    let close = |states: &mut [bool]| {
        for k in 0..n {
            if states[k] && matches!(tokens[k], PathToken::Segment | PathToken::Any) {
                states[k + 1] = true;
            }
        }
    };
    let mut current = vec![false; n + 1];
    let mut next = vec![false; n + 1];
    current[0] = true;
    close(&mut current);
    for &b in t {
        next.iter_mut().for_each(|s| *s = false);
        let mut any = false;
        for k in 0..n {
            if !current[k] {
                continue;
            }
            let (stay, advance) = match tokens[k] {
                PathToken::Byte(c) => (false, c == b),
                PathToken::One => (false, b != b'/'),
                PathToken::Segment => (b != b'/', false),
                PathToken::Any => (true, false),
            };
            next[k] |= stay;
            next[k + 1] |= advance;
            any |= stay || advance;
        }
        if !any {
            return false;
        }
        close(&mut next);
        std::mem::swap(&mut current, &mut next);
    }
    current[n]
}

/// What an argument condition tests.
#[derive(Debug, Clone)]
pub enum ArgOp {
    /// Equal to this JSON value.
    Equals(Value),
    /// Equal to one of these.
    OneOf(Vec<Value>),
    /// A string with this prefix.
    Prefix(String),
    /// A string matching this regex.
    Regex(Box<regex::Regex>),
    /// A number within [min, max] (either bound optional).
    Range(Option<f64>, Option<f64>),
    /// Absent (`true`) or present (`false`).
    Absent(bool),
}

/// A condition on one argument.
#[derive(Debug, Clone)]
pub struct ArgCondition {
    /// JSON Pointer into the call's arguments.
    pub path: String,
    /// The test.
    pub op: ArgOp,
}

impl ArgCondition {
    /// Whether the condition holds for these arguments (absent arguments = empty object), for
    /// every way a server may read them ([`ArgCondition::holds_for`] of an allow rule).
    pub fn holds(&self, arguments: Option<&Value>) -> bool {
        self.holds_for(arguments, false)
    }

    /// Whether the condition holds for these arguments as a server reads them: by exact key,
    /// or case-insensitively (Go's `encoding/json`: `{"TABLE": …}` fills `table`). When the two
    /// readings find different values (a key spelled in another case only; `strict_keys`
    /// refuses objects holding both spellings), `any_reading` (deny rules) asks that one of
    /// them holds, else (allow rules) that both do.
    pub fn holds_for(&self, arguments: Option<&Value>, any_reading: bool) -> bool {
        let exact = arguments.and_then(|a| a.pointer(&self.path));
        let folded = arguments.and_then(|a| pointer_folded(a, &self.path));
        let same = match (exact, folded) {
            (Some(x), Some(y)) => std::ptr::eq(x, y),
            (None, None) => true,
            _ => false,
        };
        if same {
            self.test(exact)
        } else if any_reading {
            self.test(exact) || self.test(folded)
        } else {
            self.test(exact) && self.test(folded)
        }
    }

    fn test(&self, value: Option<&Value>) -> bool {
        match (&self.op, value) {
            (ArgOp::Absent(absent), v) => v.is_none() == *absent,
            (_, None) => false,
            (ArgOp::Equals(want), Some(v)) => json_eq(want, v),
            (ArgOp::OneOf(list), Some(v)) => list.iter().any(|w| json_eq(w, v)),
            (ArgOp::Prefix(p), Some(Value::String(s))) => s.starts_with(p.as_str()),
            (ArgOp::Regex(re), Some(Value::String(s))) => re.is_match(s),
            (ArgOp::Range(lo, hi), Some(Value::Number(n))) => n
                .as_f64()
                .is_some_and(|x| lo.is_none_or(|lo| x >= lo) && hi.is_none_or(|hi| x <= hi)),
            _ => false,
        }
    }
}

/// [`Value::pointer`] where an object member is found by its exact key or, failing that, by a
/// key equal to it once case-folded.
fn pointer_folded<'v>(value: &'v Value, pointer: &str) -> Option<&'v Value> {
    if pointer.is_empty() {
        return Some(value);
    }
    let rest = pointer.strip_prefix('/')?;
    rest.split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .try_fold(value, |v, token| match v {
            Value::Object(o) => o.get(&token).or_else(|| {
                o.iter()
                    .find(|(k, _)| crate::json::fold_eq(k, &token))
                    .map(|(_, v)| v)
            }),
            Value::Array(a) => {
                // As Value::pointer: no sign, no leading zero.
                let plain = !token.starts_with('+') && (token == "0" || !token.starts_with('0'));
                token
                    .parse::<usize>()
                    .ok()
                    .filter(|_| plain)
                    .and_then(|i| a.get(i))
            }
            _ => None,
        })
}

/// JSON equality where numbers compare by value (1 == 1.0).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A weekly time window in a named time zone.
#[derive(Debug, Clone)]
pub struct TimeWindow {
    days: u8,
    minutes: Option<(u16, u16)>,
    tz: jiff::tz::TimeZone,
    tz_name: String,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

impl TimeWindow {
    /// Builds a window; errors name the sub-field (`weekdays`, `hours`, `timezone`).
    pub fn new(
        weekdays: &[String],
        hours: Option<&str>,
        tz: &str,
    ) -> Result<TimeWindow, (&'static str, String)> {
        let mut days = 0u8;
        for d in weekdays {
            let i = DAYS.iter().position(|x| x.eq_ignore_ascii_case(d)).ok_or((
                "weekdays",
                format!("`{d}` is not one of mon, tue, wed, thu, fri, sat, sun"),
            ))?;
            days |= 1 << i;
        }
        if weekdays.is_empty() {
            days = 0x7f;
        }
        let minutes = match hours {
            None => None,
            Some(h) => {
                let parsed = h
                    .split_once('-')
                    .and_then(|(a, b)| Some((parse_hhmm(a)?, parse_hhmm(b)?)));
                match parsed {
                    Some((a, b)) if a != b => Some((a, b)),
                    _ => {
                        return Err((
                            "hours",
                            format!("`{h}` is not HH:MM-HH:MM with different ends"),
                        ))
                    }
                }
            }
        };
        let zone = jiff::tz::TimeZone::get(tz)
            .map_err(|_| ("timezone", format!("unknown time zone `{tz}`")))?;
        Ok(TimeWindow {
            days,
            minutes,
            tz: zone,
            tz_name: tz.to_string(),
        })
    }

    /// The zone's name.
    pub fn timezone(&self) -> &str {
        &self.tz_name
    }

    /// Whether `now` (seconds since the epoch) lies in the window.
    pub fn contains(&self, now: u64) -> bool {
        let Ok(ts) = jiff::Timestamp::from_second(i64::try_from(now).unwrap_or(i64::MAX)) else {
            return false;
        };
        let local = ts.to_zoned(self.tz.clone());
        let day = local.weekday().to_monday_zero_offset();
        let minute =
            u16::from(local.hour().unsigned_abs()) * 60 + u16::from(local.minute().unsigned_abs());
        match self.minutes {
            None => self.days & (1 << day) != 0,
            Some((start, end)) if start < end => {
                self.days & (1 << day) != 0 && minute >= start && minute < end
            }
            Some((start, end)) => {
                // Wraps midnight: the part after midnight belongs to the previous day's window.
                if minute >= start {
                    self.days & (1 << day) != 0
                } else if minute < end {
                    let prev = (day + 6) % 7;
                    self.days & (1 << prev) != 0
                } else {
                    false
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Found by fuzzing (see `json::tests::numbers_are_read_correctly_rounded`): a number that
    /// servers read as just above `max` is above it here too.
    /// Every word of up to `max` symbols over `alphabet`, the empty one included.
    fn words(alphabet: &[u8], max: usize) -> Vec<Vec<u8>> {
        let mut all: Vec<Vec<u8>> = vec![Vec::new()];
        let mut last: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|w| {
                    alphabet.iter().map(move |c| {
                        let mut w = w.clone();
                        w.push(*c);
                        w
                    })
                })
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn ranges_read_numbers_as_servers_do() {
        let c = ArgCondition {
            path: "/n".into(),
            op: ArgOp::Range(None, Some(100.0)),
        };
        let text = r#"{"n":100.000000000000007105427357601001858711242675781250000000000001}"#;
        let args: Value = serde_json::from_str(text).unwrap();
        assert!(!c.holds(Some(&args)));
        assert!(c.holds(Some(&json!({"n": 100}))));
    }

    #[test]
    fn glob_lists_match_literals_and_patterns() {
        let list = |ps: &[&str]| Globs::new(ps.iter().map(|p| Glob::new(p).unwrap()).collect());
        let many: Vec<String> = (0..2_500).map(|i| format!("tool_{i}")).collect();
        let refs: Vec<&str> = many
            .iter()
            .map(String::as_str)
            .chain(["files/*", "get_?"])
            .collect();
        let l = list(&refs);
        assert!(!l.is_empty());
        assert_eq!(l.iter().count(), 2_502);
        for yes in ["tool_0", "tool_2499", "files/a/b", "get_x"] {
            assert!(l.any_match(yes), "{yes}");
        }
        for no in ["tool_2500", "tool_", "files", "get_xy", ""] {
            assert!(!l.any_match(no), "{no}");
        }
        let empty = list(&[]);
        assert!(empty.is_empty() && !empty.any_match("x"));
    }

    #[test]
    fn globs() {
        let g = |p: &str| Glob::new(p).unwrap();
        assert!(g("delete_file").matches("delete_file"));
        assert!(!g("delete_file").matches("delete_files"));
        assert!(g("files/*").matches("files/a/b"));
        assert!(g("*_file").matches("delete_file"));
        assert!(g("a*b*c").matches("axxbyyc"));
        assert!(!g("a*b*c").matches("axxbyy"));
        assert!(g("?at").matches("cat"));
        assert!(g("*").matches(""));
        assert_eq!(g("x").literal(), Some("x"));
        assert_eq!(g("x*").literal(), None);
        assert!(Glob::new("").is_err());
        // Pathological patterns stay fast.
        let long = "a".repeat(5000);
        assert!(!g("*a*a*a*a*a*b").matches(&long));
    }

    /// Glob semantics written the slow, obvious way.
    fn reference(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, _) => t.is_empty(),
            (Some(b'*'), _) => reference(&p[1..], t) || (!t.is_empty() && reference(p, &t[1..])),
            (Some(b'?'), Some(_)) => reference(&p[1..], &t[1..]),
            (Some(c), Some(d)) if c == d => reference(&p[1..], &t[1..]),
            _ => false,
        }
    }

    #[test]
    fn glob_matching_agrees_with_the_obvious_definition() {
        // Every pattern of up to 4 symbols over {a, b, *, ?} against every text of up to 4
        // letters over {a, b}.
        for p in words(b"ab*?", 4) {
            for t in words(b"ab", 4) {
                assert_eq!(
                    glob_match(&p, &t),
                    reference(&p, &t),
                    "{} vs {}",
                    String::from_utf8_lossy(&p),
                    String::from_utf8_lossy(&t)
                );
            }
        }
    }

    #[test]
    fn path_globs_keep_within_segments() {
        let g = |p: &str| Glob::path(p).unwrap();
        assert!(g("file:///srv/shared/*").matches("file:///srv/shared/a.txt"));
        assert!(g("file:///srv/shared/*").matches("file:///srv/shared/"));
        assert!(!g("file:///srv/shared/*").matches("file:///srv/shared/a/b"));
        assert!(!g("file:///srv/shared/*").matches("file:///srv/shared/../../etc/passwd"));
        assert!(g("file:///srv/shared/**").matches("file:///srv/shared/a/b"));
        assert!(g("file:///srv/**/x").matches("file:///srv/a/b/x"));
        assert!(g("file:///srv/**/x").matches("file:///srv//x"));
        assert!(!g("file:///srv/**/x").matches("file:///srv/x"));
        assert!(g("demo://**").matches("demo://items/{id}"));
        assert!(!g("demo://*").matches("demo://items/{id}"));
        assert!(g("demo://*").matches("demo://readme"));
        assert!(g("demo://items/?").matches("demo://items/7"));
        assert!(!g("demo://items?7").matches("demo://items/7"));
        assert!(g("file://***").matches("file:///etc/passwd"));
        assert!(g("*").matches("readme") && !g("*").matches("a/b"));
        assert_eq!(g("demo://readme").literal(), Some("demo://readme"));
        // Pathological patterns stay fast.
        let long = "a".repeat(5000);
        assert!(!g("*a*a*a*a*a*b").matches(&long));
        assert!(!g("**a**a**a**a**a**b").matches(&long));
    }

    /// Path glob semantics written the slow, obvious way.
    fn path_reference(p: &[u8], t: &[u8]) -> bool {
        if p.starts_with(b"**") {
            let rest = &p[p.iter().take_while(|&&b| b == b'*').count()..];
            return (0..=t.len()).any(|i| path_reference(rest, &t[i..]));
        }
        match (p.first(), t.first()) {
            (None, _) => t.is_empty(),
            (Some(b'*'), _) => {
                path_reference(&p[1..], t)
                    || (t.first().is_some_and(|&c| c != b'/') && path_reference(p, &t[1..]))
            }
            (Some(b'?'), Some(&c)) => c != b'/' && path_reference(&p[1..], &t[1..]),
            (Some(c), Some(d)) if c == d => path_reference(&p[1..], &t[1..]),
            _ => false,
        }
    }

    #[test]
    fn path_glob_matching_agrees_with_the_obvious_definition() {
        for p in words(b"a/*?", 5) {
            for t in words(b"a/", 5) {
                assert_eq!(
                    path_glob_match(&p, &t),
                    path_reference(&p, &t),
                    "{} vs {}",
                    String::from_utf8_lossy(&p),
                    String::from_utf8_lossy(&t)
                );
            }
        }
    }

    #[test]
    fn argument_conditions() {
        let args = json!({"query": "SELECT * FROM customers", "limit": 10, "opts": {"dry": true}});
        let c = |path: &str, op: ArgOp| {
            ArgCondition {
                path: path.into(),
                op,
            }
            .holds(Some(&args))
        };
        assert!(c("/limit", ArgOp::Equals(json!(10.0))));
        assert!(c("/opts/dry", ArgOp::Equals(json!(true))));
        assert!(c("/limit", ArgOp::OneOf(vec![json!(5), json!(10)])));
        assert!(c("/query", ArgOp::Prefix("SELECT".into())));
        let re = regex::Regex::new(r"(?i)^\s*select\b[^;]*$").unwrap();
        assert!(c("/query", ArgOp::Regex(Box::new(re.clone()))));
        assert!(c("/limit", ArgOp::Range(Some(1.0), Some(10.0))));
        assert!(!c("/limit", ArgOp::Range(None, Some(9.0))));
        assert!(c("/missing", ArgOp::Absent(true)));
        assert!(!c("/limit", ArgOp::Absent(true)));
        assert!(c("/limit", ArgOp::Absent(false)));
        // Type mismatches never hold.
        assert!(!c("/limit", ArgOp::Prefix("1".into())));
        assert!(!c("/query", ArgOp::Range(None, None)));
        assert!(!c("/missing", ArgOp::Equals(json!(null))));
        let evil = json!({"query": "SELECT 1; DROP TABLE customers"});
        assert!(!ArgCondition {
            path: "/query".into(),
            op: ArgOp::Regex(Box::new(re))
        }
        .holds(Some(&evil)));
        assert!(!ArgCondition {
            path: "/query".into(),
            op: ArgOp::Prefix("S".into())
        }
        .holds(None));
    }

    #[test]
    fn argument_keys_in_another_case_count_for_deny_rules_and_against_allow_rules() {
        let c = |path: &str, op: ArgOp| ArgCondition {
            path: path.into(),
            op,
        };
        let financials = c(
            "/table",
            ArgOp::Regex(Box::new(regex::Regex::new("(?i)financials").unwrap())),
        );
        let customers = c("/table", ArgOp::Equals(json!("customers")));
        let no_force = c("/opts/force", ArgOp::Absent(true));
        for (args, deny_financials, allow_customers, allow_no_force) in [
            (json!({"table": "financials"}), true, false, true),
            (json!({"TABLE": "financials"}), true, false, true),
            (json!({"Table": "customers"}), false, false, true),
            (json!({"table": "customers"}), false, true, true),
            (
                json!({"table": "customers", "opts": {"FORCE": true}}),
                false,
                true,
                false,
            ),
            (
                json!({"table": "customers", "OPTS": {"force": true}}),
                false,
                true,
                false,
            ),
            (
                json!({"table": "customers", "opts": {"force": true}}),
                false,
                true,
                false,
            ),
            (json!({"tab\u{212A}": "financials"}), false, false, true),
        ] {
            assert_eq!(
                financials.holds_for(Some(&args), true),
                deny_financials,
                "{args}"
            );
            assert_eq!(
                customers.holds_for(Some(&args), false),
                allow_customers,
                "{args}"
            );
            assert_eq!(
                no_force.holds_for(Some(&args), false),
                allow_no_force,
                "{args}"
            );
        }
        // Arrays are indexed as by Value::pointer.
        let args = json!({"Rows": [{"ID": 1}, {"id": 2}]});
        let row = |p: &str| c(p, ArgOp::Equals(json!(2))).holds_for(Some(&args), true);
        assert!(row("/rows/1/id") && !row("/rows/0/id"));
        assert!(!c("/rows/5/id", ArgOp::Absent(false)).holds_for(Some(&args), true));
        assert!(c("/rows/0/id", ArgOp::Equals(json!(1))).holds_for(Some(&args), true));
    }

    #[test]
    fn time_windows_follow_the_zone_and_dst() {
        let days: Vec<String> = ["mon", "tue", "wed", "thu", "fri"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let w = TimeWindow::new(&days, Some("09:00-17:00"), "Europe/Berlin").unwrap();
        // 2026-01-05 is a Monday. 08:30 UTC = 09:30 CET.
        assert!(w.contains(1_767_601_800));
        // 16:30 UTC = 17:30 CET: closed.
        assert!(!w.contains(1_767_630_600));
        // 2026-07-06 (Monday) 07:30 UTC = 09:30 CEST (summer time).
        assert!(w.contains(1_783_323_000));
        // Saturday 2026-01-10 10:00 UTC.
        assert!(!w.contains(1_768_039_200));
        let night = TimeWindow::new(&["fri".to_string()], Some("22:00-06:00"), "UTC").unwrap();
        // Saturday 2026-01-10 02:00 UTC belongs to Friday night.
        assert!(night.contains(1_768_010_400));
        assert!(TimeWindow::new(&["funday".into()], None, "UTC").is_err());
        assert!(TimeWindow::new(&[], Some("9-17"), "UTC").is_err());
        assert!(TimeWindow::new(&[], Some("09:00-09:00"), "UTC").is_err());
        assert!(TimeWindow::new(&[], None, "Mars/Olympus").is_err());
    }
}
