//! Binary forms of the sync protocol.
//!
//! A frame is a 4-byte magic, a 2-byte format version, a 1-byte kind, the body and a CRC-32 of
//! all before it. A snapshot is `[header frame length u32 LE][header frame][index bytes]`, the
//! index bytes in [`crate::hnsw`]'s own CRC-checked format; a cache persists itself in the same
//! envelope, so its data, watermark and handle are one blob that is written (and lost) as a
//! whole.
//!
//! The body is in postcard's encoding (unsigned integers as LEB128 varints, `f32` as 4 bytes
//! LE, `bool` as one byte 0/1, strings and sequences prefixed by their varint length, enum
//! variants by their varint index, struct fields in order), written and read here by hand: the
//! browser module carried about 10 KB of serde and postcard code for these three shapes. The
//! tests check the bytes against postcard's own.
//!
//! ```text
//! change batch    collection str, handle str, since varint, until varint,
//!                 records: varint count × (seq varint, change), has_more bool
//!   change        0 (upsert) varint, id varint, vector: varint count × f32
//!               | 1 (delete) varint, id varint
//! snapshot header collection str, handle str, dim varint, metric varint (0 l2, 1 ip, 2 cosine),
//!                 seq varint, count varint, complete bool
//! ```

use super::{Change, ChangeBatch, ChangeRecord, SnapshotHeader};
use crate::error::{Error, Result};
use crate::metric::Metric;

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

/// Variant indexes of a change in the body.
const UPSERT: u64 = 0;
const DELETE: u64 = 1;

fn bad(format: &'static str, reason: String) -> Error {
    Error::Malformed { format, reason }
}

/// A frame being written: the head, then the body's fields, then [`Frame::finish`].
struct Frame(Vec<u8>);

impl Frame {
    fn new(kind: FrameKind, capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity + 11);
        out.extend_from_slice(&FRAME_MAGIC);
        out.extend_from_slice(&FRAME_VERSION.to_le_bytes());
        out.push(kind as u8);
        Frame(out)
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn bool(&mut self, b: bool) {
        self.0.push(u8::from(b));
    }

    fn finish(mut self) -> Vec<u8> {
        let crc = crate::crc32::hash(&self.0);
        self.0.extend_from_slice(&crc.to_le_bytes());
        self.0
    }
}

/// A frame's body being read: every read checks what is left, so a short or damaged body is
/// an error, never a panic or an allocation its bytes cannot back.
struct Body<'a> {
    bytes: &'a [u8],
}

impl<'a> Body<'a> {
    fn fail(&self, what: &str) -> Error {
        bad(
            "sync frame",
            format!("bad body: {what} ({} bytes left)", self.bytes.len()),
        )
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.bytes.len() {
            return Err(self.fail("it ends early"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// A LEB128 varint of a u64.
    fn varint(&mut self) -> Result<u64> {
        self.varint_of(64)
    }

    /// A LEB128 varint of an unsigned integer of `bits` bits, with postcard's rule: at most
    /// `⌈bits / 7⌉` bytes, the last holding no bit past the type's width (an enum's variant
    /// index is a u32).
    fn varint_of(&mut self, bits: u32) -> Result<u64> {
        let most = bits.div_ceil(7);
        let mut out = 0u64;
        for i in 0..most {
            let b = self.take(1)?[0];
            out |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                if i + 1 == most && u32::from(b) >> (bits - 7 * i) != 0 {
                    break;
                }
                return Ok(out);
            }
        }
        Err(self.fail("a bad varint"))
    }

    /// A length of items of `size` bytes each that the rest of the body can hold.
    fn len(&mut self, size: usize) -> Result<usize> {
        let n = self.varint()?;
        match usize::try_from(n) {
            Ok(n) if n.checked_mul(size).is_some_and(|b| b <= self.bytes.len()) => Ok(n),
            _ => Err(self.fail("a length runs past the end")),
        }
    }

    fn str(&mut self) -> Result<String> {
        let n = self.len(1)?;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| self.fail("a string is not UTF-8"))
    }

    fn bool(&mut self) -> Result<bool> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.fail("a bool is neither 0 nor 1")),
        }
    }

    fn f32s(&mut self) -> Result<Vec<f32>> {
        let n = self.len(4)?;
        Ok(self
            .take(n * 4)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// Checks a frame's size, checksum, magic, version and kind; gives its body.
fn open_frame(kind: FrameKind, bytes: &[u8]) -> Result<Body<'_>> {
    let bad = |reason: String| bad("sync frame", reason);
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
    Ok(Body { bytes: &frame[7..] })
}

/// The end of a body: nothing may follow it.
fn close_frame(body: Body<'_>) -> Result<()> {
    if !body.bytes.is_empty() {
        return Err(bad(
            "sync frame",
            format!("{} bytes after the body", body.bytes.len()),
        ));
    }
    Ok(())
}

impl ChangeBatch {
    /// Encodes the batch as a binary frame.
    pub fn to_bytes(&self) -> Vec<u8> {
        let vectors: usize = self
            .records
            .iter()
            .map(|r| match &r.change {
                Change::Upsert { vector, .. } => vector.len() * 4 + 5,
                Change::Delete { .. } => 0,
            })
            .sum();
        let mut f = Frame::new(
            FrameKind::ChangeBatch,
            self.collection.len() + self.handle.len() + 32 + self.records.len() * 22 + vectors,
        );
        f.str(&self.collection);
        f.str(&self.handle);
        f.varint(self.since);
        f.varint(self.until);
        f.varint(self.records.len() as u64);
        for r in &self.records {
            f.varint(r.seq);
            match &r.change {
                Change::Upsert { id, vector } => {
                    f.varint(UPSERT);
                    f.varint(*id);
                    f.varint(vector.len() as u64);
                    for v in vector {
                        f.0.extend_from_slice(&v.to_le_bytes());
                    }
                }
                Change::Delete { id } => {
                    f.varint(DELETE);
                    f.varint(*id);
                }
            }
        }
        f.bool(self.has_more);
        f.finish()
    }

    /// Decodes a frame made by [`ChangeBatch::to_bytes`] (checksum, magic, version, kind, and a body with nothing after it).
    /// The batch's content is the caller's to check, with [`ChangeBatch::validate`] and the
    /// collection's dimension.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut b = open_frame(FrameKind::ChangeBatch, bytes)?;
        let collection = b.str()?;
        let handle = b.str()?;
        let since = b.varint()?;
        let until = b.varint()?;
        // A record takes at least 3 bytes (seq, variant, id).
        let n = b.len(3)?;
        let mut records = Vec::with_capacity(n);
        for _ in 0..n {
            let seq = b.varint()?;
            let change = match b.varint_of(32)? {
                UPSERT => {
                    let id = b.varint()?;
                    Change::Upsert {
                        id,
                        vector: b.f32s()?,
                    }
                }
                DELETE => Change::Delete { id: b.varint()? },
                other => return Err(b.fail(&format!("unknown change variant {other}"))),
            };
            records.push(ChangeRecord { seq, change });
        }
        let has_more = b.bool()?;
        close_frame(b)?;
        Ok(ChangeBatch {
            collection,
            handle,
            since,
            until,
            records,
            has_more,
        })
    }
}

impl SnapshotHeader {
    /// Encodes the header as a binary frame.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut f = Frame::new(
            FrameKind::SnapshotHeader,
            self.collection.len() + self.handle.len() + 40,
        );
        f.str(&self.collection);
        f.str(&self.handle);
        f.varint(self.dim as u64);
        f.varint(match self.metric {
            Metric::L2 => 0,
            Metric::InnerProduct => 1,
            Metric::Cosine => 2,
        });
        f.varint(self.seq);
        f.varint(self.count);
        f.bool(self.complete);
        f.finish()
    }

    /// Decodes a frame made by [`SnapshotHeader::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut b = open_frame(FrameKind::SnapshotHeader, bytes)?;
        let collection = b.str()?;
        let handle = b.str()?;
        let dim = usize::try_from(b.varint()?).map_err(|_| b.fail("dim is too large"))?;
        let metric = match b.varint_of(32)? {
            0 => Metric::L2,
            1 => Metric::InnerProduct,
            2 => Metric::Cosine,
            other => return Err(b.fail(&format!("unknown metric {other}"))),
        };
        let seq = b.varint()?;
        let count = b.varint()?;
        let complete = b.bool()?;
        close_frame(b)?;
        Ok(SnapshotHeader {
            collection,
            handle,
            dim,
            metric,
            seq,
            count,
            complete,
        })
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
    let bad = |reason: String| bad("snapshot", reason);
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
    use crate::index::VectorId;
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    /// The body as postcard encodes it through serde: the format the frames had before they
    /// were written by hand, and the oracle the hand-written bytes are checked against.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum WireChange {
        Upsert(VectorId, Vec<f32>),
        Delete(VectorId),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct WireBatch {
        collection: String,
        handle: String,
        since: u64,
        until: u64,
        records: Vec<(u64, WireChange)>,
        has_more: bool,
    }

    fn wire(b: &ChangeBatch) -> WireBatch {
        WireBatch {
            collection: b.collection.clone(),
            handle: b.handle.clone(),
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
        }
    }

    /// The body of a frame (between the 7-byte head and the CRC).
    fn body(frame: &[u8]) -> &[u8] {
        &frame[7..frame.len() - 4]
    }

    fn metric() -> impl Strategy<Value = Metric> {
        prop_oneof![
            Just(Metric::L2),
            Just(Metric::InnerProduct),
            Just(Metric::Cosine)
        ]
    }

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
        fn batch_bodies_are_postcards(
            since in any::<u64>(),
            seqs in proptest::collection::vec(any::<u64>(), 0..20),
            changes in proptest::collection::vec(change(), 20),
            names in ("[a-z0-9_-]{0,40}", "\\PC{0,12}"),
            has_more in any::<bool>(),
        ) {
            // Any values (the encoding does not validate): varints of every width.
            let records: Vec<ChangeRecord> = seqs.iter().zip(changes)
                .map(|(&seq, change)| ChangeRecord { seq, change })
                .collect();
            let batch = ChangeBatch { collection: names.0, handle: names.1, since, until: since / 2, records, has_more };
            let bytes = batch.to_bytes();
            prop_assert_eq!(body(&bytes), &postcard::to_allocvec(&wire(&batch)).unwrap()[..]);
            prop_assert_eq!(ChangeBatch::from_bytes(&bytes).unwrap(), batch);
        }

        #[test]
        fn header_bodies_are_postcards(
            names in ("[a-z0-9_-]{0,40}", "\\PC{0,12}"),
            dim in any::<u32>(),
            metric in metric(),
            seq in any::<u64>(),
            count in any::<u64>(),
            complete in any::<bool>(),
        ) {
            let header = SnapshotHeader { collection: names.0, handle: names.1, dim: dim as usize, metric, seq, count, complete };
            let bytes = header.to_bytes();
            prop_assert_eq!(body(&bytes), &postcard::to_allocvec(&header).unwrap()[..]);
            prop_assert_eq!(SnapshotHeader::from_bytes(&bytes).unwrap(), header);
        }

        /// Whatever postcard decodes, the hand-written reader decodes the same; what it
        /// refuses, the reader refuses (bodies re-framed with a valid checksum).
        #[test]
        fn damaged_bodies_read_as_postcard_reads_them(
            changes in proptest::collection::vec(change(), 1..6),
            cut in any::<prop::sample::Index>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        ) {
            let records: Vec<ChangeRecord> = changes.into_iter().enumerate()
                .map(|(i, change)| ChangeRecord { seq: 300 + i as u64, change })
                .collect();
            let batch = ChangeBatch { collection: "docs".into(), handle: "h".into(), since: 299, until: 400, records, has_more: true };
            let good = batch.to_bytes();
            let mut b = body(&good).to_vec();
            for (at, v) in edits {
                let i = at.index(b.len());
                b[i] = v;
            }
            b.truncate(cut.index(b.len() + 1));
            let mut f = Frame::new(FrameKind::ChangeBatch, b.len());
            f.0.extend_from_slice(&b);
            let ours = ChangeBatch::from_bytes(&f.finish()).ok();
            let theirs = postcard::take_from_bytes::<WireBatch>(&b).ok()
                .filter(|(_, rest)| rest.is_empty())
                .map(|(w, _)| w);
            prop_assert_eq!(ours.as_ref().map(wire), theirs);
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
