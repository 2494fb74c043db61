//! `proxima import`: sends a vector file or a dataset directory to a running server.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use proxima_core::formats::Format;
use proxima_core::{IndexRequest, Metric};
use serde_json::json;

use super::client::Client;
use crate::dataset::Dataset;

/// Where the server is and how to authenticate: shared by `import` and `search`.
#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    /// Base URL of the server.
    #[arg(long, env = "PROXIMA_URL", default_value = "http://127.0.0.1:7700")]
    pub server: String,
    /// API key (the write key for `import`).
    #[arg(long, env = "PROXIMA_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

impl ServerArgs {
    pub fn client(&self) -> Client {
        Client::new(
            &self.server,
            self.key.clone(),
            Duration::from_secs(self.timeout.max(1)),
        )
    }
}

#[derive(Debug, Args, Clone)]
pub struct ImportArgs {
    /// A .fvecs, .bvecs, .fbin or .npy file, or a dataset directory (`proxima dataset build`).
    pub path: PathBuf,
    /// Collection to fill; created when missing.
    #[arg(long)]
    pub collection: String,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Rows per request (256 to 1024 is the sweet spot; halved on timeouts and 413).
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// Import only the first N rows.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Id of the first row of a file (rows get consecutive ids); a dataset brings its ids.
    #[arg(long, default_value_t = 0)]
    pub start_id: u64,
    /// Metric of a created collection [default: the dataset's, else l2].
    #[arg(long)]
    pub metric: Option<Metric>,
    /// Index of a created collection, as JSON: a type with all, some or none of its
    /// parameters (the rest take the server's defaults), e.g. '{"type":"HNSW"}' (m 16,
    /// ef_construction 100), '{"type":"IVF_FLAT"}' (nlist per segment from its rows),
    /// '{"type":"HNSW","params":{"m":32,"ef_construction":200}}' or
    /// '{"type":"AUTO","params":{"recall":0.95}}' (the advisor picks, per segment).
    #[arg(long, default_value = r#"{"type":"FLAT"}"#)]
    pub index: String,
    /// Shards of a created collection.
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// Flush when done (seal the growing segments and start their index builds).
    #[arg(long)]
    pub flush: bool,
}

struct Source {
    dim: usize,
    metric: Option<Metric>,
    vectors: Vec<f32>,
    ids: Option<Vec<u64>>,
}

fn read_source(path: &Path) -> anyhow::Result<Source> {
    if path.is_dir() {
        let d =
            Dataset::open(path).with_context(|| format!("opening dataset {}", path.display()))?;
        return Ok(Source {
            dim: d.dim,
            metric: Some(d.metric),
            vectors: d.base,
            ids: Some(d.ids),
        });
    }
    let name = path.to_string_lossy();
    let format = Format::from_extension(&name)?;
    let mut file = std::io::BufReader::new(
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
    );
    let m = format
        .read_f32(&mut file)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(Source {
        dim: m.cols,
        metric: None,
        vectors: m.data,
        ids: None,
    })
}

fn bar(len: u64) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) = ProgressStyle::with_template(
        "importing [{bar:32}] {human_pos}/{human_len} {per_sec:>14} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let mut src = read_source(&args.path)?;
    anyhow::ensure!(src.dim > 0, "{} holds no vectors", args.path.display());
    let mut rows = src.vectors.len() / src.dim;
    if let Some(limit) = args.limit {
        rows = rows.min(limit);
        src.vectors.truncate(rows * src.dim);
        if let Some(ids) = &mut src.ids {
            ids.truncate(rows);
        }
    }
    anyhow::ensure!(rows > 0, "{} holds no vectors", args.path.display());
    let client = args.server.client();
    let path = format!("/v1/collections/{}", args.collection);
    let info = match client.get(&path) {
        Ok(info) => info,
        Err(e) if e.status() == Some(404) => {
            let index: IndexRequest = serde_json::from_str(&args.index)
                .with_context(|| format!("--index {:?} is not an index spec", args.index))?;
            let metric = args.metric.or(src.metric).unwrap_or(Metric::L2);
            let body =
                json!({"dim": src.dim, "metric": metric, "index": index, "shards": args.shards});
            let info = client
                .send("PUT", &path, &body)
                .with_context(|| format!("creating collection {}", args.collection))?;
            eprintln!(
                "created collection {} (dim {}, {metric}, {})",
                args.collection,
                src.dim,
                serde_json::to_string(&index)?
            );
            info
        }
        Err(e) => {
            return Err(e).with_context(|| format!("looking up collection {}", args.collection))
        }
    };
    let dim = info["schema"]["dim"].as_u64().unwrap_or(0) as usize;
    anyhow::ensure!(
        dim == src.dim,
        "collection {} has dimension {dim}, {} has {}",
        args.collection,
        args.path.display(),
        src.dim
    );
    let auto_id = info["schema"]["auto_id"].as_bool().unwrap_or(false);
    let ids: Option<Vec<u64>> = if auto_id {
        None
    } else {
        Some(
            src.ids
                .take()
                .map_or_else(|| file_ids(args.start_id, rows), Ok)?,
        )
    };

    let started = Instant::now();
    let bar = bar(rows as u64);
    let seq = client.insert_all(
        &args.collection,
        dim,
        &src.vectors,
        ids.as_deref(),
        args.batch,
        |done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "imported {rows} vectors into {} in {secs:.2} s ({:.0} vectors/s), last seq {seq}",
        args.collection,
        rows as f64 / secs.max(1e-9)
    );
    if args.flush {
        client.send("POST", &format!("{path}/flush"), &json!({}))?;
        println!("flushed {}", args.collection);
    }
    Ok(())
}

/// Ids `start, start + 1, …` for `rows` rows, refused when the last would pass `u64::MAX`.
fn file_ids(start: u64, rows: usize) -> anyhow::Result<Vec<u64>> {
    let Some(count) = (rows as u64).checked_sub(1) else {
        return Ok(Vec::new());
    };
    let last = start.checked_add(count).ok_or_else(|| {
        anyhow::anyhow!("--start-id {start} leaves no room for {rows} ids below 2^64")
    })?;
    Ok((start..=last).collect())
}

#[cfg(test)]
mod tests {
    use super::file_ids;

    #[test]
    fn file_ids_reach_the_last_id_and_no_further() {
        assert_eq!(file_ids(5, 3).unwrap(), vec![5, 6, 7]);
        assert_eq!(
            file_ids(u64::MAX - 1, 2).unwrap(),
            vec![u64::MAX - 1, u64::MAX]
        );
        assert!(file_ids(u64::MAX - 1, 3).is_err());
        assert!(file_ids(u64::MAX, 0).unwrap().is_empty());
    }
}
