//! Concurrent `PUT` and `DELETE` of one collection name (with inserts and searches) on a real
//! server process: every create answers 201 or 409, every drop 200 or 404, nothing answers
//! 500, and afterwards the name works, also after a restart.

use std::collections::BTreeMap;
use std::sync::{Barrier, Mutex};

use proxima_e2e::{call, pseudo_row, Server};
use serde_json::json;

const NAME: &str = "contested";
const PATH: &str = "/v1/collections/contested";
const DIM: usize = 4;
const THREADS: usize = 8;
const ROUNDS: usize = 150;

#[test]
fn concurrent_creates_and_drops_of_one_name_never_answer_500() {
    let s = Server::start(&["--no-embed", "--fsync", "never"]);
    s.wait_ready();
    // (operation, status, code) → how many.
    let seen: Mutex<BTreeMap<(&str, u16, String), usize>> = Mutex::new(BTreeMap::new());
    let start = Barrier::new(THREADS);
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (s, seen, start) = (&s, &seen, &start);
            scope.spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1);
                start.wait();
                for round in 0..ROUNDS {
                    let id = (t * ROUNDS + round) as u64;
                    // xorshift64: each thread's own sequence of operations.
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let (op, r) = match rng % 10 {
                        0..=2 => (
                            "create",
                            call(s, "PUT", PATH, Some(json!({"dim": DIM, "metric": "l2"}))),
                        ),
                        3 | 4 => ("drop", call(s, "DELETE", PATH, None)),
                        5..=7 => (
                            "insert",
                            call(
                                s,
                                "POST",
                                &format!("{PATH}/vectors"),
                                Some(json!({"vectors": [pseudo_row(id, DIM)], "ids": [id]})),
                            ),
                        ),
                        _ => (
                            "search",
                            call(
                                s,
                                "POST",
                                &format!("{PATH}/search"),
                                Some(json!({"vectors": [pseudo_row(id, DIM)], "k": 3, "consistency": "strong"})),
                            ),
                        ),
                    };
                    let code = r.json["error"]["code"].as_str().unwrap_or("").to_string();
                    let allowed = match op {
                        "create" => matches!((r.status, &*code), (201, "") | (409, "collection_exists")),
                        "drop" => matches!((r.status, &*code), (200, "") | (404, "collection_not_found")),
                        // A request that found the collection just before a drop closed it.
                        _ => matches!(
                            (r.status, &*code),
                            (200, "") | (404, "collection_not_found") | (503, "closed" | "consistency_timeout")
                        ),
                    };
                    assert!(allowed, "{op}: {} {}", r.status, r.json);
                    *seen.lock().unwrap().entry((op, r.status, code)).or_default() += 1;
                }
            });
        }
    });
    let seen = seen.into_inner().unwrap();
    eprintln!("{seen:?}");
    let count = |op: &str, status: u16| {
        seen.iter()
            .filter(|((o, st, _), _)| *o == op && *st == status)
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    let (created, dropped) = (count("create", 201), count("drop", 200));
    assert!(
        created > 5 && dropped > 5,
        "too little contention: {seen:?}"
    );
    // Linearisable from an empty start: successful creates and drops alternate.
    let exists = call(&s, "GET", PATH, None).status == 200;
    assert_eq!(created - dropped, usize::from(exists), "{seen:?}");

    // The name works.
    if exists {
        assert_eq!(call(&s, "DELETE", PATH, None).status, 200);
    }
    let r = call(&s, "PUT", PATH, Some(json!({"dim": DIM, "metric": "l2"})));
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(r.json["count"], 0, "{}", r.json);
    let rows: Vec<Vec<f32>> = (0..10).map(|i| pseudo_row(1000 + i, DIM)).collect();
    let ids: Vec<u64> = (0..10).collect();
    let r = call(
        &s,
        "POST",
        &format!("{PATH}/vectors"),
        Some(json!({"vectors": rows, "ids": ids})),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    let r = call(
        &s,
        "POST",
        &format!("{PATH}/search"),
        Some(json!({"vectors": [rows[3]], "k": 1, "consistency": "strong"})),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["results"][0][0]["id"], 3, "{}", r.json);

    // After a restart: the collection as it was, and no dropped collection's files.
    let (code, s) = s.restart(&["--no-embed"]);
    assert_eq!(code, Some(0));
    s.wait_ready();
    let r = call(&s, "GET", PATH, None);
    assert_eq!(
        (r.status, &r.json["count"]),
        (200, &json!(10)),
        "{}",
        r.json
    );
    let left: Vec<String> = std::fs::read_dir(s.data_dir.path().join("collections"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec![NAME.to_string()]);
}
