//! The storage engine: collections → shards → segments (growing and sealed) → indexes, with
//! a write-ahead log per collection.
//!
//! Data layout under `data_dir`:
//! ```text
//! collections/<name>/manifest.json
//! collections/<name>/wal/<first-seq>.wal
//! collections/<name>/segments/<id>/{rows.bin, live.bin, index-<generation>.faiss}
//! collections/.creating-<name>/     a create in progress (renamed to <name> when complete)
//! collections/.dropped-<name>.<n>/  a dropped collection's files, being removed
//! ```
//!
//! Create and drop of one name are linearisable: they hold the name (`Engine::claim`)
//! while they change its map entry and its directory, and a drop moves the directory out of
//! the name's path (a durable rename to a unique tombstone) before it lets the name go, so a
//! create that follows finds the path free. Directories whose names start with `.` are
//! leftovers of interrupted creates or drops and are removed on open.

mod builder;
mod changelog;
mod collection;
mod config;
mod error;
mod fs;
mod manifest;
mod merge_policy;
mod schema;
mod search_pool;
mod segment;
mod shard;
mod types;
mod wal;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

pub use changelog::{ChangeLog, Head, LogStats, Read as ChangesRead, Retention};
pub use collection::{Collection, Export, Snapshot, SnapshotOptions, Subset, REFRESH_CHANGES};
pub use config::{EngineConfig, FsyncPolicy};
pub use error::{EngineError, EngineResult, ErrorKind};
pub use fs::write_file_atomic;
pub use schema::{validate_name, CollectionSchema};
pub use search_pool::Cancel;
pub use segment::{requeried_queries, SegmentIndexInfo, SegmentInfo};
pub use types::{
    BuildState, CollectionInfo, DeleteAck, IndexState, IndexStatus, MemoryInfo, MergeStats,
    SearchResult, SegmentState, WriteAck,
};

use builder::IndexBuilder;
use search_pool::SearchPool;

use crate::index::gpu::GpuDevice;

/// The engine: every collection under one data directory.
pub struct Engine {
    config: Arc<EngineConfig>,
    collections: RwLock<BTreeMap<String, Arc<Collection>>>,
    /// Names a create or drop is working on (see `Engine::claim`).
    claimed: Mutex<HashSet<String>>,
    claimed_cv: Condvar,
    /// Makes tombstone names unique within the process (with the time, across restarts).
    drops: AtomicU64,
    builder: Arc<IndexBuilder>,
    searcher: Arc<SearchPool>,
    gpu: Option<Arc<GpuDevice>>,
}

impl Engine {
    /// Opens the data directory, recovering every collection (WAL replay, index loading), and
    /// the GPU if the configuration names one (an unusable GPU fails the open).
    pub fn open(config: EngineConfig) -> EngineResult<Self> {
        let root = config.data_dir.join("collections");
        fs::create_dir_durable(&root)?;
        let gpu = config.gpu.as_ref().map(GpuDevice::open).transpose()?;
        let config = Arc::new(config);
        let builder = IndexBuilder::new(config.build_threads, gpu.is_some());
        let searcher = SearchPool::new(config.search_threads)?;
        let mut collections = BTreeMap::new();
        for entry in
            std::fs::read_dir(&root).map_err(EngineError::io(format!("list {}", root.display())))?
        {
            let path = entry.map_err(EngineError::io("list collections"))?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if name.starts_with('.') {
                // An interrupted create, or a drop whose files were not all removed.
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => {
                        tracing::info!(dir = %path.display(), "removed the leftovers of an interrupted create or drop")
                    }
                    Err(e) => {
                        tracing::warn!(dir = %path.display(), error = %e, "could not remove the leftovers of an interrupted create or drop")
                    }
                }
                continue;
            }
            let collection = Collection::open(
                &path,
                config.clone(),
                builder.clone(),
                searcher.clone(),
                gpu.clone(),
            )?;
            collections.insert(name, collection);
        }
        Ok(Self {
            config,
            collections: RwLock::new(collections),
            claimed: Mutex::new(HashSet::new()),
            claimed_cv: Condvar::new(),
            drops: AtomicU64::new(0),
            builder,
            searcher,
            gpu,
        })
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    fn root(&self) -> PathBuf {
        self.config.data_dir.join("collections")
    }

    /// Holds `name` for a create or drop until the guard is dropped: a second create or drop
    /// of the same name waits, so each sees the map entry and the directory the one before
    /// left. Other names, lookups and the collections' own work never wait for it.
    fn claim(&self, name: &str) -> Claim<'_> {
        let mut claimed = self.claimed.lock();
        while claimed.contains(name) {
            self.claimed_cv.wait(&mut claimed);
        }
        claimed.insert(name.to_string());
        Claim {
            engine: self,
            name: name.to_string(),
        }
    }

    /// Moves a collection's directory out of its name's path, durably: a unique tombstone
    /// (`.dropped-<name>.<n>`) that [`Engine::open`] removes if we do not get to it.
    fn entomb(&self, name: &str, dir: &Path) -> EngineResult<PathBuf> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let n = self.drops.fetch_add(1, Ordering::Relaxed);
        let tomb = self.root().join(format!(".dropped-{name}.{nanos:x}-{n}"));
        std::fs::rename(dir, &tomb).map_err(EngineError::io(format!(
            "rename {} to {}",
            dir.display(),
            tomb.display()
        )))?;
        fs::sync_dir(&self.root())?;
        Ok(tomb)
    }

    /// Creates a collection. The index's defaults that depend only on the dimension are filled
    /// in ([`proxima_core::IndexRequest::with_defaults`]), so `describe` shows them.
    ///
    /// Whatever drops and creates of the same name run at the same time, this either creates
    /// the collection or answers [`EngineError::CollectionExists`] (or an error of the disk).
    pub fn create_collection(&self, schema: CollectionSchema) -> EngineResult<Arc<Collection>> {
        schema.validate()?;
        let schema = CollectionSchema {
            index: schema.index.with_defaults(schema.dim),
            ..schema
        };
        let _claim = self.claim(&schema.name);
        if self.collections.read().contains_key(&schema.name) {
            return Err(EngineError::CollectionExists { name: schema.name });
        }
        let dir = self.root().join(&schema.name);
        if std::fs::symlink_metadata(&dir).is_ok() {
            // Not in the map, yet there: a drop or create that failed part-way. No one can
            // reach that collection, so its files go (a restart would have brought it back).
            tracing::warn!(collection = %schema.name, "removing the files of a collection whose drop failed");
            let tomb = self.entomb(&schema.name, &dir)?;
            let _ = std::fs::remove_dir_all(&tomb);
        }
        let tmp = self.root().join(format!(".creating-{}", schema.name));
        let _ = std::fs::remove_dir_all(&tmp);
        Collection::create_files(&tmp, &schema)?;
        std::fs::rename(&tmp, &dir)
            .map_err(EngineError::io(format!("rename {}", dir.display())))?;
        fs::sync_dir(&self.root())?;
        let collection = match Collection::open(
            &dir,
            self.config.clone(),
            self.builder.clone(),
            self.searcher.clone(),
            self.gpu.clone(),
        ) {
            Ok(c) => c,
            Err(e) => {
                // Not a collection then: nothing of it stays under the name.
                if let Ok(tomb) = self.entomb(&schema.name, &dir) {
                    let _ = std::fs::remove_dir_all(&tomb);
                }
                return Err(e);
            }
        };
        self.collections
            .write()
            .insert(schema.name.clone(), collection.clone());
        Ok(collection)
    }

    /// Looks a collection up.
    pub fn collection(&self, name: &str) -> EngineResult<Arc<Collection>> {
        self.collections
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::CollectionNotFound {
                name: name.to_string(),
            })
    }

    /// Names of all collections.
    pub fn list(&self) -> Vec<String> {
        self.collections.read().keys().cloned().collect()
    }

    /// Drops a collection and deletes its files.
    ///
    /// Whatever creates and drops of the same name run at the same time, this either drops
    /// the collection or answers [`EngineError::CollectionNotFound`] (or an error of the
    /// disk, the collection then staying). Once it returns, the name's path is free: the
    /// directory was renamed (durably) to a tombstone before the name was let go, and the
    /// tombstone is deleted after that (a deletion cut short finishes on the next open).
    /// Requests already holding the collection answer `closed` or finish before the drop.
    pub fn drop_collection(&self, name: &str) -> EngineResult<()> {
        let claim = self.claim(name);
        let collection = self.collections.write().remove(name).ok_or_else(|| {
            EngineError::CollectionNotFound {
                name: name.to_string(),
            }
        })?;
        // Nothing writes into the directory once `close` returns (the applier is joined, a
        // build's file writes end first).
        collection.close();
        let dir = self.root().join(name);
        let tomb = match self.entomb(name, &dir) {
            Ok(tomb) => tomb,
            Err(e) => {
                // The files are still there: the collection stays, as it would after a restart.
                if let Ok(c) = Collection::open(
                    &dir,
                    self.config.clone(),
                    self.builder.clone(),
                    self.searcher.clone(),
                    self.gpu.clone(),
                ) {
                    self.collections.write().insert(name.to_string(), c);
                }
                return Err(e);
            }
        };
        drop(claim);
        if let Err(e) = std::fs::remove_dir_all(&tomb) {
            tracing::warn!(collection = name, dir = %tomb.display(), error = %e, "could not remove a dropped collection's files; the next start removes them");
        }
        Ok(())
    }

    /// Stops appliers and build threads (writes already acknowledged are durable).
    pub fn close(&self) {
        for c in self.collections.read().values() {
            c.close();
        }
        self.builder.shutdown();
    }
}

/// A name held by a create or drop ([`Engine::claim`]).
struct Claim<'a> {
    engine: &'a Engine,
    name: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.engine.claimed.lock().remove(&self.name);
        self.engine.claimed_cv.notify_all();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.close();
    }
}
#[cfg(test)]
mod tests;
