//! The `proxima` binary.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = proxima_server::cli::Cli::parse();
    proxima_server::cli::run(cli)
}
