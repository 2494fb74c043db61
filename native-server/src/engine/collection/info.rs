//! What a collection reports about itself: index progress, and `describe`/`snapshot`
//! (counts, sequences, segments, memory).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use proxima_core::advisor::auto_pick;
use proxima_core::sizing;

use super::indexing::served;
use super::Collection;
use crate::engine::types::{BuildState, CollectionInfo, IndexStatus, MemoryInfo};

impl Collection {
    /// Index status over the sealed segments.
    pub fn index_status(&self) -> IndexStatus {
        let (spec, generation) = self.current_index();
        let auto = spec.auto_target().and_then(|target| {
            let dim = self.schema.read().dim;
            auto_pick(self.applied_count(), dim, target, served).ok()
        });
        let mut total = 0u64;
        let mut indexed = 0u64;
        let mut building = false;
        for shard in &self.shards {
            for e in &shard.read().sealed {
                let rows = e.segment.rows() as u64;
                total += rows;
                let slot = e.segment.slot.read();
                if let Some(b) = &slot.building {
                    building = true;
                    indexed += b.done.load(Ordering::Relaxed) as u64;
                } else if slot
                    .ready
                    .as_ref()
                    .is_some_and(|r| r.generation == generation)
                    || slot.note.is_some()
                {
                    indexed += rows;
                } else {
                    building = true;
                }
            }
        }
        let refine_factor = spec
            .kind
            .param_names()
            .contains(&"refine_factor")
            .then(|| spec.refine_factor());
        IndexStatus {
            spec,
            auto,
            refine_factor,
            generation,
            state: if building {
                BuildState::Building
            } else {
                BuildState::Ready
            },
            rows_indexed: indexed,
            rows_total: total,
            progress: if total == 0 {
                1.0
            } else {
                indexed as f64 / total as f64
            },
        }
    }

    /// Everything about the collection, its count exact (after waiting for the applier to
    /// apply every acknowledged write).
    pub fn describe(&self) -> CollectionInfo {
        self.describe_with_count(self.count())
    }

    /// [`describe`](Self::describe) without waiting: the count is that of the writes applied so
    /// far (`committed_seq - applied_seq` says how many operations are still to apply). For
    /// monitoring, which must answer even while the applier is busy or paused.
    pub fn snapshot(&self) -> CollectionInfo {
        self.describe_with_count(self.applied_count())
    }

    fn describe_with_count(&self, count: u64) -> CollectionInfo {
        let schema = self.schema();
        let mut segments = Vec::new();
        let mut actual = 0;
        for (s, shard) in self.shards.iter().enumerate() {
            let shard = shard.read();
            segments.extend(shard.segment_infos(s));
            actual += shard.memory_bytes();
        }
        let mapped = segments.iter().map(|s| s.mapped_bytes).sum();
        let gpu_bytes = segments.iter().map(|s| s.gpu_bytes).sum();
        let checkpoint_seq = self.meta.lock().checkpoint_seq;
        let index = self.index_status();
        // The plan of one index over the whole collection, as its request resolves for it.
        let n = count.max(1);
        let estimated = schema
            .index
            .choose(schema.dim, n, n, served)
            .ok()
            .and_then(|c| sizing::plan(n, schema.dim, c.spec).ok())
            .map_or(0, |p| p.index_bytes);
        CollectionInfo {
            count,
            committed_seq: self.committed_seq(),
            applied_seq: self.applied_seq(),
            checkpoint_seq,
            index,
            segments,
            memory: MemoryInfo {
                actual_bytes: actual,
                mapped_bytes: mapped,
                estimated_bytes: estimated,
                gpu_bytes,
                raw_bytes: count * schema.dim as u64 * 4,
            },
            wal_bytes: self.wal.size_bytes(),
            merges: self.merge_stats(),
            schema,
        }
    }

    /// Waits (up to `timeout`) until no index build is pending for the current generation.
    pub fn wait_index_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.index_status().state == BuildState::Ready {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}
