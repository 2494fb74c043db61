//! Index builds: background builds and hot swaps, training minimums, per-segment defaults
//! and `AUTO` picks.

use super::*;

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
            .filter(|s| s.state == SegmentState::Sealed)
            .collect();
        assert_eq!(sealed.len(), 2);
        assert!(
            sealed.iter().all(|s| s.index.state == IndexState::Ready),
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
        status.state,
        BuildState::Ready,
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
    let sealed = info
        .segments
        .iter()
        .find(|s| s.state == SegmentState::Sealed)
        .unwrap();
    assert_eq!(sealed.index.state, IndexState::Exact);
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

/// The sealed segments of `info`, oldest first, with their chosen spec and reason.
fn sealed_specs(info: &CollectionInfo) -> Vec<(usize, Option<IndexSpec>, Option<String>)> {
    let mut sealed: Vec<_> = info
        .segments
        .iter()
        .filter(|s| s.state == SegmentState::Sealed)
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
        assert_eq!(
            serde_json::to_value(info.schema.index).unwrap(),
            serde_json::json!({"type": "IVF_FLAT"})
        );
        assert_eq!(
            serde_json::to_value(&info.index).unwrap()["spec"],
            serde_json::json!({"type": "IVF_FLAT"})
        );
        let sealed = serde_json::to_value(&info.segments)
            .unwrap()
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
    assert_eq!(c.index_status().state, BuildState::Ready);
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
