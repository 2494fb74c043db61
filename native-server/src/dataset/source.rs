//! Where texts come from: the Debian package list, a user's JSONL file; the natural-language
//! questions; the seeded split into base and held-out queries.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::DatasetError;

/// One text of a corpus with its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: u64,
    pub text: String,
}

/// The name of the built-in Debian source.
pub const DEBIAN_PACKAGES: &str = "debian-packages";

/// Questions a user might ask of the Debian package list, in plain words. They are queries of
/// the `debian-packages` dataset next to the held-out descriptions.
pub const DEBIAN_QUESTIONS: &[&str] = &[
    "edit photos",
    "tool to convert video formats",
    "read email in the terminal",
    "compress files",
    "python web framework",
    "play music from the command line",
    "text editor for programmers",
    "monitor network traffic",
    "back up my files to a remote server",
    "run a virtual machine",
    "view PDF documents",
    "download files from the web",
    "store passwords securely",
    "chat on IRC",
    "draw vector graphics and diagrams",
    "record audio from a microphone",
    "play chess against the computer",
    "convert office documents to PDF",
    "relational database server",
    "version control system for source code",
    "check the spelling of a document",
    "web browser",
    "encrypt files with a password",
    "show which processes use the most memory",
    "compile C programs",
    "configure a firewall",
    "record a video of my screen",
    "3D modelling and animation",
    "read RSS news feeds",
    "synchronise files between two computers",
];

/// Parses `apt-cache dumpavail` output into `name: one-line description` records.
///
/// Stanzas are separated by blank lines; a package without a `Description:` is skipped; a
/// package listed twice keeps its first stanza. Records come back sorted by package name, and
/// a record's id is its position in that order.
pub fn parse_dumpavail(text: &str) -> Vec<Record> {
    let mut seen = HashSet::new();
    let mut packages: Vec<(String, String)> = Vec::new();
    let mut name: Option<&str> = None;
    let mut description: Option<&str> = None;
    let mut flush = |name: &mut Option<&str>, description: &mut Option<&str>| {
        if let (Some(n), Some(d)) = (name.take(), description.take()) {
            if seen.insert(n.to_string()) {
                packages.push((n.to_string(), d.to_string()));
            }
        }
        *name = None;
        *description = None;
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut name, &mut description);
        } else if let Some(v) = line.strip_prefix("Package:") {
            name = Some(v.trim()).filter(|v| !v.is_empty());
        } else if let Some(v) = line.strip_prefix("Description:") {
            description = Some(v.trim()).filter(|v| !v.is_empty());
        }
    }
    flush(&mut name, &mut description);
    packages.sort();
    packages
        .into_iter()
        .enumerate()
        .map(|(i, (n, d))| Record {
            id: i as u64,
            text: format!("{n}: {d}"),
        })
        .collect()
}

/// The Debian package list of this machine (`apt-cache dumpavail`), parsed.
pub fn debian_packages() -> Result<Vec<Record>, DatasetError> {
    let command = "apt-cache dumpavail";
    let source_error = |reason: String| DatasetError::Source {
        command: command.to_string(),
        reason,
    };
    let out = Command::new("apt-cache")
        .arg("dumpavail")
        .output()
        .map_err(|e| source_error(format!("{e} (the debian-packages source needs apt)")))?;
    if !out.status.success() {
        return Err(source_error(format!(
            "exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let records = parse_dumpavail(&String::from_utf8_lossy(&out.stdout));
    if records.is_empty() {
        return Err(source_error(
            "no packages with a description (run `apt-get update`?)".into(),
        ));
    }
    Ok(records)
}

#[derive(Deserialize)]
struct JsonlLine {
    id: serde_json::Value,
    text: serde_json::Value,
}

/// Reads `{"id": <u64>, "text": "…"}` lines (other fields are ignored, blank lines skipped).
///
/// Errors name the file and the 1-based line: bad JSON, a missing or non-integer id, a text
/// that is not a string, a repeated id.
pub fn read_jsonl(path: &Path) -> Result<Vec<Record>, DatasetError> {
    let file = std::fs::File::open(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_jsonl(std::io::BufReader::new(file), path)
}

/// [`read_jsonl`] over any reader; `path` only names the source in errors.
pub fn parse_jsonl(input: impl BufRead, path: &Path) -> Result<Vec<Record>, DatasetError> {
    let error = |line: usize, reason: String| DatasetError::Jsonl {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut records = Vec::new();
    let mut ids = HashSet::new();
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| error(n, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: JsonlLine = serde_json::from_str(&line).map_err(|e| error(n, e.to_string()))?;
        let id = parsed.id.as_u64().ok_or_else(|| {
            error(
                n,
                format!("id must be a non-negative integer, got {}", parsed.id),
            )
        })?;
        let serde_json::Value::String(text) = parsed.text else {
            return Err(error(
                n,
                format!("text must be a string, got {}", parsed.text),
            ));
        };
        if !ids.insert(id) {
            return Err(error(n, format!("id {id} appears twice")));
        }
        records.push(Record { id, text });
    }
    if records.is_empty() {
        return Err(DatasetError::Params(format!(
            "{} holds no records",
            path.display()
        )));
    }
    Ok(records)
}

/// A 64-bit FNV-1a fingerprint of a corpus (ids and texts), to tell corpora apart in manifests.
pub fn fingerprint(records: &[Record]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for r in records {
        eat(&r.id.to_le_bytes());
        eat(r.text.as_bytes());
        eat(&[0]);
    }
    format!("fnv1a64:{h:016x}")
}

/// SplitMix64: a small, portable, seeded generator (the same sequence on every machine).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), without modulo bias.
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next();
            if x < zone {
                return x % n;
            }
        }
    }
}

/// `0..n` in a seeded random order (Fisher–Yates).
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64(seed);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// Splits `n` records into (base, held-out queries), as positions in ascending order.
///
/// The records are shuffled with `seed`; the first `held_out` become queries, the next `limit`
/// (all the rest without a limit) the base. A smaller limit therefore gives a subset of a
/// larger one's base, with the same queries.
pub fn split(
    n: usize,
    held_out: usize,
    limit: Option<usize>,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), DatasetError> {
    if limit == Some(0) {
        return Err(DatasetError::Params("--limit must be at least 1".into()));
    }
    if held_out >= n {
        return Err(DatasetError::Params(format!(
            "the corpus has {n} texts: holding out {held_out} as queries leaves no base (lower --held-out)"
        )));
    }
    let order = shuffled(n, seed);
    let mut queries = order[..held_out].to_vec();
    let rest = &order[held_out..];
    let mut base = rest[..limit.unwrap_or(rest.len()).min(rest.len())].to_vec();
    queries.sort_unstable();
    base.sort_unstable();
    Ok((base, queries))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\
Package: zsh
Version: 5.9-4+b6
Description: shell with lots of features
Description-md5: 9b8b8f2b
Tag: interface::shell,
 role::program

Package: 0ad
Version: 0.0.26-3
Depends: 0ad-data (>= 0.0.26)
Description: Real-time strategy game of ancient warfare
 A long description line that must be ignored.
 .
 Another one.
Homepage: https://play0ad.com/

Package: nodesc
Version: 1

Package: zsh
Description: a second stanza of zsh, ignored
Package-List: not a package line

Package: gimp
Description:   GNU Image Manipulation Program  ";

    #[test]
    fn dumpavail_gives_sorted_deduplicated_one_line_records() {
        let records = parse_dumpavail(DUMP);
        let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "0ad: Real-time strategy game of ancient warfare",
                "gimp: GNU Image Manipulation Program",
                "zsh: shell with lots of features",
            ]
        );
        assert_eq!(records.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(parse_dumpavail("").is_empty());
    }

    #[test]
    fn jsonl_reads_records_and_reports_the_bad_line() {
        let path = Path::new("mine.jsonl");
        let good =
            "{\"id\": 7, \"text\": \"seven\", \"extra\": 1}\n\n{\"id\":3,\"text\":\"three\"}\n";
        let records = parse_jsonl(good.as_bytes(), path).unwrap();
        assert_eq!(
            records,
            [
                Record {
                    id: 7,
                    text: "seven".into()
                },
                Record {
                    id: 3,
                    text: "three".into()
                }
            ]
        );

        let cases = [
            (
                "{\"id\": 1, \"text\": \"a\"}\n{\"id\": 2, \"text\": ",
                2,
                "EOF",
            ),
            ("{\"id\": -1, \"text\": \"a\"}", 1, "non-negative integer"),
            (
                "{\"id\": \"x\", \"text\": \"a\"}",
                1,
                "non-negative integer",
            ),
            ("\n\n{\"id\": 1, \"text\": 5}", 3, "must be a string"),
            (
                "{\"id\": 1, \"text\": \"a\"}\n{\"id\": 1, \"text\": \"b\"}",
                2,
                "appears twice",
            ),
            ("{\"text\": \"a\"}", 1, "missing field `id`"),
        ];
        for (input, line, reason) in cases {
            match parse_jsonl(input.as_bytes(), path) {
                Err(DatasetError::Jsonl {
                    line: l, reason: r, ..
                }) => {
                    assert_eq!(l, line, "{input:?}: {r}");
                    assert!(r.contains(reason), "{input:?}: {r}");
                }
                other => panic!("{input:?}: expected a JSONL error, got {other:?}"),
            }
        }
        let err = parse_jsonl("{\"id\": 1, \"text\": 2}".as_bytes(), path).unwrap_err();
        assert!(err.to_string().starts_with("mine.jsonl, line 1:"), "{err}");
        assert!(parse_jsonl("\n".as_bytes(), path).is_err());
    }

    #[test]
    fn the_split_is_seeded_nested_and_disjoint() {
        let (base, queries) = split(1000, 50, Some(100), 42).unwrap();
        assert_eq!((base.len(), queries.len()), (100, 50));
        assert!(base.iter().all(|b| !queries.contains(b)));
        assert!(base.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            split(1000, 50, Some(100), 42).unwrap(),
            (base.clone(), queries.clone())
        );

        let (bigger, same_queries) = split(1000, 50, Some(300), 42).unwrap();
        assert_eq!(same_queries, queries);
        assert!(base.iter().all(|b| bigger.contains(b)));

        let (all, _) = split(1000, 50, None, 42).unwrap();
        assert_eq!(all.len(), 950);
        let (capped, _) = split(1000, 50, Some(5000), 42).unwrap();
        assert_eq!(capped, all);

        assert_ne!(split(1000, 50, Some(100), 7).unwrap().1, queries);
        assert!(split(10, 10, None, 1).is_err());
        assert!(split(10, 1, Some(0), 1).is_err());
    }

    #[test]
    fn shuffles_are_permutations_and_portable() {
        let s = shuffled(10, 42);
        let mut sorted = s.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        // Pinned (checked against an independent implementation): a change here changes every
        // dataset built before it.
        assert_eq!(s, [0, 9, 5, 8, 6, 4, 7, 2, 1, 3]);
        assert_eq!(SplitMix64(0).next(), 0xe220_a839_7b1d_cdaf);
        assert!(shuffled(0, 1).is_empty());
    }

    #[test]
    fn fingerprints_tell_corpora_apart() {
        let a = [Record {
            id: 1,
            text: "ab".into(),
        }];
        let b = [
            Record {
                id: 1,
                text: "a".into(),
            },
            Record {
                id: 98,
                text: String::new(),
            },
        ];
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert!(fingerprint(&[]).starts_with("fnv1a64:"));
    }
}
