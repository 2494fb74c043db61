//! Index backends of the server.

pub mod blas_exact;
pub mod faiss_backend;
pub mod gpu;

/// Deterministic clustered vectors for tests: `centres` random centres in [-1, 1]^dim with
/// uniform noise of amplitude `noise`. Approximate indexes reach meaningful recall on them,
/// unlike on uniform noise.
#[cfg(test)]
pub(crate) fn clustered(n: usize, dim: usize, seed: u64, centres: usize, noise: f32) -> Vec<f32> {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    };
    let points: Vec<f32> = (0..centres * dim).map(|_| next()).collect();
    let mut out = Vec::with_capacity(n * dim);
    for i in 0..n {
        let c = (i * 7919) % centres;
        for j in 0..dim {
            out.push(points[c * dim + j] + noise * next());
        }
    }
    out
}
