//! Engine settings.

use std::path::PathBuf;
use std::time::Duration;

use proxima_core::SearchLimits;

pub use super::changelog::Retention;
use crate::index::gpu::GpuSettings;

/// When an acknowledged write reaches stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Group commit: a write is acknowledged only after an fsync that covers it (default).
    Always,
    /// Acknowledge after the write(2); the OS flushes later. Survives a process crash, not a
    /// power loss.
    Never,
}

/// Settings of an [`Engine`](super::Engine).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Root directory of all collections.
    pub data_dir: PathBuf,
    pub fsync: FsyncPolicy,
    /// A shard's growing segment is sealed once it holds this many rows.
    pub seal_rows: usize,
    /// Bounded consistency sees every write acknowledged at least this long ago.
    pub bounded_staleness: Duration,
    /// Longest a search waits for its consistency level before failing.
    pub consistency_timeout: Duration,
    /// Size at which a WAL file is closed and a new one started.
    pub wal_file_bytes: u64,
    /// Threads building indexes in the background.
    pub build_threads: usize,
    /// Threads running searches (one pool shared by every collection and request).
    pub search_threads: usize,
    /// Sealed segments whose deleted share exceeds this are rewritten without their deleted
    /// rows, in the background.
    pub auto_compact_deleted_ratio: f64,
    /// Sealed segments of one size tier merged at once in the background (0 or 1: no
    /// merging; segments past the deleted-rows ratio are still rewritten).
    pub merge_factor: usize,
    /// Memory-map IVF inverted lists when loading indexes from disk.
    pub mmap_indexes: bool,
    pub limits: SearchLimits,
    /// Copy sealed FLAT/IVF segments to this GPU (builds with the `gpu` feature).
    pub gpu: Option<GpuSettings>,
    /// How much of each collection's change log (the sync feed) is kept.
    pub changes: Retention,
    /// Largest cache snapshot served (`GET .../snapshot`); larger ones answer 413.
    pub snapshot_max_bytes: u64,
}

impl EngineConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            fsync: FsyncPolicy::Always,
            seal_rows: 100_000,
            bounded_staleness: Duration::from_millis(100),
            consistency_timeout: Duration::from_secs(10),
            wal_file_bytes: 64 << 20,
            build_threads: 1,
            search_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            auto_compact_deleted_ratio: 0.3,
            merge_factor: 4,
            mmap_indexes: false,
            limits: SearchLimits::default(),
            gpu: None,
            changes: Retention::default(),
            snapshot_max_bytes: 256 << 20,
        }
    }
}
