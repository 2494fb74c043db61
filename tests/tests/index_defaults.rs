//! Index parameters left out, over real HTTP against a real `proxima serve` process:
//! `{"type":"HNSW"}`, `{"type":"HNSW","params":{}}`, `{"type":"IVF_FLAT","params":{}}` and
//! `{"type":"AUTO"}` are accepted, and `describe` shows what was chosen — per segment for IVF
//! `nlist` and for `AUTO`'s pick — before and after a restart.

use std::time::{Duration, Instant};

use proxima_e2e::{call, expect_error, pseudo_row, run_cli, HttpReply, Server};
use serde_json::{json, Value};

const DIM: usize = 8;

fn create(s: &Server, name: &str, index: Value) -> HttpReply {
    call(
        s,
        "PUT",
        &format!("/v1/collections/{name}"),
        Some(json!({"dim": DIM, "metric": "l2", "index": index})),
    )
}

/// Inserts rows `ids` (as their own ids) in batches of 2,000, then flushes: one sealed segment.
fn insert_and_flush(s: &Server, name: &str, ids: std::ops::Range<u64>) {
    let ids: Vec<u64> = ids.collect();
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
}

fn wait_index_ready(s: &Server, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = call(s, "GET", &format!("/v1/collections/{name}/index"), None);
        assert_eq!(r.status, 200, "{}", r.json);
        if r.json["state"] == "ready" {
            return r.json;
        }
        assert!(Instant::now() < deadline, "index not ready: {}", r.json);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sealed segments of a description, oldest first.
fn sealed(info: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = info["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "sealed")
        .cloned()
        .collect();
    out.sort_by_key(|s| s["id"].as_u64());
    out
}

fn describe(s: &Server, name: &str) -> Value {
    let r = call(s, "GET", &format!("/v1/collections/{name}"), None);
    assert_eq!(r.status, 200, "{}", r.json);
    r.json
}

fn nearest(s: &Server, name: &str, i: u64) -> Value {
    let r = call(
        s,
        "POST",
        &format!("/v1/collections/{name}/search"),
        Some(
            json!({"vectors": [pseudo_row(i, DIM)], "k": 1, "consistency": "strong", "params": {"nprobe": 16, "ef": 64}}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    r.json["results"][0][0]["id"].clone()
}

#[test]
fn hnsw_and_ivf_without_params_take_defaults() {
    let s = Server::start(&["--no-embed"]);
    s.wait_ready();
    let defaults = json!({"type": "HNSW", "params": {"m": 16, "ef_construction": 100}});
    for (name, index) in [
        ("h1", json!({"type": "HNSW"})),
        ("h2", json!({"type": "HNSW", "params": {}})),
        ("h3", json!({"type": "HNSW", "params": null})),
    ] {
        let r = create(&s, name, index.clone());
        assert_eq!(r.status, 201, "{index}: {}", r.json);
        assert_eq!(r.json["schema"]["index"], defaults, "{index}");
        assert_eq!(r.json["index"]["spec"], defaults, "{index}");
    }
    // A partial spec keeps what it gives.
    let r = create(&s, "h4", json!({"type": "HNSW_SQ8", "params": {"m": 8}}));
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(
        r.json["schema"]["index"],
        json!({"type": "HNSW_SQ8", "params": {"m": 8, "ef_construction": 100}})
    );
    let r = create(&s, "pq", json!({"type": "IVF_PQ"}));
    assert_eq!(
        r.json["schema"]["index"],
        json!({"type": "IVF_PQ", "params": {"m": 2, "nbits": 8}}),
        "m: the smallest divisor of 8 that is at least 8 / 4"
    );
    insert_and_flush(&s, "h2", 0..500);
    wait_index_ready(&s, "h2");
    let seg = &sealed(&describe(&s, "h2"))[0];
    assert_eq!(seg["index"]["state"], "ready", "{seg}");
    assert_eq!(seg["index"]["spec"], defaults, "{seg}");
    assert_eq!(nearest(&s, "h2", 7), 7);

    // IVF_FLAT with empty params: nlist per segment, from each segment's rows.
    let r = create(&s, "ivf", json!({"type": "IVF_FLAT", "params": {}}));
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(r.json["schema"]["index"], json!({"type": "IVF_FLAT"}));
    insert_and_flush(&s, "ivf", 0..4000);
    insert_and_flush(&s, "ivf", 4000..5000);
    wait_index_ready(&s, "ivf");
    let info = describe(&s, "ivf");
    let segs = sealed(&info);
    assert_eq!(segs.len(), 2, "{info}");
    // 4,000 rows: the next power of two above 4√4000 is 256, halved to 64 (64 × 39 ≤ 4,000).
    assert_eq!(
        segs[0]["index"]["spec"],
        json!({"type": "IVF_FLAT", "params": {"nlist": 64}})
    );
    assert_eq!(segs[0]["index"]["type"], "IVF_FLAT(nlist=64)");
    assert!(
        segs[0]["index"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("nlist 64 for this segment's 4000 rows")),
        "{}",
        segs[0]
    );
    assert_eq!(segs[1]["index"]["spec"]["params"]["nlist"], 16);
    assert_eq!(nearest(&s, "ivf", 4321), 4321);
    let list = call(&s, "GET", "/v1/collections", None);
    let listed = list.json["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ivf")
        .unwrap()
        .clone();
    assert_eq!(listed["index"], json!({"type": "IVF_FLAT"}));

    // A rebuild request may leave params out too.
    let r = call(
        &s,
        "POST",
        "/v1/collections/ivf/index",
        Some(json!({"type": "IVF_SQ8", "params": {}})),
    );
    assert_eq!(r.status, 202, "{}", r.json);
    assert_eq!(r.json["index"]["spec"], json!({"type": "IVF_SQ8"}));
    wait_index_ready(&s, "ivf");
    let segs = sealed(&describe(&s, "ivf"));
    assert_eq!(segs[0]["index"]["type"], "IVF_SQ8(nlist=64)");
    assert_eq!(segs[1]["index"]["type"], "IVF_SQ8(nlist=16)");

    // A plan sizes a request as a collection of that many vectors would build it.
    let r = call(
        &s,
        "POST",
        "/v1/plan",
        Some(json!({"vectors": 1_000_000, "dim": 128, "index": {"type": "IVF_FLAT"}})),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["plan"]["index"]["params"]["nlist"], 4096);

    // What is still refused: a parameter the type does not take, a bad value.
    expect_error(
        &create(&s, "bad", json!({"type": "HNSW", "params": {"nlist": 8}})),
        400,
        "invalid_body",
    );
    expect_error(
        &create(&s, "bad", json!({"type": "IVF_PQ", "params": {"m": 3}})),
        400,
        "invalid_parameter",
    );
    expect_error(
        &create(&s, "bad", json!({"type": "DISKANN"})),
        400,
        "unsupported",
    );

    // After a restart every segment serves the spec it was given, with its reason.
    let (code, s) = s.restart(&["--no-embed"]);
    assert_eq!(code, Some(0));
    s.wait_ready();
    let status = wait_index_ready(&s, "ivf");
    assert_eq!(status["spec"], json!({"type": "IVF_SQ8"}));
    let segs = sealed(&describe(&s, "ivf"));
    assert_eq!(segs[0]["index"]["type"], "IVF_SQ8(nlist=64)");
    assert!(segs[0]["index"]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("nlist 64")));
    assert_eq!(
        describe(&s, "h1")["schema"]["index"],
        defaults,
        "the defaults are part of the schema"
    );
}

#[test]
fn auto_picks_from_the_collection_size() {
    let s = Server::start(&["--no-embed"]);
    s.wait_ready();
    let r = create(&s, "auto", json!({"type": "AUTO"}));
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(
        r.json["schema"]["index"],
        json!({"type": "AUTO", "params": {"recall": 0.95}})
    );
    assert_eq!(r.json["index"]["auto"]["index"], json!({"type": "FLAT"}));
    let r = create(
        &s,
        "budget",
        json!({"type": "AUTO", "params": {"recall": 0.9, "ram_bytes": 1_000_000_000u64}}),
    );
    assert_eq!(r.status, 201, "{}", r.json);
    expect_error(
        &create(
            &s,
            "bad",
            json!({"type": "AUTO", "params": {"recall": 2.0}}),
        ),
        400,
        "invalid_parameter",
    );
    expect_error(
        &create(&s, "bad", json!({"type": "AUTO", "params": {"nlist": 8}})),
        400,
        "invalid_body",
    );

    // 1,000 vectors: exact search, and describe says why.
    insert_and_flush(&s, "auto", 0..1000);
    let status = wait_index_ready(&s, "auto");
    assert_eq!(status["auto"]["index"], json!({"type": "FLAT"}));
    assert_eq!(status["auto"]["vectors"], 1000);
    let segs = sealed(&describe(&s, "auto"));
    let reason = segs[0]["index"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("AUTO: picked for 1000 vectors × 8, recall target 0.95"),
        "{}",
        segs[0]
    );
    assert_eq!(segs[0]["index"]["state"], "exact");

    // Grown past 20,000 vectors, the next segment gets the advisor's graph.
    insert_and_flush(&s, "auto", 1000..22_000);
    let status = wait_index_ready(&s, "auto");
    let hnsw = json!({"type": "HNSW", "params": {"m": 16, "ef_construction": 200}});
    assert_eq!(status["auto"]["index"], hnsw, "{status}");
    assert!(status["auto"]["reasons"]
        .as_array()
        .is_some_and(|r| r.len() >= 2));
    let segs = sealed(&describe(&s, "auto"));
    assert_eq!(
        segs[0]["index"]["state"], "exact",
        "the first keeps its pick"
    );
    assert_eq!(segs[1]["index"]["spec"], hnsw, "{}", segs[1]);
    assert!(segs[1]["index"]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("picked for 22000 vectors")));
    assert_eq!(nearest(&s, "auto", 12_345), 12_345);

    // A restart keeps each segment's pick and its reason.
    let (code, s) = s.restart(&["--no-embed"]);
    assert_eq!(code, Some(0));
    s.wait_ready();
    wait_index_ready(&s, "auto");
    let segs = sealed(&describe(&s, "auto"));
    assert_eq!(segs[1]["index"]["spec"], hnsw);
    assert!(segs[1]["index"]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("picked for 22000 vectors")));

    // POST …/index with AUTO picks again for every segment, for the size now.
    let r = call(
        &s,
        "POST",
        "/v1/collections/auto/index",
        Some(json!({"type": "AUTO"})),
    );
    assert_eq!(r.status, 202, "{}", r.json);
    wait_index_ready(&s, "auto");
    let segs = sealed(&describe(&s, "auto"));
    assert!(segs.iter().all(|g| g["index"]["spec"] == hnsw), "{segs:?}");
}

#[test]
fn import_creates_collections_with_partial_index_specs() {
    let s = Server::start(&["--no-embed"]);
    s.wait_ready();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("base.fvecs");
    let mut bytes = Vec::new();
    for i in 0..2000u64 {
        bytes.extend_from_slice(&(DIM as i32).to_le_bytes());
        pseudo_row(i, DIM)
            .iter()
            .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
    }
    std::fs::write(&file, bytes).unwrap();
    for (name, index) in [
        ("imp-ivf", r#"{"type":"IVF_FLAT"}"#),
        ("imp-hnsw", r#"{"type":"HNSW","params":{}}"#),
        ("imp-auto", r#"{"type":"AUTO","params":{"recall":0.9}}"#),
    ] {
        let (code, out, err) = run_cli(&[
            "import",
            file.to_str().unwrap(),
            "--collection",
            name,
            "--server",
            &s.base_url,
            "--index",
            index,
            "--flush",
        ]);
        assert_eq!(code, 0, "{index}: {err}");
        assert!(out.contains("imported 2000 vectors"), "{out}");
        wait_index_ready(&s, name);
    }
    // 2,000 rows: 4√2000 → 256, halved to 32 (32 × 39 ≤ 2,000).
    let seg = &sealed(&describe(&s, "imp-ivf"))[0];
    assert_eq!(seg["index"]["type"], "IVF_FLAT(nlist=32)", "{seg}");
    let seg = &sealed(&describe(&s, "imp-hnsw"))[0];
    assert_eq!(
        seg["index"]["type"], "HNSW(m=16, ef_construction=100)",
        "{seg}"
    );
    let info = describe(&s, "imp-auto");
    assert_eq!(info["index"]["auto"]["index"]["type"], "FLAT", "{info}");
    let (code, _, err) = run_cli(&[
        "import",
        file.to_str().unwrap(),
        "--collection",
        "imp-bad",
        "--server",
        &s.base_url,
        "--index",
        r#"{"type":"HNSW","params":{"nlist":4}}"#,
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("HNSW takes m, ef_construction"), "{err}");
}
