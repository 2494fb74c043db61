//! The HTTP layer: routes, JSON shapes and the mapping of typed errors onto status codes.
//! It holds no search logic: every handler calls into the library.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use proxima_core::advisor::{advise, AdviceRequest};
use proxima_core::sizing::plan;
use proxima_core::{Error, IndexSpec};
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::{json, with_status, Response};
use warp::{Filter, Rejection, Reply};

/// Body of `POST /v1/plan`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    pub vectors: u64,
    pub dim: usize,
    /// Index to size; when absent only the advice is returned.
    pub index: Option<IndexSpec>,
    pub ram_bytes: Option<u64>,
    #[serde(default = "default_recall")]
    pub recall: f64,
}

fn default_recall() -> f64 {
    0.95
}

#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
}

/// Builds the `{"error": {"code", "message"}}` response.
pub fn error_response(status: StatusCode, code: &str, message: String) -> Response {
    with_status(
        json(&ErrorBody {
            error: ErrorDetail { code, message },
        }),
        status,
    )
    .into_response()
}

/// Maps a core error onto its HTTP response.
pub fn core_error(e: &Error) -> Response {
    let status = if e.is_client_error() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    error_response(status, e.code(), e.to_string())
}

fn handle_plan(req: PlanRequest) -> Response {
    let plan = match req
        .index
        .map(|spec| plan(req.vectors, req.dim, spec))
        .transpose()
    {
        Ok(p) => p,
        Err(e) => return core_error(&e),
    };
    match advise(AdviceRequest {
        vectors: req.vectors,
        dim: req.dim,
        ram_budget: req.ram_bytes,
        recall_target: req.recall,
    }) {
        Ok(advice) => json(&serde_json::json!({"plan": plan, "advice": advice})).into_response(),
        Err(e) => core_error(&e),
    }
}

/// Turns warp's rejections (unknown route, bad JSON, wrong method) into JSON errors.
async fn recover(r: Rejection) -> Result<Response, Infallible> {
    let (status, code, message) = if r.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route".to_string(),
        )
    } else if let Some(e) = r.find::<warp::filters::body::BodyDeserializeError>() {
        (StatusCode::BAD_REQUEST, "malformed_json", e.to_string())
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed".to_string(),
        )
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body too large".to_string(),
        )
    } else if r.find::<warp::reject::UnsupportedMediaType>().is_some() {
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected application/json".to_string(),
        )
    } else {
        (StatusCode::BAD_REQUEST, "bad_request", format!("{r:?}"))
    };
    Ok(error_response(status, code, message))
}

/// All routes.
pub fn routes() -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| json(&serde_json::json!({"status": "ok"})).into_response());
    let version = warp::path!("version").and(warp::get()).map(|| {
        json(&serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "faiss": crate::index::faiss_backend::FAISS_VERSION,
        }))
        .into_response()
    });
    let plan = warp::path!("v1" / "plan")
        .and(warp::post())
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::json())
        .map(handle_plan);
    health
        .or(version)
        .unify()
        .or(plan)
        .unify()
        .recover(recover)
        .unify()
}

/// Binds the server; returns the bound address and the future that serves until SIGINT/SIGTERM.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<(SocketAddr, impl Future<Output = ()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let server = warp::serve(routes())
        .incoming(listener)
        .graceful(shutdown_signal())
        .run();
    Ok((local, server))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
