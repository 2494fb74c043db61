//! The storage engine: collections → shards → segments (growing and sealed) → indexes, with
//! a write-ahead log per collection.
//!
//! Data layout under `data_dir`:
//! ```text
//! collections/<name>/manifest.json
//! collections/<name>/wal/<first-seq>.wal
//! collections/<name>/segments/<id>/{rows.bin, live.bin, index-<generation>.faiss}
//! ```

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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;

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
                // An interrupted create or drop.
                let _ = std::fs::remove_dir_all(&path);
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

    /// Creates a collection. The index's defaults that depend only on the dimension are filled
    /// in ([`proxima_core::IndexRequest::with_defaults`]), so `describe` shows them.
    pub fn create_collection(&self, schema: CollectionSchema) -> EngineResult<Arc<Collection>> {
        schema.validate()?;
        let schema = CollectionSchema {
            index: schema.index.with_defaults(schema.dim),
            ..schema
        };
        let mut map = self.collections.write();
        if map.contains_key(&schema.name) {
            return Err(EngineError::CollectionExists { name: schema.name });
        }
        let tmp = self.root().join(format!(".creating-{}", schema.name));
        let _ = std::fs::remove_dir_all(&tmp);
        Collection::create_files(&tmp, &schema)?;
        let dir = self.root().join(&schema.name);
        std::fs::rename(&tmp, &dir)
            .map_err(EngineError::io(format!("rename {}", dir.display())))?;
        fs::sync_dir(&self.root())?;
        let collection = Collection::open(
            &dir,
            self.config.clone(),
            self.builder.clone(),
            self.searcher.clone(),
            self.gpu.clone(),
        )?;
        map.insert(schema.name.clone(), collection.clone());
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
    pub fn drop_collection(&self, name: &str) -> EngineResult<()> {
        let collection = self.collections.write().remove(name).ok_or_else(|| {
            EngineError::CollectionNotFound {
                name: name.to_string(),
            }
        })?;
        collection.close();
        let dir = self.root().join(name);
        let doomed = self.root().join(format!(".dropping-{name}"));
        std::fs::rename(&dir, &doomed)
            .map_err(EngineError::io(format!("rename {}", dir.display())))?;
        fs::sync_dir(&self.root())?;
        std::fs::remove_dir_all(&doomed)
            .map_err(EngineError::io(format!("remove {}", doomed.display())))
    }

    /// Stops appliers and build threads (writes already acknowledged are durable).
    pub fn close(&self) {
        for c in self.collections.read().values() {
            c.close();
        }
        self.builder.shutdown();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.close();
    }
}
#[cfg(test)]
mod tests;
