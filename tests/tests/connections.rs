//! Connections and requests on a real `proxima serve` process, with short timeouts passed as
//! flags: stalled heads, idle connections and clients that stop reading are closed (live
//! long-polls are not idle), the connection cap refuses the excess with 503, abandoned and
//! late searches stop using the search pool, SIGTERM ends within the shutdown timeout, open
//! routes never read a body, `HEAD` answers where `GET` does, and both key headers at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use proxima_e2e::{expect_error, http, http_with, HttpReply, Server};
use serde_json::json;

fn connect(s: &Server) -> Conn {
    let addr = s.base_url.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    Conn {
        stream,
        buf: Vec::new(),
    }
}

/// A raw connection and what it has read past the last response.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads until the server closes the connection; returns what came.
    fn read_until_closed(&mut self) -> Vec<u8> {
        let mut got = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        got
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).expect("read");
        assert!(
            n > 0,
            "closed part-way: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Reads one response (`head_only` for the answer to HEAD): its head and body.
    fn response(&mut self, head_only: bool) -> (String, Vec<u8>) {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill();
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let len = if head_only {
            0
        } else {
            header(&head, "content-length")
                .map(|v| v.parse::<usize>().unwrap())
                .expect("content-length")
        };
        while self.buf.len() < head_end + len {
            self.fill();
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        (head, body)
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn metric(s: &Server, line_start: &str) -> f64 {
    let r = http("GET", &s.url("/metrics"), None);
    let text = r.json.as_str().unwrap_or_default().to_string();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `metric` until it reaches `at_least`; panics after `within`.
fn wait_metric(s: &Server, line_start: &str, at_least: f64, within: Duration) {
    let deadline = Instant::now() + within;
    while metric(s, line_start) < at_least {
        assert!(
            Instant::now() < deadline,
            "{line_start} did not reach {at_least} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stalled_heads_and_idle_connections_are_closed() {
    let s = Server::start(&[
        "--no-embed",
        "--header-read-timeout",
        "500ms",
        "--idle-timeout",
        "1.2s",
    ]);
    s.wait_ready();
    let in_range = |d: Duration, lo: f64, hi: f64| {
        assert!(
            (lo..hi).contains(&d.as_secs_f64()),
            "closed after {d:?}, expected {lo}–{hi} s"
        )
    };

    // A connection that never sends anything: its first head is timed from the accept.
    let opened = Instant::now();
    let mut silent = connect(&s);
    assert!(silent.read_until_closed().is_empty());
    in_range(opened.elapsed(), 0.35, 3.0);
    // Half a head.
    let opened = Instant::now();
    let mut half = connect(&s);
    half.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Partial: ")
        .unwrap();
    assert!(half.read_until_closed().is_empty());
    in_range(opened.elapsed(), 0.35, 3.0);
    // A head written a byte every 100 ms: progress does not reset the timeout, which runs
    // from the head's first byte.
    let opened = Instant::now();
    let mut trickle = connect(&s);
    for b in b"GET /healthz HTTP/1.1\r\nX-Slow: abcdefghijklmnopqrstuvwxyz\r\n\r\n" {
        if trickle.send(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let answer = trickle.read_until_closed();
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    in_range(opened.elapsed(), 0.35, 3.0);

    // A keep-alive connection serves a request after 0.7 s of idleness (longer than the
    // header-read timeout: the wait for a head's first byte is the idle timeout's), then is
    // closed after 1.2 s of idleness.
    let mut keep = connect(&s);
    keep.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, _) = keep.response(false);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    std::thread::sleep(Duration::from_millis(700));
    keep.send(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, _) = keep.response(false);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let idle = Instant::now();
    assert!(keep.read_until_closed().is_empty());
    in_range(idle.elapsed(), 1.0, 4.0);

    assert!(
        metric(
            &s,
            "proxima_http_connections_closed_total{reason=\"header_timeout\"}"
        ) >= 3.0
    );
    assert!(metric(&s, "proxima_http_connections_closed_total{reason=\"idle\"}") >= 1.0);
    assert_eq!(s.terminate(), Some(0));
}

#[test]
fn live_long_polls_outlast_the_idle_timeout() {
    let s = Server::start(&[
        "--no-embed",
        "--header-read-timeout",
        "300ms",
        "--idle-timeout",
        "300ms",
    ]);
    s.wait_ready();
    let r = http(
        "PUT",
        &s.url("/v1/collections/feed"),
        Some(r#"{"dim": 2, "metric": "l2"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.json);

    // A poll with nothing to wake it answers at its own timeout, long after the idle one.
    let started = Instant::now();
    let r = http(
        "GET",
        &s.url("/v1/collections/feed/changes?since=0&live=true&timeout_ms=1500"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["records"], json!([]));
    assert!(started.elapsed() >= Duration::from_millis(1400));

    // A poll woken by a write 1 s in, on a raw keep-alive connection that then goes idle.
    let mut poll = connect(&s);
    poll.send(
        b"GET /v1/collections/feed/changes?since=0&live=true&timeout_ms=20000 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let r = http(
        "POST",
        &s.url("/v1/collections/feed/vectors"),
        Some(r#"{"vectors": [[1, 2]], "ids": [7]}"#),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    let (head, body) = poll.response(false);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let batch: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(batch["records"][0]["id"], 7, "{batch}");
    let idle = Instant::now();
    assert!(poll.read_until_closed().is_empty());
    assert!(
        idle.elapsed() < Duration::from_secs(3),
        "idle close after {:?}",
        idle.elapsed()
    );

    // A poll in flight at SIGTERM answers at once and the server exits promptly.
    let url = s.url("/v1/collections/feed/changes?since=1&live=true&timeout_ms=60000");
    let waiting = std::thread::spawn(move || {
        let started = Instant::now();
        (http("GET", &url, None).status, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    let stopping = Instant::now();
    assert_eq!(s.terminate(), Some(0));
    assert!(stopping.elapsed() < Duration::from_secs(5));
    let (status, took) = waiting.join().unwrap();
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn connections_past_the_cap_are_refused() {
    let s = Server::start(&["--no-embed", "--max-connections", "3"]);
    s.wait_ready();
    // Let the probe connections of wait_ready close.
    std::thread::sleep(Duration::from_millis(200));
    let mut held: Vec<Conn> = (0..3)
        .map(|_| {
            let mut c = connect(&s);
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let (head, _) = c.response(false);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            c
        })
        .collect();
    let mut extra = connect(&s);
    extra
        .send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answer = extra.read_until_closed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(
        answer.contains(r#""code":"too_many_connections""#),
        "{answer}"
    );

    // A closed connection gives its place back.
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = connect(&s);
        c.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let answer = c.read_until_closed();
        let answer = String::from_utf8_lossy(&answer);
        if answer.starts_with("HTTP/1.1 200") {
            let value = |name: &str| {
                answer
                    .lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("no {name} in {answer}"))
            };
            assert!(value("proxima_http_connections_refused_total") >= 1.0);
            // The two held and this one.
            assert_eq!(value("proxima_http_connections"), 3.0);
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {answer}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(held);
    assert_eq!(s.terminate(), Some(0));
}

const DIM: usize = 128;
const ROWS: usize = 60_000;
const BATCH: usize = 1_000;

/// The binary rows body of `rows` rows (`proxima_core::formats::encode_rows`): pseudo-random
/// values in [0, 1), with ids `first..` when `ids`.
fn binary(rows: usize, first: u64, ids: bool) -> Vec<u8> {
    let mut z = first.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let vectors: Vec<f32> = (0..rows * DIM)
        .map(|_| {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            ((z >> 40) as f32) / (1u64 << 24) as f32
        })
        .collect();
    let labels: Vec<u64> = (first..first + rows as u64).collect();
    proxima_core::formats::encode_rows(DIM, &vectors, ids.then_some(labels.as_slice()))
}

/// A raw binary search of `queries` rows, written in one go.
fn search_request(queries: usize) -> Vec<u8> {
    let body = binary(queries, 1 << 40, false);
    let mut req = format!(
        "POST /v1/collections/big/search?k=10&consistency=eventually HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req
}

fn search(s: &Server, queries: usize) -> HttpReply {
    http_with(
        "POST",
        &s.url("/v1/collections/big/search?k=10&consistency=eventually"),
        &[],
        Some(("application/octet-stream", &binary(queries, 1 << 40, false))),
    )
}

#[test]
fn abandoned_and_late_searches_stop_and_sigterm_is_bounded() {
    // One search thread and 60 sealed segments of 1,000 rows: a batch of 10,000 queries takes
    // seconds (about 6 s on 2 CPUs), and its search checks for cancellation 60 times.
    let s = Server::start(&[
        "--no-embed",
        "--search-threads",
        "1",
        "--seal-rows",
        "1000",
        "--fsync",
        "never",
        "--request-timeout",
        "1s",
        "--idle-timeout",
        "1s",
    ]);
    s.wait_ready();
    let r = http(
        "PUT",
        &s.url("/v1/collections/big"),
        Some(r#"{"dim": 128, "metric": "l2"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.json);
    for first in (0..ROWS).step_by(BATCH) {
        let r = http_with(
            "POST",
            &s.url("/v1/collections/big/vectors"),
            &[],
            Some((
                "application/octet-stream",
                &binary(BATCH, first as u64, true),
            )),
        );
        assert_eq!(r.status, 200, "{}", r.json);
    }
    assert_eq!(
        http("POST", &s.url("/v1/collections/big/flush"), None).status,
        200
    );
    let stopped = |reason: &str| {
        format!(
            "proxima_http_requests_stopped_total{{reason=\"{reason}\",route=\"/v1/collections/{{name}}/search\"}}"
        )
    };

    // Abandoned: the client goes away 300 ms in; the pool's one thread is free again within
    // a segment, so a small batch (which runs on the pool) answers at once.
    let mut gone = connect(&s);
    gone.send(&search_request(10_000)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(gone);
    let started = Instant::now();
    let r = search(&s, 16);
    assert_eq!(r.status, 200, "{}", r.json);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the pool was busy for {:?}",
        started.elapsed()
    );
    wait_metric(&s, &stopped("abandoned"), 1.0, Duration::from_secs(5));

    // Past --request-timeout: 503 request_timeout at the deadline, and the search stops.
    let started = Instant::now();
    let r = search(&s, 10_000);
    let took = started.elapsed();
    expect_error(&r, 503, "request_timeout");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    wait_metric(&s, &stopped("timeout"), 1.0, Duration::from_secs(5));
    let r = search(&s, 16);
    assert_eq!(r.status, 200, "{}", r.json);

    // A client that stops reading: ten pipelined pages of the change feed (13 MB of JSON
    // each) fill the socket; the connection is closed after --idle-timeout without progress.
    let mut stuck = connect(&s);
    let page = "GET /v1/collections/big/changes?since=0&limit=10000 HTTP/1.1\r\nHost: x\r\n\r\n";
    stuck.send(page.repeat(10).as_bytes()).unwrap();
    wait_metric(
        &s,
        "proxima_http_connections_closed_total{reason=\"write_stalled\"}",
        1.0,
        Duration::from_secs(10),
    );
    let got = stuck.read_until_closed();
    assert!(got.len() < 10 * 13_000_000, "{} bytes", got.len());

    // SIGTERM with a long search in flight and no request deadline: the search is dropped
    // after --shutdown-timeout and the process exits 0 soon after.
    let (code, s) = s.restart(&[
        "--no-embed",
        "--search-threads",
        "1",
        "--request-timeout",
        "0",
        "--shutdown-timeout",
        "500ms",
    ]);
    assert_eq!(code, Some(0));
    s.wait_ready();
    let mut long = connect(&s);
    long.send(&search_request(10_000)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let stopping = Instant::now();
    assert_eq!(s.terminate(), Some(0));
    let took = stopping.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let answer = long.read_until_closed();
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
}

#[test]
fn open_routes_never_read_a_body_and_head_answers_where_get_does() {
    let web = tempfile::tempdir().unwrap();
    let page = "<!doctype html><title>proxima</title>";
    std::fs::write(web.path().join("index.html"), page).unwrap();
    let s = Server::start(&[
        "--no-embed",
        "--write-key",
        "w",
        "--web-dir",
        web.path().to_str().unwrap(),
    ]);
    s.wait_ready();

    // A declared megabyte that never comes: open routes answer without waiting for it, and a
    // route that takes a body answers 401 before reading it.
    for (method, path, status) in [
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/metrics", 200),
        ("GET", "/version", 200),
        ("GET", "/openapi.json", 200),
        ("GET", "/v1/demo", 200),
        ("POST", "/v1/plan", 401),
        ("PUT", "/v1/collections/c", 401),
    ] {
        let mut c = connect(&s);
        c.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        c.send(
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc")
                .as_bytes(),
        )
        .unwrap();
        let (head, _) = c.response(false);
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{method} {path}: {head}"
        );
    }

    // HEAD: the headers GET would send, no body.
    let key = [("Authorization", "Bearer w")];
    let r = http_with(
        "PUT",
        &s.url("/v1/collections/c"),
        &key,
        Some(("application/json", br#"{"dim": 2, "metric": "l2"}"#)),
    );
    assert_eq!(r.status, 201, "{}", r.json);
    let r = http_with(
        "POST",
        &s.url("/v1/collections/c/vectors"),
        &key,
        Some(("application/json", br#"{"vectors": [[1, 2]], "ids": [5]}"#)),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    for path in [
        "/",
        "/index.html",
        "/healthz",
        "/readyz",
        "/version",
        "/openapi.json",
        "/v1/demo",
        "/v1/collections",
        "/v1/collections/c/vectors/5",
        "/v1/collections/c/index",
    ] {
        let get = ureq::get(&s.url(path))
            .set("Authorization", "Bearer w")
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let get_len = get.header("content-length").map(str::to_string);
        let get_type = get.header("content-type").map(str::to_string);
        let body = get.into_string().unwrap();
        // On a raw connection: the HEAD answer, then the next answer right after its head.
        let mut c = connect(&s);
        c.send(
            format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer w\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let (head, _) = c.response(true);
        assert!(head.starts_with("HTTP/1.1 200"), "HEAD {path}: {head}");
        assert_eq!(
            header(&head, "content-length"),
            get_len,
            "HEAD {path}: {head}"
        );
        assert_eq!(header(&head, "content-type"), get_type, "HEAD {path}");
        if path == "/" {
            assert_eq!(body, page);
        }
        let (next, body) = c.response(false);
        assert!(
            next.starts_with("HTTP/1.1 200"),
            "after HEAD {path}: {next}"
        );
        assert_eq!(body, br#"{"status":"ok"}"#);
    }
    // HEAD /metrics (its length changes between two scrapes) and an unknown route.
    let r = ureq::head(&s.url("/metrics")).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(http("HEAD", &s.url("/no/such/route"), None).status, 404);
    let metrics = http("GET", &s.url("/metrics"), None).json;
    assert!(
        metrics.as_str().unwrap().contains(
            r#"method="HEAD",route="/v1/collections/{name}/vectors/{id}",status="200"} 1"#
        ),
        "HEAD is counted as HEAD"
    );
    assert_eq!(s.terminate(), Some(0));
}

#[test]
fn a_wrong_key_in_one_header_does_not_spoil_a_valid_key_in_the_other() {
    let s = Server::start(&["--no-embed", "--write-key", "w", "--read-key", "r"]);
    s.wait_ready();
    let create = |headers: &[(&str, &str)], name: &str| {
        http_with(
            "PUT",
            &s.url(&format!("/v1/collections/{name}")),
            headers,
            Some(("application/json", br#"{"dim": 2, "metric": "l2"}"#)),
        )
    };
    let r = create(
        &[("x-api-key", "wrong"), ("Authorization", "Bearer w")],
        "a",
    );
    assert_eq!(r.status, 201, "{}", r.json);
    let r = create(
        &[("x-api-key", "w"), ("Authorization", "Bearer wrong")],
        "b",
    );
    assert_eq!(r.status, 201, "{}", r.json);
    expect_error(
        &create(
            &[("x-api-key", "r"), ("Authorization", "Bearer wrong")],
            "c",
        ),
        403,
        "forbidden",
    );
    expect_error(
        &create(
            &[("x-api-key", "wrong"), ("Authorization", "Bearer wrong")],
            "c",
        ),
        401,
        "unauthorized",
    );
    let r = http_with(
        "GET",
        &s.url("/v1/collections"),
        &[("x-api-key", "wrong"), ("Authorization", "Bearer r")],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(s.terminate(), Some(0));
}
