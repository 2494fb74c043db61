//! `proxima bench http`: batch search throughput over HTTP against the same collection
//! searched in-process, printed as a ratio.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use parking_lot::Mutex;
use proxima_core::formats::encode_rows;
use proxima_core::{ConsistencyLevel, IndexRequest, Metric, SearchParams};

use super::bench::{build_profile, command_line, machine, process_cpu_secs, InProcessServer};
use crate::api::types::base64_row;
use crate::dataset::{default_dir, Dataset, DEBIAN_PACKAGES};
use crate::engine::{CollectionSchema, Engine, EngineConfig, FsyncPolicy};

#[derive(Debug, Args, Clone)]
pub struct BenchHttpArgs {
    /// Dataset directory [default: $PROXIMA_HOME/datasets/debian-packages]; without one, a
    /// seeded synthetic set of --synthetic unit vectors of 384 dimensions is used.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Rows of the synthetic set (used only when no dataset is found).
    #[arg(long, default_value_t = 20_000)]
    pub synthetic: usize,
    /// Use at most this many base rows of the dataset.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Index of the collection, as JSON.
    #[arg(long, default_value = r#"{"type":"IVF_FLAT","params":{"nlist":256}}"#)]
    pub index: String,
    /// IVF lists probed per query.
    #[arg(long, default_value_t = 16)]
    pub nprobe: usize,
    /// Queries per request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Neighbours per query.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// Requests (batches) per measurement.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Alternating runs of both measurements; the best of each is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Concurrent clients (threads), the same in every measurement [default: two per CPU,
    /// enough to keep every CPU searching while other requests are in transit].
    #[arg(long)]
    pub clients: Option<usize>,
}

struct Data {
    what: String,
    dim: usize,
    metric: Metric,
    base: Vec<f32>,
    ids: Vec<u64>,
    queries: Vec<f32>,
}

/// Seeded unit vectors (SplitMix64 → uniform in [-1, 1), normalised).
fn synthetic(rows: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    let mut v: Vec<f32> = (0..rows * dim).map(|_| next()).collect();
    for row in v.chunks_exact_mut(dim) {
        let n = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= n);
    }
    v
}

fn load(args: &BenchHttpArgs) -> anyhow::Result<Data> {
    let dir = args
        .dataset
        .clone()
        .unwrap_or_else(|| default_dir(DEBIAN_PACKAGES));
    if dir.join("manifest.json").exists() {
        let d = Dataset::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
        let rows = args.limit.unwrap_or(d.len()).min(d.len());
        anyhow::ensure!(d.num_queries() > 0, "{} has no queries", dir.display());
        return Ok(Data {
            what: format!(
                "{} ({}): {rows} base vectors × {}, {} queries, {}",
                d.name,
                dir.display(),
                d.dim,
                d.num_queries(),
                d.metric
            ),
            dim: d.dim,
            metric: d.metric,
            base: d.base[..rows * d.dim].to_vec(),
            ids: d.ids[..rows].to_vec(),
            queries: d.queries,
        });
    }
    anyhow::ensure!(args.dataset.is_none(), "{} holds no dataset", dir.display());
    let dim = 384;
    let rows = args.synthetic.max(1);
    Ok(Data {
        what: format!(
            "synthetic: {rows} seeded random unit vectors × {dim}, 1000 queries, cosine \
             (no dataset at {}; `proxima dataset build debian-packages` makes one)",
            dir.display()
        ),
        dim,
        metric: Metric::Cosine,
        base: synthetic(rows, dim, 42),
        ids: (0..rows as u64).collect(),
        queries: synthetic(1000, dim, 7),
    })
}

/// One keep-alive HTTP/1.1 connection that writes each request at once.
///
/// The benchmark's clients share the CPUs with the server, so their own costs count against
/// the HTTP figures. `ureq` 2 copies a request body through an 8 KB buffer: about 100 system
/// calls for an 800 KB JSON batch, about 1 ms of the shared CPUs per request, where a client
/// holding the body in memory hands it to the kernel in one call.
struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Self {
            reader: BufReader::new(stream),
        })
    }

    /// A whole POST request (head and body), built before the clock starts.
    fn request(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        request
    }

    /// Sends a request from [`Connection::request`] and returns the body of its 200 answer.
    fn send(&mut self, request: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.reader.get_ref().write_all(request)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not an HTTP status line: {line:?}"))?;
        let mut length = None;
        loop {
            line.clear();
            anyhow::ensure!(self.reader.read_line(&mut line)? > 0, "connection closed");
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.trim().parse::<usize>()?);
                }
            }
        }
        let mut answer = vec![0; length.context("an answer without Content-Length")?];
        self.reader.read_exact(&mut answer)?;
        anyhow::ensure!(
            status == 200,
            "HTTP {status}: {}",
            String::from_utf8_lossy(&answer)
        );
        Ok(answer)
    }
}

/// Wall and CPU seconds of one measurement.
#[derive(Clone, Copy)]
struct Timing {
    wall: f64,
    cpu: f64,
}

impl Timing {
    const NONE: Timing = Timing {
        wall: f64::INFINITY,
        cpu: f64::INFINITY,
    };

    /// The faster of two runs.
    fn best(self, other: Timing) -> Timing {
        if other.wall < self.wall {
            other
        } else {
            self
        }
    }
}

/// Runs `requests` batches over `clients` threads; returns the wall time and the CPU time of
/// the whole process (server, clients and engine alike).
fn timed(
    clients: usize,
    requests: usize,
    run: impl Fn(usize) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<Timing> {
    let started = Instant::now();
    let cpu = process_cpu_secs();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let run = &run;
                s.spawn(move || -> anyhow::Result<()> {
                    for r in (c..requests).step_by(clients) {
                        run(r)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))?
        })
    })?;
    Ok(Timing {
        wall: started.elapsed().as_secs_f64(),
        cpu: process_cpu_secs() - cpu,
    })
}

pub fn run(args: BenchHttpArgs) -> anyhow::Result<()> {
    let clients = args
        .clients
        .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(1, |n| n.get()));
    anyhow::ensure!(
        args.batch > 0 && args.requests > 0 && clients > 0,
        "--batch, --requests and --clients must be at least 1"
    );
    let index: IndexRequest = serde_json::from_str(&args.index)
        .with_context(|| format!("--index {:?} is not an index spec", args.index))?;
    let data = load(&args)?;
    let dim = data.dim;
    let rows = data.ids.len();
    let nq = data.queries.len() / dim;
    let batches: Vec<Vec<f32>> = (0..nq.div_ceil(args.batch).max(1))
        .map(|b| {
            (0..args.batch)
                .flat_map(|i| {
                    let q = (b * args.batch + i) % nq;
                    data.queries[q * dim..(q + 1) * dim].iter().copied()
                })
                .collect()
        })
        .collect();

    let dir = std::env::temp_dir().join(format!("proxima-bench-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = EngineConfig::new(&dir);
    config.fsync = FsyncPolicy::Never;
    config.seal_rows = rows + 1;
    let engine = Arc::new(Engine::open(config)?);
    let result = (|| -> anyhow::Result<()> {
        let name = "bench";
        let collection = engine.create_collection(CollectionSchema {
            name: name.into(),
            dim,
            metric: data.metric,
            index,
            num_shards: 1,
            auto_id: false,
        })?;
        let loading = Instant::now();
        for (v, ids) in data.base.chunks(10_000 * dim).zip(data.ids.chunks(10_000)) {
            collection.insert(v, Some(ids))?;
        }
        collection.flush()?;
        anyhow::ensure!(
            collection.wait_index_ready(Duration::from_secs(1800)),
            "the index build did not finish"
        );
        let load_s = loading.elapsed().as_secs_f64();
        let params = SearchParams::new(args.k).with_nprobe(args.nprobe);

        // In-process.
        let search = |r: usize| -> anyhow::Result<usize> {
            let res = collection.search(
                &batches[r % batches.len()],
                &params,
                ConsistencyLevel::Eventually,
                None,
            )?;
            Ok(res.hits.len())
        };
        search(0)?;

        // Over HTTP, to a server in this process on the same engine.
        let server = InProcessServer::start(engine.clone())?;
        let addr = server.addr;
        let path = format!("/v1/collections/{name}/search");
        // The three request forms, each with its bodies encoded before the clock starts.
        let json_body = |vectors: serde_json::Value| {
            serde_json::json!({"vectors": vectors, "k": args.k, "params": {"nprobe": args.nprobe}, "consistency": "eventually"})
                .to_string()
                .into_bytes()
        };
        let binary_path = format!(
            "{path}?k={}&nprobe={}&consistency=eventually",
            args.k, args.nprobe
        );
        let forms: Vec<(&str, &str, &str, Vec<Vec<u8>>)> = vec![
            (
                "HTTP, JSON:",
                &path,
                "application/json",
                batches
                    .iter()
                    .map(|b| json_body(serde_json::json!(b.chunks_exact(dim).collect::<Vec<_>>())))
                    .collect(),
            ),
            (
                "HTTP, JSON b64:",
                &path,
                "application/json",
                batches
                    .iter()
                    .map(|b| {
                        json_body(serde_json::json!(b
                            .chunks_exact(dim)
                            .map(base64_row)
                            .collect::<Vec<_>>()))
                    })
                    .collect(),
            ),
            (
                "HTTP, binary:",
                &binary_path,
                "application/octet-stream",
                batches.iter().map(|b| encode_rows(dim, b, None)).collect(),
            ),
        ];
        // Whole requests, head and body, ready to write.
        let requests: Vec<Vec<Vec<u8>>> = forms
            .iter()
            .map(|(_, path, content_type, bodies)| {
                bodies
                    .iter()
                    .map(|body| Connection::request(addr, path, content_type, body))
                    .collect()
            })
            .collect();
        // One connection per client; request `r` is sent by client `r % clients`.
        let connections = (0..clients)
            .map(|_| Connection::open(addr).map(Mutex::new))
            .collect::<std::io::Result<Vec<_>>>()?;
        let post = |form: usize, r: usize| -> anyhow::Result<serde_json::Value> {
            let requests = &requests[form];
            let answer = connections[r % clients]
                .lock()
                .send(&requests[r % requests.len()])?;
            Ok(serde_json::from_slice(&answer)?)
        };
        // Every answer is read whole and must hold one result list per query.
        let check = |form: usize, r: usize| -> anyhow::Result<()> {
            let n = post(form, r)?["results"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(
                n == args.batch,
                "{n} result lists for {} queries",
                args.batch
            );
            Ok(())
        };
        // Same answers every way (every query of the first batch).
        let direct = collection.search(&batches[0], &params, ConsistencyLevel::Eventually, None)?;
        let direct: Vec<Vec<u64>> = direct
            .hits
            .iter()
            .map(|hits| hits.iter().map(|h| h.id).collect())
            .collect();
        for (form, (name, ..)) in forms.iter().enumerate() {
            let answer = post(form, 0)?;
            let ids: Vec<Vec<u64>> = answer["results"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|hits| {
                    hits.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|h| h["id"].as_u64())
                        .collect()
                })
                .collect();
            anyhow::ensure!(ids == direct, "{name} and in-process answers differ");
        }
        // Alternate the measurements and keep the best of each: other work on the machine
        // slows one run, not the comparison.
        let mut inproc = Timing::NONE;
        let mut over_http = vec![Timing::NONE; forms.len()];
        for _ in 0..args.repeat.max(1) {
            inproc = inproc.best(timed(clients, args.requests, |r| search(r).map(drop))?);
            for (form, best) in over_http.iter_mut().enumerate() {
                *best = best.best(timed(clients, args.requests, |r| check(form, r))?);
            }
        }
        drop(server);

        let queries = (args.requests * args.batch) as f64;
        let qps = |t: Timing| queries / t.wall;
        let line = |t: Timing| {
            format!(
                "{:>9.0} queries/s ({:.1} ms per batch, {:.1} ms CPU per batch)",
                qps(t),
                t.wall * 1e3 * clients as f64 / args.requests as f64,
                t.cpu * 1e3 / args.requests as f64
            )
        };
        println!("proxima bench http");
        println!("  command:         {}", command_line());
        println!("  build:           {}", build_profile());
        println!("  machine:         {}", machine());
        println!("  data:            {}", data.what);
        println!(
            "  collection:      {} {}, 1 shard, sealed and indexed in {load_s:.1} s",
            serde_json::to_string(&index)?,
            data.metric
        );
        println!(
            "  workload:        {} requests of {} queries, k {}, nprobe {} (IVF only), {} concurrent client(s), consistency eventually; best of {} alternating runs",
            args.requests, args.batch, args.k, args.nprobe, clients, args.repeat.max(1)
        );
        println!("  in-process:      {}", line(inproc));
        for ((name, ..), t) in forms.iter().zip(&over_http) {
            println!(
                "  {name:<16} {}  ratio {:.2}",
                line(*t),
                qps(*t) / qps(inproc)
            );
        }
        println!("  (ratio = HTTP / in-process queries/s; CPU = the whole process: engine, server and clients, which share the machine)");
        Ok(())
    })();
    engine.close();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
