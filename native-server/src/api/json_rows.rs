//! A fast path for the `vectors` field of JSON request bodies.
//!
//! A batch of 100 queries of 384 numbers is about 800 KB of JSON text, and turning that text
//! into floats is most of what the JSON form costs the server: about 1 ms of CPU with
//! `serde_json`, as much as the rest of the request's HTTP handling together. `sonic-rs` and
//! `simd-json` were no faster on such bodies on the machines measured (number parsing, not
//! structure, is the work), so this module parses the array of rows itself, eight digits at a
//! time, in about half the time.
//!
//! It is only a fast path: it takes the common shape (a top-level `"vectors"` key whose value
//! is an array of arrays of plain JSON numbers of at most 19 significant digits and decimal
//! exponents within ±308), reads each number to exactly the f32 `serde_json` reads, and hands
//! every other body — any doubt, any error — to `serde_json`
//! whole, so that what is accepted, what is refused and every error message stay
//! `serde_json`'s. The rest of the body is always parsed by `serde_json`, with the vectors
//! replaced by `[]`.
//!
//! Measured (`cargo bench -p proxima-server --bench json_rows -- --quick`, `bench` profile;
//! 2 CPUs (nproc), AMD EPYC, Linux x86_64, shared with other builds while it ran): an insert
//! body of 1,000 rows × 384 parsed into the row-major buffer took 12.1 ms through this path
//! against 19.6 ms through `serde_json` (the server's `Rows`; 21.1 ms plainly into
//! `Vec<Vec<f32>>`) with each f32 at its shortest (4.4 MiB of JSON), and 12.4 ms against
//! 25.8 ms (27.1 ms) with the f64 of each f32, as Python and JavaScript write them (7.6 MiB):
//! 1.6 to 2.1 times faster, so it stays. Rows as base64 strings (`serde_json`) took 2.4 ms.

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::errors::ApiError;
use super::types::{parse, Rows};

/// A request body with a `vectors` field of [`Rows`].
pub trait WithRows {
    fn set_rows(&mut self, rows: Rows);
}

/// Parses a JSON body, its `vectors` through the fast path when it can.
pub fn parse_with_rows<T: DeserializeOwned + WithRows>(body: &[u8]) -> Result<T, ApiError> {
    if let Some((start, end, rows)) = find_rows(body) {
        let mut rest = Vec::with_capacity(body.len() - (end - start) + 2);
        rest.extend_from_slice(&body[..start]);
        rest.extend_from_slice(b"[]");
        rest.extend_from_slice(&body[end..]);
        // With `[]` in place of the rows, serde_json checks everything else (unknown or
        // duplicate fields, the other values); an error here is the whole body's error.
        if let Ok(mut request) = serde_json::from_slice::<T>(&rest) {
            request.set_rows(rows);
            return Ok(request);
        }
    }
    parse(body)
}

/// Finds the top-level `"vectors"` value and parses it: its byte range and its rows, or
/// `None` when the body is not of the shape the fast path takes.
fn find_rows(b: &[u8]) -> Option<(usize, usize, Rows)> {
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(b, i + 1);
    let mut found = None;
    if b.get(i) == Some(&b'}') {
        return None;
    }
    loop {
        // A key without escapes (an escaped key could spell "vectors").
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = i + 1 + b[i + 1..].iter().position(|&c| c == b'"' || c == b'\\')?;
        if b[key_end] != b'"' {
            return None;
        }
        let key = &b[i + 1..key_end];
        i = ws(b, key_end + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(b, i + 1);
        if key == b"vectors" {
            if found.is_some() {
                return None;
            }
            let (rows, end) = rows(b, i)?;
            found = Some((i, end, rows));
            i = end;
        } else {
            // Any other value is skipped by serde_json itself.
            let mut values = serde_json::Deserializer::from_slice(&b[i..]).into_iter::<&RawValue>();
            values.next()?.ok()?;
            i += values.byte_offset();
        }
        i = ws(b, i);
        match b.get(i)? {
            b',' => i = ws(b, i + 1),
            b'}' => return found,
            _ => return None,
        }
    }
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\t' | b'\r')) {
        i += 1;
    }
    i
}

/// `[[n, …], …]` at `b[i..]`: the rows and the index just past the closing bracket.
fn rows(b: &[u8], mut i: usize) -> Option<(Rows, usize)> {
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i = ws(b, i + 1);
    let mut data = Vec::new();
    let mut lens = Vec::new();
    if b.get(i) == Some(&b']') {
        return Some((Rows::from_row_lengths(data, &lens), i + 1));
    }
    loop {
        if b.get(i) != Some(&b'[') {
            return None;
        }
        i = ws(b, i + 1);
        let before = data.len();
        if b.get(i) == Some(&b']') {
            i += 1;
        } else {
            loop {
                let (x, end) = number(b, i)?;
                data.push(x);
                i = ws(b, end);
                match b.get(i)? {
                    b',' => i = ws(b, i + 1),
                    b']' => {
                        i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        lens.push(data.len() - before);
        i = ws(b, i);
        match b.get(i)? {
            b',' => i = ws(b, i + 1),
            b']' => return Some((Rows::from_row_lengths(data, &lens), i + 1)),
            _ => return None,
        }
    }
}

/// The exact powers of ten of f64, for the common exponents without a table lookup.
const POW10_EXACT: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// `10^k` for k in 0..=308, each the f64 nearest to it: the table `serde_json` scales by.
#[inline]
fn pow10(k: usize) -> Option<f64> {
    if let Some(&p) = POW10_EXACT.get(k) {
        return Some(p);
    }
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    TABLE
        .get_or_init(|| {
            (0..=308)
                .map(|k| format!("1e{k}").parse().unwrap_or(f64::INFINITY))
                .collect()
        })
        .get(k)
        .copied()
}

/// The value of eight ASCII digits, or `None` if one of the bytes is not a digit.
#[inline]
fn eight_digits(b: &[u8]) -> Option<u64> {
    let v = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
    let low = v.wrapping_sub(0x3030_3030_3030_3030);
    let high = v.wrapping_add(0x4646_4646_4646_4646);
    if (low | high) & 0x8080_8080_8080_8080 != 0 {
        return None;
    }
    // Pairs, then quads, then all eight (the classic SWAR digit fold).
    let mut x = low;
    x = (x.wrapping_mul(10) + (x >> 8)) & 0x00ff_00ff_00ff_00ff;
    x = (x.wrapping_mul(100) + (x >> 16)) & 0x0000_ffff_0000_ffff;
    x = x.wrapping_mul(10_000) + (x >> 32);
    Some(x & 0xffff_ffff)
}

/// A JSON number at `b[i..]` (strict JSON grammar): its value and the index past it, or `None`
/// when it is not one, or not one this fast path takes.
#[inline]
fn number(b: &[u8], mut i: usize) -> Option<(f32, usize)> {
    let negative = b.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let mut mantissa: u64 = 0;
    let mut digits = 0u32;
    match *b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => {
            while let Some(&c) = b.get(i).filter(|c| c.is_ascii_digit()) {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
                digits += 1;
                i += 1;
            }
        }
        _ => return None,
    }
    // A fraction or an exponent makes serde_json read a float; otherwise an integer.
    let mut float = false;
    let mut exponent: i32 = 0;
    if b.get(i) == Some(&b'.') {
        float = true;
        i += 1;
        let first = i;
        if digits == 0 {
            // Zeros after "0." only scale.
            while b.get(i) == Some(&b'0') {
                i += 1;
            }
        }
        while digits + 8 <= 19 {
            let Some(v) = eight_digits(&b[i..]) else {
                break;
            };
            mantissa = mantissa.wrapping_mul(100_000_000) + v;
            digits += 8;
            i += 8;
        }
        while let Some(&c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
            digits += 1;
            i += 1;
        }
        if i == first {
            return None;
        }
        exponent -= (i - first) as i32;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        float = true;
        i += 1;
        let negative_exponent = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let first = i;
        let mut e: i32 = 0;
        while let Some(&c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            e = e.saturating_mul(10).saturating_add(i32::from(c - b'0'));
            i += 1;
        }
        if i == first {
            return None;
        }
        exponent = exponent.saturating_add(if negative_exponent { -e } else { e });
    }
    // Up to 19 digits fit a u64 exactly (a longer mantissa, which wrapped above, goes to
    // serde_json). The value is then exactly what serde_json (without `float_roundtrip`) makes
    // of the same text, so both paths store the same f32: an integer stays a u64 (or an i64
    // when negative) and converts to f32 once; a float is the mantissa as f64, multiplied or
    // divided by one power of ten from serde_json's table, converted to f32.
    if digits > 19 {
        return None;
    }
    let value = if !float {
        if !negative {
            mantissa as f32
        } else {
            let neg = (mantissa as i64).wrapping_neg();
            if neg >= 0 {
                // -0, or below i64::MIN: serde_json reads these as f64.
                -(mantissa as f64) as f32
            } else {
                neg as f32
            }
        }
    } else {
        let m = mantissa as f64;
        let scaled = if exponent >= 0 {
            let f = m * pow10(exponent as usize)?;
            // Out of range: serde_json's error, from serde_json.
            if f.is_infinite() {
                return None;
            }
            f
        } else {
            m / pow10(exponent.unsigned_abs() as usize)?
        };
        (if negative { -scaled } else { scaled }) as f32
    };
    Some((value, i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::{InsertRequest, SearchRequest};
    use proptest::prelude::*;

    fn fast(text: &str) -> Option<Vec<f32>> {
        let (start, end, rows) = find_rows(text.as_bytes())?;
        assert!(start < end);
        rows.into_flat(rows_width(text)).ok()
    }

    fn rows_width(text: &str) -> usize {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        v["vectors"][0].as_array().map_or(0, Vec::len)
    }

    fn slow(text: &str) -> Vec<f32> {
        let r: SearchRequest = serde_json::from_slice(text.as_bytes()).unwrap();
        r.vectors.into_flat(rows_width(text)).unwrap()
    }

    #[test]
    fn numbers_of_every_common_shape() {
        for n in [
            "0",
            "-0",
            "1",
            "-1",
            "0.5",
            "-0.0013575553894042969",
            "12.0034",
            "1e3",
            "1E+3",
            "2.5e-7",
            "123456789.125",
            "9999999999999999999",
            "-9223372036854775808",
            "-9223372036854775809",
            "9007199791611905",
            "0.000000000000000000001",
            "0.000000013344396254666436",
            "1e-45",
            "1e45",
            "-1.5e-300",
        ] {
            let text = format!(r#"{{"vectors": [[{n}]]}}"#);
            let got = fast(&text).unwrap_or_else(|| panic!("{n}: not taken"));
            let want = slow(&text);
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{n}: {got:?} vs serde_json's {want:?}"
            );
        }
    }

    proptest! {
        /// Any number of up to 19 digits and any exponent reads to the bits serde_json reads.
        #[test]
        fn every_number_reads_as_serde_json_reads_it(
            negative in any::<bool>(),
            digits in "[1-9][0-9]{0,18}",
            point in 0usize..20,
            exponent in proptest::option::of(-330i32..330),
        ) {
            let (int, frac) = digits.split_at(point.min(digits.len()));
            let int = if int.is_empty() { "0" } else { int };
            let mut n = format!("{}{int}", if negative { "-" } else { "" });
            if !frac.is_empty() {
                n = format!("{n}.{frac}");
            }
            if let Some(e) = exponent {
                n = format!("{n}e{e}");
            }
            let text = format!(r#"{{"vectors": [[{n}]]}}"#);
            let slow = serde_json::from_str::<SearchRequest>(&text).ok();
            match (fast(&text), slow) {
                (Some(got), Some(want)) => {
                    let want = want.vectors.into_flat(1).unwrap();
                    prop_assert_eq!(got[0].to_bits(), want[0].to_bits(), "{}", n);
                }
                // Not taken: serde_json answers (out of range, too many digits).
                (None, _) => {}
                (Some(got), None) => prop_assert!(false, "{n}: fast read {got:?}, serde_json refused"),
            }
        }
    }

    #[test]
    fn other_shapes_go_to_serde_json() {
        for text in [
            r#"{"vectors": [[01]]}"#,
            r#"{"vectors": [[1.]]}"#,
            r#"{"vectors": [[.5]]}"#,
            r#"{"vectors": [[-]]}"#,
            r#"{"vectors": [[1e]]}"#,
            r#"{"vectors": [[1e400]]}"#,
            r#"{"vectors": [[1e-400]]}"#,
            r#"{"vectors": [[12345678901234567890]]}"#,
            r#"{"vectors": [[36893488147419103239]]}"#,
            r#"{"vectors": [[0.36893488147419103239]]}"#,
            r#"{"vectors": [[NaN]]}"#,
            r#"{"vectors": [["AACAPw=="]]}"#,
            r#"{"vectors": [[1, 2],]}"#,
            r#"{"vectors": [[1 2]]}"#,
            r#"{"vectors": [1, 2]}"#,
            r#"{"vectors": [[1]], "vectors": [[2]]}"#,
            r#"{"vect\u006frs": [[1]]}"#,
            r#"{"k": 1}"#,
            r#"{"k": [1, {"a": "}"}], "vectors": [[1]]"#,
            r#"[]"#,
            "",
        ] {
            assert!(find_rows(text.as_bytes()).is_none(), "{text}");
            // The answer is serde_json's, error or not.
            let via_fast = parse_with_rows::<SearchRequest>(text.as_bytes());
            let via_serde = parse::<SearchRequest>(text.as_bytes());
            match (via_fast, via_serde) {
                (Ok(a), Ok(b)) => assert_eq!(a.vectors, b.vectors, "{text}"),
                (Err(a), Err(b)) => assert_eq!((a.code, a.message), (b.code, b.message)),
                (a, b) => panic!("{text}: {:?} vs {:?}", a.is_ok(), b.is_ok()),
            }
        }
    }

    #[test]
    fn the_rest_of_the_body_is_checked_by_serde_json() {
        let ok: SearchRequest = parse_with_rows(
            br#"{"k": 3, "params": {"nprobe": 4, "ef": null}, "vectors": [[1, 2], [3, 4]], "consistency": "strong"}"#,
        )
        .unwrap();
        assert_eq!((ok.k, ok.params.nprobe), (3, Some(4)));
        assert_eq!(ok.vectors.into_flat(2).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        let insert: InsertRequest =
            parse_with_rows(br#"{"vectors": [[1], [2]], "ids": [7, 8]}"#).unwrap();
        assert_eq!(insert.ids, Some(vec![7, 8]));
        assert_eq!(insert.vectors.rows, 2);
        for bad in [
            &br#"{"vectors": [[1]], "kk": 1}"#[..],
            br#"{"vectors": [[1]], "k": "x"}"#,
            br#"{"vectors": [[1]], "k": 1"#,
            br#"{"vectors": [[1]]} trailing"#,
        ] {
            let a = parse_with_rows::<SearchRequest>(bad).unwrap_err();
            let b = parse::<SearchRequest>(bad).unwrap_err();
            assert_eq!((a.code, a.message), (b.code, b.message));
        }
        // Ragged rows are reported as serde's path reports them.
        let ragged: SearchRequest = parse_with_rows(br#"{"vectors": [[1, 2], [3]]}"#).unwrap();
        assert_eq!(
            ragged.vectors.into_flat(2).unwrap_err().code,
            "dimension_mismatch"
        );
    }

    fn body(rows: &[Vec<f32>], style: usize, space: &str) -> String {
        let num = |x: f32| match style {
            0 => format!("{x}"),
            1 => serde_json::to_string(&(x as f64)).unwrap(),
            _ => format!("{x:e}"),
        };
        let sep = format!("{space},{space}");
        let rows: Vec<String> = rows
            .iter()
            .map(|r| {
                let r: Vec<String> = r.iter().map(|&x| num(x)).collect();
                format!("[{space}{}{space}]", r.join(&sep))
            })
            .collect();
        format!(
            "{{{space}\"vectors\"{space}:{space}[{}]{space}}}",
            rows.join(&sep)
        )
    }

    proptest! {
        /// Embedding-like values (magnitudes 1e-9 to 10) in any spelling (shortest f32, its f64 expansion as
        /// serde_json and JavaScript write it, exponent form) and any whitespace take the fast
        /// path and come out as the very f32 that was written, as serde_json reads them.
        #[test]
        fn fast_path_reads_embedding_values_exactly(
            rows in prop::collection::vec(prop::collection::vec(
                (-9.0f64..1.0, any::<bool>()).prop_map(|(e, negative)| {
                    let x = 10f64.powf(e) as f32;
                    if negative { -x } else { x }
                }), 3), 1..5),
            style in 0..3usize,
            space in prop::sample::select(vec!["", " ", "\n  ", "\t"]),
        ) {
            let text = body(&rows, style, space);
            let want: Vec<u32> = rows.iter().flatten().map(|x| x.to_bits()).collect();
            let got = fast(&text).expect("fast path");
            prop_assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.clone());
            prop_assert_eq!(slow(&text).iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want);
        }

        /// Any body, mangled anyhow: the fast path answers exactly what serde_json answers
        /// (the same values, or the same error code and message).
        #[test]
        fn any_body_gets_serde_jsons_answer(
            rows in prop::collection::vec(prop::collection::vec(-2.0f32..2.0, 2), 0..3),
            cuts in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(
                vec!["", "[", "]", ",", "\"", "-", ".", "e", "0", "1", " ", "}", "{", ":", "\\"])), 0..4),
            k_first in any::<bool>(),
        ) {
            let mut text = body(&rows, 1, " ");
            if k_first {
                text = text.replacen('{', "{\"k\": 2, ", 1);
            }
            for (at, insert) in &cuts {
                let at = at.index(text.len() + 1);
                // Replace one byte (or insert at the end) with the chosen text.
                let end = (at + 1).min(text.len());
                text.replace_range(at..end, insert);
            }
            let fast = parse_with_rows::<SearchRequest>(text.as_bytes());
            let slow = parse::<SearchRequest>(text.as_bytes());
            match (fast, slow) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(a.k, b.k);
                    prop_assert_eq!(a.vectors, b.vectors);
                }
                (Err(a), Err(b)) => prop_assert_eq!((a.code, a.message), (b.code, b.message)),
                (a, b) => prop_assert!(false, "{}: fast ok {} serde ok {}", text, a.is_ok(), b.is_ok()),
            }
        }

        /// Over the whole f32 range, whatever the fast path takes it reads exactly; the rest
        /// (exponents beyond ±44, more than 19 digits) goes to serde_json.
        #[test]
        fn fast_path_is_exact_wherever_it_applies(
            rows in prop::collection::vec(prop::collection::vec(
                prop::num::f32::NORMAL | prop::num::f32::ZERO, 3), 1..4),
            style in 0..3usize,
        ) {
            let text = body(&rows, style, "");
            let want: Vec<u32> = rows.iter().flatten().map(|x| x.to_bits()).collect();
            if let Some(got) = fast(&text) {
                prop_assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want);
            }
        }
    }
}
