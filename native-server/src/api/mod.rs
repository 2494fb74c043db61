//! The HTTP layer (warp on tokio): routes, JSON shapes, auth, metrics and the mapping of
//! typed errors onto status codes. It holds no search logic: every handler calls into the
//! engine, the embedder or core, on tokio's blocking pool.
//!
//! * [`routes`] — the route table and the path of every request (auth → body limit →
//!   handler off the reactor → error mapping → metrics);
//! * [`handlers`] — one function per endpoint;
//! * [`types`] — request/response shapes and the binary bulk-insert body;
//! * [`errors`] — `ApiError` and the one mapping of engine/core errors onto statuses;
//! * [`auth`] — write and read-only API keys;
//! * [`metrics`] — Prometheus metrics;
//! * [`openapi`] — the OpenAPI 3 document;
//! * [`sync`] — the change feed (live long-polls wait on the reactor) and cache snapshots;
//! * [`server`] — the connections: header-read and idle timeouts, the connection cap, the
//!   bounded shutdown;
//! * `demo` — the demo's status and documents; [`web`] — the page and the web package.

pub mod aliases;
pub mod auth;
mod demo;
pub mod errors;
mod handlers;
pub mod json_rows;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod sync;
pub mod types;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use warp::filters::BoxedFilter;
use warp::reply::Response;

pub use auth::{Access, Keys};
pub use errors::ApiError;
pub use metrics::Metrics;
pub use server::ConnConfig;

use crate::demo::Demo;
use crate::embed::Embedder;
use crate::engine::Engine;

/// Default request body limit: 64 MiB (about 40,000 vectors of 384 floats in JSON).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;
/// Default cap on texts per `/v1/embed` request.
pub const DEFAULT_MAX_EMBED_TEXTS: usize = 1024;
/// Default deadline of a request (`--request-timeout`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub keys: Keys,
    pub max_body_bytes: usize,
    pub max_embed_texts: usize,
    /// Deadline of a request from its head (the live feed's wait excluded); `None`: none.
    pub request_timeout: Option<Duration>,
    /// Connection timeouts, cap and shutdown bound.
    pub conn: ConnConfig,
    /// The browser page and web package to serve at `/` and `/pkg/`.
    pub web: web::WebFiles,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            keys: Keys::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_embed_texts: DEFAULT_MAX_EMBED_TEXTS,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            conn: ConnConfig::default(),
            web: web::WebFiles::default(),
        }
    }
}

/// Where the embedding model stands.
pub enum EmbedderState {
    Loading,
    Unavailable(String),
    Ready(Arc<Embedder>),
}

/// What handlers share. The engine and the embedder arrive after the server listens
/// (recovery and model loading happen in the background; `/readyz` says when).
pub struct AppState {
    engine: OnceLock<Arc<Engine>>,
    embedder: OnceLock<Result<Arc<Embedder>, String>>,
    pub keys: Keys,
    pub metrics: Metrics,
    pub max_body_bytes: usize,
    pub max_embed_texts: usize,
    pub request_timeout: Option<Duration>,
    pub conn: ConnConfig,
    /// Set once the server stops accepting requests: live feed requests answer at once
    /// instead of holding the shutdown up for their timeout.
    pub stopping: tokio::sync::watch::Sender<bool>,
    pub web: web::WebFiles,
    demo: OnceLock<Arc<Demo>>,
    /// The demo may still start (its thread has not decided yet).
    pub demo_pending: std::sync::atomic::AtomicBool,
}

impl AppState {
    pub fn new(config: ApiConfig) -> Self {
        Self {
            engine: OnceLock::new(),
            embedder: OnceLock::new(),
            keys: config.keys,
            metrics: Metrics::new(),
            max_body_bytes: config.max_body_bytes,
            max_embed_texts: config.max_embed_texts,
            request_timeout: config.request_timeout,
            conn: config.conn,
            stopping: tokio::sync::watch::Sender::new(false),
            web: config.web,
            demo: OnceLock::new(),
            demo_pending: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Hands the opened engine over; the server is ready from then on.
    pub fn set_engine(&self, engine: Arc<Engine>) {
        let _ = self.engine.set(engine);
    }

    /// The engine, once open.
    pub fn engine(&self) -> Option<Arc<Engine>> {
        self.engine.get().cloned()
    }

    /// The engine, or 503 `not_ready`.
    pub fn engine_or_503(&self) -> Result<Arc<Engine>, ApiError> {
        self.engine().ok_or_else(ApiError::not_ready)
    }

    /// Hands the demo over (when the server runs one).
    pub fn set_demo(&self, demo: Arc<Demo>) {
        let _ = self.demo.set(demo);
    }

    pub fn demo(&self) -> Option<Arc<Demo>> {
        self.demo.get().cloned()
    }

    /// Records the outcome of loading the embedding model.
    pub fn set_embedder(&self, embedder: Result<Arc<Embedder>, String>) {
        let _ = self.embedder.set(embedder);
    }

    pub fn embedder(&self) -> EmbedderState {
        match self.embedder.get() {
            None => EmbedderState::Loading,
            Some(Err(reason)) => EmbedderState::Unavailable(reason.clone()),
            Some(Ok(e)) => EmbedderState::Ready(e.clone()),
        }
    }

    /// The model, or 503: `not_ready` while it loads, `embedder_unavailable` with the reason.
    pub fn embedder_or_503(&self) -> Result<Arc<Embedder>, ApiError> {
        match self.embedder() {
            EmbedderState::Ready(e) => Ok(e),
            EmbedderState::Loading => Err(ApiError::unavailable(
                "not_ready",
                "the embedding model is still loading; retry shortly",
            )),
            EmbedderState::Unavailable(reason) => {
                Err(ApiError::unavailable("embedder_unavailable", reason))
            }
        }
    }
}

/// All routes.
pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    routes::all(state)
}

/// Binds `addr`; returns the bound address and the future that serves until `shutdown`
/// resolves, then finishes the requests in flight within `conn.shutdown_timeout` (see
/// [`server`]).
pub async fn bind(
    addr: SocketAddr,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((local, server::run(listener, state, shutdown)))
}

/// `bytes` gzip-compressed (level 6).
pub fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 2),
        flate2::Compression::default(),
    );
    enc.write_all(bytes)?;
    enc.finish()
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;

    fn get(base: &str, path: &str) -> (u16, serde_json::Value) {
        let res = ureq::get(&format!("{base}{path}")).call();
        let r = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{path}: {e}"),
        };
        (r.status(), r.into_json().unwrap_or(serde_json::Value::Null))
    }

    #[test]
    fn not_ready_until_the_engine_is_open() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(AppState::new(ApiConfig::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr, server) = runtime
            .block_on(bind(([127, 0, 0, 1], 0).into(), state.clone(), async {
                let _ = stopped.await;
            }))
            .unwrap();
        let server = runtime.spawn(server);
        let base = format!("http://{addr}");
        assert_eq!(get(&base, "/healthz").0, 200);
        let (status, body) = get(&base, "/readyz");
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("not_ready"))
        );
        assert_eq!(get(&base, "/v1/collections").0, 503);
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::open(EngineConfig::new(dir.path())).unwrap());
        state.set_engine(engine.clone());
        assert_eq!(get(&base, "/readyz").0, 200);
        let (status, body) = get(&base, "/v1/collections");
        assert_eq!(
            (status, body["collections"].as_array().map(Vec::len)),
            (200, Some(0))
        );
        let _ = stop.send(());
        runtime.block_on(server).unwrap();
        engine.close();
    }
}
