//! The sync endpoints over real HTTP on a real server process: the change feed (JSON and
//! binary, paging, handles, live long-polls, retention and restarts) and cache snapshots.

use std::time::{Duration, Instant};

use proxima_core::hnsw::SearchOptions;
use proxima_core::sync::{ChangeBatch, SyncState};
use proxima_e2e::{http, Server};
use serde_json::json;

fn create(s: &Server, name: &str) {
    let r = http(
        "PUT",
        &s.url(&format!("/v1/collections/{name}")),
        Some(r#"{"dim": 3, "metric": "l2"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.json);
}

fn insert(s: &Server, name: &str, ids: &[u64], base: f32) -> u64 {
    let vectors: Vec<Vec<f32>> = ids.iter().map(|&i| vec![i as f32, base, 1.0]).collect();
    let body = json!({"ids": ids, "vectors": vectors}).to_string();
    let r = http(
        "POST",
        &s.url(&format!("/v1/collections/{name}/vectors")),
        Some(&body),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    r.json["seq"].as_u64().unwrap()
}

fn delete(s: &Server, name: &str, ids: &[u64]) {
    let body = json!({ "ids": ids }).to_string();
    let r = http(
        "POST",
        &s.url(&format!("/v1/collections/{name}/delete")),
        Some(&body),
    );
    assert_eq!(r.status, 200, "{}", r.json);
}

fn get_bytes(url: &str, accept: &str) -> (u16, Vec<u8>, Option<String>) {
    let resp = match ureq::get(url).set("Accept", accept).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let status = resp.status();
    let handle = resp.header("x-proxima-handle").map(str::to_string);
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).unwrap();
    (status, body, handle)
}

#[test]
fn the_feed_pages_changes_in_order_as_json_and_binary() {
    let s = Server::start(&["--no-embed"]);
    s.wait_ready();
    create(&s, "docs");
    insert(&s, "docs", &[1, 2, 3], 0.0);
    delete(&s, "docs", &[2]);
    let head = insert(&s, "docs", &[1], 5.0);
    assert_eq!(head, 5);

    let r = http("GET", &s.url("/v1/collections/docs/changes?since=0"), None);
    assert_eq!(r.status, 200, "{}", r.json);
    let handle = r.json["handle"].as_str().unwrap().to_string();
    assert_eq!(r.json["until"], 5);
    assert_eq!(r.json["has_more"], false);
    let records = r.json["records"].as_array().unwrap();
    assert_eq!(records.len(), 5);
    assert_eq!(records[3], json!({"seq": 4, "op": "delete", "id": 2}));
    assert_eq!(
        records[4],
        json!({"seq": 5, "op": "upsert", "id": 1, "vector": [1.0, 5.0, 1.0]})
    );

    // Pages: limit 2 from 1.
    let r = http(
        "GET",
        &s.url("/v1/collections/docs/changes?since=1&limit=2"),
        None,
    );
    assert_eq!(
        (r.json["until"].as_u64(), r.json["has_more"].as_bool()),
        (Some(3), Some(true))
    );

    // The binary frame, by content negotiation, carries the same batch.
    let (status, body, h) = get_bytes(
        &s.url(&format!(
            "/v1/collections/docs/changes?since=0&handle={handle}"
        )),
        "application/octet-stream",
    );
    assert_eq!(status, 200);
    assert_eq!(h.as_deref(), Some(handle.as_str()));
    let batch = ChangeBatch::from_bytes(&body).unwrap();
    batch.validate(3).unwrap();
    assert_eq!((batch.since, batch.until, batch.records.len()), (0, 5, 5));
    assert_eq!(batch.handle, handle);

    // Bad requests name the problem; a stale handle or a future `since` needs a snapshot.
    for q in [
        "since=x",
        "limit=0",
        "limit=10001",
        "live=maybe",
        "timeout_ms=600000",
        "foo=1",
    ] {
        let r = http(
            "GET",
            &s.url(&format!("/v1/collections/docs/changes?{q}")),
            None,
        );
        assert_eq!(
            (r.status, r.json["error"]["code"].as_str()),
            (400, Some("invalid_parameter")),
            "{q}"
        );
    }
    let r = http("GET", &s.url("/v1/collections/nope/changes"), None);
    assert_eq!(r.status, 404);
    for q in ["since=0&handle=0000", "since=6"] {
        let r = http(
            "GET",
            &s.url(&format!("/v1/collections/docs/changes?{q}")),
            None,
        );
        assert_eq!(r.status, 409, "{q}: {}", r.json);
        assert_eq!(r.json["error"]["code"], "snapshot_required");
        assert_eq!(r.json["handle"], handle.as_str());
        assert_eq!(r.json["head"], 5);
    }

    // Drop and re-create: a new handle; the old one is refused.
    assert_eq!(
        http("DELETE", &s.url("/v1/collections/docs"), None).status,
        200
    );
    create(&s, "docs");
    let r = http(
        "GET",
        &s.url(&format!(
            "/v1/collections/docs/changes?since=0&handle={handle}"
        )),
        None,
    );
    assert_eq!(r.status, 409);
    assert_ne!(r.json["handle"], handle.as_str());
}

#[test]
fn live_requests_wait_for_the_next_change_or_the_timeout() {
    let s = Server::start(&["--no-embed"]);
    s.wait_ready();
    create(&s, "live");
    insert(&s, "live", &[1], 0.0);
    // Nothing new: an empty batch after the timeout.
    let t = Instant::now();
    let r = http(
        "GET",
        &s.url("/v1/collections/live/changes?since=1&live=true&timeout_ms=300"),
        None,
    );
    let waited = t.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(
        (
            r.json["until"].as_u64(),
            r.json["records"].as_array().map(Vec::len)
        ),
        (Some(1), Some(0))
    );
    assert!(waited >= Duration::from_millis(280), "{waited:?}");
    // A change arrives while 50 clients wait: every one of them gets it at once.
    let url = s.url("/v1/collections/live/changes?since=1&live=true&timeout_ms=20000");
    let waiters: Vec<_> = (0..50)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let r = http("GET", &url, None);
                (r.status, r.json, Instant::now())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let metrics = http("GET", &s.url("/metrics"), None);
    let text = metrics.json.as_str().unwrap_or_default().to_string();
    assert!(text.contains("proxima_sync_live_waiters 50"), "{text}");
    let written = Instant::now();
    insert(&s, "live", &[2], 1.0);
    for w in waiters {
        let (status, body, at) = w.join().unwrap();
        assert_eq!(status, 200);
        assert_eq!(body["records"][0]["id"], 2, "{body}");
        assert!(at.duration_since(written) < Duration::from_secs(1));
    }
}

#[test]
fn retention_and_restarts_keep_the_feed_whole_or_say_so() {
    let mut s = Server::start(&[
        "--no-embed",
        "--changes-retain-records",
        "50",
        "--changes-retain-bytes",
        "16384",
    ]);
    s.wait_ready();
    create(&s, "r");
    for i in 0..40u64 {
        insert(&s, "r", &[i, i + 1000, i + 2000], i as f32);
    }
    let r = http("POST", &s.url("/v1/collections/r/flush"), None);
    assert_eq!(r.status, 200);
    let r = http("GET", &s.url("/v1/collections/r/changes?since=0"), None);
    assert_eq!(r.status, 409, "{}", r.json);
    let horizon = r.json["horizon"].as_u64().unwrap();
    let handle = r.json["handle"].as_str().unwrap().to_string();
    assert!(horizon > 0 && horizon < 120, "{}", r.json);
    let tail = http(
        "GET",
        &s.url(&format!(
            "/v1/collections/r/changes?since={horizon}&limit=10000"
        )),
        None,
    );
    assert_eq!(tail.status, 200);
    assert_eq!(tail.json["until"], 120);
    assert_eq!(
        tail.json["records"].as_array().unwrap().len() as u64,
        120 - horizon
    );

    // After a restart (the WAL was truncated by the flush) the feed continues, same handle.
    let (code, s2) = s.restart(&[
        "--no-embed",
        "--changes-retain-records",
        "50",
        "--changes-retain-bytes",
        "16384",
    ]);
    assert_eq!(code, Some(0));
    s = s2;
    s.wait_ready();
    let again = http(
        "GET",
        &s.url(&format!(
            "/v1/collections/r/changes?since={horizon}&limit=10000&handle={handle}"
        )),
        None,
    );
    assert_eq!(again.status, 200, "{}", again.json);
    assert_eq!(again.json["records"], tail.json["records"]);
    let desc = http("GET", &s.url("/v1/collections/r"), None);
    assert_eq!(desc.json["sync"]["handle"], handle.as_str());
    assert_eq!(desc.json["sync"]["head"], 120);
}

#[test]
fn a_snapshot_is_the_cache_index_and_the_feed_continues_from_it() {
    let s = Server::start(&["--no-embed", "--snapshot-max-bytes", "200000"]);
    s.wait_ready();
    create(&s, "snap");
    let ids: Vec<u64> = (0..300).collect();
    insert(&s, "snap", &ids, 0.5);
    delete(&s, "snap", &[7, 8, 9]);
    let (status, bytes, _) = get_bytes(&s.url("/v1/collections/snap/snapshot"), "*/*");
    assert_eq!(status, 200);
    let (mut state, mut index) = SyncState::from_snapshot(&bytes).unwrap();
    assert_eq!(
        (index.len(), state.watermark, state.complete),
        (297, 303, true)
    );
    assert!(!index.contains(8));
    let hit = &index
        .search(&[42.0, 0.5, 1.0], 1, &SearchOptions::default())
        .unwrap()[0];
    assert_eq!(hit.id, 42);

    // Changes after the snapshot arrive through the feed.
    insert(&s, "snap", &[8], 9.0);
    delete(&s, "snap", &[42]);
    let (_, frame, _) = get_bytes(
        &s.url(&format!(
            "/v1/collections/snap/changes?since={}&handle={}",
            state.watermark, state.handle
        )),
        "application/octet-stream",
    );
    let batch = ChangeBatch::from_bytes(&frame).unwrap();
    state.apply(&mut index, &batch).unwrap();
    assert_eq!(state.watermark, 305);
    assert!(index.contains(8) && !index.contains(42));

    // Subsets, and snapshots too large for the limit.
    let (status, sub, _) = get_bytes(
        &s.url("/v1/collections/snap/snapshot?limit=10&storage=sq8"),
        "*/*",
    );
    assert_eq!(status, 200);
    let (sub_state, sub_index) = SyncState::from_snapshot(&sub).unwrap();
    assert_eq!((sub_index.len(), sub_state.complete), (10, false));
    assert_eq!(sub_index.ids().min(), Some(290));
    let many: Vec<u64> = (1000..3000).collect();
    insert(&s, "snap", &many, 1.0);
    let r = http("GET", &s.url("/v1/collections/snap/snapshot"), None);
    assert_eq!(r.status, 413, "{}", r.json);
    assert_eq!(r.json["error"]["code"], "snapshot_too_large");
    let r = http(
        "GET",
        &s.url("/v1/collections/snap/snapshot?storage=pq"),
        None,
    );
    assert_eq!(r.status, 400);
}

#[test]
fn a_shutdown_answers_live_waiters_instead_of_waiting_for_their_timeout() {
    let s = Server::start(&["--no-embed"]);
    s.wait_ready();
    create(&s, "bye");
    let url = s.url("/v1/collections/bye/changes?since=0&live=true&timeout_ms=60000");
    let waiter = std::thread::spawn(move || http("GET", &url, None));
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(s.terminate(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let r = waiter.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["records"], json!([]));
}

#[test]
fn a_kept_snapshot_is_brought_forward_as_changes_accumulate() {
    let s = Server::start(&["--no-embed"]);
    s.wait_ready();
    create(&s, "fwd");
    insert(&s, "fwd", &(0..100).collect::<Vec<u64>>(), 0.0);
    let url = s.url("/v1/collections/fwd/snapshot");
    let (_, first, _) = get_bytes(&url, "*/*");
    assert_eq!(SyncState::from_snapshot(&first).unwrap().0.watermark, 100);
    // More than 1,000 changes: the applier starts a refresh without any request.
    for chunk in (1000..2500u64).collect::<Vec<_>>().chunks(500) {
        insert(&s, "fwd", chunk, 1.0);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = http("GET", &s.url("/metrics"), None);
        let text = m.json.as_str().unwrap_or_default().to_string();
        if text.contains(r#"proxima_sync_snapshot_builds{collection="fwd"} 2"#) {
            break;
        }
        assert!(Instant::now() < deadline, "no refresh: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, second, _) = get_bytes(&url, "*/*");
    let (state, index) = SyncState::from_snapshot(&second).unwrap();
    assert_eq!((state.watermark, index.len()), (1600, 1600));
}
