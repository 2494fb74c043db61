//! Opening a collection: loads the manifest's sealed segments and their indexes, removes
//! what an interrupted checkpoint or build left behind, replays the write-ahead log past the
//! checkpoint, and starts the applier.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use super::applier::apply_record;
use super::clock::Clock;
use super::{Collection, Meta};
use crate::engine::builder::IndexBuilder;
use crate::engine::changelog::ChangeLog;
use crate::engine::config::EngineConfig;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::manifest::{new_handle, Manifest};
use crate::engine::search_pool::SearchPool;
use crate::engine::segment::{ReadyIndex, SealedSegment};
use crate::engine::shard::ShardState;
use crate::engine::wal::{Wal, WalOp};
use crate::index::faiss_backend::FaissIndex;
use crate::index::gpu::GpuDevice;

pub(super) fn segment_dir(dir: &Path, id: u64) -> PathBuf {
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
            apply_record(&schema, record, |s, apply| apply(&mut shards[s]));
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
            optimizer: Default::default(),
            sealing: Default::default(),
            seal_retry_at: Default::default(),
            deleted: Default::default(),
            me: me.clone(),
        });
        for segment in &built {
            collection.queue_offload(segment);
        }
        collection.start_applier();
        collection.start_optimizer();
        // Segments left by an older version, or past the ratio: looked at now.
        collection.optimizer.wake();
        for segment in to_build {
            collection.queue_build(segment);
        }
        Ok(collection)
    }
}
