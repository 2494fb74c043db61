//! The collection manifest: the schema, the last checkpoint and the sealed segments with
//! their index files. Rewritten atomically (temporary file, fsync, rename, fsync directory).

use std::path::Path;

use proxima_core::consistency::Seq;
use proxima_core::IndexSpec;
use serde::{Deserialize, Serialize};

use super::error::{EngineError, EngineResult};
use super::fs::write_file_atomic;
use super::schema::CollectionSchema;

pub const MANIFEST: &str = "manifest.json";
const VERSION: u32 = 1;

/// One sealed segment in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentEntry {
    pub id: u64,
    pub shard: usize,
    pub rows: usize,
    /// The built index, if any: its spec, generation and file (inside the segment dir).
    pub index: Option<IndexEntry>,
}

/// A persisted index of a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub spec: IndexSpec,
    pub generation: u64,
    pub file: String,
    /// Why this spec, when the collection's request left parameters or the type (`AUTO`) open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The manifest file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub schema: CollectionSchema,
    /// Every write up to this sequence is in the sealed segments (and their live bitmaps).
    pub checkpoint_seq: Seq,
    pub next_segment_id: u64,
    pub next_auto_id: u64,
    /// Generation of the collection's index spec (bumped by each rebuild request).
    pub index_generation: u64,
    pub segments: Vec<SegmentEntry>,
    /// The collection's sync handle: new for each collection created (and when its change
    /// log had to start again), so a cache never applies one collection's changes to
    /// another's state. Empty in manifests written before handles existed (one is made on open).
    #[serde(default)]
    pub handle: String,
}

/// A fresh sync handle: 64 random bits (the standard library's per-process random hash keys,
/// mixed with the time) as 16 hex digits.
pub fn new_handle() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(now);
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

impl Manifest {
    /// The manifest of a new, empty collection.
    pub fn new(schema: CollectionSchema) -> Self {
        Self {
            version: VERSION,
            schema,
            checkpoint_seq: 0,
            next_segment_id: 1,
            next_auto_id: 1,
            index_generation: 1,
            segments: Vec::new(),
            handle: new_handle(),
        }
    }

    /// Reads `dir/manifest.json`.
    pub fn read(dir: &Path) -> EngineResult<Self> {
        let path = dir.join(MANIFEST);
        let bytes =
            std::fs::read(&path).map_err(EngineError::io(format!("read {}", path.display())))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| EngineError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if m.version != VERSION {
            return Err(EngineError::Corrupt {
                path,
                reason: format!("unsupported manifest version {}", m.version),
            });
        }
        Ok(m)
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn write(&self, dir: &Path) -> EngineResult<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| EngineError::Corrupt {
            path: dir.join(MANIFEST),
            reason: e.to_string(),
        })?;
        write_file_atomic(&dir.join(MANIFEST), &bytes)
    }
}
