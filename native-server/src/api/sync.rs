//! The sync endpoints browser and edge caches follow: the change feed (with live long-polls
//! that wait on the reactor, not on a thread) and cache snapshots.

use std::time::Duration;

use proxima_core::hnsw::Quantization;
use proxima_core::sync::ChangeBatch;
use serde_json::json as j;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use super::errors::ApiError;
use super::routes::Call;
use super::types::json;
use super::AppState;
use crate::engine::{ChangesRead, Collection, EngineError, SnapshotOptions, Subset};

/// Most records one feed request returns.
pub const MAX_LIMIT: usize = 10_000;
const DEFAULT_LIMIT: usize = 1_000;
/// A live request waits this long for a change when it names no `timeout_ms`.
const DEFAULT_TIMEOUT_MS: u64 = 20_000;
const MAX_TIMEOUT_MS: u64 = 60_000;

/// The change feed's query string.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedQuery {
    pub since: u64,
    pub limit: usize,
    pub handle: Option<String>,
    pub live: bool,
    pub timeout: Duration,
}

fn bad(name: &str, value: &str, why: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_parameter",
        format!("invalid query parameter {name} = {value:?}: {why}"),
    )
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ApiError> {
    value
        .parse()
        .map_err(|_| bad(name, value, "not a non-negative integer"))
}

impl FeedQuery {
    pub fn parse(query: &[(String, String)]) -> Result<Self, ApiError> {
        let mut q = FeedQuery {
            since: 0,
            limit: DEFAULT_LIMIT,
            handle: None,
            live: false,
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
        };
        for (k, v) in query {
            match k.as_str() {
                "since" => q.since = number(k, v)?,
                "limit" => {
                    q.limit = number(k, v)?;
                    if q.limit == 0 || q.limit > MAX_LIMIT {
                        return Err(bad(k, v, &format!("must be between 1 and {MAX_LIMIT}")));
                    }
                }
                "handle" => q.handle = Some(v.clone()),
                "live" => {
                    q.live = match v.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(bad(k, v, "must be true or false")),
                    }
                }
                "timeout_ms" => {
                    let ms: u64 = number(k, v)?;
                    if ms > MAX_TIMEOUT_MS {
                        return Err(bad(k, v, &format!("must be at most {MAX_TIMEOUT_MS}")));
                    }
                    q.timeout = Duration::from_millis(ms);
                }
                _ => {
                    return Err(bad(
                        k,
                        v,
                        "unknown parameter (since, limit, handle, live, timeout_ms)",
                    ))
                }
            }
        }
        Ok(q)
    }
}

fn snapshot_required(col: &Collection, reason: String) -> ApiError {
    let log = col.changes().stats();
    EngineError::SnapshotRequired {
        reason,
        handle: col.handle(),
        horizon: log.horizon,
        head: log.head,
    }
    .into()
}

fn check_handle(col: &Collection, q: &FeedQuery) -> Result<(), ApiError> {
    match &q.handle {
        Some(h) if *h != col.handle() => Err(snapshot_required(
            col,
            format!(
                "handle {h} is not the collection's current handle {} (it was dropped and created again, or its change log started again)",
                col.handle()
            ),
        )),
        _ => Ok(()),
    }
}

/// Live mode: waits, on the reactor, until the log's head passes `since`, the log closes or
/// the timeout passes. Anything wrong with the request is left to the handler to answer.
pub async fn wait_for_changes(state: &AppState, call: &Call) {
    let Ok(q) = FeedQuery::parse(&call.query) else {
        return;
    };
    if !q.live {
        return;
    }
    let Some(col) = state.engine().and_then(|e| e.collection(call.name()).ok()) else {
        return;
    };
    // A stale handle, or a `since` past every acknowledged write, is answered at once (409).
    if check_handle(&col, &q).is_err() || q.since > col.committed_seq() {
        return;
    }
    let mut rx = col.changes().subscribe();
    drop(col);
    let mut stopping = state.stopping.subscribe();
    let _waiter = state.metrics.live_waiter();
    let since = q.since;
    let changed = rx.wait_for(|h| h.seq > since || !h.open);
    tokio::select! {
        _ = tokio::time::timeout(q.timeout, changed) => {}
        // A shutdown answers every waiter at once (an empty batch: the client comes back).
        _ = stopping.wait_for(|s| *s) => {}
    }
}

fn accepts_binary(c: &Call) -> bool {
    c.headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/octet-stream"))
}

fn binary(bytes: Vec<u8>) -> Response {
    let mut r = Response::new(bytes.into());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r
}

fn set(r: &mut Response, name: &'static str, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        r.headers_mut().insert(name, v);
    }
}

/// `GET /v1/collections/{name}/changes`.
pub fn changes(s: &AppState, c: &Call) -> Result<Response, ApiError> {
    let q = FeedQuery::parse(&c.query)?;
    let col = s.engine_or_503()?.collection(c.name())?;
    check_handle(&col, &q)?;
    col.wait_for_feed(q.since)?;
    let head = col.changes().head();
    let (records, until, has_more) = match col.changes().read(q.since, q.limit)? {
        ChangesRead::Changes {
            records,
            until,
            has_more,
        } => (records, until, has_more),
        ChangesRead::SnapshotRequired { horizon, head } => {
            let reason = if q.since > head {
                format!("since {} is after the newest change {head}: the cache holds changes this collection does not", q.since)
            } else {
                format!(
                    "changes after {} are no longer retained (the feed starts after {horizon})",
                    q.since
                )
            };
            return Err(snapshot_required(&col, reason));
        }
    };
    s.metrics
        .feed_served(&col.name(), records.len(), head.saturating_sub(q.since));
    let batch = ChangeBatch {
        collection: col.name(),
        handle: col.handle(),
        since: q.since,
        until,
        records,
        has_more,
    };
    let mut r = if accepts_binary(c) {
        binary(batch.to_bytes())
    } else {
        json(StatusCode::OK, &batch)?
    };
    set(&mut r, "x-proxima-handle", &batch.handle);
    set(&mut r, "x-proxima-until", batch.until);
    set(&mut r, "cache-control", "no-store");
    Ok(r)
}

/// The snapshot endpoint's query string.
fn snapshot_options(query: &[(String, String)]) -> Result<SnapshotOptions, ApiError> {
    let mut o = SnapshotOptions::default();
    let mut subset = Subset::default();
    for (k, v) in query {
        match k.as_str() {
            "storage" => {
                (o.quantization, o.rerank) = match v.as_str() {
                    "f32" | "none" => (Quantization::None, false),
                    "sq8" => (Quantization::Sq8, false),
                    "sq8_rerank" => (Quantization::Sq8, true),
                    _ => return Err(bad(k, v, "must be f32, sq8 or sq8_rerank")),
                }
            }
            "limit" => {
                let n: usize = number(k, v)?;
                if n == 0 {
                    return Err(bad(k, v, "must be at least 1"));
                }
                subset.limit = Some(n);
            }
            "id_min" => subset.id_min = Some(number(k, v)?),
            "id_max" => subset.id_max = Some(number(k, v)?),
            _ => {
                return Err(bad(
                    k,
                    v,
                    "unknown parameter (storage, limit, id_min, id_max)",
                ))
            }
        }
    }
    if let (Some(a), Some(b)) = (subset.id_min, subset.id_max) {
        if a > b {
            return Err(bad("id_min", &a.to_string(), "is above id_max"));
        }
    }
    o.subset = subset;
    Ok(o)
}

/// `GET /v1/collections/{name}/snapshot`.
pub fn snapshot(s: &AppState, c: &Call) -> Result<Response, ApiError> {
    let opts = snapshot_options(&c.query)?;
    let col = s.engine_or_503()?.collection(c.name())?;
    let snap = col.cache_snapshot(&opts)?;
    let gzip = super::demo::accepts_gzip(c).then(|| snap.gzip());
    let mut r = match gzip {
        // Worth it when it saves a tenth (SQ8 codes and link lists compress; f32 rows barely).
        Some(gz) if gz.len() < snap.bytes.len() / 10 * 9 => {
            let mut r = binary(gz.to_vec());
            set(&mut r, "content-encoding", "gzip");
            r
        }
        _ => binary(snap.bytes.clone()),
    };
    s.metrics.snapshot_served(&col.name(), r_len(&r));
    set(&mut r, "x-proxima-bytes", snap.bytes.len());
    set(&mut r, "x-proxima-seq", snap.header.seq);
    set(&mut r, "x-proxima-handle", &snap.header.handle);
    set(&mut r, "x-proxima-count", snap.header.count);
    set(&mut r, "x-proxima-complete", snap.header.complete);
    set(&mut r, "cache-control", "no-store");
    Ok(r)
}

fn r_len(r: &Response) -> usize {
    use warp::hyper::body::Body;
    r.body().size_hint().exact().unwrap_or(0) as usize
}

/// The feed's position, for `describe`-like answers and tests.
pub fn feed_position(col: &Collection) -> serde_json::Value {
    let log = col.changes().stats();
    j!({
        "handle": col.handle(),
        "horizon": log.horizon,
        "head": log.head,
        "retained_changes": log.records,
        "retained_bytes": log.bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn feed_queries_are_checked() {
        let f = FeedQuery::parse(&q(&[
            ("since", "5"),
            ("live", "true"),
            ("timeout_ms", "100"),
        ]))
        .unwrap();
        assert_eq!((f.since, f.live, f.timeout.as_millis()), (5, true, 100));
        assert_eq!(f.limit, DEFAULT_LIMIT);
        for bad in [
            &[("limit", "0")][..],
            &[("limit", "10001")],
            &[("since", "-1")],
            &[("live", "yes")],
            &[("timeout_ms", "60001")],
            &[("sinse", "1")],
        ] {
            let e = FeedQuery::parse(&q(bad)).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), &*e.code),
                (400, "invalid_parameter"),
                "{bad:?}"
            );
        }
        assert!(FeedQuery::parse(&q(&[("limit", "10000")])).is_ok());
    }

    #[test]
    fn snapshot_queries_are_checked() {
        let o = snapshot_options(&q(&[("storage", "sq8_rerank"), ("limit", "10")])).unwrap();
        assert_eq!(
            (o.quantization, o.rerank, o.subset.limit),
            (Quantization::Sq8, true, Some(10))
        );
        assert!(snapshot_options(&q(&[("storage", "pq")])).is_err());
        assert!(snapshot_options(&q(&[("id_min", "5"), ("id_max", "4")])).is_err());
    }
}
