//! The browser/edge cache's index: an HNSW graph (Malkov & Yashunin) that takes inserts,
//! upserts and deletes in place, searches with an optional id filter, stores vectors as f32
//! or SQ8, evicts the least recently hit vectors past a capacity, and serialises itself to a
//! versioned, CRC-checked byte format that native and wasm32 builds share ([`Hnsw::to_bytes`]).
//!
//! Written here rather than taken from `hnsw_rs` (the crate the design first named): its
//! current release (0.3.5) does not compile for wasm32 (mmap-rs has no wasm32 platform, and
//! getrandom needs a feature it does not set) and has no delete; `hnsw` and `instant-distance`
//! compile for wasm32 but cannot delete or evict.
//!
//! Deletes are tombstones: searches walk through them but never return them. Once tombstones
//! reach a fifth of the used slots the graph is consolidated ([`Hnsw::consolidate`]): every
//! live node that linked to a deleted one is re-linked from its live neighbours and the live
//! neighbours of its deleted ones (FreshDiskANN's rule, pruned with the HNSW heuristic), then
//! the deleted slots are freed for reuse. An upsert of a changed vector is a delete plus an
//! insert in a fresh slot; an upsert of the same vector changes nothing.

mod codec;
mod graph;
mod insert;
mod query;
mod repair;
mod rows;
mod search;
mod store;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde::Serialize;

pub use store::Quantization;

use crate::bitmap::Bitmap;
use crate::error::{Error, Result};
use crate::index::{Hit, VectorId, VectorIndex};
use crate::metric::Metric;
use crate::params::SearchParams;
use crate::validate::MAX_DIM;
use graph::{Graph, FREE};
use search::Scratch;
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
            seed: 0x5EED_0FC0_FFEE,
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

    #[inline(always)]
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
