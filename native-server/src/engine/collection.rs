//! A collection: schema, write-ahead log, shards, the applier that moves logged writes into
//! the shards, checkpoints (sealing), compaction, index builds and consistency waits.
//!
//! Life of a write: validate → append to the WAL (sequence numbers, CRC) → fsync (group
//! commit) → acknowledge with the sequence. The record is handed, in sequence order, to the
//! collection's applier thread, which applies it to the shards once it is durable and then
//! advances `applied_seq`. Searches wait until `applied_seq` reaches what their consistency
//! level requires.
//!
//! Checkpoints (also run by the applier, so no write is applied meanwhile) seal every shard's
//! growing segment into a segment file, write the live bitmaps of sealed segments, write the
//! manifest and delete WAL files the checkpoint covers.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use proxima_core::advisor::{auto_pick, AutoPick};
use proxima_core::consistency::Seq;
use proxima_core::exact::merge_hits;
use proxima_core::request::Choice;
use proxima_core::sizing;
use proxima_core::validate::{check_ids, check_nonzero, check_norms, check_vectors};
use proxima_core::{
    Bitmap, ConsistencyLevel, Error as CoreError, Hit, IndexRequest, IndexSpec, IndexType, Metric,
    SearchParams,
};
use rayon::prelude::*;
use serde::Serialize;

mod snapshot;
mod sync;

pub use snapshot::{Snapshot, SnapshotOptions, REFRESH_CHANGES};
pub use sync::{Export, Subset};

use super::builder::{BuildJob, IndexBuilder};
use super::changelog::ChangeLog;
use super::config::EngineConfig;
use super::error::{EngineError, EngineResult};
use super::manifest::{new_handle, IndexEntry, Manifest, SegmentEntry};
use super::schema::CollectionSchema;
use super::search_pool::{Cancel, SearchPool};
use super::segment::{sync_dir, Offloaded, ReadyIndex, SealedSegment, SegmentInfo};
use super::shard::{Location, SealedEntry, ShardState};
use super::wal::{Wal, WalOp, WalRecord};
use crate::index::faiss_backend::FaissIndex;
use crate::index::gpu::GpuDevice;

/// Acknowledgement of an insert/upsert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriteAck {
    pub ids: Vec<u64>,
    /// Sequence number of the write's last row; pass it as `session_seq` to read your writes.
    pub seq: Seq,
}

/// Acknowledgement of a delete.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeleteAck {
    /// How many of the ids existed.
    pub deleted: usize,
    pub seq: Seq,
}

/// A search's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResult {
    pub hits: Vec<Vec<Hit>>,
    /// The applied sequence the search ran at (at least what the consistency level required).
    pub seq: Seq,
}

/// Memory of a collection: measured vs the planner's estimate.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryInfo {
    pub actual_bytes: u64,
    pub mapped_bytes: u64,
    pub estimated_bytes: u64,
    /// Device memory of the segments' GPU copies.
    pub gpu_bytes: u64,
    /// The collection's vectors as `f32` (`count × dim × 4`): what the raw vectors would take
    /// in RAM. `actual_bytes` over this is the RAM the indexes take as a fraction of the raw
    /// vectors (the rows themselves stay in the memory-mapped segment files, `mapped_bytes`).
    pub raw_bytes: u64,
}

/// Progress of the collection's index over all sealed segments.
#[derive(Debug, Clone, Serialize)]
pub struct IndexStatus {
    /// The index as requested, defaults filled in (IVF `nlist`, when not given, is chosen per
    /// segment: each segment's `index.spec` shows its own).
    pub spec: IndexRequest,
    /// `AUTO` only: what the advisor picks for the collection's size now, which is what the
    /// next segment sealed gets (each segment's `index.reason` says what it got, and why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto: Option<AutoPick>,
    /// IVF_SQ8, IVF_PQ, HNSW_SQ8 and AUTO: the re-ranking factor a search of a compressed
    /// segment uses when the query gives none (the request's `refine_factor`, else the
    /// default): `k × refine_factor` candidates re-scored exactly on the rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refine_factor: Option<usize>,
    pub generation: u64,
    /// `ready` when every sealed segment serves the requested index or must stay exact,
    /// `building` while any builds.
    pub state: &'static str,
    pub rows_indexed: u64,
    pub rows_total: u64,
    pub progress: f64,
}

/// What `describe` returns.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionInfo {
    pub schema: CollectionSchema,
    pub count: u64,
    pub committed_seq: Seq,
    pub applied_seq: Seq,
    pub checkpoint_seq: Seq,
    pub index: IndexStatus,
    pub segments: Vec<SegmentInfo>,
    pub memory: MemoryInfo,
    pub wal_bytes: u64,
}

enum ApplierMsg {
    Record(WalRecord),
    Flush(Sender<EngineResult<()>>),
    Compact(Sender<EngineResult<()>>),
    Stop,
}

struct Clock {
    /// Highest sequence acknowledged to a client.
    committed: Seq,
    /// Acknowledgements younger than the bounded staleness window, oldest first.
    recent: VecDeque<(Instant, Seq)>,
    /// Highest sequence acknowledged before the window.
    floor: Seq,
}

impl Clock {
    /// Moves acknowledgements older than `horizon` (now minus the bounded staleness) out of
    /// the window into `floor`.
    fn advance(&mut self, horizon: Option<Instant>) {
        let Some(horizon) = horizon else { return };
        while let Some(&(t, seq)) = self.recent.front() {
            if t > horizon {
                break;
            }
            self.floor = self.floor.max(seq);
            self.recent.pop_front();
        }
    }
}

/// Manifest fields that change outside of shard state.
struct Meta {
    checkpoint_seq: Seq,
    next_segment_id: u64,
    index_generation: u64,
}

/// A collection of vectors.
pub struct Collection {
    schema: RwLock<CollectionSchema>,
    dir: PathBuf,
    config: Arc<EngineConfig>,
    wal: Wal,
    shards: Vec<RwLock<ShardState>>,
    applied: Mutex<Seq>,
    applied_cv: Condvar,
    clock: Mutex<Clock>,
    next_auto_id: AtomicU64,
    meta: Mutex<Meta>,
    tx: Mutex<Option<Sender<ApplierMsg>>>,
    applier: Mutex<Option<JoinHandle<()>>>,
    paused: Mutex<bool>,
    paused_cv: Condvar,
    builder: Arc<IndexBuilder>,
    searcher: Arc<SearchPool>,
    /// The GPU sealed segments are copied to, if the engine has one.
    gpu: Option<Arc<GpuDevice>>,
    closed: AtomicBool,
    /// Every applied write, retained for the sync feed.
    changes: ChangeLog,
    /// The sync handle (see [`Manifest::handle`]).
    handle: RwLock<String>,
    /// Snapshots kept for caches.
    snapshots: snapshot::Snapshots,
    /// Held (shared) by threads other than the applier while they write or delete files in
    /// the collection's directory; `close` takes it exclusively, so that once a collection is
    /// closed (dropped) nothing writes into a directory of the same name again.
    files: RwLock<()>,
    me: Weak<Collection>,
}

/// How long the applier waits after a failed automatic checkpoint before trying again.
const CHECKPOINT_RETRY: Duration = Duration::from_secs(5);

fn segment_dir(dir: &Path, id: u64) -> PathBuf {
    dir.join("segments").join(format!("{id:010}"))
}

/// Removes what an interrupted checkpoint, compaction or build left behind: segment
/// directories the manifest does not name, index files of a segment other than the one it
/// names, and temporary files. The manifest is the truth; these only take disk space.
fn remove_leftovers(dir: &Path, manifest: &Manifest) {
    let named: HashMap<String, Option<&str>> = manifest
        .segments
        .iter()
        .map(|e| {
            let name = segment_dir(dir, e.id)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, e.index.as_ref().map(|i| i.file.as_str()))
        })
        .collect();
    let is_tmp = |p: &Path| p.extension().is_some_and(|x| x == "tmp");
    let list = |d: &Path| -> Vec<PathBuf> {
        fs::read_dir(d)
            .map(|it| it.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    let mut removed = 0usize;
    let mut remove = |p: &Path| {
        let r = if p.is_dir() {
            fs::remove_dir_all(p)
        } else {
            fs::remove_file(p)
        };
        match r {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "could not remove a leftover")
            }
        }
    };
    for p in list(dir).into_iter().filter(|p| is_tmp(p)) {
        remove(&p);
    }
    for seg in list(&dir.join("segments")) {
        let name = seg
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match named.get(&name) {
            None => remove(&seg),
            Some(index) => {
                for f in list(&seg) {
                    let file = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    let stale_index = file.starts_with("index-") && Some(file) != *index;
                    if stale_index || is_tmp(&f) {
                        remove(&f);
                    }
                }
            }
        }
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), removed, "removed files left by an interrupted checkpoint or build");
    }
}

impl Collection {
    /// Creates the on-disk layout of a new collection in `dir` (which must not exist).
    pub(crate) fn create_files(dir: &Path, schema: &CollectionSchema) -> EngineResult<()> {
        fs::create_dir_all(dir.join("segments"))
            .map_err(EngineError::io(format!("create {}", dir.display())))?;
        Manifest::new(schema.clone()).write(dir)
    }

    /// Opens a collection directory: loads sealed segments and their indexes, replays the WAL
    /// past the checkpoint, and starts the applier.
    pub(crate) fn open(
        dir: &Path,
        config: Arc<EngineConfig>,
        builder: Arc<IndexBuilder>,
        searcher: Arc<SearchPool>,
        gpu: Option<Arc<GpuDevice>>,
    ) -> EngineResult<Arc<Self>> {
        let manifest = Manifest::read(dir)?;
        remove_leftovers(dir, &manifest);
        let schema = manifest.schema.clone();
        let dim = schema.dim;
        let mut shards: Vec<ShardState> = (0..schema.num_shards)
            .map(|_| ShardState::default())
            .collect();
        let mut to_build = Vec::new();
        let mut built = Vec::new();
        for entry in &manifest.segments {
            let seg_dir = segment_dir(dir, entry.id);
            let segment = SealedSegment::open(&seg_dir, entry.id, entry.shard, dim)?;
            if segment.rows() != entry.rows || entry.shard >= shards.len() {
                return Err(EngineError::Corrupt {
                    path: seg_dir,
                    reason: "segment does not match the manifest".into(),
                });
            }
            let live = segment.read_live()?;
            let mut loaded = false;
            if let Some(ix) = &entry.index {
                match FaissIndex::load(
                    &seg_dir.join(&ix.file),
                    dim,
                    schema.metric,
                    ix.spec,
                    config.mmap_indexes,
                ) {
                    Ok(index) if proxima_core::VectorIndex::len(&index) == segment.rows() => {
                        // A fresh segment: nothing is retired.
                        let mut slot = segment.slot.write();
                        slot.serve(Some(ReadyIndex {
                            spec: ix.spec,
                            generation: ix.generation,
                            file: ix.file.clone(),
                            index: Arc::new(index),
                        }));
                        slot.reason = ix.reason.clone();
                        drop(slot);
                        loaded = ix.generation == manifest.index_generation;
                    }
                    Ok(_) | Err(_) => {
                        tracing::warn!(segment = entry.id, file = %ix.file, "index file unusable; rebuilding");
                    }
                }
            }
            let segment = Arc::new(segment);
            if loaded {
                built.push(segment.clone());
            } else {
                to_build.push(segment.clone());
            }
            let stale = shards[entry.shard].load_sealed(segment, live);
            if stale > 0 {
                tracing::warn!(
                    collection = %schema.name,
                    segment = entry.id,
                    stale,
                    "ids live in two segments (an interrupted checkpoint): the newer rows are kept"
                );
            }
        }
        let (wal, records) = Wal::open(
            &dir.join("wal"),
            dim,
            config.fsync,
            config.wal_file_bytes,
            manifest.checkpoint_seq,
        )?;
        let mut applied = manifest.checkpoint_seq;
        let mut next_auto_id = manifest.next_auto_id;
        for record in &records {
            if let WalOp::Upsert { ids, .. } = &record.op {
                if let Some(max) = ids.iter().max() {
                    next_auto_id = next_auto_id.max(max.saturating_add(1));
                }
            }
            apply_to(&schema, &mut shards, record);
            applied = record.last_seq();
        }
        if !records.is_empty() {
            tracing::info!(collection = %schema.name, records = records.len(), applied, "replayed write-ahead log");
        }
        let changes = ChangeLog::open(
            &dir.join("changes"),
            dim,
            config.changes,
            manifest.checkpoint_seq,
        )?;
        let continuous = changes.catch_up(&records, applied)?;
        let mut handle = manifest.handle.clone();
        if handle.is_empty() || !continuous {
            handle = new_handle();
            Manifest {
                handle: handle.clone(),
                ..manifest.clone()
            }
            .write(dir)?;
        }
        let collection = Arc::new_cyclic(|me| Collection {
            schema: RwLock::new(schema),
            dir: dir.to_path_buf(),
            config,
            wal,
            shards: shards.into_iter().map(RwLock::new).collect(),
            applied: Mutex::new(applied),
            applied_cv: Condvar::new(),
            clock: Mutex::new(Clock {
                committed: applied,
                recent: VecDeque::new(),
                floor: applied,
            }),
            next_auto_id: AtomicU64::new(next_auto_id),
            meta: Mutex::new(Meta {
                checkpoint_seq: manifest.checkpoint_seq,
                next_segment_id: manifest.next_segment_id,
                index_generation: manifest.index_generation,
            }),
            tx: Mutex::new(None),
            applier: Mutex::new(None),
            paused: Mutex::new(false),
            paused_cv: Condvar::new(),
            builder,
            searcher,
            gpu,
            closed: AtomicBool::new(false),
            changes,
            handle: RwLock::new(handle),
            snapshots: Default::default(),
            files: RwLock::new(()),
            me: me.clone(),
        });
        for segment in &built {
            collection.queue_offload(segment);
        }
        collection.start_applier();
        for segment in to_build {
            collection.queue_build(segment);
        }
        Ok(collection)
    }

    fn start_applier(self: &Arc<Self>) {
        let (tx, rx) = channel::<ApplierMsg>();
        let me = self.clone();
        let handle = std::thread::Builder::new()
            .name(format!("apply-{}", self.name()))
            .spawn(move || {
                // After a failed automatic checkpoint (a full disk), the next waits a while
                // instead of rewriting segments again on every record.
                let mut retry_at: Option<Instant> = None;
                while let Ok(msg) = rx.recv() {
                    match msg {
                        ApplierMsg::Record(record) => {
                            me.wait_unpaused();
                            if !me.wal.wait_durable(record.last_seq()) {
                                tracing::error!(collection = %me.name(), "write-ahead log failed; applier stops");
                                break;
                            }
                            // Into the change log first: a write visible to searches is
                            // also in the feed.
                            if let Err(e) = me.changes.append(&record) {
                                tracing::error!(collection = %me.name(), error = %e, "change log append failed");
                            }
                            me.apply(&record);
                            me.refresh_kept_snapshots();
                            // A checkpoint seals a full growing segment, and compacts sealed
                            // segments past the deleted-rows ratio (also under deletes alone).
                            let ratio = me.config.auto_compact_deleted_ratio;
                            let due = me.shards.iter().any(|s| {
                                let s = s.read();
                                s.growing.rows() >= me.config.seal_rows
                                    || s.sealed.iter().any(|e| e.mostly_deleted(ratio))
                            });
                            if due && retry_at.is_none_or(|t| Instant::now() >= t) {
                                retry_at = match me.checkpoint(false) {
                                    Ok(()) => None,
                                    Err(e) => {
                                        tracing::error!(collection = %me.name(), error = %e, "checkpoint failed; retrying in {} s", CHECKPOINT_RETRY.as_secs());
                                        Some(Instant::now() + CHECKPOINT_RETRY)
                                    }
                                };
                            }
                        }
                        ApplierMsg::Flush(reply) => {
                            me.wait_unpaused();
                            let _ = reply.send(me.checkpoint(false));
                        }
                        ApplierMsg::Compact(reply) => {
                            me.wait_unpaused();
                            let _ = reply.send(me.checkpoint(true));
                        }
                        ApplierMsg::Stop => break,
                    }
                }
            })
            .expect("spawn applier thread");
        *self.tx.lock() = Some(tx);
        *self.applier.lock() = Some(handle);
    }

    /// Stops the applier after it has applied everything queued.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.changes.close();
        // A manifest write or index file write in flight (a build finishing) ends before close
        // returns, and none starts after: a dropped collection's build never writes into a
        // collection created again under the same name.
        drop(self.meta.lock());
        drop(self.files.write());
        self.set_apply_paused(false);
        if let Some(tx) = self.tx.lock().take() {
            let _ = tx.send(ApplierMsg::Stop);
        }
        if let Some(h) = self.applier.lock().take() {
            let _ = h.join();
        }
    }

    /// The collection's name.
    pub fn name(&self) -> String {
        self.schema.read().name.clone()
    }

    /// The current schema.
    pub fn schema(&self) -> CollectionSchema {
        self.schema.read().clone()
    }

    fn send(&self, msg: ApplierMsg) -> EngineResult<()> {
        match &*self.tx.lock() {
            Some(tx) => tx.send(msg).map_err(|_| EngineError::Closed),
            None => Err(EngineError::Closed),
        }
    }

    /// Pauses or resumes applying logged writes to the shards (writes are still logged and
    /// acknowledged). Used for maintenance and to observe the consistency levels.
    pub fn set_apply_paused(&self, paused: bool) {
        *self.paused.lock() = paused;
        self.paused_cv.notify_all();
    }

    fn wait_unpaused(&self) {
        let mut p = self.paused.lock();
        while *p {
            self.paused_cv.wait(&mut p);
        }
    }

    fn prepare(&self, vectors: &[f32], what: &'static str) -> EngineResult<(Vec<f32>, usize)> {
        let schema = self.schema.read();
        let n = check_vectors(vectors, schema.dim, what)?;
        check_norms(vectors, schema.dim)?;
        if schema.metric.normalizes() {
            check_nonzero(vectors, schema.dim)?;
        }
        let mut v = vectors.to_vec();
        schema.metric.prepare(&mut v, schema.dim);
        Ok((v, n))
    }

    fn log(&self, op: WalOp) -> EngineResult<Seq> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(EngineError::Closed);
        }
        let tx = self.tx.lock().clone().ok_or(EngineError::Closed)?;
        let seq = self.wal.append(op, |record| {
            let _ = tx.send(ApplierMsg::Record(record));
        })?;
        let mut clock = self.clock.lock();
        clock.committed = clock.committed.max(seq);
        let now = Instant::now();
        clock.recent.push_back((now, seq));
        // Pruned here too, so that a write-only load keeps only the window's entries.
        clock.advance(now.checked_sub(self.config.bounded_staleness));
        Ok(seq)
    }

    /// Inserts vectors (row-major). With `auto_id` the engine assigns the ids; otherwise
    /// `ids` is required and an existing id's vector is replaced (upsert).
    pub fn insert(&self, vectors: &[f32], ids: Option<&[u64]>) -> EngineResult<WriteAck> {
        let (vectors, n) = self.prepare(vectors, "vector")?;
        let auto_id = self.schema.read().auto_id;
        let ids: Vec<u64> = match (auto_id, ids) {
            (true, Some(_)) => return Err(EngineError::IdsNotAllowed),
            (true, None) => {
                let first = self.next_auto_id.fetch_add(n as u64, Ordering::SeqCst);
                (first..first + n as u64).collect()
            }
            (false, None) => return Err(EngineError::IdsRequired),
            (false, Some(ids)) => {
                check_ids(ids, n)?;
                ids.to_vec()
            }
        };
        let seq = self.log(WalOp::Upsert {
            ids: ids.clone(),
            vectors,
        })?;
        Ok(WriteAck { ids, seq })
    }

    /// Deletes ids (absent ids are ignored). `deleted` counts the ids present when the
    /// delete was logged.
    pub fn delete(&self, ids: &[u64]) -> EngineResult<DeleteAck> {
        if ids.is_empty() {
            return Err(CoreError::EmptyBatch { what: "id" }.into());
        }
        let mut unique: Vec<u64> = ids.to_vec();
        unique.sort_unstable();
        unique.dedup();
        // Count against the state that includes every acknowledged write.
        let committed = self.clock.lock().committed;
        self.wait_applied(committed)?;
        let schema = self.schema();
        let deleted = unique
            .iter()
            .filter(|&&id| {
                self.shards[schema.shard_of(id)]
                    .read()
                    .locations
                    .contains_key(&id)
            })
            .count();
        let seq = self.log(WalOp::Delete { ids: unique })?;
        Ok(DeleteAck { deleted, seq })
    }

    /// The stored vector of `id` (normalised for cosine collections), at Strong consistency.
    pub fn get(&self, id: u64) -> EngineResult<Vec<f32>> {
        let committed = self.clock.lock().committed;
        self.wait_applied(committed)?;
        let schema = self.schema();
        self.shards[schema.shard_of(id)]
            .read()
            .get(id, schema.dim)
            .ok_or(EngineError::IdNotFound { id })
    }

    /// Live vectors, counting every acknowledged write (waits for them to be applied, up to
    /// the consistency timeout; if applying is paused, the applied state's count).
    pub fn count(&self) -> u64 {
        let committed = self.clock.lock().committed;
        let _ = self.wait_applied(committed);
        self.applied_count()
    }

    fn applied_count(&self) -> u64 {
        self.shards.iter().map(|s| s.read().count() as u64).sum()
    }

    /// Highest acknowledged sequence.
    pub fn committed_seq(&self) -> Seq {
        self.clock.lock().committed
    }

    /// Acknowledgements held for the bounded-staleness window.
    #[cfg(test)]
    pub(crate) fn acks_in_window(&self) -> usize {
        self.clock.lock().recent.len()
    }

    /// Highest sequence applied to the shards.
    pub fn applied_seq(&self) -> Seq {
        *self.applied.lock()
    }

    /// The sequence a search at `level` must wait for.
    ///
    /// A `session_seq` above every acknowledged sequence is refused: it is another
    /// collection's, or its writes were lost (`--fsync never` and a crash), and waiting for it
    /// would promise read-your-writes that cannot hold.
    pub fn required_seq(
        &self,
        level: ConsistencyLevel,
        session_seq: Option<Seq>,
    ) -> EngineResult<Seq> {
        let mut clock = self.clock.lock();
        if level == ConsistencyLevel::Session {
            if let Some(given) = session_seq.filter(|&s| s > clock.committed) {
                return Err(EngineError::SessionAhead {
                    session_seq: given,
                    committed: clock.committed,
                });
            }
        }
        clock.advance(Instant::now().checked_sub(self.config.bounded_staleness));
        Ok(level.required_seq(clock.committed, session_seq, clock.floor))
    }

    fn wait_applied(&self, required: Seq) -> EngineResult<Seq> {
        let start = Instant::now();
        let deadline = start + self.config.consistency_timeout;
        let mut applied = self.applied.lock();
        while *applied < required {
            if self.closed.load(Ordering::SeqCst) {
                return Err(EngineError::Closed);
            }
            if self
                .applied_cv
                .wait_until(&mut applied, deadline)
                .timed_out()
                && *applied < required
            {
                return Err(EngineError::ConsistencyTimeout {
                    required,
                    applied: *applied,
                    waited_ms: start.elapsed().as_millis() as u64,
                });
            }
        }
        Ok(*applied)
    }

    /// Searches a batch of queries (row-major) at a consistency level.
    pub fn search(
        &self,
        queries: &[f32],
        params: &SearchParams,
        level: ConsistencyLevel,
        session_seq: Option<Seq>,
    ) -> EngineResult<SearchResult> {
        self.search_until(queries, params, level, session_seq, &Cancel::never())
    }

    /// [`Collection::search`] that stops with `cancelled` or `request_timeout` once `cancel`
    /// says so, checked before each chunk of the batch and each segment.
    pub fn search_until(
        &self,
        queries: &[f32],
        params: &SearchParams,
        level: ConsistencyLevel,
        session_seq: Option<Seq>,
        cancel: &Cancel,
    ) -> EngineResult<SearchResult> {
        params.validate(&self.config.limits)?;
        let (queries, nq) = self.prepare(queries, "query")?;
        if nq > self.config.limits.max_queries {
            return Err(CoreError::invalid(
                "vectors",
                nq,
                format!(
                    "at most {} queries per request",
                    self.config.limits.max_queries
                ),
            )
            .into());
        }
        self.config.limits.check_hits(nq, params.k)?;
        let required = self.required_seq(level, session_seq)?;
        let seq = self.wait_applied(required)?;
        let (dim, metric, refine) = {
            let s = self.schema.read();
            (s.dim, s.metric, s.index.params.refine_factor)
        };
        // A query without `refine_factor` takes the collection's (segments default the rest).
        let params = &SearchParams {
            refine_factor: params.refine_factor.or(refine),
            ..*params
        };
        // Chunks of the batch run in parallel on the search pool; each chunk fans out to
        // the shards.
        let chunk = self.searcher.chunk_queries(nq);
        cancel.check()?;
        let hits = if self.searcher.runs_here(nq, self.shards.len()) {
            self.searcher
                .run_here(|| self.search_shards(&queries, dim, metric, params, cancel))?
        } else {
            let chunks = self.searcher.run(|| {
                queries
                    .par_chunks(chunk * dim)
                    .map(|q| {
                        cancel.check()?;
                        self.search_shards(q, dim, metric, params, cancel)
                    })
                    .collect::<EngineResult<Vec<_>>>()
            })?;
            chunks.into_iter().flatten().collect()
        };
        Ok(SearchResult { hits, seq })
    }

    /// Searches every shard for a chunk of queries and merges the best `k` per query.
    fn search_shards(
        &self,
        queries: &[f32],
        dim: usize,
        metric: Metric,
        params: &SearchParams,
        cancel: &Cancel,
    ) -> EngineResult<Vec<Vec<Hit>>> {
        if self.shards.len() == 1 {
            return self.shards[0]
                .read()
                .search(queries, dim, metric, params, cancel);
        }
        let mut per_shard = self
            .shards
            .par_iter()
            .map(|s| s.read().search(queries, dim, metric, params, cancel))
            .collect::<EngineResult<Vec<_>>>()?;
        Ok((0..queries.len() / dim)
            .map(|q| {
                merge_hits(
                    per_shard.iter_mut().map(|s| std::mem::take(&mut s[q])),
                    params.k,
                    metric,
                )
            })
            .collect())
    }

    /// Seals the growing segments and writes a checkpoint (durable segment files, WAL
    /// truncated). Returns once done.
    pub fn flush(&self) -> EngineResult<()> {
        let (tx, rx) = channel();
        self.send(ApplierMsg::Flush(tx))?;
        rx.recv().map_err(|_| EngineError::Closed)?
    }

    /// Flushes, then rewrites every sealed segment that has deleted rows without them.
    pub fn compact(&self) -> EngineResult<()> {
        let (tx, rx) = channel();
        self.send(ApplierMsg::Compact(tx))?;
        rx.recv().map_err(|_| EngineError::Closed)?
    }

    /// Starts (re)building the collection's index as `index` (a spec, or a request with
    /// parameters left to their defaults, or `AUTO`) in the background; returns the build's
    /// generation. Searches keep using the current index until each segment's new one is
    /// ready. Every segment is built again, `AUTO` picking for the collection's size now.
    pub fn rebuild_index(&self, index: impl Into<IndexRequest>) -> EngineResult<u64> {
        let dim = self.schema.read().dim;
        let request: IndexRequest = index.into();
        request.validate(dim)?;
        if request.kind == IndexType::DiskAnn {
            return Err(CoreError::Unsupported {
                operation: "build",
                index: "DISKANN (not available in this server build yet)".into(),
            }
            .into());
        }
        let request = request.with_defaults(dim);
        // Every row into a sealed segment first: indexes are built, and trained, per segment,
        // so the largest segment decides whether the spec can be trained at all (`AUTO` picks
        // what each segment can train).
        self.flush()?;
        let largest = self
            .sealed_segments()
            .iter()
            .map(|s| s.rows())
            .max()
            .unwrap_or(0);
        if let Some(spec) = request.spec_for(dim, largest as u64) {
            let needed = spec.min_training_vectors();
            if largest < needed {
                return Err(CoreError::TooFewTrainingVectors {
                    needed,
                    got: largest,
                    nlist: spec.nlist().unwrap_or(0),
                }
                .into());
            }
        }
        let generation = {
            let mut meta = self.meta.lock();
            if self.closed.load(Ordering::SeqCst) {
                return Err(EngineError::Closed);
            }
            meta.index_generation += 1;
            self.schema.write().index = request;
            self.write_manifest(&meta)?;
            meta.index_generation
        };
        for segment in self.sealed_segments() {
            self.queue_build(segment);
        }
        Ok(generation)
    }

    /// Every sealed segment of every shard, taken under each shard's read lock in turn.
    fn sealed_segments(&self) -> Vec<Arc<SealedSegment>> {
        self.shards
            .iter()
            .flat_map(|s| {
                s.read()
                    .sealed
                    .iter()
                    .map(|e| e.segment.clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The index request and generation segments should serve, read together. Locks in the
    /// order `rebuild_index` takes them (meta, then schema).
    fn current_index(&self) -> (IndexRequest, u64) {
        let meta = self.meta.lock();
        let index = self.schema.read().index;
        (index, meta.index_generation)
    }

    /// What a segment of `rows` rows builds for `request`: IVF's `nlist` from the segment's
    /// rows when the request leaves it out, `AUTO`'s pick from the collection's size now
    /// (the rows applied so far). Takes shard locks: call with none held.
    fn choose_index(&self, request: &IndexRequest, rows: usize) -> Choice {
        let dim = self.schema.read().dim;
        let vectors = self.applied_count().max(rows as u64);
        request
            .choose(dim, rows as u64, vectors, served)
            .unwrap_or_else(|e| {
                tracing::warn!(collection = %self.name(), error = %e, "no index could be chosen; the segment stays exact");
                Choice {
                    spec: IndexSpec::Flat,
                    reason: Some(format!("no index could be chosen: {e}")),
                }
            })
    }

    fn queue_build(&self, segment: Arc<SealedSegment>) {
        let (request, generation) = self.current_index();
        {
            let slot = segment.slot.read();
            let queued = slot
                .building
                .as_ref()
                .is_some_and(|b| b.generation == generation);
            let built = slot
                .ready
                .as_ref()
                .is_some_and(|r| r.generation == generation);
            if queued || built {
                return;
            }
        }
        let Choice { spec, reason } = self.choose_index(&request, segment.rows());
        self.builder.submit(BuildJob {
            collection: self.me.clone(),
            segment,
            spec,
            reason,
            generation,
        });
    }

    /// Whether `generation` is still the collection's current index generation and
    /// `segment` is still part of it (a build finishing late must not be swapped in).
    pub(crate) fn build_is_current(&self, segment: u64, generation: u64) -> bool {
        if self.closed.load(Ordering::SeqCst) || self.meta.lock().index_generation != generation {
            return false;
        }
        self.shards
            .iter()
            .any(|s| s.read().sealed.iter().any(|e| e.segment.id == segment))
    }

    /// Runs `f` (which writes or deletes files of this collection) unless the collection is
    /// closed (`None`); `close` waits for it.
    pub(crate) fn while_open<T>(
        &self,
        f: impl FnOnce() -> EngineResult<T>,
    ) -> EngineResult<Option<T>> {
        let _files = self.files.read();
        if self.closed.load(Ordering::SeqCst) {
            return Ok(None);
        }
        f().map(Some)
    }

    /// Records a finished build in the manifest.
    pub(crate) fn persist_indexes(&self) -> EngineResult<()> {
        let meta = self.meta.lock();
        if self.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.write_manifest(&meta)
    }

    /// Copies a sealed segment of this collection to the engine's GPU, if it has one (see
    /// [`SealedSegment::offload`]). Runs on the offload thread; holds no lock while copying.
    pub(crate) fn offload(&self, segment: &SealedSegment) -> Offloaded {
        let Some(gpu) = &self.gpu else {
            return Offloaded::Skipped;
        };
        // Gone with a compaction, or the collection closed: nothing to copy.
        let member = self
            .shards
            .iter()
            .any(|s| s.read().sealed.iter().any(|e| e.segment.id == segment.id));
        if self.closed.load(Ordering::SeqCst) || !member {
            return Offloaded::Skipped;
        }
        let metric = self.schema.read().metric;
        segment.offload(gpu, metric)
    }

    /// Queues a copy of `segment` to the GPU, if the engine has a GPU.
    pub(crate) fn queue_offload(&self, segment: &Arc<SealedSegment>) {
        if self.gpu.is_some() {
            self.builder.submit_offload(self.me.clone(), segment);
        }
    }

    pub(crate) fn dim_metric(&self) -> (usize, Metric) {
        let s = self.schema.read();
        (s.dim, s.metric)
    }

    /// Applies a record to the shards (applier thread only) and publishes the new sequence.
    fn apply(&self, record: &WalRecord) {
        let schema = self.schema.read().clone();
        let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); self.shards.len()];
        let ids = match &record.op {
            WalOp::Upsert { ids, .. } | WalOp::Delete { ids } => ids,
        };
        for (i, &id) in ids.iter().enumerate() {
            by_shard[schema.shard_of(id)].push(i);
        }
        for (s, rows) in by_shard.iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let mut shard = self.shards[s].write();
            for &i in rows {
                match &record.op {
                    WalOp::Upsert { ids, vectors } => {
                        shard.upsert(ids[i], &vectors[i * schema.dim..(i + 1) * schema.dim])
                    }
                    WalOp::Delete { ids } => {
                        shard.delete(ids[i]);
                    }
                }
            }
        }
        let mut applied = self.applied.lock();
        *applied = record.last_seq();
        self.applied_cv.notify_all();
    }

    fn write_manifest(&self, meta: &Meta) -> EngineResult<()> {
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

    /// Seals growing segments (and with `compact`, rewrites sealed segments with deleted rows),
    /// writes live bitmaps and the manifest, then truncates the WAL. Applier thread only.
    fn checkpoint(&self, compact: bool) -> EngineResult<()> {
        // Segments compacted away: declared first, so that they are released after the locks
        // also on an early return.
        let mut retired = Vec::new();
        let mut meta = self.meta.lock();
        let seq = *self.applied.lock();
        let dim = self.schema.read().dim;
        let ratio = self.config.auto_compact_deleted_ratio;
        let mut new_segments = Vec::new();
        let mut dropped = Vec::new();
        // Seals every shard. On a failure part-way (a full disk), the segments already made
        // stay in service and still get their indexes; the manifest and the WAL stay as they
        // were, so a restart replays the writes again (rows live twice are resolved on open).
        let sealed = (|| -> EngineResult<()> {
            for (s, shard_lock) in self.shards.iter().enumerate() {
                // Rows to write: the growing segment's live rows, plus (compaction) the live rows
                // of sealed segments with deletions.
                let (ids, vectors, victims) = {
                    let shard = shard_lock.read();
                    let mut ids = Vec::new();
                    let mut vectors = Vec::new();
                    for row in shard.growing.live.ones() {
                        ids.push(shard.growing.ids[row]);
                        vectors
                            .extend_from_slice(&shard.growing.vectors[row * dim..(row + 1) * dim]);
                    }
                    let mut victims = Vec::new();
                    for e in &shard.sealed {
                        let worth = if compact {
                            e.live_count < e.segment.rows()
                        } else {
                            e.mostly_deleted(ratio)
                        };
                        if worth {
                            victims.push(e.segment.id);
                            for row in e.live.ones() {
                                ids.push(e.segment.ids()[row]);
                                vectors.extend_from_slice(e.segment.vector(row));
                            }
                        }
                    }
                    (ids, vectors, victims)
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
                let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut shard.sealed)
                    .into_iter()
                    .partition(|e| victims.contains(&e.segment.id));
                shard.sealed = kept;
                dropped.extend(gone.iter().map(|e| e.segment.dir.clone()));
                // Released after the locks: freeing a GPU copy works on the device.
                retired.extend(gone);
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
        drop(retired);
        // The new segments are in service whatever failed after they were made: they get
        // their indexes. Compacted directories go only once a manifest without them is
        // written; after a failure here, the next open removes them.
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
        for dir in dropped {
            if let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a compacted segment");
            }
        }
        let _ = sync_dir(&self.dir.join("segments"));
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
            state: if building { "building" } else { "ready" },
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
            schema,
        }
    }

    /// Waits (up to `timeout`) until no index build is pending for the current generation.
    pub fn wait_index_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.index_status().state == "ready" {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// The index types this server builds (`AUTO` picks among them): all but DiskANN.
fn served(t: IndexType) -> bool {
    t != IndexType::DiskAnn
}

/// Applies a replayed record directly (recovery, before the applier starts).
fn apply_to(schema: &CollectionSchema, shards: &mut [ShardState], record: &WalRecord) {
    match &record.op {
        WalOp::Upsert { ids, vectors } => {
            for (i, &id) in ids.iter().enumerate() {
                shards[schema.shard_of(id)]
                    .upsert(id, &vectors[i * schema.dim..(i + 1) * schema.dim]);
            }
        }
        WalOp::Delete { ids } => {
            for &id in ids {
                shards[schema.shard_of(id)].delete(id);
            }
        }
    }
}
