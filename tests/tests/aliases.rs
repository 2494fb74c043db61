//! Aliases on a real server process: searches through an alias from several threads while
//! it is switched back and forth see both collections and not one error; a switch survives
//! `kill -9` right after its answer; the change feed through an alias answers 409
//! `snapshot_required` with the new collection's handle after a switch; names never clash;
//! a collection aliases point to is not dropped; writes need the write key.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proxima_e2e::{call, expect_error, http_with, pseudo_row, Server};
use serde_json::json;

const DIM: usize = 8;
const ROWS: u64 = 200;
/// docs_v1 holds ids 0..ROWS, docs_v2 ids V2_BASE..V2_BASE + ROWS.
const V2_BASE: u64 = 1_000;

fn setup(s: &Server) {
    for (name, base) in [("docs_v1", 0), ("docs_v2", V2_BASE)] {
        let r = call(
            s,
            "PUT",
            &format!("/v1/collections/{name}"),
            Some(json!({"dim": DIM, "metric": "l2"})),
        );
        assert_eq!(r.status, 201, "{}", r.json);
        let ids: Vec<u64> = (base..base + ROWS).collect();
        let vectors: Vec<Vec<f32>> = ids.iter().map(|&i| pseudo_row(i, DIM)).collect();
        let r = call(
            s,
            "POST",
            &format!("/v1/collections/{name}/vectors"),
            Some(json!({"vectors": vectors, "ids": ids})),
        );
        assert_eq!(r.status, 200, "{}", r.json);
    }
}

fn set_alias(s: &Server, alias: &str, collection: &str) -> serde_json::Value {
    let r = call(
        s,
        "PUT",
        &format!("/v1/aliases/{alias}"),
        Some(json!({ "collection": collection })),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["collection"], collection, "{}", r.json);
    r.json
}

fn handle_of(s: &Server, name: &str) -> String {
    let r = call(s, "GET", &format!("/v1/collections/{name}"), None);
    assert_eq!(r.status, 200, "{}", r.json);
    r.json["sync"]["handle"].as_str().unwrap().to_string()
}

#[test]
fn searches_through_an_alias_never_fail_while_it_is_switched() {
    let s = Server::start(&["--no-embed"]);
    s.wait_ready();
    setup(&s);
    assert_eq!(set_alias(&s, "docs", "docs_v1").get("previous"), None);
    let stop = AtomicBool::new(false);
    let (errors, from_v1, from_v2) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let switches = 10;
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let (s, stop, errors, from_v1, from_v2) = (&s, &stop, &errors, &from_v1, &from_v2);
            scope.spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    i += 4;
                    let r = call(
                        s,
                        "POST",
                        "/v1/collections/docs/search",
                        Some(json!({"vectors": [pseudo_row(i % ROWS, DIM)], "k": 3})),
                    );
                    if r.status != 200 {
                        eprintln!("search through the alias failed: {} {}", r.status, r.json);
                        errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let hits = r.json["results"][0].as_array().unwrap();
                    assert_eq!(hits.len(), 3, "{}", r.json);
                    let ids: Vec<u64> = hits.iter().map(|h| h["id"].as_u64().unwrap()).collect();
                    // One collection answered the whole search.
                    if ids.iter().all(|&id| id < V2_BASE) {
                        from_v1.fetch_add(1, Ordering::Relaxed);
                    } else if ids.iter().all(|&id| id >= V2_BASE) {
                        from_v2.fetch_add(1, Ordering::Relaxed);
                    } else {
                        panic!("hits from both collections in one answer: {ids:?}");
                    }
                }
            });
        }
        for n in 0..switches {
            std::thread::sleep(Duration::from_millis(60));
            let (to, from) = if n % 2 == 0 {
                ("docs_v2", "docs_v1")
            } else {
                ("docs_v1", "docs_v2")
            };
            assert_eq!(set_alias(&s, "docs", to)["previous"], from);
        }
        std::thread::sleep(Duration::from_millis(60));
        stop.store(true, Ordering::Relaxed);
    });
    let (errors, v1, v2) = (
        errors.into_inner(),
        from_v1.into_inner(),
        from_v2.into_inner(),
    );
    println!(
        "{switches} switches: {v1} searches answered by docs_v1, {v2} by docs_v2, {errors} errors"
    );
    assert_eq!(errors, 0);
    assert!(v1 > 0 && v2 > 0, "v1 {v1}, v2 {v2}");

    // Every collection route takes the alias (now docs_v1 again): describe, get, insert,
    // delete, flush, compact, index, snapshot.
    let r = call(&s, "GET", "/v1/collections/docs", None);
    assert_eq!(r.json["schema"]["name"], "docs_v1", "{}", r.json);
    let r = call(&s, "GET", "/v1/collections/docs/vectors/5", None);
    assert_eq!(r.status, 200, "{}", r.json);
    let r = call(
        &s,
        "POST",
        "/v1/collections/docs/vectors",
        Some(json!({"vectors": [pseudo_row(500, DIM)], "ids": [500]})),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        call(&s, "GET", "/v1/collections/docs_v1/vectors/500", None).status,
        200
    );
    let r = call(
        &s,
        "POST",
        "/v1/collections/docs/delete",
        Some(json!({"ids": [500]})),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    for path in ["flush", "compact"] {
        let r = call(&s, "POST", &format!("/v1/collections/docs/{path}"), None);
        assert_eq!(r.status, 200, "{path}: {}", r.json);
    }
    let r = call(
        &s,
        "POST",
        "/v1/collections/docs/index",
        Some(json!({"type": "FLAT"})),
    );
    assert_eq!(r.status, 202, "{}", r.json);
    assert_eq!(
        call(&s, "GET", "/v1/collections/docs/index", None).status,
        200
    );
    let snap = ureq::get(&s.url("/v1/collections/docs/snapshot"))
        .call()
        .unwrap();
    assert_eq!(
        snap.header("x-proxima-handle"),
        Some(handle_of(&s, "docs_v1").as_str())
    );
    // Metrics label requests with the collection the alias resolved to, never the alias.
    let metrics = call(&s, "GET", "/metrics", None).json;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains(r#"collection="docs_v2""#),
        "no docs_v2 series"
    );
    assert!(
        metrics.contains(r#"collection="docs_v1""#),
        "no docs_v1 series"
    );
    assert!(!metrics.contains(r#"collection="docs""#), "{metrics}");
}

#[test]
fn the_change_feed_follows_the_alias() {
    let s = Server::start(&["--no-embed"]);
    s.wait_ready();
    setup(&s);
    set_alias(&s, "docs", "docs_v1");
    let (h1, h2) = (handle_of(&s, "docs_v1"), handle_of(&s, "docs_v2"));
    assert_ne!(h1, h2);
    // A cache syncing through the alias gets docs_v1's feed and handle.
    let r = call(&s, "GET", "/v1/collections/docs/changes?since=0", None);
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["handle"], h1.as_str());
    assert_eq!(r.json["collection"], "docs_v1");
    let until = r.json["until"].as_u64().unwrap();
    assert!(until > 0);
    let feed = format!("/v1/collections/docs/changes?since={until}&handle={h1}");
    let r = call(&s, "GET", &feed, None);
    assert_eq!(r.status, 200, "{}", r.json);
    // After the switch its handle is not the alias's target's: 409 with the new handle.
    set_alias(&s, "docs", "docs_v2");
    let r = call(&s, "GET", &feed, None);
    expect_error(&r, 409, "snapshot_required");
    assert_eq!(r.json["handle"], h2.as_str(), "{}", r.json);
    // A live poll says the same at once.
    let started = Instant::now();
    let r = call(
        &s,
        "GET",
        &format!("{feed}&live=true&timeout_ms=5000"),
        None,
    );
    expect_error(&r, 409, "snapshot_required");
    assert!(started.elapsed() < Duration::from_secs(4));
    // The cache resnapshots through the alias and follows docs_v2 from there.
    let snap = ureq::get(&s.url("/v1/collections/docs/snapshot"))
        .call()
        .unwrap();
    assert_eq!(snap.header("x-proxima-handle"), Some(h2.as_str()));
    let seq: u64 = snap.header("x-proxima-seq").unwrap().parse().unwrap();
    let r = call(
        &s,
        "GET",
        &format!("/v1/collections/docs/changes?since={seq}&handle={h2}"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["collection"], "docs_v2");
}

#[test]
fn a_switch_survives_kill_9() {
    let mut s = Server::start(&["--no-embed"]);
    s.wait_ready();
    setup(&s);
    set_alias(&s, "docs", "docs_v1");
    for (round, target) in ["docs_v2", "docs_v1", "docs_v2"].into_iter().enumerate() {
        set_alias(&s, "docs", target);
        // SIGKILL right after the answer: nothing of the shutdown runs.
        s.child.kill().expect("SIGKILL the server");
        s.child.wait().unwrap();
        let dir = std::mem::replace(&mut s.data_dir, tempfile_dir());
        drop(s);
        s = Server::start_in(dir, &["--no-embed"]);
        s.wait_ready();
        let r = call(&s, "GET", "/v1/aliases/docs", None);
        assert_eq!(r.status, 200, "round {round}: {}", r.json);
        assert_eq!(r.json["collection"], target, "round {round}");
        let r = call(
            &s,
            "POST",
            "/v1/collections/docs/search",
            Some(json!({"vectors": [pseudo_row(7, DIM)], "k": 1, "consistency": "strong"})),
        );
        assert_eq!(r.status, 200, "{}", r.json);
        let id = r.json["results"][0][0]["id"].as_u64().unwrap();
        assert_eq!(id >= V2_BASE, target == "docs_v2", "round {round}: id {id}");
    }
}

fn tempfile_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn alias_names_clashes_drops_and_keys() {
    let s = Server::start(&["--no-embed", "--write-key", "wkey", "--read-key", "rkey"]);
    s.wait_ready();
    let req = |method: &str, path: &str, key: &str, body: Option<serde_json::Value>| {
        let body = body.map(|b| b.to_string());
        http_with(
            method,
            &s.url(path),
            &[("x-api-key", key)],
            body.as_deref().map(|b| ("application/json", b.as_bytes())),
        )
    };
    for name in ["docs_v1", "docs_v2"] {
        let r = req(
            "PUT",
            &format!("/v1/collections/{name}"),
            "wkey",
            Some(json!({"dim": DIM, "metric": "l2"})),
        );
        assert_eq!(r.status, 201, "{}", r.json);
    }
    let to_v1 = Some(json!({"collection": "docs_v1"}));
    // Writes need the write key; reads take the read key.
    expect_error(
        &req("PUT", "/v1/aliases/docs", "rkey", to_v1.clone()),
        403,
        "forbidden",
    );
    let r = http_with("GET", &s.url("/v1/aliases"), &[], None);
    expect_error(&r, 401, "unauthorized");
    let r = req("PUT", "/v1/aliases/docs", "wkey", to_v1.clone());
    assert_eq!(r.status, 200, "{}", r.json);
    let r = req("GET", "/v1/aliases", "rkey", None);
    assert_eq!(
        r.json,
        json!({"aliases": [{"alias": "docs", "collection": "docs_v1"}]})
    );
    let r = req("GET", "/v1/aliases/docs", "rkey", None);
    assert_eq!(r.json, json!({"alias": "docs", "collection": "docs_v1"}));
    assert_eq!(
        req("GET", "/v1/collections/docs", "rkey", None).json["schema"]["name"],
        "docs_v1"
    );
    expect_error(
        &req("DELETE", "/v1/aliases/docs", "rkey", None),
        403,
        "forbidden",
    );

    // Names: an alias is not a collection's name, a collection not an alias's.
    expect_error(
        &req("PUT", "/v1/aliases/docs_v2", "wkey", to_v1.clone()),
        409,
        "name_is_collection",
    );
    let r = req(
        "PUT",
        "/v1/collections/docs",
        "wkey",
        Some(json!({"dim": DIM, "metric": "l2"})),
    );
    expect_error(&r, 409, "name_is_alias");
    expect_error(
        &req(
            "PUT",
            "/v1/aliases/other",
            "wkey",
            Some(json!({"collection": "nope"})),
        ),
        404,
        "collection_not_found",
    );
    expect_error(
        &req("PUT", "/v1/aliases/bad.name", "wkey", to_v1.clone()),
        400,
        "invalid_name",
    );
    expect_error(
        &req(
            "PUT",
            "/v1/aliases/x",
            "wkey",
            Some(json!({"collections": "docs_v1"})),
        ),
        400,
        "invalid_body",
    );
    expect_error(
        &req("GET", "/v1/aliases/nope", "rkey", None),
        404,
        "alias_not_found",
    );
    expect_error(
        &req("DELETE", "/v1/aliases/nope", "wkey", None),
        404,
        "alias_not_found",
    );

    // A collection an alias points to is not dropped (the message names the alias), nor
    // through the alias; after a switch it is.
    let r = req("DELETE", "/v1/collections/docs_v1", "wkey", None);
    expect_error(&r, 409, "collection_has_aliases");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("docs"),
        "{}",
        r.json
    );
    expect_error(
        &req("DELETE", "/v1/collections/docs", "wkey", None),
        409,
        "collection_has_aliases",
    );
    let r = req(
        "PUT",
        "/v1/aliases/docs",
        "wkey",
        Some(json!({"collection": "docs_v2"})),
    );
    assert_eq!(r.json["previous"], "docs_v1", "{}", r.json);
    assert_eq!(
        req("DELETE", "/v1/collections/docs_v1", "wkey", None).status,
        200
    );
    let r = req("DELETE", "/v1/aliases/docs", "wkey", None);
    assert_eq!(
        r.json,
        json!({"deleted": "docs", "collection": "docs_v2"}),
        "{}",
        r.json
    );
    expect_error(
        &req("GET", "/v1/collections/docs", "rkey", None),
        404,
        "collection_not_found",
    );
    assert_eq!(
        req("GET", "/v1/aliases", "rkey", None).json,
        json!({"aliases": []})
    );
    // The OpenAPI document has the routes.
    let doc = req("GET", "/openapi.json", "rkey", None).json;
    for m in ["get", "put", "delete"] {
        assert!(doc["paths"]["/v1/aliases/{alias}"][m].is_object(), "{m}");
    }
}
