//! Exact (brute-force) search: the ground truth every approximate index is measured against,
//! the search of growing segments, and [`ExactIndex`], the reference [`VectorIndex`].

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::io::{Read, Write};

use crate::bitmap::Bitmap;
use crate::error::{Error, Result};
use crate::index::{Hit, PersistentIndex, VectorId, VectorIndex};
use crate::metric::Metric;
use crate::params::SearchParams;
use crate::validate::{check_ids, check_queries, check_vectors};

/// Queries scored together against one block of base rows (keeps the block hot in cache).
const QUERY_BLOCK: usize = 16;
/// Base rows per block: 1,024 rows of 384 floats is 1.5 MiB, about an L2 cache.
const BASE_BLOCK: usize = 1024;

/// A hit ordered so that the *worst* hit is the greatest (top of a max-heap).
#[derive(Clone, Copy)]
struct Ranked {
    hit: Hit,
    metric: Metric,
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.metric
            .compare(self.hit.score, other.hit.score)
            .then(self.hit.id.cmp(&other.hit.id))
    }
}

/// Keeps the best `k` hits seen so far.
pub struct TopK {
    k: usize,
    metric: Metric,
    heap: BinaryHeap<Ranked>,
}

impl TopK {
    /// An empty collector for the best `k` hits under `metric`.
    pub fn new(k: usize, metric: Metric) -> Self {
        Self {
            k,
            metric,
            heap: BinaryHeap::with_capacity(k.min(1 << 16) + 1),
        }
    }

    /// Offers one candidate.
    #[inline]
    pub fn push(&mut self, id: VectorId, score: f32) {
        let cand = Ranked {
            hit: Hit { id, score },
            metric: self.metric,
        };
        if self.heap.len() < self.k {
            self.heap.push(cand);
        } else if let Some(worst) = self.heap.peek() {
            if cand < *worst {
                self.heap.pop();
                self.heap.push(cand);
            }
        }
    }

    /// The score a candidate must match or beat to enter, once `k` hits are kept (`None`
    /// before): lets a caller skip most candidates without building them.
    #[inline]
    pub fn threshold(&self) -> Option<f32> {
        if self.heap.len() < self.k {
            return None;
        }
        self.heap.peek().map(|r| r.hit.score)
    }

    /// The collected hits, best first (ties broken by ascending id).
    pub fn into_sorted(self) -> Vec<Hit> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|r| r.hit)
            .collect()
    }
}

/// Merges per-source hit lists (e.g. from segments or shards) into the best `k`.
pub fn merge_hits(lists: impl IntoIterator<Item = Vec<Hit>>, k: usize, metric: Metric) -> Vec<Hit> {
    let mut top = TopK::new(k, metric);
    for list in lists {
        for h in list {
            top.push(h.id, h.score);
        }
    }
    top.into_sorted()
}

/// Exact top-`k` search of `queries` over `base` (both row-major, dimension `dim`).
///
/// Row `i` of `base` has id `ids[i]` (or `i` when `ids` is `None`). With `filter`, a row is
/// a candidate only when the filter's bit for its id is set. Vectors must already be prepared
/// for `metric` (normalised for cosine). With the `parallel` feature, blocks of queries run on
/// the current rayon pool; [`exact_search_serial`] never starts parallel work.
pub fn exact_search(
    base: &[f32],
    ids: Option<&[VectorId]>,
    queries: &[f32],
    dim: usize,
    metric: Metric,
    k: usize,
    filter: Option<&Bitmap>,
) -> Vec<Vec<Hit>> {
    if dim == 0 || queries.is_empty() {
        return Vec::new();
    }
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        let blocks: Vec<&[f32]> = queries.chunks(QUERY_BLOCK * dim).collect();
        blocks
            .into_par_iter()
            .map(|block| search_block(base, ids, block, dim, metric, k, filter))
            .collect::<Vec<_>>()
            .into_iter()
            .flatten()
            .collect()
    }
    #[cfg(not(feature = "parallel"))]
    {
        exact_search_serial(base, ids, queries, dim, metric, k, filter)
    }
}

/// [`exact_search`] on the calling thread only: for callers that hold locks (parallel work
/// started under a lock can run, on the same thread, another task that waits for that lock)
/// or that parallelise across queries themselves.
pub fn exact_search_serial(
    base: &[f32],
    ids: Option<&[VectorId]>,
    queries: &[f32],
    dim: usize,
    metric: Metric,
    k: usize,
    filter: Option<&Bitmap>,
) -> Vec<Vec<Hit>> {
    if dim == 0 || queries.is_empty() {
        return Vec::new();
    }
    // A plain loop: a `flat_map` of the blocks was 4 KB of the browser module.
    let mut out = Vec::with_capacity(queries.len() / dim);
    for block in queries.chunks(QUERY_BLOCK * dim) {
        out.extend(search_block(base, ids, block, dim, metric, k, filter));
    }
    out
}

/// [`exact_search_serial`] over rows labelled `ids` (hits carry them, and equal scores rank
/// by them), with `live_rows` filtering by *row* position: a storage segment's search, whose
/// answer must not depend on where rows happen to be stored (exact search over several
/// shards or segments then equals exact search over one).
pub fn exact_search_labelled(
    base: &[f32],
    ids: &[VectorId],
    queries: &[f32],
    dim: usize,
    metric: Metric,
    k: usize,
    live_rows: Option<&Bitmap>,
) -> Vec<Vec<Hit>> {
    if dim == 0 || queries.is_empty() {
        return Vec::new();
    }
    queries
        .chunks(QUERY_BLOCK * dim)
        .flat_map(|block| {
            search_block_with(base, block, dim, metric, k, |r| {
                live_rows.is_none_or(|f| f.get(r)).then(|| ids[r])
            })
        })
        .collect()
}

/// One block of queries against every row, a block of rows at a time.
fn search_block(
    base: &[f32],
    ids: Option<&[VectorId]>,
    block: &[f32],
    dim: usize,
    metric: Metric,
    k: usize,
    filter: Option<&Bitmap>,
) -> Vec<Vec<Hit>> {
    search_block_with(base, block, dim, metric, k, |r| {
        let id = ids.map_or(r as VectorId, |ids| ids[r]);
        filter.is_none_or(|f| f.get(id as usize)).then_some(id)
    })
}

/// One block of queries against every row; `label(row)` gives a row's id, or `None` to skip
/// it.
fn search_block_with(
    base: &[f32],
    block: &[f32],
    dim: usize,
    metric: Metric,
    k: usize,
    label: impl Fn(usize) -> Option<VectorId>,
) -> Vec<Vec<Hit>> {
    let nq = block.len() / dim;
    let mut tops: Vec<TopK> = (0..nq).map(|_| TopK::new(k, metric)).collect();
    let mut scores = vec![0.0f32; nq];
    let score_rows = metric.row_scorer();
    for (b, base_block) in base.chunks(BASE_BLOCK * dim).enumerate() {
        let first_row = b * BASE_BLOCK;
        for (j, row) in base_block.chunks_exact(dim).enumerate() {
            let Some(id) = label(first_row + j) else {
                continue;
            };
            score_rows(block, row, &mut scores);
            for (&score, top) in scores.iter().zip(tops.iter_mut()) {
                top.push(id, score);
            }
        }
    }
    tops.into_iter().map(TopK::into_sorted).collect()
}

/// Recall@k: the mean fraction of each query's true top-`k` ids found in its returned top-`k`.
///
/// `truth[q]` must list at least `k` ids (fewer when the base holds fewer vectors).
pub fn recall_at_k(results: &[Vec<Hit>], truth: &[Vec<VectorId>], k: usize) -> f64 {
    if results.is_empty() || k == 0 {
        return 0.0;
    }
    let mut total = 0.0;
    for (got, want) in results.iter().zip(truth) {
        let want: std::collections::HashSet<_> = want.iter().take(k).collect();
        if want.is_empty() {
            total += 1.0;
            continue;
        }
        let found = got.iter().take(k).filter(|h| want.contains(&h.id)).count();
        total += found as f64 / want.len() as f64;
    }
    total / results.len().min(truth.len()) as f64
}

/// A brute-force index: exact answers, no training, cheap inserts and deletes.
///
/// The server uses it for growing segments; the browser for small caches; tests as the
/// reference every approximate index is compared with.
#[derive(Debug, Clone)]
pub struct ExactIndex {
    dim: usize,
    metric: Metric,
    ids: Vec<VectorId>,
    vectors: Vec<f32>,
    rows: HashMap<VectorId, usize>,
}

impl ExactIndex {
    /// An empty index.
    pub fn new(dim: usize, metric: Metric) -> Self {
        Self {
            dim,
            metric,
            ids: Vec::new(),
            vectors: Vec::new(),
            rows: HashMap::new(),
        }
    }

    /// The stored vector of `id`, if present.
    pub fn get(&self, id: VectorId) -> Option<&[f32]> {
        self.rows
            .get(&id)
            .map(|&r| &self.vectors[r * self.dim..(r + 1) * self.dim])
    }

    /// Ids in storage order.
    pub fn ids(&self) -> &[VectorId] {
        &self.ids
    }

    /// Row-major vectors in storage order.
    pub fn vectors(&self) -> &[f32] {
        &self.vectors
    }

    /// Adds or replaces vectors (upsert).
    pub fn upsert(&mut self, ids: &[VectorId], vectors: &[f32]) -> Result<()> {
        let rows = check_vectors(vectors, self.dim, "vector")?;
        check_ids(ids, rows)?;
        for (&id, v) in ids.iter().zip(vectors.chunks_exact(self.dim)) {
            match self.rows.get(&id) {
                Some(&r) => self.vectors[r * self.dim..(r + 1) * self.dim].copy_from_slice(v),
                None => {
                    self.rows.insert(id, self.ids.len());
                    self.ids.push(id);
                    self.vectors.extend_from_slice(v);
                }
            }
        }
        Ok(())
    }
}

impl VectorIndex for ExactIndex {
    fn dim(&self) -> usize {
        self.dim
    }

    fn metric(&self) -> Metric {
        self.metric
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn add(&mut self, ids: &[VectorId], vectors: &[f32]) -> Result<()> {
        let rows = check_vectors(vectors, self.dim, "vector")?;
        check_ids(ids, rows)?;
        if let Some(&id) = ids.iter().find(|id| self.rows.contains_key(id)) {
            return Err(Error::DuplicateId { id });
        }
        self.upsert(ids, vectors)
    }

    fn remove(&mut self, ids: &[VectorId]) -> Result<usize> {
        let mut removed = 0;
        for id in ids {
            if let Some(r) = self.rows.remove(id) {
                let last = self.ids.len() - 1;
                self.ids.swap_remove(r);
                if r != last {
                    let (head, tail) = self.vectors.split_at_mut(last * self.dim);
                    head[r * self.dim..(r + 1) * self.dim].copy_from_slice(&tail[..self.dim]);
                    self.rows.insert(self.ids[r], r);
                }
                self.vectors.truncate(last * self.dim);
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn search(
        &self,
        queries: &[f32],
        params: &SearchParams,
        filter: Option<&Bitmap>,
    ) -> Result<Vec<Vec<Hit>>> {
        check_queries(queries, self.dim, params.k)?;
        Ok(exact_search(
            &self.vectors,
            Some(&self.ids),
            queries,
            self.dim,
            self.metric,
            params.k,
            filter,
        ))
    }

    fn memory_bytes(&self) -> usize {
        self.vectors.capacity() * 4 + self.ids.capacity() * 8 + self.rows.capacity() * (8 + 8 + 8)
    }
}

const EXACT_MAGIC: &[u8; 4] = b"PXEX";
const EXACT_VERSION: u32 = 1;

impl PersistentIndex for ExactIndex {
    fn write_to(&self, out: &mut dyn Write) -> Result<()> {
        let io = |e: std::io::Error| Error::Backend {
            message: e.to_string(),
        };
        let metric: u8 = match self.metric {
            Metric::L2 => 0,
            Metric::InnerProduct => 1,
            Metric::Cosine => 2,
        };
        let mut buf = Vec::with_capacity(24 + self.ids.len() * 8 + self.vectors.len() * 4);
        buf.extend_from_slice(EXACT_MAGIC);
        buf.extend_from_slice(&EXACT_VERSION.to_le_bytes());
        buf.push(metric);
        buf.extend_from_slice(&(self.dim as u32).to_le_bytes());
        buf.extend_from_slice(&(self.ids.len() as u64).to_le_bytes());
        self.ids
            .iter()
            .for_each(|id| buf.extend_from_slice(&id.to_le_bytes()));
        self.vectors
            .iter()
            .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
        out.write_all(&buf).map_err(io)
    }

    fn read_from(input: &mut dyn Read) -> Result<Self> {
        let bad = |reason: &str| Error::Malformed {
            format: "exact index",
            reason: reason.to_string(),
        };
        let mut bytes = Vec::new();
        input
            .read_to_end(&mut bytes)
            .map_err(|e| bad(&e.to_string()))?;
        if bytes.len() < 21 || &bytes[..4] != EXACT_MAGIC {
            return Err(bad("missing PXEX header"));
        }
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap_or([0; 4]));
        if u32_at(4) != EXACT_VERSION {
            return Err(bad("unsupported version"));
        }
        let metric = match bytes[8] {
            0 => Metric::L2,
            1 => Metric::InnerProduct,
            2 => Metric::Cosine,
            _ => return Err(bad("unknown metric")),
        };
        let dim = u32_at(9) as usize;
        let n = u64::from_le_bytes(bytes[13..21].try_into().unwrap_or([0; 8])) as usize;
        let need = n
            .checked_mul(8 + dim * 4)
            .and_then(|b| b.checked_add(21))
            .ok_or_else(|| bad("size overflow"))?;
        if bytes.len() != need || dim == 0 {
            return Err(bad("length does not match the header"));
        }
        let ids: Vec<VectorId> = bytes[21..21 + n * 8]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let vectors: Vec<f32> = bytes[21 + n * 8..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
            .collect();
        let mut index = ExactIndex::new(dim, metric);
        if n > 0 {
            index.add(&ids, &vectors)?;
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious O(n log n) reference: score everything, sort, truncate.
    fn naive(base: &[f32], queries: &[f32], dim: usize, metric: Metric, k: usize) -> Vec<Vec<Hit>> {
        queries
            .chunks_exact(dim)
            .map(|q| {
                let mut all: Vec<Hit> = base
                    .chunks_exact(dim)
                    .enumerate()
                    .map(|(i, row)| Hit {
                        id: i as u64,
                        score: metric.score(q, row),
                    })
                    .collect();
                all.sort_by(|a, b| metric.compare(a.score, b.score).then(a.id.cmp(&b.id)));
                all.truncate(k);
                all
            })
            .collect()
    }

    fn dataset(
        dim: usize,
        rows: std::ops::Range<usize>,
    ) -> impl Strategy<Value = (usize, Vec<f32>)> {
        rows.prop_flat_map(move |n| (Just(n), proptest::collection::vec(-1.0f32..1.0, n * dim)))
    }

    proptest! {
        #[test]
        fn agrees_with_naive_reference(
            (n, base) in dataset(7, 1..2500),
            queries in proptest::collection::vec(-1.0f32..1.0, 7 * 20),
            k in 1usize..40,
            metric in prop_oneof![Just(Metric::L2), Just(Metric::InnerProduct), Just(Metric::Cosine)],
        ) {
            let mut base = base;
            let mut queries = queries;
            metric.prepare(&mut base, 7);
            metric.prepare(&mut queries, 7);
            let got = exact_search(&base, None, &queries, 7, metric, k, None);
            let want = naive(&base, &queries, 7, metric, k);
            prop_assert_eq!(got.len(), 20);
            prop_assert_eq!(&exact_search_serial(&base, None, &queries, 7, metric, k, None), &got);
            for (g, w) in got.iter().zip(&want) {
                prop_assert_eq!(g.len(), k.min(n));
                let gi: Vec<u64> = g.iter().map(|h| h.id).collect();
                let wi: Vec<u64> = w.iter().map(|h| h.id).collect();
                prop_assert_eq!(gi, wi);
            }
            prop_assert!((recall_at_k(&got, &want.iter().map(|w| w.iter().map(|h| h.id).collect()).collect::<Vec<_>>(), k) - 1.0).abs() < 1e-12);
        }

        #[test]
        fn filter_hides_rows_but_keeps_k(
            (n, base) in dataset(4, 20..300),
            dead in proptest::collection::vec(any::<bool>(), 300),
        ) {
            let mut live = Bitmap::new(n, true);
            for (i, d) in dead.iter().take(n).enumerate() { if *d { live.set(i, false); } }
            let q = base[..4].to_vec();
            let got = exact_search(&base, None, &q, 4, Metric::L2, 10, Some(&live));
            prop_assert_eq!(got[0].len(), 10.min(live.count_ones()));
            prop_assert!(got[0].iter().all(|h| live.get(h.id as usize)));
        }

        #[test]
        fn exact_index_roundtrips_and_removes(
            (n, base) in dataset(5, 1..200),
            remove in proptest::collection::vec(0u64..200, 0..50),
        ) {
            let ids: Vec<u64> = (0..n as u64).map(|i| i * 3 + 1).collect();
            let mut index = ExactIndex::new(5, Metric::L2);
            index.add(&ids, &base).unwrap();
            let victims: Vec<u64> = remove.iter().map(|i| i * 3 + 1).collect();
            let mut unique = victims.clone(); unique.sort(); unique.dedup();
            let present = unique.iter().filter(|v| ids.contains(v)).count();
            prop_assert_eq!(index.remove(&unique).unwrap(), present);
            prop_assert_eq!(index.len(), n - present);
            for id in &ids {
                let row = (id - 1) / 3;
                if unique.contains(id) {
                    prop_assert!(index.get(*id).is_none());
                } else {
                    prop_assert_eq!(index.get(*id).unwrap(), &base[row as usize * 5..row as usize * 5 + 5]);
                }
            }
            let mut bytes = Vec::new();
            index.write_to(&mut bytes).unwrap();
            let back = ExactIndex::read_from(&mut bytes.as_slice()).unwrap();
            prop_assert_eq!(back.ids(), index.ids());
            prop_assert_eq!(back.vectors(), index.vectors());
        }
    }

    #[test]
    fn typed_errors_for_bad_input() {
        let mut index = ExactIndex::new(3, Metric::InnerProduct);
        assert_eq!(
            index.add(&[1], &[1.0, 2.0]),
            Err(Error::DimensionMismatch {
                expected: 3,
                got: 2
            })
        );
        assert!(matches!(
            index.add(&[1], &[1.0, f32::NAN, 2.0]),
            Err(Error::NonFiniteValue { row: 0, col: 1, .. })
        ));
        index.add(&[1], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(
            index.add(&[1], &[1.0, 2.0, 3.0]),
            Err(Error::DuplicateId { id: 1 })
        );
        assert!(index
            .search(&[1.0, 2.0, 3.0], &SearchParams::new(0), None)
            .is_err());
        assert!(ExactIndex::read_from(&mut &b"garbage"[..]).is_err());
    }

    #[test]
    fn merge_keeps_best_k() {
        let a = vec![Hit { id: 1, score: 0.9 }, Hit { id: 2, score: 0.5 }];
        let b = vec![Hit { id: 3, score: 0.7 }];
        let m = merge_hits([a, b], 2, Metric::InnerProduct);
        assert_eq!(m.iter().map(|h| h.id).collect::<Vec<_>>(), vec![1, 3]);
    }
}
