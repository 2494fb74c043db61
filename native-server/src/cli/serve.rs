//! `proxima serve`: runs the HTTP server.
//!
//! Settings come from flags, then environment variables, then the TOML file given with
//! `--config`, then defaults (the first that sets a value wins).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;

use crate::api::web::WebFiles;
use crate::api::{self, ApiConfig, AppState, Keys};
use crate::demo::{DemoConfig, DemoMode};
use crate::embed::{default_model_dir, Embedder};
use crate::engine::{Engine, EngineConfig, FsyncPolicy};
use crate::index::faiss_backend;
use crate::index::gpu::GpuSettings;

#[derive(Debug, Args, Clone, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (snake_case keys, e.g. `listen = "0.0.0.0:7700"`,
    /// `write_key = "…"`, `seal_rows = 50000`); flags and environment variables override it.
    #[arg(long, env = "PROXIMA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:7700].
    #[arg(long, env = "PROXIMA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory holding the collections, WAL and indexes [default: ./data].
    #[arg(long, env = "PROXIMA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// API key allowed to read and write (`Authorization: Bearer KEY` or `x-api-key: KEY`).
    /// Without any key configured the API is open.
    #[arg(long, env = "PROXIMA_WRITE_KEY", hide_env_values = true)]
    pub write_key: Option<String>,
    /// API key allowed to read only (a write with it answers 403).
    #[arg(long, env = "PROXIMA_READ_KEY", hide_env_values = true)]
    pub read_key: Option<String>,
    /// Directory of the embedding model for /v1/embed
    /// [default: ~/.cache/proxima/models/all-MiniLM-L6-v2].
    #[arg(long, env = "PROXIMA_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// Do not load the embedding model (/v1/embed answers 503).
    #[arg(long)]
    pub no_embed: bool,
    /// Largest request body in bytes; larger ones answer 413 [default: 67108864].
    #[arg(long, env = "PROXIMA_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Time a request head may take to arrive, from its first byte (from the accept for a
    /// connection's first request); a client stalled in a head is closed. Durations: `10s`,
    /// `500ms`, `2m`, or a number of seconds [default: 10s].
    #[arg(long, env = "PROXIMA_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<Secs>,
    /// Time a keep-alive connection may wait for its next request before it is closed (a
    /// request in flight, such as a live change-feed long-poll, is never idle) [default: 30s].
    #[arg(long, env = "PROXIMA_IDLE_TIMEOUT")]
    pub idle_timeout: Option<Secs>,
    /// Most open connections; past it a new connection is answered 503 `too_many_connections`
    /// and closed [default: 10000, lowered to fit the open-file limit].
    #[arg(long, env = "PROXIMA_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Deadline of a request from its head (a live feed's wait excluded): past it the answer is
    /// 503 `request_timeout` and a search stops; writes are bounded only while their body is
    /// read. 0: no deadline [default: 60s].
    #[arg(long, env = "PROXIMA_REQUEST_TIMEOUT")]
    pub request_timeout: Option<Secs>,
    /// On SIGTERM/SIGINT, time the requests in flight get to finish; then they are dropped and
    /// the engine is closed anyway [default: 30s].
    #[arg(long, env = "PROXIMA_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<Secs>,
    /// `always` (group commit: acknowledged writes are on disk) or `never` (the OS flushes
    /// later) [default: always].
    #[arg(long, env = "PROXIMA_FSYNC")]
    pub fsync: Option<String>,
    /// Rows after which a shard's growing segment is sealed and indexed [default: 100000].
    #[arg(long, env = "PROXIMA_SEAL_ROWS")]
    pub seal_rows: Option<usize>,
    /// Sealed segments of one size tier merged into one in the background (0: no merging;
    /// segments past the deleted-rows ratio are still rewritten) [default: 4].
    #[arg(long, env = "PROXIMA_MERGE_FACTOR")]
    pub merge_factor: Option<usize>,
    /// Staleness allowed at `bounded` consistency, in milliseconds [default: 100].
    #[arg(long, env = "PROXIMA_BOUNDED_STALENESS_MS")]
    pub bounded_staleness_ms: Option<u64>,
    /// Longest a request waits for its consistency level, in milliseconds [default: 10000].
    #[arg(long, env = "PROXIMA_CONSISTENCY_TIMEOUT_MS")]
    pub consistency_timeout_ms: Option<u64>,
    /// Largest k of a search [default: 10000].
    #[arg(long, env = "PROXIMA_MAX_K")]
    pub max_k: Option<usize>,
    /// Most queries in one search request [default: 10000].
    #[arg(long, env = "PROXIMA_MAX_QUERIES")]
    pub max_queries: Option<usize>,
    /// Most hits (k × queries) one search request may ask for [default: 1000000].
    #[arg(long, env = "PROXIMA_MAX_HITS")]
    pub max_hits: Option<usize>,
    /// Threads building indexes in the background [default: 1].
    #[arg(long, env = "PROXIMA_BUILD_THREADS")]
    pub build_threads: Option<usize>,
    /// Threads running searches, shared by all requests [default: one per CPU].
    #[arg(long, env = "PROXIMA_SEARCH_THREADS")]
    pub search_threads: Option<usize>,
    /// CUDA device to copy sealed FLAT/IVF segments to (binaries built with the `gpu`
    /// feature); without it everything runs on the CPU.
    #[arg(long, env = "PROXIMA_GPU_DEVICE")]
    pub gpu_device: Option<i32>,
    /// Sealed segments with fewer rows stay on the CPU [default: 10000].
    #[arg(long, env = "PROXIMA_GPU_MIN_ROWS")]
    pub gpu_min_rows: Option<usize>,
    /// Device memory, in MiB, an upload must leave free [default: 512].
    #[arg(long, env = "PROXIMA_GPU_RESERVE_MB")]
    pub gpu_reserve_mb: Option<u64>,
    /// Most changes each collection's change log (the sync feed) retains [default: 1000000].
    #[arg(long, env = "PROXIMA_CHANGES_RETAIN_RECORDS")]
    pub changes_retain_records: Option<u64>,
    /// Most bytes each collection's change log retains [default: 1073741824].
    #[arg(long, env = "PROXIMA_CHANGES_RETAIN_BYTES")]
    pub changes_retain_bytes: Option<u64>,
    /// Changes older than this many seconds leave the change log [default: 604800, 7 days].
    #[arg(long, env = "PROXIMA_CHANGES_RETAIN_SECS")]
    pub changes_retain_secs: Option<u64>,
    /// Largest cache snapshot served, in bytes; larger ones answer 413 [default: 268435456].
    #[arg(long, env = "PROXIMA_SNAPSHOT_MAX_BYTES")]
    pub snapshot_max_bytes: Option<u64>,
    /// Build and serve the demo collection even on a data directory with other collections
    /// (by default only an empty data directory, or one with the demo, gets it).
    #[arg(long, conflicts_with = "no_demo")]
    pub demo: bool,
    /// No demo collection.
    #[arg(long, env = "PROXIMA_NO_DEMO")]
    pub no_demo: bool,
    /// Build the demo from the first N texts of the seeded split [default: all, about 62,000].
    #[arg(long, env = "PROXIMA_DEMO_LIMIT")]
    pub demo_limit: Option<usize>,
    /// Directory of the page served at `/` [default: ./web-demo when it exists].
    #[arg(long, env = "PROXIMA_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// Directory of the web package served at `/pkg/` [default: ./target/wasm-pkg/web when it
    /// exists; `scripts/build-wasm.sh` builds it].
    #[arg(long, env = "PROXIMA_WEB_PKG")]
    pub web_pkg: Option<PathBuf>,
}

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub write_key: Option<String>,
    pub read_key: Option<String>,
    pub model_dir: Option<PathBuf>,
    pub embed: Option<bool>,
    pub max_body_bytes: Option<usize>,
    pub header_read_timeout: Option<Secs>,
    pub idle_timeout: Option<Secs>,
    pub max_connections: Option<usize>,
    pub request_timeout: Option<Secs>,
    pub shutdown_timeout: Option<Secs>,
    pub fsync: Option<String>,
    pub seal_rows: Option<usize>,
    pub merge_factor: Option<usize>,
    pub bounded_staleness_ms: Option<u64>,
    pub consistency_timeout_ms: Option<u64>,
    pub max_k: Option<usize>,
    pub max_queries: Option<usize>,
    pub max_hits: Option<usize>,
    pub build_threads: Option<usize>,
    pub search_threads: Option<usize>,
    pub gpu_device: Option<i32>,
    pub gpu_min_rows: Option<usize>,
    pub gpu_reserve_mb: Option<u64>,
    pub changes_retain_records: Option<u64>,
    pub changes_retain_bytes: Option<u64>,
    pub changes_retain_secs: Option<u64>,
    pub snapshot_max_bytes: Option<u64>,
    pub demo: Option<bool>,
    pub demo_limit: Option<usize>,
    pub web_dir: Option<PathBuf>,
    pub web_pkg: Option<PathBuf>,
}

impl FileConfig {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }
}

/// A duration in a flag, an environment variable or the TOML file: `30s`, `500ms`, `2m`, or a
/// number of seconds (`1.5`; in TOML also a bare number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secs(pub Duration);

impl std::str::FromStr for Secs {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
            (n, 1e-3)
        } else if let Some(n) = t.strip_suffix('s') {
            (n, 1.0)
        } else if let Some(n) = t.strip_suffix('m') {
            (n, 60.0)
        } else {
            (t, 1.0)
        };
        let secs = number
            .trim()
            .parse::<f64>()
            .ok()
            .map(|n| n * scale)
            .filter(|n| n.is_finite() && *n >= 0.0 && *n < 1e9)
            .ok_or_else(|| format!("{s:?} is not a duration (e.g. 30s, 500ms, 2m, 1.5)"))?;
        Ok(Secs(Duration::from_secs_f64(secs)))
    }
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => n.to_string().parse(),
            Raw::Text(t) => t.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// Everything `serve` runs with, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub model_dir: Option<PathBuf>,
    pub api: ApiConfig,
    pub engine: EngineConfig,
    pub demo: DemoConfig,
}

fn parse_fsync(s: &str) -> anyhow::Result<FsyncPolicy> {
    match s.to_ascii_lowercase().as_str() {
        "always" => Ok(FsyncPolicy::Always),
        "never" => Ok(FsyncPolicy::Never),
        other => anyhow::bail!("fsync must be `always` or `never`, not {other:?}"),
    }
}

impl Settings {
    /// Flags/env over the file over defaults.
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        let listen = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7700)));
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let mut engine = EngineConfig::new(data_dir);
        if let Some(f) = args.fsync.or(file.fsync) {
            engine.fsync = parse_fsync(&f)?;
        }
        if let Some(n) = args.seal_rows.or(file.seal_rows) {
            anyhow::ensure!(n > 0, "seal_rows must be at least 1");
            engine.seal_rows = n;
        }
        if let Some(n) = args.merge_factor.or(file.merge_factor) {
            anyhow::ensure!(n != 1, "merge_factor is 0 (no merging) or at least 2");
            engine.merge_factor = n;
        }
        if let Some(ms) = args.bounded_staleness_ms.or(file.bounded_staleness_ms) {
            engine.bounded_staleness = Duration::from_millis(ms);
        }
        if let Some(ms) = args.consistency_timeout_ms.or(file.consistency_timeout_ms) {
            engine.consistency_timeout = Duration::from_millis(ms);
        }
        if let Some(k) = args.max_k.or(file.max_k) {
            anyhow::ensure!(k > 0, "max_k must be at least 1");
            engine.limits.max_k = k;
        }
        if let Some(q) = args.max_queries.or(file.max_queries) {
            anyhow::ensure!(q > 0, "max_queries must be at least 1");
            engine.limits.max_queries = q;
        }
        if let Some(h) = args.max_hits.or(file.max_hits) {
            anyhow::ensure!(h > 0, "max_hits must be at least 1");
            engine.limits.max_hits = h;
        }
        if let Some(t) = args.build_threads.or(file.build_threads) {
            anyhow::ensure!(t > 0, "build_threads must be at least 1");
            engine.build_threads = t;
        }
        if let Some(t) = args.search_threads.or(file.search_threads) {
            anyhow::ensure!(t > 0, "search_threads must be at least 1");
            engine.search_threads = t;
        }
        if let Some(n) = args.changes_retain_records.or(file.changes_retain_records) {
            anyhow::ensure!(n > 0, "changes_retain_records must be at least 1");
            engine.changes.max_records = n;
        }
        if let Some(n) = args.changes_retain_bytes.or(file.changes_retain_bytes) {
            anyhow::ensure!(n > 0, "changes_retain_bytes must be at least 1");
            engine.changes.max_bytes = n;
        }
        if let Some(secs) = args.changes_retain_secs.or(file.changes_retain_secs) {
            engine.changes.max_age = Duration::from_secs(secs);
        }
        if let Some(n) = args.snapshot_max_bytes.or(file.snapshot_max_bytes) {
            engine.snapshot_max_bytes = n;
        }
        if let Some(device) = args.gpu_device.or(file.gpu_device) {
            anyhow::ensure!(
                device >= 0,
                "gpu_device must be a CUDA device ordinal (0, 1, …)"
            );
            let mut gpu = GpuSettings::new(device);
            if let Some(rows) = args.gpu_min_rows.or(file.gpu_min_rows) {
                gpu.min_rows = rows;
            }
            if let Some(mb) = args.gpu_reserve_mb.or(file.gpu_reserve_mb) {
                gpu.reserve_bytes = mb << 20;
            }
            engine.gpu = Some(gpu);
        } else {
            anyhow::ensure!(
                args.gpu_min_rows.or(file.gpu_min_rows).is_none()
                    && args.gpu_reserve_mb.or(file.gpu_reserve_mb).is_none(),
                "gpu_min_rows and gpu_reserve_mb need gpu_device"
            );
        }
        let embed = !args.no_embed && file.embed.unwrap_or(true);
        let model_dir = embed.then(|| {
            args.model_dir
                .or(file.model_dir)
                .unwrap_or_else(default_model_dir)
        });
        let max_body_bytes = args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(api::DEFAULT_MAX_BODY_BYTES);
        anyhow::ensure!(
            max_body_bytes >= 1024,
            "max_body_bytes must be at least 1024"
        );
        let conn = {
            let d = api::ConnConfig::default();
            let header_read_timeout = args
                .header_read_timeout
                .or(file.header_read_timeout)
                .map_or(d.header_read_timeout, |s| s.0);
            let idle_timeout = args
                .idle_timeout
                .or(file.idle_timeout)
                .map_or(d.idle_timeout, |s| s.0);
            anyhow::ensure!(
                !header_read_timeout.is_zero() && !idle_timeout.is_zero(),
                "header_read_timeout and idle_timeout must be above 0"
            );
            let max_connections = args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(d.max_connections);
            anyhow::ensure!(max_connections > 0, "max_connections must be at least 1");
            api::ConnConfig {
                header_read_timeout,
                idle_timeout,
                max_connections,
                shutdown_timeout: args
                    .shutdown_timeout
                    .or(file.shutdown_timeout)
                    .map_or(d.shutdown_timeout, |s| s.0),
            }
        };
        let request_timeout = args
            .request_timeout
            .or(file.request_timeout)
            .map_or(Some(api::DEFAULT_REQUEST_TIMEOUT), |s| {
                (!s.0.is_zero()).then_some(s.0)
            });
        let demo_mode = if args.no_demo || file.demo == Some(false) {
            DemoMode::Off
        } else if args.demo || file.demo == Some(true) {
            DemoMode::On
        } else if args.no_embed || file.embed == Some(false) {
            // The page embeds its queries with the server's model.
            DemoMode::Off
        } else {
            DemoMode::Auto
        };
        let demo_limit = args.demo_limit.or(file.demo_limit);
        anyhow::ensure!(demo_limit != Some(0), "demo_limit must be at least 1");
        let mut web = WebFiles::from_current_dir();
        if let Some(d) = args.web_dir.or(file.web_dir) {
            anyhow::ensure!(
                d.join("index.html").is_file(),
                "web_dir {} has no index.html",
                d.display()
            );
            web.dir = Some(d);
        }
        if let Some(d) = args.web_pkg.or(file.web_pkg) {
            anyhow::ensure!(d.is_dir(), "web_pkg {} is not a directory", d.display());
            web.pkg = Some(d);
        }
        Ok(Self {
            listen,
            model_dir,
            demo: DemoConfig {
                mode: demo_mode,
                limit: demo_limit,
            },
            api: ApiConfig {
                keys: Keys::new(
                    args.write_key.or(file.write_key),
                    args.read_key.or(file.read_key),
                ),
                max_body_bytes,
                request_timeout,
                conn,
                web,
                ..ApiConfig::default()
            },
            engine,
        })
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let mut settings = Settings::resolve(args)?;
    settings.api.conn.max_connections =
        api::server::fit_open_file_limit(settings.api.conn.max_connections);
    faiss_backend::self_check().map_err(anyhow::Error::msg)?;
    let data_dir = &settings.engine.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    settings.engine.data_dir = data_dir.canonicalize()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(serve(settings));
    // Handlers the shutdown timeout dropped may still run on blocking threads (work that
    // cannot stop part-way); the engine is closed, so the process does not wait for them.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// Listens, opens the engine and loads the model in the background, serves until SIGINT or
/// SIGTERM, finishes the requests in flight (for at most the shutdown timeout), then closes
/// the engine.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let state = Arc::new(AppState::new(settings.api.clone()));
    let (fatal_tx, mut fatal_rx) = tokio::sync::watch::channel::<Option<String>>(None);
    let mut fatal_watch = fatal_rx.clone();
    let shutdown = async move {
        tokio::select! {
            _ = api::shutdown_signal() => tracing::info!("shutdown signal: finishing requests in flight"),
            _ = async {
                // The sender is dropped once the engine is open: then only a signal stops us.
                if fatal_watch.wait_for(Option::is_some).await.is_err() {
                    std::future::pending::<()>().await;
                }
            } => {},
        }
    };
    let (addr, server) = api::bind(settings.listen, state.clone(), shutdown)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let data_dir = settings.engine.data_dir.clone();
    let keys = state.keys.describe();
    // The first stdout line is machine-readable for scripts and tests.
    println!(
        "proxima listening on http://{addr} data_dir={} auth={keys}",
        data_dir.display()
    );
    if state.keys.is_open() {
        tracing::warn!("no API key configured: every route is open to anyone who can reach {addr} (set --write-key/--read-key or PROXIMA_WRITE_KEY/PROXIMA_READ_KEY)");
    }
    tracing::info!(%addr, data_dir = %data_dir.display(), auth = keys, faiss = faiss_backend::FAISS_VERSION, "server started; opening the data directory");

    let opening = state.clone();
    let engine_config = settings.engine.clone();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || Engine::open(engine_config)).await {
            Ok(Ok(engine)) => {
                let engine = Arc::new(engine);
                tracing::info!(
                    collections = engine.list().len(),
                    ms = started.elapsed().as_millis() as u64,
                    "data directory open: ready"
                );
                opening.set_engine(engine);
            }
            Ok(Err(e)) => {
                let _ = fatal_tx.send(Some(format!("opening the data directory: {e}")));
            }
            Err(e) => {
                let _ = fatal_tx.send(Some(format!("opening the data directory panicked: {e}")));
            }
        }
    });
    if state.web.dir.is_some() {
        tracing::info!(page = %format!("http://{addr}/"), pkg = state.web.pkg.is_some(), "serving the page");
    }
    crate::demo::build::start(
        state.clone(),
        data_dir.join("demo"),
        settings.demo.mode,
        settings.demo.limit,
    );
    let loading = state.clone();
    match settings.model_dir.clone() {
        Some(dir) => {
            tokio::task::spawn_blocking(move || {
                let result = Embedder::load(&dir)
                    .map(Arc::new)
                    .map_err(|e| e.to_string());
                match &result {
                    Ok(_) => tracing::info!(dir = %dir.display(), "embedding model loaded"),
                    Err(e) => tracing::warn!("/v1/embed is unavailable: {e}"),
                }
                loading.set_embedder(result);
            });
        }
        None => state.set_embedder(Err(
            "the embedding model is disabled on this server (--no-embed / embed = false)".into(),
        )),
    }

    server.await;
    if let Some(engine) = state.engine() {
        tokio::task::spawn_blocking(move || engine.close())
            .await
            .context("closing the engine")?;
        tracing::info!("engine closed: every acknowledged write is applied");
    }
    let fatal = fatal_rx.borrow_and_update().clone();
    match fatal {
        Some(reason) => {
            tracing::error!("{reason}");
            anyhow::bail!(reason)
        }
        None => {
            tracing::info!("server stopped");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxima.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nseal_rows = 500\nwrite_key = \"w\"\nfsync = \"never\"\nembed = false\n",
        )
        .unwrap();
        let s = Settings::resolve(ServeArgs {
            config: Some(path.clone()),
            seal_rows: Some(42),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.engine.seal_rows, 42);
        assert_eq!(s.engine.fsync, FsyncPolicy::Never);
        assert_eq!(s.api.keys.describe(), "write-key");
        assert!(s.model_dir.is_none());
        assert_eq!(s.engine.data_dir, PathBuf::from("./data"));

        std::fs::write(&path, "no_such_setting = 1\n").unwrap();
        let e = Settings::resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("no_such_setting"), "{e:#}");
    }

    #[test]
    fn connection_settings_take_durations() {
        for (text, ms) in [
            ("30", 30_000),
            ("1.5", 1_500),
            ("250ms", 250),
            ("10s", 10_000),
            ("2m", 120_000),
        ] {
            assert_eq!(
                text.parse::<Secs>().unwrap().0,
                Duration::from_millis(ms),
                "{text}"
            );
        }
        for bad in ["", "s", "-1", "ten", "1h", "NaN"] {
            assert!(bad.parse::<Secs>().is_err(), "{bad}");
        }
        let s = Settings::resolve(ServeArgs::default()).unwrap();
        assert_eq!(s.api.conn, api::ConnConfig::default());
        assert_eq!(s.api.request_timeout, Some(api::DEFAULT_REQUEST_TIMEOUT));
        assert!(s.api.conn.idle_timeout <= Duration::from_secs(30));
        assert!(s.api.conn.header_read_timeout <= Duration::from_secs(30));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxima.toml");
        std::fs::write(
            &path,
            "idle_timeout = 5\nheader_read_timeout = \"750ms\"\nmax_connections = 7\nrequest_timeout = 0\nshutdown_timeout = \"2s\"\n",
        )
        .unwrap();
        let s = Settings::resolve(ServeArgs {
            config: Some(path),
            idle_timeout: Some(Secs(Duration::from_secs(3))),
            ..ServeArgs::default()
        })
        .unwrap();
        let c = &s.api.conn;
        assert_eq!(c.idle_timeout, Duration::from_secs(3));
        assert_eq!(c.header_read_timeout, Duration::from_millis(750));
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(2));
        assert_eq!(s.api.request_timeout, None);
        for bad in [
            ServeArgs {
                idle_timeout: Some(Secs(Duration::ZERO)),
                ..ServeArgs::default()
            },
            ServeArgs {
                max_connections: Some(0),
                ..ServeArgs::default()
            },
        ] {
            assert!(Settings::resolve(bad).is_err());
        }
    }

    #[test]
    fn gpu_settings_need_a_device() {
        assert!(Settings::resolve(ServeArgs::default())
            .unwrap()
            .engine
            .gpu
            .is_none());
        let s = Settings::resolve(ServeArgs {
            gpu_device: Some(1),
            gpu_reserve_mb: Some(100),
            ..ServeArgs::default()
        })
        .unwrap();
        let gpu = s.engine.gpu.unwrap();
        assert_eq!((gpu.device, gpu.reserve_bytes), (1, 100 << 20));
        assert_eq!(gpu.min_rows, GpuSettings::new(1).min_rows);
        for bad in [
            ServeArgs {
                gpu_min_rows: Some(5),
                ..ServeArgs::default()
            },
            ServeArgs {
                gpu_device: Some(-1),
                ..ServeArgs::default()
            },
        ] {
            assert!(Settings::resolve(bad).is_err());
        }
    }
}
