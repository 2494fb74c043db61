//! `proxima bench segments`: what segment maintenance costs writers and readers.
//!
//! 1. **Ingest with frequent flushes**: batches of `--batch` rows, each followed by a flush
//!    (a checkpoint that seals the growing segment). Reports throughput over the first and
//!    the last tenth of the run, the sealed segments left, and search latency over them.
//! 2. **Stalls during a seal and a compaction**: `--stall-rows` rows are inserted, then sealed
//!    by a flush, then lose 40 % of them to deletes (past the automatic compaction ratio,
//!    30 %), then an explicit compact; meanwhile a reader does Strong `get`s and a writer
//!    single-id deletes, one every millisecond. Reports their p50/p99/max latency in each
//!    phase: how long writes and Strong reads wait while segments are written.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use proxima_core::{ConsistencyLevel, IndexSpec, SearchParams};

use super::bench::{build_profile, command_line, machine, open_dataset};
use crate::engine::{Collection, CollectionSchema, Engine, EngineConfig, SegmentState};

#[derive(Debug, Args, Clone)]
pub struct BenchSegmentsArgs {
    /// Dataset directory (from `proxima dataset build`) [default: the debian-packages dataset].
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Rows ingested in the flush-heavy run (at most the dataset's size).
    #[arg(long, default_value_t = 20_000)]
    pub rows: usize,
    /// Rows per insert, each followed by a flush.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Index of the flush-heavy run's collection: FLAT or HNSW.
    #[arg(long, default_value = "HNSW")]
    pub index: String,
    /// Sealed rows of the compaction run's collection (0: skip that run).
    #[arg(long, default_value_t = 50_000)]
    pub stall_rows: usize,
    /// Segments of one tier merged in the background (0: no merging, as before merging
    /// existed).
    #[arg(long, default_value_t = 4)]
    pub merge_factor: usize,
    /// Scratch directory for the collections [default: a temporary directory].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn summary(mut lat: Vec<Duration>) -> String {
    lat.sort_unstable();
    format!(
        "n {}, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    )
}

fn sealed_segments(collection: &Collection) -> usize {
    collection
        .describe()
        .segments
        .iter()
        .filter(|s| s.state == SegmentState::Sealed)
        .count()
}

pub fn run(a: BenchSegmentsArgs) -> anyhow::Result<()> {
    let (dir, data) = open_dataset(a.dataset.clone())?;
    let dim = data.dim;
    let scratch;
    let work_dir = match &a.work_dir {
        Some(d) => d.clone(),
        None => {
            scratch = tempfile::tempdir()?;
            scratch.path().to_path_buf()
        }
    };
    let mut config = EngineConfig::new(&work_dir);
    config.merge_factor = a.merge_factor;
    let engine = Engine::open(config)?;
    println!(
        "proxima bench segments: {} ({} vectors × {dim}, {}), merge factor {}",
        dir.display(),
        data.len(),
        data.metric,
        a.merge_factor
    );
    println!("command: {}", command_line());
    println!("build: {}", build_profile());
    println!("machine: {}", machine());

    // 1. Ingest with a flush after every batch.
    let rows = a.rows.min(data.len());
    let index = match a.index.to_ascii_uppercase().as_str() {
        "FLAT" => IndexSpec::Flat,
        "HNSW" => IndexSpec::Hnsw {
            m: 16,
            ef_construction: 100,
        },
        other => bail!("--index takes FLAT or HNSW, not {other}"),
    };
    let collection = engine.create_collection(CollectionSchema {
        name: "flushes".into(),
        dim,
        metric: data.metric,
        index: index.into(),
        num_shards: 1,
        auto_id: false,
    })?;
    let batches = rows.div_ceil(a.batch);
    let tenth = (batches / 10).max(1);
    let (mut first, mut last) = (Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    for b in 0..batches {
        let lo = b * a.batch;
        let hi = (lo + a.batch).min(rows);
        let t = Instant::now();
        collection.insert(&data.base[lo * dim..hi * dim], Some(&data.ids[lo..hi]))?;
        collection.flush()?;
        let took = t.elapsed();
        if b < tenth {
            first += took;
        }
        if b >= batches - tenth {
            last += took;
        }
    }
    let ingest = start.elapsed();
    let per_tenth = (tenth * a.batch) as f64;
    println!(
        "\ningest, {} rows in batches of {} with a flush after each ({}): {:.1} s, {:.0} vectors/s; first tenth {:.0}/s, last tenth {:.0}/s",
        rows,
        a.batch,
        index,
        ingest.as_secs_f64(),
        rows as f64 / ingest.as_secs_f64(),
        per_tenth / first.as_secs_f64(),
        per_tenth / last.as_secs_f64(),
    );
    println!(
        "sealed segments after {batches} flushes: {}",
        sealed_segments(&collection)
    );
    let t = Instant::now();
    if !collection.wait_merges(Duration::from_secs(3600))
        || !collection.wait_index_ready(Duration::from_secs(3600))
    {
        bail!("merges or index builds did not finish");
    }
    let merges = collection.merge_stats();
    println!(
        "merges and indexes done {:.1} s after the last flush: {} sealed segments; {} merges rewrote {} rows ({:.1} × the rows ingested)",
        t.elapsed().as_secs_f64(),
        sealed_segments(&collection),
        merges.merges,
        merges.rows_rewritten,
        merges.rows_rewritten as f64 / rows as f64
    );
    let nq = data.num_queries().min(500);
    let params = SearchParams::new(10);
    let mut lat = Vec::with_capacity(nq);
    for q in 0..nq {
        let t = Instant::now();
        collection.search(data.query(q), &params, ConsistencyLevel::Eventually, None)?;
        lat.push(t.elapsed());
    }
    println!(
        "search over them, k=10, one query per call: {}",
        summary(lat)
    );
    engine.drop_collection("flushes")?;

    // 2. Latency of Strong reads and deletes while rows are deleted and segments compacted.
    if a.stall_rows == 0 {
        return Ok(());
    }
    let rows = a.stall_rows.min(data.len());
    let collection = engine.create_collection(CollectionSchema {
        name: "stall".into(),
        dim,
        metric: data.metric,
        index: IndexSpec::Flat.into(),
        num_shards: 1,
        auto_id: false,
    })?;
    for lo in (0..rows).step_by(1024) {
        let hi = (lo + 1024).min(rows);
        collection.insert(&data.base[lo * dim..hi * dim], Some(&data.ids[lo..hi]))?;
    }
    let ids = &data.ids[..rows];
    // Probes read ids from the first fifth and delete from the last fifth; the bulk deletes
    // take 40 % from the middle.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (collection, stop) = (collection.clone(), stop.clone());
        let probe: Vec<u64> = ids[..rows / 5].to_vec();
        std::thread::spawn(move || {
            let mut lat = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let _ = collection.get(probe[i % probe.len()]);
                lat.push((t, t.elapsed()));
                i += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            lat
        })
    };
    let writer = {
        let (collection, stop) = (collection.clone(), stop.clone());
        let probe: Vec<u64> = ids[rows * 4 / 5..].to_vec();
        std::thread::spawn(move || {
            let mut lat = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < probe.len() {
                let t = Instant::now();
                let _ = collection.delete(&probe[i..i + 1]);
                lat.push((t, t.elapsed()));
                i += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            lat
        })
    };
    // The seal of the growing segment (every row), then the deletes and compaction.
    std::thread::sleep(Duration::from_millis(100));
    let seal_start = Instant::now();
    collection.flush()?;
    let seal = seal_start.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let bulk = &ids[rows / 5..rows / 5 + rows * 2 / 5];
    for chunk in bulk.chunks(1000) {
        collection.delete(chunk)?;
    }
    let deletes = start.elapsed();
    let t = Instant::now();
    collection.compact()?;
    let compact = t.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("reader thread");
    let writes = writer.join().expect("writer thread");
    let during = |lat: &[(Instant, Duration)], from: Instant, to: Option<Instant>| {
        summary(
            lat.iter()
                .filter(|(t, _)| *t >= from && to.is_none_or(|to| *t < to))
                .map(|&(_, d)| d)
                .collect(),
        )
    };
    let seal_end = Some(seal_start + seal);
    println!(
        "\nseal: flush of {rows} growing rows ({:.2} s); one probe of each kind every ms meanwhile",
        seal.as_secs_f64()
    );
    println!(
        "  Strong get:       {}",
        during(&reads, seal_start, seal_end)
    );
    println!(
        "  single-id delete: {}",
        during(&writes, seal_start, seal_end)
    );
    println!(
        "compaction: the {rows} sealed rows (FLAT) lose 40 % in deletes of 1,000 ids ({:.2} s; automatic compaction at 30 %), then compact ({:.2} s)",
        deletes.as_secs_f64(),
        compact.as_secs_f64()
    );
    println!("  Strong get:       {}", during(&reads, start, None));
    println!("  single-id delete: {}", during(&writes, start, None));
    engine.drop_collection("stall")?;
    Ok(())
}
