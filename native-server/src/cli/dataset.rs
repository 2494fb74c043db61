//! `proxima dataset build|import`: real datasets on disk (see `crate::dataset` for the layout).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use proxima_core::Metric;

use crate::dataset::{
    self, BuildOutcome, ImportRequest, TextBuild, TextSource, DEBIAN_PACKAGES, DEFAULT_HELD_OUT,
    DEFAULT_SEED, GROUND_TRUTH_K,
};
use crate::embed::{default_model_dir, DEFAULT_BATCH_SIZE};

#[derive(Debug, Args)]
pub struct DatasetArgs {
    #[command(subcommand)]
    pub command: DatasetCommand,
}

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Embed a corpus of texts into a dataset: base vectors, held-out query vectors, exact
    /// top-100 cosine ground truth. NAME `debian-packages` is built in (apt-cache dumpavail);
    /// any other name needs --jsonl.
    Build(BuildArgs),
    /// Import vector files (.fvecs, .bvecs, .fbin, .npy) as a dataset, with ground truth when
    /// queries are given.
    Import(ImportArgs),
}

#[derive(Debug, Args, Clone)]
pub struct BuildArgs {
    /// Dataset name (and the built-in source `debian-packages`).
    pub name: String,
    /// Texts to embed: a JSONL file of {"id": <u64>, "text": "…"}.
    #[arg(long)]
    pub jsonl: Option<PathBuf>,
    /// Base size: a seeded sample of this many texts (default: the whole corpus).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Corpus texts held out of the base as queries.
    #[arg(long, default_value_t = DEFAULT_HELD_OUT)]
    pub held_out: usize,
    /// Seed of the base/query split.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Neighbours per query in the ground truth.
    #[arg(long, default_value_t = GROUND_TRUTH_K)]
    pub k: usize,
    /// Texts per forward pass of the model.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch: usize,
    /// Directory of the model files [default: ~/.cache/proxima/models/all-MiniLM-L6-v2].
    #[arg(long, env = "PROXIMA_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// Dataset directory [default: $PROXIMA_HOME/datasets/NAME, PROXIMA_HOME=~/.cache/proxima].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Rebuild even when the directory holds a dataset built with the same parameters.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ImportArgs {
    /// Base vectors: .fvecs, .bvecs, .fbin or .npy.
    pub file: PathBuf,
    /// Dataset name.
    #[arg(long)]
    pub name: String,
    /// Query vectors (same formats); ground truth is computed when given.
    #[arg(long)]
    pub queries: Option<PathBuf>,
    /// Metric of the ground truth: l2, ip or cosine (cosine stores normalised vectors).
    #[arg(long, default_value = "l2")]
    pub metric: Metric,
    /// Neighbours per query in the ground truth.
    #[arg(long, default_value_t = GROUND_TRUTH_K)]
    pub k: usize,
    /// Dataset directory [default: $PROXIMA_HOME/datasets/NAME].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Rebuild even when the directory holds a dataset imported with the same parameters.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: DatasetArgs) -> anyhow::Result<()> {
    let outcome = match args.command {
        DatasetCommand::Build(a) => build(a)?,
        DatasetCommand::Import(a) => import(a)?,
    };
    report(&outcome);
    Ok(())
}

fn build(a: BuildArgs) -> anyhow::Result<BuildOutcome> {
    let source = match (&a.jsonl, a.name.as_str()) {
        (Some(path), _) => TextSource::Jsonl(path.clone()),
        (None, DEBIAN_PACKAGES) => TextSource::DebianPackages,
        (None, other) => anyhow::bail!(
            "no built-in source named {other:?}: the built-in source is {DEBIAN_PACKAGES}; \
             give your own texts with --jsonl FILE"
        ),
    };
    let mut req = TextBuild::new(&a.name, source);
    req.limit = a.limit;
    req.held_out = a.held_out;
    req.seed = a.seed;
    req.ground_truth_k = a.k;
    req.batch_size = a.batch;
    req.model_dir = a.model_dir.unwrap_or_else(default_model_dir);
    req.out = a.out.unwrap_or_else(|| dataset::default_dir(&a.name));
    req.force = a.force;
    req.progress = true;
    Ok(dataset::build_text(&req)?)
}

fn import(a: ImportArgs) -> anyhow::Result<BuildOutcome> {
    let req = ImportRequest {
        out: a.out.unwrap_or_else(|| dataset::default_dir(&a.name)),
        name: a.name,
        base: a.file,
        queries: a.queries,
        metric: a.metric,
        ground_truth_k: a.k,
        force: a.force,
        progress: true,
    };
    Ok(dataset::import(&req)?)
}

fn report(outcome: &BuildOutcome) {
    let m = &outcome.manifest;
    let what = format!(
        "{}: {} base vectors × {} ({}), {} queries, top-{} ground truth",
        m.name, m.count, m.dim, m.metric, m.num_queries, m.ground_truth_k
    );
    if outcome.cached {
        println!(
            "up to date: {what} in {} (built with the same parameters; --force rebuilds)",
            outcome.dir.display()
        );
    } else {
        println!(
            "built {what} in {} ({:.1} s)",
            outcome.dir.display(),
            m.build_seconds
        );
    }
}
