//! Proxima in the browser and in edge runtimes (WebAssembly, via wasm-bindgen).
//!
//! [`VectorCache`] is `proxima-core`'s HNSW index for JavaScript (insert, upsert, delete,
//! filtered k-NN search, SQ8, LRU capacity, bytes in the server's snapshot format), which can
//! also follow a server collection ([`sync`]: loaded from its snapshot, moved forward by its
//! change batches);
//! `exactSearch` scores a caller's array exhaustively. Errors are JS `Error`s whose `code`
//! is the core error's stable code ([`errors`]); ids cross the boundary as numbers or BigInts
//! ([`ids`]).

pub mod cache;
pub mod errors;
pub mod ids;
pub mod sync;

pub use cache::VectorCache;

use js_sys::{BigUint64Array, Float32Array};
use wasm_bindgen::prelude::*;

use errors::js_error;
use proxima_core::exact::exact_search;
use proxima_core::validate::check_vectors;
use proxima_core::{Error, Metric};

/// The crate version, to check which build a page loaded.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Results of a batched search: `ids` and `scores` hold `k` entries per query (fewer when the
/// base is smaller than `k`), row after row; `k` is the per-query count.
#[wasm_bindgen]
pub struct SearchResults {
    ids: Vec<u64>,
    scores: Vec<f32>,
    k: usize,
}

#[wasm_bindgen]
impl SearchResults {
    /// Neighbour ids (row index in the base), `k` per query.
    #[wasm_bindgen(getter)]
    pub fn ids(&self) -> BigUint64Array {
        BigUint64Array::from(self.ids.as_slice())
    }

    /// Scores: squared L2 distance (lower is better) or inner product / cosine (higher is better).
    #[wasm_bindgen(getter)]
    pub fn scores(&self) -> Float32Array {
        Float32Array::from(self.scores.as_slice())
    }

    /// Hits per query.
    #[wasm_bindgen(getter)]
    pub fn k(&self) -> usize {
        self.k
    }
}

/// Exact top-`k` search of `queries` over `base` (row-major, `dim` floats per row).
///
/// `metric` is `"l2"`, `"ip"` or `"cosine"`. Throws on a wrong dimension, NaN/Inf, `k = 0` or an
/// unknown metric, with the error's code first in the message.
#[wasm_bindgen(js_name = exactSearch)]
pub fn exact_search_js(
    base: &[f32],
    dim: usize,
    queries: &[f32],
    k: usize,
    metric: &str,
) -> Result<SearchResults, JsValue> {
    let metric: Metric = metric.parse().map_err(js_error)?;
    let n = check_vectors(base, dim, "base vector").map_err(js_error)?;
    check_vectors(queries, dim, "query").map_err(js_error)?;
    if k == 0 {
        return Err(js_error(Error::KOutOfRange { k, max: n }));
    }
    let mut base = base.to_vec();
    let mut queries = queries.to_vec();
    metric.prepare(&mut base, dim);
    metric.prepare(&mut queries, dim);
    let hits = exact_search(&base, None, &queries, dim, metric, k, None);
    let per_query = k.min(n);
    let mut ids = Vec::with_capacity(hits.len() * per_query);
    let mut scores = Vec::with_capacity(hits.len() * per_query);
    for row in hits {
        for h in row {
            ids.push(h.id);
            scores.push(h.score);
        }
    }
    Ok(SearchResults {
        ids,
        scores,
        k: per_query,
    })
}
