//! The `proxima` command line: one module per subcommand.

mod plan;
mod serve;

use clap::{Parser, Subcommand};

pub use plan::PlanArgs;
pub use serve::ServeArgs;

/// The long version string: crate version and the FAISS it links.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (FAISS 1.12.0, static; ",
    env!("CARGO_PKG_NAME"),
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
    Serve(ServeArgs),
    /// Print the memory plan of an index and the advisor's recommendation.
    Plan(PlanArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Plan(args) => plan::run(args),
    }
}
