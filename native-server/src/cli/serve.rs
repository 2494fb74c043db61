//! `proxima serve`: runs the HTTP server.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::api;
use crate::index::faiss_backend;

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "PROXIMA_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Directory holding the collections, WAL and indexes.
    #[arg(long, env = "PROXIMA_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    faiss_backend::self_check().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (addr, server) = api::bind(args.listen).await?;
        // The first stdout line is machine-readable for scripts and tests.
        println!("proxima listening on http://{addr} data_dir={}", data_dir.display());
        tracing::info!(%addr, data_dir = %data_dir.display(), faiss = faiss_backend::FAISS_VERSION, "server started");
        server.await;
        tracing::info!("server stopped");
        Ok(())
    })
}
