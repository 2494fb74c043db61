//! `proxima embed`: texts in, vectors out.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::embed::{default_model_dir, Embedder, DEFAULT_BATCH_SIZE, MODEL_NAME};

#[derive(Debug, Args, Clone)]
pub struct EmbedArgs {
    /// Texts to embed; without any, one text per line is read from stdin.
    pub texts: Vec<String>,
    /// Directory of the model files (scripts/setup.sh installs them)
    /// [default: ~/.cache/proxima/models/all-MiniLM-L6-v2].
    #[arg(long, env = "PROXIMA_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// Print JSON, {"model", "dim", "vectors": [[…], …]}, instead of one line of
    /// space-separated numbers per text.
    #[arg(long)]
    pub json: bool,
    /// Texts per forward pass.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch: usize,
}

fn read_texts(args: &EmbedArgs) -> anyhow::Result<Vec<String>> {
    if !args.texts.is_empty() {
        return Ok(args.texts.clone());
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        anyhow::bail!("give texts as arguments, or one per line on stdin");
    }
    stdin
        .lock()
        .lines()
        .collect::<Result<Vec<_>, _>>()
        .context("reading texts from stdin")
}

pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    let texts = read_texts(&args)?;
    let dir = args.model_dir.clone().unwrap_or_else(default_model_dir);
    let embedder = Embedder::load(&dir)?.with_batch_size(args.batch);
    let vectors = embedder.embed_flat(&texts)?;
    let dim = embedder.dim();

    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        let rows: Vec<&[f32]> = vectors.chunks_exact(dim).collect();
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({ "model": MODEL_NAME, "dim": dim, "vectors": rows }),
        )?;
        writeln!(out)?;
    } else {
        for row in vectors.chunks_exact(dim) {
            let line: Vec<String> = row.iter().map(f32::to_string).collect();
            writeln!(out, "{}", line.join(" "))?;
        }
    }
    out.flush()?;
    Ok(())
}
