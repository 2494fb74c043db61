//! A real `proxima serve` process over real HTTP.

use proxima_e2e::{http, Server};

#[test]
fn serves_health_plan_and_json_errors() {
    let server = Server::start(&[]);
    let r = http("GET", &server.url("/healthz"), None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json["status"], "ok");

    let r = http(
        "POST",
        &server.url("/v1/plan"),
        Some(
            r#"{"vectors": 1000000, "dim": 128, "index": {"type": "IVF_FLAT", "params": {"nlist": 4096}}}"#,
        ),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["plan"]["raw_bytes"], 512_000_000u64);

    let r = http(
        "POST",
        &server.url("/v1/plan"),
        Some(
            r#"{"vectors": 1000, "dim": 8, "index": {"type": "IVF_FLAT", "params": {"nlist": 0}}}"#,
        ),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json["error"]["code"], "invalid_parameter");

    let r = http("POST", &server.url("/v1/plan"), Some("{not json"));
    assert_eq!(r.status, 400);
    assert_eq!(r.json["error"]["code"], "malformed_json");

    let r = http("GET", &server.url("/no/such/route"), None);
    assert_eq!(r.status, 404);
    assert_eq!(r.json["error"]["code"], "not_found");

    assert_eq!(
        server.terminate(),
        Some(0),
        "SIGTERM must shut down cleanly"
    );
}
