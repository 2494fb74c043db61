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
//! manifest and delete WAL files the checkpoint covers. Sealed segments are merged, vacuumed
//! and compacted by the optimizer thread, in the background (`merge`).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock};
use proxima_core::consistency::Seq;
use proxima_core::Metric;

mod applier;
mod checkpoint;
mod clock;
mod indexing;
mod info;
mod merge;
mod recovery;
mod search;
mod snapshot;
mod sync;
mod write;

pub use snapshot::{Snapshot, SnapshotOptions, REFRESH_CHANGES};
pub use sync::{Export, Subset};

use self::applier::ApplierMsg;
use self::clock::Clock;
use super::builder::IndexBuilder;
use super::changelog::ChangeLog;
use super::config::EngineConfig;
use super::error::{EngineError, EngineResult};
use super::manifest::Manifest;
use super::schema::CollectionSchema;
use super::search_pool::SearchPool;
use super::segment::SealedSegment;
use super::shard::ShardState;
use super::wal::Wal;
use crate::index::gpu::GpuDevice;

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
    /// Background rewrites of sealed segments (merges, vacuum, compaction).
    optimizer: merge::Optimizer,
    /// The seal thread of the checkpoint in progress (see `checkpoint`).
    sealing: Mutex<Option<JoinHandle<()>>>,
    /// When automatic checkpoints may try again after a failed seal.
    seal_retry_at: Mutex<Option<std::time::Instant>>,
    /// How many ids the latest delete records removed, by sequence, counted as they were
    /// applied (a bounded window: the deletes waiting for their count are recent).
    deleted: Mutex<std::collections::VecDeque<(Seq, usize)>>,
    me: Weak<Collection>,
}

impl Collection {
    /// Creates the on-disk layout of a new collection in `dir` (which must not exist).
    pub(crate) fn create_files(dir: &Path, schema: &CollectionSchema) -> EngineResult<()> {
        fs::create_dir_all(dir.join("segments"))
            .map_err(EngineError::io(format!("create {}", dir.display())))?;
        Manifest::new(schema.clone()).write(dir)
    }

    /// Stops the applier after it has applied everything queued.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.stop_optimizer();
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
        // A seal the applier started finishes (its writes are acknowledged and logged; once
        // sealed they need no replay).
        self.join_seal();
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

    pub(crate) fn dim_metric(&self) -> (usize, Metric) {
        let s = self.schema.read();
        (s.dim, s.metric)
    }
}
