//! Search parameters and the limits a server enforces on them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Per-request search knobs. Index-specific knobs are ignored by indexes that lack them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchParams {
    /// Number of neighbours to return per query.
    pub k: usize,
    /// IVF: number of lists probed (default: the index's own default).
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
    /// [`DEFAULT_REFINE_FACTOR`]. Ignored by indexes that hold the raw vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refine_factor: Option<usize>,
}

/// Re-ranking factor of compressed indexes (IVF_SQ8, IVF_PQ, HNSW_SQ8) when neither the query
/// nor the collection gives one: `k × 4` candidates re-scored exactly.
pub const DEFAULT_REFINE_FACTOR: usize = 4;
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
    fn knobs_are_optional_in_json() {
        let p: SearchParams = serde_json::from_str(r#"{"k": 5, "nprobe": 16}"#).unwrap();
        assert_eq!(p, SearchParams::new(5).with_nprobe(16));
    }
}
