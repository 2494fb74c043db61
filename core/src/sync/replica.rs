//! A cache's side of sync: an index with the handle and watermark it reflects.

use super::{decode_snapshot, encode_snapshot, Change, ChangeBatch, Seq, SnapshotHeader};
use crate::error::{Error, Result};
use crate::hnsw::Hnsw;
use crate::index::VectorId;

/// Where a cache's index stands against a server collection: loaded from a snapshot, then
/// moved forward by change batches. The watermark advances record by record, so an apply that
/// stops part-way (a bad record, a crash before the state is persisted) resumes from where it
/// stopped: records are idempotent (an upsert sets the vector, a delete removes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    pub collection: String,
    /// The handle of the collection this state belongs to.
    pub handle: String,
    /// Every change up to and including this sequence is applied.
    pub watermark: Seq,
    /// The snapshot held the whole collection and nothing has been evicted since (a cache
    /// with a capacity may hold a subset).
    pub complete: bool,
}

/// What one [`SyncState::apply`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub upserted: usize,
    pub deleted: usize,
    /// Records at or below the watermark, skipped (a batch that overlaps what was applied).
    pub skipped: usize,
    /// The watermark after the batch.
    pub watermark: Seq,
}

impl SyncState {
    /// The state and the index of a snapshot made by [`super::encode_snapshot`] (or
    /// [`SyncState::to_bytes`]).
    pub fn from_snapshot(bytes: &[u8]) -> Result<(Self, Hnsw)> {
        let (header, index) = decode_snapshot(bytes)?;
        let index = Hnsw::from_bytes(index)?;
        let cfg = index.config();
        if cfg.dim != header.dim || cfg.metric != header.metric {
            return Err(Error::Malformed {
                format: "snapshot",
                reason: format!(
                    "header says {}-d {}, index is {}-d {}",
                    header.dim,
                    header.metric.as_str(),
                    cfg.dim,
                    cfg.metric.as_str()
                ),
            });
        }
        let state = Self {
            collection: header.collection,
            handle: header.handle,
            watermark: header.seq,
            complete: header.complete,
        };
        Ok((state, index))
    }

    /// The state and `index` as one blob: the snapshot envelope with the watermark as its
    /// sequence.
    pub fn to_bytes(&self, index: &Hnsw) -> Vec<u8> {
        encode_snapshot(&self.header(index), &index.to_bytes())
    }

    /// The header [`SyncState::to_bytes`] writes.
    pub fn header(&self, index: &Hnsw) -> SnapshotHeader {
        let cfg = index.config();
        SnapshotHeader {
            collection: self.collection.clone(),
            handle: self.handle.clone(),
            dim: cfg.dim,
            metric: cfg.metric,
            seq: self.watermark,
            count: index.len() as u64,
            complete: self.complete,
        }
    }

    /// Applies to `index` a batch asked for with `since = self.watermark`. A batch of another
    /// handle, or one starting after the watermark (changes would be missed), is refused with
    /// `snapshot_required` and changes nothing; records at or below the watermark are skipped.
    pub fn apply(&mut self, index: &mut Hnsw, batch: &ChangeBatch) -> Result<ApplyReport> {
        if batch.handle != self.handle {
            return Err(Error::SnapshotRequired {
                reason: format!(
                    "the feed is of collection handle {}, the cache holds handle {}",
                    batch.handle, self.handle
                ),
            });
        }
        if batch.since > self.watermark {
            return Err(Error::SnapshotRequired {
                reason: format!(
                    "the batch starts after sequence {}, the cache is at {}: changes in between would be missed",
                    batch.since, self.watermark
                ),
            });
        }
        batch.validate(index.config().dim)?;
        let mut report = ApplyReport::default();
        let mut i = 0;
        let records = &batch.records;
        while i < records.len() {
            if records[i].seq <= self.watermark {
                report.skipped += 1;
                i += 1;
                continue;
            }
            // A run of upserts of distinct ids goes in as one batch.
            let mut ids: Vec<VectorId> = Vec::new();
            let mut vectors: Vec<f32> = Vec::new();
            let mut j = i;
            while let Some(r) = records.get(j) {
                match &r.change {
                    Change::Upsert { id, vector } if !ids.contains(id) && ids.len() < 256 => {
                        ids.push(*id);
                        vectors.extend_from_slice(vector);
                        j += 1;
                    }
                    _ => break,
                }
            }
            if j > i {
                let done = index.upsert(&ids, &vectors)?;
                // An evicted vector makes the local copy partial.
                self.complete &= done.evicted.is_empty();
                report.upserted += ids.len();
            } else {
                report.deleted += index.delete(&[records[i].change.id()]);
                j = i + 1;
            }
            self.watermark = records[j - 1].seq;
            i = j;
        }
        self.watermark = self.watermark.max(batch.until);
        report.watermark = self.watermark;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hnsw::HnswConfig;
    use crate::metric::Metric;
    use crate::sync::ChangeRecord;

    fn up(seq: Seq, id: u64, v: f32) -> ChangeRecord {
        ChangeRecord {
            seq,
            change: Change::Upsert {
                id,
                vector: vec![v, 1.0],
            },
        }
    }

    fn del(seq: Seq, id: u64) -> ChangeRecord {
        ChangeRecord {
            seq,
            change: Change::Delete { id },
        }
    }

    fn replica() -> (SyncState, Hnsw) {
        let index = Hnsw::new(HnswConfig::new(2, Metric::L2)).unwrap();
        let header = SnapshotHeader {
            collection: "c".into(),
            handle: "h1".into(),
            dim: 2,
            metric: Metric::L2,
            seq: 3,
            count: 0,
            complete: true,
        };
        SyncState::from_snapshot(&encode_snapshot(&header, &index.to_bytes())).unwrap()
    }

    fn batch(handle: &str, since: Seq, until: Seq, records: Vec<ChangeRecord>) -> ChangeBatch {
        ChangeBatch {
            collection: "c".into(),
            handle: handle.into(),
            since,
            until,
            records,
            has_more: false,
        }
    }

    #[test]
    fn batches_move_the_watermark_and_overlaps_are_skipped() {
        let (mut r, mut ix) = replica();
        let b = batch(
            "h1",
            3,
            9,
            vec![up(4, 1, 0.0), up(5, 2, 1.0), up(6, 1, 2.0), del(7, 2)],
        );
        let rep = r.apply(&mut ix, &b).unwrap();
        assert_eq!((rep.upserted, rep.deleted, rep.watermark), (3, 1, 9));
        assert_eq!(ix.get(1).unwrap(), vec![2.0, 1.0]);
        assert!(!ix.contains(2));
        // The same batch again: everything is at or below the watermark.
        let rep = r.apply(&mut ix, &b).unwrap();
        assert_eq!((rep.skipped, rep.watermark), (4, 9));
        // State, watermark and handle come back from the persisted blob.
        let (back, bix) = SyncState::from_snapshot(&r.to_bytes(&ix)).unwrap();
        assert_eq!((back.watermark, back.handle.as_str()), (9, "h1"));
        assert_eq!(bix.get(1).unwrap(), vec![2.0, 1.0]);
    }

    #[test]
    fn another_handle_or_a_gap_needs_a_snapshot() {
        let (mut r, mut ix) = replica();
        let e = r
            .apply(&mut ix, &batch("h2", 3, 4, vec![up(4, 1, 0.0)]))
            .unwrap_err();
        assert_eq!(e.code(), "snapshot_required");
        let e = r
            .apply(&mut ix, &batch("h1", 5, 6, vec![up(6, 1, 0.0)]))
            .unwrap_err();
        assert_eq!(e.code(), "snapshot_required");
        assert_eq!(r.watermark, 3);
        assert!(ix.is_empty());
    }

    #[test]
    fn a_bad_record_stops_at_the_last_good_one() {
        let (mut r, mut ix) = replica();
        let mut b = batch("h1", 3, 6, vec![up(4, 1, 0.0), del(5, 1), up(6, 2, 0.0)]);
        b.records[2].change = Change::Upsert {
            id: 2,
            vector: vec![1.0],
        };
        // validate refuses the whole batch before anything is applied.
        assert!(r.apply(&mut ix, &b).is_err());
        assert_eq!(r.watermark, 3);
        // Two rows in one record is as wrong as one value.
        b.records[2].change = Change::Upsert {
            id: 2,
            vector: vec![1.0, 2.0, 3.0, 4.0],
        };
        let e = r.apply(&mut ix, &b).unwrap_err();
        assert_eq!(e.code(), "dimension_mismatch");
        assert!(ix.is_empty());
    }
}
