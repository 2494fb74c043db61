//! Cache ↔ server sync under random histories: upserts, re-upserts, deletes, checkpoints,
//! drop + re-create, a change log so small that retention keeps cutting below the cache's
//! watermark, and syncs that stop anywhere (part of a batch applied, with or without a crash
//! that loses everything since the cache last persisted itself). After a final sync the
//! cache holds exactly the server's live set with identical vectors, and its search agrees
//! with exact search over that set.
//!
//! The cache side is the code the browser runs (`core::sync::SyncState` applying batches to
//! `core::hnsw::Hnsw`, snapshots in the shared byte format); the server side is the engine's
//! change log and snapshots, called in-process (the HTTP layer around them is tested in
//! `tests/tests/sync_feed.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proxima_core::exact::recall_at_k;
use proxima_core::hnsw::{Hnsw, SearchOptions};
use proxima_core::sync::{ChangeBatch, SyncState};
use proxima_core::{IndexSpec, Metric};
use proxima_server::engine::{
    ChangesRead, Collection, CollectionSchema, Engine, EngineConfig, FsyncPolicy, Retention,
    SnapshotOptions,
};

const DIM: usize = 4;
const IDS: u64 = 40;

#[derive(Debug, Clone)]
enum Op {
    Upsert(Vec<u64>, u64),
    Delete(Vec<u64>),
    Flush,
    Recreate,
    /// A sync that reads pages of `page` changes and stops after `stop` records (all when
    /// `None`); `crash` then loses the unpersisted state.
    Sync {
        page: usize,
        stop: Option<usize>,
        crash: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let ids = proptest::collection::vec(0..IDS, 1..6);
    prop_oneof![
        6 => (ids.clone(), 0u64..1000).prop_map(|(ids, v)| Op::Upsert(ids, v)),
        3 => ids.prop_map(Op::Delete),
        1 => Just(Op::Flush),
        1 => Just(Op::Recreate),
        4 => (1usize..8, proptest::option::of(0usize..12), any::<bool>())
            .prop_map(|(page, stop, crash)| Op::Sync { page, stop, crash }),
    ]
}

fn vector(id: u64, version: u64) -> Vec<f32> {
    (0..DIM)
        .map(|j| {
            let x = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ version.wrapping_mul(0x5851_F42D))
                .wrapping_add(j as u64)
                .wrapping_mul(0xD6E8_FEB8_6659_FD93);
            ((x >> 33) % 2000) as f32 / 100.0 - 10.0
        })
        .collect()
}

fn schema() -> CollectionSchema {
    CollectionSchema {
        name: "docs".into(),
        dim: DIM,
        metric: Metric::L2,
        index: IndexSpec::Flat.into(),
        num_shards: 2,
        auto_id: false,
    }
}

/// The browser cache, reduced to what sync touches: its live state and what it last persisted.
struct Cache {
    live: Option<(SyncState, Hnsw)>,
    persisted: Option<Vec<u8>>,
    snapshots: usize,
}

impl Cache {
    fn load_snapshot(&mut self, col: &Collection) {
        let snap = col.cache_snapshot(&SnapshotOptions::default()).unwrap();
        self.live = Some(SyncState::from_snapshot(&snap.bytes).unwrap());
        self.snapshots += 1;
    }

    /// One sync; returns true when it reached the head.
    fn sync(&mut self, col: &Collection, page: usize, stop: Option<usize>) -> bool {
        let stale = self
            .live
            .as_ref()
            .is_none_or(|(s, _)| s.handle != col.handle());
        if stale {
            self.load_snapshot(col);
        }
        let mut budget = stop.unwrap_or(usize::MAX);
        loop {
            let (state, index) = self.live.as_mut().unwrap();
            let (mut records, until, has_more) =
                match col.changes().read(state.watermark, page).unwrap() {
                    ChangesRead::Changes {
                        records,
                        until,
                        has_more,
                    } => (records, until, has_more),
                    ChangesRead::SnapshotRequired { .. } => {
                        self.load_snapshot(col);
                        continue;
                    }
                };
            // Stopping part-way: the batch the cache applied ends at the last record it took.
            let (until, has_more) = if records.len() > budget {
                records.truncate(budget);
                (records.last().map_or(state.watermark, |r| r.seq), true)
            } else {
                (until, has_more)
            };
            budget -= records.len();
            let batch = ChangeBatch {
                collection: state.collection.clone(),
                handle: state.handle.clone(),
                since: state.watermark,
                until,
                records,
                has_more,
            };
            state.apply(index, &batch).unwrap();
            if !has_more {
                return true;
            }
            if budget == 0 {
                return false;
            }
        }
    }

    fn persist(&mut self) {
        if let Some((state, index)) = &self.live {
            self.persisted = Some(state.to_bytes(index));
        }
    }

    fn crash(&mut self) {
        self.live = self
            .persisted
            .as_ref()
            .map(|b| SyncState::from_snapshot(b).unwrap());
    }
}

fn engine_config(dir: &std::path::Path, retain: u64) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.fsync = FsyncPolicy::Never;
    c.seal_rows = 16;
    // Sealed segments merge in the histories that keep 40 changes (a third): merging makes a
    // history about twice as long to run.
    c.merge_factor = if retain == 40 { 4 } else { 0 };
    c.consistency_timeout = Duration::from_secs(20);
    c.search_threads = 1;
    c.changes = Retention {
        max_records: retain,
        // 1 KiB files: about twenty changes each, so retention cuts often.
        max_bytes: 8 << 10,
        max_age: Duration::from_secs(3600),
    };
    c
}

fn run(ops: &[Op], retain: u64) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(engine_config(dir.path(), retain)).unwrap();
    let mut col: Arc<Collection> = engine.create_collection(schema()).unwrap();
    let mut model: BTreeMap<u64, Vec<f32>> = BTreeMap::new();
    let mut cache = Cache {
        live: None,
        persisted: None,
        snapshots: 0,
    };
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Upsert(ids, v) => {
                let mut ids = ids.clone();
                ids.sort_unstable();
                ids.dedup();
                let vectors: Vec<f32> = ids.iter().flat_map(|&id| vector(id, *v)).collect();
                col.insert(&vectors, Some(&ids)).unwrap();
                for &id in &ids {
                    model.insert(id, vector(id, *v));
                }
            }
            Op::Delete(ids) => {
                col.delete(ids).unwrap();
                for id in ids {
                    model.remove(id);
                }
            }
            Op::Flush => col.flush().unwrap(),
            Op::Recreate => {
                engine.drop_collection("docs").unwrap();
                col = engine.create_collection(schema()).unwrap();
                model.clear();
            }
            Op::Sync { page, stop, crash } => {
                // The feed serves applied writes.
                col.count();
                let done = cache.sync(&col, *page, *stop);
                if done {
                    // Caught up: the cache is the server's live set.
                    let (_, index) = cache.live.as_ref().unwrap();
                    for (id, v) in &model {
                        let got = index.get(*id);
                        prop_assert_eq!(
                            got.as_ref(),
                            Some(v),
                            "step {}: vector of {} differs",
                            step,
                            id
                        );
                    }
                    prop_assert_eq!(index.len(), model.len(), "step {}", step);
                }
                if *crash {
                    cache.crash();
                } else if done {
                    cache.persist();
                }
            }
        }
    }
    col.count();
    // A cache that persisted before a crash (or never synced) converges too.
    cache.crash();
    prop_assert!(cache.sync(&col, 10_000, None));
    let (state, index) = cache.live.as_ref().unwrap();
    prop_assert_eq!(&state.handle, &col.handle());
    let mut held: Vec<u64> = index.ids().collect();
    held.sort_unstable();
    let want: Vec<u64> = model.keys().copied().collect();
    prop_assert_eq!(&held, &want, "ids differ from the server's live set");
    for (id, v) in &model {
        let got = index.get(*id);
        prop_assert_eq!(got.as_ref(), Some(v), "vector of {} differs", id);
    }
    // Search agrees with exact search over the same set.
    if !model.is_empty() {
        let k = 5.min(model.len());
        let mut recall = 0.0;
        let queries: Vec<u64> = (0..8).collect();
        for &q in &queries {
            let query = vector(q + 1000, 7);
            let mut exact: Vec<(f32, u64)> = model
                .iter()
                .map(|(id, v)| {
                    (
                        v.iter().zip(&query).map(|(a, b)| (a - b) * (a - b)).sum(),
                        *id,
                    )
                })
                .collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let truth: Vec<u64> = exact.iter().take(k).map(|e| e.1).collect();
            let got = index.search(&query, k, &SearchOptions::default()).unwrap();
            recall += recall_at_k(&[got], &[truth], k);
        }
        recall /= queries.len() as f64;
        prop_assert!(
            recall >= 0.95,
            "recall@{} {} against exact search",
            k,
            recall
        );
    }
    engine.close();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROXIMA_SYNC_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
        max_shrink_iters: 200,
        .. ProptestConfig::default()
    })]

    #[test]
    fn a_cache_converges_on_the_server_after_any_history(
        ops in proptest::collection::vec(op(), 1..60),
        retain in prop_oneof![Just(8u64), Just(40), Just(1_000_000)],
    ) {
        run(&ops, retain)?;
    }
}

#[test]
fn retention_below_the_watermark_forces_a_snapshot_then_the_cache_catches_up() {
    let ops: Vec<Op> = (0..60)
        .map(|i| Op::Upsert(vec![i % IDS], i))
        .chain([Op::Sync {
            page: 3,
            stop: None,
            crash: false,
        }])
        .chain((0..200).map(|i| Op::Upsert(vec![i % IDS, (i + 7) % IDS], i + 100)))
        .chain([Op::Delete(vec![1, 2, 3]), Op::Flush])
        .collect();
    run(&ops, 8).unwrap();
}
