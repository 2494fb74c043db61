//! Checks applied to every batch of vectors and ids before it reaches an index.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::index::VectorId;

/// Largest dimension accepted anywhere (collections, plans, the advisor).
pub const MAX_DIM: usize = 65_536;
/// Largest vector count a memory plan or advice is computed for (2^40, about 1.1 trillion):
/// every byte count then fits in a u64.
pub const MAX_PLAN_VECTORS: u64 = 1 << 40;

/// Checks the size of a plan or an advice request: `1 ≤ n ≤ MAX_PLAN_VECTORS`,
/// `1 ≤ dim ≤ MAX_DIM`.
pub fn check_plan_size(n: u64, dim: usize) -> Result<()> {
    if dim == 0 || dim > MAX_DIM {
        return Err(Error::invalid(
            "dim",
            dim,
            format!("must be between 1 and {MAX_DIM}"),
        ));
    }
    if n == 0 || n > MAX_PLAN_VECTORS {
        return Err(Error::invalid(
            "vectors",
            n,
            format!("must be between 1 and {MAX_PLAN_VECTORS}"),
        ));
    }
    Ok(())
}

/// Largest vector norm accepted: squared distances and inner products of two such vectors
/// stay below `f32::MAX` (`|a − b|² ≤ 2|a|² + 2|b|²`), so no score overflows to infinity or
/// NaN and ranking stays exact. Real embeddings are many orders of magnitude smaller.
pub const MAX_NORM: f64 = 1e18;

/// Checks a row-major batch of `dim`-dimensional vectors and returns its number of rows.
///
/// Rejects an empty batch, a length that is not a multiple of `dim` and any NaN or infinity
/// (naming the row and column). Storage engines also apply [`check_norms`] to what users send.
pub fn check_vectors(vectors: &[f32], dim: usize, what: &'static str) -> Result<usize> {
    if dim == 0 {
        return Err(Error::invalid("dim", 0, "must be at least 1"));
    }
    if vectors.is_empty() {
        return Err(Error::EmptyBatch { what });
    }
    if vectors.len() % dim != 0 {
        if vectors.len() < dim {
            return Err(Error::DimensionMismatch {
                expected: dim,
                got: vectors.len(),
            });
        }
        return Err(Error::RaggedBatch {
            len: vectors.len(),
            dim,
        });
    }
    if let Some(pos) = vectors.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFiniteValue {
            row: pos / dim,
            col: pos % dim,
            value: vectors[pos],
        });
    }
    Ok(vectors.len() / dim)
}

/// Rejects rows (of a batch [`check_vectors`] accepted) whose norm is above [`MAX_NORM`].
pub fn check_norms(vectors: &[f32], dim: usize) -> Result<()> {
    if dim == 0 {
        return Ok(());
    }
    for (row, v) in vectors.chunks_exact(dim).enumerate() {
        let norm = squared_norm(v).sqrt();
        if norm > MAX_NORM {
            return Err(Error::VectorTooLarge {
                row,
                norm,
                max: MAX_NORM,
            });
        }
    }
    Ok(())
}

/// `|v|²` in f64: neither overflows nor underflows for any finite `f32` row.
pub fn squared_norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x) * f64::from(x)).sum()
}

/// Rejects zero rows (for cosine, whose similarity is undefined for them).
pub fn check_nonzero(vectors: &[f32], dim: usize) -> Result<()> {
    if dim == 0 {
        return Ok(());
    }
    match vectors
        .chunks_exact(dim)
        .position(|v| v.iter().all(|&x| x == 0.0))
    {
        Some(row) => Err(Error::ZeroVector { row }),
        None => Ok(()),
    }
}

/// Checks a batch of queries and `k` before a search; returns the number of queries.
pub fn check_queries(queries: &[f32], dim: usize, k: usize) -> Result<usize> {
    let nq = check_vectors(queries, dim, "query")?;
    if k == 0 {
        return Err(Error::KOutOfRange { k, max: usize::MAX });
    }
    Ok(nq)
}

/// Checks that each row of a batch has `dim` values (for APIs that receive rows separately).
pub fn check_rows<R: AsRef<[f32]>>(rows: &[R], dim: usize, what: &'static str) -> Result<()> {
    if rows.is_empty() {
        return Err(Error::EmptyBatch { what });
    }
    for (r, row) in rows.iter().enumerate() {
        let row = row.as_ref();
        if row.len() != dim {
            return Err(Error::DimensionMismatch {
                expected: dim,
                got: row.len(),
            });
        }
        if let Some(c) = row.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteValue {
                row: r,
                col: c,
                value: row[c],
            });
        }
    }
    Ok(())
}

/// Checks that `ids` has one id per row and no id twice.
pub fn check_ids(ids: &[VectorId], rows: usize) -> Result<()> {
    if ids.len() != rows {
        return Err(Error::IdCountMismatch {
            expected: rows,
            got: ids.len(),
        });
    }
    let mut seen = HashSet::with_capacity(ids.len());
    for &id in ids {
        if !seen.insert(id) {
            return Err(Error::DuplicateId { id });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_and_advice_refuse_sizes_they_cannot_compute() {
        use crate::advisor::{advise, AdviceRequest};
        use crate::sizing::plan;
        use crate::spec::IndexSpec;
        let ask = |vectors, dim| {
            advise(AdviceRequest {
                vectors,
                dim,
                ram_budget: None,
                recall_target: 0.9,
            })
        };
        for (n, dim) in [(1000, 0), (1000, usize::MAX), (0, 8), (u64::MAX, 8)] {
            assert!(
                matches!(ask(n, dim), Err(Error::InvalidParameter { .. })),
                "{n} {dim}"
            );
            assert!(plan(n, dim, IndexSpec::Flat).is_err(), "{n} {dim}");
        }
        // The largest sizes allowed compute without overflow.
        let spec = IndexSpec::IvfPq {
            nlist: 1024,
            m: 64,
            nbits: 16,
        };
        assert!(plan(MAX_PLAN_VECTORS, MAX_DIM, spec).unwrap().index_bytes > 0);
        assert!(ask(MAX_PLAN_VECTORS, MAX_DIM).is_ok());
    }

    #[test]
    fn rejects_norms_that_overflow_scores_and_zero_rows_where_asked() {
        // Within the bound: accepted, even with components far from 1.
        assert_eq!(check_norms(&[1e17, 0.0, 1e-30, 1e-30], 2), Ok(()));
        assert!(matches!(
            check_norms(&[1.0, 1.0, 3e38, -3e38], 2),
            Err(Error::VectorTooLarge { row: 1, .. })
        ));
        assert_eq!(
            check_nonzero(&[1.0, 0.0, 0.0, 0.0], 2),
            Err(Error::ZeroVector { row: 1 })
        );
        assert_eq!(check_nonzero(&[1e-40, 0.0], 2), Ok(()));
        // Tiny rows normalise exactly (an f32 sum of squares would underflow to 0).
        let mut tiny = [1e-25f32; 4];
        crate::metric::normalize(&mut tiny);
        assert!(tiny.iter().all(|&x| (x - 0.5).abs() < 1e-6), "{tiny:?}");
    }

    #[test]
    fn rejects_bad_batches_with_positions() {
        assert_eq!(check_vectors(&[1.0; 6], 3, "vector"), Ok(2));
        assert_eq!(
            check_vectors(&[], 3, "vector"),
            Err(Error::EmptyBatch { what: "vector" })
        );
        assert_eq!(
            check_vectors(&[1.0, 2.0], 3, "vector"),
            Err(Error::DimensionMismatch {
                expected: 3,
                got: 2
            })
        );
        assert_eq!(
            check_vectors(&[1.0; 7], 3, "vector"),
            Err(Error::RaggedBatch { len: 7, dim: 3 })
        );
        let err = check_vectors(&[1.0, 2.0, 3.0, 4.0, f32::INFINITY, 6.0], 3, "vector");
        assert!(matches!(
            err,
            Err(Error::NonFiniteValue { row: 1, col: 1, .. })
        ));
        let err = check_rows(&[vec![1.0, 2.0], vec![f32::NAN, 1.0]], 2, "vector");
        assert!(matches!(
            err,
            Err(Error::NonFiniteValue { row: 1, col: 0, .. })
        ));
        assert_eq!(
            check_rows(&[vec![1.0, 2.0, 3.0]], 2, "vector"),
            Err(Error::DimensionMismatch {
                expected: 2,
                got: 3
            })
        );
    }

    #[test]
    fn rejects_bad_ids() {
        assert_eq!(
            check_ids(&[1, 2], 3),
            Err(Error::IdCountMismatch {
                expected: 3,
                got: 2
            })
        );
        assert_eq!(check_ids(&[1, 2, 1], 3), Err(Error::DuplicateId { id: 1 }));
        // The first id met again, in the batch's order (not the smallest repeated one).
        assert_eq!(
            check_ids(&[9, 5, 7, 5, 9, 9], 6),
            Err(Error::DuplicateId { id: 5 })
        );
        assert_eq!(
            check_ids(&[3, 8, 8, 3], 4),
            Err(Error::DuplicateId { id: 8 })
        );
        assert!(check_ids(&[1, 2, 3], 3).is_ok());
    }
}
