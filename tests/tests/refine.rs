//! Re-ranking of compressed indexes over real HTTP against a real `proxima serve` process: a
//! search's `params.refine_factor` (JSON body and binary query string), the collection's own
//! `refine_factor` in its index params, `describe`'s `index.refine_factor` and
//! `memory.raw_bytes`, 400s for factors out of range or on an index that holds raw vectors,
//! and deleted rows that never come back.

use std::time::{Duration, Instant};

use proxima_e2e::{call, expect_error, http_with, pseudo_row, HttpReply, Server};
use serde_json::{json, Value};

const DIM: usize = 8;
const ROWS: u64 = 4000;
const QUERIES: u64 = 50;

/// Query `q`: a row of the same distribution that is not in the collection.
fn query(q: u64) -> Vec<f32> {
    pseudo_row(1_000_000 + q, DIM)
}

/// The exact top-10 ids (L2) of `q` among `live`.
fn exact_top10(q: &[f32], live: &[u64]) -> Vec<u64> {
    let mut scored: Vec<(f32, u64)> = live
        .iter()
        .map(|&i| {
            let r = pseudo_row(i, DIM);
            (r.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum(), i)
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored.iter().take(10).map(|&(_, i)| i).collect()
}

fn create(s: &Server, name: &str, index: Value) -> HttpReply {
    call(
        s,
        "PUT",
        &format!("/v1/collections/{name}"),
        Some(json!({"dim": DIM, "metric": "l2", "index": index})),
    )
}

fn fill(s: &Server, name: &str) {
    let ids: Vec<u64> = (0..ROWS).collect();
    for chunk in ids.chunks(2000) {
        let vectors: Vec<Vec<f32>> = chunk.iter().map(|&i| pseudo_row(i, DIM)).collect();
        let r = call(
            s,
            "POST",
            &format!("/v1/collections/{name}/vectors"),
            Some(json!({"vectors": vectors, "ids": chunk})),
        );
        assert_eq!(r.status, 200, "{}", r.json);
    }
    let r = call(s, "POST", &format!("/v1/collections/{name}/flush"), None);
    assert_eq!(r.status, 200, "{}", r.json);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = call(s, "GET", &format!("/v1/collections/{name}/index"), None);
        assert_eq!(r.status, 200, "{}", r.json);
        if r.json["state"] == "ready" {
            break;
        }
        assert!(Instant::now() < deadline, "index not ready: {}", r.json);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn search(s: &Server, name: &str, params: Value) -> HttpReply {
    let vectors: Vec<Vec<f32>> = (0..QUERIES).map(query).collect();
    call(
        s,
        "POST",
        &format!("/v1/collections/{name}/search"),
        Some(json!({"vectors": vectors, "k": 10, "consistency": "strong", "params": params})),
    )
}

fn ids(hits: &Value) -> Vec<u64> {
    hits.as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_u64().unwrap())
        .collect()
}

/// Recall@10 of a search answer against the exact top-10 of each query.
fn recall(answer: &HttpReply, truth: &[Vec<u64>]) -> f64 {
    assert_eq!(answer.status, 200, "{}", answer.json);
    let results = answer.json["results"].as_array().unwrap();
    let found: usize = results
        .iter()
        .zip(truth)
        .map(|(hits, t)| ids(hits).iter().filter(|id| t.contains(id)).count())
        .sum();
    found as f64 / (10 * truth.len()) as f64
}

#[test]
fn refine_factor_over_http() {
    let s = Server::start(&["--no-embed"]);
    s.wait_ready();
    // Two PQ codes of 4 bits per vector (1 byte; the raw rows take 32): coarse on purpose.
    let r = create(
        &s,
        "pq",
        json!({"type": "IVF_PQ", "params": {"nlist": 16, "m": 2, "nbits": 4}}),
    );
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(r.json["index"]["refine_factor"], 4, "{}", r.json);
    fill(&s, "pq");
    let info = call(&s, "GET", "/v1/collections/pq", None).json;
    assert_eq!(info["memory"]["raw_bytes"], ROWS * DIM as u64 * 4, "{info}");
    let all: Vec<u64> = (0..ROWS).collect();
    let truth: Vec<Vec<u64>> = (0..QUERIES).map(|q| exact_top10(&query(q), &all)).collect();
    // Every list probed: only the codes limit recall, and re-ranking lifts it.
    let off = recall(
        &search(&s, "pq", json!({"nprobe": 16, "refine_factor": 1})),
        &truth,
    );
    let default = recall(&search(&s, "pq", json!({"nprobe": 16})), &truth);
    let wide = recall(
        &search(&s, "pq", json!({"nprobe": 16, "refine_factor": 64})),
        &truth,
    );
    assert!(
        off < default && default <= wide && wide >= 0.95,
        "recall@10 off {off:.3}, default {default:.3}, ×64 {wide:.3}"
    );
    // The binary form takes it in the query string.
    let body = proxima_core::formats::encode_rows(DIM, &query(0), None);
    let binary = |q: &str| {
        http_with(
            "POST",
            &s.url(&format!("/v1/collections/pq/search?{q}")),
            &[],
            Some(("application/octet-stream", &body)),
        )
    };
    let r = binary("k=10&nprobe=16&refine_factor=64&consistency=strong");
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(ids(&r.json["results"][0]), truth[0]);
    expect_error(&binary("k=10&refine_factor=0"), 400, "invalid_parameter");
    // Out of range: 400 with the parameter named.
    for bad in [0, 65] {
        let r = search(&s, "pq", json!({"refine_factor": bad}));
        expect_error(&r, 400, "invalid_parameter");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("refine_factor"),
            "{}",
            r.json
        );
    }
    // Deleted rows never come back through re-ranking.
    let victims: Vec<u64> = {
        let mut v: Vec<u64> = truth.iter().flat_map(|t| t[..3].to_vec()).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let r = call(
        &s,
        "POST",
        "/v1/collections/pq/delete",
        Some(json!({"ids": victims})),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    for factor in [1, 4, 64] {
        let r = search(&s, "pq", json!({"nprobe": 16, "refine_factor": factor}));
        assert_eq!(r.status, 200, "{}", r.json);
        for hits in r.json["results"].as_array().unwrap() {
            let got = ids(hits);
            assert_eq!(got.len(), 10, "×{factor}: {hits}");
            assert!(
                got.iter().all(|id| victims.binary_search(id).is_err()),
                "×{factor}: a deleted id came back: {hits}"
            );
        }
    }
    // The collection's own factor is its queries' default.
    let r = create(
        &s,
        "own",
        json!({"type": "IVF_PQ", "params": {"nlist": 16, "m": 2, "nbits": 4, "refine_factor": 1}}),
    );
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(r.json["index"]["refine_factor"], 1, "{}", r.json);
    assert_eq!(r.json["schema"]["index"]["params"]["refine_factor"], 1);
    fill(&s, "own");
    let own = search(&s, "own", json!({"nprobe": 16}));
    let off = search(&s, "own", json!({"nprobe": 16, "refine_factor": 1}));
    assert_eq!(own.json["results"], off.json["results"]);
    assert!(
        recall(
            &search(&s, "own", json!({"nprobe": 16, "refine_factor": 64})),
            &truth
        ) >= 0.95
    );
    // Refused at creation: out of range, or on an index that holds the raw vectors.
    expect_error(
        &create(
            &s,
            "bad1",
            json!({"type": "IVF_PQ", "params": {"refine_factor": 0}}),
        ),
        400,
        "invalid_parameter",
    );
    let r = create(
        &s,
        "bad2",
        json!({"type": "HNSW", "params": {"refine_factor": 2}}),
    );
    assert_eq!(r.status, 400, "{}", r.json);
    // Indexes over raw vectors ignore a query's factor.
    let r = create(&s, "flat", json!({"type": "FLAT"}));
    assert_eq!(r.status, 201, "{}", r.json);
    assert!(r.json["index"].get("refine_factor").is_none(), "{}", r.json);
}
