//! What the sync feed and snapshots need from a collection: its handle, its change log, and
//! its live rows.

use proxima_core::consistency::Seq;

use super::Collection;
use crate::engine::changelog::ChangeLog;

/// Which live rows an [`Collection::export`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Subset {
    /// Ids at least this.
    pub id_min: Option<u64>,
    /// Ids at most this.
    pub id_max: Option<u64>,
    /// Of those, the `limit` highest ids (with automatic ids: the most recent inserts).
    pub limit: Option<usize>,
}

impl Subset {
    /// True when it takes every row.
    pub fn is_everything(&self) -> bool {
        self.id_min.is_none() && self.id_max.is_none() && self.limit.is_none()
    }

    fn admits(&self, id: u64) -> bool {
        self.id_min.is_none_or(|m| id >= m) && self.id_max.is_none_or(|m| id <= m)
    }
}

/// Live rows of a collection, ascending by id.
pub struct Export {
    /// Every write up to this sequence is reflected (writes after it may be too: applying
    /// them again is harmless, as a cache does when it replays the feed from `seq`).
    pub seq: Seq,
    pub ids: Vec<u64>,
    pub vectors: Vec<f32>,
    /// Live rows in the whole collection.
    pub total: u64,
}

impl Collection {
    /// The collection's sync handle.
    pub fn handle(&self) -> String {
        self.handle.read().clone()
    }

    /// The retained change log the sync feed reads.
    pub fn changes(&self) -> &ChangeLog {
        &self.changes
    }

    /// Waits until the change log holds every acknowledged write up to `seq` (a client may
    /// ask for changes since a sequence a write just acknowledged, before the applier has
    /// logged it). A `seq` above every acknowledged write returns at once.
    pub fn wait_for_feed(&self, seq: Seq) -> crate::engine::EngineResult<()> {
        if seq <= self.changes.head() || seq > self.committed_seq() {
            return Ok(());
        }
        // The applier logs a record before applying it.
        self.wait_applied(seq).map(|_| ())
    }

    /// Number of live rows in the applied state.
    pub fn live_rows(&self) -> u64 {
        self.applied_count()
    }

    /// Copies the live rows `subset` takes, as of the applied state.
    pub fn export(&self, subset: &Subset) -> Export {
        let dim = self.schema.read().dim;
        // The sequence is read before the rows: rows may include later writes, never miss
        // earlier ones.
        let seq = self.applied_seq();
        let mut rows: Vec<(u64, Vec<f32>)> = Vec::new();
        let mut total = 0u64;
        for shard in &self.shards {
            let shard = shard.read();
            total += shard.count() as u64;
            for row in shard.growing.live.ones() {
                let id = shard.growing.ids[row];
                if subset.admits(id) {
                    rows.push((
                        id,
                        shard.growing.vectors[row * dim..(row + 1) * dim].to_vec(),
                    ));
                }
            }
            if let Some(f) = &shard.frozen {
                for row in f.live.ones() {
                    let id = f.ids[row];
                    if subset.admits(id) {
                        rows.push((id, f.vectors[row * dim..(row + 1) * dim].to_vec()));
                    }
                }
            }
            for e in &shard.sealed {
                for row in e.live.ones() {
                    let id = e.segment.ids()[row];
                    if subset.admits(id) {
                        rows.push((id, e.segment.vector(row).to_vec()));
                    }
                }
            }
        }
        rows.sort_unstable_by_key(|r| r.0);
        if let Some(limit) = subset.limit {
            let cut = rows.len().saturating_sub(limit);
            rows.drain(..cut);
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut vectors = Vec::with_capacity(rows.len() * dim);
        for (id, v) in rows {
            ids.push(id);
            vectors.extend_from_slice(&v);
        }
        Export {
            seq,
            ids,
            vectors,
            total,
        }
    }
}
