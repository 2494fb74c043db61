//! Reads: k-NN search (graph walk, exact scoring of small allow-lists, and the exact
//! fallback when a walk comes up short) and `get`.

use std::sync::atomic::Ordering::Relaxed;

use super::search::{key, key_dist, key_slot, sort_keys, Scratch};
use super::{check_ef, store, Filter, Hnsw, SearchOptions, EXACT_FILTER_MAX, MAX_K};
use crate::error::{Error, Result};
use crate::index::{Hit, VectorId};
use crate::metric::normalize;
use crate::validate::{check_nonzero, check_vectors};

impl Hnsw {
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
                // The visited stamps are the set of slots seen (an id listed twice counts once).
                scratch.begin(self.graph.slots());
                for id in ids {
                    if let Some(&slot) = self.slot_of.get(id) {
                        if scratch.visit(slot) {
                            let d = self.store.dist(&q, slot as usize);
                            scratch.sorted.push(key(d, slot));
                        }
                    }
                }
                sort_keys(&mut scratch.sorted);
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
                self.walk(&q, entry, ef, scratch, &|s| allowed[s as usize]);
                false
            }
            Some(Filter::Predicate(pred)) => {
                self.walk(&q, entry, ef, scratch, &|s| {
                    self.is_live(s) && pred(self.ids[s as usize])
                });
                false
            }
            None => {
                self.walk(&q, entry, ef, scratch, &|s| self.is_live(s));
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
            sort_keys(&mut scratch.sorted);
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
        // An allow-list's held slots are marked in the visited stamps (no hash set of ids).
        scratch.begin(self.graph.slots());
        if let Some(Filter::Allow(ids)) = filter {
            for id in ids {
                if let Some(&slot) = self.slot_of.get(id) {
                    scratch.visit(slot);
                }
            }
        }
        for (&id, &slot) in &self.slot_of {
            let pass = match filter {
                None => true,
                Some(Filter::Allow(_)) => scratch.visited(slot),
                Some(Filter::Predicate(pred)) => pred(id),
            };
            if !pass {
                continue;
            }
            let k = key(self.store.dist(q, slot as usize), slot);
            if scratch.results.len() < ef {
                scratch.results.push(k);
            } else if scratch.results.peek().is_some_and(|&w| k < w) {
                scratch.results.replace_top(k);
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
        accept: &dyn Fn(u32) -> bool,
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
}
