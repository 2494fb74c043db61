//! Exact search of a batch of queries with BLAS matrix products: the growing and FLAT
//! segments' search when a batch is large enough, as FAISS's `IndexFlat` does it.
//!
//! For one query, or a few, core's scan (`exact_search_labelled`, AVX2 kernels over blocks of
//! queries) is as fast as memory allows. For a batch, the work is a matrix product, and a
//! BLAS `sgemm` runs it about twice as fast as that scan: queries × a block of rows gives
//! every inner product of the block at once (L2 then adds the norms, as FAISS does). The
//! answers follow the same rules as the scan: the live-row filter by row position, ids as
//! labels, equal scores ranked by id. Scores may differ from the scan's in the last bits (the
//! products sum in another order), as FAISS's do between its two paths.

use std::os::raw::{c_char, c_int};

use proxima_core::exact::{exact_search_labelled, TopK};
use proxima_core::metric::dot;
use proxima_core::{Bitmap, Hit, Metric, VectorId};

// The Fortran BLAS `sgemm` of the BLAS FAISS links (OpenBLAS on the machines we build on).
#[link(name = "blas")]
extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn sgemm_(
        transa: *const c_char,
        transb: *const c_char,
        m: *const c_int,
        n: *const c_int,
        k: *const c_int,
        alpha: *const f32,
        a: *const f32,
        lda: *const c_int,
        b: *const f32,
        ldb: *const c_int,
        beta: *const f32,
        c: *mut f32,
        ldc: *const c_int,
    );
}

/// Batches with fewer queries take the scan (FAISS's `distance_compute_blas_threshold`).
pub const MIN_QUERIES: usize = 20;
/// Rows per matrix product (FAISS's block size).
const ROW_BLOCK: usize = 1024;
/// Queries per matrix product: bounds the product's buffer (256 × 1,024 floats, 1 MiB).
const QUERY_BLOCK: usize = 256;

/// Exact top-`k` of `queries` over `base` (row-major, `dim` wide), rows labelled `ids` and
/// filtered by `live_rows` (by row position). Same contract as core's
/// `exact_search_labelled`, which answers batches under [`MIN_QUERIES`].
pub fn exact_search(
    base: &[f32],
    ids: &[VectorId],
    queries: &[f32],
    dim: usize,
    metric: Metric,
    k: usize,
    live_rows: Option<&Bitmap>,
) -> Vec<Vec<Hit>> {
    let nq = queries.len().checked_div(dim).unwrap_or(0);
    let rows = base.len().checked_div(dim).unwrap_or(0);
    if nq < MIN_QUERIES || rows == 0 || dim > c_int::MAX as usize {
        return exact_search_labelled(base, ids, queries, dim, metric, k, live_rows);
    }
    let l2 = metric == Metric::L2;
    let mut out = Vec::with_capacity(nq);
    let mut products = vec![0.0f32; QUERY_BLOCK * ROW_BLOCK];
    let mut row_norms = vec![0.0f32; ROW_BLOCK];
    let mut live = vec![true; ROW_BLOCK];
    for block in queries.chunks(QUERY_BLOCK * dim) {
        let bq = block.len() / dim;
        let query_norms: Vec<f32> = if l2 {
            block.chunks_exact(dim).map(|q| dot(q, q)).collect()
        } else {
            Vec::new()
        };
        let mut tops: Vec<TopK> = (0..bq).map(|_| TopK::new(k, metric)).collect();
        for first in (0..rows).step_by(ROW_BLOCK) {
            let br = ROW_BLOCK.min(rows - first);
            let mut any_live = false;
            for (j, l) in live[..br].iter_mut().enumerate() {
                *l = live_rows.is_none_or(|f| f.get(first + j));
                any_live |= *l;
            }
            if !any_live {
                continue;
            }
            let block_rows = &base[first * dim..(first + br) * dim];
            inner_products(block, block_rows, dim, &mut products[..bq * br]);
            if l2 {
                for (n, row) in row_norms.iter_mut().zip(block_rows.chunks_exact(dim)) {
                    *n = dot(row, row);
                }
            }
            for (q, top) in tops.iter_mut().enumerate() {
                let ips = &products[q * br..(q + 1) * br];
                let mut threshold = top.threshold();
                for j in 0..br {
                    if !live[j] {
                        continue;
                    }
                    let score = if l2 {
                        // |q − y|² = |q|² + |y|² − 2⟨q, y⟩, clamped as FAISS clamps it.
                        (query_norms[q] + row_norms[j] - 2.0 * ips[j]).max(0.0)
                    } else {
                        ips[j]
                    };
                    if threshold.is_some_and(|t| metric.compare(score, t).is_gt()) {
                        continue;
                    }
                    top.push(ids[first + j], score);
                    threshold = top.threshold();
                }
            }
        }
        out.extend(tops.into_iter().map(TopK::into_sorted));
    }
    out
}

/// `out[q * rows + j] = ⟨queries[q], base[j]⟩` for the `queries.len() / dim` queries and the
/// `base.len() / dim` rows given (both row-major, `dim` wide).
fn inner_products(queries: &[f32], base: &[f32], dim: usize, out: &mut [f32]) {
    let nq = (queries.len() / dim) as c_int;
    let nb = (base.len() / dim) as c_int;
    let d = dim as c_int;
    debug_assert_eq!(out.len(), (nq * nb) as usize);
    let (one, zero) = (1.0f32, 0.0f32);
    // Column-major, as BLAS sees it: out (nb × nq) = baseᵀᵀ (nb × d) · queries (d × nq).
    // SAFETY: every pointer covers the extent its dimensions and leading dimensions give
    // (base: d × nb, queries: d × nq, out: nb × nq, all contiguous), and sgemm only reads
    // `a`, `b` and the scalars and writes `c`.
    unsafe {
        sgemm_(
            c"T".as_ptr(),
            c"N".as_ptr(),
            &nb,
            &nq,
            &d,
            &one,
            base.as_ptr(),
            &d,
            queries.as_ptr(),
            &d,
            &zero,
            out.as_mut_ptr(),
            &nb,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_answer_as_the_scan_does() {
        let dim = 24;
        let rows = 2500;
        let base = crate::index::clustered(rows, dim, 3, 40, 0.3);
        let queries = crate::index::clustered(MIN_QUERIES + 17, dim, 9, 40, 0.3);
        let ids: Vec<u64> = (0..rows as u64).map(|i| i * 3 + 11).collect();
        let mut live = Bitmap::new(rows, true);
        for r in (0..rows).step_by(7) {
            live.set(r, false);
        }
        // A whole block dead, to take the skip.
        for r in 1024..2048 {
            live.set(r, false);
        }
        for metric in [Metric::L2, Metric::InnerProduct] {
            for filter in [None, Some(&live)] {
                let got = exact_search(&base, &ids, &queries, dim, metric, 10, filter);
                let want = exact_search_labelled(&base, &ids, &queries, dim, metric, 10, filter);
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    let g_ids: Vec<u64> = g.iter().map(|h| h.id).collect();
                    let w_ids: Vec<u64> = w.iter().map(|h| h.id).collect();
                    assert_eq!(g_ids, w_ids, "{metric:?}");
                    for (a, b) in g.iter().zip(w) {
                        assert!((a.score - b.score).abs() <= 1e-3 * b.score.abs().max(1.0));
                    }
                }
            }
        }
        // Equal rows rank by id, as in the scan.
        let same = vec![1.0f32; dim * 50];
        let tie_ids: Vec<u64> = (0..50).rev().collect();
        let q = vec![1.0f32; dim * MIN_QUERIES];
        let got = exact_search(&same, &tie_ids, &q, dim, Metric::L2, 3, None);
        assert!(got.iter().all(|h| h.iter().map(|h| h.id).eq([0, 1, 2])));
    }
}
