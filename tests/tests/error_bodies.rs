//! A server error's answer on a real server process: the error's code and what failed, but
//! none of the server's filesystem paths (the log has them).

use proxima_e2e::{call, pseudo_row, Server};
use serde_json::json;

#[test]
fn an_io_error_answers_without_the_data_directory() {
    let s = Server::start(&["--no-embed"]);
    s.wait_ready();
    let r = call(
        &s,
        "PUT",
        "/v1/collections/c",
        Some(json!({"dim": 4, "metric": "l2"})),
    );
    assert_eq!(r.status, 201, "{}", r.json);
    let rows: Vec<Vec<f32>> = (0..8).map(|i| pseudo_row(i, 4)).collect();
    let r = call(
        &s,
        "POST",
        "/v1/collections/c/vectors",
        Some(json!({"vectors": rows, "ids": (0..8).collect::<Vec<u64>>()})),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    // A checkpoint cannot create its segment directory where a file stands in the way
    // (root or not).
    let segments = s.data_dir.path().join("collections/c/segments");
    std::fs::remove_dir_all(&segments).unwrap();
    std::fs::write(&segments, b"in the way").unwrap();
    let r = call(&s, "POST", "/v1/collections/c/flush", None);
    assert_eq!(r.status, 500, "{}", r.json);
    assert_eq!(r.json["error"]["code"], "io_error", "{}", r.json);
    let message = r.json["error"]["message"].as_str().unwrap();
    let body = r.json.to_string();
    let dir = s.data_dir.path().display().to_string();
    assert!(!body.contains(&dir), "{body}");
    let canonical = std::fs::canonicalize(s.data_dir.path()).unwrap();
    assert!(!body.contains(&*canonical.display().to_string()), "{body}");
    // What failed is still said, relative to the data directory.
    assert!(message.contains("collections/c/segments"), "{message}");
    assert!(!message.contains("//"), "{message}");
}
