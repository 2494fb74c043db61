//! The TEXMEX formats (`.fvecs`, `.ivecs`, `.bvecs`) of the SIFT/GIST corpora: each row is a
//! little-endian `i32` dimension followed by that many values.

use std::io::{Read, Write};

use super::{io_error, malformed, Matrix};
use crate::error::{Error, Result};

fn read_vecs<T, const N: usize>(
    input: &mut dyn Read,
    format: &'static str,
    decode: fn([u8; N]) -> T,
) -> Result<Matrix<T>> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).map_err(io_error(format))?;
    let mut data = Vec::new();
    let mut cols = 0usize;
    let mut rows = 0usize;
    let mut at = 0usize;
    while at < bytes.len() {
        let head = bytes
            .get(at..at + 4)
            .ok_or_else(|| malformed(format, format!("truncated row header at byte {at}")))?;
        let d = i32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if d <= 0 {
            return Err(malformed(format, format!("row {rows} has dimension {d}")));
        }
        let d = d as usize;
        if rows == 0 {
            cols = d;
        } else if d != cols {
            return Err(malformed(
                format,
                format!("row {rows} has dimension {d}, earlier rows {cols}"),
            ));
        }
        at += 4;
        let body = bytes
            .get(at..at + d * N)
            .ok_or_else(|| malformed(format, format!("row {rows} is truncated")))?;
        data.extend(body.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            decode(a)
        }));
        at += d * N;
        rows += 1;
    }
    Ok(Matrix { rows, cols, data })
}

fn write_vecs<T: Copy, const N: usize>(
    out: &mut dyn Write,
    dim: usize,
    data: &[T],
    encode: fn(T) -> [u8; N],
) -> Result<()> {
    if dim == 0 || data.len() % dim != 0 || dim > i32::MAX as usize {
        return Err(Error::RaggedBatch {
            len: data.len(),
            dim,
        });
    }
    let mut buf = Vec::with_capacity(data.len() * N + data.len() / dim * 4);
    for row in data.chunks_exact(dim) {
        buf.extend_from_slice(&(dim as i32).to_le_bytes());
        row.iter().for_each(|v| buf.extend_from_slice(&encode(*v)));
    }
    out.write_all(&buf).map_err(io_error("fvecs"))
}

/// Reads `.fvecs`.
pub fn read_fvecs(input: &mut dyn Read) -> Result<Matrix<f32>> {
    read_vecs(input, "fvecs", f32::from_le_bytes)
}

/// Reads `.ivecs` (ground truth of the TEXMEX sets).
pub fn read_ivecs(input: &mut dyn Read) -> Result<Matrix<i32>> {
    read_vecs(input, "ivecs", i32::from_le_bytes)
}

/// Reads `.bvecs` (SIFT1B's byte vectors).
pub fn read_bvecs(input: &mut dyn Read) -> Result<Matrix<u8>> {
    read_vecs(input, "bvecs", |b: [u8; 1]| b[0])
}

/// Writes `.fvecs`.
pub fn write_fvecs(out: &mut dyn Write, dim: usize, data: &[f32]) -> Result<()> {
    write_vecs(out, dim, data, f32::to_le_bytes)
}

/// Writes `.ivecs`.
pub fn write_ivecs(out: &mut dyn Write, dim: usize, data: &[i32]) -> Result<()> {
    write_vecs(out, dim, data, i32::to_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_inconsistent_rows() {
        let mut buf = Vec::new();
        write_fvecs(&mut buf, 2, &[1.0, 2.0]).unwrap();
        write_fvecs(&mut buf, 3, &[1.0, 2.0, 3.0]).unwrap();
        let err = read_fvecs(&mut buf.as_slice()).unwrap_err();
        assert!(err.to_string().contains("row 1 has dimension 3"), "{err}");
        let bytes: Vec<u8> = vec![2, 0, 0, 0, 7, 9];
        assert_eq!(read_bvecs(&mut bytes.as_slice()).unwrap().data, vec![7, 9]);
    }
}
