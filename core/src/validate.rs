//! Checks applied to every batch of vectors and ids before it reaches an index.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::index::VectorId;

/// Checks a row-major batch of `dim`-dimensional vectors and returns its number of rows.
///
/// Rejects an empty batch, a length that is not a multiple of `dim` and any NaN or infinity
/// (naming the row and column).
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
        assert!(check_ids(&[1, 2, 3], 3).is_ok());
    }
}
