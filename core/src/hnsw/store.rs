//! Vector storage of the HNSW cache: f32 rows, SQ8 codes, or both (codes to walk the graph,
//! rows to re-rank). Distances here are "lower is better" for every metric: squared L2, or
//! the negated inner product for IP and cosine.

use serde::{Deserialize, Serialize};

use super::rows::Rows;
use crate::metric::{decode_u8, dot, dot4, dot_u8, l2_squared, l2_squared4, Metric};

/// How vectors are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// 32-bit floats (4 bytes per dimension).
    #[default]
    None,
    /// Scalar quantisation to 8 bits per dimension with a per-vector range (1 byte per
    /// dimension plus 12 bytes per vector): 4× less memory, no training step, so vectors
    /// can be streamed in one at a time.
    Sq8,
}

impl Quantization {
    /// Parses `"none"`/`"f32"` or `"sq8"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "f32" | "flat" => Some(Quantization::None),
            "sq8" => Some(Quantization::Sq8),
            _ => None,
        }
    }

    /// The name used in APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::None => "none",
            Quantization::Sq8 => "sq8",
        }
    }
}

/// A prepared query: the vector and the sums SQ8 distances need.
pub(super) struct Query<'a> {
    pub v: &'a [f32],
    sum: f32,
    sqnorm: f32,
}

/// Per-vector SQ8 parameters: `x ≈ min + step · code`, and `|x̂|²` of the decoded vector.
pub(super) const SQ8_PARAMS: usize = 3;

pub(super) struct VectorStore {
    pub dim: usize,
    pub metric: Metric,
    /// `dim` floats per slot, when rows are held.
    pub raw: Option<Rows<f32>>,
    /// `dim` codes per slot, when SQ8 is on.
    pub codes: Option<Rows<u8>>,
    /// [`SQ8_PARAMS`] floats per slot, when SQ8 is on.
    pub params: Rows<f32>,
}

impl VectorStore {
    pub fn new(dim: usize, metric: Metric, quantization: Quantization, keep_rows: bool) -> Self {
        let sq8 = quantization == Quantization::Sq8;
        Self {
            dim,
            metric,
            raw: (!sq8 || keep_rows).then(|| Rows::new(dim)),
            codes: sq8.then(|| Rows::new(dim)),
            params: Rows::new(SQ8_PARAMS),
        }
    }

    /// Writes a (prepared) vector into `slot`, growing the storage by one slot when
    /// `slot` is the next one.
    pub fn set(&mut self, slot: usize, v: &[f32]) {
        if let Some(raw) = &mut self.raw {
            if raw.len() == slot {
                raw.push(v);
            } else {
                raw.row_mut(slot).copy_from_slice(v);
            }
        }
        if let Some(codes) = &mut self.codes {
            if codes.len() == slot {
                codes.push_default();
                self.params.push_default();
            }
            let p = quantize(v, codes.row_mut(slot));
            self.params.row_mut(slot).copy_from_slice(&p);
        }
    }

    /// True when `v` (prepared) is what `slot` already holds (bit for bit in f32, or the same
    /// codes when only codes are kept).
    pub fn holds(&self, slot: usize, v: &[f32], scratch: &mut Vec<u8>) -> bool {
        let dim = self.dim;
        if let Some(raw) = &self.raw {
            return raw
                .row(slot)
                .iter()
                .zip(v)
                .all(|(a, b)| a.to_bits() == b.to_bits());
        }
        let Some(codes) = &self.codes else {
            return false;
        };
        scratch.clear();
        scratch.resize(dim, 0);
        let p = quantize(v, scratch);
        codes.row(slot) == &scratch[..]
            && self
                .params
                .row(slot)
                .iter()
                .zip(&p)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }

    #[inline(always)]
    pub fn raw_row(&self, slot: usize) -> Option<&[f32]> {
        self.raw.as_ref().map(|r| r.row(slot))
    }

    /// The vector of `slot`: its f32 row, or its codes decoded.
    pub fn decode(&self, slot: usize, out: &mut Vec<f32>) {
        if let Some(row) = self.raw_row(slot) {
            out.clear();
            out.extend_from_slice(row);
        } else if let Some(codes) = &self.codes {
            let p = self.params.row(slot);
            // Overwritten whole: a reused buffer of `dim` floats is not cleared and refilled.
            out.resize(self.dim, 0.0);
            decode_u8(p[0], p[1], codes.row(slot), out);
        } else {
            out.clear();
        }
    }

    pub fn query<'a>(&self, v: &'a [f32]) -> Query<'a> {
        let (sum, sqnorm) = if self.codes.is_some() {
            (sequential_sum(v), dot(v, v))
        } else {
            (0.0, 0.0)
        };
        Query { v, sum, sqnorm }
    }

    /// The distance the graph is walked with: over codes when SQ8 is on, else over rows.
    #[inline]
    pub fn dist(&self, q: &Query<'_>, slot: usize) -> f32 {
        if let Some(codes) = &self.codes {
            let p = self.params.row(slot);
            let ip = p[0] * q.sum + p[1] * dot_u8(q.v, codes.row(slot));
            return match self.metric {
                Metric::L2 => (q.sqnorm - 2.0 * ip + p[2]).max(0.0),
                Metric::InnerProduct | Metric::Cosine => -ip,
            };
        }
        self.exact_dist(q.v, slot).unwrap_or(f32::INFINITY)
    }

    /// [`dist`](Self::dist) of four slots, reading the query once for the four rows.
    #[inline]
    pub fn dist4(&self, q: &Query<'_>, slots: [u32; 4]) -> [f32; 4] {
        let Some(raw) = self.raw.as_ref().filter(|_| self.codes.is_none()) else {
            let [a, b, c, d] = slots;
            return [
                self.dist(q, a as usize),
                self.dist(q, b as usize),
                self.dist(q, c as usize),
                self.dist(q, d as usize),
            ];
        };
        // Spelled out, not `slots.map(..)`: a loop over an array when optimised for size.
        let [a, b, c, d] = slots;
        let rows = [
            raw.row(a as usize),
            raw.row(b as usize),
            raw.row(c as usize),
            raw.row(d as usize),
        ];
        match self.metric {
            Metric::L2 => l2_squared4(q.v, rows),
            Metric::InnerProduct | Metric::Cosine => {
                let [a, b, c, d] = dot4(q.v, rows);
                [-a, -b, -c, -d]
            }
        }
    }

    /// The distance over the f32 row, when rows are held.
    #[inline]
    pub fn exact_dist(&self, q: &[f32], slot: usize) -> Option<f32> {
        let row = self.raw_row(slot)?;
        Some(match self.metric {
            Metric::L2 => l2_squared(q, row),
            Metric::InnerProduct | Metric::Cosine => -dot(q, row),
        })
    }

    /// True when rows and codes are both held: walk over codes, re-rank over rows.
    pub fn reranks(&self) -> bool {
        self.raw.is_some() && self.codes.is_some()
    }

    pub fn memory_bytes(&self) -> usize {
        self.raw.as_ref().map_or(0, Rows::memory_bytes)
            + self.codes.as_ref().map_or(0, Rows::memory_bytes)
            + self.params.memory_bytes()
    }
}

/// `v.iter().sum()` (the same additions in the same order, from `-0.0` as `std`'s), four
/// values a step: a loop `std`'s form leaves one value a step when optimised for size.
fn sequential_sum(v: &[f32]) -> f32 {
    let mut chunks = v.chunks_exact(4);
    let mut sum = -0.0f32;
    for c in &mut chunks {
        sum = sum + c[0] + c[1] + c[2] + c[3];
    }
    for &x in chunks.remainder() {
        sum += x;
    }
    sum
}

/// Quantises `v` into `codes`; returns `[min, step, |decoded|²]`.
fn quantize(v: &[f32], codes: &mut [u8]) -> [f32; SQ8_PARAMS] {
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &x in v {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if !lo.is_finite() {
        lo = 0.0;
        hi = 0.0;
    }
    let step = (hi - lo) / 255.0;
    let inv = if step > 0.0 { 1.0 / step } else { 0.0 };
    let mut sq = 0.0f32;
    for (c, &x) in codes.iter_mut().zip(v) {
        let q = ((x - lo) * inv).round().clamp(0.0, 255.0);
        *c = q as u8;
        let d = lo + step * q;
        sq += d * d;
    }
    [lo, step, sq]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sq8_distances_track_exact_ones() {
        let dim = 48;
        let a: Vec<f32> = (0..dim)
            .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..dim)
            .map(|i| ((i * 104_729) % 89) as f32 / 89.0 - 0.5)
            .collect();
        for metric in [Metric::L2, Metric::InnerProduct] {
            let mut s = VectorStore::new(dim, metric, Quantization::Sq8, true);
            s.set(0, &b);
            let q = s.query(&a);
            let approx = s.dist(&q, 0);
            let exact = s.exact_dist(&a, 0).unwrap();
            assert!(
                (approx - exact).abs() < 0.02 * exact.abs().max(1.0),
                "{metric}: {approx} vs {exact}"
            );
            let mut scratch = Vec::new();
            assert!(s.holds(0, &b, &mut scratch));
            assert!(!s.holds(0, &a, &mut scratch));
        }
    }

    #[test]
    fn the_sequential_sum_is_std_s_sum() {
        for n in 0..40 {
            let v: Vec<f32> = (0..n)
                .map(|i| (i as f32 * 0.37).sin() * 1e3 + 1e-3)
                .collect();
            assert_eq!(
                sequential_sum(&v).to_bits(),
                v.iter().sum::<f32>().to_bits()
            );
        }
        assert_eq!(sequential_sum(&[-0.0; 5]).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn constant_vectors_quantise_without_nan() {
        let mut s = VectorStore::new(4, Metric::L2, Quantization::Sq8, false);
        s.set(0, &[0.25; 4]);
        let mut out = Vec::new();
        s.decode(0, &mut out);
        assert_eq!(out, vec![0.25; 4]);
        let q = s.query(&[0.25; 4]);
        assert!(s.dist(&q, 0).abs() < 1e-6);
    }
}
