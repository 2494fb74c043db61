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

/// Number of independent accumulators: wide enough for the compiler to keep 8 lanes busy.
const LANES: usize = 8;

/// Inner product, written so that LLVM vectorises it without `unsafe` intrinsics.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let (ca, ra) = a.split_at(a.len() - a.len() % LANES);
    let (cb, rb) = b.split_at(ca.len());
    for (x, y) in ca.chunks_exact(LANES).zip(cb.chunks_exact(LANES)) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

/// Squared Euclidean distance, vectorisable like [`dot`].
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let (ca, ra) = a.split_at(a.len() - a.len() % LANES);
    let (cb, rb) = b.split_at(ca.len());
    for (x, y) in ca.chunks_exact(LANES).zip(cb.chunks_exact(LANES)) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        let d = x - y;
        sum += d * d;
    }
    sum
}

/// Scales `v` to unit length in place; a zero vector stays zero.
pub fn normalize(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 && norm.is_finite() {
        let inv = 1.0 / norm;
        v.iter_mut().for_each(|x| *x *= inv);
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
    fn zero_vector_stays_zero() {
        let mut v = vec![0.0; 5];
        normalize(&mut v);
        assert_eq!(v, vec![0.0; 5]);
    }

    proptest! {
        #[test]
        fn kernels_match_naive(pair in (1usize..70).prop_flat_map(|d| (
            proptest::collection::vec(-10.0f32..10.0, d),
            proptest::collection::vec(-10.0f32..10.0, d)))) {
            let (a, b) = pair;
            let d = naive_dot(&a, &b);
            prop_assert!((dot(&a, &b) as f64 - d).abs() <= 1e-3 * (1.0 + d.abs()));
            let l2: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
            prop_assert!((l2_squared(&a, &b) as f64 - l2).abs() <= 1e-3 * (1.0 + l2));
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
