//! Checkpoints: seal every shard's growing segment into a segment file, write live bitmaps
//! and the manifest, then truncate the write-ahead log. Run by the applier. (Sealed segments
//! are rewritten — merged, vacuumed, compacted — by the optimizer: `merge`.)

use std::sync::atomic::Ordering;
use std::sync::mpsc::channel;
use std::sync::Arc;

use proxima_core::Bitmap;

use super::applier::ApplierMsg;
use super::recovery::segment_dir;
use super::{Collection, Meta};
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::manifest::{IndexEntry, Manifest, SegmentEntry};
use crate::engine::segment::SealedSegment;
use crate::engine::shard::{Location, SealedEntry};

impl Collection {
    /// Seals the growing segments and writes a checkpoint (durable segment files, WAL
    /// truncated). Returns once done.
    pub fn flush(&self) -> EngineResult<()> {
        let (tx, rx) = channel();
        self.send(ApplierMsg::Flush(tx))?;
        rx.recv().map_err(|_| EngineError::Closed)?
    }

    /// Flushes, then rewrites every sealed segment that has deleted rows without them (on
    /// the optimizer thread: writes are applied and searches run meanwhile). Returns once
    /// done.
    pub fn compact(&self) -> EngineResult<()> {
        self.flush()?;
        self.compact_segments()
    }

    pub(super) fn write_manifest(&self, meta: &Meta) -> EngineResult<()> {
        let schema = self.schema.read().clone();
        let mut segments = Vec::new();
        for (s, shard) in self.shards.iter().enumerate() {
            for e in &shard.read().sealed {
                let index = e.segment.ready_index().map(|(r, reason)| IndexEntry {
                    spec: r.spec,
                    generation: r.generation,
                    file: r.file,
                    reason,
                });
                segments.push(SegmentEntry {
                    id: e.segment.id,
                    shard: s,
                    rows: e.segment.rows(),
                    index,
                });
            }
        }
        Manifest {
            version: 1,
            schema,
            checkpoint_seq: meta.checkpoint_seq,
            next_segment_id: meta.next_segment_id,
            next_auto_id: self.next_auto_id.load(Ordering::SeqCst),
            index_generation: meta.index_generation,
            segments,
            handle: self.handle.read().clone(),
        }
        .write(&self.dir)
    }

    /// Seals growing segments, writes live bitmaps and the manifest, then truncates the WAL.
    /// Applier thread only. Sealed segments are rewritten by the optimizer (`merge`), which
    /// this wakes.
    pub(super) fn checkpoint(&self) -> EngineResult<()> {
        let mut meta = self.meta.lock();
        let seq = *self.applied.lock();
        let dim = self.schema.read().dim;
        let mut new_segments = Vec::new();
        // Seals every shard. On a failure part-way (a full disk), the segments already made
        // stay in service and still get their indexes; the manifest and the WAL stay as they
        // were, so a restart replays the writes again (rows live twice are resolved on open).
        let sealed = (|| -> EngineResult<()> {
            for (s, shard_lock) in self.shards.iter().enumerate() {
                // Rows to write: the growing segment's live rows.
                let (ids, vectors) = {
                    let shard = shard_lock.read();
                    let mut ids = Vec::new();
                    let mut vectors = Vec::new();
                    for row in shard.growing.live.ones() {
                        ids.push(shard.growing.ids[row]);
                        vectors
                            .extend_from_slice(&shard.growing.vectors[row * dim..(row + 1) * dim]);
                    }
                    (ids, vectors)
                };
                let segment = if ids.is_empty() {
                    None
                } else {
                    let id = meta.next_segment_id;
                    meta.next_segment_id += 1;
                    Some(Arc::new(SealedSegment::create(
                        &segment_dir(&self.dir, id),
                        id,
                        s,
                        dim,
                        &ids,
                        &vectors,
                    )?))
                };
                let mut shard = shard_lock.write();
                shard.growing = Default::default();
                if let Some(seg) = segment {
                    for (row, &id) in seg.ids().iter().enumerate() {
                        shard.locations.insert(
                            id,
                            Location::Sealed {
                                segment: seg.id,
                                row: row as u32,
                            },
                        );
                    }
                    shard.sealed.push(SealedEntry {
                        live: Bitmap::new(seg.rows(), true),
                        live_count: seg.rows(),
                        segment: seg.clone(),
                        dirty: false,
                    });
                    new_segments.push(seg);
                }
                for e in shard.sealed.iter_mut().filter(|e| e.dirty) {
                    e.segment.write_live(&e.live)?;
                    e.dirty = false;
                }
            }
            Ok(())
        })();
        let recorded = sealed.and_then(|()| {
            meta.checkpoint_seq = seq;
            self.write_manifest(&meta)
        });
        drop(meta);
        // The new segments are in service whatever failed after they were made: they get
        // their indexes.
        for seg in new_segments {
            self.queue_build(seg);
        }
        recorded?;
        // The change log must hold what the WAL is about to lose; if it cannot be made
        // durable, its readers start again from here with a snapshot.
        if let Err(e) = self.changes.sync() {
            tracing::error!(collection = %self.name(), error = %e, "change log fsync failed; the feed restarts at the checkpoint");
            self.changes.reset(seq)?;
        }
        self.wal.truncate_through(seq)?;
        self.optimizer.wake();
        if self.gpu.is_some() {
            // A copy that did not fit before may fit now (compaction, dropped collections).
            for seg in self.sealed_segments() {
                let waiting = {
                    let slot = seg.slot.read();
                    slot.gpu.is_none() && slot.building.is_none()
                };
                if waiting {
                    self.queue_offload(&seg);
                }
            }
        }
        Ok(())
    }
}
