//! Sync protocol types shared by the server's change feed and the browser cache.
//!
//! The server numbers every write with a monotonically increasing sequence ([`Seq`]). A cache
//! asks for "changes since N" and gets a [`ChangeBatch`]; when the server no longer holds the
//! changes after N (they were compacted away) it answers `snapshot_required`, and the cache
//! loads a snapshot, whose [`SnapshotHeader`] says which sequence it reflects.
//!
//! Both types travel as JSON (serde) or in a compact binary frame: a 4-byte magic, a 2-byte
//! format version, a 1-byte kind, the postcard-encoded body and a CRC-32 of all before it.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

pub use crate::consistency::Seq;
use crate::error::{Error, Result};
use crate::index::VectorId;
use crate::metric::Metric;

/// Magic bytes opening every binary sync frame.
pub const FRAME_MAGIC: [u8; 4] = *b"PXSY";
/// Current binary format version.
pub const FRAME_VERSION: u16 = 1;

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
    /// Exclusive lower bound the client asked for.
    pub since: Seq,
    /// Inclusive upper bound covered by this batch; the client's next `since`.
    pub until: Seq,
    pub records: Vec<ChangeRecord>,
    /// More changes exist after `until`.
    pub has_more: bool,
    /// The server no longer holds every change after `since`: load a snapshot instead.
    pub snapshot_required: bool,
}

impl ChangeBatch {
    /// Checks the batch's invariants: sequences strictly increasing within `(since, until]`,
    /// and vectors of dimension `dim` with finite values.
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
                crate::validate::check_vectors(vector, dim, "vector")?;
            }
        }
        Ok(())
    }
}

/// Describes a snapshot: the collection's full live state as of sequence `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub collection: String,
    pub dim: usize,
    pub metric: Metric,
    /// Every change up to and including this sequence is in the snapshot.
    pub seq: Seq,
    /// Number of live vectors in the snapshot.
    pub count: u64,
}

/// Kinds of binary frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum FrameKind {
    ChangeBatch = 1,
    SnapshotHeader = 2,
}

/// Binary form of a record. postcard cannot decode the JSON form's internally tagged,
/// flattened enum (that needs a self-describing format), so the frame uses this plain shape.
#[derive(Serialize, Deserialize)]
enum WireChange {
    Upsert(VectorId, Vec<f32>),
    Delete(VectorId),
}

#[derive(Serialize, Deserialize)]
struct WireBatch {
    collection: String,
    since: Seq,
    until: Seq,
    records: Vec<(Seq, WireChange)>,
    has_more: bool,
    snapshot_required: bool,
}

impl From<&ChangeBatch> for WireBatch {
    fn from(b: &ChangeBatch) -> Self {
        WireBatch {
            collection: b.collection.clone(),
            since: b.since,
            until: b.until,
            records: b
                .records
                .iter()
                .map(|r| {
                    let change = match &r.change {
                        Change::Upsert { id, vector } => WireChange::Upsert(*id, vector.clone()),
                        Change::Delete { id } => WireChange::Delete(*id),
                    };
                    (r.seq, change)
                })
                .collect(),
            has_more: b.has_more,
            snapshot_required: b.snapshot_required,
        }
    }
}

impl From<WireBatch> for ChangeBatch {
    fn from(w: WireBatch) -> Self {
        ChangeBatch {
            collection: w.collection,
            since: w.since,
            until: w.until,
            records: w
                .records
                .into_iter()
                .map(|(seq, change)| ChangeRecord {
                    seq,
                    change: match change {
                        WireChange::Upsert(id, vector) => Change::Upsert { id, vector },
                        WireChange::Delete(id) => Change::Delete { id },
                    },
                })
                .collect(),
            has_more: w.has_more,
            snapshot_required: w.snapshot_required,
        }
    }
}

fn encode_frame<T: Serialize>(kind: FrameKind, value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&FRAME_MAGIC);
    out.extend_from_slice(&FRAME_VERSION.to_le_bytes());
    out.push(kind as u8);
    // Serialising plain data structs into a Vec cannot fail.
    let body = postcard::to_allocvec(value).unwrap_or_default();
    out.extend_from_slice(&body);
    let crc = crate::crc32::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode_frame<T: DeserializeOwned>(kind: FrameKind, bytes: &[u8]) -> Result<T> {
    let bad = |reason: String| Error::Malformed {
        format: "sync frame",
        reason,
    };
    if bytes.len() < 11 {
        return Err(bad(format!("{} bytes is too short", bytes.len())));
    }
    let (frame, crc) = bytes.split_at(bytes.len() - 4);
    let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crate::crc32::hash(frame) != want {
        return Err(bad("checksum mismatch".into()));
    }
    if frame[..4] != FRAME_MAGIC {
        return Err(bad("bad magic".into()));
    }
    let version = u16::from_le_bytes([frame[4], frame[5]]);
    if version != FRAME_VERSION {
        return Err(bad(format!("unsupported version {version}")));
    }
    if frame[6] != kind as u8 {
        return Err(bad(format!(
            "frame kind {} where {} was expected",
            frame[6], kind as u8
        )));
    }
    let (value, rest) = postcard::take_from_bytes(&frame[7..]).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after the body", rest.len())));
    }
    Ok(value)
}

impl ChangeBatch {
    /// Encodes the batch as a binary frame.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode_frame(FrameKind::ChangeBatch, &WireBatch::from(self))
    }

    /// Decodes a frame made by [`ChangeBatch::to_bytes`].
    /// Decodes a frame (checksum, magic, version, kind, and a body with nothing after it).
    /// The batch's content is the caller's to check, with [`ChangeBatch::validate`] and the
    /// collection's dimension.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        decode_frame::<WireBatch>(FrameKind::ChangeBatch, bytes).map(ChangeBatch::from)
    }
}

impl SnapshotHeader {
    /// Encodes the header as a binary frame.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode_frame(FrameKind::SnapshotHeader, self)
    }

    /// Decodes a frame made by [`SnapshotHeader::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        decode_frame(FrameKind::SnapshotHeader, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            (any::<u64>(), proptest::collection::vec(-1e6f32..1e6, 4))
                .prop_map(|(id, vector)| Change::Upsert { id, vector }),
            any::<u64>().prop_map(|id| Change::Delete { id }),
        ]
    }

    proptest! {
        #[test]
        fn batches_roundtrip_binary_and_json(
            since in 0u64..1000,
            changes in proptest::collection::vec(change(), 0..50),
            has_more in any::<bool>(),
        ) {
            let records: Vec<ChangeRecord> = changes.into_iter().enumerate()
                .map(|(i, change)| ChangeRecord { seq: since + 1 + i as u64 * 2, change })
                .collect();
            let until = records.last().map_or(since, |r| r.seq);
            let batch = ChangeBatch { collection: "docs".into(), since, until, records, has_more, snapshot_required: false };
            batch.validate(4).unwrap();
            let bytes = batch.to_bytes();
            prop_assert_eq!(ChangeBatch::from_bytes(&bytes).unwrap(), batch.clone());
            let json = serde_json::to_string(&batch).unwrap();
            prop_assert_eq!(serde_json::from_str::<ChangeBatch>(&json).unwrap(), batch);
        }

        #[test]
        fn any_corruption_is_detected(flip in 0usize..200, bit in 0u8..8) {
            let batch = ChangeBatch { collection: "c".into(), since: 1, until: 2, has_more: false, snapshot_required: false,
                records: vec![ChangeRecord { seq: 2, change: Change::Upsert { id: 7, vector: vec![1.0, 2.0] } }] };
            let mut bytes = batch.to_bytes();
            let i = flip % bytes.len();
            bytes[i] ^= 1 << bit;
            prop_assert!(ChangeBatch::from_bytes(&bytes).is_err());
        }
    }

    #[test]
    fn a_frame_with_bytes_after_its_body_is_refused() {
        let batch = ChangeBatch {
            collection: "c".into(),
            since: 0,
            until: 1,
            has_more: false,
            snapshot_required: false,
            records: vec![ChangeRecord {
                seq: 1,
                change: Change::Delete { id: 1 },
            }],
        };
        let good = batch.to_bytes();
        assert_eq!(ChangeBatch::from_bytes(&good).unwrap(), batch);
        // The same body with a byte appended, and a checksum that matches it.
        let mut padded = good[..good.len() - 4].to_vec();
        padded.push(0);
        let crc = crate::crc32::hash(&padded);
        padded.extend_from_slice(&crc.to_le_bytes());
        let err = ChangeBatch::from_bytes(&padded).unwrap_err();
        assert!(err.to_string().contains("after the body"), "{err}");
    }

    #[test]
    fn json_shape_is_readable() {
        let r = ChangeRecord {
            seq: 5,
            change: Change::Delete { id: 9 },
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"seq": 5, "op": "delete", "id": 9})
        );
    }

    #[test]
    fn invariants_are_checked() {
        let mut batch = ChangeBatch {
            collection: "c".into(),
            since: 10,
            until: 12,
            has_more: false,
            snapshot_required: false,
            records: vec![
                ChangeRecord {
                    seq: 11,
                    change: Change::Delete { id: 1 },
                },
                ChangeRecord {
                    seq: 11,
                    change: Change::Delete { id: 2 },
                },
            ],
        };
        assert!(batch.validate(2).is_err());
        batch.records[1].seq = 12;
        assert!(batch.validate(2).is_ok());
        batch.records[1].change = Change::Upsert {
            id: 2,
            vector: vec![f32::NAN, 1.0],
        };
        assert!(matches!(
            batch.validate(2),
            Err(Error::NonFiniteValue { .. })
        ));
        let header = SnapshotHeader {
            collection: "c".into(),
            dim: 384,
            metric: Metric::Cosine,
            seq: 99,
            count: 1000,
        };
        assert_eq!(
            SnapshotHeader::from_bytes(&header.to_bytes()).unwrap(),
            header
        );
        assert!(SnapshotHeader::from_bytes(&batch.to_bytes()).is_err());
    }
}
