//! Background index builds: a small pool of threads that train and fill FAISS indexes for
//! sealed segments, report progress, write the index file and swap it in atomically.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use proxima_core::{IndexSpec, VectorIndex};

use super::collection::Collection;
use super::error::EngineResult;
use super::segment::{sync_dir, BuildProgress, ReadyIndex, SealedSegment};
use crate::index::faiss_backend::FaissIndex;

/// Rows added per FAISS call (progress granularity).
const ADD_CHUNK: usize = 8192;
/// Training sample per IVF list (FAISS subsamples above 256 anyway).
const TRAIN_PER_LIST: usize = 64;

/// One segment to index.
pub struct BuildJob {
    pub collection: Weak<Collection>,
    pub segment: Arc<SealedSegment>,
    pub spec: IndexSpec,
    pub generation: u64,
}

/// Work for the build threads.
enum Job {
    Build(BuildJob),
    /// Copy a sealed segment to the GPU: after a restart (so that opening does not wait for
    /// the copies), and again after a copy did not fit.
    Offload {
        collection: Weak<Collection>,
        segment: Arc<SealedSegment>,
    },
}

/// The build pool.
pub struct IndexBuilder {
    tx: Mutex<Option<Sender<Job>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl IndexBuilder {
    /// Starts `threads` build threads.
    pub fn new(threads: usize) -> Arc<Self> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let handles = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("index-build-{i}"))
                    .spawn(move || worker(rx))
                    .expect("spawn index build thread")
            })
            .collect();
        Arc::new(Self {
            tx: Mutex::new(Some(tx)),
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
                generation: job.generation,
                done: AtomicUsize::new(0),
                total: job.segment.rows(),
            }));
        }
        if let Some(tx) = &*self.tx.lock() {
            let _ = tx.send(Job::Build(job));
        }
    }

    /// Queues a copy of `segment` to the collection's GPU.
    pub fn submit_offload(&self, collection: Weak<Collection>, segment: Arc<SealedSegment>) {
        if let Some(tx) = &*self.tx.lock() {
            let _ = tx.send(Job::Offload {
                collection,
                segment,
            });
        }
    }

    /// Stops the threads after the queued jobs.
    pub fn shutdown(&self) {
        self.tx.lock().take();
        for h in self.threads.lock().drain(..) {
            let _ = h.join();
        }
    }
}

fn worker(rx: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let job = match rx.lock().recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let job = match job {
            Job::Build(job) => job,
            Job::Offload {
                collection,
                segment,
            } => {
                if let Some(collection) = collection.upgrade() {
                    collection.offload(&segment);
                }
                continue;
            }
        };
        let Some(collection) = job.collection.upgrade() else {
            continue;
        };
        let segment_id = job.segment.id;
        if let Err(e) = build(&collection, &job) {
            tracing::error!(segment = segment_id, error = %e, "index build failed; the segment stays exact");
            end_build(
                &job.segment,
                job.generation,
                Some(format!("index build failed: {e}")),
            );
            // The segment keeps serving what it served (or its rows): that can go on the GPU.
            collection.offload(&job.segment);
        }
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

fn build(collection: &Collection, job: &BuildJob) -> EngineResult<()> {
    let segment = &job.segment;
    let progress = segment.slot.read().building.clone();
    let stale = progress
        .as_ref()
        .is_none_or(|p| p.generation != job.generation);
    if stale || !collection.build_is_current(segment.id, job.generation) {
        return Ok(());
    }
    let finish = |note: Option<String>| end_build(segment, job.generation, note);
    let (dim, metric) = collection.dim_metric();
    let rows = segment.rows();
    if matches!(job.spec, IndexSpec::Flat) {
        // Exact search over the mapped rows is what FLAT means; no second copy is built.
        let retired = segment.slot.write().serve(None);
        drop(retired);
        finish(Some("FLAT: exact search over the segment's rows".into()));
        let persisted = collection.persist_indexes();
        collection.offload(segment);
        return persisted;
    }
    let needed = job.spec.min_training_vectors();
    if rows < needed {
        finish(Some(format!(
            "exact: {} needs {needed} training vectors, this segment has {rows}",
            job.spec
        )));
        let persisted = collection.persist_indexes();
        collection.offload(segment);
        return persisted;
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
        if !collection.build_is_current(segment.id, job.generation) {
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
    index.save(&tmp)?;
    std::fs::rename(&tmp, segment.dir.join(&file)).map_err(super::error::EngineError::io(
        format!("rename {}", tmp.display()),
    ))?;
    sync_dir(&segment.dir)?;
    if !collection.build_is_current(segment.id, job.generation) {
        let _ = std::fs::remove_file(segment.dir.join(&file));
        finish(None);
        return Ok(());
    }
    let old = {
        let mut slot = segment.slot.write();
        let old = slot.serve(Some(ReadyIndex {
            spec: job.spec,
            generation: job.generation,
            file,
            index: Arc::new(index),
        }));
        slot.note = None;
        old
    };
    end_build(segment, job.generation, None);
    let persisted = collection.persist_indexes();
    if let (Ok(()), Some(old)) = (&persisted, &old.ready) {
        let _ = std::fs::remove_file(segment.dir.join(&old.file));
    }
    // The old index and its GPU copy go only now, outside the slot lock (freeing a GPU copy
    // waits for the device).
    drop(old);
    collection.offload(segment);
    persisted?;
    tracing::info!(segment = segment.id, spec = %job.spec, rows, "index ready");
    Ok(())
}
