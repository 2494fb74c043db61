//! Engine tests: writes, deletes, upserts, recovery, indexes, compaction, consistency, shards.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use proxima_core::{ConsistencyLevel, Error as CoreError, IndexSpec, Metric, SearchParams};

use super::*;

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.seal_rows = 1_000_000;
    c.consistency_timeout = Duration::from_secs(20);
    c
}

fn schema(
    name: &str,
    dim: usize,
    index: impl Into<proxima_core::IndexRequest>,
    shards: usize,
) -> CollectionSchema {
    CollectionSchema {
        name: name.into(),
        dim,
        metric: Metric::L2,
        index: index.into(),
        num_shards: shards,
        auto_id: false,
    }
}

fn vector(id: u64, version: u64, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|j| {
            let x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ version.wrapping_mul(31)
                ^ (j as u64 * 7919);
            ((x >> 11) % 10_000) as f32 / 100.0
        })
        .collect()
}

fn all_ids(c: &Collection, dim: usize) -> Vec<u64> {
    let k = (c.count() as usize).clamp(1, 10_000);
    let r = c
        .search(
            &vec![0.0; dim],
            &SearchParams::new(k),
            ConsistencyLevel::Strong,
            None,
        )
        .unwrap();
    let mut ids: Vec<u64> = r.hits[0].iter().map(|h| h.id).collect();
    ids.sort_unstable();
    ids
}

#[test]
fn writes_searches_upserts_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let c = engine
        .create_collection(schema("docs", 4, IndexSpec::Flat, 1))
        .unwrap();
    let ack = c
        .insert(&[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0], Some(&[10, 20]))
        .unwrap();
    assert_eq!(ack.ids, vec![10, 20]);
    assert_eq!(ack.seq, 2);
    let r = c
        .search(
            &[0.9, 1.0, 1.0, 1.0],
            &SearchParams::new(1),
            ConsistencyLevel::Strong,
            None,
        )
        .unwrap();
    assert_eq!(r.hits[0][0].id, 20);
    assert!(r.seq >= 2);
    // Upsert replaces, count stays exact.
    c.insert(&[5.0, 5.0, 5.0, 5.0], Some(&[10])).unwrap();
    assert_eq!(c.get(10).unwrap(), vec![5.0; 4]);
    assert_eq!(c.count(), 2);
    let del = c.delete(&[20, 20, 999]).unwrap();
    assert_eq!(del.deleted, 1);
    assert!(matches!(c.get(20), Err(EngineError::IdNotFound { id: 20 })));
    assert_eq!(all_ids(&c, 4), vec![10]);
    assert_eq!(c.count(), 1);
    assert_eq!(engine.list(), vec!["docs".to_string()]);
}

#[test]
fn bad_input_is_rejected_with_typed_errors_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let c = engine
        .create_collection(schema("c", 3, IndexSpec::Flat, 1))
        .unwrap();
    let invalid = |r: EngineResult<WriteAck>| match r {
        Err(EngineError::Invalid(e)) => e,
        other => panic!("expected a validation error, got {other:?}"),
    };
    assert_eq!(
        invalid(c.insert(&[1.0, 2.0], Some(&[1]))),
        CoreError::DimensionMismatch {
            expected: 3,
            got: 2
        }
    );
    assert!(matches!(
        invalid(c.insert(&[1.0, f32::NAN, 2.0], Some(&[1]))),
        CoreError::NonFiniteValue { row: 0, col: 1, .. }
    ));
    assert_eq!(
        invalid(c.insert(&[], Some(&[]))),
        CoreError::EmptyBatch { what: "vector" }
    );
    assert_eq!(
        invalid(c.insert(&[1.0; 6], Some(&[1, 1]))),
        CoreError::DuplicateId { id: 1 }
    );
    assert!(matches!(
        c.insert(&[1.0; 3], None),
        Err(EngineError::IdsRequired)
    ));
    // Norms whose distances would overflow f32 (any metric), zero vectors under cosine.
    assert!(matches!(
        invalid(c.insert(&[1.0, 2.0, 3.0, 3e38, 0.0, 0.0], Some(&[1, 2]))),
        CoreError::VectorTooLarge { row: 1, .. }
    ));
    let mut cos = schema("cos", 3, IndexSpec::Flat, 1);
    cos.metric = Metric::Cosine;
    let cos = engine.create_collection(cos).unwrap();
    assert_eq!(
        invalid(cos.insert(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0], Some(&[1, 2]))),
        CoreError::ZeroVector { row: 1 }
    );
    assert!(matches!(
        cos.search(
            &[0.0; 3],
            &SearchParams::new(1),
            ConsistencyLevel::Strong,
            None
        ),
        Err(EngineError::Invalid(CoreError::ZeroVector { row: 0 }))
    ));
    assert_eq!(cos.committed_seq(), 0);
    assert_eq!(
        c.committed_seq(),
        0,
        "nothing may be written by a rejected request"
    );
    for k in [0, 10_001] {
        assert!(matches!(
            c.search(
                &[1.0; 3],
                &SearchParams::new(k),
                ConsistencyLevel::Strong,
                None
            ),
            Err(EngineError::Invalid(CoreError::KOutOfRange { .. }))
        ));
    }
    // k within max_k and queries within max_queries, but too many hits for one answer.
    assert!(matches!(
        c.search(
            &vec![1.0; 3 * 101],
            &SearchParams::new(10_000),
            ConsistencyLevel::Strong,
            None
        ),
        Err(EngineError::Invalid(CoreError::ResultTooLarge {
            queries: 101,
            k: 10_000,
            max: 1_000_000
        }))
    ));
    assert!(matches!(
        engine.create_collection(schema("c", 3, IndexSpec::Flat, 1)),
        Err(EngineError::CollectionExists { .. })
    ));
    assert!(matches!(
        engine.collection("nope"),
        Err(EngineError::CollectionNotFound { .. })
    ));
    for bad in [
        IndexSpec::IvfFlat { nlist: 0 },
        IndexSpec::Hnsw {
            m: 0,
            ef_construction: 10,
        },
        IndexSpec::IvfPq {
            nlist: 4,
            m: 2,
            nbits: 8,
        },
    ] {
        assert!(
            engine.create_collection(schema("x", 3, bad, 1)).is_err(),
            "{bad}"
        );
    }
    assert!(engine
        .create_collection(schema("../evil", 3, IndexSpec::Flat, 1))
        .is_err());
    let mut auto = schema("auto", 2, IndexSpec::Flat, 2);
    auto.auto_id = true;
    let a = engine.create_collection(auto).unwrap();
    assert!(matches!(
        a.insert(&[1.0, 2.0], Some(&[5])),
        Err(EngineError::IdsNotAllowed)
    ));
    let ack = a.insert(&[1.0, 2.0, 3.0, 4.0], None).unwrap();
    assert_eq!(ack.ids.len(), 2);
    assert_ne!(ack.ids[0], ack.ids[1]);
}

#[test]
fn deletes_alone_trigger_compaction_past_the_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let c = engine
        .create_collection(schema("d", 4, IndexSpec::Flat, 1))
        .unwrap();
    let ids: Vec<u64> = (0..1000).collect();
    let data: Vec<f32> = ids.iter().flat_map(|&i| vector(i, 0, 4)).collect();
    c.insert(&data, Some(&ids)).unwrap();
    c.flush().unwrap();
    let sealed_rows = |c: &Collection| -> usize {
        c.describe()
            .segments
            .iter()
            .filter(|s| s.state == "sealed")
            .map(|s| s.rows)
            .sum()
    };
    // 25 % deleted: below the default ratio (30 %), nothing is rewritten.
    c.delete(&ids[..250]).unwrap();
    assert_eq!(c.count(), 750);
    assert_eq!(sealed_rows(&c), 1000);
    // 40 %: the applier compacts without a flush; the deleted rows leave disk and memory.
    c.delete(&ids[250..400]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sealed_rows(&c) != 600 {
        assert!(std::time::Instant::now() < deadline, "no compaction");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(all_ids(&c, 4), ids[400..].to_vec());
}

#[test]
fn the_largest_ids_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(config(dir.path())).unwrap();
        let c = engine
            .create_collection(schema("big", 2, IndexSpec::Flat, 2))
            .unwrap();
        c.insert(&[1.0, 2.0, 3.0, 4.0], Some(&[u64::MAX, u64::MAX - 1]))
            .unwrap();
        engine.close();
    }
    // Replaying the log computes the next automatic id past the largest one: no overflow.
    let engine = Engine::open(config(dir.path())).unwrap();
    let c = engine.collection("big").unwrap();
    assert_eq!(c.get(u64::MAX).unwrap(), vec![1.0, 2.0]);
    assert_eq!(c.count(), 2);
}

#[test]
fn restart_recovers_wal_and_segments_and_deletes_stay_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 4;
    {
        let engine = Engine::open(config(dir.path())).unwrap();
        let c = engine
            .create_collection(schema("r", dim, IndexSpec::Flat, 2))
            .unwrap();
        for id in 0..50u64 {
            c.insert(&vector(id, 0, dim), Some(&[id])).unwrap();
        }
        c.flush().unwrap();
        c.delete(&[3, 4, 5]).unwrap(); // sealed rows, deleted after the checkpoint
        c.insert(&vector(7, 1, dim), Some(&[7])).unwrap(); // upsert of a sealed row
        for id in 50..60u64 {
            c.insert(&vector(id, 0, dim), Some(&[id])).unwrap();
        }
        c.delete(&[55]).unwrap(); // growing row
        engine.close();
    }
    let engine = Engine::open(config(dir.path())).unwrap();
    let c = engine.collection("r").unwrap();
    assert_eq!(c.count(), 60 - 4);
    let ids = all_ids(&c, dim);
    for gone in [3, 4, 5, 55] {
        assert!(!ids.contains(&gone), "deleted id {gone} came back");
    }
    assert_eq!(c.get(7).unwrap(), vector(7, 1, dim));
    assert_eq!(c.get(8).unwrap(), vector(8, 0, dim));
    // Checkpoint the deletions, restart again, compact, restart again.
    c.flush().unwrap();
    drop(c);
    drop(engine);
    let engine = Engine::open(config(dir.path())).unwrap();
    let c = engine.collection("r").unwrap();
    assert_eq!(c.count(), 56);
    c.compact().unwrap();
    let info = c.describe();
    assert_eq!(
        info.segments
            .iter()
            .filter(|s| s.state == "sealed")
            .map(|s| s.rows)
            .sum::<usize>(),
        56
    );
    drop(c);
    drop(engine);
    // Leftovers of an interrupted checkpoint or build go on open; nothing else does.
    let root = dir.path().join("collections/r");
    let segments: Vec<_> = std::fs::read_dir(root.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let leftovers = [
        root.join("segments/9999999999"),
        segments[0].join("index-77.faiss"),
        segments[0].join("live.tmp"),
        root.join("manifest.tmp"),
    ];
    std::fs::create_dir_all(&leftovers[0]).unwrap();
    std::fs::write(leftovers[0].join("rows.bin"), b"x").unwrap();
    for f in &leftovers[1..] {
        std::fs::write(f, b"x").unwrap();
    }
    let engine = Engine::open(config(dir.path())).unwrap();
    for f in &leftovers {
        assert!(!f.exists(), "{} left", f.display());
    }
    assert!(segments.iter().all(|s| s.join("rows.bin").exists()));
    let c = engine.collection("r").unwrap();
    assert_eq!(all_ids(&c, dim).len(), 56);
    assert_eq!(c.get(7).unwrap(), vector(7, 1, dim));
    engine.drop_collection("r").unwrap();
    assert!(engine.list().is_empty());
    assert!(!dir.path().join("collections/r").exists());
}

fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    crate::index::clustered(n, dim, seed, 64, 0.2)
}

#[test]
fn background_index_build_hot_swaps_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 16;
    let n = 6000;
    let mut cfg = config(dir.path());
    cfg.seal_rows = 3000;
    let data = clustered(n, dim, 7);
    let ids: Vec<u64> = (0..n as u64).collect();
    {
        let engine = Engine::open(cfg.clone()).unwrap();
        let mut s = schema("ivf", dim, IndexSpec::IvfFlat { nlist: 32 }, 1);
        s.metric = Metric::Cosine;
        let c = engine.create_collection(s).unwrap();
        for chunk in 0..6 {
            let r = chunk * 1000..(chunk + 1) * 1000;
            c.insert(&data[r.start * dim..r.end * dim], Some(&ids[r]))
                .unwrap();
            // Searching while segments seal and indexes build never fails.
            let res = c
                .search(
                    &data[..dim],
                    &SearchParams::new(5),
                    ConsistencyLevel::Strong,
                    None,
                )
                .unwrap();
            assert_eq!(res.hits[0][0].id, 0);
        }
        // The applier seals at 3,000 rows on its own time; a flush returns once it has.
        c.flush().unwrap();
        assert!(c.wait_index_ready(Duration::from_secs(60)));
        let info = c.describe();
        let sealed: Vec<_> = info
            .segments
            .iter()
            .filter(|s| s.state == "sealed")
            .collect();
        assert_eq!(sealed.len(), 2);
        assert!(
            sealed.iter().all(|s| s.index.state == "ready"),
            "{sealed:?}"
        );
        assert!(info.memory.actual_bytes > 0 && info.memory.estimated_bytes > 0);
        c.delete(&[0]).unwrap();
        let res = c
            .search(
                &data[..dim],
                &SearchParams::new(5).with_nprobe(32),
                ConsistencyLevel::Strong,
                None,
            )
            .unwrap();
        assert!(res.hits[0].iter().all(|h| h.id != 0));
        assert_eq!(res.hits[0].len(), 5);
        // Rebuild as HNSW: the IVF index serves until each HNSW index is swapped in.
        let generation = c
            .rebuild_index(IndexSpec::Hnsw {
                m: 16,
                ef_construction: 64,
            })
            .unwrap();
        assert!(generation >= 2);
        assert!(c.wait_index_ready(Duration::from_secs(120)));
        assert_eq!(
            c.index_status().spec,
            IndexSpec::Hnsw {
                m: 16,
                ef_construction: 64
            }
            .into()
        );
        engine.close();
    }
    let engine = Engine::open(cfg).unwrap();
    let c = engine.collection("ivf").unwrap();
    let status = c.index_status();
    assert_eq!(
        status.state, "ready",
        "indexes load from disk instead of rebuilding"
    );
    let res = c
        .search(
            &data[dim..2 * dim],
            &SearchParams::new(5).with_ef(64),
            ConsistencyLevel::Strong,
            None,
        )
        .unwrap();
    assert_eq!(res.hits[0][0].id, 1);
    assert!(
        res.hits[0].iter().all(|h| h.id != 0),
        "deleted id came back after restart"
    );
}

#[test]
fn heavily_deleted_and_large_k_searches_still_return_k_live_hits() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 16;
    let n = 3000;
    let mut cfg = config(dir.path());
    cfg.seal_rows = n;
    // Deleted rows stay in the index until compaction: here, never.
    cfg.auto_compact_deleted_ratio = 1.0;
    let data = clustered(n, dim, 11);
    // Ids unlike row numbers, so a hit labelled by row instead of id cannot pass.
    let ids: Vec<u64> = (0..n as u64).map(|i| i * 7 + 1_000_000).collect();
    let engine = Engine::open(cfg).unwrap();
    for (name, spec) in [
        (
            "hnsw",
            IndexSpec::Hnsw {
                m: 16,
                ef_construction: 64,
            },
        ),
        ("ivf", IndexSpec::IvfFlat { nlist: 32 }),
    ] {
        let c = engine
            .create_collection(schema(name, dim, spec, 1))
            .unwrap();
        c.insert(&data, Some(&ids)).unwrap();
        c.flush().unwrap();
        assert!(c.wait_index_ready(Duration::from_secs(60)));
        assert_eq!(
            c.describe()
                .segments
                .iter()
                .filter(|s| s.state == "sealed")
                .count(),
            1
        );

        // IVF with one list probed holds about 94 rows: k = 1,000 needs more than the lists
        // probed (and more than eight times as many).
        let before = requeried_queries();
        let params = SearchParams::new(1000).with_nprobe(1);
        let r = c
            .search(&data[..dim], &params, ConsistencyLevel::Strong, None)
            .unwrap();
        assert_eq!(r.hits[0].len(), 1000, "{name}: k = 1,000 of 3,000 rows");
        if name == "ivf" {
            assert!(requeried_queries() > before);
        }
        // k = 200: eight times the lists probed is enough, and those hits carry ids too.
        let r = c
            .search(
                &data[..dim],
                &SearchParams::new(200).with_nprobe(1),
                ConsistencyLevel::Strong,
                None,
            )
            .unwrap();
        let mut got: Vec<u64> = r.hits[0].iter().map(|h| h.id).collect();
        assert_eq!(got.len(), 200);
        assert_eq!(got[0], ids[0], "{name}: the query's own row first");
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), 200, "{name}: no id twice");
        assert!(
            got.iter().all(|id| ids.binary_search(id).is_ok()),
            "{name}: ids, not rows"
        );

        // Delete all but 20 rows, without compaction: the index's candidates
        // are nearly all deleted, yet every query gets min(k, 20) live hits.
        let keep: Vec<u64> = ids.iter().copied().filter(|id| id % 150 == 7).collect();
        let gone: Vec<u64> = ids.iter().copied().filter(|id| id % 150 != 7).collect();
        c.delete(&gone).unwrap();
        assert_eq!(c.count(), keep.len() as u64);
        for q in [0usize, 1234, 2999] {
            let query = &data[q * dim..(q + 1) * dim];
            for k in [10, 20, 50] {
                let params = SearchParams::new(k).with_nprobe(1).with_ef(16);
                let r = c
                    .search(query, &params, ConsistencyLevel::Strong, None)
                    .unwrap();
                let got: Vec<u64> = r.hits[0].iter().map(|h| h.id).collect();
                assert_eq!(got.len(), k.min(keep.len()), "{name} q{q} k{k}: {got:?}");
                assert!(
                    got.iter().all(|id| keep.contains(id)),
                    "{name}: a deleted id came back"
                );
                if k >= keep.len() {
                    let mut all = got.clone();
                    all.sort_unstable();
                    assert_eq!(all, keep, "{name}: k covers every live row");
                }
            }
        }
    }
}

#[test]
fn too_few_training_vectors_stays_exact_and_explicit_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let c = engine
        .create_collection(schema("small", 8, IndexSpec::IvfFlat { nlist: 100 }, 1))
        .unwrap();
    let data = clustered(500, 8, 1);
    c.insert(&data, Some(&(0..500).collect::<Vec<_>>()))
        .unwrap();
    c.flush().unwrap();
    assert!(c.wait_index_ready(Duration::from_secs(30)));
    let info = c.describe();
    let sealed = info.segments.iter().find(|s| s.state == "sealed").unwrap();
    assert_eq!(sealed.index.state, "exact");
    let note = sealed.index.note.clone().unwrap();
    assert!(note.contains("3900") && note.contains("500"), "{note}");
    match c.rebuild_index(IndexSpec::IvfFlat { nlist: 64 }) {
        Err(EngineError::Invalid(CoreError::TooFewTrainingVectors {
            needed: 2496,
            got: 500,
            nlist: 64,
        })) => {}
        other => panic!("expected TooFewTrainingVectors, got {other:?}"),
    }
    let r = c
        .search(
            &data[..8],
            &SearchParams::new(3),
            ConsistencyLevel::Strong,
            None,
        )
        .unwrap();
    assert_eq!(r.hits[0][0].id, 0);

    // Indexes are trained per segment: 500 rows over 4 shards make segments of about 125,
    // too few for nlist = 10 (390) although the collection holds 500.
    let four = engine
        .create_collection(schema("four", 8, IndexSpec::Flat, 4))
        .unwrap();
    four.insert(&data, Some(&(0..500).collect::<Vec<_>>()))
        .unwrap();
    match four.rebuild_index(IndexSpec::IvfFlat { nlist: 10 }) {
        Err(EngineError::Invalid(CoreError::TooFewTrainingVectors {
            needed: 390, got, ..
        })) if got < 390 => {}
        other => panic!("expected TooFewTrainingVectors, got {other:?}"),
    }
    assert_eq!(four.index_status().spec, IndexSpec::Flat.into());
    assert!(four.rebuild_index(IndexSpec::IvfFlat { nlist: 2 }).is_ok());
}

#[test]
fn consistency_levels_see_what_they_promise() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.bounded_staleness = Duration::from_millis(300);
    cfg.consistency_timeout = Duration::from_millis(1500);
    let engine = Engine::open(cfg).unwrap();
    let c = engine
        .create_collection(schema("cl", 2, IndexSpec::Flat, 1))
        .unwrap();
    let first = c.insert(&[0.0, 0.0], Some(&[1])).unwrap();
    let q = [0.0f32, 0.0];
    let params = SearchParams::new(10);
    let strong = c
        .search(&q, &params, ConsistencyLevel::Strong, None)
        .unwrap();
    assert_eq!(strong.hits[0].len(), 1);

    // Writes keep being acknowledged while applying is paused.
    c.set_apply_paused(true);
    let second = c.insert(&[1.0, 1.0], Some(&[2])).unwrap();
    assert!(second.seq > first.seq);
    // Eventually never waits: it answers from the applied state, without id 2.
    let ev = c
        .search(&q, &params, ConsistencyLevel::Eventually, None)
        .unwrap();
    assert_eq!(ev.hits[0].len(), 1);
    assert_eq!(ev.seq, first.seq);
    // Monitoring answers at once from the applied state, and shows the lag.
    let started = std::time::Instant::now();
    let snap = c.snapshot();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(snap.count, 1);
    assert_eq!(
        (snap.applied_seq, snap.committed_seq),
        (first.seq, second.seq)
    );
    // Session with the first write's sequence is satisfied too.
    let se = c
        .search(&q, &params, ConsistencyLevel::Session, Some(first.seq))
        .unwrap();
    assert_eq!(se.hits[0].len(), 1);
    // Bounded within the staleness window may miss the newest write.
    let bo = c
        .search(&q, &params, ConsistencyLevel::Bounded, None)
        .unwrap();
    assert_eq!(bo.hits[0].len(), 1);
    // Strong and Session with the new sequence must wait: they time out while paused.
    assert!(matches!(
        c.search(&q, &params, ConsistencyLevel::Strong, None),
        Err(EngineError::ConsistencyTimeout { .. })
    ));
    assert!(matches!(
        c.search(&q, &params, ConsistencyLevel::Session, Some(second.seq)),
        Err(EngineError::ConsistencyTimeout { .. })
    ));
    // Once the write is older than the window, Bounded must see it (and so waits too).
    std::thread::sleep(Duration::from_millis(350));
    assert!(matches!(
        c.search(&q, &params, ConsistencyLevel::Bounded, None),
        Err(EngineError::ConsistencyTimeout { .. })
    ));
    // A Strong search started while paused completes as soon as applying resumes.
    let waiter = {
        let c = c.clone();
        std::thread::spawn(move || {
            c.search(&q, &SearchParams::new(10), ConsistencyLevel::Strong, None)
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    c.set_apply_paused(false);
    let late = waiter.join().unwrap().unwrap();
    assert_eq!(late.hits[0].len(), 2);
    assert!(late.seq >= second.seq);
    let bo = c
        .search(&q, &params, ConsistencyLevel::Bounded, None)
        .unwrap();
    assert_eq!(bo.hits[0].len(), 2);
    // A session sequence no write of this collection was given is refused, not waited for.
    assert!(matches!(
        c.search(&q, &params, ConsistencyLevel::Session, Some(second.seq + 1)),
        Err(EngineError::SessionAhead { session_seq, committed }) if session_seq == second.seq + 1 && committed == second.seq
    ));
    // A write-only load keeps only the staleness window's acknowledgements.
    for id in 10..500u64 {
        c.insert(&[id as f32, 0.0], Some(&[id])).unwrap();
    }
    std::thread::sleep(Duration::from_millis(350));
    c.insert(&[0.5, 0.5], Some(&[5])).unwrap();
    assert!(c.acks_in_window() <= 1);
}

#[test]
fn sharded_exact_search_equals_one_shard_and_chunked_batches_equal_single_queries() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // 20 queries on 4 search threads: the batch runs as chunks of 8, 8 and 4.
    cfg.search_threads = 4;
    let engine = Engine::open(cfg).unwrap();
    let dim = 8;
    let n = 3000;
    let data = clustered(n, dim, 3);
    let ids: Vec<u64> = (0..n as u64).map(|i| i * 13 + 5).collect();
    let one = engine
        .create_collection(schema("one", dim, IndexSpec::Flat, 1))
        .unwrap();
    let four = engine
        .create_collection(schema("four", dim, IndexSpec::Flat, 4))
        .unwrap();
    for c in [&one, &four] {
        c.insert(&data[..n / 2 * dim], Some(&ids[..n / 2])).unwrap();
        c.flush().unwrap();
        c.insert(&data[n / 2 * dim..], Some(&ids[n / 2..])).unwrap();
        c.delete(&ids[100..200]).unwrap();
    }
    let queries = clustered(20, dim, 99);
    let params = SearchParams::new(25);
    let a = one
        .search(&queries, &params, ConsistencyLevel::Strong, None)
        .unwrap();
    let b = four
        .search(&queries, &params, ConsistencyLevel::Strong, None)
        .unwrap();
    assert_eq!(a.hits, b.hits);
    for (q, hits) in queries.chunks(dim).zip(&a.hits) {
        let single = four
            .search(q, &params, ConsistencyLevel::Strong, None)
            .unwrap();
        assert_eq!(&single.hits[0], hits);
    }
    assert_eq!(one.count(), four.count());
    let info = four.describe();
    assert_eq!(info.segments.iter().map(|s| s.shard).max(), Some(3));

    // Equal scores (duplicate vectors are common: the same text embedded twice) rank by id,
    // whatever the shard count, the insert order, and whether rows are sealed or growing.
    let tie_ids: Vec<u64> = vec![901, 17, 450, 3, 77, 1200, 64, 8];
    let same: Vec<f32> = tie_ids.iter().flat_map(|_| [1.0f32; 8]).collect();
    let mut answers = Vec::new();
    for (name, shards, reversed, sealed) in [
        ("t1", 1, false, false),
        ("t3", 3, false, true),
        ("t4", 4, true, false),
        ("t1r", 1, true, true),
    ] {
        let c = engine
            .create_collection(schema(name, dim, IndexSpec::Flat, shards))
            .unwrap();
        let mut order = tie_ids.clone();
        if reversed {
            order.reverse();
        }
        c.insert(&same, Some(&order)).unwrap();
        if sealed {
            c.flush().unwrap();
        }
        let r = c
            .search(
                &[1.0; 8],
                &SearchParams::new(3),
                ConsistencyLevel::Strong,
                None,
            )
            .unwrap();
        answers.push(r.hits[0].iter().map(|h| h.id).collect::<Vec<_>>());
    }
    assert!(answers.iter().all(|a| a == &[3, 8, 17]), "{answers:?}");
}

#[derive(Debug, Clone)]
enum Op {
    Upsert(Vec<u64>),
    Delete(Vec<u64>),
    Flush,
    Compact,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(0u64..60, 1..8).prop_map(|mut v| { v.sort(); v.dedup(); Op::Upsert(v) }),
        4 => proptest::collection::vec(0u64..60, 1..8).prop_map(Op::Delete),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the sequence of upserts, deletes, flushes, compactions and restarts, the
    /// collection holds exactly the model's live ids with their latest vectors.
    #[test]
    fn engine_matches_a_model(ops in proptest::collection::vec(op(), 1..40), shards in 1usize..4) {
        let dir = tempfile::tempdir().unwrap();
        let dim = 3;
        let mut cfg = config(dir.path());
        cfg.seal_rows = 16;
        let mut engine = Engine::open(cfg.clone()).unwrap();
        engine.create_collection(schema("m", dim, IndexSpec::Flat, shards)).unwrap();
        let mut model: HashMap<u64, Vec<f32>> = HashMap::new();
        for (step, op) in ops.iter().enumerate() {
            let c = engine.collection("m").unwrap();
            match op {
                Op::Upsert(ids) => {
                    let vectors: Vec<f32> = ids.iter().flat_map(|&id| vector(id, step as u64, dim)).collect();
                    c.insert(&vectors, Some(ids)).unwrap();
                    for &id in ids { model.insert(id, vector(id, step as u64, dim)); }
                }
                Op::Delete(ids) => {
                    let present = { let mut u = ids.clone(); u.sort(); u.dedup(); u.iter().filter(|i| model.contains_key(i)).count() };
                    let ack = c.delete(ids).unwrap();
                    prop_assert_eq!(ack.deleted, present);
                    for id in ids { model.remove(id); }
                }
                Op::Flush => c.flush().unwrap(),
                Op::Compact => c.compact().unwrap(),
                Op::Restart => {
                    drop(c);
                    drop(engine);
                    engine = Engine::open(cfg.clone()).unwrap();
                }
            }
            let c = engine.collection("m").unwrap();
            prop_assert_eq!(c.count() as usize, model.len());
        }
        let c = engine.collection("m").unwrap();
        let mut want: Vec<u64> = model.keys().copied().collect();
        want.sort_unstable();
        prop_assert_eq!(all_ids(&c, dim), want);
        for (id, v) in &model {
            prop_assert_eq!(&c.get(*id).unwrap(), v);
        }
    }
}

/// Recall@10 of every index type through the engine on real text embeddings (a 3,000-package
/// Debian subset embedded with all-MiniLM-L6-v2), against the exact ground truth; deleted ids
/// never appear and every query still gets 10 hits.
#[test]
fn recall_on_real_embeddings() {
    let data = crate::dataset::testing::debian_subset(3000);
    let dim = data.dim;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let truth: Vec<Vec<u64>> = data.ground_truth.iter().map(|t| t[..10].to_vec()).collect();
    let cases = [
        (IndexSpec::Flat, SearchParams::new(10), 0.999),
        (
            IndexSpec::IvfFlat { nlist: 32 },
            SearchParams::new(10).with_nprobe(8),
            0.85,
        ),
        (
            IndexSpec::IvfSq8 { nlist: 32 },
            SearchParams::new(10).with_nprobe(8),
            0.8,
        ),
        (
            IndexSpec::IvfPq {
                nlist: 16,
                m: 48,
                nbits: 6,
            },
            SearchParams::new(10).with_nprobe(8),
            0.4,
        ),
        (
            IndexSpec::Hnsw {
                m: 16,
                ef_construction: 100,
            },
            SearchParams::new(10).with_ef(64),
            0.9,
        ),
        (
            IndexSpec::HnswSq8 {
                m: 16,
                ef_construction: 100,
            },
            SearchParams::new(10).with_ef(64),
            0.85,
        ),
    ];
    for (i, (spec, params, min_recall)) in cases.into_iter().enumerate() {
        let mut s = schema(&format!("real{i}"), dim, spec, 1);
        s.metric = data.metric;
        let c = engine.create_collection(s).unwrap();
        c.insert(&data.base, Some(&data.ids)).unwrap();
        c.flush().unwrap();
        assert!(
            c.wait_index_ready(Duration::from_secs(120)),
            "{spec}: build did not finish"
        );
        let info = c.describe();
        let sealed = info.segments.iter().find(|s| s.state == "sealed").unwrap();
        let expected_state = if matches!(spec, IndexSpec::Flat) {
            "exact"
        } else {
            "ready"
        };
        assert_eq!(
            sealed.index.state, expected_state,
            "{spec}: {:?}",
            sealed.index
        );
        let r = c
            .search(&data.queries, &params, ConsistencyLevel::Strong, None)
            .unwrap();
        let recall = proxima_core::recall_at_k(&r.hits, &truth, 10);
        assert!(
            recall >= min_recall,
            "{spec}: recall@10 {recall:.3} < {min_recall}"
        );
        // Delete every query's best exact match: none may come back, k hits remain.
        let victims: Vec<u64> = {
            let mut v: Vec<u64> = truth.iter().map(|t| t[0]).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        c.delete(&victims).unwrap();
        let r = c
            .search(&data.queries, &params, ConsistencyLevel::Strong, None)
            .unwrap();
        for hits in &r.hits {
            assert_eq!(hits.len(), 10, "{spec}: fewer than k hits after deletes");
            assert!(
                hits.iter().all(|h| victims.binary_search(&h.id).is_err()),
                "{spec}: deleted id returned"
            );
        }
        assert_eq!(c.count() as usize, data.len() - victims.len());
    }
}

/// Batch searches of a growing (exactly searched) segment on a multi-threaded search pool,
/// with writes going on: a search task that waits under a shard's read lock must not pick up
/// another task that queues behind the writer for the same lock (it would never finish).
#[test]
fn batch_searches_and_writes_on_one_shard_never_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.search_threads = 4;
    cfg.fsync = FsyncPolicy::Never;
    let engine = Engine::open(cfg).unwrap();
    let dim = 16;
    let c = engine
        .create_collection(schema("hot", dim, IndexSpec::Flat, 1))
        .unwrap();
    let data = clustered(2000, dim, 5);
    c.insert(&data, Some(&(0..2000).collect::<Vec<_>>()))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let searchers: Vec<_> = (0..3)
        .map(|_| {
            let (c, stop, done_tx) = (c.clone(), stop.clone(), done_tx.clone());
            let queries = data[..100 * dim].to_vec();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = c
                        .search(
                            &queries,
                            &SearchParams::new(5),
                            ConsistencyLevel::Eventually,
                            None,
                        )
                        .unwrap();
                    assert_eq!(r.hits.len(), 100);
                }
                done_tx.send(()).unwrap();
            })
        })
        .collect();
    let writer = {
        let (c, stop) = (c.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut id = 10_000u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.insert(&vec![0.5; dim], Some(&[id])).unwrap();
                id += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let finished = (0..3).all(|_| done_rx.recv_timeout(Duration::from_secs(60)).is_ok());
    if !finished {
        // Closing the engine would wait for the stuck applier: leave it, fail now.
        std::mem::forget(engine);
        std::mem::forget(c);
        panic!("a search never finished: deadlock");
    }
    searchers.into_iter().for_each(|s| s.join().unwrap());
    writer.join().unwrap();
}

/// Searches from many threads on one HNSW index (with changing `ef`) while writes, a flush and
/// a rebuild run: every search succeeds and deleted ids never appear.
#[test]
fn concurrent_searches_during_writes_and_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 16;
    let data = clustered(4000, dim, 11);
    let engine = Engine::open(config(dir.path())).unwrap();
    let c = engine
        .create_collection(schema(
            "conc",
            dim,
            IndexSpec::Hnsw {
                m: 8,
                ef_construction: 40,
            },
            2,
        ))
        .unwrap();
    c.insert(&data[..3000 * dim], Some(&(0..3000).collect::<Vec<_>>()))
        .unwrap();
    c.flush().unwrap();
    c.delete(&(0..100).collect::<Vec<_>>()).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let searchers: Vec<_> = (0..4)
        .map(|t| {
            let c = c.clone();
            let stop = stop.clone();
            let q = data[(500 + t) * dim..(501 + t) * dim].to_vec();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 20 {
                    let params = SearchParams::new(10).with_ef(32 + 16 * (n % 3));
                    let r = c
                        .search(&q, &params, ConsistencyLevel::Eventually, None)
                        .unwrap();
                    assert_eq!(r.hits[0].len(), 10);
                    assert!(r.hits[0].iter().all(|h| h.id >= 100), "deleted id returned");
                    n += 1;
                }
                n
            })
        })
        .collect();
    for chunk in 30..40u64 {
        let ids: Vec<u64> = (chunk * 100..chunk * 100 + 100).collect();
        let r = chunk as usize * 100;
        c.insert(&data[r * dim..(r + 100) * dim], Some(&ids))
            .unwrap();
    }
    c.rebuild_index(IndexSpec::IvfFlat { nlist: 16 }).unwrap();
    assert!(c.wait_index_ready(Duration::from_secs(60)));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in searchers {
        assert!(s.join().unwrap() >= 20);
    }
    assert_eq!(c.count(), 3900);
}

/// Many writers at once share fsyncs (group commit): every write gets its own sequence range,
/// and all of them survive a restart.
#[test]
fn concurrent_writers_group_commit_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 4;
    {
        let engine = Engine::open(config(dir.path())).unwrap();
        let c = engine
            .create_collection(schema("gc", dim, IndexSpec::Flat, 3))
            .unwrap();
        let writers: Vec<_> = (0..8u64)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    (0..50u64)
                        .map(|i| {
                            let id = t * 1000 + i;
                            c.insert(&vector(id, 0, dim), Some(&[id])).unwrap().seq
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 400, "sequence numbers must be unique");
        assert_eq!(c.count(), 400);
    }
    let engine = Engine::open(config(dir.path())).unwrap();
    let c = engine.collection("gc").unwrap();
    assert_eq!(c.count(), 400);
    assert_eq!(c.get(7049).unwrap(), vector(7049, 0, dim));
}

/// The sealed segments of `info`, oldest first, with their chosen spec and reason.
fn sealed_specs(info: &CollectionInfo) -> Vec<(usize, Option<IndexSpec>, Option<String>)> {
    let mut sealed: Vec<_> = info
        .segments
        .iter()
        .filter(|s| s.state == "sealed")
        .collect();
    sealed.sort_by_key(|s| s.id);
    sealed
        .iter()
        .map(|s| (s.rows, s.index.spec, s.index.reason.clone()))
        .collect()
}

#[test]
fn missing_params_take_defaults_and_ivf_nlist_is_chosen_per_segment() {
    use proxima_core::{IndexRequest, IndexType};
    let dir = tempfile::tempdir().unwrap();
    let dim = 8;
    let cfg = config(dir.path());
    let data = clustered(5000, dim, 3);
    let ids: Vec<u64> = (0..5000).collect();
    {
        let engine = Engine::open(cfg.clone()).unwrap();
        // HNSW without params: the defaults are filled in at creation, describe shows them.
        let h = engine
            .create_collection(schema("h", dim, IndexRequest::new(IndexType::Hnsw), 1))
            .unwrap();
        let want = IndexSpec::Hnsw {
            m: 16,
            ef_construction: 100,
        };
        assert_eq!(h.schema().index.as_spec(), Some(want));
        assert_eq!(h.index_status().spec, want.into());
        h.insert(&data[..100 * dim], Some(&ids[..100])).unwrap();
        h.flush().unwrap();
        assert!(h.wait_index_ready(Duration::from_secs(60)));
        let segs = sealed_specs(&h.describe());
        assert_eq!(segs[0].1, Some(want));
        assert_eq!(segs[0].2, None, "nothing left to the segment");

        // IVF_FLAT without nlist: each segment gets nlist from its own rows.
        let c = engine
            .create_collection(schema("ivf", dim, IndexRequest::new(IndexType::IvfFlat), 1))
            .unwrap();
        assert!(c.schema().index.nlist_per_segment());
        c.insert(&data[..4000 * dim], Some(&ids[..4000])).unwrap();
        c.flush().unwrap();
        c.insert(&data[4000 * dim..], Some(&ids[4000..])).unwrap();
        c.flush().unwrap();
        assert!(c.wait_index_ready(Duration::from_secs(60)));
        let info = c.describe();
        let segs = sealed_specs(&info);
        // 4,000 rows: 4√4000 → 256, halved to 64 (64 × 39 ≤ 4,000); 1,000 rows: 16.
        assert_eq!(segs[0].1, Some(IndexSpec::IvfFlat { nlist: 64 }));
        assert_eq!(segs[1].1, Some(IndexSpec::IvfFlat { nlist: 16 }));
        assert!(
            segs[0]
                .2
                .as_deref()
                .is_some_and(|r| r.contains("nlist 64 for this segment's 4000 rows")),
            "{segs:?}"
        );
        assert!(info.memory.estimated_bytes > 0);
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(
            json["schema"]["index"],
            serde_json::json!({"type": "IVF_FLAT"})
        );
        assert_eq!(
            json["index"]["spec"],
            serde_json::json!({"type": "IVF_FLAT"})
        );
        let sealed = json["segments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["rows"] == 4000)
            .unwrap()
            .clone();
        assert_eq!(sealed["index"]["spec"]["params"]["nlist"], 64, "{sealed}");
        let hits = c
            .search(
                &data[..dim],
                &SearchParams::new(3).with_nprobe(8),
                ConsistencyLevel::Strong,
                None,
            )
            .unwrap();
        assert_eq!(hits.hits[0][0].id, 0);

        // A rebuild with a partial request: nlist per segment again, the given value kept.
        c.rebuild_index(IndexRequest::new(IndexType::IvfSq8))
            .unwrap();
        assert!(c.wait_index_ready(Duration::from_secs(60)));
        let segs = sealed_specs(&c.describe());
        assert_eq!(segs[0].1, Some(IndexSpec::IvfSq8 { nlist: 64 }));
        assert_eq!(segs[1].1, Some(IndexSpec::IvfSq8 { nlist: 16 }));
        engine.close();
    }
    // The choices and their reasons are in the manifest: a restart loads them as they were.
    let engine = Engine::open(cfg).unwrap();
    let c = engine.collection("ivf").unwrap();
    assert_eq!(c.index_status().state, "ready");
    let segs = sealed_specs(&c.describe());
    assert_eq!(segs[0].1, Some(IndexSpec::IvfSq8 { nlist: 64 }));
    assert!(segs[0].2.as_deref().is_some_and(|r| r.contains("nlist 64")));
    engine.close();
}

#[test]
fn auto_picks_per_segment_from_the_rows_so_far() {
    use proxima_core::IndexRequest;
    let dir = tempfile::tempdir().unwrap();
    let dim = 8;
    let engine = Engine::open(config(dir.path())).unwrap();
    let c = engine
        .create_collection(schema("auto", dim, IndexRequest::auto(), 1))
        .unwrap();
    // The target's default is filled in at creation.
    assert_eq!(c.schema().index.params.recall, Some(0.95));
    let n = 22_000;
    let data = clustered(n, dim, 5);
    let ids: Vec<u64> = (0..n as u64).collect();
    // 1,000 rows: exact search is the advisor's answer for so few.
    c.insert(&data[..1000 * dim], Some(&ids[..1000])).unwrap();
    c.flush().unwrap();
    assert!(c.wait_index_ready(Duration::from_secs(60)));
    let status = c.index_status();
    let pick = status.auto.as_ref().unwrap();
    assert_eq!(pick.index.as_spec(), Some(IndexSpec::Flat));
    assert_eq!(pick.vectors, 1000);
    let segs = sealed_specs(&c.describe());
    assert_eq!(segs[0].1, None, "searched exactly");
    let reason = segs[0].2.clone().unwrap();
    assert!(
        reason.starts_with("AUTO: picked for 1000 vectors × 8, recall target 0.95"),
        "{reason}"
    );
    assert!(reason.contains("FLAT: exact"), "{reason}");
    // Past 20,000 vectors the next segment gets a graph; the first keeps what it got.
    c.insert(&data[1000 * dim..], Some(&ids[1000..])).unwrap();
    c.flush().unwrap();
    assert!(c.wait_index_ready(Duration::from_secs(120)));
    let segs = sealed_specs(&c.describe());
    assert_eq!(segs[0].1, None);
    let want = IndexSpec::Hnsw {
        m: 16,
        ef_construction: 200,
    };
    assert_eq!(segs[1].1, Some(want), "{segs:?}");
    assert!(
        segs[1]
            .2
            .as_deref()
            .is_some_and(|r| r.contains("picked for 22000 vectors") && r.contains("graph")),
        "{segs:?}"
    );
    assert_eq!(c.index_status().auto.unwrap().index.as_spec(), Some(want));
    // Asking for AUTO again re-picks every segment for the collection's size now.
    c.rebuild_index(IndexRequest::auto()).unwrap();
    assert!(c.wait_index_ready(Duration::from_secs(120)));
    let segs = sealed_specs(&c.describe());
    assert!(segs.iter().all(|s| s.1 == Some(want)), "{segs:?}");
    let hits = c
        .search(
            &data[5 * dim..6 * dim],
            &SearchParams::new(1).with_ef(64),
            ConsistencyLevel::Strong,
            None,
        )
        .unwrap();
    assert_eq!(hits.hits[0][0].id, 5);
    engine.close();
}

/// Re-ranking (`refine_factor`) of compressed indexes on real text embeddings: the index is
/// asked for `k × refine_factor` candidates, re-scored exactly on the segment's rows. Recall
/// with it is at least recall without (the default refines; 1 turns it off), hits carry exact
/// scores, the collection's own `refine_factor` is the default of its queries, out-of-range
/// factors are refused, and deleted rows never come back through it.
#[test]
fn refine_reranks_compressed_indexes_on_the_rows() {
    use proxima_core::params::{DEFAULT_REFINE_FACTOR, MAX_REFINE_FACTOR};
    use proxima_core::IndexRequest;
    let data = crate::dataset::testing::debian_subset(3000);
    let dim = data.dim;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let truth: Vec<Vec<u64>> = data.ground_truth.iter().map(|t| t[..10].to_vec()).collect();
    let row_of: HashMap<u64, usize> = data
        .ids
        .iter()
        .enumerate()
        .map(|(r, &id)| (id, r))
        .collect();
    let recall = |c: &Collection, params: &SearchParams| {
        let r = c
            .search(&data.queries, params, ConsistencyLevel::Strong, None)
            .unwrap();
        (proxima_core::recall_at_k(&r.hits, &truth, 10), r.hits)
    };
    let cases = [
        // A coarse PQ (12 codes of 6 bits: 3,000 rows train 64 centroids, not 256), every list
        // probed: only the codes limit recall.
        (
            IndexSpec::IvfPq {
                nlist: 16,
                m: 12,
                nbits: 6,
            },
            SearchParams::new(10).with_nprobe(16),
        ),
        (
            IndexSpec::IvfSq8 { nlist: 16 },
            SearchParams::new(10).with_nprobe(16),
        ),
        (
            IndexSpec::HnswSq8 {
                m: 16,
                ef_construction: 100,
            },
            SearchParams::new(10).with_ef(32),
        ),
    ];
    for (i, (spec, params)) in cases.into_iter().enumerate() {
        let mut s = schema(&format!("refine{i}"), dim, spec, 1);
        s.metric = data.metric;
        let c = engine.create_collection(s).unwrap();
        c.insert(&data.base, Some(&data.ids)).unwrap();
        c.flush().unwrap();
        assert!(c.wait_index_ready(Duration::from_secs(120)), "{spec}");
        let info = c.describe();
        let sealed = info.segments.iter().find(|s| s.state == "sealed").unwrap();
        assert_eq!(sealed.index.state, "ready", "{spec}: {:?}", sealed.index);
        assert_eq!(info.index.refine_factor, Some(DEFAULT_REFINE_FACTOR));
        assert_eq!(info.memory.raw_bytes, (data.len() * dim * 4) as u64);
        assert!(
            info.memory.actual_bytes < info.memory.raw_bytes,
            "{spec}: {:?}",
            info.memory
        );
        let (off, _) = recall(&c, &params.with_refine_factor(1));
        let (default, _) = recall(&c, &params);
        let (wide, hits) = recall(&c, &params.with_refine_factor(16));
        assert!(
            default >= off && wide >= default - 0.005,
            "{spec}: recall@10 off {off:.3}, default {default:.3}, ×16 {wide:.3}"
        );
        // With 16 × k candidates only the coarse PQ (39 % alone) stays below 0.95.
        let floor = if matches!(spec, IndexSpec::IvfPq { .. }) {
            0.8
        } else {
            0.97
        };
        assert!(wide >= floor, "{spec}: recall@10 with refine ×16 {wide:.3}");
        if matches!(spec, IndexSpec::IvfPq { .. }) {
            assert!(
                default >= off + 0.1,
                "{spec}: refine should matter: off {off:.3}, default {default:.3}"
            );
        }
        // Re-ranked hits carry exact scores, best first.
        for (q, list) in hits.iter().enumerate() {
            let query = &data.queries[q * dim..(q + 1) * dim];
            for h in list {
                let row = row_of[&h.id];
                let exact = data
                    .metric
                    .score(query, &data.base[row * dim..(row + 1) * dim]);
                assert!(
                    (h.score - exact).abs() < 1e-4,
                    "{spec}: {} vs {exact}",
                    h.score
                );
            }
            assert!(list.windows(2).all(|w| w[0].score >= w[1].score));
        }
        // Out of range: refused with the parameter named.
        for bad in [0, MAX_REFINE_FACTOR + 1] {
            match c.search(
                &data.queries[..dim],
                &params.with_refine_factor(bad),
                ConsistencyLevel::Eventually,
                None,
            ) {
                Err(EngineError::Invalid(CoreError::InvalidParameter {
                    name: "refine_factor",
                    ..
                })) => {}
                other => panic!("refine_factor {bad}: {other:?}"),
            }
        }
        // Deleted rows never come back, whatever the factor; k hits remain.
        let victims: Vec<u64> = {
            let mut v: Vec<u64> = truth.iter().flat_map(|t| t[..3].to_vec()).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        c.delete(&victims).unwrap();
        for factor in [1, 4, MAX_REFINE_FACTOR] {
            let (_, hits) = recall(&c, &params.with_refine_factor(factor));
            for list in &hits {
                assert_eq!(list.len(), 10, "{spec} ×{factor}: fewer than k hits");
                assert!(
                    list.iter().all(|h| victims.binary_search(&h.id).is_err()),
                    "{spec} ×{factor}: deleted id returned"
                );
            }
        }
        engine.drop_collection(&format!("refine{i}")).unwrap();
    }
    // The collection's own refine_factor is its queries' default; a query's overrides it.
    let request: IndexRequest = serde_json::from_value(serde_json::json!(
        {"type": "IVF_PQ", "params": {"nlist": 16, "m": 12, "nbits": 6, "refine_factor": 1}}
    ))
    .unwrap();
    let mut s = schema("own", dim, request, 1);
    s.metric = data.metric;
    let c = engine.create_collection(s).unwrap();
    c.insert(&data.base, Some(&data.ids)).unwrap();
    c.flush().unwrap();
    assert!(c.wait_index_ready(Duration::from_secs(120)));
    let info = c.describe();
    assert_eq!(info.index.refine_factor, Some(1));
    assert!(info.segments.iter().any(|s| s.index.state == "ready"));
    let params = SearchParams::new(10).with_nprobe(16);
    let (own, own_hits) = recall(&c, &params);
    let (off, off_hits) = recall(&c, &params.with_refine_factor(1));
    let (on, _) = recall(&c, &params.with_refine_factor(DEFAULT_REFINE_FACTOR));
    assert_eq!(own_hits, off_hits);
    assert!(on >= own + 0.1, "own {own:.3} off {off:.3} on {on:.3}");
    // A collection-level factor out of range, or on an index that holds raw vectors: refused.
    for bad in [
        serde_json::json!({"type": "IVF_PQ", "params": {"refine_factor": 0}}),
        serde_json::json!({"type": "HNSW_SQ8", "params": {"refine_factor": 65}}),
    ] {
        let request: IndexRequest = serde_json::from_value(bad.clone()).unwrap();
        assert!(
            engine
                .create_collection(schema("bad", dim, request, 1))
                .is_err(),
            "{bad}"
        );
    }
    assert!(serde_json::from_value::<IndexRequest>(
        serde_json::json!({"type": "HNSW", "params": {"refine_factor": 2}})
    )
    .is_err());
}
