//! The HTTP API of a real `proxima serve` process: every endpoint, bad input of every kind,
//! API keys, concurrent clients during an index rebuild, restart, SIGTERM.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// `binary(dim, vectors, ids)`: the binary rows body, `u32 rows, u32 dim, f32 rows…, [u64
// ids…]`, little-endian.
use proxima_core::formats::encode_rows as binary;
use proxima_e2e::{call, expect_error, http, http_with, pseudo_row, run_cli, HttpReply, Server};
use proxima_server::api::types::base64_row;
use serde_json::{json, Value};

fn raw(s: &Server, method: &str, path: &str, body: &str) -> HttpReply {
    http(method, &s.url(path), Some(body))
}

/// A JSON array of numbers as `f32`s.
fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn wait_index_ready(s: &Server, collection: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = call(
            s,
            "GET",
            &format!("/v1/collections/{collection}/index"),
            None,
        );
        assert_eq!(r.status, 200, "{}", r.json);
        if r.json["state"] == "ready" {
            return r.json;
        }
        assert!(Instant::now() < deadline, "index not ready: {}", r.json);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_endpoint_and_every_kind_of_bad_input() {
    let s = Server::start(&["--no-embed", "--max-body-bytes", "65536"]);
    assert!(s.first_line.contains("auth=off"), "{}", s.first_line);
    s.wait_ready();
    assert_eq!(call(&s, "GET", "/healthz", None).json["status"], "ok");
    assert_eq!(call(&s, "GET", "/readyz", None).json["status"], "ready");
    assert_eq!(call(&s, "GET", "/version", None).status, 200);

    // Collections.
    let r = call(
        &s,
        "PUT",
        "/v1/collections/c",
        Some(json!({"dim": 4, "metric": "l2"})),
    );
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(r.json["schema"]["dim"], 4);
    assert_eq!(r.json["index"]["spec"]["type"], "FLAT");
    expect_error(
        &call(
            &s,
            "PUT",
            "/v1/collections/c",
            Some(json!({"dim": 4, "metric": "l2"})),
        ),
        409,
        "collection_exists",
    );
    expect_error(
        &call(
            &s,
            "PUT",
            "/v1/collections/-bad",
            Some(json!({"dim": 4, "metric": "l2"})),
        ),
        400,
        "invalid_name",
    );
    expect_error(
        &raw(
            &s,
            "PUT",
            "/v1/collections/d",
            r#"{"dim": "four", "metric": "l2"}"#,
        ),
        400,
        "invalid_body",
    );
    expect_error(
        &raw(
            &s,
            "PUT",
            "/v1/collections/d",
            r#"{"dim": 4, "metric": "manhattan"}"#,
        ),
        400,
        "invalid_body",
    );
    expect_error(
        &raw(
            &s,
            "PUT",
            "/v1/collections/d",
            r#"{"dim": 0, "metric": "ip"}"#,
        ),
        400,
        "invalid_parameter",
    );
    expect_error(
        &raw(
            &s,
            "PUT",
            "/v1/collections/d",
            r#"{"dim": 4, "metric": "ip", "index": {"type": "IVF_FLAT", "params": {"nlist": 0}}}"#,
        ),
        400,
        "invalid_parameter",
    );
    let r = call(&s, "GET", "/v1/collections", None);
    assert_eq!(
        r.json["collections"].as_array().unwrap().len(),
        1,
        "{}",
        r.json
    );
    assert_eq!(r.json["collections"][0]["name"], "c");
    // A list item says what describe's schema says, under the same names (`shards` is kept
    // as an alias of `num_shards`).
    let item = &r.json["collections"][0];
    let described = call(&s, "GET", "/v1/collections/c", None).json;
    for field in ["name", "dim", "metric", "index", "num_shards", "auto_id"] {
        assert_eq!(
            item[field], described["schema"][field],
            "{field}: {item} {described}"
        );
    }
    assert_eq!(item["num_shards"], 1);
    assert_eq!(item["shards"], item["num_shards"]);
    assert_eq!(item["count"], described["count"]);

    // Inserts: JSON, then binary with ids.
    let vectors: Vec<Vec<f32>> = (0..100).map(|i| pseudo_row(i, 4)).collect();
    let ids: Vec<u64> = (0..100).collect();
    let r = call(
        &s,
        "POST",
        "/v1/collections/c/vectors",
        Some(json!({"vectors": vectors, "ids": ids})),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["ids"].as_array().unwrap().len(), 100);
    let flat: Vec<f32> = (100..300).flat_map(|i| pseudo_row(i, 4)).collect();
    let more: Vec<u64> = (100..300).collect();
    let r = http_with(
        "POST",
        &s.url("/v1/collections/c/vectors"),
        &[],
        Some(("application/octet-stream", &binary(4, &flat, Some(&more)))),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    let seq = r.json["seq"].as_u64().unwrap();
    assert_eq!(seq, 300);
    let bad = binary(3, &flat[..6], None);
    expect_error(
        &http_with(
            "POST",
            &s.url("/v1/collections/c/vectors"),
            &[],
            Some(("application/octet-stream", &bad)),
        ),
        400,
        "dimension_mismatch",
    );
    expect_error(
        &http_with(
            "POST",
            &s.url("/v1/collections/c/vectors"),
            &[],
            Some(("application/octet-stream", &bad[..9])),
        ),
        400,
        "malformed_binary",
    );
    let r = call(
        &s,
        "POST",
        "/v1/collections/c/vectors",
        Some(json!({"vectors": [[1, 2, 3]], "ids": [1000]})),
    );
    expect_error(&r, 400, "dimension_mismatch");
    assert_eq!(
        r.json["error"]["message"],
        "dimension mismatch: expected 4 values, got 3"
    );
    expect_error(
        &call(
            &s,
            "POST",
            "/v1/collections/c/vectors",
            Some(json!({"vectors": [[1, 2, 3, 4]]})),
        ),
        400,
        "ids_required",
    );
    expect_error(
        &call(
            &s,
            "POST",
            "/v1/collections/c/vectors",
            Some(json!({"vectors": [], "ids": []})),
        ),
        400,
        "empty_batch",
    );
    expect_error(
        &raw(
            &s,
            "POST",
            "/v1/collections/c/vectors",
            r#"{"vectors": [[1, 2, NaN, 4]], "ids": [1]}"#,
        ),
        400,
        "malformed_json",
    );
    expect_error(
        &raw(
            &s,
            "POST",
            "/v1/collections/c/vectors",
            r#"{"vectors": [[1, 2, "NaN", 4]], "ids": [1]}"#,
        ),
        400,
        "invalid_body",
    );
    expect_error(
        &raw(
            &s,
            "POST",
            "/v1/collections/c/vectors",
            r#"{"vectors": [[1, 2, 1e39, 4]], "ids": [1]}"#,
        ),
        400,
        "non_finite_value",
    );
    expect_error(
        &raw(
            &s,
            "POST",
            "/v1/collections/c/vectors",
            r#"{"vectors": [[1, 2, 3, 4]], "ids": [-1]}"#,
        ),
        400,
        "invalid_body",
    );
    expect_error(
        &raw(
            &s,
            "POST",
            "/v1/collections/c/vectors",
            r#"{"vectors": [[1, 2, 3, 4]], "ids": [1, 1]}"#,
        ),
        400,
        "id_count_mismatch",
    );
    expect_error(
        &raw(&s, "POST", "/v1/collections/c/vectors", "{not json"),
        400,
        "malformed_json",
    );
    expect_error(
        &raw(&s, "POST", "/v1/collections/c/vectors", ""),
        400,
        "malformed_json",
    );
    expect_error(
        &raw(
            &s,
            "POST",
            "/v1/collections/c/vectors",
            r#"{"vectors": "x"}"#,
        ),
        400,
        "invalid_body",
    );
    expect_error(
        &call(
            &s,
            "POST",
            "/v1/collections/nope/vectors",
            Some(json!({"vectors": [[1, 2, 3, 4]], "ids": [1]})),
        ),
        404,
        "collection_not_found",
    );

    // Oversized body (the limit is 64 KiB here).
    let big = format!(
        r#"{{"vectors": [{}], "ids": [1]}}"#,
        vec!["1.0"; 40_000].join(",")
    );
    expect_error(
        &raw(&s, "POST", "/v1/collections/c/vectors", &big),
        413,
        "payload_too_large",
    );
    // Without a declared length (chunked transfer encoding) the limit holds as well.
    let chunked = ureq::post(&s.url("/v1/collections/c/vectors"))
        .set("Content-Type", "application/json")
        .send(std::io::Cursor::new(big.into_bytes()));
    match chunked {
        Err(ureq::Error::Status(413, r)) => {
            let v: Value = r.into_json().unwrap();
            assert_eq!(v["error"]["code"], "payload_too_large", "{v}");
        }
        Err(e) => panic!("expected 413, got {e}"),
        Ok(r) => panic!("expected 413, got {}", r.status()),
    }

    // Search.
    let q = pseudo_row(42, 4);
    let r = call(
        &s,
        "POST",
        "/v1/collections/c/search",
        Some(json!({"vectors": [q], "k": 3, "consistency": "strong"})),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["results"][0][0]["id"], 42, "{}", r.json);
    assert!(
        r.json["results"][0][0]["score"].as_f64().unwrap() < 1e-4,
        "{}",
        r.json
    );
    assert_eq!(r.json["results"][0].as_array().unwrap().len(), 3);
    assert!(r.json["took_ms"].as_f64().is_some());
    assert!(r.json["seq"].as_u64().unwrap() >= seq);
    // The binary form: query vectors in the body, parameters in the query string.
    let binary_search = |query: &str, body: &[u8]| {
        http_with(
            "POST",
            &s.url(&format!("/v1/collections/c/search{query}")),
            &[],
            Some(("application/octet-stream", body)),
        )
    };
    let json_answer = r.json["results"].clone();
    let r = binary_search("?k=3&consistency=strong", &binary(4, &q, None));
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["results"], json_answer);
    // Rows as base64 strings of little-endian f32 values answer the same.
    let r = call(
        &s,
        "POST",
        "/v1/collections/c/search",
        Some(json!({"vectors": [base64_row(&q)], "k": 3, "consistency": "strong"})),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["results"], json_answer);
    expect_error(
        &call(
            &s,
            "POST",
            "/v1/collections/c/search",
            Some(json!({"vectors": ["not base64!"]})),
        ),
        400,
        "invalid_body",
    );
    expect_error(
        &binary_search("?k=3&kk=1", &binary(4, &q, None)),
        400,
        "invalid_parameter",
    );
    expect_error(
        &binary_search("?k=many", &binary(4, &q, None)),
        400,
        "invalid_parameter",
    );
    expect_error(
        &binary_search("", &binary(2, &q[..2], None)),
        400,
        "dimension_mismatch",
    );
    expect_error(
        &binary_search("", &binary(4, &q, Some(&[1]))),
        400,
        "malformed_binary",
    );
    let r = call(
        &s,
        "POST",
        "/v1/collections/c/search",
        Some(
            json!({"vectors": [q, pseudo_row(7, 4)], "k": 1, "consistency": "session", "session_seq": seq, "params": {"nprobe": 4}}),
        ),
    );
    assert_eq!(r.json["results"][1][0]["id"], 7, "{}", r.json);
    for k in ["0", "1000000000", "100000000000000000000"] {
        let body = format!(r#"{{"vectors": [[1, 2, 3, 4]], "k": {k}}}"#);
        let r = raw(&s, "POST", "/v1/collections/c/search", &body);
        assert_eq!(r.status, 400, "k = {k}: {}", r.json);
    }
    expect_error(
        &call(
            &s,
            "POST",
            "/v1/collections/c/search",
            Some(json!({"vectors": [[1, 2, 3, 4]], "k": 1000000})),
        ),
        400,
        "k_out_of_range",
    );
    expect_error(
        &call(
            &s,
            "POST",
            "/v1/collections/c/search",
            Some(json!({"vectors": [[1, 2, 3, 4]], "k": -1})),
        ),
        400,
        "invalid_body",
    );
    expect_error(
        &call(
            &s,
            "POST",
            "/v1/collections/c/search",
            Some(json!({"vectors": [[1, 2]], "k": 1})),
        ),
        400,
        "dimension_mismatch",
    );
    expect_error(
        &call(
            &s,
            "POST",
            "/v1/collections/c/search",
            Some(json!({"vectors": [[1, 2, 3, 4]], "consistency": "sometimes"})),
        ),
        400,
        "invalid_body",
    );
    expect_error(
        &call(
            &s,
            "POST",
            "/v1/collections/c/search",
            Some(json!({"vectors": [[1, 2, 3, 4]], "params": {"nprobe": 0}})),
        ),
        400,
        "invalid_parameter",
    );
    expect_error(
        &call(
            &s,
            "POST",
            "/v1/collections/c/search",
            Some(json!({"vectors": []})),
        ),
        400,
        "empty_batch",
    );

    // Get and delete.
    let r = call(&s, "GET", "/v1/collections/c/vectors/150", None);
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(floats(&r.json["vector"]), pseudo_row(150, 4));
    expect_error(
        &call(&s, "GET", "/v1/collections/c/vectors/99999", None),
        404,
        "id_not_found",
    );
    expect_error(
        &call(&s, "GET", "/v1/collections/c/vectors/abc", None),
        400,
        "invalid_parameter",
    );
    let r = call(
        &s,
        "POST",
        "/v1/collections/c/delete",
        Some(json!({"ids": [42, 99999]})),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["deleted"], 1);
    let r = call(
        &s,
        "POST",
        "/v1/collections/c/search",
        Some(json!({"vectors": [q], "k": 1, "consistency": "strong"})),
    );
    assert_ne!(r.json["results"][0][0]["id"], 42, "{}", r.json);
    expect_error(
        &call(
            &s,
            "POST",
            "/v1/collections/c/delete",
            Some(json!({"ids": "all"})),
        ),
        400,
        "invalid_body",
    );

    // Flush, index rebuild, compact, describe.
    assert_eq!(
        call(&s, "POST", "/v1/collections/c/flush", None).status,
        200
    );
    let r = call(
        &s,
        "POST",
        "/v1/collections/c/index",
        Some(json!({"type": "IVF_FLAT", "params": {"nlist": 4}})),
    );
    assert_eq!(r.status, 202, "{}", r.json);
    let job = r.json["job"].as_u64().unwrap();
    let status = wait_index_ready(&s, "c");
    assert_eq!(status["generation"], job);
    assert_eq!(status["spec"]["type"], "IVF_FLAT");
    assert_eq!(status["progress"], 1.0);
    expect_error(
        &call(
            &s,
            "POST",
            "/v1/collections/c/index",
            Some(json!({"type": "IVF_FLAT", "params": {"nlist": 4096}})),
        ),
        400,
        "too_few_training_vectors",
    );
    expect_error(
        &call(
            &s,
            "POST",
            "/v1/collections/c/index",
            Some(json!({"type": "NOPE"})),
        ),
        400,
        "invalid_body",
    );
    assert_eq!(
        call(&s, "POST", "/v1/collections/c/compact", None).status,
        200
    );
    // The segments compaction wrote build their indexes in the background.
    wait_index_ready(&s, "c");
    let r = call(
        &s,
        "POST",
        "/v1/collections/c/search",
        Some(
            json!({"vectors": [pseudo_row(7, 4)], "k": 1, "params": {"nprobe": 4}, "consistency": "strong"}),
        ),
    );
    assert_eq!(r.json["results"][0][0]["id"], 7, "{}", r.json);
    let r = call(&s, "GET", "/v1/collections/c", None);
    assert_eq!(r.json["count"], 299, "{}", r.json);
    for field in ["segments", "memory", "applied_seq", "wal_bytes", "index"] {
        assert!(!r.json[field].is_null(), "{field}: {}", r.json);
    }
    assert!(r.json["memory"]["estimated_bytes"].as_u64().unwrap() > 0);

    // Routes and methods that do not exist.
    expect_error(&call(&s, "GET", "/no/such/route", None), 404, "not_found");
    expect_error(
        &call(&s, "GET", "/v1/collections/c/nothing", None),
        404,
        "not_found",
    );
    expect_error(
        &call(&s, "PATCH", "/v1/collections/c", None),
        405,
        "method_not_allowed",
    );
    expect_error(
        &call(&s, "POST", "/v1/embed", Some(json!({"texts": ["x"]}))),
        503,
        "embedder_unavailable",
    );

    // Metrics: route templates, collections, gauges.
    let r = call(&s, "GET", "/metrics", None);
    assert_eq!(r.status, 200);
    let text = r.json.as_str().unwrap();
    for needle in [
        r#"proxima_http_requests_total{collection="c",method="POST",route="/v1/collections/{name}/search",status="200"}"#,
        r#"proxima_http_request_duration_seconds_bucket{collection="c",route="/v1/collections/{name}/vectors""#,
        r#"proxima_search_queries_total{collection="c"} "#,
        r#"proxima_collection_vectors{collection="c"} 299"#,
        r#"proxima_index_build_progress{collection="c"} 1"#,
        r#"proxima_memory_bytes{collection="c",kind="estimated"}"#,
        r#"proxima_wal_bytes{collection="c"}"#,
        r#"proxima_gpu_fallbacks_total{reason="out_of_memory"} 0"#,
        "proxima_gpu_searches_total 0",
        "proxima_gpu_memory_bytes 0",
        r#"proxima_memory_bytes{collection="c",kind="gpu"} 0"#,
        "proxima_ready 1",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    assert!(
        !text.contains(r#"collection="nope""#),
        "unknown names must not become labels"
    );

    // The OpenAPI document lists every route.
    let doc = call(&s, "GET", "/openapi.json", None).json;
    assert_eq!(doc["openapi"], "3.0.3");
    for (method, path) in [
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
        ("post", "/v1/plan"),
        ("post", "/v1/embed"),
        ("get", "/v1/collections"),
        ("put", "/v1/collections/{name}"),
        ("get", "/v1/collections/{name}"),
        ("delete", "/v1/collections/{name}"),
        ("post", "/v1/collections/{name}/vectors"),
        ("get", "/v1/collections/{name}/vectors/{id}"),
        ("post", "/v1/collections/{name}/delete"),
        ("post", "/v1/collections/{name}/search"),
        ("post", "/v1/collections/{name}/index"),
        ("get", "/v1/collections/{name}/index"),
        ("post", "/v1/collections/{name}/flush"),
        ("post", "/v1/collections/{name}/compact"),
    ] {
        assert!(
            doc["paths"][path][method]["responses"].is_object(),
            "{method} {path}"
        );
    }

    // Drop.
    assert_eq!(call(&s, "DELETE", "/v1/collections/c", None).status, 200);
    expect_error(
        &call(&s, "GET", "/v1/collections/c", None),
        404,
        "collection_not_found",
    );
    expect_error(
        &call(&s, "DELETE", "/v1/collections/c", None),
        404,
        "collection_not_found",
    );
    let text = call(&s, "GET", "/metrics", None).json;
    assert!(
        !text.as_str().unwrap().contains(r#"collection="c""#),
        "a dropped collection's series must go: {text}"
    );
    assert_eq!(s.terminate(), Some(0), "SIGTERM must shut down cleanly");
}

#[test]
fn api_keys() {
    let s = Server::start(&["--no-embed", "--write-key", "wkey", "--read-key", "rkey"]);
    assert!(
        s.first_line.contains("auth=write-key+read-key"),
        "{}",
        s.first_line
    );
    assert!(!s.first_line.contains("wkey"));
    s.wait_ready();
    let req = |method: &str, path: &str, key: Option<(&str, &str)>, body: Option<&str>| {
        let headers: Vec<(&str, &str)> = key.into_iter().collect();
        http_with(
            method,
            &s.url(path),
            &headers,
            body.map(|b| ("application/json", b.as_bytes())),
        )
    };
    let create = r#"{"dim": 2, "metric": "ip"}"#;
    let write = Some(("Authorization", "Bearer wkey"));
    let read = Some(("x-api-key", "rkey"));
    let read_bearer = Some(("Authorization", "Bearer rkey"));
    let wrong = Some(("Authorization", "Bearer nope"));
    for open in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/version",
    ] {
        assert_eq!(req("GET", open, None, None).status, 200, "{open}");
    }
    expect_error(
        &req("PUT", "/v1/collections/k", None, Some(create)),
        401,
        "unauthorized",
    );
    expect_error(
        &req("PUT", "/v1/collections/k", wrong, Some(create)),
        401,
        "unauthorized",
    );
    expect_error(
        &req("PUT", "/v1/collections/k", read, Some(create)),
        403,
        "forbidden",
    );
    assert_eq!(
        req("PUT", "/v1/collections/k", write, Some(create)).status,
        201
    );
    let insert = r#"{"vectors": [[1, 0], [0, 1]], "ids": [1, 2]}"#;
    expect_error(
        &req(
            "POST",
            "/v1/collections/k/vectors",
            read_bearer,
            Some(insert),
        ),
        403,
        "forbidden",
    );
    assert_eq!(
        req(
            "POST",
            "/v1/collections/k/vectors",
            Some(("x-api-key", "wkey")),
            Some(insert)
        )
        .status,
        200
    );
    let search = r#"{"vectors": [[1, 0]], "k": 1, "consistency": "strong"}"#;
    expect_error(
        &req("POST", "/v1/collections/k/search", None, Some(search)),
        401,
        "unauthorized",
    );
    expect_error(
        &req("POST", "/v1/collections/k/search", wrong, Some(search)),
        401,
        "unauthorized",
    );
    let r = req("POST", "/v1/collections/k/search", read, Some(search));
    assert_eq!(r.json["results"][0][0]["id"], 1, "{}", r.json);
    assert_eq!(
        req("POST", "/v1/collections/k/search", write, Some(search)).status,
        200
    );
    assert_eq!(
        req("GET", "/v1/collections/k", read_bearer, None).status,
        200
    );
    assert_eq!(req("GET", "/v1/collections", read, None).status, 200);
    expect_error(
        &req("GET", "/v1/collections", None, None),
        401,
        "unauthorized",
    );
    for path in [
        "/v1/collections/k/flush",
        "/v1/collections/k/compact",
        "/v1/collections/k/delete",
    ] {
        expect_error(
            &req("POST", path, read, Some(r#"{"ids": [1]}"#)),
            403,
            "forbidden",
        );
    }
    expect_error(
        &req("DELETE", "/v1/collections/k", read, None),
        403,
        "forbidden",
    );
    assert_eq!(req("DELETE", "/v1/collections/k", write, None).status, 200);
    assert_eq!(s.terminate(), Some(0));
}

#[test]
fn concurrent_clients_during_an_index_rebuild_then_restart() {
    const DIM: usize = 16;
    let s = Server::start(&["--no-embed", "--seal-rows", "1500"]);
    s.wait_ready();
    let r = call(
        &s,
        "PUT",
        "/v1/collections/live",
        Some(json!({"dim": DIM, "metric": "l2", "shards": 2})),
    );
    assert_eq!(r.status, 201, "{}", r.json);
    let base: Vec<f32> = (0..2000).flat_map(|i| pseudo_row(i, DIM)).collect();
    let ids: Vec<u64> = (0..2000).collect();
    let r = http_with(
        "POST",
        &s.url("/v1/collections/live/vectors"),
        &[],
        Some(("application/octet-stream", &binary(DIM, &base, Some(&ids)))),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    let r = call(
        &s,
        "POST",
        "/v1/collections/live/index",
        Some(json!({"type": "IVF_FLAT", "params": {"nlist": 16}})),
    );
    assert_eq!(r.status, 202, "{}", r.json);

    // 16 writers × 10 batches × 20 new vectors, 16 readers searching until the writers finish;
    // a second rebuild lands in the middle.
    let failures = Arc::new(AtomicUsize::new(0));
    let writers_done = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for w in 0..16u64 {
            let (s, failures, done) = (&s, failures.clone(), writers_done.clone());
            scope.spawn(move || {
                for b in 0..10u64 {
                    let first = 10_000 + (w * 10 + b) * 20;
                    let vectors: Vec<Vec<f32>> =
                        (first..first + 20).map(|i| pseudo_row(i, DIM)).collect();
                    let ids: Vec<u64> = (first..first + 20).collect();
                    let r = call(
                        s,
                        "POST",
                        "/v1/collections/live/vectors",
                        Some(json!({"vectors": vectors, "ids": ids})),
                    );
                    if r.status != 200 {
                        eprintln!("insert: {} {}", r.status, r.json);
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                    if w == 0 && b == 5 {
                        let r = call(
                            s,
                            "POST",
                            "/v1/collections/live/index",
                            Some(json!({"type": "IVF_FLAT", "params": {"nlist": 8}})),
                        );
                        if r.status != 202 {
                            eprintln!("rebuild: {} {}", r.status, r.json);
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        for reader in 0..16u64 {
            let (s, failures, done) = (&s, failures.clone(), writers_done.clone());
            scope.spawn(move || {
                let mut n = 0u64;
                while done.load(Ordering::SeqCst) < 16 || n < 3 {
                    let id = (reader * 97 + n * 13) % 2000;
                    let r = call(
                        s,
                        "POST",
                        "/v1/collections/live/search",
                        Some(json!({"vectors": [pseudo_row(id, DIM)], "k": 5, "params": {"nprobe": 16}})),
                    );
                    let ok = r.status == 200
                        && r.json["results"][0]
                            .as_array()
                            .is_some_and(|h| h.len() == 5);
                    if !ok {
                        eprintln!("search: {} {}", r.status, r.json);
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                    n += 1;
                }
            });
        }
    });
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    let expected = 2000 + 16 * 10 * 20;
    let r = call(&s, "GET", "/v1/collections/live", None);
    assert_eq!(r.json["count"], expected, "{}", r.json);
    let status = wait_index_ready(&s, "live");
    assert_eq!(status["spec"]["params"]["nlist"], 8, "{status}");

    // Restart on the same data dir: everything acknowledged is there.
    let (code, s) = s.restart(&["--no-embed"]);
    assert_eq!(code, Some(0));
    s.wait_ready();
    let r = call(&s, "GET", "/v1/collections/live", None);
    assert_eq!(r.json["count"], expected, "{}", r.json);
    let r = call(
        &s,
        "POST",
        "/v1/collections/live/search",
        Some(
            json!({"vectors": [pseudo_row(12_345, DIM)], "k": 1, "params": {"nprobe": 8}, "consistency": "strong"}),
        ),
    );
    assert_eq!(r.json["results"][0][0]["id"], 12_345, "{}", r.json);
    let r = call(&s, "GET", "/v1/collections/live/vectors/13199", None);
    assert_eq!(
        floats(&r.json["vector"]),
        pseudo_row(13_199, DIM),
        "{}",
        r.json
    );
    assert_eq!(s.terminate(), Some(0));
}

#[test]
fn embed_and_the_import_and_search_commands() {
    let s = Server::start(&[]);
    s.wait_ready();
    // The model loads in the background: 503 not_ready until then.
    let deadline = Instant::now() + Duration::from_secs(60);
    let r = loop {
        let r = call(
            &s,
            "POST",
            "/v1/embed",
            Some(json!({"texts": ["compress files", "web browser"]})),
        );
        if r.status != 503 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["dim"], 384);
    assert_eq!(r.json["vectors"].as_array().unwrap().len(), 2);
    assert_eq!(r.json["vectors"][0].as_array().unwrap().len(), 384);
    expect_error(
        &call(&s, "POST", "/v1/embed", Some(json!({"texts": []}))),
        400,
        "empty_batch",
    );
    expect_error(
        &call(&s, "POST", "/v1/embed", Some(json!({"text": "x"}))),
        400,
        "invalid_body",
    );

    // `proxima import` of an .fvecs file, then `proxima search` by vector and by text.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("base.fvecs");
    let mut bytes = Vec::new();
    for i in 0..1000u64 {
        bytes.extend_from_slice(&(8i32).to_le_bytes());
        pseudo_row(i, 8)
            .iter()
            .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
    }
    std::fs::write(&file, bytes).unwrap();
    let (code, out, err) = run_cli(&[
        "import",
        file.to_str().unwrap(),
        "--collection",
        "files",
        "--server",
        &s.base_url,
        "--batch",
        "300",
        "--start-id",
        "5000",
        "--flush",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imported 1000 vectors into files"), "{out}");
    assert_eq!(
        call(&s, "GET", "/v1/collections/files", None).json["count"],
        1000
    );
    // A dataset directory brings its ids and metric.
    let ds = dir.path().join("ds");
    let (code, _, err) = run_cli(&[
        "dataset",
        "import",
        file.to_str().unwrap(),
        "--name",
        "small",
        "--metric",
        "ip",
        "--out",
        ds.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_cli(&[
        "import",
        ds.to_str().unwrap(),
        "--collection",
        "from-dataset",
        "--server",
        &s.base_url,
        "--limit",
        "600",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imported 600 vectors"), "{out}");
    let r = call(&s, "GET", "/v1/collections/from-dataset", None);
    assert_eq!(r.json["count"], 600, "{}", r.json);
    assert_eq!(r.json["schema"]["metric"], "ip", "{}", r.json);
    let r = call(&s, "GET", "/v1/collections/from-dataset/vectors/599", None);
    assert_eq!(floats(&r.json["vector"]), pseudo_row(599, 8), "{}", r.json);

    let v: Vec<String> = pseudo_row(777, 8).iter().map(f32::to_string).collect();
    let (code, out, err) = run_cli(&[
        "search",
        "--collection",
        "files",
        "--vector",
        &v.join(","),
        "-k",
        "2",
        "--server",
        &s.base_url,
        "--consistency",
        "strong",
    ]);
    assert_eq!(code, 0, "{err}");
    let first = out.lines().nth(1).unwrap_or_default();
    assert!(first.split_whitespace().nth(1) == Some("5777"), "{out}");

    let r = call(
        &s,
        "PUT",
        "/v1/collections/texts",
        Some(json!({"dim": 384, "metric": "cosine"})),
    );
    assert_eq!(r.status, 201);
    let texts = ["compress files with gzip", "a web browser", "play music"];
    let vectors =
        call(&s, "POST", "/v1/embed", Some(json!({"texts": texts}))).json["vectors"].clone();
    let r = call(
        &s,
        "POST",
        "/v1/collections/texts/vectors",
        Some(json!({"vectors": vectors, "ids": [1, 2, 3]})),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    let (code, out, err) = run_cli(&[
        "search",
        "--collection",
        "texts",
        "--text",
        "browse the web",
        "-k",
        "1",
        "--server",
        &s.base_url,
        "--remote-embed",
        "--json",
        "--consistency",
        "strong",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["results"][0][0]["id"], 2, "{out}");
    let (code, _, err) = run_cli(&[
        "import",
        file.to_str().unwrap(),
        "--collection",
        "files",
        "--server",
        "http://127.0.0.1:1",
        "--timeout",
        "1",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert_eq!(s.terminate(), Some(0));
}
