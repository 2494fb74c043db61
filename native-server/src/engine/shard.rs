//! A shard: one growing segment, sealed segments, and the map from id to row.

use std::collections::HashMap;
use std::sync::Arc;

use proxima_core::exact::merge_hits;
use proxima_core::{Bitmap, Hit, Metric, SearchParams};

use super::error::EngineResult;
use super::segment::{GrowingSegment, SealedSegment, SegmentIndexInfo, SegmentInfo};

/// Where an id's live row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Growing(u32),
    Sealed { segment: u64, row: u32 },
}

/// A sealed segment with the shard's view of its deletions.
pub struct SealedEntry {
    pub segment: Arc<SealedSegment>,
    pub live: Bitmap,
    pub live_count: usize,
    /// Deletions since the last checkpoint wrote `live.bin`.
    pub dirty: bool,
}

/// The state of one shard (guarded by the shard's lock in the collection).
#[derive(Default)]
pub struct ShardState {
    pub growing: GrowingSegment,
    pub sealed: Vec<SealedEntry>,
    pub locations: HashMap<u64, Location>,
}

impl ShardState {
    /// Live vectors in the shard.
    pub fn count(&self) -> usize {
        self.locations.len()
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
            Some(Location::Sealed { segment, row }) => {
                if let Some(e) = self.sealed_mut(segment) {
                    if e.live.get(row as usize) {
                        e.live.set(row as usize, false);
                        e.live_count -= 1;
                        e.dirty = true;
                    }
                }
                true
            }
            None => false,
        }
    }

    /// Inserts or replaces `id`.
    pub fn upsert(&mut self, id: u64, vector: &[f32]) {
        self.delete(id);
        let row = self.growing.push(id, vector);
        self.locations.insert(id, Location::Growing(row));
    }

    /// The stored vector of `id`.
    pub fn get(&self, id: u64, dim: usize) -> Option<Vec<f32>> {
        match *self.locations.get(&id)? {
            Location::Growing(row) => {
                let r = row as usize;
                Some(self.growing.vectors[r * dim..(r + 1) * dim].to_vec())
            }
            Location::Sealed { segment, row } => self
                .sealed
                .iter()
                .find(|e| e.segment.id == segment)
                .map(|e| e.segment.vector(row as usize).to_vec()),
        }
    }

    /// Searches every segment of the shard and merges the best `k` per query.
    pub fn search(
        &self,
        queries: &[f32],
        dim: usize,
        metric: Metric,
        params: &SearchParams,
    ) -> EngineResult<Vec<Vec<Hit>>> {
        let nq = queries.len() / dim;
        let mut per_segment = Vec::with_capacity(self.sealed.len() + 1);
        if self.growing.live_count > 0 {
            per_segment.push(self.growing.search(queries, dim, metric, params.k));
        }
        for e in &self.sealed {
            if e.live_count > 0 {
                per_segment.push(e.segment.search(
                    queries,
                    metric,
                    params,
                    &e.live,
                    e.live_count,
                )?);
            }
        }
        match per_segment.len() {
            0 => return Ok(vec![Vec::new(); nq]),
            1 => return Ok(per_segment.pop().unwrap_or_default()),
            _ => {}
        }
        Ok((0..nq)
            .map(|q| {
                merge_hits(
                    per_segment.iter_mut().map(|s| std::mem::take(&mut s[q])),
                    params.k,
                    metric,
                )
            })
            .collect())
    }

    /// Describes the growing and sealed segments.
    pub fn segment_infos(&self, shard: usize) -> Vec<SegmentInfo> {
        let mut out = vec![SegmentInfo {
            id: None,
            shard,
            state: "growing",
            rows: self.growing.rows(),
            live_rows: self.growing.live_count,
            index: SegmentIndexInfo {
                state: "exact",
                index_type: None,
                progress: None,
                note: Some("growing segments are searched exactly".into()),
            },
            memory_bytes: self.growing.memory_bytes() as u64,
            mapped_bytes: 0,
            gpu_bytes: 0,
            gpu_note: None,
        }];
        out.extend(self.sealed.iter().map(|e| e.segment.info(e.live_count)));
        out
    }

    /// Bytes the shard holds in RAM (growing rows, id map, bitmaps, indexes).
    pub fn memory_bytes(&self) -> u64 {
        let map = self.locations.capacity() as u64 * 24;
        self.growing.memory_bytes() as u64
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
    fn upsert_replaces_and_delete_hides() {
        let mut s = ShardState::default();
        s.upsert(1, &[0.0, 0.0]);
        s.upsert(2, &[1.0, 1.0]);
        s.upsert(1, &[5.0, 5.0]);
        assert_eq!(s.count(), 2);
        assert_eq!(s.get(1, 2).unwrap(), vec![5.0, 5.0]);
        let hits = s
            .search(&[0.0, 0.0], 2, Metric::L2, &SearchParams::new(10))
            .unwrap();
        assert_eq!(hits[0].iter().map(|h| h.id).collect::<Vec<_>>(), vec![2, 1]);
        assert!(s.delete(2));
        assert!(!s.delete(2));
        let hits = s
            .search(&[0.0, 0.0], 2, Metric::L2, &SearchParams::new(10))
            .unwrap();
        assert_eq!(hits[0].iter().map(|h| h.id).collect::<Vec<_>>(), vec![1]);
        assert_eq!(s.count(), 1);
    }
}
