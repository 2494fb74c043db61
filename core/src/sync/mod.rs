//! The sync protocol shared by the server's change feed and the browser/edge cache.
//!
//! The server numbers every write with a monotonically increasing sequence ([`Seq`]): a batch
//! of `n` rows takes `n` consecutive numbers, so each [`ChangeRecord`] is one row. A cache asks
//! for "changes since N" and gets a [`ChangeBatch`] covering `(since, until]`. Every batch names
//! the collection's **handle**, an id that changes when the collection is dropped and created
//! again: a cache never applies one collection's feed on another's state. When the server no
//! longer retains every change after N, or the handle differs, it answers `snapshot_required`
//! and the cache loads a snapshot: the server's own [`crate::hnsw::Hnsw`] in its byte format,
//! behind a [`SnapshotHeader`] that says which sequence and handle it reflects.
//!
//! * [`frame`] — the binary forms: CRC-checked frames for batches and headers, and the
//!   snapshot envelope (header frame + index bytes), also what a cache persists;
//! * [`replica`] — a cache's side: [`SyncState`], the handle and watermark an index reflects,
//!   applying batches to it.

mod frame;
mod replica;

pub use frame::{decode_snapshot, encode_snapshot, FRAME_MAGIC, FRAME_VERSION};
pub use replica::{ApplyReport, SyncState};

use serde::{Deserialize, Serialize};

pub use crate::consistency::Seq;
use crate::error::{Error, Result};
use crate::index::VectorId;
use crate::metric::Metric;

/// One change to a collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Change {
    /// Insert, or replace the vector of an existing id.
    Upsert { id: VectorId, vector: Vec<f32> },
    /// Remove an id (a no-op if it is absent).
    Delete { id: VectorId },
}

impl Change {
    /// The id the change is about.
    pub fn id(&self) -> VectorId {
        match self {
            Change::Upsert { id, .. } | Change::Delete { id } => *id,
        }
    }
}

/// A change with the sequence number the server gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub seq: Seq,
    #[serde(flatten)]
    pub change: Change,
}

/// The answer to "changes since `since`": records with `since < seq <= until`, ascending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeBatch {
    pub collection: String,
    /// The collection's handle (changes when it is dropped and created again).
    pub handle: String,
    /// Exclusive lower bound the client asked for.
    pub since: Seq,
    /// Inclusive upper bound covered by this batch; the client's next `since`.
    pub until: Seq,
    pub records: Vec<ChangeRecord>,
    /// More changes exist after `until`.
    pub has_more: bool,
}

impl ChangeBatch {
    /// Checks the batch's invariants: sequences strictly increasing within `(since, until]`,
    /// and one vector of exactly `dim` finite values per upsert.
    pub fn validate(&self, dim: usize) -> Result<()> {
        if self.until < self.since {
            return Err(Error::Malformed {
                format: "change batch",
                reason: format!("until {} is before since {}", self.until, self.since),
            });
        }
        let mut last = self.since;
        for r in &self.records {
            if r.seq <= last || r.seq > self.until {
                return Err(Error::Malformed {
                    format: "change batch",
                    reason: format!(
                        "sequence {} out of order (after {last}, until {})",
                        r.seq, self.until
                    ),
                });
            }
            last = r.seq;
            if let Change::Upsert { vector, .. } = &r.change {
                // One row per record: exactly `dim` values.
                if vector.len() != dim {
                    return Err(Error::DimensionMismatch {
                        expected: dim,
                        got: vector.len(),
                    });
                }
                crate::validate::check_vectors(vector, dim, "vector")?;
            }
        }
        Ok(())
    }
}

/// Describes a snapshot: the collection's live state (or a stated subset) as of `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub collection: String,
    /// The collection's handle when the snapshot was taken.
    pub handle: String,
    pub dim: usize,
    pub metric: Metric,
    /// Every change up to and including this sequence is in the snapshot.
    pub seq: Seq,
    /// Number of live vectors in the snapshot.
    pub count: u64,
    /// True when the snapshot holds the whole collection (not a subset).
    pub complete: bool,
}
