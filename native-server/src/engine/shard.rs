//! A shard: one growing segment, the frozen one a checkpoint is sealing, sealed segments, and
//! the map from id to row.

use std::collections::HashMap;
use std::sync::Arc;

use proxima_core::exact::merge_hits;
use proxima_core::{Bitmap, Hit, Metric, SearchParams};

use super::error::EngineResult;
use super::search_pool::Cancel;
use super::segment::{GrowingSegment, SealedSegment, SegmentIndexInfo, SegmentInfo};
use super::types::{IndexState, SegmentState};
use super::wal::WalOp;

/// Where an id's live row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Growing(u32),
    Frozen(u32),
    Sealed { segment: u64, row: u32 },
}

/// A growing segment frozen by a checkpoint while it is written as the sealed segment `id`
/// (off the applier): its rows keep their positions, are still searched and read here, and
/// deletions mark `live` until the sealed segment replaces it.
pub struct FrozenSegment {
    /// The sealed segment it becomes.
    pub id: u64,
    pub ids: Arc<Vec<u64>>,
    pub vectors: Arc<Vec<f32>>,
    pub live: Bitmap,
    pub live_count: usize,
}

impl FrozenSegment {
    fn memory_bytes(&self) -> u64 {
        (self.vectors.capacity() * 4 + self.ids.capacity() * 8 + self.live.as_bytes().len()) as u64
    }
}

/// A sealed segment with the shard's view of its deletions.
pub struct SealedEntry {
    pub segment: Arc<SealedSegment>,
    pub live: Bitmap,
    pub live_count: usize,
    /// Deletions since the last checkpoint wrote `live.bin`.
    pub dirty: bool,
}

impl SealedEntry {
    /// Marks `row` deleted (in the live bitmap, the live count, and as not yet on disk);
    /// answers whether it was live.
    pub fn tombstone(&mut self, row: usize) -> bool {
        if !self.live.get(row) {
            return false;
        }
        self.live.set(row, false);
        self.live_count -= 1;
        self.dirty = true;
        true
    }

    /// Whether more than `ratio` of the segment's rows are deleted (compaction is due).
    pub fn mostly_deleted(&self, ratio: f64) -> bool {
        let rows = self.segment.rows();
        (rows - self.live_count) as f64 > ratio * rows as f64
    }
}

/// Merges the hits of several sources (a shard's segments, a collection's shards) for a batch
/// of `nq` queries: `per_source[s][q]` is source `s`'s hits for query `q`. Answers the best
/// `k` per query; a single source's lists as they are.
pub fn merge_per_query(
    mut per_source: Vec<Vec<Vec<Hit>>>,
    nq: usize,
    k: usize,
    metric: Metric,
) -> Vec<Vec<Hit>> {
    match per_source.len() {
        0 => return vec![Vec::new(); nq],
        1 => return per_source.pop().unwrap_or_default(),
        _ => {}
    }
    (0..nq)
        .map(|q| {
            merge_hits(
                per_source.iter_mut().map(|s| std::mem::take(&mut s[q])),
                k,
                metric,
            )
        })
        .collect()
}

/// The state of one shard (guarded by the shard's lock in the collection).
#[derive(Default)]
pub struct ShardState {
    pub growing: GrowingSegment,
    pub frozen: Option<FrozenSegment>,
    pub sealed: Vec<SealedEntry>,
    pub locations: HashMap<u64, Location>,
}

impl ShardState {
    /// Live vectors in the shard.
    pub fn count(&self) -> usize {
        self.locations.len()
    }

    /// Adds a sealed segment read from disk, with its live rows. An id can be live in two
    /// segments only after a checkpoint failed between writing a new segment and the old
    /// one's `live.bin` (a full disk): the copy in the newer segment (the higher id: segments
    /// are created in order, and a checkpoint's rows are newer than every sealed row) wins,
    /// and the stale row is tombstoned now and on disk at the next checkpoint. Returns how
    /// many stale rows were found.
    pub fn load_sealed(&mut self, segment: Arc<SealedSegment>, live: Bitmap) -> usize {
        let mut stale = 0;
        let mut entry = SealedEntry {
            live_count: live.count_ones(),
            live,
            segment: segment.clone(),
            dirty: false,
        };
        for (row, &id) in segment.ids().iter().enumerate() {
            if !entry.live.get(row) {
                continue;
            }
            let here = Location::Sealed {
                segment: segment.id,
                row: row as u32,
            };
            let Some(Location::Sealed {
                segment: other,
                row: other_row,
            }) = self.locations.insert(id, here)
            else {
                continue;
            };
            stale += 1;
            if other > segment.id {
                self.locations.insert(
                    id,
                    Location::Sealed {
                        segment: other,
                        row: other_row,
                    },
                );
                entry.tombstone(row);
            } else if let Some(e) = self.sealed_mut(other) {
                e.tombstone(other_row as usize);
            }
        }
        self.sealed.push(entry);
        stale
    }

    fn sealed_mut(&mut self, segment: u64) -> Option<&mut SealedEntry> {
        self.sealed.iter_mut().find(|e| e.segment.id == segment)
    }

    /// Tombstones the row of `id`; returns whether it was live.
    pub fn delete(&mut self, id: u64) -> bool {
        match self.locations.remove(&id) {
            Some(Location::Growing(row)) => {
                self.growing.kill(row);
                true
            }
            Some(Location::Frozen(row)) => {
                if let Some(f) = self.frozen.as_mut().filter(|f| f.live.get(row as usize)) {
                    f.live.set(row as usize, false);
                    f.live_count -= 1;
                }
                true
            }
            Some(Location::Sealed { segment, row }) => {
                if let Some(e) = self.sealed_mut(segment) {
                    e.tombstone(row as usize);
                }
                true
            }
            None => false,
        }
    }

    /// Freezes the growing segment as the future sealed segment `id` (a new growing segment
    /// takes writes); answers whether it held live rows (if not, it is simply dropped). The
    /// shard must have no frozen segment.
    pub fn freeze(&mut self, id: u64) -> bool {
        debug_assert!(self.frozen.is_none());
        let g = std::mem::take(&mut self.growing);
        if g.live_count == 0 {
            return false;
        }
        for row in g.live.ones() {
            self.locations
                .insert(g.ids[row], Location::Frozen(row as u32));
        }
        self.frozen = Some(FrozenSegment {
            id,
            ids: Arc::new(g.ids),
            vectors: Arc::new(g.vectors),
            live: g.live,
            live_count: g.live_count,
        });
        true
    }

    /// Replaces the frozen segment by `segment`, written from its rows in the same order;
    /// rows deleted since the freeze are deleted in it (`dirty` until `live.bin` says so).
    pub fn install_sealed(&mut self, segment: Arc<SealedSegment>) {
        let Some(f) = self.frozen.take() else {
            return;
        };
        debug_assert_eq!((f.id, f.ids.len()), (segment.id, segment.rows()));
        for row in f.live.ones() {
            self.locations.insert(
                f.ids[row],
                Location::Sealed {
                    segment: segment.id,
                    row: row as u32,
                },
            );
        }
        let dirty = f.live_count < segment.rows();
        self.sealed.push(SealedEntry {
            segment,
            live: f.live,
            live_count: f.live_count,
            dirty,
        });
    }

    /// Inserts or replaces `id`.
    pub fn upsert(&mut self, id: u64, vector: &[f32]) {
        self.delete(id);
        let row = self.growing.push(id, vector);
        self.locations.insert(id, Location::Growing(row));
    }

    /// Applies the rows `rows` (indices into its ids, all of this shard) of a logged
    /// operation, in order; answers how many ids a delete removed (0 for an upsert).
    pub fn apply(&mut self, op: &WalOp, rows: &[usize], dim: usize) -> usize {
        let mut deleted = 0;
        for &i in rows {
            match op {
                WalOp::Upsert { ids, vectors } => {
                    self.upsert(ids[i], &vectors[i * dim..(i + 1) * dim])
                }
                WalOp::Delete { ids } => deleted += usize::from(self.delete(ids[i])),
            }
        }
        deleted
    }

    /// The stored vector of `id`.
    pub fn get(&self, id: u64, dim: usize) -> Option<Vec<f32>> {
        match *self.locations.get(&id)? {
            Location::Growing(row) => {
                let r = row as usize;
                Some(self.growing.vectors[r * dim..(r + 1) * dim].to_vec())
            }
            Location::Frozen(row) => {
                let r = row as usize;
                let f = self.frozen.as_ref()?;
                Some(f.vectors[r * dim..(r + 1) * dim].to_vec())
            }
            Location::Sealed { segment, row } => self
                .sealed
                .iter()
                .find(|e| e.segment.id == segment)
                .map(|e| e.segment.vector(row as usize).to_vec()),
        }
    }

    /// Searches every segment of the shard and merges the best `k` per query; `cancel` is
    /// checked before each segment.
    pub fn search(
        &self,
        queries: &[f32],
        dim: usize,
        metric: Metric,
        params: &SearchParams,
        cancel: &Cancel,
    ) -> EngineResult<Vec<Vec<Hit>>> {
        let nq = queries.len() / dim;
        let mut per_segment = Vec::with_capacity(self.sealed.len() + 1);
        if self.growing.live_count > 0 {
            per_segment.push(self.growing.search(queries, dim, metric, params.k));
        }
        if let Some(f) = self.frozen.as_ref().filter(|f| f.live_count > 0) {
            per_segment.push(crate::index::blas_exact::exact_search(
                &f.vectors,
                &f.ids,
                queries,
                dim,
                metric,
                params.k,
                Some(&f.live),
            ));
        }
        for e in &self.sealed {
            if e.live_count > 0 {
                cancel.check()?;
                per_segment.push(e.segment.search(
                    queries,
                    metric,
                    params,
                    &e.live,
                    e.live_count,
                )?);
            }
        }
        Ok(merge_per_query(per_segment, nq, params.k, metric))
    }

    /// Describes the growing and sealed segments.
    pub fn segment_infos(&self, shard: usize) -> Vec<SegmentInfo> {
        let mut out = vec![SegmentInfo {
            id: None,
            shard,
            state: SegmentState::Growing,
            rows: self.growing.rows(),
            live_rows: self.growing.live_count,
            index: SegmentIndexInfo {
                state: IndexState::Exact,
                index_type: None,
                spec: None,
                progress: None,
                note: Some("growing segments are searched exactly".into()),
                reason: None,
            },
            memory_bytes: self.growing.memory_bytes() as u64,
            mapped_bytes: 0,
            gpu_bytes: 0,
            gpu_note: None,
        }];
        if let Some(f) = &self.frozen {
            out.push(SegmentInfo {
                id: Some(f.id),
                shard,
                state: SegmentState::Sealing,
                rows: f.ids.len(),
                live_rows: f.live_count,
                index: SegmentIndexInfo {
                    state: IndexState::Exact,
                    index_type: None,
                    spec: None,
                    progress: None,
                    note: Some("being written as a sealed segment; searched exactly".into()),
                    reason: None,
                },
                memory_bytes: f.memory_bytes(),
                mapped_bytes: 0,
                gpu_bytes: 0,
                gpu_note: None,
            });
        }
        out.extend(self.sealed.iter().map(|e| e.segment.info(e.live_count)));
        out
    }

    /// Bytes the shard holds in RAM (growing rows, id map, bitmaps, indexes).
    pub fn memory_bytes(&self) -> u64 {
        let map = self.locations.capacity() as u64 * 24;
        self.growing.memory_bytes() as u64
            + self.frozen.as_ref().map_or(0, FrozenSegment::memory_bytes)
            + map
            + self
                .sealed
                .iter()
                .map(|e| e.segment.info(e.live_count).memory_bytes)
                .sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_per_query_keeps_the_best_k_of_every_source() {
        let h = |id, score| Hit { id, score };
        assert_eq!(
            merge_per_query(Vec::new(), 2, 3, Metric::L2),
            vec![vec![]; 2]
        );
        let one = vec![vec![h(1, 0.5), h(2, 0.7)], vec![]];
        assert_eq!(merge_per_query(vec![one.clone()], 2, 1, Metric::L2), one);
        let other = vec![vec![h(3, 0.6)], vec![h(4, 0.1)]];
        let merged = merge_per_query(vec![one, other], 2, 2, Metric::L2);
        assert_eq!(merged, vec![vec![h(1, 0.5), h(3, 0.6)], vec![h(4, 0.1)]]);
    }

    #[test]
    fn upsert_replaces_and_delete_hides() {
        let mut s = ShardState::default();
        s.upsert(1, &[0.0, 0.0]);
        s.upsert(2, &[1.0, 1.0]);
        s.upsert(1, &[5.0, 5.0]);
        assert_eq!(s.count(), 2);
        assert_eq!(s.get(1, 2).unwrap(), vec![5.0, 5.0]);
        let hits = s
            .search(
                &[0.0, 0.0],
                2,
                Metric::L2,
                &SearchParams::new(10),
                &Cancel::never(),
            )
            .unwrap();
        assert_eq!(hits[0].iter().map(|h| h.id).collect::<Vec<_>>(), vec![2, 1]);
        assert!(s.delete(2));
        assert!(!s.delete(2));
        let hits = s
            .search(
                &[0.0, 0.0],
                2,
                Metric::L2,
                &SearchParams::new(10),
                &Cancel::never(),
            )
            .unwrap();
        assert_eq!(hits[0].iter().map(|h| h.id).collect::<Vec<_>>(), vec![1]);
        assert_eq!(s.count(), 1);
    }

    fn segment(dir: &std::path::Path, id: u64, ids: &[u64]) -> Arc<SealedSegment> {
        let vectors: Vec<f32> = ids.iter().flat_map(|&i| [i as f32, id as f32]).collect();
        let path = dir.join(format!("{id}"));
        Arc::new(SealedSegment::create(&path, id, 0, 2, ids, &vectors).unwrap())
    }

    #[test]
    fn an_id_live_in_two_segments_keeps_the_newer_row() {
        let dir = tempfile::tempdir().unwrap();
        let old = segment(dir.path(), 1, &[10, 11, 12]);
        let new = segment(dir.path(), 2, &[11, 20]);
        // Either load order: the row of segment 2 wins.
        for order in [[old.clone(), new.clone()], [new.clone(), old.clone()]] {
            let mut shard = ShardState::default();
            let stale: usize = order
                .into_iter()
                .map(|s| {
                    let live = Bitmap::new(s.rows(), true);
                    shard.load_sealed(s, live)
                })
                .sum();
            assert_eq!(stale, 1);
            assert_eq!(shard.count(), 4);
            assert_eq!(
                shard.locations[&11],
                Location::Sealed { segment: 2, row: 0 }
            );
            let entry = |id| shard.sealed.iter().find(|e| e.segment.id == id).unwrap();
            assert_eq!((entry(1).live_count, entry(1).live.get(1)), (2, false));
            assert_eq!(entry(2).live_count, 2);
            let live: usize = shard.sealed.iter().map(|e| e.live_count).sum();
            assert_eq!(live, shard.count(), "counts match what search sees");
        }
    }
}
