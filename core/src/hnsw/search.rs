//! Graph walks: the greedy descent through upper levels, the beam search of one level, and
//! the neighbour-selection heuristic that insertions and repairs share.

use super::store::Query;
use super::Hnsw;

/// Heap entries are `u64`s ordered by distance, then slot: the distance's bits mapped to an
/// order-preserving `u32` in the high half, the slot in the low half. One integer compare
/// per heap step, no floats in the heaps.
#[inline(always)]
pub(super) fn key(dist: f32, slot: u32) -> u64 {
    let bits = dist.to_bits();
    let ordered = if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    (u64::from(ordered) << 32) | u64::from(slot)
}

#[inline(always)]
pub(super) fn key_slot(key: u64) -> u32 {
    key as u32
}

#[inline(always)]
pub(super) fn key_dist(key: u64) -> f32 {
    let ordered = (key >> 32) as u32;
    let bits = if ordered & 0x8000_0000 != 0 {
        ordered & 0x7FFF_FFFF
    } else {
        !ordered
    };
    f32::from_bits(bits)
}

/// A binary max-heap of keys: the walk's candidates (as `!key`, so the closest comes out
/// first) and results (the worst on top). `std`'s `BinaryHeap` does the same, but its push and
/// pop stay calls when the module is optimised for size, once or twice per scored node.
#[derive(Default)]
pub(super) struct KeyHeap(Vec<u64>);

impl KeyHeap {
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    #[inline(always)]
    pub fn peek(&self) -> Option<&u64> {
        self.0.first()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }

    #[inline(always)]
    pub fn push(&mut self, k: u64) {
        let i = self.0.len();
        self.0.push(k);
        sift_up(&mut self.0, i, k);
    }

    /// `std`'s pop: the hole the top leaves goes down to a leaf along the larger children
    /// (one compare per level), then the last key rises from there (it rarely rises far).
    #[inline(always)]
    pub fn pop(&mut self) -> Option<u64> {
        let h = &mut self.0;
        let last = h.pop()?;
        let Some(&top) = h.first() else {
            return Some(last);
        };
        let n = h.len();
        let (mut hole, mut child) = (0, 1);
        while child + 1 < n {
            // SAFETY: `hole < child < child + 1 < n = h.len()`.
            unsafe {
                child += usize::from(h.get_unchecked(child) <= h.get_unchecked(child + 1));
                *h.get_unchecked_mut(hole) = *h.get_unchecked(child);
            }
            hole = child;
            child = 2 * hole + 1;
        }
        if child + 1 == n {
            h[hole] = h[child];
            hole = child;
        }
        sift_up(h, hole, last);
        Some(top)
    }

    /// Replaces the top with `k` (smaller than it), which sinks to its place: a push and a pop
    /// of the top in one pass.
    #[inline(always)]
    pub fn replace_top(&mut self, k: u64) {
        let h = &mut self.0[..];
        let n = h.len();
        let (mut hole, mut child) = (0, 1);
        while child + 1 < n {
            // SAFETY: `hole < child < child + 1 < n = h.len()`.
            unsafe {
                child += usize::from(h.get_unchecked(child) <= h.get_unchecked(child + 1));
                if k >= *h.get_unchecked(child) {
                    break;
                }
                *h.get_unchecked_mut(hole) = *h.get_unchecked(child);
            }
            hole = child;
            child = 2 * hole + 1;
        }
        if child + 1 == n && h[child] > k {
            h[hole] = h[child];
            hole = child;
        }
        h[hole] = k;
    }
}

/// Sorts keys ascending: a heapsort, the module's one sort (`std`'s quicksort with its small
/// sorts was 4 KB of the browser module). What is sorted here is short: a walk's results,
/// a node's candidate links.
pub(super) fn sort_keys(v: &mut [u64]) {
    let n = v.len();
    for i in (0..n / 2).rev() {
        sift_down(v, i, n);
    }
    heap_to_sorted(v);
}

/// A max-heap sorted ascending in place: the top goes to the end, `n - 1` times.
fn heap_to_sorted(v: &mut [u64]) {
    for end in (1..v.len()).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

/// `v[hole]` sinks to its place in the max-heap `v[..end]`.
#[inline(always)]
fn sift_down(v: &mut [u64], mut hole: usize, end: usize) {
    let k = v[hole];
    let end = end.min(v.len());
    loop {
        let mut child = 2 * hole + 1;
        if child >= end {
            break;
        }
        // SAFETY: `hole < child < end <= v.len()`, and `child + 1 < end` where it is read.
        unsafe {
            if child + 1 < end && *v.get_unchecked(child) < *v.get_unchecked(child + 1) {
                child += 1;
            }
            if k >= *v.get_unchecked(child) {
                break;
            }
            *v.get_unchecked_mut(hole) = *v.get_unchecked(child);
        }
        hole = child;
    }
    v[hole] = k;
}

/// Moves `k` up from the hole at `i` to its place.
#[inline(always)]
fn sift_up(h: &mut [u64], mut i: usize, k: u64) {
    assert!(i < h.len());
    while i > 0 {
        let parent = (i - 1) / 2;
        // SAFETY: `parent < i < h.len()` (asserted on entry; `i` only decreases).
        unsafe {
            if *h.get_unchecked(parent) >= k {
                break;
            }
            *h.get_unchecked_mut(i) = *h.get_unchecked(parent);
        }
        i = parent;
    }
    // SAFETY: `i` is the entry's `i` or a parent of it, below `h.len()`.
    unsafe { *h.get_unchecked_mut(i) = k };
}

/// Buffers a search reuses, so a query allocates nothing but its answer.
#[derive(Default)]
pub(super) struct Scratch {
    /// `visited[slot] == stamp` marks a slot seen by the current walk.
    visited: Vec<u32>,
    stamp: u32,
    /// Nodes to expand, as `!key` (the closest on top).
    candidates: KeyHeap,
    /// The best `ef` accepted nodes so far (the worst on top).
    pub results: KeyHeap,
    /// Sorted results, reused by callers.
    pub sorted: Vec<u64>,
    /// A decoded vector (SQ8 without rows) or a prepared query.
    pub vector: Vec<f32>,
    pub pairs: Vec<u64>,
    pub links: Vec<u32>,
    pub kept: Vec<u32>,
}

impl Scratch {
    /// Starts a walk (or a set of slots) over `slots` slots: nothing visited, heaps empty.
    pub fn begin(&mut self, slots: usize) {
        if self.visited.len() < slots {
            self.visited.resize(slots, 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.visited.iter_mut().for_each(|v| *v = 0);
            self.stamp = 1;
        }
        self.candidates.clear();
        self.results.clear();
    }

    /// Marks `slot` visited; false when it already was. (Also a set of slots, without a
    /// hash table, for callers between walks.)
    #[inline(always)]
    pub fn visit(&mut self, slot: u32) -> bool {
        let v = &mut self.visited[slot as usize];
        if *v == self.stamp {
            false
        } else {
            *v = self.stamp;
            true
        }
    }

    /// True when `slot` was visited since [`Scratch::begin`].
    #[inline]
    pub fn visited(&self, slot: u32) -> bool {
        self.visited[slot as usize] == self.stamp
    }

    pub fn memory_bytes(&self) -> usize {
        self.visited.capacity() * 4
            + (self.candidates.capacity() + self.results.capacity() + self.sorted.capacity()) * 8
            + self.vector.capacity() * 4
            + self.pairs.capacity() * 8
            + (self.links.capacity() + self.kept.capacity()) * 4
    }

    /// Offers a scored node to the walk: a candidate when it may improve the results, and a
    /// result too when `accepted`.
    #[inline]
    fn consider(&mut self, k: u64, ef: usize, accepted: bool) {
        if self.results.len() < ef {
            self.candidates.push(!k);
            if accepted {
                self.results.push(k);
            }
        } else if self.results.peek().is_some_and(|&w| k < w) {
            self.candidates.push(!k);
            if accepted {
                // The worst result leaves, `k` takes its place.
                self.results.replace_top(k);
            }
        }
    }

    /// Results sorted best first into [`Scratch::sorted`].
    pub fn sort_results(&mut self) {
        // The results' buffer becomes `sorted` (already a heap: half a heapsort), and
        // `sorted`'s the results'.
        self.sorted.clear();
        std::mem::swap(&mut self.sorted, &mut self.results.0);
        heap_to_sorted(&mut self.sorted);
    }
}

impl Hnsw {
    /// Greedy descent from `entry` at level `from` through the levels above `to`: the key of
    /// the closest node found, where the walk of level `to` starts.
    pub(super) fn descend(&self, q: &Query<'_>, entry: u32, from: usize, to: usize) -> u64 {
        let mut best = key(self.store.dist(q, entry as usize), entry);
        for level in ((to + 1)..=from).rev() {
            loop {
                let mut changed = false;
                for &n in self.graph.neighbours(key_slot(best) as usize, level) {
                    let k = key(self.store.dist(q, n as usize), n);
                    if k < best {
                        best = k;
                        changed = true;
                    }
                }
                if !changed {
                    break;
                }
            }
        }
        best
    }

    /// Beam search of one level from `entries`, keeping the best `ef` nodes that `accept`
    /// takes in `scratch.results`. Rejected nodes (tombstones, filtered ids) are walked
    /// through but never kept. `accept` is dynamic: one copy of this loop serves every filter
    /// (a call per visited node costs nothing beside its distance). A node's unvisited
    /// neighbours are scored four at a time (the query is read once for four rows).
    pub(super) fn search_level(
        &self,
        q: &Query<'_>,
        entries: &[u64],
        ef: usize,
        level: usize,
        scratch: &mut Scratch,
        accept: &dyn Fn(u32) -> bool,
    ) {
        scratch.begin(self.graph.slots());
        for &e in entries {
            if scratch.visit(key_slot(e)) {
                scratch.candidates.push(!e);
                if accept(key_slot(e)) {
                    scratch.results.push(e);
                }
            }
        }
        while let Some(current) = scratch.candidates.pop().map(|c| !c) {
            if scratch.results.len() >= ef && scratch.results.peek().is_some_and(|&w| current > w) {
                break;
            }
            let mut batch = [0u32; 4];
            let mut pending = 0;
            for &n in self.graph.neighbours(key_slot(current) as usize, level) {
                if !scratch.visit(n) {
                    continue;
                }
                batch[pending] = n;
                pending += 1;
                if pending == 4 {
                    let d = self.store.dist4(q, batch);
                    // Spelled out: a loop over the four when optimised for size.
                    scratch.consider(key(d[0], batch[0]), ef, accept(batch[0]));
                    scratch.consider(key(d[1], batch[1]), ef, accept(batch[1]));
                    scratch.consider(key(d[2], batch[2]), ef, accept(batch[2]));
                    scratch.consider(key(d[3], batch[3]), ef, accept(batch[3]));
                    pending = 0;
                }
            }
            for &n in &batch[..pending] {
                let k = key(self.store.dist(q, n as usize), n);
                scratch.consider(k, ef, accept(n));
            }
        }
    }

    /// HNSW's neighbour heuristic: from `candidates` (keys relative to the node being linked,
    /// sorted best first) keep a candidate only when it is closer to the node than to every
    /// candidate already kept, up to `max`. Keeps links pointing in diverse directions.
    pub(super) fn select_neighbours(
        &self,
        candidates: &[u64],
        max: usize,
        out: &mut Vec<u32>,
        buf: &mut Vec<f32>,
    ) {
        out.clear();
        for &c in candidates {
            if out.len() >= max {
                break;
            }
            let (slot, d) = (key_slot(c), key_dist(c));
            if out.is_empty() {
                out.push(slot);
                continue;
            }
            // The candidate's vector is read (or decoded) once, then scored against the kept
            // ones four at a time.
            let q = match self.store.raw_row(slot as usize) {
                Some(row) if !self.store.reranks() => self.store.query(row),
                _ => {
                    self.store.decode(slot as usize, buf);
                    self.store.query(buf)
                }
            };
            let mut quads = out.chunks_exact(4);
            let diverse = quads.by_ref().all(|k| {
                self.store
                    .dist4(&q, [k[0], k[1], k[2], k[3]])
                    .iter()
                    .all(|&x| x >= d)
            }) && quads
                .remainder()
                .iter()
                .all(|&kept| self.store.dist(&q, kept as usize) >= d);
            if diverse {
                out.push(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_sorts_and_the_heap_keeps_its_order() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for n in 0..200 {
            let mut v: Vec<u64> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x % 50
                })
                .collect();
            let mut want = v.clone();
            want.sort_unstable();
            sort_keys(&mut v);
            assert_eq!(v, want);
            // Through the heap: pushes, pops, replacements, then the sorted drain.
            let mut s = Scratch::default();
            for (i, &k) in want.iter().rev().enumerate() {
                if i % 5 == 4 && s.results.peek().is_some_and(|&w| k < w) {
                    s.results.replace_top(k);
                } else {
                    s.results.push(k);
                }
                if i % 7 == 6 {
                    let top = s.results.pop().unwrap();
                    assert!(s.results.peek().is_none_or(|&w| w <= top));
                }
            }
            let mut left = s.results.0.clone();
            left.sort_unstable();
            s.sort_results();
            assert_eq!(s.sorted, left);
        }
    }

    #[test]
    fn keys_order_like_distances() {
        let ds = [-3.5f32, -0.0, 0.0, 1e-30, 0.5, 2.0, 1e30];
        for w in ds.windows(2) {
            assert!(
                key(w[0], 7) <= key(w[1], 3) || w[0] == w[1],
                "{} {}",
                w[0],
                w[1]
            );
        }
        for &d in &ds {
            assert_eq!(key_dist(key(d, 9)).to_bits(), d.to_bits());
            assert_eq!(key_slot(key(d, 9)), 9);
        }
    }
}
