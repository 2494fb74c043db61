//! Binary forms of the sync protocol.
//!
//! A frame is a 4-byte magic, a 2-byte format version, a 1-byte kind, the postcard-encoded
//! body and a CRC-32 of all before it. A snapshot is `[header frame length u32 LE][header
//! frame][index bytes]`, the index bytes in [`crate::hnsw`]'s own CRC-checked format; a cache
//! persists itself in the same envelope, so its data, watermark and handle are one blob that is
//! written (and lost) as a whole.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{Change, ChangeBatch, ChangeRecord, Seq, SnapshotHeader};
use crate::error::{Error, Result};
use crate::index::VectorId;

/// Magic bytes opening every binary sync frame.
pub const FRAME_MAGIC: [u8; 4] = *b"PXSY";
/// Current binary format version.
pub const FRAME_VERSION: u16 = 2;

/// Kinds of binary frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum FrameKind {
    ChangeBatch = 1,
    SnapshotHeader = 2,
}

/// Binary form of a record. postcard cannot decode the JSON form's internally tagged,
/// flattened enum (that needs a self-describing format), so the frame uses this plain shape.
#[derive(Deserialize)]
enum WireChange {
    Upsert(VectorId, Vec<f32>),
    Delete(VectorId),
}

/// [`WireChange`] borrowing the vector, for encoding without copies (same bytes).
#[derive(Serialize)]
enum WireChangeRef<'a> {
    Upsert(VectorId, &'a [f32]),
    Delete(VectorId),
}

#[derive(Deserialize)]
struct WireBatch {
    collection: String,
    handle: String,
    since: Seq,
    until: Seq,
    records: Vec<(Seq, WireChange)>,
    has_more: bool,
}

#[derive(Serialize)]
struct WireBatchRef<'a> {
    collection: &'a str,
    handle: &'a str,
    since: Seq,
    until: Seq,
    records: Vec<(Seq, WireChangeRef<'a>)>,
    has_more: bool,
}

impl<'a> From<&'a ChangeBatch> for WireBatchRef<'a> {
    fn from(b: &'a ChangeBatch) -> Self {
        WireBatchRef {
            collection: &b.collection,
            handle: &b.handle,
            since: b.since,
            until: b.until,
            records: b
                .records
                .iter()
                .map(|r| {
                    let change = match &r.change {
                        Change::Upsert { id, vector } => WireChangeRef::Upsert(*id, vector),
                        Change::Delete { id } => WireChangeRef::Delete(*id),
                    };
                    (r.seq, change)
                })
                .collect(),
            has_more: b.has_more,
        }
    }
}

impl From<WireBatch> for ChangeBatch {
    fn from(w: WireBatch) -> Self {
        ChangeBatch {
            collection: w.collection,
            handle: w.handle,
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
        encode_frame(FrameKind::ChangeBatch, &WireBatchRef::from(self))
    }

    /// Decodes a frame made by [`ChangeBatch::to_bytes`] (checksum, magic, version, kind, and a body with nothing after it).
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

/// A snapshot's bytes: the header frame (length-prefixed), then the index bytes.
pub fn encode_snapshot(header: &SnapshotHeader, index: &[u8]) -> Vec<u8> {
    let head = header.to_bytes();
    let mut out = Vec::with_capacity(4 + head.len() + index.len());
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(index);
    out
}

/// Splits a snapshot made by [`encode_snapshot`] into its checked header and the index bytes
/// (which carry their own checksum, checked when they are loaded).
pub fn decode_snapshot(bytes: &[u8]) -> Result<(SnapshotHeader, &[u8])> {
    let bad = |reason: String| Error::Malformed {
        format: "snapshot",
        reason,
    };
    let len = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| bad(format!("{} bytes is too short", bytes.len())))?;
    let head = bytes
        .get(4..4 + len)
        .ok_or_else(|| bad(format!("header of {len} bytes runs past the end")))?;
    Ok((SnapshotHeader::from_bytes(head)?, &bytes[4 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Metric;
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
            let batch = ChangeBatch { collection: "docs".into(), handle: "h1".into(), since, until, records, has_more };
            batch.validate(4).unwrap();
            let bytes = batch.to_bytes();
            prop_assert_eq!(ChangeBatch::from_bytes(&bytes).unwrap(), batch.clone());
            let json = serde_json::to_string(&batch).unwrap();
            prop_assert_eq!(serde_json::from_str::<ChangeBatch>(&json).unwrap(), batch);
        }

        #[test]
        fn any_corruption_is_detected(flip in 0usize..200, bit in 0u8..8) {
            let batch = ChangeBatch { collection: "c".into(), handle: "h".into(), since: 1, until: 2, has_more: false,
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
            handle: "h".into(),
            since: 0,
            until: 1,
            has_more: false,
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
            handle: "h".into(),
            since: 10,
            until: 12,
            has_more: false,
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
            handle: "h".into(),
            dim: 384,
            metric: Metric::Cosine,
            seq: 99,
            count: 1000,
            complete: true,
        };
        assert_eq!(
            SnapshotHeader::from_bytes(&header.to_bytes()).unwrap(),
            header
        );
        assert!(SnapshotHeader::from_bytes(&batch.to_bytes()).is_err());
    }
}
