//! Writes: upserts (with eviction past capacity), deletes, and linking a new node into the
//! graph.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use super::graph::{FREE, MAX_LEVEL};
use super::search::{key, key_slot, sort_keys, Scratch};
use super::{Hnsw, IdMap, UpsertReport};
use crate::error::{Error, Result};
use crate::index::VectorId;
use crate::metric::normalize;
use crate::validate::{check_nonzero, check_norms, check_vectors};

/// [`crate::validate::check_ids`] (the same errors) over the id map's own table: its
/// `SipHash` set was a second hash table in the browser module.
fn check_batch_ids(ids: &[VectorId], rows: usize) -> Result<()> {
    if ids.len() != rows {
        return Err(Error::IdCountMismatch {
            expected: rows,
            got: ids.len(),
        });
    }
    let mut seen = IdMap::default();
    seen.reserve(ids.len());
    for &id in ids {
        if seen.insert(id, 0).is_some() {
            return Err(Error::DuplicateId { id });
        }
    }
    Ok(())
}

impl Hnsw {
    /// A batch [`check_vectors`] accepted, checked further and prepared for the metric
    /// (normalised for cosine).
    fn prepare(&self, vectors: &[f32]) -> Result<Vec<f32>> {
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
        check_batch_ids(ids, rows)?;
        let prepared = self.prepare(vectors)?;
        let mut report = UpsertReport::default();
        let mut scratch = self.take_scratch();
        if let Some(cap) = self.effective_capacity() {
            let new = ids
                .iter()
                .filter(|id| !self.slot_of.contains_key(id))
                .count();
            let over = (self.len() + new).saturating_sub(cap);
            if over > 0 {
                report.evicted = self.evict(over, ids, &mut scratch);
            }
        }
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

    /// Evicts `n` live vectors, least recently hit first, sparing the ids of `keep`.
    fn evict(&mut self, n: usize, keep: &[VectorId], scratch: &mut Scratch) -> Vec<VectorId> {
        // The held slots of `keep` are marked in the visited stamps. Keys order by age (the
        // clock may wrap), oldest first, then by slot: one u64 per candidate; the `n` oldest
        // stay in the results heap (the youngest of them on top), then come out sorted.
        scratch.begin(self.graph.slots());
        for id in keep {
            if let Some(&slot) = self.slot_of.get(id) {
                scratch.visit(slot);
            }
        }
        let now = self.clock.load(Relaxed);
        for &slot in self.slot_of.values() {
            if n == 0 || scratch.visited(slot) {
                continue;
            }
            let age = now.wrapping_sub(self.last_used[slot as usize].load(Relaxed));
            let k = (u64::from(u32::MAX - age) << 32) | u64::from(slot);
            if scratch.results.len() < n {
                scratch.results.push(k);
            } else if scratch.results.peek().is_some_and(|&w| k < w) {
                scratch.results.replace_top(k);
            }
        }
        scratch.sort_results();
        let evicted: Vec<VectorId> = scratch
            .sorted
            .iter()
            .map(|&k| self.ids[key_slot(k) as usize])
            .collect();
        for &k in &scratch.sorted {
            self.tombstone(key_slot(k));
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
            self.search_level(&q, &[ep], self.cfg.ef_construction, lc, scratch, &|s| {
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
                self.add_link(n, slot, lc, &mut scratch.pairs, &mut buf, &mut scratch.kept);
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
    pub(super) fn add_link(
        &mut self,
        from: u32,
        to: u32,
        level: usize,
        pairs: &mut Vec<u64>,
        buf: &mut Vec<f32>,
        kept: &mut Vec<u32>,
    ) {
        if self.graph.push_neighbour(from as usize, level, to) {
            return;
        }
        pairs.clear();
        self.store.decode(from as usize, buf);
        let q = self.store.query(buf);
        let links = self.graph.neighbours(from as usize, level);
        let mut quads = links.chunks_exact(4);
        for quad in &mut quads {
            let slots = [quad[0], quad[1], quad[2], quad[3]];
            let d = self.store.dist4(&q, slots);
            pairs.extend(slots.iter().zip(&d).map(|(&n, &d)| key(d, n)));
        }
        for &n in quads.remainder().iter().chain([&to]) {
            pairs.push(key(self.store.dist(&q, n as usize), n));
        }
        sort_keys(pairs);
        let max = self.graph.max_degree(level);
        self.select_neighbours(pairs, max, kept, buf);
        if level == 0 {
            self.keep_last_in_links(from, to, pairs, kept);
        }
        self.graph.set_neighbours(from as usize, level, kept);
    }

    /// Pruning `from`'s list should not drop a node's only level-0 in-link: such a node
    /// (`to` included, which nothing links to yet) goes back in where the heuristic left
    /// room. (Replacing kept links instead cost 6 points of recall under inner product,
    /// whose small-norm nodes few others link to.)
    fn keep_last_in_links(&self, from: u32, to: u32, pairs: &[u64], kept: &mut Vec<u32>) {
        let max = self.graph.max_degree(0);
        let others = |n: u32| {
            let links_from_here = u32::from(n != to);
            self.graph.in0[n as usize] - links_from_here
        };
        for &p in pairs {
            let n = key_slot(p);
            // `kept.contains(&n)` by hand: a call per element at opt-level "s".
            let mut is_kept = false;
            for &k in kept.iter() {
                is_kept |= k == n;
            }
            if n == from || is_kept || others(n) > 0 || !self.is_live(n) {
                continue;
            }
            if kept.len() < max {
                kept.push(n);
            }
        }
    }
}
