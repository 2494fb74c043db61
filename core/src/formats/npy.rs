//! NumPy `.npy` arrays of floats, through the `npyz` crate.

use std::io::{Read, Write};

use npyz::WriterBuilder;

use super::{io_error, malformed, Matrix};
use crate::error::{Error, Result};

/// Reads a 1-D or 2-D `.npy` array of `f32` or `f64` (converted) in C order.
pub fn read_npy_f32(input: &mut dyn Read) -> Result<Matrix<f32>> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).map_err(io_error("npy"))?;
    preflight(&bytes)?;
    let npy = npyz::NpyFile::new(bytes.as_slice()).map_err(|e| malformed("npy", e.to_string()))?;
    if npy.order() != npyz::Order::C {
        return Err(malformed("npy", "Fortran-ordered arrays are not supported"));
    }
    let shape = npy.shape().to_vec();
    let (rows, cols) = match shape.as_slice() {
        [n] => (1, *n as usize),
        [r, c] => (*r as usize, *c as usize),
        _ => {
            return Err(malformed(
                "npy",
                format!("expected a 2-D array, got shape {shape:?}"),
            ))
        }
    };
    let type_str = match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => return Err(malformed("npy", format!("unsupported dtype {other:?}"))),
    };
    let data: Vec<f32> = match type_str.as_str() {
        "<f4" => npy
            .into_vec::<f32>()
            .map_err(|e| malformed("npy", e.to_string()))?,
        "<f8" => npy
            .into_vec::<f64>()
            .map_err(|e| malformed("npy", e.to_string()))?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        other => {
            return Err(malformed(
                "npy",
                format!("dtype {other} is not little-endian float32/float64"),
            ))
        }
    };
    if data.len() != rows * cols {
        return Err(malformed("npy", "data length does not match the shape"));
    }
    Ok(Matrix { rows, cols, data })
}

/// Checks what `npyz` takes on trust, before it reads the file: a header length within the
/// file (it allocates that much), and a shape whose element count neither overflows (it
/// multiplies unchecked) nor needs more bytes than follow the header.
fn preflight(bytes: &[u8]) -> Result<()> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(malformed("npy", "not an .npy file (bad magic)"));
    }
    let (len, start): (usize, usize) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(malformed("npy", format!("unsupported format version {v}"))),
    };
    let header = bytes.get(start..start.saturating_add(len)).ok_or_else(|| {
        malformed(
            "npy",
            format!("a {len}-byte header in a {}-byte file", bytes.len()),
        )
    })?;
    let header = String::from_utf8_lossy(header);
    let shape = header
        .find("'shape'")
        .and_then(|at| {
            let open = at + header[at..].find('(')?;
            let close = open + header[open..].find(')')?;
            Some(&header[open + 1..close])
        })
        .ok_or_else(|| malformed("npy", "the header has no shape"))?;
    let mut count: u64 = 1;
    for dim in shape.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let dim: u64 = dim
            .parse()
            .map_err(|_| malformed("npy", format!("shape entry {dim:?} is not a number")))?;
        count = count
            .checked_mul(dim)
            .ok_or_else(|| malformed("npy", format!("shape ({shape}) overflows")))?;
    }
    let body = (bytes.len() - start - len) as u64;
    if count.saturating_mul(4) > body {
        return Err(malformed(
            "npy",
            format!("shape ({shape}) needs more than the {body} bytes after the header"),
        ));
    }
    Ok(())
}

/// Writes a 2-D `<f4` `.npy` array.
pub fn write_npy_f32(out: &mut dyn Write, rows: usize, cols: usize, data: &[f32]) -> Result<()> {
    if rows * cols != data.len() {
        return Err(Error::RaggedBatch {
            len: data.len(),
            dim: cols,
        });
    }
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[rows as u64, cols as u64])
        .writer(out)
        .begin_nd()
        .map_err(io_error("npy"))?;
    writer
        .extend(data.iter().copied())
        .map_err(io_error("npy"))?;
    writer.finish().map_err(io_error("npy"))
}
