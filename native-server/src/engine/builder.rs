//! Background index builds: a small pool of threads that train and fill FAISS indexes for
//! sealed segments, report progress, write the index file and swap it in atomically.
//!
//! The builder knows a segment's collection only as a [`BuildTarget`]: the few operations a
//! build and a GPU copy need of it, held weakly (a dropped collection's jobs are skipped).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use proxima_core::{IndexSpec, Metric, VectorIndex};

use super::error::EngineResult;
use super::fs::{rename_durable, sync_file};
use super::segment::{BuildProgress, Offloaded, ReadyIndex, Retired, SealedSegment};
use crate::index::faiss_backend::FaissIndex;
use crate::index::gpu;

/// Rows added per FAISS call (progress granularity).
const ADD_CHUNK: usize = 8192;
/// Training sample per IVF list (FAISS subsamples above 256 anyway).
const TRAIN_PER_LIST: usize = 64;

/// What the build and GPU-copy threads need of the collection a segment belongs to, and all
/// they see of it (the collection implements it).
pub trait BuildTarget: Send + Sync {
    /// Dimension and metric of the rows.
    fn dim_metric(&self) -> (usize, Metric);
    /// Whether `generation` is still the current index generation and `segment` still part
    /// of the target (a build finishing late must not be swapped in).
    fn build_is_current(&self, segment: u64, generation: u64) -> bool;
    /// Runs `f` (which writes or deletes files in the target's directory) unless the target
    /// is closed; answers whether it ran. Closing waits for it, so a dropped collection's
    /// build never writes into a directory of the same name again.
    fn while_open(&self, f: &mut dyn FnMut() -> EngineResult<()>) -> EngineResult<bool>;
    /// Records a finished build in the manifest.
    fn persist_indexes(&self) -> EngineResult<()>;
    /// Queues a copy of `segment` to the GPU, if there is one.
    fn queue_offload(&self, segment: &Arc<SealedSegment>);
    /// Copies `segment` to the GPU now (on the offload thread).
    fn offload(&self, segment: &SealedSegment) -> Offloaded;
}

/// One segment to index.
pub struct BuildJob {
    pub target: Weak<dyn BuildTarget>,
    pub segment: Arc<SealedSegment>,
    /// The index chosen for this segment.
    pub spec: IndexSpec,
    /// Why (defaults, `AUTO`'s pick), shown by `describe` and kept in the manifest.
    pub reason: Option<String>,
    pub generation: u64,
}

/// A sealed segment to copy to the GPU.
struct OffloadJob {
    target: Weak<dyn BuildTarget>,
    segment: Weak<SealedSegment>,
}

/// The build pool, and the thread that copies sealed segments to the GPU (after their build,
/// after a restart, and again once memory is freed after a copy did not fit). Copies have a
/// thread of their own, so builds never queue behind them; the device takes one at a time.
pub struct IndexBuilder {
    tx: Mutex<Option<Sender<BuildJob>>>,
    offload_tx: Mutex<Option<Sender<OffloadJob>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl IndexBuilder {
    /// Starts `threads` build threads, and with `gpu` the thread that copies segments to it.
    pub fn new(threads: usize, gpu: bool) -> Arc<Self> {
        let (tx, rx) = channel::<BuildJob>();
        let rx = Arc::new(Mutex::new(rx));
        let mut handles: Vec<_> = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("index-build-{i}"))
                    .spawn(move || worker(rx))
                    .expect("spawn index build thread")
            })
            .collect();
        let offload_tx = gpu.then(|| {
            let (offload_tx, offload_rx) = channel::<OffloadJob>();
            handles.push(
                std::thread::Builder::new()
                    .name("gpu-offload".into())
                    .spawn(move || offload_worker(offload_rx))
                    .expect("spawn GPU offload thread"),
            );
            offload_tx
        });
        Arc::new(Self {
            tx: Mutex::new(Some(tx)),
            offload_tx: Mutex::new(offload_tx),
            threads: Mutex::new(handles),
        })
    }

    /// Queues a build; the segment shows as building from now on.
    pub fn submit(&self, job: BuildJob) {
        {
            let mut slot = job.segment.slot.write();
            slot.note = None;
            slot.building = Some(Arc::new(BuildProgress {
                spec: job.spec,
                reason: job.reason.clone(),
                generation: job.generation,
                done: AtomicUsize::new(0),
                total: job.segment.rows(),
            }));
        }
        if let Some(tx) = &*self.tx.lock() {
            let _ = tx.send(job);
        }
    }

    /// Queues a copy of `segment` to the GPU, unless one is queued already.
    pub fn submit_offload(&self, target: Weak<dyn BuildTarget>, segment: &Arc<SealedSegment>) {
        if segment.offload_queued.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(tx) = &*self.offload_tx.lock() {
            let _ = tx.send(OffloadJob {
                target,
                segment: Arc::downgrade(segment),
            });
        }
    }

    /// Stops the threads after the queued jobs (copies to the GPU of closed collections are
    /// skipped).
    pub fn shutdown(&self) {
        self.tx.lock().take();
        self.offload_tx.lock().take();
        for h in self.threads.lock().drain(..) {
            let _ = h.join();
        }
    }
}

fn worker(rx: Arc<Mutex<Receiver<BuildJob>>>) {
    loop {
        let job = match rx.lock().recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let Some(target) = job.target.upgrade() else {
            continue;
        };
        let segment_id = job.segment.id;
        if let Err(e) = build(&*target, &job) {
            if !target.build_is_current(segment_id, job.generation) {
                // Compacted away (its directory with it), dropped, or superseded meanwhile:
                // the failure concerns nothing that is served.
                tracing::debug!(segment = segment_id, error = %e, "stale index build stopped");
                end_build(&job.segment, job.generation, None);
                continue;
            }
            tracing::error!(segment = segment_id, error = %e, "index build failed; the segment keeps serving what it served");
            end_build(
                &job.segment,
                job.generation,
                Some(format!("index build failed: {e}")),
            );
            // The segment keeps serving what it served (or its rows): that can go on the GPU.
            target.queue_offload(&job.segment);
        }
    }
}

/// Copies segments to the GPU one at a time. Copies refused for lack of room are kept and
/// tried again after the next GPU index is freed.
fn offload_worker(rx: Receiver<OffloadJob>) {
    let mut no_room: Vec<OffloadJob> = Vec::new();
    let mut frees_seen = gpu::STATS.frees();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(job) => {
                if let Some(segment) = job.segment.upgrade() {
                    segment.offload_queued.store(false, Ordering::SeqCst);
                }
                offload(job, &mut no_room);
            }
            Err(RecvTimeoutError::Timeout) => {
                let frees = gpu::STATS.frees();
                if frees != frees_seen {
                    frees_seen = frees;
                    for job in std::mem::take(&mut no_room) {
                        offload(job, &mut no_room);
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn offload(job: OffloadJob, no_room: &mut Vec<OffloadJob>) {
    let (Some(target), Some(segment)) = (job.target.upgrade(), job.segment.upgrade()) else {
        return;
    };
    if target.offload(&segment) == Offloaded::NoRoom {
        no_room.push(job);
    }
}

/// Clears the segment's build progress and sets its note, if the progress is still this
/// generation's (a newer request may have replaced it: that one's progress must stay).
fn end_build(segment: &SealedSegment, generation: u64, note: Option<String>) {
    let mut slot = segment.slot.write();
    if slot
        .building
        .as_ref()
        .is_some_and(|b| b.generation == generation)
    {
        slot.building = None;
        slot.note = note;
    }
}

/// Puts the result of the build of `generation` in service and ends the build, unless a
/// newer build was requested meanwhile (checked under the slot lock, so an older build that
/// finishes late never replaces a newer one's result). Returns what it replaced, or `None`
/// when the result is stale.
fn serve_if_current(
    segment: &SealedSegment,
    generation: u64,
    ready: Option<ReadyIndex>,
    note: Option<String>,
) -> Option<Retired> {
    let mut slot = segment.slot.write();
    let building = slot.building.take_if(|b| b.generation == generation)?;
    let retired = slot.serve(ready);
    slot.reason = building.reason.clone();
    slot.note = note;
    Some(retired)
}

fn build(target: &dyn BuildTarget, job: &BuildJob) -> EngineResult<()> {
    let segment = &job.segment;
    let progress = segment.slot.read().building.clone();
    let stale = progress
        .as_ref()
        .is_none_or(|p| p.generation != job.generation);
    if stale || !target.build_is_current(segment.id, job.generation) {
        return Ok(());
    }
    let finish = |note: Option<String>| end_build(segment, job.generation, note);
    let (dim, metric) = target.dim_metric();
    let rows = segment.rows();
    if matches!(job.spec, IndexSpec::Flat) {
        // Exact search over the mapped rows is what FLAT means; no second copy is built.
        let note = Some("FLAT: exact search over the segment's rows".into());
        return put_in_service(target, segment, job.generation, None, note);
    }
    let needed = job.spec.min_training_vectors();
    if rows < needed {
        // Searched exactly, not by an index of an earlier spec.
        let note = Some(format!(
            "exact: {} needs {needed} training vectors, this segment has {rows}",
            job.spec
        ));
        return put_in_service(target, segment, job.generation, None, note);
    }
    let mut index = FaissIndex::new(dim, metric, job.spec)?;
    let vectors = segment.vectors();
    if job.spec.needs_training() {
        let sample_rows = match job.spec.nlist() {
            Some(nlist) => rows.min((nlist * TRAIN_PER_LIST).max(needed)),
            None => rows.min(256 * TRAIN_PER_LIST),
        };
        let step = rows / sample_rows.max(1);
        let sample: Vec<f32> = if step <= 1 {
            vectors.to_vec()
        } else {
            (0..sample_rows)
                .flat_map(|i| segment.vector(i * step).iter().copied())
                .collect()
        };
        index.train(&sample)?;
    }
    let mut start = 0;
    while start < rows {
        if !target.build_is_current(segment.id, job.generation) {
            finish(None);
            return Ok(());
        }
        let end = (start + ADD_CHUNK).min(rows);
        let labels: Vec<u64> = (start as u64..end as u64).collect();
        index.add(&labels, &vectors[start * dim..end * dim])?;
        if let Some(p) = &progress {
            p.done.store(end, Ordering::Relaxed);
        }
        start = end;
    }
    let file = format!("index-{}.faiss", job.generation);
    let tmp = segment.dir.join(format!("{file}.tmp"));
    let saved = target.while_open(&mut || {
        index.save(&tmp)?;
        // FAISS writes through stdio without an fsync: make the file durable before the
        // rename (and the manifest) can point at it.
        sync_file(&tmp)?;
        rename_durable(&tmp, &segment.dir.join(&file))
    })?;
    if !saved {
        // Closed (dropped) meanwhile: the directory is not this collection's any more.
        finish(None);
        return Ok(());
    }
    if !target.build_is_current(segment.id, job.generation) {
        remove_while_open(target, &segment.dir.join(&file));
        finish(None);
        return Ok(());
    }
    let ready = ReadyIndex {
        spec: job.spec,
        generation: job.generation,
        file,
        index: Arc::new(index),
    };
    put_in_service(target, segment, job.generation, Some(ready), None)?;
    tracing::info!(segment = segment.id, spec = %job.spec, rows, "index ready");
    Ok(())
}

/// Serves a finished build's result (an index, or exact search), records it in the manifest,
/// then deletes the replaced index file and queues the GPU copy. A stale result (a newer build
/// was requested meanwhile) is discarded with its file.
fn put_in_service(
    target: &dyn BuildTarget,
    segment: &Arc<SealedSegment>,
    generation: u64,
    ready: Option<ReadyIndex>,
    note: Option<String>,
) -> EngineResult<()> {
    let file = ready.as_ref().map(|r| r.file.clone());
    let Some(old) = serve_if_current(segment, generation, ready, note) else {
        if let Some(file) = file {
            remove_while_open(target, &segment.dir.join(file));
        }
        return Ok(());
    };
    let persisted = target.persist_indexes();
    if let (Ok(()), Some(old)) = (&persisted, &old.ready) {
        remove_while_open(target, &segment.dir.join(&old.file));
    }
    // The old index and its GPU copy go only now, outside the slot lock (freeing a GPU copy
    // works on the device).
    drop(old);
    target.queue_offload(segment);
    persisted
}

/// Deletes a file of the target's, unless the target is closed (best effort).
fn remove_while_open(target: &dyn BuildTarget, path: &Path) {
    let _ = target.while_open(&mut || {
        let _ = std::fs::remove_file(path);
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target that is always open and current, counting what the builder asks of it.
    #[derive(Default)]
    struct Counting {
        persisted: AtomicUsize,
        offloads: AtomicUsize,
    }

    impl BuildTarget for Counting {
        fn dim_metric(&self) -> (usize, Metric) {
            (2, Metric::L2)
        }
        fn build_is_current(&self, _: u64, _: u64) -> bool {
            true
        }
        fn while_open(&self, f: &mut dyn FnMut() -> EngineResult<()>) -> EngineResult<bool> {
            f().map(|()| true)
        }
        fn persist_indexes(&self) -> EngineResult<()> {
            self.persisted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn queue_offload(&self, _: &Arc<SealedSegment>) {
            self.offloads.fetch_add(1, Ordering::SeqCst);
        }
        fn offload(&self, _: &SealedSegment) -> Offloaded {
            Offloaded::Skipped
        }
    }

    #[test]
    fn a_build_needs_only_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let segment = Arc::new(
            SealedSegment::create(&dir.path().join("1"), 1, 0, 2, &[7], &[1.0, 2.0]).unwrap(),
        );
        let target = Arc::new(Counting::default());
        let weak: Weak<dyn BuildTarget> = Arc::downgrade(&target) as _;
        let builder = IndexBuilder::new(1, false);
        builder.submit(BuildJob {
            target: weak,
            segment: segment.clone(),
            spec: IndexSpec::Flat,
            reason: None,
            generation: 1,
        });
        builder.shutdown();
        let slot = segment.slot.read();
        assert!(slot.building.is_none());
        assert!(slot.note.as_deref().is_some_and(|n| n.starts_with("FLAT")));
        assert_eq!(target.persisted.load(Ordering::SeqCst), 1);
        assert_eq!(target.offloads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_build_that_finishes_after_a_newer_request_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let segment =
            SealedSegment::create(&dir.path().join("1"), 1, 0, 2, &[7], &[1.0, 2.0]).unwrap();
        // Generation 3 was requested while generation 2 was building.
        segment.slot.write().building = Some(Arc::new(BuildProgress {
            spec: IndexSpec::Flat,
            reason: None,
            generation: 3,
            done: Default::default(),
            total: 1,
        }));
        assert!(serve_if_current(&segment, 2, None, Some("stale".into())).is_none());
        {
            let slot = segment.slot.read();
            assert_eq!(slot.building.as_ref().map(|b| b.generation), Some(3));
            assert_eq!(slot.note, None);
        }
        assert!(serve_if_current(&segment, 3, None, Some("current".into())).is_some());
        let slot = segment.slot.read();
        assert!(slot.building.is_none());
        assert_eq!(slot.note.as_deref(), Some("current"));
    }
}
