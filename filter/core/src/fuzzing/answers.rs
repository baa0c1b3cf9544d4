//! Answer side: SSE splitting, message classification, list filtering, response filters.

use super::show;
use crate::json::{parse_list_answer, parse_strict};
use crate::jsonrpc::{parse_payload, Message, ParseRules};
use crate::response::answers::{classify, split, Kind, Messages, Outstanding};
use crate::response::content::{Filtered, Findings, RawResponseFilters, ResponseFilters};
use crate::response::lists::{filter_message, ids_match, ListItem, ListKind};
use crate::response::sse::{SseEvent, SseSplitter};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::fmt;
use std::sync::OnceLock;

/// What a client sees of an event: everything but its raw bytes.
fn meaning(e: &SseEvent) -> impl PartialEq + fmt::Debug + '_ {
    (e.lines(), e.event_type(), e.id(), e.data(), e.retry())
}

/// Splits `stream` pushed in pieces ending at `cuts`: the events, the leftover, and whether
/// the splitter refused (then the events are those before the refusal).
fn run(stream: &[u8], cuts: &[usize], limit: usize) -> (Vec<SseEvent>, Option<Vec<u8>>, bool) {
    let mut s = SseSplitter::new(limit);
    let mut events = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        let cut = cut.clamp(from, stream.len());
        match s.push(&stream[from..cut]) {
            Ok(more) => events.extend(more),
            Err(_) => return (events, None, true),
        }
        from = cut;
    }
    (events, s.finish(), false)
}

/// Chunk ends for `len` bytes, from a small deterministic generator.
fn cuts(seed: u8, len: usize) -> Vec<usize> {
    let mut state = u64::from(seed)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(len as u64 + 1);
    let max = usize::from(seed % 13) + 1;
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        at += 1 + (state as usize) % max;
        out.push(at.min(len));
    }
    out
}

/// The SSE splitter: input byte 0 seeds a chunking, the rest is the stream.
pub fn sse(data: &[u8]) {
    let (seed, stream) = data.split_first().map_or((0, &[][..]), |(s, r)| (*s, r));
    let (events, rest, failed) = run(stream, &[], usize::MAX);
    assert!(!failed);
    let mut joined: Vec<u8> = events.iter().flat_map(|e| e.raw().to_vec()).collect();
    joined.extend(rest.iter().flatten());
    assert_eq!(joined, stream, "raw bytes do not add up to the stream");
    let bytewise: Vec<usize> = (1..stream.len()).collect();
    for chunking in [bytewise, cuts(seed, stream.len())] {
        let (chunked, chunked_rest, failed) = run(stream, &chunking, usize::MAX);
        assert!(!failed);
        assert_eq!(
            events.iter().map(meaning).collect::<Vec<_>>(),
            chunked.iter().map(meaning).collect::<Vec<_>>(),
            "chunking changed the events of {}",
            show(stream)
        );
        let mut joined: Vec<u8> = chunked.iter().flat_map(|e| e.raw().to_vec()).collect();
        joined.extend(chunked_rest.iter().flatten());
        assert_eq!(
            joined, stream,
            "chunked raw bytes do not add up to the stream"
        );
    }
    // With a size limit: refused or not whatever the chunking, and the same events before.
    let limit = usize::from(seed) + 1;
    let (whole, _, whole_failed) = run(stream, &[], limit);
    let (pieces, _, pieces_failed) = run(stream, &cuts(seed, stream.len()), limit);
    assert_eq!(
        whole_failed,
        pieces_failed,
        "limit {limit} refused depending on chunking: {}",
        show(stream)
    );
    if !whole_failed {
        assert_eq!(whole.len(), events.len());
    }
    for (a, b) in pieces.iter().zip(&events) {
        assert_eq!(meaning(a), meaning(b));
    }
    // A rewritten event reads back as what it says.
    for e in &events {
        let Some(d) = e.data() else { continue };
        // Read back as the first event of a stream, as the gateway sends it.
        let first = |bytes: Vec<u8>| match e.starts_with_stray_bom() {
            true => [&b"\xEF\xBB\xBF"[..], &bytes].concat(),
            false => bytes,
        };
        let again = first(e.with_data(d));
        let (back, rest, _) = run(&again, &[], usize::MAX);
        assert!(
            rest.is_none(),
            "rewritten event incomplete: {}",
            show(&again)
        );
        assert_eq!(back.len(), 1, "rewritten event splits in {}", back.len());
        let b = &back[0];
        assert_eq!(
            (b.data(), b.event_type(), b.id(), b.retry()),
            (e.data(), e.event_type(), e.id(), e.retry()),
            "rewritten {} as {}",
            show(e.raw()),
            show(&again)
        );
        if e.id().is_none() {
            continue;
        }
        let id = "mwe1.k.sealed-id";
        let resealed = first(e.rewritten(Some(id), None));
        let (back, _, _) = run(&resealed, &[], usize::MAX);
        assert_eq!(back.len(), 1);
        assert_eq!((back[0].id(), back[0].data()), (Some(id), e.data()));
    }
}

/// The top-level members of an object as written (duplicates included).
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, &RawValue>()? {
                    out.push(entry);
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `classify` accepts a message only with the members and values its kind says.
fn check_classify(message: &[u8]) {
    let Ok(kind) = classify(message) else { return };
    let members: Members<'_> = serde_json::from_slice(message)
        .unwrap_or_else(|e| panic!("classified, yet not an object ({e}): {}", show(message)));
    let mut seen: Vec<&str> = Vec::new();
    for (k, _) in &members.0 {
        assert!(
            ["jsonrpc", "id", "method", "params", "result", "error"].contains(&k.as_str()),
            "unknown member `{k}` accepted: {}",
            show(message)
        );
        assert!(
            !seen.contains(&k.as_str()),
            "`{k}` twice: {}",
            show(message)
        );
        seen.push(k);
    }
    // A member that is `null` counts as absent (`"result": null` beside an `error`).
    let get = |k: &str| {
        members
            .0
            .iter()
            .find(|(m, v)| m == k && v.get() != "null")
            .map(|(_, v)| *v)
    };
    let value = |k: &str| get(k).map(|v| serde_json::from_str::<Value>(v.get()).expect("member"));
    assert_eq!(value("jsonrpc"), Some(json!("2.0")), "{}", show(message));
    let is_object = |k: &str| get(k).is_none_or(|v| v.get().starts_with('{'));
    assert!(is_object("params") && is_object("result") && is_object("error"));
    let id = value("id");
    let id_ok = |id: &Option<Value>| {
        matches!(id, Some(Value::String(_)))
            || matches!(id, Some(Value::Number(n)) if n.is_i64() || n.is_u64())
    };
    let (method, result, error) = (get("method"), get("result"), get("error"));
    match kind {
        Kind::Answer(v) => {
            assert!(method.is_none() && get("params").is_none());
            assert!(result.is_some() != error.is_some());
            assert!(id_ok(&id) && id == Some(v), "{}", show(message));
        }
        Kind::ErrorWithoutId => {
            assert!(method.is_none() && result.is_none() && error.is_some());
            assert!(matches!(id, None | Some(Value::Null)));
        }
        Kind::ServerRequest => {
            assert!(method.is_some() && result.is_none() && error.is_none());
            assert!(id_ok(&id), "{}", show(message));
        }
        Kind::Notification => {
            assert!(method.is_some() && result.is_none() && error.is_none() && id.is_none())
        }
    }
}

/// Message classification and bookkeeping of outstanding requests.
pub fn answers(data: &[u8]) {
    check_classify(data);
    match split(data) {
        Ok(Messages::Single(m)) => {
            assert_eq!(m, data);
            assert_eq!(data.iter().find(|b| !b.is_ascii_whitespace()), Some(&b'{'));
        }
        Ok(Messages::Batch(items)) => {
            for item in items {
                check_classify(item.get().as_bytes());
            }
        }
        Err(_) => {}
    }
    let rules = ParseRules {
        max_depth: 64,
        max_batch: 64,
        extra_methods: &[],
        strict_keys: true,
    };
    let Ok(payload) = parse_payload(data, &rules, true) else {
        return;
    };
    let outstanding = Outstanding::of(&payload);
    let text = serde_json::to_string(&outstanding).expect("serialises");
    let back: Outstanding = serde_json::from_str(&text).expect("reads back");
    assert_eq!(back, outstanding);
    let ids: Vec<Value> = payload
        .messages()
        .iter()
        .filter_map(|m| match m {
            Message::Request { id, .. } => Some(id.to_value()),
            _ => None,
        })
        .collect();
    for a in &ids {
        for b in &ids {
            assert_eq!(ids_match(a, b), ids_match(b, a), "{a} {b}");
        }
    }
    let mut o = outstanding.clone();
    let confusable = o.has_confusable_ids();
    for id in &ids {
        let claim = o.claim(id);
        assert!(claim.is_some() || confusable, "{id} not outstanding");
        if !confusable {
            assert_eq!(claim.map(|c| c.id), Some(id.clone()));
        }
    }
    for id in &ids {
        assert!(o.claim(id).is_none(), "{id} answered twice");
    }
    assert!(o.unanswered().is_empty());
}

/// Whether item keys `key` is kept by the `lists` target: a fixed, arbitrary decision.
fn keep_key(key: &str) -> bool {
    !key.contains('x') && key.len() % 3 != 1
}

/// The messages of a body: the elements of a batch, or the body.
fn messages(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        v => vec![v],
    }
}

/// List filtering: input byte 0 picks the list kind and the request id, the rest is the
/// upstream message.
pub fn lists(data: &[u8]) {
    let (ctl, message) = data.split_first().map_or((0, &[][..]), |(s, r)| (*s, r));
    let kind = [
        ListKind::Tools,
        ListKind::Prompts,
        ListKind::Resources,
        ListKind::ResourceTemplates,
    ][usize::from(ctl % 4)];
    let request_id =
        [json!(1), json!("1"), json!("a"), json!(-7)][usize::from((ctl >> 2) % 4)].clone();
    let mut kept: Vec<String> = Vec::new();
    let mut keep = |key: &str, item: &ListItem<'_>| {
        let value = item.value().expect("an item is JSON");
        assert_eq!(value.get(kind.item_key()), Some(&json!(key)));
        let yes = keep_key(key);
        if yes {
            kept.push(item.text().to_string());
        }
        yes
    };
    let answers = |v: &Value| {
        v.as_object().is_some_and(|o| {
            o.get("id").is_some_and(|id| ids_match(id, &request_id)) && o.contains_key("result")
        })
    };
    match filter_message(kind, message, &request_id, &mut keep) {
        Ok(Some(out)) => {
            let key = kind.array_key();
            let before = parse_list_answer(message, 120, key).expect("it was read");
            let after = parse_list_answer(&out, 120, key)
                .unwrap_or_else(|e| panic!("unreadable output {e:?}: {}", show(&out)));
            assert!(after.duplicate_keys.is_empty(), "{}", show(&out));
            assert_eq!(before.value, after.value, "more than the list changed");
            let all = messages(&after.value);
            for (i, text) in &after.lists {
                let filtered = all.get(*i).is_some_and(|m| answers(m));
                if filtered {
                    let items: Vec<&RawValue> = serde_json::from_str(text.text()).expect("array");
                    for item in items {
                        assert!(
                            kept.iter().any(|k| k == item.get()),
                            "forwarded {} which was not kept, from {}",
                            item.get(),
                            show(message)
                        );
                    }
                } else {
                    let original = before.lists.iter().find(|(j, _)| j == i).map(|(_, t)| t);
                    assert_eq!(original, Some(text), "an unfiltered list changed");
                }
            }
        }
        Ok(None) => {
            if let Ok(p) = parse_strict(message, 120) {
                assert!(
                    !messages(&p.value).into_iter().any(answers),
                    "an answer to the list request forwarded unfiltered: {}",
                    show(message)
                );
            }
        }
        Err(_) => {}
    }
}

/// The two filter configurations of the `content` target: (mark, block).
fn filters() -> &'static (ResponseFilters, ResponseFilters) {
    static FILTERS: OnceLock<(ResponseFilters, ResponseFilters)> = OnceLock::new();
    FILTERS.get_or_init(|| {
        let redact = json!([
            {"id": "api-key", "pattern": "sk-[A-Za-z0-9]{8,}"},
            {"id": "aws", "pattern": "AKIA[0-9A-Z]{16}", "replacement": "<aws key>"},
        ]);
        let compile = |injection: Value| {
            let raw: RawResponseFilters =
                serde_json::from_value(json!({"redact": redact, "injection": injection}))
                    .expect("filters parse");
            raw.compile("response_filters").expect("filters compile")
        };
        (
            compile(json!({"action": "mark"})),
            compile(json!({"action": "block"})),
        )
    })
}

const MARK_START: &str = "[mcp-warden: possible injected instructions";
const MARK_END: &str = "\n[mcp-warden: end of flagged text]";

/// The strings of a message the response filters read (`result`, `error`, `params`, without
/// the structural ones).
fn filtered_strings<'v>(m: &'v Value, out: &mut Vec<&'v str>) {
    fn walk<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(items) => items.iter().for_each(|x| walk(x, out)),
            Value::Object(obj) => {
                let binary = matches!(
                    obj.get("type").and_then(Value::as_str),
                    Some("image" | "audio")
                );
                for (k, v) in obj {
                    let structural = crate::response::content::STRUCTURAL_KEYS
                        .contains(&k.as_str())
                        || (binary && k == "data");
                    if !(structural && v.is_string()) {
                        walk(v, out);
                    }
                }
            }
            _ => {}
        }
    }
    if let Value::Object(obj) = m {
        for key in ["result", "error", "params"] {
            if let Some(v) = obj.get(key) {
                walk(v, out);
            }
        }
    }
}

/// Whether `text` alone, as a notification's parameter, passes `filters` untouched.
fn clean(filters: &ResponseFilters, text: &str) -> bool {
    let mut params = Map::new();
    params.insert("t".into(), Value::String(text.to_string()));
    let m = json!({"jsonrpc": "2.0", "method": "m", "params": params});
    let mut findings = Findings::default();
    let out = filters.filter(m.to_string().as_bytes(), "srv", 120, &mut findings);
    out == Ok(Filtered::Unchanged) && findings.is_empty()
}

/// Response filters with a fixed configuration (redactions, injection `mark` and `block`).
pub fn content(data: &[u8]) {
    let (mark, block) = filters();
    static FORGED: OnceLock<regex::Regex> = OnceLock::new();
    let forged = FORGED.get_or_init(|| regex::Regex::new(r"(?i)\[\s*mcp-warden").expect("regex"));
    for (filters, is_mark) in [(mark, true), (block, false)] {
        let mut findings = Findings::default();
        let out = match filters.filter(data, "srv", 120, &mut findings) {
            Err(_) => {
                assert!(parse_strict(data, 120).is_err(), "refused readable JSON");
                continue;
            }
            Ok(Filtered::Dropped) => continue,
            Ok(Filtered::Unchanged) => data.to_vec(),
            Ok(Filtered::Replaced(b)) => b,
        };
        let parsed = parse_strict(&out, 120)
            .unwrap_or_else(|e| panic!("unreadable output {e:?}: {}", show(&out)));
        assert!(parsed.duplicate_keys.is_empty(), "{}", show(&out));
        let mut again = Findings::default();
        let _ = filters.filter(&out, "srv", 120, &mut again);
        assert!(
            again.redacted.is_empty(),
            "{:?} left to redact in {}",
            again.redacted,
            show(&out)
        );
        if !is_mark {
            assert!(
                again.flagged.is_empty() && again.withheld == 0,
                "{:?} left to withhold in {}",
                again.flagged,
                show(&out)
            );
            continue;
        }
        let mut strings = Vec::new();
        for m in messages(&parsed.value) {
            filtered_strings(m, &mut strings);
        }
        for s in strings {
            let Some(inner) = s
                .strip_prefix(MARK_START)
                .and_then(|rest| rest.split_once("]\n"))
                .and_then(|(_, rest)| rest.strip_suffix(MARK_END))
            else {
                assert!(
                    clean(filters, s),
                    "unmarked flagged text {s:?} in {}",
                    show(&out)
                );
                continue;
            };
            assert!(
                !forged.is_match(inner),
                "a marker imitation survives inside flagged text {s:?}, from {}",
                show(data)
            );
        }
    }
}
