//! What the engine's collection operations return: write and delete acknowledgements,
//! search results, and a collection's description (index progress, memory).

use proxima_core::advisor::AutoPick;
use proxima_core::consistency::Seq;
use proxima_core::{Hit, IndexRequest};
use serde::Serialize;

use super::schema::CollectionSchema;
use super::segment::SegmentInfo;

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

/// Whether a segment takes writes: the shard's one growing segment, or a sealed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentState {
    Growing,
    /// A growing segment a checkpoint is writing as a sealed segment, in the background:
    /// searched exactly until the sealed segment replaces it.
    Sealing,
    Sealed,
}

/// What answers a segment's searches: its rows (`exact`: growing segments, FLAT, segments
/// too small to index), an index being built (the rows, or the previous index, serve
/// meanwhile), or its index (`ready`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexState {
    Exact,
    Building,
    Ready,
}

/// The collection's index over its sealed segments: `building` while any segment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildState {
    Building,
    Ready,
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
    pub state: BuildState,
    pub rows_indexed: u64,
    pub rows_total: u64,
    pub progress: f64,
}

/// What `describe` returns (the HTTP API answers its own `api::types::Description`, built
/// from this).
#[derive(Debug, Clone)]
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
    /// Background rewrites of sealed segments since the collection was opened.
    pub merges: MergeStats,
}

/// Merges done since the collection was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MergeStats {
    /// Rewrites finished (merges, vacuums, compactions).
    pub merges: u64,
    /// Rows written by them.
    pub rows_rewritten: u64,
    /// Segments they replaced.
    pub segments_merged: u64,
    /// Rewrites that failed (retried later).
    pub failures: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, to_value};

    #[test]
    fn states_serialise_as_the_names_describe_always_used() {
        assert_eq!(to_value(SegmentState::Growing).unwrap(), json!("growing"));
        assert_eq!(to_value(SegmentState::Sealing).unwrap(), json!("sealing"));
        assert_eq!(to_value(SegmentState::Sealed).unwrap(), json!("sealed"));
        assert_eq!(to_value(IndexState::Exact).unwrap(), json!("exact"));
        assert_eq!(to_value(IndexState::Building).unwrap(), json!("building"));
        assert_eq!(to_value(IndexState::Ready).unwrap(), json!("ready"));
        assert_eq!(to_value(BuildState::Building).unwrap(), json!("building"));
        assert_eq!(to_value(BuildState::Ready).unwrap(), json!("ready"));
    }
}
