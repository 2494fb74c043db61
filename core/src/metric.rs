//! Similarity metrics, their score conventions and the distance kernels.
//!
//! # Score convention
//! Every [`Hit`](crate::Hit) carries a `score` whose meaning depends on the metric:
//!
//! | metric | score | better |
//! |---|---|---|
//! | [`Metric::L2`] | squared Euclidean distance | lower |
//! | [`Metric::InnerProduct`] | inner product | higher |
//! | [`Metric::Cosine`] | cosine similarity in \[-1, 1\] | higher |
//!
//! Cosine is implemented as inner product over L2-normalised vectors: vectors are normalised on
//! insert and queries on search, so an index never sees an unnormalised cosine vector.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// How two vectors are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Squared Euclidean distance; lower is better.
    L2,
    /// Inner (dot) product; higher is better.
    #[serde(rename = "ip", alias = "inner_product")]
    InnerProduct,
    /// Cosine similarity (inner product of L2-normalised vectors); higher is better.
    Cosine,
}

impl Metric {
    /// True when a higher score means a closer vector.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::L2)
    }

    /// Orders two scores so that the better one comes first.
    pub fn compare(self, a: f32, b: f32) -> Ordering {
        if self.higher_is_better() {
            b.total_cmp(&a)
        } else {
            a.total_cmp(&b)
        }
    }

    /// True when vectors must be L2-normalised before they reach an index.
    pub fn normalizes(self) -> bool {
        matches!(self, Metric::Cosine)
    }

    /// The kernel that scores a block of queries against one row under this metric (AVX2 +
    /// FMA where the CPU has them). Chosen once per search, not per row: the CPU check costs
    /// as much as scoring a short row.
    pub fn row_scorer(self) -> RowScorer {
        let l2 = matches!(self, Metric::L2);
        #[cfg(target_arch = "x86_64")]
        if x86::available() {
            return if l2 { x86::l2_rows } else { x86::dot_rows };
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        return if l2 {
            wasm_rows::l2_rows
        } else {
            wasm_rows::dot_rows
        };
        #[allow(unreachable_code)]
        if l2 {
            |queries, row, out| score_rows_with::<false>(true, queries, row, out)
        } else {
            |queries, row, out| score_rows_with::<false>(false, queries, row, out)
        }
    }

    /// The score of `a` against `b`, assuming both were prepared with [`Metric::prepare`].
    #[inline]
    pub fn score(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::L2 => l2_squared(a, b),
            Metric::InnerProduct | Metric::Cosine => dot(a, b),
        }
    }

    /// Prepares vectors in place for this metric (normalises them for cosine).
    ///
    /// Zero vectors are left as zeros: their cosine with anything is 0.
    pub fn prepare(self, vectors: &mut [f32], dim: usize) {
        if self.normalizes() && dim > 0 {
            for row in vectors.chunks_exact_mut(dim) {
                normalize(row);
            }
        }
    }

    /// The lowercase name used in APIs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::InnerProduct => "ip",
            Metric::Cosine => "cosine",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Metric {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" => Ok(Metric::L2),
            "ip" | "inner_product" | "dot" => Ok(Metric::InnerProduct),
            "cosine" | "cos" => Ok(Metric::Cosine),
            _ => Err(Error::invalid(
                "metric",
                s,
                "expected one of l2, ip, cosine",
            )),
        }
    }
}

/// Floats summed in independent lanes: two 8-wide AVX registers (four SSE ones). More lanes
/// measured no faster (a single query is bound by memory bandwidth, and the final sum over the
/// lanes grows).
const LANES: usize = 16;

/// The kernels' one body, written so that LLVM vectorises it without intrinsics; `FUSED` uses
/// fused multiply-adds (only where the CPU has them: elsewhere `mul_add` is a library call).
#[inline(always)]
fn sum_lanes<const FUSED: bool>(
    a: &[f32],
    b: &[f32],
    term: impl Fn(f32, f32) -> (f32, f32),
) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let (ca, ra) = a.split_at(a.len() - a.len() % LANES);
    let (cb, rb) = b.split_at(ca.len());
    for (x, y) in ca.chunks_exact(LANES).zip(cb.chunks_exact(LANES)) {
        for i in 0..LANES {
            let (p, q) = term(x[i], y[i]);
            acc[i] = if FUSED {
                p.mul_add(q, acc[i])
            } else {
                acc[i] + p * q
            };
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        let (p, q) = term(*x, *y);
        sum += p * q;
    }
    sum
}

#[inline(always)]
fn dot_with<const FUSED: bool>(a: &[f32], b: &[f32]) -> f32 {
    sum_lanes::<FUSED>(a, b, |x, y| (x, y))
}

#[inline(always)]
fn l2_with<const FUSED: bool>(a: &[f32], b: &[f32]) -> f32 {
    sum_lanes::<FUSED>(a, b, |x, y| (x - y, x - y))
}

/// The same kernels compiled for AVX2 with FMA, chosen at run time where the CPU has them.
#[cfg(target_arch = "x86_64")]
mod x86 {
    /// Whether this CPU runs the AVX2 + FMA kernels (the check is cached by std).
    #[inline]
    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA ([`available`]).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        super::dot_with::<true>(a, b)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA ([`available`]).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        super::l2_with::<true>(a, b)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA ([`available`]).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn batch4(l2: bool, q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
        super::batch4_with::<true>(l2, q, rows)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn score_rows(l2: bool, queries: &[f32], row: &[f32], out: &mut [f32]) {
        super::score_rows_with::<true>(l2, queries, row, out)
    }

    /// A [`super::RowScorer`]; only handed out by `Metric::row_scorer` after [`available`].
    pub fn dot_rows(queries: &[f32], row: &[f32], out: &mut [f32]) {
        // SAFETY: reachable only through `row_scorer`, which checked AVX2 and FMA.
        unsafe { score_rows(false, queries, row, out) }
    }

    /// A [`super::RowScorer`]; only handed out by `Metric::row_scorer` after [`available`].
    pub fn l2_rows(queries: &[f32], row: &[f32], out: &mut [f32]) {
        // SAFETY: reachable only through `row_scorer`, which checked AVX2 and FMA.
        unsafe { score_rows(true, queries, row, out) }
    }
}

/// Scores every query of a row-major block (rows as long as `row`) against `row`, into `out`.
pub type RowScorer = fn(queries: &[f32], row: &[f32], out: &mut [f32]);

/// [`RowScorer`]s on the SIMD128 kernels (the ones [`Metric::score`] uses there): the portable
/// loop is not vectorised when the browser module is optimised for size.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm_rows {
    pub fn dot_rows(queries: &[f32], row: &[f32], out: &mut [f32]) {
        rows(false, queries, row, out)
    }

    pub fn l2_rows(queries: &[f32], row: &[f32], out: &mut [f32]) {
        rows(true, queries, row, out)
    }

    fn rows(l2: bool, queries: &[f32], row: &[f32], out: &mut [f32]) {
        if row.is_empty() {
            out.iter_mut().for_each(|o| *o = 0.0);
            return;
        }
        for (q, o) in queries.chunks_exact(row.len()).zip(out) {
            *o = if l2 {
                crate::simd128::l2_squared(q, row)
            } else {
                crate::simd128::dot(q, row)
            };
        }
    }
}

#[inline(always)]
fn score_rows_with<const FUSED: bool>(l2: bool, queries: &[f32], row: &[f32], out: &mut [f32]) {
    if row.is_empty() {
        out.iter_mut().for_each(|o| *o = 0.0);
        return;
    }
    for (q, o) in queries.chunks_exact(row.len()).zip(out) {
        *o = if l2 {
            l2_with::<FUSED>(q, row)
        } else {
            dot_with::<FUSED>(q, row)
        };
    }
}

/// Inner product (AVX2 + FMA where the CPU has them).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { x86::dot(a, b) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return crate::simd128::dot(a, b);
    #[allow(unreachable_code)]
    dot_with::<false>(a, b)
}

/// Squared Euclidean distance (AVX2 + FMA where the CPU has them).
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { x86::l2_squared(a, b) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return crate::simd128::l2_squared(a, b);
    #[allow(unreachable_code)]
    l2_with::<false>(a, b)
}

/// Four inner products of `q` with four rows (each as long as `q`): the query is read once
/// per step for the four rows, and the four sums run independently.
#[inline]
pub fn dot4(q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { x86::batch4(false, q, rows) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return crate::simd128::batch4::<false>(q, rows);
    #[allow(unreachable_code)]
    batch4_with::<false>(false, q, rows)
}

/// Four squared L2 distances from `q` to four rows; see [`dot4`].
#[inline]
pub fn l2_squared4(q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { x86::batch4(true, q, rows) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return crate::simd128::batch4::<true>(q, rows);
    #[allow(unreachable_code)]
    batch4_with::<false>(true, q, rows)
}

/// The body of [`dot4`] and [`l2_squared4`]: eight lanes per row, written so that LLVM
/// vectorises it.
#[inline(always)]
fn batch4_with<const FUSED: bool>(l2: bool, q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
    const W: usize = 8;
    let split = q.len() - q.len() % W;
    let mut acc = [[0.0f32; W]; 4];
    for start in (0..split).step_by(W) {
        let qc: &[f32; W] = q[start..start + W].try_into().expect("W floats");
        for (a, row) in acc.iter_mut().zip(&rows) {
            let rc: &[f32; W] = row[start..start + W].try_into().expect("W floats");
            for l in 0..W {
                let (x, y) = if l2 {
                    (qc[l] - rc[l], qc[l] - rc[l])
                } else {
                    (qc[l], rc[l])
                };
                a[l] = if FUSED {
                    x.mul_add(y, a[l])
                } else {
                    a[l] + x * y
                };
            }
        }
    }
    let mut out = [0.0f32; 4];
    for ((o, a), row) in out.iter_mut().zip(&acc).zip(&rows) {
        *o = a.iter().sum();
        for i in split..q.len() {
            let (x, y) = if l2 {
                (q[i] - row[i], q[i] - row[i])
            } else {
                (q[i], row[i])
            };
            *o += x * y;
        }
    }
    out
}

/// `Σ q[i] · codes[i]`: the inner product of a float vector with 8-bit codes (SQ8 storage).
#[inline]
pub fn dot_u8(q: &[f32], codes: &[u8]) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return crate::simd128::dot_u8(q, codes);
    #[allow(unreachable_code)]
    {
        debug_assert_eq!(q.len(), codes.len());
        let mut acc = [0.0f32; LANES];
        let split = q.len() - q.len() % LANES;
        for (x, c) in q[..split]
            .chunks_exact(LANES)
            .zip(codes[..split].chunks_exact(LANES))
        {
            for i in 0..LANES {
                acc[i] += x[i] * f32::from(c[i]);
            }
        }
        let mut sum: f32 = acc.iter().sum();
        for (x, c) in q[split..].iter().zip(&codes[split..]) {
            sum += x * f32::from(*c);
        }
        sum
    }
}

/// SQ8 codes decoded: `out[i] = min + step · codes[i]` (as long as the shorter of the two).
#[inline]
pub fn decode_u8(min: f32, step: f32, codes: &[u8], out: &mut [f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return crate::simd128::decode_u8(min, step, codes, out);
    #[allow(unreachable_code)]
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = min + step * f32::from(c);
    }
}

/// Scales `v` to unit length in place; a zero vector stays zero. The norm is computed in f64,
/// so rows of tiny or huge (finite) values normalise exactly too.
pub fn normalize(v: &mut [f32]) {
    let norm = crate::validate::squared_norm(v).sqrt();
    if norm > 0.0 && norm.is_finite() {
        let inv = 1.0 / norm;
        v.iter_mut().for_each(|x| *x = (f64::from(*x) * inv) as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    #[test]
    fn parses_and_prints_names() {
        for m in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            assert_eq!(m.as_str().parse::<Metric>().unwrap(), m);
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.as_str()));
        }
        assert!(matches!(
            "manhattan".parse::<Metric>(),
            Err(Error::InvalidParameter { name: "metric", .. })
        ));
    }

    #[test]
    fn compare_puts_better_first() {
        assert_eq!(Metric::L2.compare(0.1, 0.5), Ordering::Less);
        assert_eq!(Metric::InnerProduct.compare(0.1, 0.5), Ordering::Greater);
    }

    #[test]
    fn batched_kernels_match_one_at_a_time() {
        for dim in [1, 3, 7, 8, 9, 16, 31, 64, 384, 385] {
            let row = |s: usize| -> Vec<f32> {
                (0..dim)
                    .map(|i| ((i * 31 + s * 17) % 23) as f32 / 7.0 - 1.5)
                    .collect()
            };
            let (q, r0, r1, r2, r3) = (row(0), row(1), row(2), row(3), row(4));
            let rows = [&r0[..], &r1[..], &r2[..], &r3[..]];
            let dots = dot4(&q, rows);
            let l2s = l2_squared4(&q, rows);
            for j in 0..4 {
                let (d, l) = (dot(&q, rows[j]), l2_squared(&q, rows[j]));
                assert!(
                    (dots[j] - d).abs() <= 1e-4 * d.abs().max(1.0),
                    "dim {dim}: {} vs {d}",
                    dots[j]
                );
                assert!(
                    (l2s[j] - l).abs() <= 1e-4 * l.max(1.0),
                    "dim {dim}: {} vs {l}",
                    l2s[j]
                );
            }
        }
    }

    #[test]
    fn zero_vector_stays_zero() {
        let mut v = vec![0.0; 5];
        normalize(&mut v);
        assert_eq!(v, vec![0.0; 5]);
    }

    #[test]
    fn decode_u8_is_min_plus_step_times_code() {
        let codes = [0u8, 1, 128, 255, 7];
        let mut out = [f32::NAN; 5];
        decode_u8(-0.5, 0.25, &codes, &mut out);
        assert_eq!(out, [-0.5, -0.25, 31.5, 63.25, 1.25]);
    }

    proptest! {
        #[test]
        fn kernels_match_naive(pair in (1usize..140).prop_flat_map(|d| (
            proptest::collection::vec(-10.0f32..10.0, d),
            proptest::collection::vec(-10.0f32..10.0, d)))) {
            let (a, b) = pair;
            let d = naive_dot(&a, &b);
            let l2: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
            // The dispatched kernels (AVX2 + FMA where available) and the portable ones.
            for (got_dot, got_l2) in [
                (dot(&a, &b), l2_squared(&a, &b)),
                (dot_with::<false>(&a, &b), l2_with::<false>(&a, &b)),
            ] {
                prop_assert!((got_dot as f64 - d).abs() <= 1e-3 * (1.0 + d.abs()));
                prop_assert!((got_l2 as f64 - l2).abs() <= 1e-3 * (1.0 + l2));
            }
            // A block of queries scores as the queries one by one.
            let queries: Vec<f32> = a.iter().chain(&b).copied().collect();
            for metric in [Metric::L2, Metric::InnerProduct] {
                let mut out = [0.0f32; 2];
                metric.row_scorer()(&queries, &b, &mut out);
                prop_assert_eq!(out, [metric.score(&a, &b), metric.score(&b, &b)]);
            }
        }

        #[test]
        fn cosine_is_ip_after_normalisation(pair in (1usize..64).prop_flat_map(|d| (
            proptest::collection::vec(-5.0f32..5.0, d),
            proptest::collection::vec(-5.0f32..5.0, d)))) {
            let (mut a, mut b) = pair;
            let na = naive_dot(&a, &a).sqrt();
            let nb = naive_dot(&b, &b).sqrt();
            prop_assume!(na > 1e-3 && nb > 1e-3);
            let cosine = naive_dot(&a, &b) / (na * nb);
            let d = a.len();
            Metric::Cosine.prepare(&mut a, d);
            Metric::Cosine.prepare(&mut b, d);
            let ip = Metric::Cosine.score(&a, &b) as f64;
            prop_assert!((ip - cosine).abs() < 1e-4, "ip {} cosine {}", ip, cosine);
            prop_assert!((naive_dot(&a, &a) - 1.0).abs() < 1e-4);
        }
    }
}
