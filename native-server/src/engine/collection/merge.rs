//! The optimizer: one thread per collection that rewrites sealed segments in the background —
//! small segments of one size tier merged ([`MergePolicy`]), segments with many deleted rows
//! vacuumed, and every deleted row on an explicit `compact` — while writes are applied and
//! searches run.
//!
//! A merge takes the id of its new segment first (so every segment sealed after it holds
//! newer rows: on open, the higher segment id wins an id live twice), copies the victims' live
//! rows without holding any lock, writes the new segment, then swaps it in under the shard's
//! lock: a row whose id moved meanwhile (deleted, or upserted into the growing segment) is
//! dead in the new segment. Its `live.bin` is written before any manifest names it, and the
//! victims' directories are removed only once a manifest without them is durable. Writes
//! replayed from the WAL on open act by id, so they land on the new segment as well as on
//! the old ones.

use std::fs;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use proxima_core::Bitmap;

use super::recovery::segment_dir;
use super::Collection;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::fs::sync_dir;
use crate::engine::merge_policy::{MergePlan, MergePolicy, SegmentStats};
use crate::engine::segment::SealedSegment;
use crate::engine::shard::{Location, SealedEntry};
use crate::engine::types::MergeStats;

/// How long the optimizer waits after a failed merge before trying again.
const MERGE_RETRY: Duration = Duration::from_secs(5);

/// What the optimizer is asked to do.
#[derive(Default)]
struct Requests {
    /// Look for merges (after a checkpoint or deletes).
    wake: bool,
    /// Callers of `compact` waiting for every deleted row to be gone.
    compact: Vec<Sender<EngineResult<()>>>,
    stop: bool,
    /// A merge or a plan is in progress (for `wait_merges`).
    busy: bool,
}

/// The optimizer's mailbox, counters and thread.
#[derive(Default)]
pub(super) struct Optimizer {
    requests: Mutex<Requests>,
    cv: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
    stats: Mutex<MergeStats>,
}

impl Optimizer {
    /// Asks for a look at the segments (cheap; requests coalesce).
    pub(super) fn wake(&self) {
        let mut r = self.requests.lock();
        if !r.wake {
            r.wake = true;
            self.cv.notify_all();
        }
    }

    pub(super) fn stats(&self) -> MergeStats {
        *self.stats.lock()
    }
}

impl Collection {
    fn merge_policy(&self) -> MergePolicy {
        let mut policy = MergePolicy::new(
            self.config.seal_rows,
            self.config.auto_compact_deleted_ratio,
        );
        policy.factor = self.config.merge_factor;
        policy
    }

    pub(super) fn start_optimizer(self: &Arc<Self>) {
        let me = self.me.clone();
        let handle = std::thread::Builder::new()
            .name(format!("merge-{}", self.name()))
            .spawn(move || {
                let mut retry_at: Option<Instant> = None;
                loop {
                    let Some(c) = me.upgrade() else { return };
                    let (compact, stop) = {
                        let mut r = c.optimizer.requests.lock();
                        while !r.wake && r.compact.is_empty() && !r.stop {
                            let timeout = retry_at.map(|t| t.saturating_duration_since(Instant::now()));
                            match timeout {
                                Some(t) => {
                                    if c.optimizer.cv.wait_for(&mut r, t).timed_out() {
                                        r.wake = true;
                                    }
                                }
                                None => c.optimizer.cv.wait(&mut r),
                            }
                        }
                        r.wake = false;
                        r.busy = true;
                        (std::mem::take(&mut r.compact), r.stop)
                    };
                    if stop {
                        for reply in compact {
                            let _ = reply.send(Err(EngineError::Closed));
                        }
                        c.optimizer.requests.lock().busy = false;
                        c.optimizer.cv.notify_all();
                        return;
                    }
                    let merged = if retry_at.is_some_and(|t| Instant::now() < t) && compact.is_empty() {
                        Ok(())
                    } else {
                        c.run_merges(false)
                    };
                    retry_at = match &merged {
                        Ok(()) => None,
                        Err(EngineError::Closed) => None,
                        Err(e) => {
                            c.optimizer.stats.lock().failures += 1;
                            tracing::error!(collection = %c.name(), error = %e, "segment merge failed; retrying in {} s", MERGE_RETRY.as_secs());
                            Some(Instant::now() + MERGE_RETRY)
                        }
                    };
                    if !compact.is_empty() {
                        let result = merged.and_then(|()| c.run_merges(true));
                        // One waiter gets the error itself, the others its message.
                        let message = result.as_ref().err().map(|e| e.to_string());
                        let mut result = Some(result);
                        for reply in compact {
                            let r = result.take().unwrap_or_else(|| match &message {
                                None => Ok(()),
                                Some(m) => Err(EngineError::Io {
                                    context: "compact".into(),
                                    source: std::io::Error::other(m.clone()),
                                }),
                            });
                            let _ = reply.send(r);
                        }
                    }
                    c.optimizer.requests.lock().busy = false;
                    c.optimizer.cv.notify_all();
                }
            })
            .expect("spawn optimizer thread");
        *self.optimizer.thread.lock() = Some(handle);
    }

    /// Stops the optimizer (a merge in progress is abandoned before its swap).
    pub(super) fn stop_optimizer(&self) {
        {
            let mut r = self.optimizer.requests.lock();
            r.stop = true;
            self.optimizer.cv.notify_all();
        }
        if let Some(h) = self.optimizer.thread.lock().take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    /// Rewrites every sealed segment with deleted rows without them (after the applier's
    /// checkpoint of `compact`). Returns once done.
    pub(super) fn compact_segments(&self) -> EngineResult<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let mut r = self.optimizer.requests.lock();
            if r.stop {
                return Err(EngineError::Closed);
            }
            r.compact.push(tx);
            self.optimizer.cv.notify_all();
        }
        rx.recv().map_err(|_| EngineError::Closed)?
    }

    /// Waits until the optimizer has nothing left to do (or `timeout` passes); returns
    /// whether it settled. For tests and benchmarks.
    pub fn wait_merges(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.optimizer.wake();
        let mut r = self.optimizer.requests.lock();
        while r.busy || r.wake || !r.compact.is_empty() {
            if r.stop {
                return true;
            }
            if self.optimizer.cv.wait_until(&mut r, deadline).timed_out() {
                return false;
            }
        }
        true
    }

    /// Merges done since the collection was opened.
    pub fn merge_stats(&self) -> MergeStats {
        self.optimizer.stats()
    }

    /// Runs the policy's plans, shard by shard, until none is left (`compact`: every segment
    /// with a deleted row).
    fn run_merges(&self, compact: bool) -> EngineResult<()> {
        let policy = self.merge_policy();
        if compact {
            // The segments there now: deletes arriving meanwhile wait for the next compact
            // (chasing them would never end under a steady stream of deletes).
            return self.run_plans(true, |stats| policy.compact(stats));
        }
        if policy.factor < 2 {
            // Merging is off; vacuuming still runs.
            return self.run_plans(false, |stats| policy.vacuum_only(stats));
        }
        self.run_plans(false, |stats| policy.plan(stats))
    }

    /// Runs `plan` on each shard's sealed segments until it has nothing left to do (with
    /// `present_only`, on the segments the shard had when this started).
    fn run_plans(
        &self,
        present_only: bool,
        plan: impl Fn(&[SegmentStats]) -> Option<MergePlan>,
    ) -> EngineResult<()> {
        for s in 0..self.shards.len() {
            let present: Vec<u64> = self.shards[s]
                .read()
                .sealed
                .iter()
                .map(|e| e.segment.id)
                .collect();
            loop {
                if self.closed.load(Ordering::SeqCst) {
                    return Err(EngineError::Closed);
                }
                let stats: Vec<SegmentStats> = self.shards[s]
                    .read()
                    .sealed
                    .iter()
                    .filter(|e| !present_only || present.contains(&e.segment.id))
                    .map(|e| SegmentStats {
                        id: e.segment.id,
                        rows: e.segment.rows(),
                        live_rows: e.live_count,
                    })
                    .collect();
                let Some(p) = plan(&stats) else { break };
                self.merge(s, &p)?;
            }
        }
        Ok(())
    }

    /// Rewrites the segments of `plan` (all in shard `s`) as one segment of their live rows.
    fn merge(&self, s: usize, plan: &MergePlan) -> EngineResult<()> {
        let started = Instant::now();
        let _files = self.files.read();
        if self.closed.load(Ordering::SeqCst) {
            return Err(EngineError::Closed);
        }
        let dim = self.schema.read().dim;
        // The new segment's id before its rows are read: every segment sealed from now on
        // has a higher id and newer rows.
        let id = {
            let mut meta = self.meta.lock();
            let id = meta.next_segment_id;
            meta.next_segment_id += 1;
            id
        };
        let victims: Vec<(Arc<SealedSegment>, Bitmap)> = {
            let shard = self.shards[s].read();
            plan.segments
                .iter()
                .filter_map(|v| {
                    let e = shard.sealed.iter().find(|e| e.segment.id == *v)?;
                    Some((e.segment.clone(), e.live.clone()))
                })
                .collect()
        };
        if victims.len() != plan.segments.len() {
            return Ok(());
        }
        let mut ids = Vec::new();
        let mut sources = Vec::new();
        let mut vectors = Vec::new();
        for (segment, live) in &victims {
            for row in live.ones() {
                ids.push(segment.ids()[row]);
                sources.push(Location::Sealed {
                    segment: segment.id,
                    row: row as u32,
                });
                vectors.extend_from_slice(segment.vector(row));
            }
            if self.closed.load(Ordering::SeqCst) {
                return Err(EngineError::Closed);
            }
        }
        let merged = if ids.is_empty() {
            None
        } else {
            Some(Arc::new(SealedSegment::create(
                &segment_dir(&self.dir, id),
                id,
                s,
                dim,
                &ids,
                &vectors,
            )?))
        };
        drop(vectors);
        // The swap: a row whose id moved while it was copied is dead in the new segment.
        let meta = self.meta.lock();
        if self.closed.load(Ordering::SeqCst) {
            drop(meta);
            let _ = fs::remove_dir_all(segment_dir(&self.dir, id));
            return Err(EngineError::Closed);
        }
        let (retired, live, dead) = {
            let mut shard = self.shards[s].write();
            let mut live = Bitmap::new(ids.len(), true);
            let mut dead = 0;
            if let Some(m) = &merged {
                for (row, (&vid, source)) in ids.iter().zip(&sources).enumerate() {
                    match shard.locations.get_mut(&vid) {
                        Some(at) if at == source => {
                            *at = Location::Sealed {
                                segment: m.id,
                                row: row as u32,
                            }
                        }
                        _ => {
                            live.set(row, false);
                            dead += 1;
                        }
                    }
                }
            }
            let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut shard.sealed)
                .into_iter()
                .partition(|e| plan.segments.contains(&e.segment.id));
            shard.sealed = kept;
            if let Some(m) = &merged {
                shard.sealed.push(SealedEntry {
                    segment: m.clone(),
                    live: live.clone(),
                    live_count: ids.len() - dead,
                    // Written below, before the manifest names the segment.
                    dirty: false,
                });
            }
            (gone, live, dead)
        };
        let recorded = (|| {
            if let Some(m) = merged.as_ref().filter(|_| dead > 0) {
                m.write_live(&live)?;
            }
            self.write_manifest(&meta)
        })();
        drop(meta);
        if let Err(e) = &recorded {
            // In service anyway; the next manifest write records it. Until then the old
            // manifest names the victims, whose files stay.
            if let Some(m) = &merged {
                let mut shard = self.shards[s].write();
                if let Some(e) = shard.sealed.iter_mut().find(|e| e.segment.id == m.id) {
                    e.dirty = true;
                }
            }
            tracing::warn!(collection = %self.name(), error = %e, "merged segment not yet in the manifest");
        } else {
            for (segment, _) in &victims {
                if let Err(e) = fs::remove_dir_all(&segment.dir) {
                    tracing::warn!(dir = %segment.dir.display(), error = %e, "could not remove a merged segment");
                }
            }
            let _ = sync_dir(&self.dir.join("segments"));
        }
        let rows = ids.len() as u64;
        {
            let mut stats = self.optimizer.stats.lock();
            stats.merges += 1;
            stats.rows_rewritten += rows;
            stats.segments_merged += plan.segments.len() as u64;
        }
        tracing::debug!(
            collection = %self.name(),
            shard = s,
            segments = ?plan.segments,
            reason = ?plan.reason,
            rows,
            ms = started.elapsed().as_millis() as u64,
            "segments merged"
        );
        if let Some(m) = merged {
            self.queue_build(m);
        }
        // Released last: freeing a GPU copy works on the device.
        drop(retired);
        recorded
    }
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
