//! Checkpoints and compaction: deleted rows are rewritten away, and searches of heavily
//! deleted segments still return `k` live hits.

use super::*;

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
            .filter(|s| s.state == SegmentState::Sealed)
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
                .filter(|s| s.state == SegmentState::Sealed)
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
