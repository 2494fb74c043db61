//! The route table and what every request goes through: auth, body limit, the handler off
//! the reactor (`spawn_blocking`) under the request's deadline, error mapping, metrics.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::auth::Access;
use super::errors::ApiError;
use super::handlers as h;
use super::AppState;
use crate::engine::{Cancel, EngineError};

/// What a handler gets: path parameters in template order, the decoded query string,
/// headers, the whole body (empty for routes that take none: their body is never read), and
/// the request's [`Cancel`] (its deadline; cancelled when the client goes away).
pub struct Call {
    pub params: Vec<String>,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub cancel: Cancel,
}

impl Call {
    /// The `{name}` parameter (routes under `/v1/collections/{name}`).
    pub fn name(&self) -> &str {
        self.params.first().map_or("", String::as_str)
    }
}

/// A handler: plain blocking code, run on tokio's blocking pool.
pub type Handler = fn(&AppState, &Call) -> Result<Response, ApiError>;

/// One endpoint.
pub struct Route {
    pub method: Method,
    /// The template, with `{param}` segments; also the metrics label.
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    /// Schema (in the OpenAPI document's components) of the request body, if any. Routes
    /// without one never read a body.
    pub request: Option<&'static str>,
    pub handler: Handler,
}

macro_rules! route {
    ($method:ident $path:literal, $access:ident, $req:expr, $handler:path, $summary:literal) => {
        Route {
            method: Method::$method,
            path: $path,
            access: Access::$access,
            summary: $summary,
            request: $req,
            handler: $handler,
        }
    };
}

/// Every endpoint. The OpenAPI document is generated from this table.
pub static ROUTES: &[Route] = &[
    route!(GET "/healthz", Open, None, h::health, "Liveness: the process serves HTTP."),
    route!(GET "/readyz", Open, None, h::ready, "Readiness: 200 once the data directory is open (recovery done), 503 before."),
    route!(GET "/metrics", Open, None, h::metrics, "Prometheus metrics (text exposition format)."),
    route!(GET "/version", Open, None, h::version, "Server and FAISS versions."),
    route!(GET "/openapi.json", Open, None, h::openapi, "This document."),
    route!(POST "/v1/plan", Read, Some("PlanRequest"), h::plan, "Memory plan of an index and the advisor's recommendation."),
    route!(POST "/v1/embed", Read, Some("EmbedRequest"), h::embed, "Embed texts with the built-in model (all-MiniLM-L6-v2, 384 dimensions)."),
    route!(GET "/v1/collections", Read, None, h::list, "List collections with their schema and count."),
    route!(PUT "/v1/collections/{name}", Write, Some("CreateCollection"), h::create, "Create a collection."),
    route!(GET "/v1/collections/{name}", Read, None, h::describe, "Describe a collection: count, segments, index state and progress, memory, sequences, WAL size."),
    route!(DELETE "/v1/collections/{name}", Write, None, h::drop, "Drop a collection and its files."),
    route!(POST "/v1/collections/{name}/vectors", Write, Some("InsertRequest"), h::insert, "Insert or replace vectors (JSON, or the binary bulk form with Content-Type application/octet-stream)."),
    route!(GET "/v1/collections/{name}/vectors/{id}", Read, None, h::get_vector, "The stored vector of an id (strong consistency)."),
    route!(POST "/v1/collections/{name}/delete", Write, Some("DeleteRequest"), h::delete, "Delete ids (absent ids are ignored)."),
    route!(POST "/v1/collections/{name}/search", Read, Some("SearchRequest"), h::search, "Batch k-nearest-neighbour search at a consistency level (JSON, or query vectors in the binary form with Content-Type application/octet-stream and the parameters in the query string)."),
    route!(POST "/v1/collections/{name}/index", Write, Some("IndexSpec"), h::rebuild, "Start an asynchronous index (re)build; returns the job (the index generation)."),
    route!(GET "/v1/collections/{name}/index", Read, None, h::index_status, "Index state and build progress."),
    route!(POST "/v1/collections/{name}/flush", Write, None, h::flush, "Seal growing segments and checkpoint (WAL truncated)."),
    route!(POST "/v1/collections/{name}/compact", Write, None, h::compact, "Flush, then rewrite sealed segments without their deleted rows."),
    route!(GET "/v1/collections/{name}/changes", Read, None, super::sync::changes, "The change feed for caches: upserts (with vectors) and deletes with since < seq <= until (?since=&limit= up to 10000, &handle=, &live=true&timeout_ms= to long-poll); JSON, or the binary frame with Accept: application/octet-stream. 409 snapshot_required (with the current handle and horizon) when the changes after since are not retained or the handle differs."),
    route!(GET "/v1/demo", Open, None, super::demo::status, "The demo: whether it runs, its build state and progress, and the settings its page uses."),
    route!(GET "/v1/demo/docs", Read, None, super::demo::docs, "The demo's documents as [[id, name, description], ...] (all, gzip-compressed when accepted; or ?ids=1,2,3)."),
    route!(POST "/v1/demo/docs", Write, Some("DemoDoc"), super::demo::add, "Add a document to the demo: {name, description} is embedded and inserted; answers its new id."),
    route!(DELETE "/v1/demo/docs/{id}", Write, None, super::demo::delete, "Delete a document of the demo (its vector and its text)."),
    route!(GET "/v1/collections/{name}/snapshot", Read, None, super::sync::snapshot, "A cache snapshot: the collection's live rows as the cache's HNSW in its byte format, behind a header with the sequence and handle (?storage=f32|sq8|sq8_rerank, ?limit= highest ids, ?id_min=&id_max=). 413 snapshot_too_large above --snapshot-max-bytes."),
    route!(GET "/v1/aliases", Read, None, super::aliases::list, "List aliases: {aliases: [{alias, collection}]}."),
    route!(PUT "/v1/aliases/{alias}", Write, Some("AliasRequest"), super::aliases::put, "Create an alias of a collection, or switch it to another collection (one durable, atomic write; requests through the alias go to the old collection or the new one, none fails). Every /v1/collections/{name} route accepts an alias as the name. 409 name_is_collection when a collection has the alias's name; 404 collection_not_found."),
    route!(GET "/v1/aliases/{alias}", Read, None, super::aliases::get, "The collection an alias points to (404 alias_not_found)."),
    route!(DELETE "/v1/aliases/{alias}", Write, None, super::aliases::delete, "Delete an alias (its collection stays)."),
];

fn path_filter(template: &'static str) -> BoxedFilter<(Vec<String>,)> {
    let mut f = warp::any().map(Vec::<String>::new).boxed();
    for seg in template.trim_start_matches('/').split('/') {
        f = if seg.starts_with('{') {
            f.and(warp::path::param::<String>())
                .map(|mut v: Vec<String>, p: String| {
                    v.push(p);
                    v
                })
                .boxed()
        } else {
            f.and(warp::path(seg)).boxed()
        };
    }
    f.and(warp::path::end()).boxed()
}

/// The route's method; `HEAD` wherever `GET` (hyper sends the headers without the body).
fn method_filter(m: &Method) -> BoxedFilter<()> {
    match *m {
        Method::POST => warp::post().boxed(),
        Method::PUT => warp::put().boxed(),
        Method::DELETE => warp::delete().boxed(),
        _ => warp::get().or(warp::head()).unify().boxed(),
    }
}

/// The filter of one endpoint.
pub fn endpoint(state: Arc<AppState>, route: &'static Route) -> BoxedFilter<(Response,)> {
    path_filter(route.path)
        .and(method_filter(&route.method))
        .and(warp::method())
        .and(warp::query::<Vec<(String, String)>>())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |params: Vec<String>,
                  method: Method,
                  query: Vec<(String, String)>,
                  headers: HeaderMap,
                  body| {
                let request = Request {
                    method,
                    params,
                    query,
                    headers,
                };
                serve(state.clone(), route, request, body)
            },
        )
        .boxed()
}

/// Past the limit, up to this many more bytes of a body are read and discarded before the 413
/// goes out, so that a client that writes its whole body before reading (most do) gets the
/// answer instead of a reset connection.
const DRAIN_BYTES: u64 = 16 << 20;

/// Reads the body, refusing more than `limit` bytes (413) whether or not a length is declared.
async fn read_body<S, B>(body: S, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let limit = limit as u64;
    let too_large = |n: u64| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body of {n} bytes or more exceeds the limit of {limit} bytes (--max-body-bytes)"),
        )
    };
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > limit + DRAIN_BYTES) {
        return Err(too_large(n));
    }
    let mut over = declared.is_some_and(|n| n > limit);
    let mut seen = 0u64;
    let mut buf = Vec::with_capacity(declared.filter(|_| !over).unwrap_or(0) as usize);
    let mut body = pin!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|e| ApiError::bad_request("body_read_error", e.to_string()))?;
        seen += chunk.remaining() as u64;
        over |= seen > limit;
        if over {
            if seen > limit + DRAIN_BYTES {
                break;
            }
            continue;
        }
        while chunk.has_remaining() {
            let c = chunk.chunk();
            buf.extend_from_slice(c);
            let n = c.len();
            chunk.advance(n);
        }
    }
    if over {
        return Err(too_large(declared.unwrap_or(seen).max(seen)));
    }
    Ok(Bytes::from(buf))
}

/// A request as matched, before its body.
struct Request {
    method: Method,
    params: Vec<String>,
    query: Vec<(String, String)>,
    headers: HeaderMap,
}

/// Cancels the request's work when the request's future is dropped (its client went away,
/// or the shutdown timeout passed); after an answer it has no effect.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// `request_timeout` past `deadline`.
async fn before<T>(
    deadline: Option<(Instant, Duration)>,
    work: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    match deadline {
        None => work.await,
        Some((at, timeout)) => tokio::time::timeout_at(at.into(), work)
            .await
            .unwrap_or_else(|_| {
                Err(EngineError::DeadlineExceeded {
                    timeout_ms: timeout.as_millis() as u64,
                }
                .into())
            }),
    }
}

async fn serve<S, B>(state: Arc<AppState>, route: &'static Route, req: Request, body: S) -> Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let started = Instant::now();
    let Request {
        method,
        params,
        query,
        headers,
    } = req;
    let name = route
        .path
        .starts_with("/v1/collections/{name}")
        .then(|| params.first().cloned())
        .flatten();
    let timeout = state.request_timeout;
    let result = async {
        state.keys.check(route.access, &headers)?;
        // The deadline runs from the head: reading the body, then the handler (a write's
        // handler runs to completion once the engine has the write: a timeout could not say
        // whether it was applied).
        let deadline = timeout.map(|t| (started + t, t));
        let body = match route.request {
            Some(_) => before(deadline, read_body(body, &headers, state.max_body_bytes)).await?,
            None => Bytes::new(),
        };
        let mut call = Call {
            params,
            query,
            headers,
            body,
            cancel: Cancel::never(),
        };
        // Probes answer on the reactor: they touch no lock and no disk, and must answer while
        // the blocking pool is saturated by slow requests.
        if matches!(route.path, "/healthz" | "/readyz") {
            return (route.handler)(&state, &call);
        }
        // A live feed request waits for a change here, on the reactor: a thousand waiting
        // clients hold no thread. The wait (at most 60 s, ended by a shutdown) is not part of
        // the deadline.
        let deadline = if route.path == "/v1/collections/{name}/changes" {
            super::sync::wait_for_changes(&state, &call).await;
            timeout.map(|t| (Instant::now() + t, t))
        } else {
            deadline
        };
        let deadline = deadline.filter(|_| route.access != Access::Write);
        call.cancel = Cancel::until(deadline);
        let _abandoned = CancelOnDrop(call.cancel.clone());
        let st = state.clone();
        let handler = tokio::task::spawn_blocking(move || {
            let result = (route.handler)(&st, &call);
            if let Err(e) = &result {
                match &*e.code {
                    "cancelled" => st.metrics.request_stopped(route.path, "abandoned"),
                    "request_timeout" => st.metrics.request_stopped(route.path, "timeout"),
                    _ => {}
                }
            }
            result
        });
        // Past the deadline the answer goes out at once; a search notices at its next chunk
        // or segment, other work finishes in the background.
        before(deadline, async {
            handler.await.map_err(|e| {
                ApiError::internal(if e.is_panic() {
                    "the request handler panicked (see the server log)"
                } else {
                    "the request handler was cancelled"
                })
            })?
        })
        .await
    }
    .await;
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            // The log has the full message; the answer no paths of the server's.
            if e.status == StatusCode::INTERNAL_SERVER_ERROR
                || e.status == StatusCode::INSUFFICIENT_STORAGE
            {
                tracing::error!(route = route.path, method = %route.method, collection = name.as_deref().unwrap_or(""), code = %e.code, message = %e.message, "internal error");
            } else if e.status.is_server_error()
                && !matches!(&*e.code, "not_ready" | "embedder_unavailable")
            {
                tracing::warn!(route = route.path, collection = name.as_deref().unwrap_or(""), code = %e.code, message = %e.message, "unavailable");
            }
            let data_dir = state.engine().map(|e| e.config().data_dir.clone());
            e.for_client(data_dir.as_deref()).into_response()
        }
    };
    let status = response.status();
    // Label with the collection only while it exists, so that requests naming arbitrary
    // collections, and collections created and dropped, cannot grow the label set without
    // bound (a drop forgets the collection's series; its own request is counted unlabelled).
    // Through an alias, the label is the collection it points to.
    let label = name
        .as_deref()
        .and_then(|n| state.engine()?.collection(n).ok())
        .map(|c| c.name())
        .unwrap_or_default();
    let secs = started.elapsed().as_secs_f64();
    state
        .metrics
        .observe(route.path, method.as_str(), status.as_u16(), &label, secs);
    tracing::debug!(route = route.path, method = %method, status = status.as_u16(), ms = secs * 1e3, "request");
    response
}

/// All routes, then the page's static files, with rejections (unknown route, wrong method)
/// answered as JSON errors.
pub fn all(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let mut routes = ROUTES.iter();
    let first = routes.next().expect("the route table is not empty");
    let mut f = endpoint(state.clone(), first);
    for r in routes {
        f = f.or(endpoint(state.clone(), r)).unify().boxed();
    }
    if let Some(files) = super::web::files(&state.web) {
        f = f.or(files).unify().boxed();
    }
    f.recover(super::errors::recover).unify().boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ApiConfig;

    fn boom(_: &AppState, _: &Call) -> Result<Response, ApiError> {
        panic!("a handler bug");
    }

    #[test]
    fn a_panicking_handler_answers_500_and_the_server_keeps_serving() {
        let route: &'static Route = Box::leak(Box::new(Route {
            method: Method::GET,
            path: "/boom",
            access: Access::Open,
            summary: "",
            request: None,
            handler: boom,
        }));
        let state = Arc::new(AppState::new(ApiConfig::default()));
        let filter = endpoint(state.clone(), route)
            .or(endpoint(state.clone(), &ROUTES[0]))
            .unify()
            .recover(super::super::errors::recover)
            .unify();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = runtime.spawn(
            warp::serve(filter)
                .incoming(listener)
                .graceful(async {
                    let _ = stopped.await;
                })
                .run(),
        );
        for _ in 0..2 {
            match ureq::get(&format!("http://{addr}/boom")).call() {
                Err(ureq::Error::Status(500, r)) => {
                    let v: serde_json::Value = r.into_json().unwrap();
                    assert_eq!(v["error"]["code"], "internal");
                }
                other => panic!("expected 500, got {other:?}"),
            }
        }
        let ok = ureq::get(&format!("http://{addr}/healthz")).call().unwrap();
        assert_eq!(ok.status(), 200);
        let metrics = state.metrics.render(None).unwrap();
        assert!(
            metrics.contains(r#"route="/boom",status="500"} 2"#),
            "{metrics}"
        );
        let _ = stop.send(());
        runtime.block_on(server).unwrap();
    }
}
