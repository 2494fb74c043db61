//! Snapshots for caches: the collection's live rows as the cache's own HNSW
//! ([`proxima_core::hnsw`]), serialised in its byte format behind a sync header, so that a cold
//! cache downloads a ready graph instead of replaying every insert.
//!
//! Policy: a snapshot of the whole collection is kept per storage kind (f32, SQ8, SQ8 with f32
//! rows) once a client has asked for one. A request is answered from the kept one while the
//! change log still reaches back to it (the cache catches up from the feed). Once it lags the
//! head by more than [`REFRESH_CHANGES`] changes or a tenth of its size (checked as writes are
//! applied, and on requests), a background thread brings it forward by applying the retained
//! changes to it (the same code a cache runs), or rebuilds it when the log no longer reaches
//! back. Only the first request, or one the log cannot serve, waits
//! for a build; concurrent ones wait for the same build. Subsets (`limit`, id range) are built
//! per request and not kept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use proxima_core::hnsw::{Hnsw, HnswConfig, Quantization};
use proxima_core::sync::{encode_snapshot, ChangeBatch, SnapshotHeader, SyncState};

use super::{Collection, Subset};
use crate::engine::changelog::Read;
use crate::engine::error::{EngineError, EngineResult};

/// Changes behind the head after which a kept snapshot is brought forward (or a tenth of its
/// vectors, when that is more).
pub const REFRESH_CHANGES: u64 = 1_000;

/// What a snapshot holds and how it stores vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOptions {
    pub quantization: Quantization,
    /// With SQ8: keep the f32 rows too, for re-ranking.
    pub rerank: bool,
    pub subset: Subset,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        Self {
            quantization: Quantization::None,
            rerank: false,
            subset: Subset::default(),
        }
    }
}

/// A built snapshot.
pub struct Snapshot {
    pub header: SnapshotHeader,
    /// `encode_snapshot(header, index bytes)`.
    pub bytes: Vec<u8>,
    pub built_at: Instant,
    pub build_time: Duration,
    /// `bytes` gzip-compressed, made on first use ([`Snapshot::gzip`]).
    gzip: std::sync::OnceLock<Vec<u8>>,
}

impl Snapshot {
    /// The bytes gzip-compressed (level 6), compressed once and kept with the snapshot.
    pub fn gzip(&self) -> &[u8] {
        self.gzip.get_or_init(|| {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(self.bytes.len() / 2),
                flate2::Compression::default(),
            );
            // Writing into a Vec cannot fail.
            let _ = enc.write_all(&self.bytes);
            enc.finish().unwrap_or_default()
        })
    }
}

#[derive(Default)]
struct Slot {
    current: Option<Arc<Snapshot>>,
    refreshing: bool,
}

/// A storage kind: quantization, and whether f32 rows are kept for re-ranking.
type Kind = (Quantization, bool);

/// A kept snapshot per storage kind.
type Slots = HashMap<Kind, Arc<Mutex<Slot>>>;

/// The kept snapshots of one collection, and counters for metrics.
pub struct Snapshots {
    slots: Mutex<Slots>,
    /// The applier looks at the kept snapshots once the change log's head reaches this
    /// (`u64::MAX` while none is kept): they are brought forward as changes accumulate, not
    /// only when one is asked for.
    check_at: AtomicU64,
    /// Builds and refreshes finished.
    pub builds: AtomicU64,
    /// Bytes of the snapshots kept.
    pub kept_bytes: AtomicU64,
}

impl Default for Snapshots {
    fn default() -> Self {
        Self {
            slots: Mutex::default(),
            check_at: AtomicU64::new(u64::MAX),
            builds: AtomicU64::new(0),
            kept_bytes: AtomicU64::new(0),
        }
    }
}

impl Snapshots {
    fn slot(&self, opts: &SnapshotOptions) -> Arc<Mutex<Slot>> {
        self.slots
            .lock()
            .entry((opts.quantization, opts.rerank))
            .or_default()
            .clone()
    }

    fn recount(&self) {
        let total = self
            .slots
            .lock()
            .values()
            .filter_map(|s| s.lock().current.as_ref().map(|c| c.bytes.len() as u64))
            .sum();
        self.kept_bytes.store(total, Ordering::Relaxed);
    }
}

fn config(col: &Collection, opts: &SnapshotOptions) -> HnswConfig {
    let (dim, metric) = col.dim_metric();
    let mut cfg = HnswConfig::new(dim, metric);
    cfg.quantization = opts.quantization;
    cfg.rerank = opts.rerank && opts.quantization != Quantization::None;
    cfg
}

impl Collection {
    /// A snapshot for a cache (see the module's policy). Refused with `snapshot_too_large`
    /// when it would pass `--snapshot-max-bytes`.
    pub fn cache_snapshot(&self, opts: &SnapshotOptions) -> EngineResult<Arc<Snapshot>> {
        if !opts.subset.is_everything() {
            return self.build_snapshot(opts).map(Arc::new);
        }
        // The kept snapshot is brought forward in the background: refuse it too once the
        // collection has outgrown the limit.
        self.check_snapshot_size(&config(self, opts), self.live_rows())?;
        let slot = self.snapshots.slot(opts);
        let mut s = slot.lock();
        if let Some(cur) = s.current.clone() {
            let log = self.changes.stats();
            if cur.header.seq >= log.horizon && cur.header.handle == self.handle() {
                self.refresh_if_behind(&slot, &mut s, opts);
                return Ok(cur);
            }
        }
        // None yet, or the log no longer reaches back to it: build now (holding the slot, so
        // that concurrent requests wait for this build instead of starting their own).
        let snap = Arc::new(self.build_snapshot(opts)?);
        s.current = Some(snap.clone());
        drop(s);
        self.snapshots.recount();
        self.snapshots
            .check_at
            .fetch_min(snap.header.seq + REFRESH_CHANGES, Ordering::Relaxed);
        Ok(snap)
    }

    /// Starts bringing the kept snapshot of `slot` forward when it lags the head by more
    /// than [`REFRESH_CHANGES`] (or a tenth of its vectors) and no refresh is running.
    fn refresh_if_behind(&self, slot: &Arc<Mutex<Slot>>, s: &mut Slot, opts: &SnapshotOptions) {
        let Some(cur) = s.current.clone() else { return };
        let lag = self.changes.head().saturating_sub(cur.header.seq);
        if s.refreshing || lag <= REFRESH_CHANGES.max(cur.header.count / 10) {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        s.refreshing = true;
        let (slot, opts) = (slot.clone(), *opts);
        let spawned = std::thread::Builder::new()
            .name(format!("snapshot-{}", self.name()))
            .spawn(move || me.refresh_snapshot(&slot, &opts, &cur));
        if spawned.is_err() {
            s.refreshing = false;
        }
    }

    /// Called by the applier after each record: once enough changes have accumulated, the
    /// kept snapshots are brought forward in the background. Never waits: a slot busy with a
    /// build is left for the next check.
    pub(crate) fn refresh_kept_snapshots(&self) {
        let head = self.changes.head();
        if head < self.snapshots.check_at.load(Ordering::Relaxed) {
            return;
        }
        // Looked at again every sixteenth of the refresh distance: cheap, and a snapshot is
        // never more than that late to start its refresh.
        self.snapshots
            .check_at
            .store(head + REFRESH_CHANGES / 16, Ordering::Relaxed);
        let slots: Vec<(Kind, Arc<Mutex<Slot>>)> = self
            .snapshots
            .slots
            .lock()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for ((quantization, rerank), slot) in slots {
            if let Some(mut s) = slot.try_lock() {
                let opts = SnapshotOptions {
                    quantization,
                    rerank,
                    subset: Subset::default(),
                };
                self.refresh_if_behind(&slot, &mut s, &opts);
            }
        }
    }

    fn refresh_snapshot(&self, slot: &Mutex<Slot>, opts: &SnapshotOptions, base: &Snapshot) {
        let result = self
            .advance_snapshot(base)
            .transpose()
            .unwrap_or_else(|| self.build_snapshot(opts));
        let mut s = slot.lock();
        s.refreshing = false;
        match result {
            Ok(snap) => {
                if s.current
                    .as_ref()
                    .is_none_or(|c| c.header.seq < snap.header.seq)
                {
                    s.current = Some(Arc::new(snap));
                }
            }
            Err(e) => {
                tracing::warn!(collection = %self.name(), error = %e, "snapshot refresh failed")
            }
        }
        drop(s);
        self.snapshots.recount();
    }

    /// `base` with the retained changes after it applied; `None` when the log no longer
    /// reaches back to it.
    fn advance_snapshot(&self, base: &Snapshot) -> EngineResult<Option<Snapshot>> {
        let started = Instant::now();
        let (mut state, mut index) = SyncState::from_snapshot(&base.bytes)?;
        loop {
            let (records, until, has_more) = match self.changes.read(state.watermark, 10_000)? {
                Read::Changes {
                    records,
                    until,
                    has_more,
                } => (records, until, has_more),
                Read::SnapshotRequired { .. } => return Ok(None),
            };
            let batch = ChangeBatch {
                collection: state.collection.clone(),
                handle: state.handle.clone(),
                since: state.watermark,
                until,
                records,
                has_more,
            };
            state.apply(&mut index, &batch)?;
            if !has_more {
                break;
            }
        }
        let header = state.header(&index);
        self.snapshots.builds.fetch_add(1, Ordering::Relaxed);
        Ok(Some(Snapshot {
            bytes: encode_snapshot(&header, &index.to_bytes()),
            header,
            built_at: Instant::now(),
            build_time: started.elapsed(),
            gzip: Default::default(),
        }))
    }

    /// Builds a snapshot from the live rows.
    fn build_snapshot(&self, opts: &SnapshotOptions) -> EngineResult<Snapshot> {
        let started = Instant::now();
        let cfg = config(self, opts);
        // Refuse before copying anything when even the estimate is too large.
        let rows = match opts.subset.limit {
            Some(l) => (l as u64).min(self.live_rows()),
            None => self.live_rows(),
        };
        self.check_snapshot_size(&cfg, rows)?;
        // Every acknowledged write in (read your writes), unless applying is stalled.
        let _ = self.wait_applied(self.committed_seq());
        let export = self.export(&opts.subset);
        let n = export.ids.len() as u64;
        self.check_snapshot_size(&cfg, n)?;
        let mut index = Hnsw::new(cfg)?;
        for (ids, vectors) in export
            .ids
            .chunks(256)
            .zip(export.vectors.chunks(256 * index.config().dim))
        {
            index.upsert(ids, vectors)?;
        }
        let header = SnapshotHeader {
            collection: self.name(),
            handle: self.handle(),
            dim: index.config().dim,
            metric: index.config().metric,
            seq: export.seq,
            count: n,
            complete: n == export.total,
        };
        let bytes = encode_snapshot(&header, &index.to_bytes());
        self.snapshots.builds.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            collection = %self.name(),
            vectors = n,
            bytes = bytes.len(),
            ms = started.elapsed().as_millis() as u64,
            "cache snapshot built"
        );
        Ok(Snapshot {
            header,
            bytes,
            built_at: Instant::now(),
            build_time: started.elapsed(),
            gzip: Default::default(),
        })
    }

    /// Refuses a snapshot of `vectors` whose estimated size passes `--snapshot-max-bytes`.
    fn check_snapshot_size(&self, cfg: &HnswConfig, vectors: u64) -> EngineResult<()> {
        let limit = self.config.snapshot_max_bytes;
        let bytes = vectors.saturating_mul(cfg.bytes_per_vector() as u64);
        if bytes > limit {
            return Err(EngineError::SnapshotTooLarge {
                vectors,
                bytes,
                limit,
            });
        }
        Ok(())
    }

    /// Snapshot counters (builds finished, bytes kept).
    pub fn snapshot_counters(&self) -> (u64, u64) {
        (
            self.snapshots.builds.load(Ordering::Relaxed),
            self.snapshots.kept_bytes.load(Ordering::Relaxed),
        )
    }
}
