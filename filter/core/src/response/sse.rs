//! Incremental Server-Sent Events splitting for `text/event-stream` responses.
//!
//! Follows the event stream interpretation of the HTML Living Standard (§9.2.6): lines end at
//! `\r\n`, `\n` or `\r` (mixed freely), a blank line ends an event, a line starting with `:` is
//! a comment, `field: value` loses one space after the colon, a leading UTF-8 BOM is dropped at
//! stream start only. Field text is decoded as UTF-8 with replacement characters, as the
//! standard requires of every client.
//!
//! [`SseSplitter`] never changes bytes: every byte pushed ends up in exactly one
//! [`SseEvent::raw`] or in the leftover returned by [`SseSplitter::finish`], in order. Events are
//! handed out as soon as the byte ending their blank line arrives, so streaming adds no delay.
//! When that byte is a `\r` that ends its chunk, the `\n` that may follow (the second half of a
//! `\r\n`) can only be known later; it is then kept as the first byte of the next event's raw
//! bytes, where parsing skips it. Chunk boundaries therefore never change what is parsed.

use std::fmt;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why the stream cannot be split further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// One event (its lines and line endings) is longer than the limit. The splitter keeps
    /// refusing after this: the rest of the stream cannot be framed safely.
    EventTooLarge {
        /// The configured `max_event_bytes`.
        limit: usize,
    },
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::EventTooLarge { limit } => {
                write!(f, "server-sent event larger than {limit} bytes")
            }
        }
    }
}

impl std::error::Error for SseError {}

/// One line of an event, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseLine {
    /// `:text` (the text after the colon, unchanged).
    Comment(String),
    /// `name: value` (one space after the colon removed; a line without colon has an empty
    /// value). Unknown field names are kept too.
    Field {
        /// The field name.
        name: String,
        /// The field value.
        value: String,
    },
}

/// One complete event: its exact bytes and what they mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    raw: Vec<u8>,
    bom: bool,
    lines: Vec<SseLine>,
    event_type: Option<String>,
    id: Option<String>,
    data: Option<String>,
    retry: Option<u64>,
}

impl SseEvent {
    /// The exact bytes of the event, up to and including the line ending of its blank line
    /// (including a stream-start BOM, or the `\n` half of a `\r\n` split from the previous
    /// event). Forward these to leave the event untouched.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Takes the raw bytes out of the event.
    pub fn into_raw(self) -> Vec<u8> {
        self.raw
    }

    /// The lines of the event in order (comments and fields, without the blank line).
    pub fn lines(&self) -> &[SseLine] {
        &self.lines
    }

    /// The value of the last `event` field (`None` if there is none; clients treat a missing or
    /// empty type as `message`).
    pub fn event_type(&self) -> Option<&str> {
        self.event_type.as_deref()
    }

    /// The value of the last `id` field without U+0000 (`Some("")` resets the last event id).
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The `data` lines joined with `\n`; `None` when the event has no `data` field (then
    /// clients dispatch nothing), `Some("")` for a single empty `data:` line.
    pub fn data(&self) -> Option<&str> {
        self.data.as_deref()
    }

    /// The value of the last `retry` field made only of ASCII digits (and fitting a `u64`).
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Whether the event has lines and every one is a comment (such as `: keep-alive`).
    pub fn is_comment_only(&self) -> bool {
        !self.lines.is_empty() && self.lines.iter().all(|l| matches!(l, SseLine::Comment(_)))
    }

    /// Whether the event's bytes start with a BOM that is not the stream's (its first line's
    /// name then starts with U+FEFF). A client drops a BOM at the start of its stream only: such
    /// an event must not become the first bytes a client gets, or it reads another line.
    pub fn starts_with_stray_bom(&self) -> bool {
        !self.bom && self.raw.starts_with(BOM)
    }

    /// Whether the event has no line at all (a lone blank line).
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Serialises the event again with `new_data` as its data: one `data:` line per line of
    /// `new_data` (split at `\r\n`, `\n` or `\r`) where the first `data` line was (at the end
    /// if there was none), every other line kept in order, `\n` line endings, then a blank
    /// line. A stream-start BOM is kept; a split-off `\n` half is not (the previous event's
    /// `\r` already ended its line).
    pub fn with_data(&self, new_data: &str) -> Vec<u8> {
        self.rewritten(None, Some(new_data))
    }

    /// Serialises the event again like [`SseEvent::with_data`], with `new_id` (when given) as
    /// its only `id` field (where the first one was) and `new_data` (when given) as its data.
    /// `new_id` must not hold a line break or U+0000 (a sealed id never does).
    pub fn rewritten(&self, new_id: Option<&str>, new_data: Option<&str>) -> Vec<u8> {
        let extra = new_data.map_or(0, str::len) + new_id.map_or(0, str::len);
        let mut out = Vec::with_capacity(self.raw.len() + extra + 16);
        if self.bom {
            out.extend_from_slice(BOM);
        }
        let mut data_written = false;
        let mut id_written = false;
        for line in &self.lines {
            match line {
                SseLine::Comment(text) => {
                    out.push(b':');
                    out.extend_from_slice(text.as_bytes());
                    out.push(b'\n');
                }
                SseLine::Field { name, value } if name == "data" => match new_data {
                    Some(d) if !data_written => {
                        write_data(&mut out, d);
                        data_written = true;
                    }
                    Some(_) => {}
                    None => write_field(&mut out, name, value),
                },
                SseLine::Field { name, value } if name == "id" => match new_id {
                    Some(id) if !id_written => {
                        write_field(&mut out, "id", id);
                        id_written = true;
                    }
                    Some(_) => {}
                    None => write_field(&mut out, name, value),
                },
                SseLine::Field { name, value } => write_field(&mut out, name, value),
            }
        }
        if let (Some(d), false) = (new_data, data_written) {
            write_data(&mut out, d);
        }
        out.push(b'\n');
        out
    }
}

fn write_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    if !value.is_empty() {
        out.push(b' ');
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'\n');
}

fn write_data(out: &mut Vec<u8>, data: &str) {
    let mut rest = data;
    loop {
        match rest.find(['\r', '\n']) {
            Some(at) => {
                write_field(out, "data", &rest[..at]);
                let skip = if rest[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[at + skip..];
            }
            None => {
                write_field(out, "data", rest);
                return;
            }
        }
    }
}

/// Splits a byte stream into [`SseEvent`]s, chunk by chunk.
#[derive(Debug)]
pub struct SseSplitter {
    max_event_bytes: usize,
    /// Bytes of the current, incomplete event (everything before was handed out).
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned for line endings.
    scanned: usize,
    /// Where the current event's text starts in `buf` (after a BOM or a split-off `\n`).
    content_start: usize,
    /// The current line has no byte yet.
    line_empty: bool,
    /// The last byte scanned was a `\r` ending a line: a `\n` right after it belongs to it.
    after_cr: bool,
    /// Nothing has been scanned yet: a BOM may still come.
    at_stream_start: bool,
    /// The current event starts with the stream's BOM.
    bom: bool,
    failed: bool,
}

impl SseSplitter {
    /// A splitter refusing events longer than `max_event_bytes` (lines and line endings,
    /// counted without a BOM or a split-off `\n` half).
    pub fn new(max_event_bytes: usize) -> SseSplitter {
        SseSplitter {
            max_event_bytes,
            buf: Vec::new(),
            scanned: 0,
            content_start: 0,
            line_empty: true,
            after_cr: false,
            at_stream_start: true,
            bom: false,
            failed: false,
        }
    }

    /// Adds `chunk` and returns the events it completes, in order. Bytes of an event still
    /// incomplete are kept for the next call. After an error every call fails.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let too_large = SseError::EventTooLarge {
            limit: self.max_event_bytes,
        };
        if self.failed {
            return Err(too_large);
        }
        self.buf.extend_from_slice(chunk);
        if self.at_stream_start {
            if self.buf.len() < BOM.len() && BOM.starts_with(&self.buf) {
                return Ok(Vec::new());
            }
            self.at_stream_start = false;
            if self.buf.starts_with(BOM) {
                self.bom = true;
                self.content_start = BOM.len();
                self.scanned = BOM.len();
            }
        }
        let mut events = Vec::new();
        let mut event_start = 0;
        let mut i = self.scanned;
        let len = self.buf.len();
        while i < len {
            let b = self.buf[i];
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    if i == self.content_start {
                        self.content_start = i + 1;
                    }
                    i += 1;
                    continue;
                }
            }
            if b != b'\n' && b != b'\r' {
                self.line_empty = false;
                i += 1;
                continue;
            }
            if !self.line_empty {
                self.after_cr = b == b'\r';
                self.line_empty = true;
                i += 1;
                continue;
            }
            // A blank line: the event ends here.
            if i + 1 - self.content_start > self.max_event_bytes {
                return Err(self.fail(too_large));
            }
            let mut end = i + 1;
            if b == b'\r' {
                if end < len && self.buf[end] == b'\n' {
                    end += 1;
                } else {
                    self.after_cr = true;
                }
            }
            events.push(parse_event(
                &self.buf[event_start..end],
                self.content_start - event_start,
                self.bom,
            ));
            self.bom = false;
            event_start = end;
            self.content_start = end;
            i = end;
        }
        if len - self.content_start > self.max_event_bytes {
            return Err(self.fail(too_large));
        }
        self.buf.drain(..event_start);
        self.content_start -= event_start;
        self.scanned = self.buf.len();
        Ok(events)
    }

    /// Ends the stream: the bytes of an event that never got its blank line (clients discard
    /// such an event), or `None` when nothing is left.
    pub fn finish(self) -> Option<Vec<u8>> {
        if self.buf.is_empty() {
            None
        } else {
            Some(self.buf)
        }
    }

    fn fail(&mut self, err: SseError) -> SseError {
        self.failed = true;
        self.buf = Vec::new();
        self.scanned = 0;
        self.content_start = 0;
        err
    }
}

/// Parses one complete event; `raw[skip..]` is its text (lines up to the blank line).
fn parse_event(raw: &[u8], skip: usize, bom: bool) -> SseEvent {
    let mut lines = Vec::new();
    let mut event_type = None;
    let mut id = None;
    let mut data: Option<String> = None;
    let mut retry = None;
    let mut rest = raw.get(skip..).unwrap_or_default();
    loop {
        let end = rest
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
        let line = &rest[..end];
        if line.is_empty() {
            break;
        }
        let next = if rest[end..].starts_with(b"\r\n") {
            end + 2
        } else {
            end + 1
        };
        rest = rest.get(next..).unwrap_or_default();
        let text = String::from_utf8_lossy(line);
        if let Some(comment) = text.strip_prefix(':') {
            lines.push(SseLine::Comment(comment.to_owned()));
            continue;
        }
        let (name, value) = match text.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*text, ""),
        };
        match name {
            "event" => event_type = Some(value.to_owned()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            "id" if !value.contains('\0') => id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    retry = Some(ms);
                }
            }
            _ => {}
        }
        lines.push(SseLine::Field {
            name: name.to_owned(),
            value: value.to_owned(),
        });
    }
    SseEvent {
        raw: raw.to_vec(),
        bom,
        lines,
        event_type,
        id,
        data,
        retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn split_all(input: &[u8], max: usize) -> (Vec<SseEvent>, Option<Vec<u8>>) {
        let mut s = SseSplitter::new(max);
        let events = s.push(input).unwrap();
        (events, s.finish())
    }

    fn split_chunked(input: &[u8], cuts: &[usize], max: usize) -> (Vec<SseEvent>, Option<Vec<u8>>) {
        let mut s = SseSplitter::new(max);
        let mut events = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            events.extend(s.push(&input[from..cut]).unwrap());
            from = cut;
        }
        (events, s.finish())
    }

    /// Lines, event type, id, data, retry.
    type Meaning<'a> = (
        Vec<SseLine>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<u64>,
    );

    /// What a client would see: everything but the raw bytes.
    fn meaning(e: &SseEvent) -> Meaning<'_> {
        (
            e.lines().to_vec(),
            e.event_type(),
            e.id(),
            e.data(),
            e.retry(),
        )
    }

    fn concat(events: &[SseEvent], leftover: &Option<Vec<u8>>) -> Vec<u8> {
        let mut out: Vec<u8> = events.iter().flat_map(|e| e.raw().to_vec()).collect();
        if let Some(rest) = leftover {
            out.extend_from_slice(rest);
        }
        out
    }

    #[test]
    fn splits_a_typical_mcp_stream() {
        let input = b"event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
                      : keep-alive\n\n\
                      data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
        let (events, rest) = split_all(input, 1024);
        assert_eq!(events.len(), 3);
        assert_eq!(rest, None);
        assert_eq!(events[0].event_type(), Some("message"));
        assert_eq!(events[0].id(), Some("1"));
        assert_eq!(
            events[0].data(),
            Some(r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#)
        );
        assert!(!events[0].is_comment_only());
        assert!(events[1].is_comment_only());
        assert_eq!(events[1].data(), None);
        assert_eq!(events[1].raw(), b": keep-alive\n\n");
        assert_eq!(
            events[2].data(),
            Some(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
        );
        assert_eq!(events[2].event_type(), None);
        assert_eq!(concat(&events, &rest), input.to_vec());
    }

    #[test]
    fn accepts_crlf_cr_and_mixed_line_endings() {
        for input in [
            &b"data: a\r\ndata: b\r\n\r\n"[..],
            b"data: a\rdata: b\r\r",
            b"data: a\ndata: b\n\n",
            b"data: a\r\ndata: b\r\r\n",
            b"data: a\rdata: b\n\r\n",
        ] {
            let (events, rest) = split_all(input, 1024);
            assert_eq!(events.len(), 1, "{input:?}");
            assert_eq!(events[0].data(), Some("a\nb"), "{input:?}");
            assert_eq!(concat(&events, &rest), input.to_vec());
        }
    }

    #[test]
    fn crlf_split_between_chunks_goes_to_the_next_event() {
        let input = b"data: a\r\n\r\ndata: b\r\n\r\n";
        let mut s = SseSplitter::new(1024);
        let first = s.push(b"data: a\r\n\r").unwrap();
        assert_eq!(first.len(), 1, "dispatched without waiting for the \\n");
        assert_eq!(first[0].raw(), b"data: a\r\n\r");
        let second = s.push(b"\ndata: b\r\n\r\n").unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].raw(), b"\ndata: b\r\n\r\n");
        assert_eq!(second[0].data(), Some("b"));
        assert_eq!(s.finish(), None);
        let all: Vec<u8> = [first[0].raw(), second[0].raw()].concat();
        assert_eq!(all, input.to_vec());
    }

    #[test]
    fn trailing_lf_half_is_leftover_not_lost() {
        let mut s = SseSplitter::new(1024);
        assert_eq!(s.push(b"data: a\r\r").unwrap().len(), 1);
        assert!(s.push(b"\n").unwrap().is_empty());
        assert_eq!(s.finish(), Some(b"\n".to_vec()));
    }

    #[test]
    fn bom_at_stream_start_is_dropped_even_when_split() {
        let input = b"\xEF\xBB\xBFdata: x\n\n";
        for cut in 0..=input.len() {
            let (events, rest) = split_chunked(input, &[cut], 1024);
            assert_eq!(events.len(), 1, "cut {cut}");
            assert_eq!(events[0].data(), Some("x"));
            assert_eq!(events[0].raw(), &input[..]);
            assert_eq!(rest, None);
        }
        let (events, _) = split_all(b"\xEF\xBB\xBF\n", 1024);
        assert_eq!(events.len(), 1);
        assert!(events[0].is_empty());
    }

    #[test]
    fn bom_later_in_the_stream_is_text() {
        let (events, _) = split_all(b"data: 1\n\n\xEF\xBB\xBFdata: 2\n\n", 1024);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].data(), None);
        assert_eq!(
            events[1].lines(),
            &[SseLine::Field {
                name: "\u{FEFF}data".into(),
                value: "2".into()
            }]
        );
    }

    #[test]
    fn partial_bom_only_is_leftover() {
        let mut s = SseSplitter::new(16);
        assert!(s.push(b"\xEF\xBB").unwrap().is_empty());
        assert_eq!(s.finish(), Some(b"\xEF\xBB".to_vec()));
    }

    #[test]
    fn multibyte_utf8_split_across_chunks() {
        let input = "data: héllo €\n\n".as_bytes();
        for cut in 0..=input.len() {
            let (events, _) = split_chunked(input, &[cut], 1024);
            assert_eq!(events[0].data(), Some("héllo €"), "cut {cut}");
        }
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        let (events, _) = split_all(b"data: a\xFFb\n\n", 1024);
        assert_eq!(events[0].data(), Some("a\u{FFFD}b"));
        assert_eq!(events[0].raw(), b"data: a\xFFb\n\n");
    }

    #[test]
    fn field_parsing_follows_the_standard() {
        let input = b"data\ndata:x\ndata:  two spaces\nevent:a\nevent: b\nid: 7\nid: bad\0id\nretry: 1500\nretry: 12a\nfoo: bar\n\n";
        let (events, _) = split_all(input, 1024);
        let e = &events[0];
        assert_eq!(e.data(), Some("\nx\n two spaces"));
        assert_eq!(e.event_type(), Some("b"));
        assert_eq!(e.id(), Some("7"));
        assert_eq!(e.retry(), Some(1500));
        assert_eq!(e.lines().len(), 10);
        assert!(!e.is_comment_only());
    }

    #[test]
    fn empty_id_and_empty_data_are_kept() {
        let (events, _) = split_all(b"id\ndata:\n\n", 1024);
        assert_eq!(events[0].id(), Some(""));
        assert_eq!(events[0].data(), Some(""));
    }

    #[test]
    fn lone_blank_lines_are_empty_events() {
        let input = b"\n\r\n\rdata: x\n\n";
        let (events, rest) = split_all(input, 1024);
        assert_eq!(events.len(), 4);
        assert!(events[..3].iter().all(SseEvent::is_empty));
        assert!(!events[0].is_comment_only());
        assert_eq!(events[3].data(), Some("x"));
        assert_eq!(concat(&events, &rest), input.to_vec());
    }

    #[test]
    fn unterminated_event_is_leftover() {
        let mut s = SseSplitter::new(1024);
        let events = s.push(b"data: 1\n\ndata: 2\n").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(s.finish(), Some(b"data: 2\n".to_vec()));
    }

    #[test]
    fn event_too_large_in_one_chunk_or_many() {
        let input = b"data: 0123456789\n\n"; // 18 bytes
        let (events, _) = split_all(input, 18);
        assert_eq!(events.len(), 1);
        let mut s = SseSplitter::new(17);
        assert_eq!(s.push(input), Err(SseError::EventTooLarge { limit: 17 }));
        assert_eq!(s.push(b"\n"), Err(SseError::EventTooLarge { limit: 17 }));
        assert_eq!(s.finish(), None);

        // An incomplete event is refused as soon as it passes the limit.
        let mut s = SseSplitter::new(8);
        assert!(s.push(b"data: 12").unwrap().is_empty());
        assert_eq!(s.push(b"3"), Err(SseError::EventTooLarge { limit: 8 }));
    }

    #[test]
    fn limit_is_per_event_not_per_chunk() {
        let input = b"data: 1\n\ndata: 2\n\ndata: 3\n\n";
        let (events, _) = split_all(input, 9);
        assert_eq!(events.len(), 3);
    }

    #[test]
    fn error_display_names_the_limit() {
        assert_eq!(
            SseError::EventTooLarge { limit: 5 }.to_string(),
            "server-sent event larger than 5 bytes"
        );
    }

    #[test]
    fn with_data_replaces_data_and_keeps_other_fields_in_order() {
        let (events, _) = split_all(
            b": note\r\nevent: message\r\ndata: old 1\r\nid: 9\r\ndata: old 2\r\nretry: 10\r\n\r\n",
            1024,
        );
        let out = events[0].with_data("{\"a\":1}\nsecond");
        assert_eq!(
            out,
            b": note\nevent: message\ndata: {\"a\":1}\ndata: second\nid: 9\nretry: 10\n\n".to_vec()
        );
        let (again, rest) = split_all(&out, 1024);
        assert_eq!(rest, None);
        assert_eq!(again[0].data(), Some("{\"a\":1}\nsecond"));
        assert_eq!(again[0].event_type(), Some("message"));
        assert_eq!(again[0].id(), Some("9"));
        assert_eq!(again[0].retry(), Some(10));
    }

    #[test]
    fn with_data_round_trips_awkward_data() {
        let (events, _) = split_all(b"event: x\n\n", 1024);
        for data in [
            "",
            " leading space",
            "a\r\nb\rc\nd",
            "trailing\n",
            "\n",
            "ü: colon",
        ] {
            let out = events[0].with_data(data);
            let (again, rest) = split_all(&out, 1024);
            assert_eq!(again.len(), 1, "{data:?}");
            assert_eq!(rest, None);
            let normalised = data.replace("\r\n", "\n").replace('\r', "\n");
            assert_eq!(again[0].data(), Some(normalised.as_str()), "{data:?}");
            assert_eq!(again[0].event_type(), Some("x"));
        }
    }

    #[test]
    fn with_data_keeps_bom_drops_split_lf() {
        let (events, _) = split_all(b"\xEF\xBB\xBFdata: a\n\n", 1024);
        assert_eq!(
            events[0].with_data("b"),
            b"\xEF\xBB\xBFdata: b\n\n".to_vec()
        );
        let mut s = SseSplitter::new(1024);
        s.push(b"data: a\r\r").unwrap();
        let e = s.push(b"\ndata: a\r\r").unwrap();
        assert_eq!(e[0].raw(), b"\ndata: a\r\r");
        assert_eq!(e[0].with_data("b"), b"data: b\n\n".to_vec());
    }

    /// xorshift64*: deterministic, good enough to pick chunk boundaries.
    struct Prng(u64);

    impl Prng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn sample_stream() -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(b"\xEF\xBB\xBF: stream opened\r\n\r\n");
        s.extend_from_slice(b"event: message\r\nid: 0\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"data\":\"h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80\"}}\r\n\r\n");
        s.extend_from_slice(b"retry: 3000\rdata: line one\rdata: line two\r\r");
        s.extend_from_slice(b": keep-alive\n\n");
        s.extend_from_slice(b"\r\n");
        s.extend_from_slice(b"data\nid\n:c\r\n\n");
        s.extend_from_slice(
            b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}\r\r\n",
        );
        s.extend_from_slice(b"data: unterminated");
        s
    }

    #[test]
    fn random_chunkings_preserve_bytes_and_meaning() {
        let input = sample_stream();
        let (whole, whole_rest) = split_all(&input, 4096);
        assert_eq!(whole.len(), 7);
        assert_eq!(whole_rest.as_deref(), Some(&b"data: unterminated"[..]));
        assert_eq!(concat(&whole, &whole_rest), input);
        let expected: Vec<_> = whole.iter().map(meaning).collect();

        let mut rng = Prng(0x9E37_79B9_7F4A_7C15);
        for round in 0..2000 {
            let pieces = 1 + rng.below(if round % 2 == 0 { 8 } else { input.len() });
            let mut cuts: Vec<usize> = (0..pieces).map(|_| rng.below(input.len() + 1)).collect();
            cuts.sort_unstable();
            let (events, rest) = split_chunked(&input, &cuts, 4096);
            assert_eq!(concat(&events, &rest), input, "cuts {cuts:?}");
            let got: Vec<_> = events.iter().map(meaning).collect();
            assert_eq!(got, expected, "cuts {cuts:?}");
        }
    }

    #[test]
    fn every_single_cut_and_byte_by_byte() {
        let input = sample_stream();
        let (whole, _) = split_all(&input, 4096);
        let expected: Vec<_> = whole.iter().map(meaning).collect();
        for cut in 0..=input.len() {
            let (events, rest) = split_chunked(&input, &[cut], 4096);
            assert_eq!(concat(&events, &rest), input, "cut {cut}");
            assert_eq!(events.iter().map(meaning).collect::<Vec<_>>(), expected);
        }
        let cuts: Vec<usize> = (1..input.len()).collect();
        let (events, rest) = split_chunked(&input, &cuts, 4096);
        assert_eq!(concat(&events, &rest), input);
        assert_eq!(events.iter().map(meaning).collect::<Vec<_>>(), expected);
    }
}
