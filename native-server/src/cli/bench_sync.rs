//! `proxima bench sync`: what cache ↔ server sync costs, over loopback HTTP to a server in this
//! process, on real embeddings.
//!
//! * cold start of a cache of N vectors: download the snapshot and load it (the server's
//!   prebuilt graph), against replaying the whole feed and building the graph locally;
//! * the cost of idle live clients: single-query search throughput with and without C
//!   long-polling feed requests held open;
//! * freshness: one write at a time on the server, the time until a live cache (long-poll,
//!   binary frames, applied with the same `core` code the browser runs) holds it.
//!
//! The cache side here is native code; the browser runs the same `core` code compiled to
//! WebAssembly; `scripts/bench-sync.sh` also measures the Node package against a server process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Args;
use parking_lot::Mutex;
use proxima_core::hnsw::{Hnsw, HnswConfig};
use proxima_core::sync::{Change, ChangeBatch, SyncState};
use proxima_core::IndexSpec;

use super::bench::{
    build_profile, command_line, machine, open_dataset, parse_sizes, InProcessServer,
};
use crate::engine::{CollectionSchema, Engine, EngineConfig};

#[derive(Debug, Args, Clone)]
pub struct BenchSyncArgs {
    /// Dataset directory [default: $PROXIMA_HOME/datasets/debian-packages].
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Collection sizes for the cold-start measurement, comma-separated.
    #[arg(long, default_value = "10000,50000")]
    pub sizes: String,
    /// Cold starts measured per size (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Idle live clients held open during the second search measurement.
    #[arg(long, default_value_t = 1000)]
    pub live_clients: usize,
    /// Seconds of each search-throughput measurement.
    #[arg(long, default_value_t = 5.0)]
    pub search_secs: f64,
    /// Writes timed for freshness.
    #[arg(long, default_value_t = 300)]
    pub writes: usize,
    /// Pause between those writes, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub write_interval_ms: u64,
}

fn get(url: &str, accept: &str) -> anyhow::Result<Vec<u8>> {
    let resp = ureq::get(url)
        .set("Accept", accept)
        .timeout(Duration::from_secs(120))
        .call()
        .with_context(|| format!("GET {url}"))?;
    let mut body = Vec::new();
    resp.into_reader().read_to_end(&mut body)?;
    Ok(body)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Replays the feed from the start into an empty index, as a cache without snapshots would.
fn replay(base: &str, name: &str, dim: usize, cfg: &HnswConfig) -> anyhow::Result<(Hnsw, usize)> {
    let mut index = Hnsw::new(cfg.clone())?;
    let mut state: Option<SyncState> = None;
    let mut bytes = 0;
    let mut since = 0;
    loop {
        let frame = get(
            &format!("{base}/v1/collections/{name}/changes?since={since}&limit=10000"),
            "application/octet-stream",
        )?;
        bytes += frame.len();
        let batch = ChangeBatch::from_bytes(&frame)?;
        batch.validate(dim)?;
        let st = state.get_or_insert_with(|| SyncState {
            collection: batch.collection.clone(),
            handle: batch.handle.clone(),
            watermark: 0,
            complete: true,
        });
        st.apply(&mut index, &batch)?;
        since = st.watermark;
        if !batch.has_more {
            return Ok((index, bytes));
        }
    }
}

/// Single-query JSON searches from `clients` threads for `secs`: queries per second.
fn search_qps(
    addr: SocketAddr,
    name: &str,
    queries: &[Vec<f32>],
    clients: usize,
    secs: f64,
) -> f64 {
    let done = AtomicUsize::new(0);
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let bodies: Vec<String> = queries
        .iter()
        .map(|q| serde_json::json!({"vectors": [q], "k": 10}).to_string())
        .collect();
    let url = format!("http://{addr}/v1/collections/{name}/search");
    let started = Instant::now();
    std::thread::scope(|s| {
        for c in 0..clients {
            let (done, bodies, url) = (&done, &bodies, &url);
            s.spawn(move || {
                let agent = ureq::AgentBuilder::new().build();
                let mut i = c;
                while Instant::now() < stop {
                    let ok = agent
                        .post(url)
                        .set("Content-Type", "application/json")
                        .send_string(&bodies[i % bodies.len()])
                        .is_ok();
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    i += clients;
                }
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Opens `n` connections, each with a live feed request waiting at the head.
fn idle_live_clients(
    addr: SocketAddr,
    name: &str,
    since: u64,
    n: usize,
) -> anyhow::Result<Vec<TcpStream>> {
    let request = format!(
        "GET /v1/collections/{name}/changes?since={since}&live=true&timeout_ms=60000 HTTP/1.1\r\nHost: {addr}\r\nAccept: application/octet-stream\r\n\r\n"
    );
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr)?;
            s.write_all(request.as_bytes())?;
            Ok(s)
        })
        .collect()
}

fn threads_of_this_process() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

pub fn run(a: BenchSyncArgs) -> anyhow::Result<()> {
    let (dir, data) = open_dataset(a.dataset.clone())?;
    let (dim, metric) = (data.dim, data.metric);
    let sizes = parse_sizes(&a.sizes)?;
    ensure!(
        a.repeat > 0 && a.writes > 0,
        "--repeat and --writes must be at least 1"
    );
    println!(
        "proxima bench sync: {} ({} vectors × {dim}, {metric})",
        dir.display(),
        data.len()
    );
    println!("command: {}", command_line());
    println!("build: {}", build_profile());
    println!("machine: {}", machine());
    println!("server: in this process, loopback HTTP; fsync always; cache: HNSW M 16, efConstruction 100, f32");

    let tmp = std::env::temp_dir().join(format!("proxima-bench-sync-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let engine = Arc::new(Engine::open(EngineConfig::new(&tmp))?);
    let server = InProcessServer::start(engine.clone())?;
    let addr = server.addr;
    let base = format!("http://{addr}");
    let result = (|| -> anyhow::Result<()> {
        let mut first = None;
        println!("\n## Cold start: snapshot (download + load) vs replaying the feed");
        println!("| vectors | snapshot bytes | first snapshot (server builds it) ms | download ms | load ms | cold start ms (median of {}) | replay: feed bytes | replay ms | replay ÷ snapshot |", a.repeat);
        println!("|---|---|---|---|---|---|---|---|---|");
        for &n in &sizes {
            let n = n.min(data.len());
            let name = format!("sync-{n}");
            let col = engine.create_collection(CollectionSchema {
                name: name.clone(),
                dim,
                metric,
                index: IndexSpec::Flat.into(),
                num_shards: 1,
                auto_id: false,
            })?;
            for (v, ids) in data.base[..n * dim]
                .chunks(5_000 * dim)
                .zip(data.ids[..n].chunks(5_000))
            {
                col.insert(v, Some(ids))?;
            }
            col.count();
            let url = format!("{base}/v1/collections/{name}/snapshot");
            let t = Instant::now();
            let bytes = get(&url, "application/octet-stream")?;
            let first_ms = t.elapsed().as_secs_f64() * 1e3;
            let (mut down, mut load, mut total) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..a.repeat {
                let t = Instant::now();
                let bytes = get(&url, "application/octet-stream")?;
                let d = t.elapsed();
                let (_state, index) = SyncState::from_snapshot(&bytes)?;
                ensure!(index.len() == n, "snapshot holds {} of {n}", index.len());
                let all = t.elapsed();
                down.push(d.as_secs_f64() * 1e3);
                load.push((all - d).as_secs_f64() * 1e3);
                total.push(all.as_secs_f64() * 1e3);
            }
            let cfg = HnswConfig::new(dim, metric);
            let t = Instant::now();
            let (index, feed_bytes) = replay(&base, &name, dim, &cfg)?;
            let replay_ms = t.elapsed().as_secs_f64() * 1e3;
            ensure!(index.len() == n, "replay holds {} of {n}", index.len());
            let cold = median(total);
            println!(
                "| {n} | {} | {first_ms:.0} | {:.1} | {:.1} | **{cold:.1}** | {feed_bytes} | {replay_ms:.0} | {:.1}× |",
                bytes.len(),
                median(down),
                median(load),
                replay_ms / cold
            );
            if first.is_none() {
                first = Some(name);
            }
        }
        let name = first.context("no --sizes")?;
        let col = engine.collection(&name)?;

        println!(
            "\n## Idle live clients: single-query search throughput with {} long-polls held open",
            a.live_clients
        );
        let queries: Vec<Vec<f32>> = (0..data.num_queries().min(500))
            .map(|q| data.query(q).to_vec())
            .collect();
        let clients = 2 * std::thread::available_parallelism().map_or(1, |n| n.get());
        search_qps(addr, &name, &queries, clients, 1.0);
        // Alternating runs without and with the waiters (the best of each), so that load
        // from elsewhere on the machine does not land on one side only.
        let (mut before, mut during) = (0f64, 0f64);
        let threads_before = threads_of_this_process();
        let (mut waiting, mut threads_during) = (0, 0);
        for _ in 0..2 {
            before = before.max(search_qps(addr, &name, &queries, clients, a.search_secs));
            let head = col.changes().head();
            let conns = idle_live_clients(addr, &name, head, a.live_clients)?;
            let deadline = Instant::now() + Duration::from_secs(30);
            while col.changes().waiters() < a.live_clients && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            waiting = col.changes().waiters();
            threads_during = threads_of_this_process();
            during = during.max(search_qps(addr, &name, &queries, clients, a.search_secs));
            drop(conns);
            // A write wakes the waiters, whose answers then meet closed sockets.
            col.insert(data.query(0), Some(&[999_999_999]))?;
            let deadline = Instant::now() + Duration::from_secs(30);
            while col.changes().waiters() > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        println!("| live waiters | search QPS ({clients} client threads, 1 query per request, k 10; best of 2 alternating runs) | process threads |");
        println!("|---|---|---|");
        println!("| 0 | {before:.0} | {threads_before} |");
        println!("| {waiting} | {during:.0} | {threads_during} |");
        println!(
            "search throughput with the waiters: {:.1} % of without",
            during / before * 100.0
        );

        println!(
            "\n## Freshness: server write → visible in a live cache ({} writes, one every {} ms)",
            a.writes, a.write_interval_ms
        );
        let snapshot = get(
            &format!("{base}/v1/collections/{name}/snapshot"),
            "application/octet-stream",
        )?;
        let (mut st, mut index) = SyncState::from_snapshot(&snapshot)?;
        let seen: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let follower = {
            let (seen, stop, base, name) = (seen.clone(), stop.clone(), base.clone(), name.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    let frame = get(
                        &format!("{base}/v1/collections/{name}/changes?since={}&handle={}&live=true&timeout_ms=1000", st.watermark, st.handle),
                        "application/octet-stream",
                    )?;
                    let batch = ChangeBatch::from_bytes(&frame)?;
                    st.apply(&mut index, &batch)?;
                    let now = Instant::now();
                    let mut seen = seen.lock();
                    for r in &batch.records {
                        if let Change::Upsert { id, .. } = r.change {
                            if index.contains(id) {
                                seen.push((id, now));
                            }
                        }
                    }
                }
                Ok(())
            })
        };
        let agent = ureq::AgentBuilder::new().build();
        let mut written = Vec::with_capacity(a.writes);
        for i in 0..a.writes {
            let id = 1_000_000_000 + i as u64;
            let body =
                serde_json::json!({"ids": [id], "vectors": [data.query(i % data.num_queries())]})
                    .to_string();
            let t = Instant::now();
            agent
                .post(&format!("{base}/v1/collections/{name}/vectors"))
                .set("Content-Type", "application/json")
                .send_string(&body)?;
            written.push((id, t));
            std::thread::sleep(Duration::from_millis(a.write_interval_ms));
        }
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
        follower
            .join()
            .map_err(|_| anyhow::anyhow!("the follower panicked"))??;
        let seen: std::collections::HashMap<u64, Instant> = seen.lock().iter().copied().collect();
        let mut lat: Vec<f64> = written
            .iter()
            .filter_map(|(id, t)| {
                seen.get(id)
                    .map(|s| s.duration_since(*t).as_secs_f64() * 1e3)
            })
            .collect();
        ensure!(
            lat.len() == a.writes,
            "the cache saw {} of {} writes",
            lat.len(),
            a.writes
        );
        lat.sort_by(f64::total_cmp);
        println!("| writes | p50 ms | p99 ms | max ms |");
        println!("|---|---|---|---|");
        println!(
            "| {} | **{:.2}** | **{:.2}** | {:.2} |",
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat[lat.len() - 1]
        );
        println!("(from sending the write request, acknowledged after fsync, to the record applied in the cache)");
        Ok(())
    })();
    drop(server);
    engine.close();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}
