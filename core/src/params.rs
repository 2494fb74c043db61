//! Search parameters and the limits a server enforces on them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::spec::IndexSpec;

/// Per-request search knobs. Index-specific knobs are ignored by indexes that lack them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchParams {
    /// Number of neighbours to return per query.
    pub k: usize,
    /// IVF: number of lists probed (default: [`default_nprobe`] of the segment's `nlist`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nprobe: Option<usize>,
    /// HNSW: size of the dynamic candidate list (`efSearch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef: Option<usize>,
    /// DiskANN: size of the search list (`L`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_list: Option<usize>,
    /// IVF_SQ8, IVF_PQ, HNSW_SQ8: re-ranking. The compressed index is asked for
    /// `k × refine_factor` candidates, which are scored again exactly on the segment's `f32`
    /// rows (the memory-mapped rows file) and the best `k` kept; 1 turns re-ranking off.
    /// Default: the collection's (its index `params.refine_factor`), else
    /// [`default_refine_factor`] of the segment's index. Ignored by indexes that hold the raw
    /// vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refine_factor: Option<usize>,
}

/// Re-ranking factor of compressed indexes (IVF_SQ8, IVF_PQ, HNSW_SQ8) when neither the query
/// nor the collection gives one: `k × 4` candidates re-scored exactly. With IVF_PQ's default
/// `m` (sub-vectors of 4 dimensions) that already finds every exact neighbour the probed lists
/// hold (measured on MiniLM embeddings: × 8 and × 16 gave the same recall@10, 4 % and 20 %
/// slower); a coarser PQ (`m` = dim / 8) needs × 8 to × 16.
pub const DEFAULT_REFINE_FACTOR: usize = 4;
/// IVF lists a query probes by default, at least (all of them when the index has fewer).
pub const MIN_DEFAULT_NPROBE: usize = 64;
/// Above [`MIN_DEFAULT_NPROBE`] × 16 lists, a query probes `nlist / DEFAULT_NPROBE_DIVISOR`
/// of them by default.
pub const DEFAULT_NPROBE_DIVISOR: usize = 16;
/// Most IVF lists a query probes by default (FAISS's GPU indexes take at most 2,048).
pub const MAX_DEFAULT_NPROBE: usize = 1024;

/// IVF lists probed when a query gives no `nprobe`, for an index of `nlist` lists: 64 (all of
/// them when there are fewer), and a sixteenth of them above 1,024 lists, at most 1,024.
///
/// What an IVF search can find is what the lists it probes hold, whatever the codes and the
/// re-ranking: on MiniLM embeddings the share of the exact top 10 found followed the number
/// of lists probed more than the share of the rows, 0.88–0.90 with 16 lists, 0.93 with 32 and
/// 0.96 with 64 (10,000 rows in 256 lists and 50,000 in 1,024 alike; 0.98 with 128 of 1,024).
/// The default `nlist` grows with a segment's rows (≈ 4√rows), so beyond 1,024 lists the
/// default probes a fixed share of them, as a fixed count would probe an ever smaller one.
pub fn default_nprobe(nlist: usize) -> usize {
    (nlist / DEFAULT_NPROBE_DIVISOR)
        .clamp(MIN_DEFAULT_NPROBE, MAX_DEFAULT_NPROBE)
        .min(nlist)
        .max(1)
}

/// Re-ranking factor of a segment serving `spec` when neither the query nor the collection
/// gives one: [`DEFAULT_REFINE_FACTOR`] for compressed indexes, 1 (none) for indexes over the
/// raw vectors.
pub fn default_refine_factor(spec: &IndexSpec) -> usize {
    if spec.is_compressed() {
        DEFAULT_REFINE_FACTOR
    } else {
        1
    }
}

/// Largest `refine_factor` accepted.
pub const MAX_REFINE_FACTOR: usize = 64;
/// Most candidates re-ranking asks an index for, per query (when `k` is larger, `k`).
pub const MAX_REFINE_CANDIDATES: usize = 4096;

/// Checks a `refine_factor` (a query's or a collection's): 1 to [`MAX_REFINE_FACTOR`].
pub fn check_refine_factor(value: usize) -> Result<()> {
    if (1..=MAX_REFINE_FACTOR).contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid(
            "refine_factor",
            value,
            format!("must be between 1 and {MAX_REFINE_FACTOR}"),
        ))
    }
}

/// Candidates a re-ranked search asks the index for: `k × refine_factor`, at most
/// [`MAX_REFINE_CANDIDATES`] (never fewer than `k`).
pub fn refine_candidates(k: usize, refine_factor: usize) -> usize {
    k.saturating_mul(refine_factor.max(1))
        .min(MAX_REFINE_CANDIDATES)
        .max(k)
}

impl SearchParams {
    /// Parameters asking for the `k` nearest neighbours with every index default.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            nprobe: None,
            ef: None,
            search_list: None,
            refine_factor: None,
        }
    }

    /// Sets `nprobe`.
    pub fn with_nprobe(mut self, nprobe: usize) -> Self {
        self.nprobe = Some(nprobe);
        self
    }

    /// Sets `ef`.
    pub fn with_ef(mut self, ef: usize) -> Self {
        self.ef = Some(ef);
        self
    }

    /// Sets `refine_factor`.
    pub fn with_refine_factor(mut self, refine_factor: usize) -> Self {
        self.refine_factor = Some(refine_factor);
        self
    }

    /// Checks the parameters against `limits`.
    pub fn validate(&self, limits: &SearchLimits) -> Result<()> {
        if self.k == 0 || self.k > limits.max_k {
            return Err(Error::KOutOfRange {
                k: self.k,
                max: limits.max_k,
            });
        }
        for (name, value) in [
            ("nprobe", self.nprobe),
            ("ef", self.ef),
            ("search_list", self.search_list),
        ] {
            if let Some(v) = value {
                if v == 0 || v > limits.max_knob {
                    return Err(Error::invalid(
                        name,
                        v,
                        format!("must be between 1 and {}", limits.max_knob),
                    ));
                }
            }
        }
        if let Some(r) = self.refine_factor {
            check_refine_factor(r)?;
        }
        Ok(())
    }
}

/// Upper bounds a server puts on one search request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchLimits {
    /// Largest `k` accepted (default 10,000).
    pub max_k: usize,
    /// Largest number of queries in one batch (default 10,000).
    pub max_queries: usize,
    /// Largest `nprobe`/`ef`/`search_list` accepted (default 65,536).
    pub max_knob: usize,
    /// Largest `k × queries` of one request (default 1,000,000): bounds the memory of an
    /// answer (about 30 MB as JSON), which `max_k × max_queries` alone would not.
    #[serde(default = "default_max_hits")]
    pub max_hits: usize,
}

fn default_max_hits() -> usize {
    1_000_000
}

impl SearchLimits {
    /// Checks that `queries` queries of `k` hits stay within `max_hits`.
    pub fn check_hits(&self, queries: usize, k: usize) -> Result<()> {
        match queries.checked_mul(k) {
            Some(hits) if hits <= self.max_hits => Ok(()),
            _ => Err(Error::ResultTooLarge {
                queries,
                k,
                max: self.max_hits,
            }),
        }
    }
}

impl Default for SearchLimits {
    fn default() -> Self {
        Self {
            max_k: 10_000,
            max_queries: 10_000,
            max_knob: 65_536,
            max_hits: default_max_hits(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_bounds() {
        let limits = SearchLimits::default();
        assert_eq!(
            SearchParams::new(0).validate(&limits),
            Err(Error::KOutOfRange { k: 0, max: 10_000 })
        );
        assert_eq!(
            SearchParams::new(10_001).validate(&limits),
            Err(Error::KOutOfRange {
                k: 10_001,
                max: 10_000
            })
        );
        assert!(SearchParams::new(10_000).validate(&limits).is_ok());
        assert!(SearchParams::new(10)
            .with_nprobe(0)
            .validate(&limits)
            .is_err());
    }

    #[test]
    fn refine_factor_bounds() {
        let limits = SearchLimits::default();
        for bad in [0, MAX_REFINE_FACTOR + 1] {
            let err = SearchParams::new(10)
                .with_refine_factor(bad)
                .validate(&limits)
                .unwrap_err();
            assert!(matches!(
                err,
                Error::InvalidParameter {
                    name: "refine_factor",
                    ..
                }
            ));
        }
        for good in [1, DEFAULT_REFINE_FACTOR, MAX_REFINE_FACTOR] {
            assert!(SearchParams::new(10)
                .with_refine_factor(good)
                .validate(&limits)
                .is_ok());
        }
        assert_eq!(refine_candidates(10, 4), 40);
        assert_eq!(refine_candidates(10, 1), 10);
        assert_eq!(refine_candidates(1000, 64), MAX_REFINE_CANDIDATES);
        assert_eq!(refine_candidates(10_000, 2), 10_000);
    }

    #[test]
    fn defaults_of_nprobe_and_refine_factor() {
        // 64 lists (all of them below 64), a sixteenth above 1,024 lists, 1,024 at most.
        for (nlist, nprobe) in [
            (1, 1),
            (16, 16),
            (64, 64),
            (256, 64),
            (1024, 64),
            (2048, 128),
            (4096, 256),
            (1 << 20, MAX_DEFAULT_NPROBE),
        ] {
            assert_eq!(default_nprobe(nlist), nprobe, "nlist {nlist}");
        }
        let pq = IndexSpec::IvfPq {
            nlist: 1024,
            m: 96,
            nbits: 8,
        };
        assert_eq!(default_refine_factor(&pq), DEFAULT_REFINE_FACTOR);
        assert_eq!(DEFAULT_REFINE_FACTOR, 4);
        assert_eq!(crate::request::default_pq_m(384), 96);
        assert_eq!(default_refine_factor(&IndexSpec::IvfSq8 { nlist: 8 }), 4);
        let hnsw_sq8 = IndexSpec::HnswSq8 {
            m: 16,
            ef_construction: 100,
        };
        assert_eq!(default_refine_factor(&hnsw_sq8), 4);
        assert_eq!(default_refine_factor(&IndexSpec::IvfFlat { nlist: 8 }), 1);
        assert_eq!(default_refine_factor(&IndexSpec::Flat), 1);
        for spec in [pq, hnsw_sq8] {
            assert!(check_refine_factor(default_refine_factor(&spec)).is_ok());
        }
    }

    #[test]
    fn knobs_are_optional_in_json() {
        let p: SearchParams = serde_json::from_str(r#"{"k": 5, "nprobe": 16}"#).unwrap();
        assert_eq!(p, SearchParams::new(5).with_nprobe(16));
    }
}
