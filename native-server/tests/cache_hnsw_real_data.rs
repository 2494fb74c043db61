//! The browser cache's HNSW (`proxima_core::hnsw`) on real MiniLM embeddings of Debian package
//! descriptions: recall@10 at default settings, after deleting half the set in random order,
//! with SQ8 storage, and after a byte round trip.

use std::collections::HashSet;

use proxima_core::exact::exact_search;
use proxima_core::hnsw::{Hnsw, HnswConfig, Quantization, SearchOptions};
use proxima_core::recall_at_k;
use proxima_server::dataset::testing::debian_subset;

const N: usize = 20_000;

fn recall(h: &Hnsw, queries: &[f32], truth: &[Vec<u64>]) -> f64 {
    let res = h
        .search_batch(queries, 10, &SearchOptions::default())
        .unwrap();
    recall_at_k(&res, truth, 10)
}

#[test]
fn recall_holds_at_defaults_after_deleting_half_and_with_sq8() {
    let ds = debian_subset(N);
    let dim = ds.dim;
    let truth: Vec<Vec<u64>> = ds.ground_truth.iter().map(|t| t[..10].to_vec()).collect();

    let mut h = Hnsw::new(HnswConfig::new(dim, ds.metric)).unwrap();
    h.upsert(&ds.ids, &ds.base).unwrap();
    let r = recall(&h, &ds.queries, &truth);
    eprintln!("HNSW defaults, {N} x {dim}: recall@10 {r:.4}");
    assert!(r >= 0.95, "recall@10 at default settings: {r}");

    // The bytes carry the same graph: identical answers, no rebuild.
    let back = Hnsw::from_bytes(&h.to_bytes()).unwrap();
    let o = SearchOptions::default();
    let q = &ds.queries[..50 * dim];
    assert_eq!(
        back.search_batch(q, 10, &o).unwrap(),
        h.search_batch(q, 10, &o).unwrap()
    );

    // Delete half in a seeded random order, in batches of 100.
    let mut order: Vec<usize> = (0..ds.len()).collect();
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..order.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        order.swap(i, (s % (i as u64 + 1)) as usize);
    }
    let gone_rows = &order[..ds.len() / 2];
    let gone: HashSet<u64> = gone_rows.iter().map(|&r| ds.ids[r]).collect();
    let gone_ids: Vec<u64> = gone_rows.iter().map(|&r| ds.ids[r]).collect();
    for batch in gone_ids.chunks(100) {
        assert_eq!(h.delete(batch), batch.len());
    }
    let kept: Vec<usize> = (0..ds.len())
        .filter(|r| !gone.contains(&ds.ids[*r]))
        .collect();
    let kept_base: Vec<f32> = kept.iter().flat_map(|&r| ds.base_row(r).to_vec()).collect();
    let hits = exact_search(&kept_base, None, &ds.queries, dim, ds.metric, 10, None);
    let kept_truth: Vec<Vec<u64>> = hits
        .iter()
        .map(|row| row.iter().map(|h| ds.ids[kept[h.id as usize]]).collect())
        .collect();
    let res = h
        .search_batch(&ds.queries, 10, &SearchOptions::default())
        .unwrap();
    for row in &res {
        assert_eq!(row.len(), 10);
        assert!(
            row.iter().all(|hit| !gone.contains(&hit.id)),
            "a deleted id came back"
        );
    }
    let r = recall_at_k(&res, &kept_truth, 10);
    eprintln!(
        "after deleting 50 % in random order: recall@10 {r:.4} ({} consolidations)",
        h.stats().consolidations
    );
    assert!(r >= 0.95, "recall@10 after deleting half: {r}");

    // SQ8: a quarter of the vector memory; re-ranking on held rows restores recall.
    let mut cfg = HnswConfig::new(dim, ds.metric);
    cfg.quantization = Quantization::Sq8;
    let sq8 = {
        let mut h = Hnsw::new(cfg.clone()).unwrap();
        h.upsert(&ds.ids, &ds.base).unwrap();
        h
    };
    let r_sq8 = recall(&sq8, &ds.queries, &truth);
    cfg.rerank = true;
    let mut rerank = Hnsw::new(cfg).unwrap();
    rerank.upsert(&ds.ids, &ds.base).unwrap();
    let r_rerank = recall(&rerank, &ds.queries, &truth);
    // Loaded from bytes, both hold exactly what they need (no growth slack).
    let sq8_loaded = Hnsw::from_bytes(&sq8.to_bytes()).unwrap();
    eprintln!(
        "SQ8: recall@10 {r_sq8:.4}; SQ8 + re-rank: {r_rerank:.4}; memory {} vs f32 {} bytes",
        sq8_loaded.memory_bytes(),
        back.memory_bytes()
    );
    assert!(r_sq8 >= 0.9, "SQ8 recall@10 {r_sq8}");
    assert!(r_rerank >= 0.95, "SQ8 + re-rank recall@10 {r_rerank}");
    assert!(sq8_loaded.memory_bytes() * 2 < back.memory_bytes());
}
