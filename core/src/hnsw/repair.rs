//! Consolidation: how deletes stay out of the graph without rotting it.
//!
//! Measured on a prototype (../shared/notes in the project's history): tombstones alone keep
//! recall but double latency at 50 % deleted; dropping links to deleted nodes without repair
//! lost up to 24 points of recall; re-linking each affected node from its live neighbours and
//! its deleted neighbours' live neighbours kept recall within 1–4 points of a full rebuild at
//! a third of its cost.

use super::search::{key, sort_keys, Scratch};
use super::Hnsw;
use std::sync::atomic::Ordering::Relaxed;

/// Consolidate once tombstones are this fraction of the used slots (1 / 5).
const TOMBSTONE_SHARE: usize = 5;

impl Hnsw {
    pub(super) fn maybe_consolidate(&mut self, scratch: &mut Scratch) {
        let used = self.graph.slots() - self.free.len();
        if self.tombstones > 0 && self.tombstones * TOMBSTONE_SHARE >= used {
            self.consolidate_with(scratch);
        }
    }

    /// Re-links every live node that links to a deleted one and frees the deleted slots for
    /// reuse. Runs by itself once tombstones reach a fifth of the slots; callers may run it
    /// sooner (before [`to_bytes`](Hnsw::to_bytes), say, to ship no tombstones).
    pub fn consolidate(&mut self) {
        let mut scratch = self.take_scratch();
        self.consolidate_with(&mut scratch);
        self.put_scratch(scratch);
    }

    fn consolidate_with(&mut self, scratch: &mut Scratch) {
        if self.tombstones == 0 {
            return;
        }
        self.counters.consolidations.fetch_add(1, Relaxed);
        if self.slot_of.is_empty() {
            self.clear();
            return;
        }
        let slots = self.graph.slots();
        // Candidate slots as u64 (sorted with the module's one sort).
        let mut around: Vec<u64> = Vec::new();
        let mut around32: Vec<u32> = Vec::new();
        let mut kept: Vec<u32> = Vec::new();
        let mut buf = std::mem::take(&mut scratch.vector);
        let mut buf2 = Vec::new();
        for s in 0..slots as u32 {
            if !self.is_live(s) {
                continue;
            }
            let top = self.graph.level(s as usize).unwrap_or(0);
            for level in 0..=top {
                let links = self.graph.neighbours(s as usize, level);
                // A plain loop: `all` with a closure stays a call per link at opt-level "s".
                let mut all_live = true;
                for &n in links {
                    all_live &= self.is_live(n);
                }
                if all_live {
                    continue;
                }
                around.clear();
                for &n in links {
                    if self.is_live(n) {
                        around.push(u64::from(n));
                    } else {
                        for &nn in self.graph.neighbours(n as usize, level) {
                            if nn != s && self.is_live(nn) {
                                around.push(u64::from(nn));
                            }
                        }
                    }
                }
                sort_keys(&mut around);
                around.dedup();
                around32.clear();
                around32.extend(around.iter().map(|&n| n as u32));
                let around = &around32;
                let max = self.graph.max_degree(level);
                if around.len() <= max {
                    self.graph.set_neighbours(s as usize, level, around);
                    continue;
                }
                self.store.decode(s as usize, &mut buf);
                let q = self.store.query(&buf);
                scratch.pairs.clear();
                scratch.pairs.extend(
                    around
                        .iter()
                        .map(|&n| key(self.store.dist(&q, n as usize), n)),
                );
                sort_keys(&mut scratch.pairs);
                let pairs = std::mem::take(&mut scratch.pairs);
                self.select_neighbours(&pairs, max, &mut kept, &mut buf2);
                scratch.pairs = pairs;
                self.graph.set_neighbours(s as usize, level, &kept);
            }
        }
        scratch.vector = buf;
        for s in 0..slots {
            if self.tomb[s] {
                self.tomb[s] = false;
                self.graph.free_slot(s);
                self.free.push(s as u32);
            }
        }
        self.tombstones = 0;
        if self.entry.is_none_or(|e| !self.is_live(e)) {
            let best = (0..slots as u32)
                .filter(|&s| self.is_live(s))
                .max_by_key(|&s| (self.graph.levels[s as usize], std::cmp::Reverse(s)));
            self.entry = best;
            self.max_level = best.map_or(0, |s| self.graph.levels[s as usize] as usize);
        }
        self.adopt_orphans(scratch);
    }

    /// Gives every live node that lost all its level-0 in-links (they all came from deleted
    /// nodes whose repaired neighbours pruned it) an in-link again: the nearest live nodes
    /// found by a walk link to it (their pruning keeps it, as every node's last in-link is
    /// kept). A node nothing links to is unreachable: only the exact fallback would return it.
    fn adopt_orphans(&mut self, scratch: &mut Scratch) {
        let Some(entry) = self.entry else { return };
        let orphans: Vec<u32> = (0..self.graph.slots() as u32)
            .filter(|&s| s != entry && self.is_live(s) && self.graph.in0[s as usize] == 0)
            .collect();
        let mut v = Vec::new();
        let mut pairs = std::mem::take(&mut scratch.pairs);
        let mut kept = std::mem::take(&mut scratch.kept);
        let mut links = std::mem::take(&mut scratch.links);
        let mut buf = Vec::new();
        for orphan in orphans {
            self.store.decode(orphan as usize, &mut v);
            let q = self.store.query(&v);
            let ep = self.descend(&q, entry, self.max_level, 0);
            self.search_level(&q, &[ep], self.cfg.ef_construction, 0, scratch, &|s| {
                s != orphan && self.is_live(s)
            });
            scratch.sort_results();
            self.select_neighbours(&scratch.sorted, self.cfg.m, &mut links, &mut buf);
            for &n in &links {
                self.add_link(n, orphan, 0, &mut pairs, &mut buf, &mut kept);
            }
        }
        scratch.pairs = pairs;
        scratch.kept = kept;
        scratch.links = links;
    }
}
