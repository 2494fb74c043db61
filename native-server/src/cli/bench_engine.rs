//! `proxima bench engine`: builds each index type through the engine on a real dataset and
//! reports build time, memory (measured and planned), QPS, recall@10 against the exact ground
//! truth, and the engine's search time over calling FAISS directly on the same index file
//! with the same parameters. Each index is created as a user would create it: its type with
//! the server's defaults for every parameter not given on the command line (`--pq-m`,
//! `--hnsw-m`), and searched with the server's search defaults unless `--nprobe`, `--ef` or
//! `--refine-factor` say otherwise; `--nprobe` and `--refine-factor` take comma-separated
//! lists, each combination measured on the same built index. With `--gpu-device` (builds with
//! the `gpu` feature) the engine
//! copies FLAT and IVF segments to the GPU, and the direct side searches the same index copied
//! to the GPU through FAISS.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use proxima_core::params::{default_nprobe, default_refine_factor};
use proxima_core::request::{IndexParams, IndexType};
use proxima_core::sizing::format_bytes;
use proxima_core::{
    recall_at_k, ConsistencyLevel, Hit, IndexRequest, IndexSpec, SearchParams, VectorIndex,
};

use super::bench::{build_profile, command_line, machine, open_dataset};
use crate::engine::{CollectionSchema, Engine, EngineConfig, SegmentState};
use crate::index::faiss_backend::{FaissIndex, DEFAULT_EF};
use crate::index::gpu::{runs_on_gpu, GpuDevice, GpuSettings};

#[derive(Debug, Args, Clone)]
pub struct BenchEngineArgs {
    /// Dataset directory (from `proxima dataset build`) [default: the debian-packages dataset].
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Index types to run (comma-separated): FLAT, IVF_FLAT, IVF_SQ8, IVF_PQ, HNSW, HNSW_SQ8.
    #[arg(long, default_value = "FLAT,IVF_FLAT,IVF_SQ8,IVF_PQ,HNSW,HNSW_SQ8")]
    pub indexes: String,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// IVF lists probed; a comma-separated list measures each on the same index [default:
    /// the server's default for the segment's nlist].
    #[arg(long, value_delimiter = ',')]
    pub nprobe: Vec<usize>,
    /// HNSW efSearch [default: the server's default].
    #[arg(long)]
    pub ef: Option<usize>,
    /// Re-ranking of IVF_SQ8, IVF_PQ and HNSW_SQ8: `k × refine_factor` candidates re-scored
    /// exactly on the rows (1: none); a comma-separated list measures each on the same index
    /// [default: the server's default for the index type].
    #[arg(long, value_delimiter = ',')]
    pub refine_factor: Vec<usize>,
    /// IVF_PQ sub-quantisers (bytes per vector with 8-bit codes) [default: the collection
    /// default for the dimension].
    #[arg(long)]
    pub pq_m: Option<usize>,
    /// HNSW links per node [default: the collection default].
    #[arg(long)]
    pub hnsw_m: Option<usize>,
    /// Queries per search call in the batched measurement.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Timed runs per measurement (the best counts).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Scratch directory for the collections [default: a temporary directory].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Search FLAT and IVF segments on this CUDA device (builds with the `gpu` feature).
    #[arg(long)]
    pub gpu_device: Option<i32>,
}

struct Row {
    spec: IndexSpec,
    nprobe: Option<usize>,
    refine: Option<usize>,
    build: Duration,
    actual: u64,
    raw: u64,
    mapped: u64,
    estimated: u64,
    gpu: u64,
    qps_single: f64,
    qps_batch: f64,
    recall: f64,
    ratio: f64,
}

/// The index requests to run: each type as a user gives it, with only the parameters given on
/// the command line (`nlist` is chosen for the segment's rows, the rest are the defaults).
fn requests(a: &BenchEngineArgs, dim: usize) -> anyhow::Result<Vec<IndexRequest>> {
    a.indexes
        .split(',')
        .map(|name| {
            let kind = match name.trim().to_ascii_uppercase().as_str() {
                "FLAT" => IndexType::Flat,
                "IVF_FLAT" => IndexType::IvfFlat,
                "IVF_SQ8" => IndexType::IvfSq8,
                "IVF_PQ" => IndexType::IvfPq,
                "HNSW" => IndexType::Hnsw,
                "HNSW_SQ8" => IndexType::HnswSq8,
                other => bail!("unknown index type {other}"),
            };
            let params = match kind {
                IndexType::IvfPq => IndexParams {
                    m: a.pq_m,
                    ..Default::default()
                },
                IndexType::Hnsw | IndexType::HnswSq8 => IndexParams {
                    m: a.hnsw_m,
                    ..Default::default()
                },
                _ => IndexParams::default(),
            };
            let request = IndexRequest { kind, params };
            request.validate(dim)?;
            Ok(request)
        })
        .collect()
}

/// The values of a list flag, or one `None` (the default) when it was not given.
fn or_default(values: &[usize]) -> Vec<Option<usize>> {
    if values.is_empty() {
        vec![None]
    } else {
        values.iter().copied().map(Some).collect()
    }
}

/// A knob as the header prints it: the value given, or `default`.
fn knob(values: &[usize]) -> String {
    if values.is_empty() {
        "default".to_string()
    } else {
        values
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn or_dash(v: Option<usize>) -> String {
    v.map_or_else(|| "–".to_string(), |v| v.to_string())
}

/// Runs `engine` and `direct` over the queries in batches of `batch`, alternating call by
/// call, so that whatever else the machine does in the meantime weighs on both sides alike.
/// Returns the engine's hits and each side's total time.
fn timed_pair<E, D>(
    queries: &[f32],
    dim: usize,
    batch: usize,
    mut engine: E,
    mut direct: D,
) -> anyhow::Result<(Vec<Vec<Hit>>, Duration, Duration)>
where
    E: FnMut(&[f32]) -> anyhow::Result<Vec<Vec<Hit>>>,
    D: FnMut(&[f32]) -> anyhow::Result<Vec<Vec<Hit>>>,
{
    let mut hits = Vec::with_capacity(queries.len() / dim);
    let (mut on_engine, mut on_direct) = (Duration::ZERO, Duration::ZERO);
    for (i, chunk) in queries.chunks(batch * dim).enumerate() {
        // Which side goes first alternates too (a cache warmed by one helps the other).
        let mut run_engine = |hits: &mut Vec<Vec<Hit>>| -> anyhow::Result<()> {
            let start = Instant::now();
            hits.extend(engine(chunk)?);
            on_engine += start.elapsed();
            Ok(())
        };
        if i % 2 == 0 {
            run_engine(&mut hits)?;
        }
        let start = Instant::now();
        direct(chunk)?;
        on_direct += start.elapsed();
        if i % 2 == 1 {
            run_engine(&mut hits)?;
        }
    }
    Ok((hits, on_engine, on_direct))
}

/// Times `search` (the engine) alone and beside `direct` (FAISS on the same index file), one
/// query per call and `a.batch` per call, best of `a.repeat` runs; recall of the engine's hits
/// against `truth`. The returned row's index and memory fields are left for the caller.
fn measure<E, D>(
    a: &BenchEngineArgs,
    queries: &[f32],
    dim: usize,
    truth: &[Vec<u64>],
    search: E,
    direct_search: D,
) -> anyhow::Result<Row>
where
    E: Fn(&[f32]) -> anyhow::Result<Vec<Vec<Hit>>>,
    D: Fn(&[f32]) -> anyhow::Result<Vec<Vec<Hit>>>,
{
    let nq = queries.len() / dim;
    // Warm-up. QPS: the engine alone. The ratio: engine and direct calls alternated (so
    // that the machine's other work weighs on both alike). The best of `repeat` runs
    // counts, so a burst of other work does not decide either.
    search(&queries[..dim])?;
    direct_search(&queries[..dim])?;
    let no_direct = |_: &[f32]| -> anyhow::Result<Vec<Vec<Hit>>> { Ok(Vec::new()) };
    let mut best = [Duration::MAX; 6];
    let mut hits = Vec::new();
    for _ in 0..a.repeat.max(1) {
        let (_, engine, _) = timed_pair(queries, dim, 1, &search, no_direct)?;
        best[0] = best[0].min(engine);
        let (h, engine, _) = timed_pair(queries, dim, a.batch, &search, no_direct)?;
        best[1] = best[1].min(engine);
        hits = h;
        for (i, batch) in [(2, 1), (4, a.batch)] {
            let (_, engine, direct) = timed_pair(queries, dim, batch, &search, &direct_search)?;
            best[i] = best[i].min(engine);
            best[i + 1] = best[i + 1].min(direct);
        }
    }
    let [single, batched, paired_single, direct_single, paired_batched, direct_batched] = best;
    Ok(Row {
        spec: IndexSpec::Flat,
        nprobe: None,
        refine: None,
        build: Duration::ZERO,
        actual: 0,
        raw: 0,
        mapped: 0,
        estimated: 0,
        gpu: 0,
        qps_single: nq as f64 / single.as_secs_f64(),
        qps_batch: nq as f64 / batched.as_secs_f64(),
        recall: recall_at_k(&hits, truth, a.k),
        ratio: (paired_single.as_secs_f64() + paired_batched.as_secs_f64())
            / (direct_single.as_secs_f64() + direct_batched.as_secs_f64()),
    })
}

fn index_file(segment_dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(segment_dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "faiss"))
}

pub fn run(a: BenchEngineArgs) -> anyhow::Result<()> {
    let (dir, data) = open_dataset(a.dataset.clone())?;
    let (n, dim, nq) = (data.len(), data.dim, data.num_queries());
    let truth: Vec<Vec<u64>> = data
        .ground_truth
        .iter()
        .map(|t| t.iter().take(a.k).copied().collect())
        .collect();
    let scratch = tempfile::tempdir()?;
    let work = a
        .work_dir
        .clone()
        .unwrap_or_else(|| scratch.path().to_path_buf());
    let mut config = EngineConfig::new(&work);
    config.seal_rows = n + 1;
    let gpu_settings = a.gpu_device.map(|device| GpuSettings {
        min_rows: 1,
        ..GpuSettings::new(device)
    });
    config.gpu = gpu_settings.clone();
    let engine = Engine::open(config)?;
    // FAISS's own GPU copies for the direct side (resources of their own, as another process
    // would have).
    let direct_gpu = gpu_settings.as_ref().map(GpuDevice::open).transpose()?;
    println!(
        "proxima bench engine: {} ({n} vectors × {dim}, {nq} queries, {}), k={}, nprobe={}, ef={}, refine_factor={}",
        dir.display(),
        data.metric,
        a.k,
        knob(&a.nprobe),
        a.ef.unwrap_or(DEFAULT_EF),
        knob(&a.refine_factor),
    );
    println!("command: {}", command_line());
    println!("build: {}", build_profile());
    println!("machine: {}", machine());
    let mut rows = Vec::new();
    for (i, request) in requests(&a, dim)?.into_iter().enumerate() {
        let name = format!("bench{i}");
        let collection = engine.create_collection(CollectionSchema {
            name: name.clone(),
            dim,
            metric: data.metric,
            index: request,
            num_shards: 1,
            auto_id: false,
        })?;
        let start = Instant::now();
        for (ids, vectors) in data.ids.chunks(1024).zip(data.base.chunks(1024 * dim)) {
            collection.insert(vectors, Some(ids))?;
        }
        collection.flush()?;
        if !collection.wait_index_ready(Duration::from_secs(3600)) {
            bail!("{request}: index build did not finish");
        }
        // What the segment got (`nlist` for its rows, the defaults).
        let spec = collection
            .describe()
            .segments
            .iter()
            .find(|s| s.state == SegmentState::Sealed)
            .and_then(|s| s.index.spec)
            .or_else(|| request.spec_for(dim, n as u64))
            .with_context(|| format!("{request}: no sealed segment"))?;
        if direct_gpu.is_some() && runs_on_gpu(&spec) {
            let deadline = Instant::now() + Duration::from_secs(600);
            while !collection
                .describe()
                .segments
                .iter()
                .any(|s| s.state == SegmentState::Sealed && s.gpu_bytes > 0)
            {
                if Instant::now() > deadline {
                    bail!("{spec}: the segment did not reach the GPU (see the log)");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let build = start.elapsed();
        let info = collection.describe();
        // The same index file, searched through FAISS directly (FLAT: a FAISS flat index).
        let segment = info
            .segments
            .iter()
            .find(|s| s.state == SegmentState::Sealed)
            .context("no sealed segment")?;
        let seg_dir = work
            .join("collections")
            .join(&name)
            .join("segments")
            .join(format!("{:010}", segment.id.unwrap_or(0)));
        let direct = match index_file(&seg_dir) {
            Some(file) => FaissIndex::load(&file, dim, data.metric, spec, false)?,
            None => {
                let mut flat = FaissIndex::new(dim, data.metric, IndexSpec::Flat)?;
                let labels: Vec<u64> = (0..n as u64).collect();
                flat.add(&labels, &data.base)?;
                flat
            }
        };
        let direct_on_gpu = match &direct_gpu {
            Some(device) if runs_on_gpu(&spec) => Some(device.upload_index(&direct)?),
            _ => None,
        };
        // Knobs the index does not have are measured once, as "–".
        let nprobes = match spec.nlist() {
            Some(_) => or_default(&a.nprobe),
            None => vec![None],
        };
        let refines = if spec.is_compressed() {
            or_default(&a.refine_factor)
        } else {
            vec![None]
        };
        for nprobe in nprobes {
            for refine in refines.iter().copied() {
                let mut params = SearchParams::new(a.k);
                params.nprobe = nprobe;
                params.ef = a.ef;
                params.refine_factor = refine;
                let row = measure(
                    &a,
                    &data.queries,
                    dim,
                    &truth,
                    |q| {
                        Ok(collection
                            .search(q, &params, ConsistencyLevel::Eventually, None)?
                            .hits)
                    },
                    |q| {
                        Ok(match &direct_on_gpu {
                            Some(g) => g.search(q, &params, None, 0)?,
                            None => direct.search(q, &params, None)?,
                        })
                    },
                )?;
                let row = Row {
                    spec,
                    nprobe: spec
                        .nlist()
                        .map(|nlist| nprobe.unwrap_or_else(|| default_nprobe(nlist))),
                    refine: spec
                        .is_compressed()
                        .then(|| refine.unwrap_or_else(|| default_refine_factor(&spec))),
                    build,
                    actual: info.memory.actual_bytes,
                    raw: info.memory.raw_bytes,
                    mapped: info.memory.mapped_bytes,
                    estimated: info.memory.estimated_bytes,
                    gpu: info.memory.gpu_bytes,
                    ..row
                };
                println!(
                    "  {:<44} nprobe {:>4} refine {:>2}  build {:>7.1} s  recall@{} {:.3}  QPS {:>8.0} (1/call) {:>8.0} ({}/call)  engine/FAISS {:.2}",
                    row.spec.to_string(), or_dash(row.nprobe), or_dash(row.refine), row.build.as_secs_f64(), a.k, row.recall, row.qps_single, row.qps_batch, a.batch, row.ratio
                );
                rows.push(row);
            }
        }
        engine.drop_collection(&name)?;
    }
    println!();
    let gpu_column = if direct_gpu.is_some() {
        " GPU memory |"
    } else {
        ""
    };
    println!("| index | nprobe | refine_factor | build (s) | RAM measured | RAM ÷ raw vectors | rows file (mmap) | memory planned |{gpu_column} QPS, 1 query/call | QPS, {} queries/call | recall@{} | engine ÷ FAISS time |", a.batch, a.k);
    println!(
        "|---|---|---|---|---|---|---|---|{}---|---|---|---|",
        if direct_gpu.is_some() { "---|" } else { "" }
    );
    for r in &rows {
        let gpu = if direct_gpu.is_some() {
            format!(" {} |", format_bytes(r.gpu))
        } else {
            String::new()
        };
        println!(
            "| {} | {} | {} | {:.1} | {} | {:.3} | {} | {} |{gpu} {:.0} | {:.0} | {:.3} | {:.2} |",
            r.spec,
            or_dash(r.nprobe),
            or_dash(r.refine),
            r.build.as_secs_f64(),
            format_bytes(r.actual),
            r.actual as f64 / r.raw.max(1) as f64,
            format_bytes(r.mapped),
            format_bytes(r.estimated),
            r.qps_single,
            r.qps_batch,
            r.recall,
            r.ratio
        );
    }
    Ok(())
}
