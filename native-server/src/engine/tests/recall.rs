//! Recall on real text embeddings, and re-ranking of compressed indexes.

use super::*;

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
        let sealed = info
            .segments
            .iter()
            .find(|s| s.state == SegmentState::Sealed)
            .unwrap();
        let expected_state = if matches!(spec, IndexSpec::Flat) {
            IndexState::Exact
        } else {
            IndexState::Ready
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
        let sealed = info
            .segments
            .iter()
            .find(|s| s.state == SegmentState::Sealed)
            .unwrap();
        assert_eq!(
            sealed.index.state,
            IndexState::Ready,
            "{spec}: {:?}",
            sealed.index
        );
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
    assert!(info
        .segments
        .iter()
        .any(|s| s.index.state == IndexState::Ready));
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
