//! NumPy `.npy` arrays of floats, through the `npyz` crate.

use std::io::{Read, Write};

use npyz::WriterBuilder;

use super::{io_error, malformed, Matrix};
use crate::error::{Error, Result};

/// Reads a 1-D or 2-D `.npy` array of `f32` or `f64` (converted) in C order.
pub fn read_npy_f32(input: &mut dyn Read) -> Result<Matrix<f32>> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).map_err(io_error("npy"))?;
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
