//! The applier: one thread per collection that takes logged writes in sequence order, waits
//! until each is durable, appends it to the change log, applies it to the shards and
//! advances the applied sequence; it also starts checkpoints (automatic, `flush`,
//! `compact`): it freezes the growing segments, and a seal thread writes them while it goes
//! on applying writes. Applying can be paused.

use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;

use super::Collection;
use crate::engine::error::EngineResult;
use crate::engine::schema::CollectionSchema;
use crate::engine::shard::ShardState;
use crate::engine::wal::{WalOp, WalRecord};

pub(super) enum ApplierMsg {
    Record(WalRecord),
    Flush(Sender<EngineResult<()>>),
    Stop,
}

/// Delete records whose count of removed ids is kept for their callers.
const DELETE_COUNTS_KEPT: usize = 4096;

impl Collection {
    pub(super) fn start_applier(self: &Arc<Self>) {
        let (tx, rx) = channel::<ApplierMsg>();
        let me = self.clone();
        let handle = std::thread::Builder::new()
            .name(format!("apply-{}", self.name()))
            .spawn(move || {
                while let Ok(msg) = rx.recv() {
                    match msg {
                        ApplierMsg::Record(record) => {
                            me.wait_unpaused();
                            if !me.wal.wait_durable(record.last_seq()) {
                                tracing::error!(collection = %me.name(), "write-ahead log failed; applier stops");
                                break;
                            }
                            // Into the change log first: a write visible to searches is
                            // also in the feed.
                            if let Err(e) = me.changes.append(&record) {
                                tracing::error!(collection = %me.name(), error = %e, "change log append failed");
                            }
                            me.apply(&record);
                            me.refresh_kept_snapshots();
                            // A checkpoint seals a full growing segment; sealed segments past
                            // the deleted-rows ratio are the optimizer's, in the background.
                            let ratio = me.config.auto_compact_deleted_ratio;
                            let seal_rows = me.config.seal_rows;
                            let (due, overdue, vacuum) =
                                me.shards.iter().fold((false, false, false), |acc, s| {
                                    let s = s.read();
                                    let rows = s.growing.rows();
                                    (
                                        acc.0 || rows >= seal_rows,
                                        acc.1 || rows >= seal_rows.saturating_mul(2),
                                        acc.2 || s.sealed.iter().any(|e| e.mostly_deleted(ratio)),
                                    )
                                });
                            if vacuum {
                                me.optimizer.wake();
                            }
                            // While a seal runs (or just failed), the growing segment keeps
                            // taking writes past `seal_rows`; at twice that, the applier waits
                            // for the seal (sealing cannot keep up: this bounds growing rows).
                            if (due && me.may_checkpoint()) || (overdue && !me.seal_failed()) {
                                me.checkpoint(None);
                            }
                        }
                        ApplierMsg::Flush(reply) => {
                            me.wait_unpaused();
                            me.checkpoint(Some(reply));
                        }
                        ApplierMsg::Stop => break,
                    }
                }
            })
            .expect("spawn applier thread");
        *self.tx.lock() = Some(tx);
        *self.applier.lock() = Some(handle);
    }

    /// Pauses or resumes applying logged writes to the shards (writes are still logged and
    /// acknowledged). Used for maintenance and to observe the consistency levels.
    pub fn set_apply_paused(&self, paused: bool) {
        *self.paused.lock() = paused;
        self.paused_cv.notify_all();
    }

    fn wait_unpaused(&self) {
        let mut p = self.paused.lock();
        while *p {
            self.paused_cv.wait(&mut p);
        }
    }

    /// Applies a record to the shards (applier thread only) and publishes the new sequence;
    /// keeps a delete's count of the ids it removed for [`Collection::delete`].
    fn apply(&self, record: &WalRecord) {
        let schema = self.schema.read().clone();
        let deleted = apply_record(&schema, record, |s, apply| {
            apply(&mut self.shards[s].write())
        });
        if let WalOp::Delete { .. } = &record.op {
            let mut recent = self.deleted.lock();
            if recent.len() == DELETE_COUNTS_KEPT {
                recent.pop_front();
            }
            recent.push_back((record.last_seq(), deleted));
        }
        let mut applied = self.applied.lock();
        *applied = record.last_seq();
        self.applied_cv.notify_all();
    }
}

/// Applies a record to the shards it touches, each once, through `with_shard(s, apply)`,
/// which runs `apply` on shard `s`'s state (the live applier under the shard's write lock,
/// recovery on the shards it is opening). Answers how many ids a delete removed.
pub(super) fn apply_record(
    schema: &CollectionSchema,
    record: &WalRecord,
    mut with_shard: impl FnMut(usize, &mut dyn FnMut(&mut ShardState)),
) -> usize {
    let ids = match &record.op {
        WalOp::Upsert { ids, .. } | WalOp::Delete { ids } => ids,
    };
    let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); schema.num_shards];
    for (i, &id) in ids.iter().enumerate() {
        by_shard[schema.shard_of(id)].push(i);
    }
    let mut deleted = 0;
    for (s, rows) in by_shard.iter().enumerate() {
        if !rows.is_empty() {
            with_shard(s, &mut |shard| {
                deleted += shard.apply(&record.op, rows, schema.dim)
            });
        }
    }
    deleted
}
