//! Exact search throughput: the kernels every growing segment, FLAT segment and browser cache
//! search with. `cargo bench -p proxima-core --features parallel --bench exact`.
//!
//! The vectors are seeded pseudo-random unit vectors: the cost of an exact scan does not
//! depend on the values, only on the sizes (real-data figures: `proxima bench engine`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use proxima_core::exact::exact_search;
use proxima_core::Metric;

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
    Metric::Cosine.prepare(&mut v, dim);
    v
}

fn exact(c: &mut Criterion) {
    let (rows, dim, k) = (20_000, 384, 10);
    let base = unit_vectors(rows, dim, 1);
    let mut group = c.benchmark_group("exact_search_20000x384");
    group.sample_size(10);
    for nq in [1usize, 100] {
        let queries = unit_vectors(nq, dim, 2);
        for metric in [Metric::InnerProduct, Metric::L2] {
            group.throughput(Throughput::Elements(nq as u64));
            group.bench_with_input(
                BenchmarkId::new(metric.as_str(), format!("{nq} queries")),
                &queries,
                |b, q| b.iter(|| exact_search(&base, None, q, dim, metric, k, None)),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, exact);
criterion_main!(benches);
