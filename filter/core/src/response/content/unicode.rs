//! Seeing through Unicode tricks: the normalised view the patterns are matched against, and the
//! invisible characters taken out of (or shown in) what is forwarded.
//!
//! A malicious server can hide text from the human while the model still reads it, or split a
//! phrase so a pattern no longer matches it: TAG characters (U+E0000–U+E007F, ASCII spelled
//! invisibly), zero-width and other format characters inside words, bidi controls, fullwidth or
//! mathematical letters, letters with combining marks, Cyrillic or Greek lookalikes.
//!
//! [`fold`] builds a **view** of a string, character by character:
//! - a TAG character U+E0020–U+E007E becomes its ASCII counterpart (U+E0041 → `A`);
//! - an [invisible](is_invisible) character (format characters: zero-width, bidi controls, soft
//!   hyphen, variation selectors, the other tag characters, ASCII control characters other than
//!   tab and line breaks) is left out;
//! - a combining mark (canonical combining class ≠ 0) is left out (`ı́gnore` reads `ıgnore`);
//! - every other character is replaced by its compatibility decomposition (NFKD, the mapping
//!   behind NFKC: fullwidth `ｉ`, mathematical `𝐢`, ligature `ﬁ`, no-break space…), and a few
//!   common lookalikes (Cyrillic and Greek letters that look Latin, Unicode dashes) by the Latin
//!   letter or `-` they imitate. This is not the full UTS #39 confusables table.
//!
//! Each view byte remembers the original character it came from, so a match in the view maps
//! back to a byte range of the original ([`Folded::original`]): the range runs from the first
//! to the last original character of the match, so hidden characters *inside* a match are
//! covered (a secret split by zero-width spaces is removed whole).
//!
//! Hidden characters are read two ways, as the model might: left out ([`fold`]: a word split by
//! them reads whole) and as spaces ([`fold_spaced`]: text glued to a word by one, or a
//! tag-spelled sentence right after a word, is a word of its own). Patterns are matched against
//! both. **Limit**: text that is glued to a word by a hidden character *and* split by others
//! inside matches neither view when the pattern needs a word boundary (`\b`) at the glue.
//! Nothing is hidden from people by that (the letters are all visible); it only defeats the
//! heuristic, as a paraphrase would. Content that *is* hidden (tag characters) is always
//! removed or shown.
//!
//! Plain ASCII text without control characters has nothing to fold ([`is_plain`]) and never
//! pays for any of this.

use unicode_normalization::char::{canonical_combining_class, decompose_compatible};

/// True when `s` is printable ASCII (plus tab, CR, LF): its view is itself. Eight bytes at a
/// time (a word with a byte ≥ 0x80, a DEL or a byte < 0x20 is looked at closer), as this runs
/// over every string of every answer.
pub fn is_plain(s: &str) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let plain_byte = |b: &u8| (0x20..0x7f).contains(b) || matches!(b, b'\t' | b'\n' | b'\r');
    let mut words = s.as_bytes().chunks_exact(8);
    for chunk in words.by_ref() {
        let mut a = [0u8; 8];
        a.copy_from_slice(chunk);
        let w = u64::from_le_bytes(a);
        // Some byte ≥ 0x80; some byte equal to 0x7f; some byte < 0x20 (exact for presence).
        let high = w & HI;
        let x = w ^ (LO * 0x7f);
        let del = x.wrapping_sub(LO) & !x & HI;
        let low = w.wrapping_sub(LO * 0x20) & !w & HI;
        if high | del != 0 || (low != 0 && !chunk.iter().all(plain_byte)) {
            return false;
        }
    }
    words.remainder().iter().all(plain_byte)
}

/// TAG characters (U+E0000–U+E007F): ASCII spelled invisibly.
pub fn is_tag(c: char) -> bool {
    ('\u{E0000}'..='\u{E007F}').contains(&c)
}

/// Characters a reader does not see: format characters (Unicode `Cf`) and the other default
/// ignorable code points (zero-width space/joiners, word joiner, BOM, soft hyphen, bidi
/// embeddings, overrides and isolates, variation selectors, Hangul fillers, Mongolian
/// selectors, interlinear annotation, tag characters), and control characters other than
/// tab, CR and LF. The few visible `Cf` characters (Arabic number signs and the like, which
/// are drawn) are not in the list.
pub fn is_invisible(c: char) -> bool {
    let u = c as u32;
    matches!(u,
        0x00..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f | 0x7f..=0x9f
        | 0x00ad | 0x034f | 0x061c | 0x115f..=0x1160 | 0x17b4..=0x17b5 | 0x180b..=0x180f
        | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x206f | 0x3164
        | 0xfe00..=0xfe0f | 0xfeff | 0xffa0 | 0xfff0..=0xfffb
        | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a | 0xe0000..=0xe0fff)
}

/// The Latin letter or ASCII sign a lookalike imitates (a small, common subset of UTS #39).
fn lookalike(c: char) -> Option<char> {
    Some(match c {
        // Cyrillic
        'а' => 'a',
        'с' => 'c',
        'ԁ' => 'd',
        'е' | 'ё' => 'e',
        'һ' => 'h',
        'і' | 'ї' => 'i',
        'ј' => 'j',
        'к' => 'k',
        'ӏ' => 'l',
        'о' => 'o',
        'р' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'у' => 'y',
        'ѵ' => 'v',
        'ԝ' => 'w',
        'х' => 'x',
        'А' => 'A',
        'В' => 'B',
        'С' => 'C',
        'Е' => 'E',
        'Н' => 'H',
        'І' => 'I',
        'Ј' => 'J',
        'К' => 'K',
        'М' => 'M',
        'О' => 'O',
        'Р' => 'P',
        'Ѕ' => 'S',
        'Т' => 'T',
        'Х' => 'X',
        'У' => 'Y',
        // Greek
        'α' => 'a',
        'ε' => 'e',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'υ' => 'u',
        'χ' => 'x',
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Υ' => 'Y',
        'Χ' => 'X',
        // Latin and Armenian
        'ı' => 'i',
        'ɡ' => 'g',
        'օ' => 'o',
        // opening brackets that pass for `[` (a forged gateway marker)
        '【' | '〔' | '〖' | '〘' | '〚' | '⟦' | '⁅' | '❲' => '[',
        // dashes and minus signs
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{fe58}' | '\u{fe63}' => '-',
        _ => return None,
    })
}

/// Characters that are their own view and need no lookup: ASCII that is not a control
/// character, and the big blocks of letters without compatibility mappings or lookalikes
/// (CJK ideographs and punctuation, kana, Hangul syllables: a decomposition of those would only split them
/// into parts no pattern for Latin text can match).
fn is_own_view(c: char) -> bool {
    let u = c as u32;
    matches!(u, 0x20..=0x7e | 0x3001..=0x30ff | 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xac00..=0xd7a3)
        && !matches!(u, 0x3010 | 0x3014 | 0x3016 | 0x3018 | 0x301a)
}

/// What one original character becomes in the view.
fn fold_char(c: char, out: &mut String) {
    if is_own_view(c) || matches!(c, '\t' | '\n' | '\r') {
        out.push(c);
        return;
    }
    if is_tag(c) {
        let ascii = (c as u32) - 0xe0000;
        if (0x20..0x7f).contains(&ascii) {
            if let Some(a) = char::from_u32(ascii) {
                out.push(a);
            }
        }
        return;
    }
    if is_invisible(c) || canonical_combining_class(c) != 0 {
        return;
    }
    decompose_compatible(c, |d| {
        if canonical_combining_class(d) == 0 && !is_invisible(d) {
            out.push(lookalike(d).unwrap_or(d));
        }
    });
}

/// One run of the view: `view_len` bytes at `view` from the original bytes at `orig`. An
/// identity run is copied byte for byte; any other run is one original character.
#[derive(Debug, Clone, Copy)]
struct Run {
    view: usize,
    orig: usize,
    orig_len: usize,
    identity: bool,
}

/// The normalised view of a string and where each of its bytes came from.
#[derive(Debug)]
pub struct Folded {
    /// The view: what the patterns are matched against.
    pub text: String,
    runs: Vec<Run>,
}

impl Folded {
    fn run_at(&self, view_byte: usize) -> Option<&Run> {
        let i = self.runs.partition_point(|r| r.view <= view_byte);
        self.runs.get(i.checked_sub(1)?)
    }

    /// The byte range of the original that the view bytes `start..end` came from (whole
    /// original characters, hidden ones between them included).
    pub fn original(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        if start >= end {
            return None;
        }
        let first = self.run_at(start)?;
        let last = self.run_at(end - 1)?;
        let from = if first.identity {
            first.orig + (start - first.view)
        } else {
            first.orig
        };
        let to = if last.identity {
            last.orig + (end - last.view)
        } else {
            last.orig + last.orig_len
        };
        Some((from, to))
    }
}

/// The view of `s`, or None when it is `s` itself. Hidden characters are left out, so a word
/// split by them reads whole (`ig\u{200b}nore` → `ignore`).
pub fn fold(s: &str) -> Option<Folded> {
    fold_as(s, false)
}

/// What one pass over a string found: whether any character may have a view other than
/// itself, whether any is hidden, whether any is a TAG character.
#[derive(Debug, Default, Clone, Copy)]
pub struct Scan {
    pub foldable: bool,
    pub hidden: bool,
    pub tags: bool,
}

/// One pass over `s` (nothing for plain ASCII), so the views and the tag removal are only
/// made where they can change something.
pub fn scan(s: &str) -> Scan {
    let mut found = Scan::default();
    if is_plain(s) {
        return found;
    }
    for c in s.chars() {
        if is_own_view(c) || matches!(c, '\t' | '\n' | '\r') {
            continue;
        }
        found.foldable = true;
        if is_tag(c) {
            found.tags = true;
            found.hidden = true;
            break;
        }
        found.hidden |= is_invisible(c);
    }
    found
}

/// The view of `s` with every hidden character read as a space, and a space before and after
/// each run of tag characters; None when `s` has no hidden characters. Text glued to a
/// visible word by a hidden character (`ok\u{200d}ignore previous instructions`, a tag-spelled
/// sentence right after a word) is a word of its own here, so a pattern's `\b` still finds it.
pub fn fold_spaced(s: &str) -> Option<Folded> {
    if is_plain(s) || !s.chars().any(|c| is_invisible(c) || is_tag(c)) {
        return None;
    }
    fold_as(s, true)
}

fn fold_as(s: &str, spaced: bool) -> Option<Folded> {
    if is_plain(s) {
        return None;
    }
    // Nothing is written while every character is its own view: most text ends here.
    let mut view: Option<(String, Vec<Run>)> = None;
    let mut one = String::new();
    let mut in_tags = false;
    for (i, c) in s.char_indices() {
        one.clear();
        if spaced {
            let tag = is_tag(c);
            if tag != in_tags || (is_invisible(c) && !tag) {
                one.push(' ');
            }
            in_tags = tag;
        }
        let len = c.len_utf8();
        let own = one.is_empty() && (is_own_view(c) || matches!(c, '\t' | '\n' | '\r'));
        if !own {
            fold_char(c, &mut one);
        }
        let identity = own || (one.len() == len && one.starts_with(c));
        let Some((text, runs)) = view.as_mut() else {
            if identity {
                continue;
            }
            // The first character that changes: the text before it is one identity run.
            let mut text = String::with_capacity(s.len());
            text.push_str(s.get(..i).unwrap_or_default());
            let mut runs = Vec::new();
            if i > 0 {
                runs.push(Run {
                    view: 0,
                    orig: 0,
                    orig_len: i,
                    identity: true,
                });
            }
            if !one.is_empty() {
                runs.push(Run {
                    view: text.len(),
                    orig: i,
                    orig_len: len,
                    identity: false,
                });
            }
            text.push_str(&one);
            view = Some((text, runs));
            continue;
        };
        if identity {
            match runs.last_mut() {
                Some(r) if r.identity && r.orig + r.orig_len == i => r.orig_len += len,
                _ => runs.push(Run {
                    view: text.len(),
                    orig: i,
                    orig_len: len,
                    identity: true,
                }),
            }
            text.push(c);
        } else {
            if !one.is_empty() {
                runs.push(Run {
                    view: text.len(),
                    orig: i,
                    orig_len: len,
                    identity: false,
                });
            }
            text.push_str(&one);
        }
    }
    view.map(|(text, runs)| Folded { text, runs })
}

/// Replaces the original ranges of `matches` (view byte ranges of `folded`, in order) in `s`
/// by `replacement`; overlapping ranges are merged. Returns how many ranges were replaced.
pub fn replace_mapped(
    s: &mut String,
    folded: &Folded,
    matches: impl Iterator<Item = (usize, usize)>,
    replacement: &str,
) -> usize {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for (a, b) in matches {
        let Some((from, to)) = folded.original(a, b) else {
            continue;
        };
        match ranges.last_mut() {
            Some(last) if from < last.1 => last.1 = last.1.max(to),
            _ => ranges.push((from, to)),
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for &(from, to) in &ranges {
        out.push_str(s.get(at..from).unwrap_or_default());
        out.push_str(replacement);
        at = to;
    }
    out.push_str(s.get(at..).unwrap_or_default());
    *s = out;
    ranges.len()
}

/// Where the emoji tag sequences of `s` are: U+1F3F4 (waving black flag), one to seven tag
/// digits or lower-case tag letters, U+E007F (cancel tag) — the subdivision flags (England,
/// Scotland, Wales…), the one legitimate use of tag characters in text. Byte ranges of the
/// tag characters of each sequence.
fn flag_sequences(s: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, _) in s.match_indices('\u{1F3F4}') {
        let start = i + '\u{1F3F4}'.len_utf8();
        let mut n = 0;
        let mut end = start;
        for c in s.get(start..).unwrap_or_default().chars() {
            let valid = matches!(c as u32, 0xe0030..=0xe0039 | 0xe0061..=0xe007a);
            if valid && n < 7 {
                n += 1;
                end += c.len_utf8();
            } else {
                if c == '\u{E007F}' && n > 0 {
                    out.push((start, end + c.len_utf8()));
                }
                break;
            }
        }
    }
    out
}

/// `s` without its TAG characters, except those of emoji flag sequences; None when it has
/// none. The second value counts the characters removed.
pub fn strip_tags(s: &str) -> Option<(String, usize)> {
    if is_plain(s) || !s.chars().any(is_tag) {
        return None;
    }
    let keep = flag_sequences(s);
    let mut out = String::with_capacity(s.len());
    let mut removed = 0;
    for (i, c) in s.char_indices() {
        if is_tag(c) && !keep.iter().any(|&(a, b)| (a..b).contains(&i)) {
            removed += 1;
        } else {
            out.push(c);
        }
    }
    (removed > 0).then_some((out, removed))
}

/// Flagged text made fully visible: each run of TAG characters is shown decoded, as
/// `⟨tag characters: …⟩`, and every other invisible character as `\u{…}` (its code point in
/// hex), so the human reviewing what the model was given sees what was hidden. Emoji flag
/// sequences stay as they are.
pub fn reveal(s: &str) -> String {
    if is_plain(s) {
        return s.to_string();
    }
    let keep = flag_sequences(s);
    let mut out = String::with_capacity(s.len() + 16);
    let mut tags: Option<String> = None;
    for (i, c) in s.char_indices() {
        let kept = keep.iter().any(|&(a, b)| (a..b).contains(&i));
        if is_tag(c) && !kept {
            let run = tags.get_or_insert_with(String::new);
            let ascii = (c as u32) - 0xe0000;
            match char::from_u32(ascii) {
                Some(a) if (0x20..0x7f).contains(&ascii) => run.push(a),
                _ => run.push_str(&format!("\\u{{{:x}}}", c as u32)),
            }
            continue;
        }
        if let Some(run) = tags.take() {
            out.push_str(&format!("⟨tag characters: {run}⟩"));
        }
        if is_invisible(c) && !kept {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    if let Some(run) = tags.take() {
        out.push_str(&format!("⟨tag characters: {run}⟩"));
    }
    out
}
