//! The demo on a real server process: built in the background from the Debian package list
//! (`--demo-limit`), its documents, edits that reach the change feed, the page and the web
//! package served, reuse on restart, and when it stays off.

use std::time::{Duration, Instant};

use proxima_e2e::{http, http_with, Server};
use serde_json::{json, Value};

fn web_dir() -> String {
    format!("{}/../web-demo", env!("CARGO_MANIFEST_DIR"))
}

fn wait_demo_ready(s: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let r = http("GET", &s.url("/v1/demo"), None);
        assert_eq!(r.status, 200);
        match r.json["state"].as_str() {
            Some("ready") => return r.json,
            Some("failed") | Some("off") => panic!("demo did not build: {}", r.json),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "demo not ready after 300 s: {}",
            r.json
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn embed(s: &Server, text: &str) -> Vec<f32> {
    let r = http(
        "POST",
        &s.url("/v1/embed"),
        Some(&json!({ "texts": [text] }).to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    serde_json::from_value(r.json["vectors"][0].clone()).unwrap()
}

fn top_ids(s: &Server, vector: &[f32], k: usize) -> Vec<u64> {
    let body = json!({"vectors": [vector], "k": k, "consistency": "strong"}).to_string();
    let r = http(
        "POST",
        &s.url("/v1/collections/debian-packages/search"),
        Some(&body),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    r.json["results"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn the_demo_builds_serves_its_documents_and_takes_edits() {
    let web = web_dir();
    let s = Server::start(&["--demo-limit", "300", "--web-dir", &web]);
    s.wait_ready();
    let status = wait_demo_ready(&s);
    assert_eq!(
        (status["done"].as_u64(), status["total"].as_u64()),
        (Some(300), Some(300))
    );
    assert_eq!(status["collection"], "debian-packages");

    // The page and its documents.
    let page = http("GET", &s.url("/"), None);
    assert_eq!(page.status, 200);
    assert!(page.json.as_str().unwrap_or_default().contains("<html"));
    let docs = http("GET", &s.url("/v1/demo/docs"), None);
    let rows = docs.json["docs"].as_array().unwrap();
    assert_eq!(rows.len(), 300);
    let (id, name) = (
        rows[0][0].as_u64().unwrap(),
        rows[0][1].as_str().unwrap().to_string(),
    );
    let one = http(
        "GET",
        &s.url(&format!("/v1/demo/docs?ids={id},999999999")),
        None,
    );
    assert_eq!(one.json["docs"], json!([rows[0]]));
    let zipped = ureq::get(&s.url("/v1/demo/docs"))
        .set("Accept-Encoding", "gzip")
        .call()
        .unwrap();
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(http("GET", &s.url("/v1/demo/docs?ids=x"), None).status, 400);

    // A document's own text finds it.
    let text = format!("{name}: {}", rows[0][2].as_str().unwrap());
    assert_eq!(top_ids(&s, &embed(&s, &text), 1), vec![id]);

    // Add a document: embedded, inserted, in the feed.
    let head = http("GET", &s.url("/v1/collections/debian-packages"), None).json["sync"]["head"]
        .as_u64()
        .unwrap();
    let added = http(
        "POST",
        &s.url("/v1/demo/docs"),
        Some(r#"{"name": "photoshopper", "description": "edit photos and retouch pictures"}"#),
    );
    assert_eq!(added.status, 201, "{}", added.json);
    let new_id = added.json["id"].as_u64().unwrap();
    assert!(new_id >= 1 << 32);
    let feed = http(
        "GET",
        &s.url(&format!(
            "/v1/collections/debian-packages/changes?since={head}"
        )),
        None,
    );
    assert_eq!(feed.json["records"][0]["id"], new_id);
    assert_eq!(feed.json["records"][0]["op"], "upsert");
    let hits = top_ids(&s, &embed(&s, "edit photos and retouch pictures"), 3);
    assert!(hits.contains(&new_id), "{hits:?}");
    assert_eq!(
        http("POST", &s.url("/v1/demo/docs"), Some(r#"{"name": ""}"#)).status,
        400
    );

    // Delete it: gone from the documents, the search and the feed says so.
    let del = http("DELETE", &s.url(&format!("/v1/demo/docs/{new_id}")), None);
    assert_eq!(del.status, 200, "{}", del.json);
    assert_eq!(
        http("GET", &s.url(&format!("/v1/demo/docs?ids={new_id}")), None).json["docs"],
        json!([])
    );
    assert!(!top_ids(&s, &embed(&s, "edit photos and retouch pictures"), 10).contains(&new_id));
    assert_eq!(
        http("DELETE", &s.url(&format!("/v1/demo/docs/{new_id}")), None).status,
        404
    );

    // The snapshot the page loads: SQ8, gzip on the wire.
    let snap = ureq::get(&s.url("/v1/collections/debian-packages/snapshot?storage=sq8"))
        .set("Accept-Encoding", "gzip")
        .call()
        .unwrap();
    assert_eq!(snap.header("content-encoding"), Some("gzip"));
    let raw: usize = snap.header("x-proxima-bytes").unwrap().parse().unwrap();
    let wire: usize = snap.header("content-length").unwrap().parse().unwrap();
    assert!(wire < raw, "{wire} >= {raw}");

    // A restart reuses the demo: ready at once, nothing embedded again.
    let (code, s) = s.restart(&["--demo-limit", "300", "--web-dir", &web]);
    assert_eq!(code, Some(0));
    s.wait_ready();
    let t = Instant::now();
    let again = wait_demo_ready(&s);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(again["total"], 300);
    let docs = http("GET", &s.url("/v1/demo/docs"), None);
    assert_eq!(docs.json["docs"].as_array().unwrap().len(), 300);
}

#[test]
fn a_data_directory_with_collections_gets_no_demo_unless_asked() {
    let s = Server::start(&["--no-demo"]);
    s.wait_ready();
    let r = http(
        "PUT",
        &s.url("/v1/collections/mine"),
        Some(r#"{"dim": 2, "metric": "l2"}"#),
    );
    assert_eq!(r.status, 201);
    assert_eq!(http("GET", &s.url("/v1/demo"), None).json["enabled"], false);
    assert_eq!(http("GET", &s.url("/v1/demo/docs"), None).status, 404);
    // Auto: the directory has a collection, so no demo.
    let (_, s) = s.restart(&["--demo-limit", "20"]);
    s.wait_ready();
    // Until its thread has decided, the demo says `waiting`; then it must say `off`.
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r = http("GET", &s.url("/v1/demo"), None);
        if r.json["state"] != "waiting" || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        (&r.json["enabled"], &r.json["state"]),
        (&json!(false), &json!("off")),
        "{}",
        r.json
    );
    let list = http("GET", &s.url("/v1/collections"), None);
    assert_eq!(list.json["collections"].as_array().unwrap().len(), 1);
    // Asked for: built beside it.
    let (_, s) = s.restart(&["--demo", "--demo-limit", "20"]);
    s.wait_ready();
    assert_eq!(wait_demo_ready(&s)["total"], 20);
    let list = http_with("GET", &s.url("/v1/collections"), &[], None);
    assert_eq!(list.json["collections"].as_array().unwrap().len(), 2);
}
