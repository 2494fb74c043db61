//! The browser/edge cache's index: an HNSW graph (Malkov & Yashunin) that takes inserts,
//! upserts and deletes in place, searches with an optional id filter, stores vectors as f32
//! or SQ8, evicts the least recently hit vectors past a capacity, and serialises itself to a
//! versioned, CRC-checked byte format that native and wasm32 builds share ([`Hnsw::to_bytes`]).
//!
//! Written here rather than taken from `hnsw_rs` (the crate the design first named): its
//! current release (0.3) does not compile for wasm32 (it needs mmap-rs and cpu-time) and has
//! no delete; `hnsw` and `instant-distance` compile for wasm32 but cannot delete or evict.
//!
//! Deletes are tombstones: searches walk through them but never return them. Once tombstones
//! reach a fifth of the used slots the graph is consolidated ([`Hnsw::consolidate`]): every
//! live node that linked to a deleted one is re-linked from its live neighbours and the live
//! neighbours of its deleted ones (FreshDiskANN's rule, pruned with the HNSW heuristic), then
//! the deleted slots are freed for reuse. An upsert of a changed vector is a delete plus an
//! insert in a fresh slot; an upsert of the same vector changes nothing.

mod codec;
mod graph;
mod repair;
mod search;
mod store;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde::Serialize;

pub use store::Quantization;

use crate::bitmap::Bitmap;
use crate::error::{Error, Result};
use crate::index::{Hit, VectorId, VectorIndex};
use crate::metric::{normalize, Metric};
use crate::params::SearchParams;
use crate::validate::{check_ids, check_nonzero, check_norms, check_vectors, MAX_DIM};
use graph::{Graph, FREE, MAX_LEVEL};
use search::{key, key_dist, key_slot, Scratch};
use store::VectorStore;

/// Default links per node above level 0 (level 0 holds twice as many).
pub const DEFAULT_M: usize = 16;
/// Default beam width while inserting.
pub const DEFAULT_EF_CONSTRUCTION: usize = 100;
/// Default beam width while searching (raised to `k` when `k` is larger).
pub const DEFAULT_EF_SEARCH: usize = 64;
/// Largest `m` accepted.
pub const MAX_M: usize = 128;
/// Largest beam width accepted, at build or search time.
pub const MAX_EF: usize = 16_384;
/// Largest `k` accepted per query.
pub const MAX_K: usize = 10_000;
/// An allow-list of at most this many ids is scored exactly instead of walking the graph
/// (a walk that may keep only a few nodes visits most of the graph anyway).
pub const EXACT_FILTER_MAX: usize = 2_048;

/// What an index is made with. [`HnswConfig::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct HnswConfig {
    pub dim: usize,
    pub metric: Metric,
    /// Links per node above level 0; level 0 keeps up to `2 m`.
    pub m: usize,
    pub ef_construction: usize,
    /// Beam width of searches that do not name one.
    pub ef_search: usize,
    pub quantization: Quantization,
    /// With SQ8: keep the f32 rows as well and re-score the candidates on them.
    pub rerank: bool,
    /// Most vectors held; past it, the least recently hit are evicted.
    pub capacity: Option<usize>,
    /// Most bytes of vectors, links and ids held; past it, the least recently hit are evicted.
    pub capacity_bytes: Option<u64>,
    /// Seed of the level draws (the same inserts then build the same graph).
    pub seed: u64,
}

impl HnswConfig {
    /// Defaults: m 16, ef_construction 100, ef_search 64, f32 storage, no capacity.
    pub fn new(dim: usize, metric: Metric) -> Self {
        Self {
            dim,
            metric,
            m: DEFAULT_M,
            ef_construction: DEFAULT_EF_CONSTRUCTION,
            ef_search: DEFAULT_EF_SEARCH,
            quantization: Quantization::None,
            rerank: false,
            capacity: None,
            capacity_bytes: None,
            seed: 0x5EED_0F_C0FFEE,
        }
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 || self.dim > MAX_DIM {
            return Err(Error::invalid(
                "dim",
                self.dim,
                format!("must be between 1 and {MAX_DIM}"),
            ));
        }
        if self.m < 2 || self.m > MAX_M {
            return Err(Error::invalid(
                "m",
                self.m,
                format!("must be between 2 and {MAX_M}"),
            ));
        }
        check_ef("efConstruction", self.ef_construction)?;
        check_ef("ef", self.ef_search)?;
        if self.capacity == Some(0) {
            return Err(Error::invalid("capacity", 0, "must be at least 1 vector"));
        }
        if let Some(bytes) = self.capacity_bytes {
            let one = self.bytes_per_vector() as u64;
            if bytes < one {
                return Err(Error::invalid(
                    "capacityBytes",
                    bytes,
                    format!("must hold at least one vector ({one} bytes at this dimension)"),
                ));
            }
        }
        Ok(())
    }

    /// Bytes one vector costs: its storage, its links (level 0 and the average above) and
    /// its bookkeeping (id, id map entry, LRU stamp, level, tombstone flag).
    pub fn bytes_per_vector(&self) -> usize {
        let store = match self.quantization {
            Quantization::None => self.dim * 4,
            Quantization::Sq8 => {
                self.dim + store::SQ8_PARAMS * 4 + if self.rerank { self.dim * 4 } else { 0 }
            }
        };
        let graph = Graph::new(self.m, 2 * self.m).bytes_per_node();
        store + graph + 8 + 4 + 1 + ID_MAP_ENTRY_BYTES
    }
}

fn check_ef(name: &'static str, ef: usize) -> Result<()> {
    if ef == 0 || ef > MAX_EF {
        return Err(Error::invalid(
            name,
            ef,
            format!("must be between 1 and {MAX_EF}"),
        ));
    }
    Ok(())
}

/// Which ids a search may return.
#[derive(Clone, Copy)]
pub enum Filter<'a> {
    /// Only these ids (unknown ones are ignored).
    Allow(&'a [VectorId]),
    /// Only ids for which the predicate is true.
    Predicate(&'a dyn Fn(VectorId) -> bool),
}

/// Per-search settings.
#[derive(Clone, Copy, Default)]
pub struct SearchOptions<'a> {
    /// Beam width (default: the index's `ef_search`; never below `k`).
    pub ef: Option<usize>,
    pub filter: Option<Filter<'a>>,
}

/// What an [`Hnsw::upsert`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UpsertReport {
    /// New ids stored.
    pub inserted: usize,
    /// Ids whose vector changed.
    pub replaced: usize,
    /// Ids sent again with the vector they already had.
    pub unchanged: usize,
    /// Ids evicted to stay within capacity (least recently hit first).
    pub evicted: Vec<VectorId>,
}

/// Counters and sizes ([`Hnsw::stats`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheStats {
    /// Vectors held (live).
    pub vectors: usize,
    pub dim: usize,
    pub metric: Metric,
    pub quantization: Quantization,
    pub capacity: Option<usize>,
    pub capacity_bytes: Option<u64>,
    /// Bytes allocated for vectors, links, ids and the id map (allocation sizes, not an
    /// estimate from the counts).
    pub memory_bytes: usize,
    /// Deleted vectors whose slots await consolidation.
    pub tombstones: usize,
    /// Slots allocated (live + tombstones + free).
    pub slots: usize,
    pub max_level: usize,
    pub searches: u64,
    /// Searches that returned fewer than `k` hits.
    pub short_searches: u64,
    /// `get` calls that found the id.
    pub get_hits: u64,
    /// `get` calls for an id not held.
    pub get_misses: u64,
    /// Searches answered in full plus `get` hits.
    pub hits: u64,
    /// Short searches plus `get` misses.
    pub misses: u64,
    pub inserts: u64,
    pub deletes: u64,
    pub evictions: u64,
    pub consolidations: u64,
}

/// Bytes of one id-map entry (key, slot, control byte, load-factor slack).
const ID_MAP_ENTRY_BYTES: usize = 16;

/// A multiplicative hash for the id map: ids are often sequential, and a DoS-resistant
/// hasher buys nothing for a cache's own keys.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        let x = (n ^ (n >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = x ^ (x >> 29);
    }
}

type IdMap = HashMap<VectorId, u32, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct Counters {
    searches: AtomicU64,
    short_searches: AtomicU64,
    get_hits: AtomicU64,
    get_misses: AtomicU64,
    inserts: AtomicU64,
    deletes: AtomicU64,
    evictions: AtomicU64,
    consolidations: AtomicU64,
}

/// The HNSW index. See the [module docs](self).
pub struct Hnsw {
    cfg: HnswConfig,
    store: VectorStore,
    graph: Graph,
    /// External id of each slot (meaningless for free slots).
    ids: Vec<VectorId>,
    /// Tombstone flag of each slot.
    tomb: Vec<bool>,
    /// Clock value of each slot's last hit (LRU eviction).
    last_used: Vec<AtomicU32>,
    clock: AtomicU32,
    slot_of: IdMap,
    free: Vec<u32>,
    tombstones: usize,
    entry: Option<u32>,
    max_level: usize,
    rng: u64,
    level_mult: f64,
    counters: Counters,
    scratch: Mutex<Vec<Scratch>>,
}

impl std::fmt::Debug for Hnsw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hnsw")
            .field("config", &self.cfg)
            .field("vectors", &self.len())
            .field("tombstones", &self.tombstones)
            .finish_non_exhaustive()
    }
}

impl Hnsw {
    /// An empty index.
    pub fn new(mut cfg: HnswConfig) -> Result<Self> {
        cfg.validate()?;
        // Re-ranking needs codes to walk with: f32 storage already scores exactly.
        cfg.rerank &= cfg.quantization == Quantization::Sq8;
        let store = VectorStore::new(cfg.dim, cfg.metric, cfg.quantization, cfg.rerank);
        let graph = Graph::new(cfg.m, 2 * cfg.m);
        Ok(Self {
            rng: cfg.seed | 1,
            level_mult: 1.0 / (cfg.m as f64).ln(),
            cfg,
            store,
            graph,
            ids: Vec::new(),
            tomb: Vec::new(),
            last_used: Vec::new(),
            clock: AtomicU32::new(0),
            slot_of: IdMap::default(),
            free: Vec::new(),
            tombstones: 0,
            entry: None,
            max_level: 0,
            counters: Counters::default(),
            scratch: Mutex::new(Vec::new()),
        })
    }

    pub fn config(&self) -> &HnswConfig {
        &self.cfg
    }

    /// Live vectors held.
    pub fn len(&self) -> usize {
        self.slot_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slot_of.is_empty()
    }

    pub fn contains(&self, id: VectorId) -> bool {
        self.slot_of.contains_key(&id)
    }

    /// Live ids, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = VectorId> + '_ {
        self.slot_of.keys().copied()
    }

    /// The most live vectors kept: the vector capacity, or what the byte capacity allows with
    /// room for the tombstones a consolidation waits for (a fifth of the slots).
    pub fn effective_capacity(&self) -> Option<usize> {
        let by_bytes = self.cfg.capacity_bytes.map(|b| {
            let slots = (b / self.cfg.bytes_per_vector() as u64) as usize;
            (slots * 4 / 5).max(1)
        });
        match (self.cfg.capacity, by_bytes) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    #[inline]
    fn is_live(&self, slot: u32) -> bool {
        let s = slot as usize;
        !self.tomb[s] && self.graph.levels[s] != FREE
    }

    fn tick(&self) -> u32 {
        self.clock.fetch_add(1, Relaxed).wrapping_add(1)
    }

    fn take_scratch(&self) -> Scratch {
        self.scratch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default()
    }

    fn put_scratch(&self, s: Scratch) {
        self.scratch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(s);
    }

    /// Checks a batch and returns it prepared for the metric (normalised for cosine).
    fn prepare(&self, vectors: &[f32], what: &'static str) -> Result<Vec<f32>> {
        check_vectors(vectors, self.cfg.dim, what)?;
        check_norms(vectors, self.cfg.dim)?;
        let mut v = vectors.to_vec();
        if self.cfg.metric.normalizes() {
            check_nonzero(&v, self.cfg.dim)?;
            for row in v.chunks_exact_mut(self.cfg.dim) {
                normalize(row);
            }
        }
        Ok(v)
    }

    /// Adds vectors, or replaces the vectors of ids already held. `vectors` holds one row of
    /// `dim` floats per id. The whole batch is checked before anything changes.
    pub fn upsert(&mut self, ids: &[VectorId], vectors: &[f32]) -> Result<UpsertReport> {
        let rows = check_vectors(vectors, self.cfg.dim, "vector")?;
        check_ids(ids, rows)?;
        let prepared = self.prepare(vectors, "vector")?;
        let mut report = UpsertReport::default();
        if let Some(cap) = self.effective_capacity() {
            let new = ids
                .iter()
                .filter(|id| !self.slot_of.contains_key(id))
                .count();
            let over = (self.len() + new).saturating_sub(cap);
            if over > 0 {
                let batch: HashSet<VectorId> = ids.iter().copied().collect();
                report.evicted = self.evict(over, &batch);
            }
        }
        let mut scratch = self.take_scratch();
        let mut codes = Vec::new();
        let dim = self.cfg.dim;
        let skip = ids
            .len()
            .saturating_sub(self.effective_capacity().unwrap_or(usize::MAX));
        for (i, (&id, v)) in ids.iter().zip(prepared.chunks_exact(dim)).enumerate() {
            if i < skip {
                // A batch larger than the capacity keeps its last vectors (the most recent).
                report.evicted.push(id);
                if let Some(slot) = self.slot_of.get(&id).copied() {
                    self.tombstone(slot);
                }
                continue;
            }
            if let Some(&slot) = self.slot_of.get(&id) {
                if self.store.holds(slot as usize, v, &mut codes) {
                    self.last_used[slot as usize].store(self.tick(), Relaxed);
                    report.unchanged += 1;
                    continue;
                }
                self.tombstone(slot);
                report.replaced += 1;
            } else {
                report.inserted += 1;
            }
            self.insert(id, v, &mut scratch);
            self.maybe_consolidate(&mut scratch);
        }
        self.put_scratch(scratch);
        let evicted = report.evicted.len() as u64;
        self.counters.evictions.fetch_add(evicted, Relaxed);
        self.counters
            .inserts
            .fetch_add((report.inserted + report.replaced) as u64, Relaxed);
        Ok(report)
    }

    /// Deletes ids; returns how many were held. Unknown ids are ignored.
    pub fn delete(&mut self, ids: &[VectorId]) -> usize {
        let mut removed = 0;
        for id in ids {
            if let Some(&slot) = self.slot_of.get(id) {
                self.tombstone(slot);
                removed += 1;
            }
        }
        self.counters.deletes.fetch_add(removed as u64, Relaxed);
        let mut scratch = self.take_scratch();
        self.maybe_consolidate(&mut scratch);
        self.put_scratch(scratch);
        removed
    }

    /// Removes every vector (keeps the configuration and the counters).
    pub fn clear(&mut self) {
        let fresh = Hnsw::new(self.cfg.clone()).expect("a validated config stays valid");
        let counters = std::mem::take(&mut self.counters);
        *self = fresh;
        self.counters = counters;
    }

    fn tombstone(&mut self, slot: u32) {
        let s = slot as usize;
        if self.tomb[s] || self.graph.levels[s] == FREE {
            return;
        }
        self.tomb[s] = true;
        self.slot_of.remove(&self.ids[s]);
        self.tombstones += 1;
    }

    /// Evicts `n` live vectors, least recently hit first, sparing `keep`.
    fn evict(&mut self, n: usize, keep: &HashSet<VectorId>) -> Vec<VectorId> {
        let mut order: Vec<(u32, u32)> = self
            .slot_of
            .iter()
            .filter(|(id, _)| !keep.contains(id))
            .map(|(_, &slot)| (self.last_used[slot as usize].load(Relaxed), slot))
            .collect();
        let n = n.min(order.len());
        if n == 0 {
            return Vec::new();
        }
        if n < order.len() {
            order.select_nth_unstable(n - 1);
        }
        let now = self.clock.load(Relaxed);
        // Stamps are compared by age, so the clock may wrap.
        let victims = &mut order[..n];
        victims.sort_unstable_by_key(|&(t, _)| std::cmp::Reverse(now.wrapping_sub(t)));
        let evicted: Vec<VectorId> = victims.iter().map(|&(_, s)| self.ids[s as usize]).collect();
        for &(_, slot) in victims.iter() {
            self.tombstone(slot);
        }
        evicted
    }

    fn draw_level(&mut self) -> usize {
        // xorshift64*: enough for level draws, and the same on every platform.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let u = ((r >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        ((-u.ln() * self.level_mult) as usize).min(MAX_LEVEL)
    }

    /// A slot for a new node at `level`: a freed one, or a new one at the end.
    fn alloc_slot(&mut self, level: usize) -> usize {
        let slot = match self.free.pop() {
            Some(s) => s as usize,
            None => {
                let s = self.graph.slots();
                if s == self.ids.capacity() {
                    self.grow(s);
                }
                self.ids.push(0);
                self.tomb.push(false);
                self.last_used.push(AtomicU32::new(0));
                s
            }
        };
        self.graph.reset_slot(slot, level);
        self.tomb[slot] = false;
        slot
    }

    /// Reserves room for more slots: half as many again (a quarter of the memory is slack on
    /// average, where doubling leaves half), never past what a byte capacity allows.
    fn grow(&mut self, slots: usize) {
        let mut target = (slots + slots / 2).max(64);
        if let Some(b) = self.cfg.capacity_bytes {
            let max = (b / self.cfg.bytes_per_vector() as u64) as usize;
            target = target.min(max.max(slots + 1));
        }
        let extra = target - slots;
        self.ids.reserve_exact(extra);
        self.tomb.reserve_exact(extra);
        self.last_used.reserve_exact(extra);
        self.graph.reserve_exact(target);
        self.store.reserve_exact(target);
    }

    fn insert(&mut self, id: VectorId, v: &[f32], scratch: &mut Scratch) {
        let level = self.draw_level();
        let slot = self.alloc_slot(level);
        self.store.set(slot, v);
        self.ids[slot] = id;
        self.last_used[slot].store(self.tick(), Relaxed);
        self.slot_of.insert(id, slot as u32);
        self.link(slot as u32, level, v, scratch);
    }

    /// Links a new node into every level up to its own.
    fn link(&mut self, slot: u32, level: usize, v: &[f32], scratch: &mut Scratch) {
        let Some(entry) = self.entry else {
            self.entry = Some(slot);
            self.max_level = level;
            return;
        };
        let q = self.store.query(v);
        let top = self.max_level;
        let mut ep = self.descend(&q, entry, top, level.min(top));
        let mut links = std::mem::take(&mut scratch.links);
        let mut buf = std::mem::take(&mut scratch.vector);
        for lc in (0..=level.min(top)).rev() {
            self.search_level(&q, &[ep], self.cfg.ef_construction, lc, scratch, |s| {
                s != slot && self.is_live(s)
            });
            scratch.sort_results();
            let Some(&best) = scratch.sorted.first() else {
                continue;
            };
            ep = best;
            self.select_neighbours(&scratch.sorted, self.cfg.m, &mut links, &mut buf);
            self.graph.set_neighbours(slot as usize, lc, &links);
            for &n in &links {
                self.add_link(n, slot, lc, &mut scratch.pairs, &mut buf);
            }
        }
        scratch.links = links;
        scratch.vector = buf;
        if level > top {
            self.entry = Some(slot);
            self.max_level = level;
        }
    }

    /// Adds the link `from → to` at `level`, re-pruning `from`'s list when it is full.
    fn add_link(
        &mut self,
        from: u32,
        to: u32,
        level: usize,
        pairs: &mut Vec<u64>,
        buf: &mut Vec<f32>,
    ) {
        if self.graph.push_neighbour(from as usize, level, to) {
            return;
        }
        pairs.clear();
        self.store.decode(from as usize, buf);
        let q = self.store.query(buf);
        for &n in self
            .graph
            .neighbours(from as usize, level)
            .iter()
            .chain([&to])
        {
            pairs.push(key(self.store.dist(&q, n as usize), n));
        }
        pairs.sort_unstable();
        let mut kept = Vec::with_capacity(self.graph.max_degree(level));
        let mut buf2 = Vec::new();
        self.select_neighbours(pairs, self.graph.max_degree(level), &mut kept, &mut buf2);
        self.graph.set_neighbours(from as usize, level, &kept);
    }

    /// The `k` nearest live vectors to `query`, best first (see [`crate::metric`] for what
    /// scores mean). Fewer than `k` only when fewer live vectors pass the filter.
    pub fn search(&self, query: &[f32], k: usize, opts: &SearchOptions<'_>) -> Result<Vec<Hit>> {
        if query.len() != self.cfg.dim {
            return Err(Error::DimensionMismatch {
                expected: self.cfg.dim,
                got: query.len(),
            });
        }
        let mut out = self.search_batch(query, k, opts)?;
        Ok(out.pop().unwrap_or_default())
    }

    /// [`search`](Self::search) for each row of `queries`.
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        opts: &SearchOptions<'_>,
    ) -> Result<Vec<Vec<Hit>>> {
        let nq = check_vectors(queries, self.cfg.dim, "query")?;
        if k == 0 || k > MAX_K {
            return Err(Error::KOutOfRange { k, max: MAX_K });
        }
        let ef = opts.ef.unwrap_or(self.cfg.ef_search);
        check_ef("ef", ef)?;
        let ef = ef.max(k);
        if self.cfg.metric.normalizes() {
            check_nonzero(queries, self.cfg.dim)?;
        }
        let mut scratch = self.take_scratch();
        let mut results = Vec::with_capacity(nq);
        for q in queries.chunks_exact(self.cfg.dim) {
            let hits = self.search_one(q, k, ef, opts.filter, &mut scratch);
            let counter = if hits.len() < k.min(self.len()) || hits.is_empty() {
                &self.counters.short_searches
            } else {
                &self.counters.searches
            };
            counter.fetch_add(1, Relaxed);
            results.push(hits);
        }
        self.put_scratch(scratch);
        Ok(results)
    }

    fn search_one(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<Filter<'_>>,
        scratch: &mut Scratch,
    ) -> Vec<Hit> {
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        let mut qbuf = std::mem::take(&mut scratch.vector);
        qbuf.clear();
        qbuf.extend_from_slice(query);
        if self.cfg.metric.normalizes() {
            normalize(&mut qbuf);
        }
        let q = self.store.query(&qbuf);
        let exact = match filter {
            Some(Filter::Allow(ids)) if ids.len() <= EXACT_FILTER_MAX => {
                scratch.sorted.clear();
                let mut seen = HashSet::with_capacity(ids.len());
                for id in ids {
                    if let Some(&slot) = self.slot_of.get(id) {
                        if seen.insert(slot) {
                            let d = self.store.dist(&q, slot as usize);
                            scratch.sorted.push(key(d, slot));
                        }
                    }
                }
                scratch.sorted.sort_unstable();
                scratch
                    .sorted
                    .truncate(if self.store.reranks() { ef } else { k });
                true
            }
            Some(Filter::Allow(ids)) => {
                let mut allowed = vec![false; self.graph.slots()];
                for id in ids {
                    if let Some(&slot) = self.slot_of.get(id) {
                        allowed[slot as usize] = true;
                    }
                }
                self.walk(&q, entry, ef, scratch, |s| allowed[s as usize]);
                false
            }
            Some(Filter::Predicate(pred)) => {
                self.walk(&q, entry, ef, scratch, |s| {
                    self.is_live(s) && pred(self.ids[s as usize])
                });
                false
            }
            None => {
                self.walk(&q, entry, ef, scratch, |s| self.is_live(s));
                false
            }
        };
        if !exact && scratch.sorted.len() < k && scratch.sorted.len() < self.len() {
            // The walk came up short: a filter that keeps few nodes, or nodes the graph no
            // longer reaches. Score every allowed live vector instead: a search returns `k`
            // hits whenever `k` allowed live vectors exist.
            self.scan(&q, ef, filter, scratch);
        }
        if self.store.reranks() {
            for k in scratch.sorted.iter_mut() {
                let slot = key_slot(*k);
                let d = self
                    .store
                    .exact_dist(&qbuf, slot as usize)
                    .unwrap_or(f32::INFINITY);
                *k = key(d, slot);
            }
            scratch.sorted.sort_unstable();
        }
        scratch.vector = qbuf;
        let now = self.tick();
        let higher = self.cfg.metric.higher_is_better();
        scratch
            .sorted
            .iter()
            .take(k)
            .map(|&k| {
                let slot = key_slot(k) as usize;
                self.last_used[slot].store(now, Relaxed);
                let d = key_dist(k);
                Hit {
                    id: self.ids[slot],
                    score: if higher { -d } else { d },
                }
            })
            .collect()
    }

    /// Exact search over every live vector that passes `filter`, best `ef` into
    /// `scratch.sorted`.
    fn scan(
        &self,
        q: &store::Query<'_>,
        ef: usize,
        filter: Option<Filter<'_>>,
        scratch: &mut Scratch,
    ) {
        let allow: Option<HashSet<VectorId>> = match filter {
            Some(Filter::Allow(ids)) => Some(ids.iter().copied().collect()),
            _ => None,
        };
        scratch.results.clear();
        for (&id, &slot) in &self.slot_of {
            let pass = match filter {
                None => true,
                Some(Filter::Allow(_)) => allow.as_ref().is_some_and(|a| a.contains(&id)),
                Some(Filter::Predicate(pred)) => pred(id),
            };
            if !pass {
                continue;
            }
            let k = key(self.store.dist(q, slot as usize), slot);
            if scratch.results.len() < ef {
                scratch.results.push(k);
            } else if scratch.results.peek().is_some_and(|&w| k < w) {
                scratch.results.pop();
                scratch.results.push(k);
            }
        }
        scratch.sort_results();
    }

    /// Descends to level 0 and walks it, leaving the sorted results in `scratch.sorted`.
    fn walk(
        &self,
        q: &store::Query<'_>,
        entry: u32,
        ef: usize,
        scratch: &mut Scratch,
        accept: impl Fn(u32) -> bool,
    ) {
        let ep = self.descend(q, entry, self.max_level, 0);
        self.search_level(q, &[ep], ef, 0, scratch, accept);
        scratch.sort_results();
    }

    /// The vector held for `id` (normalised for cosine; decoded from SQ8 when only codes are
    /// held), or `None`. Counts as a hit for eviction.
    pub fn get(&self, id: VectorId) -> Option<Vec<f32>> {
        match self.slot_of.get(&id) {
            Some(&slot) => {
                self.counters.get_hits.fetch_add(1, Relaxed);
                self.last_used[slot as usize].store(self.tick(), Relaxed);
                let mut out = Vec::with_capacity(self.cfg.dim);
                self.store.decode(slot as usize, &mut out);
                Some(out)
            }
            None => {
                self.counters.get_misses.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// Bytes allocated for vectors, links, ids, the id map and search buffers.
    pub fn memory_bytes(&self) -> usize {
        let scratch: usize = self
            .scratch
            .lock()
            .map(|s| s.iter().map(|s| s.memory_bytes()).sum())
            .unwrap_or(0);
        self.store.memory_bytes()
            + self.graph.memory_bytes()
            + self.ids.capacity() * 8
            + self.tomb.capacity()
            + self.last_used.capacity() * 4
            + self.slot_of.capacity() * ID_MAP_ENTRY_BYTES
            + self.free.capacity() * 4
            + scratch
    }

    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let searches = c.searches.load(Relaxed);
        let short = c.short_searches.load(Relaxed);
        let (get_hits, get_misses) = (c.get_hits.load(Relaxed), c.get_misses.load(Relaxed));
        CacheStats {
            vectors: self.len(),
            dim: self.cfg.dim,
            metric: self.cfg.metric,
            quantization: self.cfg.quantization,
            capacity: self.cfg.capacity,
            capacity_bytes: self.cfg.capacity_bytes,
            memory_bytes: self.memory_bytes(),
            tombstones: self.tombstones,
            slots: self.graph.slots(),
            max_level: self.max_level,
            searches: searches + short,
            short_searches: short,
            get_hits,
            get_misses,
            hits: searches + get_hits,
            misses: short + get_misses,
            inserts: c.inserts.load(Relaxed),
            deletes: c.deletes.load(Relaxed),
            evictions: c.evictions.load(Relaxed),
            consolidations: c.consolidations.load(Relaxed),
        }
    }
}

impl VectorIndex for Hnsw {
    fn dim(&self) -> usize {
        self.cfg.dim
    }

    fn metric(&self) -> Metric {
        self.cfg.metric
    }

    fn len(&self) -> usize {
        Hnsw::len(self)
    }

    fn add(&mut self, ids: &[VectorId], vectors: &[f32]) -> Result<()> {
        self.upsert(ids, vectors).map(|_| ())
    }

    fn remove(&mut self, ids: &[VectorId]) -> Result<usize> {
        Ok(self.delete(ids))
    }

    fn search(
        &self,
        queries: &[f32],
        params: &SearchParams,
        filter: Option<&Bitmap>,
    ) -> Result<Vec<Vec<Hit>>> {
        let pred =
            |id: VectorId| filter.is_none_or(|f| usize::try_from(id).is_ok_and(|i| f.get(i)));
        let opts = SearchOptions {
            ef: params.ef,
            filter: filter.map(|_| Filter::Predicate(&pred)),
        };
        self.search_batch(queries, params.k, &opts)
    }

    fn memory_bytes(&self) -> usize {
        Hnsw::memory_bytes(self)
    }
}
