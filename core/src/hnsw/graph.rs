//! The graph's adjacency: level-0 links in one flat `u32` array with a fixed stride (a count,
//! then up to `m0` neighbour slots), and each upper-level node's links in one boxed slice
//! (levels `1..=level`, stride `m + 1`). Most nodes (a fraction `1 − 1/m`) have no upper level.

/// Level of a slot that holds no vector (freed after a consolidation, awaiting reuse).
pub(super) const FREE: u8 = u8::MAX;
/// Highest level a node can be drawn at (a graph of `m^16` nodes would need more).
pub(super) const MAX_LEVEL: usize = 16;

pub(super) struct Graph {
    pub m: usize,
    pub m0: usize,
    /// Level of each slot, or [`FREE`].
    pub levels: Vec<u8>,
    /// `m0 + 1` words per slot: count, then neighbours.
    pub level0: Vec<u32>,
    /// Links of levels `1..=level` for slots above level 0.
    pub upper: Vec<Option<Box<[u32]>>>,
    /// Level-0 in-links of each slot (kept as links change; recomputed on load): pruning
    /// never drops a node's last in-link, so every node stays reachable.
    pub in0: Vec<u32>,
}

impl Graph {
    pub fn new(m: usize, m0: usize) -> Self {
        Self {
            m,
            m0,
            levels: Vec::new(),
            level0: Vec::new(),
            upper: Vec::new(),
            in0: Vec::new(),
        }
    }

    /// Recomputes [`Graph::in0`] from the level-0 links.
    pub fn count_in_links(&mut self) {
        self.in0 = vec![0; self.levels.len()];
        for s in 0..self.levels.len() {
            let start = s * (self.m0 + 1);
            let n = self.level0[start] as usize;
            for &t in &self.level0[start + 1..start + 1 + n] {
                self.in0[t as usize] += 1;
            }
        }
    }

    fn drop_out_links0(&mut self, slot: usize) {
        let start = slot * (self.m0 + 1);
        let n = self.level0[start] as usize;
        for i in 0..n {
            let t = self.level0[start + 1 + i] as usize;
            self.in0[t] -= 1;
        }
        self.level0[start] = 0;
    }

    pub fn slots(&self) -> usize {
        self.levels.len()
    }

    pub fn reserve_exact(&mut self, slots: usize) {
        let extra = slots.saturating_sub(self.levels.len());
        self.levels.reserve_exact(extra);
        self.upper.reserve_exact(extra);
        self.in0.reserve_exact(extra);
        self.level0
            .reserve_exact((slots * (self.m0 + 1)).saturating_sub(self.level0.len()));
    }

    /// Largest number of links a node has at `level`.
    #[inline]
    pub fn max_degree(&self, level: usize) -> usize {
        if level == 0 {
            self.m0
        } else {
            self.m
        }
    }

    /// Gives `slot` (an existing one, or the next new one) an empty link list at every
    /// level up to `level`.
    pub fn reset_slot(&mut self, slot: usize, level: usize) {
        let stride0 = self.m0 + 1;
        if slot == self.levels.len() {
            self.levels.push(0);
            self.upper.push(None);
            self.in0.push(0);
            self.level0.resize((slot + 1) * stride0, 0);
        }
        self.levels[slot] = level as u8;
        self.drop_out_links0(slot);
        self.upper[slot] = (level > 0).then(|| vec![0u32; level * (self.m + 1)].into_boxed_slice());
    }

    /// Marks `slot` free and drops its links.
    pub fn free_slot(&mut self, slot: usize) {
        self.levels[slot] = FREE;
        self.drop_out_links0(slot);
        self.upper[slot] = None;
    }

    #[inline]
    pub fn level(&self, slot: usize) -> Option<usize> {
        match self.levels[slot] {
            FREE => None,
            l => Some(l as usize),
        }
    }

    #[inline(always)]
    pub fn neighbours(&self, slot: usize, level: usize) -> &[u32] {
        let list = if level == 0 {
            let start = slot * (self.m0 + 1);
            &self.level0[start..start + self.m0 + 1]
        } else {
            let start = (level - 1) * (self.m + 1);
            match &self.upper[slot] {
                Some(links) => &links[start..start + self.m + 1],
                None => return &[],
            }
        };
        &list[1..1 + list[0] as usize]
    }

    fn list_mut(&mut self, slot: usize, level: usize) -> &mut [u32] {
        if level == 0 {
            let start = slot * (self.m0 + 1);
            &mut self.level0[start..start + self.m0 + 1]
        } else {
            let start = (level - 1) * (self.m + 1);
            let m = self.m;
            let links = self.upper[slot]
                .as_mut()
                .expect("upper links exist for every level of a node");
            &mut links[start..start + m + 1]
        }
    }

    /// Replaces the links of `slot` at `level` (at most [`max_degree`](Self::max_degree)).
    pub fn set_neighbours(&mut self, slot: usize, level: usize, links: &[u32]) {
        debug_assert!(links.len() <= self.max_degree(level));
        if level == 0 {
            self.drop_out_links0(slot);
            for &t in links {
                self.in0[t as usize] += 1;
            }
        }
        let list = self.list_mut(slot, level);
        list[0] = links.len() as u32;
        list[1..1 + links.len()].copy_from_slice(links);
    }

    /// Appends one link; false when the list is full.
    pub fn push_neighbour(&mut self, slot: usize, level: usize, link: u32) -> bool {
        let max = self.max_degree(level);
        let list = self.list_mut(slot, level);
        let n = list[0] as usize;
        if n >= max {
            return false;
        }
        list[1 + n] = link;
        list[0] += 1;
        if level == 0 {
            self.in0[link as usize] += 1;
        }
        true
    }

    pub fn memory_bytes(&self) -> usize {
        self.levels.capacity()
            + (self.level0.capacity() + self.in0.capacity()) * 4
            + self.upper.capacity() * std::mem::size_of::<Option<Box<[u32]>>>()
            + self
                .upper
                .iter()
                .flatten()
                .map(|links| links.len() * 4)
                .sum::<usize>()
    }

    /// Average bytes of links one more node costs.
    pub fn bytes_per_node(&self) -> usize {
        1 + (self.m0 + 2) * 4
            + std::mem::size_of::<Option<Box<[u32]>>>()
            + (self.m + 1) * 4 / self.m.saturating_sub(1).max(1)
    }
}
