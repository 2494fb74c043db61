//! Checkpoints: freeze every shard's growing segment (on the applier), then, on a seal
//! thread, write them as sealed segment files, write live bitmaps and the manifest, and
//! truncate the write-ahead log. (Sealed segments are rewritten — merged, vacuumed,
//! compacted — by the optimizer: `merge`.)

use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proxima_core::consistency::Seq;

use super::applier::ApplierMsg;
use super::recovery::segment_dir;
use super::{Collection, Meta};
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::manifest::{IndexEntry, Manifest, SegmentEntry};
use crate::engine::segment::SealedSegment;

/// How long automatic checkpoints wait after a failed one (a full disk) before trying again.
const CHECKPOINT_RETRY: Duration = Duration::from_secs(5);

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

    /// Starts a checkpoint (applier thread): freezes every shard's growing segment (a new one
    /// takes writes at once) and writes them as sealed segments on a seal thread, which then
    /// writes live bitmaps and the manifest and truncates the WAL; `reply` gets its result
    /// once durable. The applier goes on applying writes meanwhile, so Strong reads and
    /// deletes do not wait for segment files to be written. At most one seal runs: a running
    /// one is waited for first.
    pub(super) fn checkpoint(&self, reply: Option<Sender<EngineResult<()>>>) {
        self.join_seal();
        let seq = {
            let mut meta = self.meta.lock();
            let seq = *self.applied.lock();
            for shard in &self.shards {
                let mut shard = shard.write();
                // A shard whose last seal failed keeps its frozen segment: written again now.
                if shard.frozen.is_none() && shard.freeze(meta.next_segment_id) {
                    meta.next_segment_id += 1;
                }
            }
            seq
        };
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let started = std::thread::Builder::new()
            .name(format!("seal-{}", self.name()))
            .spawn(move || {
                let result = me.seal(seq);
                if let Err(e) = &result {
                    tracing::error!(collection = %me.name(), error = %e, "checkpoint failed; retrying in {} s", CHECKPOINT_RETRY.as_secs());
                    *me.seal_retry_at.lock() = Some(Instant::now() + CHECKPOINT_RETRY);
                } else {
                    *me.seal_retry_at.lock() = None;
                }
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            });
        match started {
            Ok(handle) => *self.sealing.lock() = Some(handle),
            Err(e) => {
                tracing::error!(collection = %self.name(), error = %e, "could not start a seal thread")
            }
        }
    }

    /// Whether an automatic checkpoint may start now: no seal running, and none failed in
    /// the last few seconds.
    pub(super) fn may_checkpoint(&self) -> bool {
        let running = self
            .sealing
            .lock()
            .as_ref()
            .is_some_and(|h| !h.is_finished());
        !running
            && self
                .seal_retry_at
                .lock()
                .is_none_or(|t| Instant::now() >= t)
    }

    /// Whether the last seal failed and its retry delay has not passed.
    pub(super) fn seal_failed(&self) -> bool {
        self.seal_retry_at
            .lock()
            .is_some_and(|t| Instant::now() < t)
    }

    /// Waits for the running seal, if any.
    pub(super) fn join_seal(&self) {
        let handle = self.sealing.lock().take();
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    /// The durable part of a checkpoint of the writes through `seq` (seal thread): writes the
    /// frozen segments (no lock held), swaps them in, writes live bitmaps and the manifest,
    /// then truncates the WAL. On a failure part-way (a full disk), the segments already made
    /// are in service and get their indexes, the others stay frozen for the next checkpoint;
    /// the manifest's checkpoint and the WAL stay as they were, so a restart replays the
    /// writes again (rows live twice are resolved on open).
    fn seal(&self, seq: Seq) -> EngineResult<()> {
        let dim = self.schema.read().dim;
        type Rows = (usize, u64, Arc<Vec<u64>>, Arc<Vec<f32>>);
        let frozen: Vec<Rows> = self
            .shards
            .iter()
            .enumerate()
            .filter_map(|(s, shard)| {
                let shard = shard.read();
                let f = shard.frozen.as_ref()?;
                Some((s, f.id, f.ids.clone(), f.vectors.clone()))
            })
            .collect();
        let mut made = Vec::new();
        let mut written = Ok(());
        for (s, id, ids, vectors) in frozen {
            match SealedSegment::create(&segment_dir(&self.dir, id), id, s, dim, &ids, &vectors) {
                Ok(segment) => made.push((s, Arc::new(segment))),
                Err(e) => {
                    written = Err(e);
                    break;
                }
            }
        }
        let mut meta = self.meta.lock();
        let recorded = written.and_then(|()| {
            for (s, segment) in &made {
                self.shards[*s].write().install_sealed(segment.clone());
            }
            // Deletions in sealed segments (the new ones too) on disk before the manifest.
            for shard in &self.shards {
                let mut shard = shard.write();
                for e in shard.sealed.iter_mut().filter(|e| e.dirty) {
                    e.segment.write_live(&e.live)?;
                    e.dirty = false;
                }
            }
            meta.checkpoint_seq = seq;
            self.write_manifest(&meta)
        });
        if recorded.is_err() {
            // Made but not swapped in (a later one failed): in service now all the same.
            for (s, segment) in &made {
                let mut shard = self.shards[*s].write();
                if shard.frozen.as_ref().is_some_and(|f| f.id == segment.id) {
                    shard.install_sealed(segment.clone());
                }
            }
        }
        drop(meta);
        // The new segments are in service whatever failed after they were made: they get
        // their indexes.
        for (_, segment) in made {
            self.queue_build(segment);
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
