//! `proxima bench cache`: the browser cache's HNSW (`proxima_core::hnsw`, the same code the
//! wasm package runs) natively beside FAISS's HNSW, on the same real vectors and parameters,
//! one thread each: build rate, single-query latency, recall@10, memory and byte round trips.
//! It tells whether a gap seen in the browser comes from the wasm runtime or the algorithm.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::ensure;
use clap::Args;
use proxima_core::exact::exact_search;
use proxima_core::hnsw::{Hnsw, HnswConfig, Quantization, SearchOptions};
use proxima_core::{recall_at_k, Hit, IndexSpec, SearchParams, VectorIndex};

use super::bench::{build_profile, command_line, machine, open_dataset, parse_sizes};
use crate::index::faiss_backend::{set_faiss_threads, FaissIndex};

#[derive(Debug, Args, Clone)]
pub struct BenchCacheArgs {
    /// Dataset directory (from `proxima dataset build`) [default: the debian-packages dataset].
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Base sizes to run (comma-separated): the first N base vectors, ground truth recomputed.
    #[arg(long, default_value = "10000,50000")]
    pub sizes: String,
    /// Links per node.
    #[arg(long, default_value_t = 16)]
    pub m: usize,
    /// Beam width while building.
    #[arg(long, default_value_t = 100)]
    pub ef_construction: usize,
    /// Beam width while searching.
    #[arg(long, default_value_t = 64)]
    pub ef: usize,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
}

struct Row {
    system: &'static str,
    n: usize,
    build: Duration,
    latencies: Vec<Duration>,
    recall: f64,
    memory: usize,
    bytes: Option<(usize, Duration)>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Times each query alone (one call per query), returning the hits and the latencies sorted.
fn time_queries(
    queries: &[f32],
    dim: usize,
    mut search: impl FnMut(&[f32]) -> anyhow::Result<Vec<Hit>>,
) -> anyhow::Result<(Vec<Vec<Hit>>, Vec<Duration>)> {
    for q in queries.chunks_exact(dim).take(50) {
        search(q)?; // warm-up
    }
    let mut hits = Vec::new();
    let mut lat = Vec::new();
    for q in queries.chunks_exact(dim) {
        let start = Instant::now();
        hits.push(search(q)?);
        lat.push(start.elapsed());
    }
    lat.sort();
    Ok((hits, lat))
}

pub fn run(a: BenchCacheArgs) -> anyhow::Result<()> {
    let (dir, data) = open_dataset(a.dataset.clone())?;
    let (dim, metric) = (data.dim, data.metric);
    let sizes = parse_sizes(&a.sizes)?;
    ensure!(a.k > 0, "--k must be at least 1");
    set_faiss_threads(1);
    println!(
        "proxima bench cache: {} ({} vectors × {dim}, {} queries, {metric})",
        dir.display(),
        data.len(),
        data.num_queries()
    );
    println!("command: {}", command_line());
    println!("build: {}", build_profile());
    println!("machine: {}", machine());
    println!(
        "settings: M {}, efConstruction {}, ef {}, k {}; one thread each (FAISS's OpenMP set to 1); \
         inserts in batches of 1,000; latency = one query per call",
        a.m, a.ef_construction, a.ef, a.k
    );
    let mut queries = data.queries.clone();
    metric.prepare(&mut queries, dim);
    let mut rows = Vec::new();
    for &n in &sizes {
        let n = n.min(data.len());
        let mut base = data.base[..n * dim].to_vec();
        metric.prepare(&mut base, dim);
        let ids = &data.ids[..n];
        let truth: Vec<Vec<u64>> = exact_search(&base, Some(ids), &queries, dim, metric, a.k, None)
            .into_iter()
            .map(|row| row.into_iter().map(|h| h.id).collect())
            .collect();

        for (system, quantization) in [
            ("Proxima cache HNSW", Quantization::None),
            ("Proxima cache HNSW, SQ8", Quantization::Sq8),
        ] {
            let mut cfg = HnswConfig::new(dim, metric);
            cfg.m = a.m;
            cfg.ef_construction = a.ef_construction;
            cfg.ef_search = a.ef;
            cfg.quantization = quantization;
            let mut h = Hnsw::new(cfg)?;
            let start = Instant::now();
            for (ids, rows) in ids.chunks(1000).zip(base.chunks(1000 * dim)) {
                h.upsert(ids, rows)?;
            }
            let build = start.elapsed();
            let opts = SearchOptions::default();
            let (hits, latencies) = time_queries(&queries, dim, |q| Ok(h.search(q, a.k, &opts)?))?;
            let bytes = h.to_bytes();
            let start = Instant::now();
            let back = Hnsw::from_bytes(&bytes)?;
            let load = start.elapsed();
            ensure!(back.len() == h.len());
            rows.push(Row {
                system,
                n,
                build,
                latencies,
                recall: recall_at_k(&hits, &truth, a.k),
                memory: h.memory_bytes(),
                bytes: Some((bytes.len(), load)),
            });
        }

        let mut faiss = FaissIndex::new(
            dim,
            metric,
            IndexSpec::Hnsw {
                m: a.m,
                ef_construction: a.ef_construction,
            },
        )?;
        let start = Instant::now();
        // FAISS labels rows by position: add 0..n and map hits back to the dataset's ids.
        let rows_ids: Vec<u64> = (0..n as u64).collect();
        for (r, rows) in rows_ids.chunks(1000).zip(base.chunks(1000 * dim)) {
            faiss.add(r, rows)?;
        }
        let build = start.elapsed();
        let params = SearchParams {
            ef: Some(a.ef),
            ..SearchParams::new(a.k)
        };
        let (hits, latencies) = time_queries(&queries, dim, |q| {
            let mut hits = faiss.search(q, &params, None)?.pop().unwrap_or_default();
            hits.iter_mut().for_each(|h| h.id = ids[h.id as usize]);
            Ok(hits)
        })?;
        rows.push(Row {
            system: "FAISS HNSW (IndexHNSWFlat)",
            n,
            build,
            latencies,
            recall: recall_at_k(&hits, &truth, a.k),
            memory: VectorIndex::memory_bytes(&faiss),
            bytes: None,
        });
    }
    println!();
    println!("| system | n | build (vectors/s) | p50 ms | p99 ms | QPS (1 thread) | recall@10 | memory MB | bytes MB | load from bytes ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let total: f64 = r.latencies.iter().map(Duration::as_secs_f64).sum();
        let (size, load) = match r.bytes {
            Some((b, t)) => (
                format!("{:.1}", b as f64 / 1e6),
                format!("{:.1}", t.as_secs_f64() * 1e3),
            ),
            None => ("—".into(), "—".into()),
        };
        println!(
            "| {} | {} | {:.0} | {:.3} | {:.3} | {:.0} | {:.4} | {:.1} | {size} | {load} |",
            r.system,
            r.n,
            r.n as f64 / r.build.as_secs_f64(),
            percentile(&r.latencies, 0.5),
            percentile(&r.latencies, 0.99),
            r.latencies.len() as f64 / total,
            r.recall,
            r.memory as f64 / 1e6,
        );
    }
    Ok(())
}
