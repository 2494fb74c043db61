//! Aliases: names that stand for a collection (`docs` → `docs_v2`), so that clients keep one
//! name while the collection behind it is swapped.
//!
//! The whole map lives in one file, `<data_dir>/aliases.json`, rewritten with
//! [`write_file_atomic`] on every change (temporary file, fsync, rename, fsync of the
//! directory): after a crash an alias points to its old target or its new one, never
//! nowhere. Changes are serialised (one writer at a time) and published to readers only once
//! durable; lookups take a read lock and never wait for a disk write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use serde::{Deserialize, Serialize};

use super::error::{EngineError, EngineResult};
use super::fs::write_file_atomic;

/// The file, directly in the data directory (beside `collections/`, whose entries are all
/// collections).
pub const ALIASES_FILE: &str = "aliases.json";
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct AliasFile {
    version: u32,
    /// Alias → collection.
    aliases: BTreeMap<String, String>,
}

/// The alias map and its file.
pub struct Aliases {
    path: PathBuf,
    map: RwLock<BTreeMap<String, String>>,
    /// Held by a change from reading the map to publishing the new one.
    writer: Mutex<()>,
}

impl Aliases {
    /// Reads `<data_dir>/aliases.json` (none: no aliases).
    pub fn load(data_dir: &Path) -> EngineResult<Self> {
        let path = data_dir.join(ALIASES_FILE);
        let map = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: AliasFile =
                    serde_json::from_slice(&bytes).map_err(|e| EngineError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                if file.version != VERSION {
                    return Err(EngineError::Corrupt {
                        path,
                        reason: format!("unknown version {}", file.version),
                    });
                }
                file.aliases
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(EngineError::io(format!("read {}", path.display()))(e)),
        };
        // A write cut short leaves its temporary file; the map is the old one.
        let _ = std::fs::remove_file(path.with_extension("tmp"));
        Ok(Self {
            path,
            map: RwLock::new(map),
            writer: Mutex::new(()),
        })
    }

    /// The map, for lookups (hold it briefly: a change waits for it to publish).
    pub fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, String>> {
        self.map.read()
    }

    /// The collection `alias` stands for.
    pub fn get(&self, alias: &str) -> Option<String> {
        self.map.read().get(alias).cloned()
    }

    /// Every alias with its collection, by alias.
    pub fn list(&self) -> Vec<(String, String)> {
        self.map
            .read()
            .iter()
            .map(|(a, c)| (a.clone(), c.clone()))
            .collect()
    }

    /// The aliases of `collection`.
    pub fn of(&self, collection: &str) -> Vec<String> {
        self.map
            .read()
            .iter()
            .filter(|(_, c)| *c == collection)
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Applies `change` to a copy of the map, writes it durably, then publishes it. On an
    /// error of the disk nothing changes.
    pub fn update<R>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> R,
    ) -> EngineResult<R> {
        let _writer = self.writer.lock();
        let mut next = self.map.read().clone();
        let result = change(&mut next);
        let file = AliasFile {
            version: VERSION,
            aliases: next,
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| EngineError::Corrupt {
            path: self.path.clone(),
            reason: format!("encoding: {e}"),
        })?;
        write_file_atomic(&self.path, &bytes)?;
        *self.map.write() = file.aliases;
        Ok(result)
    }
}
