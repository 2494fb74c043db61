use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::*;
use crate::exact::{exact_search, recall_at_k};
use crate::metric::normalize;

/// Seeded clustered data (Gaussian blobs): harder than uniform noise for graph connectivity
/// and closer to real embeddings.
fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut gauss = move || {
        let (u, v) = (next().max(1e-12), next());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    };
    let centres: Vec<f32> = (0..clusters * dim).map(|_| gauss() * 3.0).collect();
    (0..n)
        .flat_map(|i| {
            let c = (i * 7) % clusters;
            (0..dim)
                .map(|d| centres[c * dim + d] + gauss())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn truth(
    base: &[f32],
    ids: &[u64],
    queries: &[f32],
    dim: usize,
    metric: Metric,
    k: usize,
) -> Vec<Vec<u64>> {
    let mut b = base.to_vec();
    let mut q = queries.to_vec();
    metric.prepare(&mut b, dim);
    metric.prepare(&mut q, dim);
    exact_search(&b, None, &q, dim, metric, k, None)
        .into_iter()
        .map(|row| row.into_iter().map(|h| ids[h.id as usize]).collect())
        .collect()
}

fn build(cfg: HnswConfig, ids: &[u64], base: &[f32]) -> Hnsw {
    let mut h = Hnsw::new(cfg).unwrap();
    h.upsert(ids, base).unwrap();
    h
}

fn recall(h: &Hnsw, queries: &[f32], truth: &[Vec<u64>], k: usize) -> f64 {
    let res = h
        .search_batch(queries, k, &SearchOptions::default())
        .unwrap();
    recall_at_k(&res, truth, k)
}

#[test]
fn recall_is_high_for_every_metric() {
    let (n, dim) = (3000, 24);
    let data = clustered(n + 100, dim, 20, 7);
    let (base, queries) = data.split_at(n * dim);
    let ids: Vec<u64> = (0..n as u64).map(|i| i * 3 + 1).collect();
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        let h = build(HnswConfig::new(dim, metric), &ids, base);
        let t = truth(base, &ids, queries, dim, metric, 10);
        let r = recall(&h, queries, &t, 10);
        assert!(r >= 0.95, "{metric}: recall@10 {r}");
        assert_eq!(h.len(), n);
    }
}

#[test]
fn scores_follow_the_metric_convention() {
    let mut h = Hnsw::new(HnswConfig::new(2, Metric::Cosine)).unwrap();
    h.upsert(&[1, 2, 3], &[1.0, 0.0, 0.0, 3.0, 10.0, 10.0])
        .unwrap();
    let hits = h.search(&[2.0, 2.1], 3, &SearchOptions::default()).unwrap();
    assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![3, 2, 1]);
    assert!((hits[0].score - 0.9997).abs() < 1e-3);
    let mut l2 = Hnsw::new(HnswConfig::new(2, Metric::L2)).unwrap();
    l2.upsert(&[10, 20], &[0.0, 0.0, 3.0, 4.0]).unwrap();
    let hits = l2
        .search(&[0.0, 0.0], 2, &SearchOptions::default())
        .unwrap();
    assert_eq!(
        hits,
        vec![
            Hit { id: 10, score: 0.0 },
            Hit {
                id: 20,
                score: 25.0
            }
        ]
    );
}

#[test]
fn deleting_half_in_random_order_keeps_recall() {
    let (n, dim) = (6000, 32);
    let data = clustered(n + 200, dim, 30, 11);
    let (base, queries) = data.split_at(n * dim);
    let ids: Vec<u64> = (0..n as u64).collect();
    let mut h = build(HnswConfig::new(dim, Metric::L2), &ids, base);
    let mut order = ids.clone();
    let mut s = 99u64;
    for i in (1..order.len()).rev() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        order.swap(i, (s >> 33) as usize % (i + 1));
    }
    let gone: HashSet<u64> = order[..n / 2].iter().copied().collect();
    for chunk in order[..n / 2].chunks(37) {
        assert_eq!(h.delete(chunk), chunk.len());
    }
    assert!(h.stats().consolidations > 0);
    let keep: Vec<usize> = (0..n).filter(|i| !gone.contains(&(*i as u64))).collect();
    let kept_base: Vec<f32> = keep
        .iter()
        .flat_map(|&i| base[i * dim..(i + 1) * dim].to_vec())
        .collect();
    let kept_ids: Vec<u64> = keep.iter().map(|&i| i as u64).collect();
    let t = truth(&kept_base, &kept_ids, queries, dim, Metric::L2, 10);
    let res = h
        .search_batch(queries, 10, &SearchOptions::default())
        .unwrap();
    for row in &res {
        assert_eq!(row.len(), 10);
        assert!(row.iter().all(|hit| !gone.contains(&hit.id)));
    }
    let r = recall_at_k(&res, &t, 10);
    assert!(r >= 0.95, "recall@10 after deleting half: {r}");
    assert_eq!(h.len(), n - n / 2);
}

#[test]
fn upsert_replaces_and_same_vector_is_a_no_op() {
    let mut h = Hnsw::new(HnswConfig::new(3, Metric::L2)).unwrap();
    h.upsert(&[1, 2], &[0.0, 0.0, 0.0, 5.0, 5.0, 5.0]).unwrap();
    let r = h.upsert(&[1], &[9.0, 9.0, 9.0]).unwrap();
    assert_eq!((r.inserted, r.replaced, r.unchanged), (0, 1, 0));
    assert_eq!(h.get(1).unwrap(), vec![9.0, 9.0, 9.0]);
    let hits = h
        .search(&[0.0, 0.0, 0.0], 2, &SearchOptions::default())
        .unwrap();
    assert_eq!(hits[0].id, 2);
    assert_eq!(hits.len(), 2);
    let r = h.upsert(&[2], &[5.0, 5.0, 5.0]).unwrap();
    assert_eq!((r.inserted, r.replaced, r.unchanged), (0, 0, 1));
    assert_eq!(h.len(), 2);
}

#[test]
fn bad_input_is_a_typed_error() {
    assert_eq!(
        Hnsw::new(HnswConfig::new(0, Metric::L2))
            .unwrap_err()
            .code(),
        "invalid_parameter"
    );
    let mut cfg = HnswConfig::new(4, Metric::L2);
    cfg.m = 1;
    assert!(Hnsw::new(cfg).is_err());
    let mut h = Hnsw::new(HnswConfig::new(2, Metric::Cosine)).unwrap();
    assert_eq!(
        h.upsert(&[1], &[1.0, 2.0, 3.0]).unwrap_err().code(),
        "ragged_batch"
    );
    assert_eq!(
        h.upsert(&[1, 2], &[1.0, 2.0]).unwrap_err().code(),
        "id_count_mismatch"
    );
    assert_eq!(
        h.upsert(&[1], &[f32::NAN, 2.0]).unwrap_err().code(),
        "non_finite_value"
    );
    assert_eq!(
        h.upsert(&[1], &[0.0, 0.0]).unwrap_err().code(),
        "zero_vector"
    );
    assert_eq!(
        h.upsert(&[1, 1], &[1.0, 2.0, 1.0, 2.0]).unwrap_err().code(),
        "duplicate_id"
    );
    // The first id met again, as `validate::check_ids` reports it.
    assert_eq!(
        h.upsert(&[9, 5, 7, 5, 9], &[1.0; 10]).unwrap_err(),
        crate::Error::DuplicateId { id: 5 }
    );
    assert!(h.is_empty(), "a refused batch changes nothing");
    h.upsert(&[1], &[1.0, 2.0]).unwrap();
    let o = SearchOptions::default();
    assert_eq!(
        h.search(&[1.0], 1, &o).unwrap_err().code(),
        "dimension_mismatch"
    );
    assert_eq!(
        h.search(&[1.0, 2.0], 0, &o).unwrap_err().code(),
        "k_out_of_range"
    );
    assert_eq!(
        h.search(&[1.0, 2.0], MAX_K + 1, &o).unwrap_err().code(),
        "k_out_of_range"
    );
    assert_eq!(
        h.search(&[f32::INFINITY, 2.0], 1, &o).unwrap_err().code(),
        "non_finite_value"
    );
    assert_eq!(
        h.search(&[0.0, 0.0], 1, &o).unwrap_err().code(),
        "zero_vector"
    );
    let big = SearchOptions {
        ef: Some(MAX_EF + 1),
        filter: None,
    };
    assert_eq!(
        h.search(&[1.0, 2.0], 1, &big).unwrap_err().code(),
        "invalid_parameter"
    );
    // k above the number held is fine: every vector comes back.
    assert_eq!(h.search(&[1.0, 2.0], 50, &o).unwrap().len(), 1);
}

#[test]
fn filters_return_only_allowed_ids_and_k_of_them() {
    let (n, dim) = (4000, 16);
    let base = clustered(n, dim, 10, 3);
    let ids: Vec<u64> = (0..n as u64).collect();
    let h = build(HnswConfig::new(dim, Metric::L2), &ids, &base);
    let q = &base[5 * dim..6 * dim];
    // A small allow-list is scored exactly.
    let allow: Vec<u64> = (0..n as u64).filter(|i| i % 97 == 0).collect();
    let opts = SearchOptions {
        ef: None,
        filter: Some(Filter::Allow(&allow)),
    };
    let hits = h.search(q, 10, &opts).unwrap();
    let t = truth(
        &allow
            .iter()
            .flat_map(|&i| base[i as usize * dim..(i as usize + 1) * dim].to_vec())
            .collect::<Vec<_>>(),
        &allow,
        q,
        dim,
        Metric::L2,
        10,
    );
    assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), t[0]);
    // A large allow-list and a predicate walk the graph.
    let big: Vec<u64> = (0..n as u64).filter(|i| i % 2 == 1).collect();
    let opts = SearchOptions {
        ef: None,
        filter: Some(Filter::Allow(&big)),
    };
    let hits = h.search(q, 10, &opts).unwrap();
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h.id % 2 == 1));
    let pred = |id: u64| id % 3 == 0;
    let opts = SearchOptions {
        ef: None,
        filter: Some(Filter::Predicate(&pred)),
    };
    let hits = h.search(q, 10, &opts).unwrap();
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h.id % 3 == 0));
    // A predicate that keeps 4 ids still finds all 4.
    let rare = |id: u64| id >= n as u64 - 4;
    let opts = SearchOptions {
        ef: None,
        filter: Some(Filter::Predicate(&rare)),
    };
    assert_eq!(h.search(q, 10, &opts).unwrap().len(), 4);
    // A long allow-list that holds 4 known ids (the walk comes up short; the exact scan
    // completes it), and a short one that names an id three times: each id once.
    let long: Vec<u64> = (0..3000u64)
        .map(|i| if i < 4 { i * 1000 } else { 10 * n as u64 + i })
        .collect();
    let opts = SearchOptions {
        ef: None,
        filter: Some(Filter::Allow(&long)),
    };
    let mut got: Vec<u64> = h
        .search(q, 10, &opts)
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect();
    got.sort_unstable();
    assert_eq!(got, [0, 1000, 2000, 3000]);
    let twice = [7, 7, 9, 7];
    let opts = SearchOptions {
        ef: None,
        filter: Some(Filter::Allow(&twice)),
    };
    let mut got: Vec<u64> = h
        .search(q, 10, &opts)
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect();
    got.sort_unstable();
    assert_eq!(got, [7, 9]);
    // Unknown ids in an allow-list are ignored.
    let unknown = [u64::MAX, 10 * n as u64];
    let opts = SearchOptions {
        ef: None,
        filter: Some(Filter::Allow(&unknown)),
    };
    assert!(h.search(q, 10, &opts).unwrap().is_empty());
}

#[test]
fn sq8_saves_memory_and_reranking_restores_recall() {
    let (n, dim) = (3000, 64);
    let data = clustered(n + 100, dim, 20, 5);
    let (base, queries) = data.split_at(n * dim);
    let ids: Vec<u64> = (0..n as u64).collect();
    let t = truth(base, &ids, queries, dim, Metric::Cosine, 10);
    let f32_index = build(HnswConfig::new(dim, Metric::Cosine), &ids, base);
    let mut cfg = HnswConfig::new(dim, Metric::Cosine);
    cfg.quantization = Quantization::Sq8;
    let sq8 = build(cfg.clone(), &ids, base);
    cfg.rerank = true;
    let rerank = build(cfg, &ids, base);
    let (r_sq8, r_rerank) = (
        recall(&sq8, queries, &t, 10),
        recall(&rerank, queries, &t, 10),
    );
    assert!(r_sq8 >= 0.9, "sq8 recall {r_sq8}");
    assert!(
        r_rerank >= 0.95 && r_rerank >= r_sq8,
        "rerank recall {r_rerank} vs {r_sq8}"
    );
    let (a, b) = (f32_index.store.memory_bytes(), sq8.store.memory_bytes());
    assert!(b * 3 < a, "sq8 vectors {b} bytes vs f32 {a}");
    // get decodes SQ8 to within one quantisation step.
    let v = sq8.get(7).unwrap();
    let mut want = base[7 * dim..8 * dim].to_vec();
    normalize(&mut want);
    let max_err = v
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(max_err < 0.01, "{max_err}");
}

#[test]
fn bytes_round_trip_without_rebuilding() {
    let (n, dim) = (1500, 12);
    let base = clustered(n, dim, 8, 21);
    let ids: Vec<u64> = (0..n as u64).map(|i| i << 40 | 5).collect();
    for quantization in [Quantization::None, Quantization::Sq8] {
        for rerank in [false, true] {
            let mut cfg = HnswConfig::new(dim, Metric::Cosine);
            cfg.quantization = quantization;
            cfg.rerank = rerank;
            cfg.capacity = Some(5000);
            let mut h = build(cfg, &ids, &base);
            h.delete(&ids[..100]);
            h.delete(&ids[200..210]);
            let bytes = h.to_bytes();
            let back = Hnsw::from_bytes(&bytes).unwrap();
            let again = back.to_bytes();
            let diff = again.iter().zip(&bytes).position(|(a, b)| a != b);
            assert!(
                again.len() == bytes.len() && diff.is_none(),
                "re-serialised bytes differ at {diff:?} ({} vs {} bytes)",
                again.len(),
                bytes.len()
            );
            assert_eq!(back.len(), h.len());
            assert_eq!(back.config(), h.config());
            let qs = &base[..20 * dim];
            let o = SearchOptions::default();
            assert_eq!(
                back.search_batch(qs, 10, &o).unwrap(),
                h.search_batch(qs, 10, &o).unwrap()
            );
            assert!(back.get(ids[0]).is_none() && back.get(ids[150]).is_some());
            // The loaded index keeps taking writes.
            let mut back = back;
            back.upsert(&[1, 2], &base[..2 * dim]).unwrap();
            back.delete(&ids[300..600]);
            assert_eq!(back.len(), h.len() + 2 - 300);
        }
    }
}

#[test]
fn corrupt_or_truncated_bytes_are_typed_errors() {
    let base = clustered(300, 8, 4, 2);
    let ids: Vec<u64> = (0..300).collect();
    let h = build(HnswConfig::new(8, Metric::L2), &ids, &base);
    let bytes = h.to_bytes();
    for len in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
        let e = Hnsw::from_bytes(&bytes[..len]).unwrap_err();
        assert_eq!(e.code(), "malformed", "{len}");
    }
    for pos in (0..bytes.len()).step_by(13) {
        let mut b = bytes.clone();
        b[pos] ^= 0x5A;
        assert_eq!(
            Hnsw::from_bytes(&b).unwrap_err().code(),
            "malformed",
            "{pos}"
        );
    }
    let mut b = bytes.clone();
    b[8] = 9;
    assert!(Hnsw::from_bytes(&b)
        .unwrap_err()
        .to_string()
        .contains("version 9"));
}

/// Rewrites one little-endian u32 at `pos` and fixes the checksum, to reach the structural
/// checks behind it.
fn patch(bytes: &[u8], pos: usize, value: u32) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[pos..pos + 4].copy_from_slice(&value.to_le_bytes());
    let n = b.len() - 4;
    let crc = crate::crc32::hash(&b[..n]);
    b[n..].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn structurally_wrong_bytes_with_a_valid_checksum_are_refused() {
    let base = clustered(200, 4, 4, 8);
    let ids: Vec<u64> = (0..200).collect();
    let h = build(HnswConfig::new(4, Metric::L2), &ids, &base);
    let bytes = h.to_bytes();
    let header = 16;
    // dim = 0, slots huge, entry out of range, live count wrong.
    for (field, value) in [
        (0usize, 0u32),
        (8, u32::MAX),
        (11, 5000),
        (9, 7),
        (2, 1),
        (6, 9),
    ] {
        let b = patch(&bytes, header + field * 4, value);
        assert_eq!(
            Hnsw::from_bytes(&b).unwrap_err().code(),
            "malformed",
            "field {field}"
        );
    }
    // A level-0 link that points past the last slot: find slot 0's first link.
    let sections = header + 88;
    let levels_len = 200usize.next_multiple_of(8);
    let tomb_len = 25usize.next_multiple_of(8);
    let level0 = sections + 8 + levels_len + 8 + tomb_len + 8 + 1600 + 8 + 800 + 8;
    let b = patch(&bytes, level0 + 4, 100_000);
    let e = Hnsw::from_bytes(&b).unwrap_err();
    assert!(e.to_string().contains("links to 100000"), "{e}");
}

#[test]
fn capacity_evicts_the_least_recently_hit() {
    let dim = 4;
    let mut cfg = HnswConfig::new(dim, Metric::L2);
    cfg.capacity = Some(100);
    let mut h = Hnsw::new(cfg).unwrap();
    let base = clustered(150, dim, 5, 4);
    let ids: Vec<u64> = (0..100).collect();
    h.upsert(&ids, &base[..100 * dim]).unwrap();
    // Hit ids 0..10 so they are the most recently used.
    for id in 0..10 {
        assert!(h.get(id).is_some());
    }
    let r = h
        .upsert(&[200, 201, 202], &base[100 * dim..103 * dim])
        .unwrap();
    assert_eq!(r.evicted, vec![10, 11, 12]);
    assert_eq!(h.len(), 100);
    assert!(h.contains(0) && !h.contains(10) && h.contains(202));
    let s = h.stats();
    assert_eq!((s.evictions, s.get_hits), (3, 10));
    // A batch larger than the capacity keeps its last rows.
    let big: Vec<u64> = (1000..1150).collect();
    let r = h.upsert(&big, &base).unwrap();
    assert_eq!(h.len(), 100);
    assert!(h.contains(1149) && !h.contains(1000) && !h.contains(0));
    assert_eq!(r.evicted.len(), 100 + 50);
}

#[test]
fn a_byte_capacity_bounds_measured_memory() {
    let dim = 32;
    let mut cfg = HnswConfig::new(dim, Metric::L2);
    cfg.capacity_bytes = Some(400_000);
    let mut h = Hnsw::new(cfg).unwrap();
    let base = clustered(6000, dim, 10, 9);
    let ids: Vec<u64> = (0..6000).collect();
    for (c, chunk) in ids.chunks(500).enumerate() {
        h.upsert(chunk, &base[c * 500 * dim..(c * 500 + chunk.len()) * dim])
            .unwrap();
    }
    let s = h.stats();
    assert!(s.vectors > 1000 && s.vectors < 6000, "{s:?}");
    let fixed = 64 * 1024; // search buffers and the id map's rounding
    assert!(s.memory_bytes <= 400_000 + fixed, "{s:?}");
    assert!(
        h.search(&base[..dim], 10, &SearchOptions::default())
            .unwrap()
            .len()
            == 10
    );
}

#[test]
fn stats_count_hits_and_misses() {
    let mut h = Hnsw::new(HnswConfig::new(2, Metric::L2)).unwrap();
    h.upsert(&[1, 2, 3], &[0.0, 1.0, 1.0, 0.0, 1.0, 1.0])
        .unwrap();
    h.search(&[0.0, 0.0], 2, &SearchOptions::default()).unwrap();
    h.search(&[0.0, 0.0], 5, &SearchOptions::default()).unwrap();
    h.get(1);
    h.get(9);
    h.delete(&[2]);
    let s = h.stats();
    assert_eq!(
        (s.searches, s.short_searches, s.hits, s.misses),
        (2, 0, 3, 1)
    );
    assert_eq!((s.vectors, s.inserts, s.deletes, s.dim), (2, 3, 1, 2));
    assert!(s.memory_bytes > 0);
}

#[test]
fn deleting_everything_then_inserting_again_works() {
    let base = clustered(500, 8, 4, 1);
    let ids: Vec<u64> = (0..500).collect();
    let mut h = build(HnswConfig::new(8, Metric::L2), &ids, &base);
    assert_eq!(h.delete(&ids), 500);
    assert!(h.is_empty());
    assert!(h
        .search(&base[..8], 5, &SearchOptions::default())
        .unwrap()
        .is_empty());
    h.upsert(&ids[..50], &base[..400]).unwrap();
    assert_eq!(
        h.search(&base[..8], 5, &SearchOptions::default())
            .unwrap()
            .len(),
        5
    );
}

#[derive(Debug, Clone)]
enum Op {
    Upsert(Vec<u64>, u64),
    Delete(Vec<u64>),
    Search(u64, usize),
    Consolidate,
    RoundTrip,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (prop::collection::hash_set(0u64..120, 1..25), any::<u64>())
            .prop_map(|(ids, seed)| Op::Upsert(ids.into_iter().collect(), seed)),
        2 => prop::collection::vec(0u64..120, 1..30).prop_map(Op::Delete),
        3 => (any::<u64>(), 1usize..20).prop_map(|(s, k)| Op::Search(s, k)),
        1 => Just(Op::Consolidate),
        1 => Just(Op::RoundTrip),
    ]
}

/// Runs a history against the index and an exact model, checking what must always hold:
/// deleted ids never come back, every live id is retrievable, searches return min(k, live)
/// live hits, best first, each scored with its own vector's exact distance. Returns how many
/// searches found the exact nearest neighbour first, and how many searches ran (HNSW is
/// approximate: a node the graph no longer reaches is only found by the exact fallback).
fn run_history(ops: Vec<Op>, sq8: bool) -> Result<(usize, usize), TestCaseError> {
    let dim = 6;
    let mut cfg = HnswConfig::new(dim, Metric::L2);
    cfg.m = 4;
    cfg.ef_construction = 16;
    cfg.ef_search = 200;
    if sq8 {
        cfg.quantization = Quantization::Sq8;
        cfg.rerank = true;
    }
    let mut h = Hnsw::new(cfg).unwrap();
    let mut model: HashMap<u64, Vec<f32>> = HashMap::new();
    let (mut exact, mut searches) = (0, 0);
    for op in ops {
        match op {
            Op::Upsert(ids, seed) => {
                let v = clustered(ids.len(), dim, 3, seed);
                h.upsert(&ids, &v).unwrap();
                for (id, row) in ids.iter().zip(v.chunks_exact(dim)) {
                    model.insert(*id, row.to_vec());
                }
            }
            Op::Delete(ids) => {
                let unique: HashSet<u64> = ids.iter().copied().collect();
                let held = unique.iter().filter(|id| model.contains_key(id)).count();
                prop_assert_eq!(h.delete(&ids), held);
                for id in unique {
                    model.remove(&id);
                }
            }
            Op::Search(seed, k) => {
                let q = clustered(1, dim, 3, seed);
                let hits = h.search(&q, k, &SearchOptions::default()).unwrap();
                prop_assert_eq!(hits.len(), k.min(model.len()));
                for pair in hits.windows(2) {
                    prop_assert!(pair[0].score <= pair[1].score, "hits out of order");
                }
                for hit in &hits {
                    let v = model.get(&hit.id);
                    prop_assert!(v.is_some(), "deleted id {} returned", hit.id);
                    let d = crate::metric::l2_squared(&q, v.unwrap());
                    prop_assert!(
                        (hit.score - d).abs() <= 1e-4 * d.max(1.0),
                        "score {} vs {}",
                        hit.score,
                        d
                    );
                }
                if let Some(first) = hits.first() {
                    searches += 1;
                    let best = model
                        .values()
                        .map(|v| crate::metric::l2_squared(&q, v))
                        .fold(f32::INFINITY, f32::min);
                    exact += usize::from((first.score - best).abs() <= 1e-4 * best.max(1.0));
                }
            }
            Op::Consolidate => h.consolidate(),
            Op::RoundTrip => {
                h = Hnsw::from_bytes(&h.to_bytes()).unwrap();
            }
        }
        prop_assert_eq!(h.len(), model.len());
    }
    for (id, v) in &model {
        let got = h.get(*id).unwrap();
        let tol = if sq8 { 0.1 } else { 0.0 };
        prop_assert!(got.iter().zip(v).all(|(a, b)| (a - b).abs() <= tol));
    }
    Ok((exact, searches))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any history of upserts, deletes, consolidations and byte round trips keeps the
    /// invariants of [`run_history`].
    #[test]
    fn matches_an_exact_model(ops in prop::collection::vec(op(), 1..40), sq8 in any::<bool>()) {
        run_history(ops, sq8)?;
    }
}

/// Over 400 fixed random histories (m = 4, tiny graphs: the hard case for reachability), the
/// first hit is the exact nearest neighbour in at least 99 % of searches.
#[test]
fn the_first_hit_is_nearly_always_exact() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (prop::collection::vec(op(), 1..40), any::<bool>());
    let (mut exact, mut searches) = (0, 0);
    for _ in 0..400 {
        let (ops, sq8) = strategy.new_tree(&mut runner).unwrap().current();
        let (e, s) = run_history(ops, sq8).unwrap();
        exact += e;
        searches += s;
    }
    let rate = exact as f64 / searches as f64;
    assert!(
        searches > 1000 && rate >= 0.99,
        "{exact} of {searches} searches exact ({rate:.4})"
    );
}

/// The byte format is a contract with every cache the server has shipped a snapshot to: a
/// change to it must bump `FORMAT_VERSION` (and this test's expectation).
#[test]
fn the_byte_format_is_stable() {
    let mut cfg = HnswConfig::new(3, Metric::L2);
    cfg.m = 2;
    cfg.seed = 7;
    let mut h = Hnsw::new(cfg).unwrap();
    let rows = [
        0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0,
    ];
    h.upsert(&[10, 20, 30, 40, 1 << 60], &rows).unwrap();
    h.delete(&[30]);
    let bytes = h.to_bytes();
    assert_eq!(&bytes[..12], b"PRXHNSW\0\x01\0\0\0");
    assert_eq!(
        (bytes.len(), crate::crc32::hash(&bytes)),
        (460, 0x2144_DF1C)
    );
}
