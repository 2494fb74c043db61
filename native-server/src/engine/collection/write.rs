//! Writes and point reads: validating vectors, logging a write (its sequence and the
//! bounded-staleness window), insert/upsert, delete, get and count.

use std::sync::atomic::Ordering;
use std::time::Instant;

use proxima_core::consistency::Seq;
use proxima_core::validate::{check_ids, check_nonzero, check_norms, check_vectors};
use proxima_core::Error as CoreError;

use super::applier::ApplierMsg;
use super::Collection;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::types::{DeleteAck, WriteAck};
use crate::engine::wal::WalOp;

impl Collection {
    pub(super) fn prepare(
        &self,
        vectors: &[f32],
        what: &'static str,
    ) -> EngineResult<(Vec<f32>, usize)> {
        let schema = self.schema.read();
        let n = check_vectors(vectors, schema.dim, what)?;
        check_norms(vectors, schema.dim)?;
        if schema.metric.normalizes() {
            check_nonzero(vectors, schema.dim)?;
        }
        let mut v = vectors.to_vec();
        schema.metric.prepare(&mut v, schema.dim);
        Ok((v, n))
    }

    fn log(&self, op: WalOp) -> EngineResult<Seq> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(EngineError::Closed);
        }
        let tx = self.tx.lock().clone().ok_or(EngineError::Closed)?;
        let seq = self.wal.append(op, |record| {
            let _ = tx.send(ApplierMsg::Record(record));
        })?;
        let mut clock = self.clock.lock();
        clock.committed = clock.committed.max(seq);
        let now = Instant::now();
        clock.recent.push_back((now, seq));
        // Pruned here too, so that a write-only load keeps only the window's entries.
        clock.advance(now.checked_sub(self.config.bounded_staleness));
        Ok(seq)
    }

    /// Inserts vectors (row-major). With `auto_id` the engine assigns the ids; otherwise
    /// `ids` is required and an existing id's vector is replaced (upsert).
    pub fn insert(&self, vectors: &[f32], ids: Option<&[u64]>) -> EngineResult<WriteAck> {
        let (vectors, n) = self.prepare(vectors, "vector")?;
        let auto_id = self.schema.read().auto_id;
        let ids: Vec<u64> = match (auto_id, ids) {
            (true, Some(_)) => return Err(EngineError::IdsNotAllowed),
            (true, None) => {
                let first = self.next_auto_id.fetch_add(n as u64, Ordering::SeqCst);
                (first..first + n as u64).collect()
            }
            (false, None) => return Err(EngineError::IdsRequired),
            (false, Some(ids)) => {
                check_ids(ids, n)?;
                ids.to_vec()
            }
        };
        let seq = self.log(WalOp::Upsert {
            ids: ids.clone(),
            vectors,
        })?;
        Ok(WriteAck { ids, seq })
    }

    /// Deletes ids (absent ids are ignored). `deleted` counts the ids this delete removed,
    /// counted when it was applied (returns once it is).
    pub fn delete(&self, ids: &[u64]) -> EngineResult<DeleteAck> {
        if ids.is_empty() {
            return Err(CoreError::EmptyBatch { what: "id" }.into());
        }
        let mut unique: Vec<u64> = ids.to_vec();
        unique.sort_unstable();
        unique.dedup();
        // Not while applying is stalled: the delete would wait for its count.
        let committed = self.clock.lock().committed;
        self.wait_applied(committed)?;
        let seq = self.log(WalOp::Delete {
            ids: unique.clone(),
        })?;
        // Counted by the applier as it removes the ids: concurrent deletes of one id count
        // it once between them.
        let counted = self.wait_applied(seq).ok().and_then(|_| {
            let recent = self.deleted.lock();
            recent
                .iter()
                .rev()
                .find(|(s, _)| *s == seq)
                .map(|&(_, n)| n)
        });
        let deleted = counted.unwrap_or_else(|| {
            // Applying stalled after the delete was logged: the ids still there now.
            let schema = self.schema();
            unique
                .iter()
                .filter(|&&id| {
                    self.shards[schema.shard_of(id)]
                        .read()
                        .locations
                        .contains_key(&id)
                })
                .count()
        });
        Ok(DeleteAck { deleted, seq })
    }

    /// The stored vector of `id` (normalised for cosine collections), at Strong consistency.
    pub fn get(&self, id: u64) -> EngineResult<Vec<f32>> {
        let committed = self.clock.lock().committed;
        self.wait_applied(committed)?;
        let schema = self.schema();
        self.shards[schema.shard_of(id)]
            .read()
            .get(id, schema.dim)
            .ok_or(EngineError::IdNotFound { id })
    }

    /// Live vectors, counting every acknowledged write (waits for them to be applied, up to
    /// the consistency timeout; if applying is paused, the applied state's count).
    pub fn count(&self) -> u64 {
        let committed = self.clock.lock().committed;
        let _ = self.wait_applied(committed);
        self.applied_count()
    }

    pub(super) fn applied_count(&self) -> u64 {
        self.shards.iter().map(|s| s.read().count() as u64).sum()
    }
}
