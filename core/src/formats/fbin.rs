//! `.fbin` / `.ibin`: `u32` rows, `u32` columns, then row-major little-endian `f32` / `i32`
//! (DiskANN, big-ann-benchmarks) — as files, and as the server's binary rows body.
//!
//! The binary body of `POST …/vectors` and `POST …/search` is a `.fbin` image, optionally
//! followed by one little-endian `u64` id per row (a `.fbin` file followed by an `ids.u64`
//! file, as `proxima dataset build` writes them):
//!
//! ```text
//! u32 rows | u32 dim | rows × dim f32 | [rows × u64 ids]      (all little-endian)
//! ```
//!
//! Whether ids are present follows from the length. [`encode_rows`] and [`decode_rows`] are
//! the one encoder and decoder of that body (the server, the CLI client, the benchmarks and
//! the tests use them); [`read_fbin`]/[`write_fbin`] read and write the files through
//! `Read`/`Write`. Values are not checked here: finiteness is the caller's business.

use std::io::{Read, Write};

use thiserror::Error;

use super::{io_error, malformed, Matrix};
use crate::error::{Error, Result};

/// Bytes of the header: `u32` rows, `u32` columns.
pub const HEADER_BYTES: usize = 8;

/// Why a binary rows body was refused. The messages are the ones the HTTP API answers with
/// (code `malformed_binary`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FbinError {
    /// Shorter than the 8-byte header.
    #[error("a binary body starts with u32 rows and u32 dim: got {len} bytes")]
    Truncated { len: usize },
    /// The header's sizes overflow (nothing is allocated for them).
    #[error("{rows} rows × {dim} is too large")]
    TooLarge { rows: usize, dim: usize },
    /// The bytes after the header are neither the vectors nor the vectors and ids.
    #[error(
        "{rows} rows × {dim} dims need {floats} bytes of f32 (or {with_ids} with u64 ids) \
         after the 8-byte header: got {got}"
    )]
    WrongLength {
        rows: usize,
        dim: usize,
        floats: usize,
        with_ids: usize,
        got: usize,
    },
    /// A sequence of `u64` (an `ids.u64` file) whose length is not a multiple of 8.
    #[error("{len} bytes are not a sequence of u64 (8 bytes each)")]
    RaggedIds { len: usize },
}

/// A decoded binary rows body: `rows × dim` values, row-major, and the ids when present.
#[derive(Debug, Clone, PartialEq)]
pub struct FbinRows {
    pub rows: usize,
    pub dim: usize,
    pub vectors: Vec<f32>,
    pub ids: Option<Vec<u64>>,
}

/// The header's rows and columns; `None` when `bytes` is shorter than the header.
pub fn read_header(bytes: &[u8]) -> Option<(usize, usize)> {
    let word = |i: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(i..i + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(b) as usize)
    };
    Some((word(0)?, word(4)?))
}

/// Decodes a binary rows body (see the module documentation).
pub fn decode_rows(body: &[u8]) -> std::result::Result<FbinRows, FbinError> {
    let (rows, dim) = read_header(body).ok_or(FbinError::Truncated { len: body.len() })?;
    let payload = &body[HEADER_BYTES..];
    let sizes = rows
        .checked_mul(dim)
        .and_then(|n| n.checked_mul(4))
        .and_then(|floats| {
            rows.checked_mul(8)
                .and_then(|ids| floats.checked_add(ids))
                .map(|with_ids| (floats, with_ids))
        });
    let (floats, with_ids) = sizes.ok_or(FbinError::TooLarge { rows, dim })?;
    let has_ids = if payload.len() == floats {
        false
    } else if payload.len() == with_ids {
        true
    } else {
        return Err(FbinError::WrongLength {
            rows,
            dim,
            floats,
            with_ids,
            got: payload.len(),
        });
    };
    let vectors = payload[..floats]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let ids = has_ids.then(|| u64s(&payload[floats..]));
    Ok(FbinRows {
        rows,
        dim,
        vectors,
        ids,
    })
}

/// Encodes a binary rows body: `vectors` (row-major, `dim` wide) and, when given, one id per
/// row. The inverse of [`decode_rows`].
///
/// # Panics
/// When `vectors` is not whole rows of `dim` (`dim` 0 takes no vectors), when `ids` does not
/// hold one id per row, or when rows or `dim` pass `u32::MAX`: the body would not say what
/// the caller holds.
pub fn encode_rows(dim: usize, vectors: &[f32], ids: Option<&[u64]>) -> Vec<u8> {
    let rows = match (dim, ids) {
        (0, Some(ids)) => ids.len(),
        _ => vectors.len().checked_div(dim).unwrap_or(0),
    };
    assert!(
        rows.checked_mul(dim) == Some(vectors.len()),
        "{} values are not rows of {dim}",
        vectors.len()
    );
    if let Some(ids) = ids {
        assert_eq!(ids.len(), rows, "one id per row");
    }
    let rows32 = u32::try_from(rows).expect("rows fit in u32");
    let dim32 = u32::try_from(dim).expect("dim fits in u32");
    let mut out =
        Vec::with_capacity(HEADER_BYTES + vectors.len() * 4 + ids.map_or(0, |i| i.len() * 8));
    out.extend_from_slice(&rows32.to_le_bytes());
    out.extend_from_slice(&dim32.to_le_bytes());
    for v in vectors {
        out.extend_from_slice(&v.to_le_bytes());
    }
    encode_u64s_into(ids.unwrap_or(&[]), &mut out);
    out
}

/// Decodes a sequence of little-endian `u64` (the ids after a body's vectors, an `ids.u64`
/// file).
pub fn decode_u64s(bytes: &[u8]) -> std::result::Result<Vec<u64>, FbinError> {
    if bytes.len() % 8 != 0 {
        return Err(FbinError::RaggedIds { len: bytes.len() });
    }
    Ok(u64s(bytes))
}

/// Appends `values` as little-endian `u64` to `out`.
pub fn encode_u64s_into(values: &[u64], out: &mut Vec<u8>) {
    out.reserve(values.len() * 8);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn u64s(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

fn read_bin<T, const N: usize>(
    input: &mut dyn Read,
    format: &'static str,
    decode: fn([u8; N]) -> T,
) -> Result<Matrix<T>> {
    let mut header = [0u8; HEADER_BYTES];
    input
        .read_exact(&mut header)
        .map_err(|_| malformed(format, "missing the 8-byte header"))?;
    let (rows, cols) = read_header(&header).expect("the header is 8 bytes");
    if cols == 0 && rows > 0 {
        return Err(malformed(format, "zero columns"));
    }
    let expected = rows
        .checked_mul(cols)
        .and_then(|c| c.checked_mul(N))
        .ok_or_else(|| malformed(format, "header size overflows"))?;
    let mut bytes = Vec::new();
    input
        .take(expected as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(format))?;
    if bytes.len() != expected {
        return Err(malformed(
            format,
            format!(
                "header says {rows} x {cols} ({expected} bytes of data), file has {}{}",
                bytes.len().min(expected),
                if bytes.len() > expected { "+" } else { "" }
            ),
        ));
    }
    let data = bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            decode(a)
        })
        .collect();
    Ok(Matrix { rows, cols, data })
}

fn write_bin<T: Copy, const N: usize>(
    out: &mut dyn Write,
    rows: usize,
    cols: usize,
    data: &[T],
    encode: fn(T) -> [u8; N],
) -> Result<()> {
    if rows * cols != data.len() || rows > u32::MAX as usize || cols > u32::MAX as usize {
        return Err(Error::RaggedBatch {
            len: data.len(),
            dim: cols,
        });
    }
    let mut buf = Vec::with_capacity(HEADER_BYTES + data.len() * N);
    buf.extend_from_slice(&(rows as u32).to_le_bytes());
    buf.extend_from_slice(&(cols as u32).to_le_bytes());
    data.iter().for_each(|v| buf.extend_from_slice(&encode(*v)));
    out.write_all(&buf).map_err(io_error("fbin"))
}

/// Reads a `.fbin` file.
pub fn read_fbin(input: &mut dyn Read) -> Result<Matrix<f32>> {
    read_bin(input, "fbin", f32::from_le_bytes)
}

/// Reads a `.ibin` file (e.g. ground-truth neighbour ids).
pub fn read_ibin(input: &mut dyn Read) -> Result<Matrix<i32>> {
    read_bin(input, "ibin", i32::from_le_bytes)
}

/// Writes a `.fbin` file.
pub fn write_fbin(out: &mut dyn Write, rows: usize, cols: usize, data: &[f32]) -> Result<()> {
    write_bin(out, rows, cols, data, f32::to_le_bytes)
}

/// Writes a `.ibin` file.
pub fn write_ibin(out: &mut dyn Write, rows: usize, cols: usize, data: &[i32]) -> Result<()> {
    write_bin(out, rows, cols, data, i32::to_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_with_and_without_ids() {
        let v = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = decode_rows(&encode_rows(3, &v, None)).unwrap();
        assert_eq!(
            (b.rows, b.dim, b.vectors.as_slice(), b.ids),
            (2, 3, &v[..], None)
        );
        let b = decode_rows(&encode_rows(3, &v, Some(&[7, 9]))).unwrap();
        assert_eq!(b.ids, Some(vec![7, 9]));
        // A .fbin file is a body, and a .fbin file followed by its ids.u64 one.
        let mut file = Vec::new();
        write_fbin(&mut file, 2, 3, &v).unwrap();
        assert_eq!(file, encode_rows(3, &v, None));
        encode_u64s_into(&[7, 9], &mut file);
        assert_eq!(file, encode_rows(3, &v, Some(&[7, 9])));
        assert_eq!(decode_u64s(&file[32..]).unwrap(), vec![7, 9]);
        // NaN passes through: finiteness is checked by the callers.
        let nan = decode_rows(&encode_rows(1, &[f32::NAN], None)).unwrap();
        assert!(nan.vectors[0].is_nan());
        // No rows.
        let empty = decode_rows(&encode_rows(4, &[], None)).unwrap();
        assert_eq!((empty.rows, empty.dim, empty.vectors.len()), (0, 4, 0));
    }

    #[test]
    fn malformed_bodies_are_typed_errors() {
        let v = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(
            decode_rows(&[1, 0, 0]),
            Err(FbinError::Truncated { len: 3 })
        );
        let mut truncated = encode_rows(3, &v, None);
        truncated.pop();
        let err = decode_rows(&truncated).unwrap_err();
        assert_eq!(
            err,
            FbinError::WrongLength {
                rows: 2,
                dim: 3,
                floats: 24,
                with_ids: 40,
                got: 23
            }
        );
        assert_eq!(
            err.to_string(),
            "2 rows × 3 dims need 24 bytes of f32 (or 40 with u64 ids) after the 8-byte header: got 23"
        );
        // A header claiming an absurd size is refused without allocating.
        let mut huge = vec![0xff; 8];
        huge.extend_from_slice(&[0; 16]);
        assert!(matches!(
            decode_rows(&huge),
            Err(FbinError::WrongLength { .. } | FbinError::TooLarge { .. })
        ));
        // rows × dim × 4 fits, but adding the ids' bytes would overflow.
        assert_eq!(
            decode_rows(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f]),
            Err(FbinError::TooLarge {
                rows: u32::MAX as usize,
                dim: 0x3fff_ffff
            })
        );
        assert_eq!(decode_u64s(&[0; 9]), Err(FbinError::RaggedIds { len: 9 }));
        assert_eq!(read_header(&[0; 7]), None);
        assert_eq!(read_header(&encode_rows(3, &v, None)), Some((2, 3)));
    }

    #[test]
    #[should_panic(expected = "not rows of 4")]
    fn encoding_a_partial_row_panics() {
        encode_rows(4, &[1.0; 6], None);
    }

    #[test]
    #[should_panic(expected = "one id per row")]
    fn encoding_ids_that_do_not_match_the_rows_panics() {
        encode_rows(2, &[1.0; 4], Some(&[1]));
    }
}
