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
//! aliases.json                      alias → collection (see `aliases`)
//! ```
//!
//! Create and drop of one name are linearisable: they hold the name (`Engine::claim`)
//! while they change its map entry and its directory, and a drop moves the directory out of
//! the name's path (a durable rename to a unique tombstone) before it lets the name go, so a
//! create that follows finds the path free. Directories whose names start with `.` are
//! leftovers of interrupted creates or drops and are removed on open.
//!
//! Aliases share the collections' names and their turns: a change of alias `a` to collection
//! `c` holds both `a` and `c`, so it is linearisable with creates and drops of either name
//! (a collection is never created with an alias's name, an alias never takes a collection's,
//! and a collection that aliases point to is not dropped). [`Engine::collection`] resolves
//! aliases, so everything that looks a collection up by name accepts an alias.

mod aliases;
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

pub use aliases::ALIASES_FILE;
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

use aliases::Aliases;
use builder::IndexBuilder;
use search_pool::SearchPool;

use crate::index::gpu::GpuDevice;

/// The engine: every collection under one data directory.
pub struct Engine {
    config: Arc<EngineConfig>,
    collections: RwLock<BTreeMap<String, Arc<Collection>>>,
    /// Alias → collection, persisted in `aliases.json`. Lock order: `aliases`, then
    /// `collections`.
    aliases: Aliases,
    /// Names a create, drop or alias change is working on (see `Engine::claim`).
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
        let aliases = Aliases::load(&config.data_dir)?;
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
        for (alias, target) in aliases.list() {
            if !collections.contains_key(&target) {
                tracing::warn!(alias, collection = target, "an alias names a collection that does not exist: requests through it answer collection_not_found");
            }
            if collections.contains_key(&alias) {
                tracing::warn!(
                    alias,
                    "an alias has the name of a collection: the collection is what the name finds"
                );
            }
        }
        Ok(Self {
            config,
            collections: RwLock::new(collections),
            aliases,
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
        self.claim_all(&[name])
    }

    /// Holds all of `names` at once (an alias change holds the alias and its collection);
    /// taken together, so two claims of overlapping names never wait for each other in a
    /// cycle.
    fn claim_all(&self, names: &[&str]) -> Claim<'_> {
        let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        names.sort();
        names.dedup();
        let mut claimed = self.claimed.lock();
        while names.iter().any(|n| claimed.contains(n)) {
            self.claimed_cv.wait(&mut claimed);
        }
        claimed.extend(names.iter().cloned());
        Claim {
            engine: self,
            names,
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
        if let Some(collection) = self.aliases.get(&schema.name) {
            return Err(EngineError::NameIsAlias {
                name: schema.name,
                collection,
            });
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

    /// Looks a collection up by its name or an alias's. Both maps are read at once, so the
    /// answer is the alias's target before or after a switch, never neither.
    pub fn collection(&self, name: &str) -> EngineResult<Arc<Collection>> {
        let aliases = self.aliases.read();
        let collections = self.collections.read();
        collections
            .get(name)
            .or_else(|| aliases.get(name).and_then(|target| collections.get(target)))
            .cloned()
            .ok_or_else(|| EngineError::CollectionNotFound {
                name: name.to_string(),
            })
    }

    /// Points `alias` at `collection`, creating the alias or switching it in one durable
    /// write; answers the collection it pointed to before, if any. The alias must be a valid
    /// name that is not a collection's; the collection must exist (an alias of an alias is
    /// not one).
    pub fn set_alias(&self, alias: &str, collection: &str) -> EngineResult<Option<String>> {
        validate_name(alias)?;
        let _claim = self.claim_all(&[alias, collection]);
        if self.collections.read().contains_key(alias) {
            return Err(EngineError::NameIsCollection {
                name: alias.to_string(),
            });
        }
        if !self.collections.read().contains_key(collection) {
            return Err(EngineError::CollectionNotFound {
                name: collection.to_string(),
            });
        }
        self.aliases
            .update(|m| m.insert(alias.to_string(), collection.to_string()))
    }

    /// Deletes an alias (its collection stays); answers the collection it pointed to.
    pub fn delete_alias(&self, alias: &str) -> EngineResult<String> {
        let _claim = self.claim(alias);
        if self.aliases.get(alias).is_none() {
            return Err(EngineError::AliasNotFound {
                name: alias.to_string(),
            });
        }
        let removed = self.aliases.update(|m| m.remove(alias))?;
        removed.ok_or_else(|| EngineError::AliasNotFound {
            name: alias.to_string(),
        })
    }

    /// The collection `alias` points to.
    pub fn alias(&self, alias: &str) -> EngineResult<String> {
        self.aliases
            .get(alias)
            .ok_or_else(|| EngineError::AliasNotFound {
                name: alias.to_string(),
            })
    }

    /// Every alias with its collection, by alias.
    pub fn aliases(&self) -> Vec<(String, String)> {
        self.aliases.list()
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
    ///
    /// A collection that aliases point to is not dropped
    /// ([`EngineError::CollectionHasAliases`]); neither is one named through an alias.
    pub fn drop_collection(&self, name: &str) -> EngineResult<()> {
        let claim = self.claim(name);
        let aliases = self.aliases.of(name);
        if !aliases.is_empty() {
            return Err(EngineError::CollectionHasAliases {
                name: name.to_string(),
                aliases,
            });
        }
        if let Some(target) = self.aliases.get(name) {
            if !self.collections.read().contains_key(name) {
                let aliases = self.aliases.of(&target);
                return Err(EngineError::CollectionHasAliases {
                    name: target,
                    aliases,
                });
            }
        }
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

/// Names held by a create, drop or alias change ([`Engine::claim`]).
struct Claim<'a> {
    engine: &'a Engine,
    names: Vec<String>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut claimed = self.engine.claimed.lock();
        for n in &self.names {
            claimed.remove(n);
        }
        drop(claimed);
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
