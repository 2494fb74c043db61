//! The `vectors` field of JSON request bodies: the hand-written fast path
//! (`api::json_rows::parse_with_rows`) beside `serde_json` on the same body — through the
//! server's own `Rows` (what the fast path falls back to) and plainly into `Vec<Vec<f32>>` —
//! and rows given as base64 strings of little-endian f32 (always `serde_json`).
//! `cargo bench -p proxima-server --bench json_rows` (`-- --quick` for a shorter run).
//!
//! The body is an insert of 1,000 rows × 384 (MiniLM's dimension): seeded pseudo-random unit
//! vectors, written as a client would, either each f32 at its shortest (`serde_json`, Rust
//! clients: about 10 significant digits) or the f64 nearest to it (Python's `json` and
//! JavaScript's `JSON.stringify` of float32 values: about 17). Number parsing, not the
//! values, is the work: the figures hold for real embeddings.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use proxima_server::api::json_rows::parse_with_rows;
use proxima_server::api::types::{base64_row, parse, InsertRequest};
use serde::Deserialize;

const ROWS: usize = 1_000;
const DIM: usize = 384;

fn unit_vectors(rows: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut v: Vec<f32> = (0..rows * dim)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    for row in v.chunks_exact_mut(dim) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        row.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// `{"vectors": [[…], …]}` with each value written by `number`.
fn numbers_body(v: &[f32], number: impl Fn(f32) -> String) -> Vec<u8> {
    let rows: Vec<String> = v
        .chunks_exact(DIM)
        .map(|row| {
            let values: Vec<String> = row.iter().map(|&x| number(x)).collect();
            format!("[{}]", values.join(","))
        })
        .collect();
    format!(r#"{{"vectors": [{}]}}"#, rows.join(",")).into_bytes()
}

/// `{"vectors": ["<base64>", …]}`.
fn base64_body(v: &[f32]) -> Vec<u8> {
    let rows: Vec<String> = v
        .chunks_exact(DIM)
        .map(|row| format!("\"{}\"", base64_row(row)))
        .collect();
    format!(r#"{{"vectors": [{}]}}"#, rows.join(",")).into_bytes()
}

/// The body as plain `serde_json` reads it.
#[derive(Deserialize)]
struct Plain {
    vectors: Vec<Vec<f32>>,
}

fn fast(body: &[u8]) -> Vec<f32> {
    let r: InsertRequest = parse_with_rows(body).unwrap();
    r.vectors.into_flat(DIM).unwrap()
}

fn via_serde(body: &[u8]) -> Vec<f32> {
    let r: InsertRequest = parse(body).unwrap();
    r.vectors.into_flat(DIM).unwrap()
}

fn plain(body: &[u8]) -> Vec<Vec<f32>> {
    serde_json::from_slice::<Plain>(body).unwrap().vectors
}

fn json_rows(c: &mut Criterion) {
    let v = unit_vectors(ROWS, DIM, 1);
    let bodies = [
        ("f32 shortest", numbers_body(&v, |x| x.to_string())),
        ("f64 of f32", numbers_body(&v, |x| f64::from(x).to_string())),
    ];
    let mut group = c.benchmark_group(format!("json_rows_{ROWS}x{DIM}"));
    group.sample_size(10);
    for (style, body) in &bodies {
        // Every way reads the same floats.
        assert_eq!(fast(body), v, "{style}");
        assert_eq!(via_serde(body), v, "{style}");
        assert_eq!(plain(body).concat(), v, "{style}");
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("fast path", style), body, |b, body| {
            b.iter(|| fast(body))
        });
        group.bench_with_input(
            BenchmarkId::new("serde_json into Rows", style),
            body,
            |b, body| b.iter(|| via_serde(body)),
        );
        group.bench_with_input(
            BenchmarkId::new("serde_json into Vec<Vec<f32>>", style),
            body,
            |b, body| b.iter(|| plain(body)),
        );
    }
    let body = base64_body(&v);
    assert_eq!(fast(&body), v);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_with_input(
        BenchmarkId::new("base64 rows", "f32 LE"),
        &body,
        |b, body| b.iter(|| fast(body)),
    );
    group.finish();
}

criterion_group!(benches, json_rows);
criterion_main!(benches);
