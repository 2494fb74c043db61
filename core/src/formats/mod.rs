//! Readers and writers for the vector file formats users bring.
//!
//! | format | layout |
//! |---|---|
//! | `.fvecs` / `.ivecs` / `.bvecs` | per row: `i32` dimension, then that many `f32` / `i32` / `u8` (TEXMEX, SIFT1M) |
//! | `.fbin` / `.ibin` | `u32` rows, `u32` columns, then row-major `f32` / `i32` (DiskANN, big-ann-benchmarks) |
//! | `.npy` | NumPy array, 2-D, `<f4` (or `<f8`, converted), C order |
//!
//! Everything works on `std::io::Read`/`Write`; opening files is the caller's business. The
//! server's binary rows body (a `.fbin` image, optionally followed by `u64` ids) is encoded and
//! decoded in memory by [`fbin::encode_rows`] and [`fbin::decode_rows`].

pub mod fbin;
mod npy;
mod texmex;

use std::io::Read;

pub use fbin::{
    decode_rows, encode_rows, read_fbin, read_ibin, write_fbin, write_ibin, FbinError, FbinRows,
};
pub use npy::{read_npy_f32, write_npy_f32};
pub use texmex::{read_bvecs, read_fvecs, read_ivecs, write_fvecs, write_ivecs};

use crate::error::{Error, Result};

/// A row-major matrix read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix<T> {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<T>,
}

impl<T> Matrix<T> {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// Vector file formats, as named by their usual extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Fvecs,
    Bvecs,
    Fbin,
    Npy,
}

impl Format {
    /// Guesses the format from a file name's extension.
    pub fn from_extension(name: &str) -> Result<Self> {
        let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "fvecs" => Ok(Format::Fvecs),
            "bvecs" => Ok(Format::Bvecs),
            "fbin" => Ok(Format::Fbin),
            "npy" => Ok(Format::Npy),
            _ => Err(Error::invalid(
                "format",
                name,
                "expected a .fvecs, .bvecs, .fbin or .npy file",
            )),
        }
    }

    /// Reads float vectors in this format (bytes of `.bvecs` are widened to `f32`).
    pub fn read_f32(self, input: &mut dyn Read) -> Result<Matrix<f32>> {
        match self {
            Format::Fvecs => read_fvecs(input),
            Format::Bvecs => {
                let m = read_bvecs(input)?;
                Ok(Matrix {
                    rows: m.rows,
                    cols: m.cols,
                    data: m.data.into_iter().map(f32::from).collect(),
                })
            }
            Format::Fbin => read_fbin(input),
            Format::Npy => read_npy_f32(input),
        }
    }
}

fn malformed(format: &'static str, reason: impl Into<String>) -> Error {
    Error::Malformed {
        format,
        reason: reason.into(),
    }
}

fn io_error(format: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| malformed(format, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn all_formats_roundtrip(rows in 0usize..20, cols in 1usize..17, seed in any::<u32>()) {
            let data: Vec<f32> = (0..rows * cols).map(|i| ((i as u32).wrapping_mul(seed) % 1000) as f32 / 7.0 - 50.0).collect();
            let ints: Vec<i32> = data.iter().map(|v| (*v * 3.0) as i32).collect();

            let mut buf = Vec::new();
            write_fbin(&mut buf, rows, cols, &data).unwrap();
            let m = read_fbin(&mut buf.as_slice()).unwrap();
            prop_assert_eq!((m.rows, m.cols), (rows, cols));
            prop_assert_eq!(&m.data, &data);

            let mut buf = Vec::new();
            write_ibin(&mut buf, rows, cols, &ints).unwrap();
            prop_assert_eq!(read_ibin(&mut buf.as_slice()).unwrap().data, ints.clone());

            let mut buf = Vec::new();
            write_fvecs(&mut buf, cols, &data).unwrap();
            let m = read_fvecs(&mut buf.as_slice()).unwrap();
            prop_assert_eq!(m.rows, rows);
            prop_assert_eq!(&m.data, &data);

            let mut buf = Vec::new();
            write_ivecs(&mut buf, cols, &ints).unwrap();
            prop_assert_eq!(read_ivecs(&mut buf.as_slice()).unwrap().data, ints);

            if rows > 0 {
                let mut buf = Vec::new();
                write_npy_f32(&mut buf, rows, cols, &data).unwrap();
                let m = Format::Npy.read_f32(&mut buf.as_slice()).unwrap();
                prop_assert_eq!((m.rows, m.cols), (rows, cols));
                prop_assert_eq!(m.data, data);
            }
        }
    }

    #[test]
    fn truncated_files_are_rejected() {
        let mut buf = Vec::new();
        write_fbin(&mut buf, 3, 4, &[1.0; 12]).unwrap();
        buf.truncate(buf.len() - 1);
        let err = read_fbin(&mut buf.as_slice()).unwrap_err();
        assert!(err.to_string().contains("header says 3 x 4"), "{err}");
        assert!(read_fbin(&mut &[1u8, 2][..]).is_err());
        assert!(Format::from_extension("x.csv").is_err());
        // .npy headers claiming more than the file holds: refused before anything trusts them.
        let npy = |version: u8, len: Option<u32>, shape: &str| {
            let header =
                format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape}), }}");
            let len = len.unwrap_or(header.len() as u32);
            let mut b = b"\x93NUMPY".to_vec();
            b.extend_from_slice(&[version, 0]);
            if version == 1 {
                b.extend_from_slice(&(len as u16).to_le_bytes());
            } else {
                b.extend_from_slice(&len.to_le_bytes());
            }
            b.extend_from_slice(header.as_bytes());
            b.extend_from_slice(&[0; 8]);
            b
        };
        for (bytes, why) in [
            (npy(2, Some(u32::MAX), "2, 1"), "header"),
            (npy(1, None, "3, 6148914691236517206"), "overflows"),
            (npy(1, None, "1000, 1000"), "needs more"),
        ] {
            let err = Format::Npy.read_f32(&mut bytes.as_slice()).unwrap_err();
            assert!(err.to_string().contains(why), "{why}: {err}");
        }
        assert_eq!(
            Format::from_extension("sift_base.FVECS").unwrap(),
            Format::Fvecs
        );
    }
}
