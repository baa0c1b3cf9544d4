//! The bounded fuzz run of `cargo test`: every target gets its committed corpus
//! (`fuzz/corpus/<target>/`) and a few thousand inputs mutated from it with the fuzz dictionary
//! (`fuzz/mcp.dict`), from a fixed seed, so every run checks the same inputs. A failure names
//! the target and the input, ready to become a regression test.

use super::{Target, SEP, TARGETS};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Mutated inputs per target (on top of its corpus): every run checks the same inputs, in a
/// few seconds in a debug build. Sealing and opening tokens is slow unoptimised: fewer there.
fn runs(target: &str) -> usize {
    match target {
        "unseal" => 1000,
        _ => 3000,
    }
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The committed corpus of a target, in file name order.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        .collect()
}

/// The tokens of libFuzzer's dictionary file (`"text"` lines, `\xNN`, `\\` and `\"` escapes).
fn dictionary() -> Vec<Vec<u8>> {
    let path = fuzz_dir().join("mcp.dict");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let (Some(start), Some(end)) = (line.find('"'), line.rfind('"')) else {
            continue;
        };
        if line.starts_with('#') || end <= start {
            continue;
        }
        let raw = &line.as_bytes()[start + 1..end];
        let mut token = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            match (raw[i], raw.get(i + 1)) {
                (b'\\', Some(b'x')) => {
                    let hex = std::str::from_utf8(&raw[i + 2..i + 4]).expect("hex");
                    token.push(u8::from_str_radix(hex, 16).expect("hex"));
                    i += 4;
                }
                (b'\\', Some(&c)) => {
                    token.push(c);
                    i += 2;
                }
                (c, _) => {
                    token.push(c);
                    i += 1;
                }
            }
        }
        out.push(token);
    }
    out
}

/// xorshift64*: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One input derived from `corpus`: a few byte-level and token-level changes.
fn mutate(rng: &mut Rng, corpus: &[Vec<u8>], dict: &[Vec<u8>]) -> Vec<u8> {
    let mut v = if corpus.is_empty() || rng.below(16) == 0 {
        Vec::new()
    } else {
        corpus[rng.below(corpus.len())].clone()
    };
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(9) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => v.insert(at, rng.next() as u8),
            3 if !v.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(v.len());
                v.drain(at.min(end)..end);
            }
            4 | 5 if !dict.is_empty() => {
                let token = &dict[rng.below(dict.len())];
                v.splice(at..at, token.iter().copied());
            }
            6 if !v.is_empty() => {
                let from = rng.below(v.len());
                let end = (from + 1 + rng.below(16)).min(v.len());
                let piece = v[from..end].to_vec();
                v.splice(at..at, piece);
            }
            7 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(other.len() + 1);
                v.truncate(at);
                v.extend_from_slice(&other[cut..]);
            }
            _ => v.insert(at, SEP),
        }
    }
    v
}

/// Escapes an input as a Rust byte string literal, for a regression test.
fn literal(input: &[u8]) -> String {
    let body: String = input
        .iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    format!("b\"{body}\"")
}

fn run(name: &str) {
    let target: Target = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .expect("a target");
    let corpus = corpus(name);
    assert!(!corpus.is_empty(), "no corpus for {name}");
    let dict = dictionary();
    let seed = name.bytes().fold(0x6D63_702D_7761_7264u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    });
    let mut rng = Rng(seed | 1);
    let start = Instant::now();
    let inputs = corpus
        .iter()
        .cloned()
        .chain((0..runs(name)).map(|_| mutate(&mut rng, &corpus, &dict)));
    let mut n = 0;
    for input in inputs {
        let outcome = std::panic::catch_unwind(|| target(&input));
        if let Err(e) = outcome {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "fuzz target `{name}` failed on input {}: {msg}",
                literal(&input)
            );
        }
        n += 1;
    }
    eprintln!("fuzz smoke {name}: {n} inputs in {:?}", start.elapsed());
}

#[test]
fn json() {
    run("json");
}

#[test]
fn sse() {
    run("sse");
}

#[test]
fn answers() {
    run("answers");
}

#[test]
fn lists() {
    run("lists");
}

#[test]
fn content() {
    run("content");
}

#[test]
fn claims() {
    run("claims");
}

#[test]
fn unseal() {
    run("unseal");
}

#[test]
fn policy() {
    run("policy");
}

#[test]
fn flow() {
    run("flow");
}

#[test]
fn every_target_has_a_test_and_a_cargo_fuzz_target() {
    let here = include_str!("smoke.rs");
    for (name, _) in TARGETS {
        assert!(here.contains(&format!("run(\"{name}\")")), "{name}");
        let file = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        assert!(file.exists(), "{}", file.display());
    }
}

#[test]
fn the_flow_corpus_reaches_the_answer_side() {
    use crate::pipeline::ResponseMode;
    let seed = |name: &str| std::fs::read(fuzz_dir().join("corpus/flow").join(name)).expect(name);
    for (name, mode) in [
        ("list_sse", ResponseMode::StreamSse),
        ("list_json", ResponseMode::BufferJson),
        ("call", ResponseMode::BufferJson),
    ] {
        assert_eq!(super::flow::drive(&seed(name)), Some(mode), "{name}");
    }
}
