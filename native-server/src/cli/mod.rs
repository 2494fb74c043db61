//! The `proxima` command line: one module per subcommand.

mod bench;
mod bench_cache;
mod bench_engine;
mod bench_http;
mod bench_segments;
mod bench_sync;
pub mod client;
mod dataset;
mod embed;
mod import;
mod plan;
mod search;
mod serve;

use clap::{Parser, Subcommand};

pub use bench::{BenchArgs, BenchCommand, BenchEmbedArgs};
pub use dataset::{BuildArgs, DatasetArgs, DatasetCommand, ImportArgs};
pub use embed::EmbedArgs;
pub use import::{ImportArgs as ImportToServerArgs, ServerArgs};
pub use plan::PlanArgs;
pub use search::SearchArgs;
pub use serve::{ServeArgs, Settings};

#[cfg(feature = "gpu")]
macro_rules! gpu_support {
    () => {
        "CUDA"
    };
}
#[cfg(not(feature = "gpu"))]
macro_rules! gpu_support {
    () => {
        "none"
    };
}

/// The long version string: crate version, the FAISS it links and whether it has GPU support.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (FAISS 1.12.0, static; ",
    env!("CARGO_PKG_NAME"),
    "; GPU: ",
    gpu_support!(),
    ")"
);

/// Proxima: vector similarity search, from the server to the browser.
#[derive(Debug, Parser)]
#[command(name = "proxima", version, long_version = LONG_VERSION, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Send a vector file (.fvecs, .bvecs, .fbin, .npy) or a dataset directory to a running
    /// server, in batches, with a progress bar.
    Import(import::ImportArgs),
    /// Query a running server with a vector or a text.
    Search(SearchArgs),
    /// Print the memory plan of an index and the advisor's recommendation.
    Plan(PlanArgs),
    /// Embed texts with the built-in model (all-MiniLM-L6-v2, 384 dimensions).
    Embed(EmbedArgs),
    /// Build or import datasets: vectors, held-out queries, exact ground truth.
    Dataset(DatasetArgs),
    /// Benchmarks, printed with the command, the machine and the data.
    Bench(BenchArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Import(args) => import::run(args),
        Command::Search(args) => search::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Dataset(args) => dataset::run(args),
        Command::Bench(args) => bench::run(args),
    }
}
