//! The index advisor: given the collection size, dimension, a RAM budget and a recall target,
//! recommend an index with its memory plan and the reasons.
//!
//! The recall figures are the typical ceilings of each family on real embeddings with tuned
//! search parameters (the range operators usually reach), used to rule families in or out;
//! the benchmark (`proxima bench`) measures them on the user's own data.
//!
//! [`auto_pick`] is the same advice for a collection whose index is `AUTO`: among the types
//! the server builds, and always with an answer (the best that fits when nothing meets the
//! target).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::request::{default_pq_m, AutoTarget, IndexParams, IndexRequest, IndexType};
use crate::sizing::{format_bytes, plan, recommended_nlist, MemoryPlan};
use crate::spec::IndexSpec;

/// Below this many vectors exact search answers in milliseconds: no index is worth building.
pub const EXACT_UP_TO: u64 = 20_000;

/// What the user asks advice for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdviceRequest {
    pub vectors: u64,
    pub dim: usize,
    /// RAM available to the index, in bytes (`None`: unbounded).
    pub ram_budget: Option<u64>,
    /// Wanted recall@10 against exact search, in (0, 1].
    pub recall_target: f64,
}

/// A candidate the advisor considered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub plan: MemoryPlan,
    /// Typical best recall@10 of this family when tuned.
    pub typical_max_recall: f64,
    /// Why it was chosen or passed over.
    pub verdict: String,
}

/// The advisor's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    pub request: AdviceRequest,
    /// The recommended index, with its plan; `None` when nothing fits the budget.
    pub recommended: Option<Candidate>,
    /// Why this index.
    pub reasons: Vec<String>,
    /// Every candidate, in the order considered.
    pub considered: Vec<Candidate>,
}

/// The largest divisor of `dim` that is at most `dim / per` (PQ sub-vectors of ≥ `per` dims).
fn pq_m(dim: usize, per: usize) -> usize {
    let cap = (dim / per).max(1);
    (1..=cap).rev().find(|m| dim % m == 0).unwrap_or(1)
}

/// Recommends an index.
pub fn advise(req: AdviceRequest) -> Result<Advice> {
    advise_among(req, |_| true, true)
}

/// [`advise`] among the types `available` allows (the others are passed over, "not
/// available"); `nlist_reason` adds the line on the collection-wide `nlist`.
fn advise_among(
    req: AdviceRequest,
    available: impl Fn(IndexType) -> bool,
    nlist_reason: bool,
) -> Result<Advice> {
    crate::validate::check_plan_size(req.vectors, req.dim)?;
    if !(req.recall_target > 0.0 && req.recall_target <= 1.0) {
        return Err(Error::invalid(
            "recall",
            req.recall_target,
            "must be in (0, 1]",
        ));
    }
    let n = req.vectors;
    let dim = req.dim;
    let nlist = recommended_nlist(n);
    let hnsw_m = if req.recall_target > 0.95 { 32 } else { 16 };
    let pq_bytes = pq_m(dim, 8);
    let families: Vec<(IndexSpec, f64, &str)> = vec![
        (
            IndexSpec::Flat,
            1.0,
            "exact: perfect recall, cost grows linearly with N",
        ),
        (
            IndexSpec::Hnsw {
                m: hnsw_m,
                ef_construction: 200,
            },
            0.99,
            "graph: lowest latency at high recall, needs raw vectors + links in RAM",
        ),
        (
            IndexSpec::IvfFlat { nlist },
            0.99,
            "inverted lists over raw vectors: fast build, recall tuned with nprobe",
        ),
        (
            IndexSpec::IvfSq8 { nlist },
            0.97,
            "inverted lists over 8-bit codes: 4x smaller than raw",
        ),
        (
            IndexSpec::HnswSq8 {
                m: hnsw_m,
                ef_construction: 200,
            },
            0.97,
            "graph over 8-bit codes: HNSW speed at a third of its memory",
        ),
        (
            IndexSpec::IvfPq {
                nlist,
                m: default_pq_m(dim),
                nbits: 8,
            },
            0.90,
            "product quantisation: the smallest in-RAM index, lowest recall",
        ),
        (
            IndexSpec::DiskAnn {
                max_degree: 64,
                search_list: 100,
                pq_bytes,
            },
            0.98,
            "SSD graph: only PQ codes in RAM, full vectors and graph on disk",
        ),
    ];
    let mut considered = Vec::new();
    let mut chosen: Option<usize> = None;
    let mut reasons = Vec::new();
    for (spec, max_recall, what) in families {
        if spec.validate(dim).is_err() {
            continue;
        }
        let p = plan(n, dim, spec)?;
        let fits = req.ram_budget.is_none_or(|b| p.recommended_ram_bytes <= b);
        let trainable = (spec.min_training_vectors() as u64) <= n;
        let verdict = if !available(IndexType::of(&spec)) {
            "skipped: not available in this server".to_string()
        } else if !trainable {
            format!(
                "skipped: needs {} training vectors, collection has {n}",
                spec.min_training_vectors()
            )
        } else if max_recall < req.recall_target {
            format!(
                "skipped: typically tops out near recall {max_recall:.2} < target {:.3}",
                req.recall_target
            )
        } else if !fits {
            format!(
                "skipped: needs {} with buffer, over the {} budget",
                format_bytes(p.recommended_ram_bytes),
                format_bytes(req.ram_budget.unwrap_or(0))
            )
        } else if matches!(spec, IndexSpec::Flat) && n > EXACT_UP_TO && req.recall_target < 1.0 {
            format!("fits, but exact search over {n} vectors is slow per query")
        } else if chosen.is_none() {
            chosen = Some(considered.len());
            if nlist_reason {
                reasons.push(format!("{spec}: {what}"));
            } else {
                reasons.push(format!("{}: {what}", without_nlist(spec)));
            }
            reasons.push(format!(
                "needs {} RAM with the 50 % buffer{}",
                format_bytes(p.recommended_ram_bytes),
                req.ram_budget
                    .map(|b| format!(", within the {} budget", format_bytes(b)))
                    .unwrap_or_default()
            ));
            if p.disk_bytes > 0 {
                reasons.push(format!("plus {} on SSD", format_bytes(p.disk_bytes)));
            }
            if let (true, Some(nl)) = (nlist_reason, spec.nlist()) {
                reasons.push(format!(
                    "nlist {nl} (next power of two above 4√N, ≥ 39 × nlist training vectors)"
                ));
            }
            "recommended".to_string()
        } else {
            "fits; a later choice in order of preference".to_string()
        };
        considered.push(Candidate {
            plan: p,
            typical_max_recall: max_recall,
            verdict,
        });
    }
    if chosen.is_none() {
        reasons.push(
            "nothing fits: raise the RAM budget, lower the recall target or shard the collection"
                .to_string(),
        );
    }
    Ok(Advice {
        request: req,
        recommended: chosen.map(|i| considered[i].clone()),
        reasons,
        considered,
    })
}

/// What `AUTO` picked for a collection, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoPick {
    /// The collection's size the pick was made for.
    pub vectors: u64,
    /// The index picked; IVF without `nlist` (each segment takes its own).
    pub index: IndexRequest,
    /// The advisor's reasons.
    pub reasons: Vec<String>,
}

/// Picks the index for an `AUTO` collection of `vectors` vectors of dimension `dim`, among
/// the types `available` allows: the advisor's recommendation for `target`. When nothing
/// meets the target, the best of what is there: among the indexes that fit the RAM budget,
/// the one with the highest typical recall (exact search only up to [`EXACT_UP_TO`]
/// vectors); when none fits, the one that needs the least RAM.
pub fn auto_pick(
    vectors: u64,
    dim: usize,
    target: AutoTarget,
    available: impl Fn(IndexType) -> bool,
) -> Result<AutoPick> {
    let req = AdviceRequest {
        vectors: vectors.max(1),
        dim,
        ram_budget: target.ram_bytes,
        recall_target: target.recall,
    };
    let advice = advise_among(req, &available, false)?;
    let budget = target.ram_bytes.map_or(String::new(), |b| {
        format!(", RAM budget {}", format_bytes(b))
    });
    let mut reasons = vec![format!(
        "picked for {} vectors × {dim}, recall target {}{budget}",
        req.vectors, target.recall
    )];
    let chosen = match advice.recommended {
        Some(c) => {
            reasons.extend(advice.reasons);
            c
        }
        None => {
            let usable: Vec<&Candidate> = advice
                .considered
                .iter()
                .filter(|c| {
                    available(IndexType::of(&c.plan.index))
                        && c.plan.min_training_vectors <= req.vectors
                })
                .collect();
            let fits = |c: &Candidate| {
                target
                    .ram_bytes
                    .is_none_or(|b| c.plan.recommended_ram_bytes <= b)
            };
            let exact_ok = |c: &Candidate| {
                !matches!(c.plan.index, IndexSpec::Flat) || req.vectors <= EXACT_UP_TO
            };
            let best_recall = usable
                .iter()
                .copied()
                .filter(|c| fits(c) && exact_ok(c))
                .fold(None::<&Candidate>, |best, c| match best {
                    Some(b) if b.typical_max_recall >= c.typical_max_recall => Some(b),
                    _ => Some(c),
                });
            let chosen = match best_recall {
                Some(c) => {
                    reasons.push(format!(
                        "no index is expected to reach recall {} within the budget: {} has the highest typical recall ({:.2}) of those that fit",
                        target.recall,
                        without_nlist(c.plan.index),
                        c.typical_max_recall
                    ));
                    c
                }
                None => {
                    let smallest = usable
                        .iter()
                        .copied()
                        .min_by_key(|c| c.plan.recommended_ram_bytes)
                        .ok_or_else(|| {
                            Error::invalid("type", "AUTO", "no index type is available")
                        })?;
                    reasons.push(format!(
                        "nothing fits the RAM budget: {} needs the least ({} with the 50 % buffer)",
                        without_nlist(smallest.plan.index),
                        format_bytes(smallest.plan.recommended_ram_bytes)
                    ));
                    smallest
                }
            };
            chosen.clone()
        }
    };
    Ok(AutoPick {
        vectors: req.vectors,
        index: without_nlist(chosen.plan.index),
        reasons,
    })
}

/// `spec` as a request whose IVF `nlist` is left to each segment.
fn without_nlist(spec: IndexSpec) -> IndexRequest {
    let index = IndexRequest::from(spec);
    IndexRequest {
        params: IndexParams {
            nlist: None,
            ..index.params
        },
        ..index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(n: u64, dim: usize, ram: Option<u64>, recall: f64) -> Advice {
        advise(AdviceRequest {
            vectors: n,
            dim,
            ram_budget: ram,
            recall_target: recall,
        })
        .unwrap()
    }

    fn chosen(a: &Advice) -> &'static str {
        a.recommended
            .as_ref()
            .map_or("NONE", |c| c.plan.index.type_name())
    }

    #[test]
    fn small_collections_stay_exact() {
        assert_eq!(chosen(&ask(5_000, 384, None, 0.95)), "FLAT");
    }

    #[test]
    fn roomy_budget_gets_hnsw() {
        let a = ask(1_000_000, 128, Some(64 << 30), 0.95);
        assert_eq!(chosen(&a), "HNSW");
        assert!(a.reasons.iter().any(|r| r.contains("budget")));
    }

    #[test]
    fn tight_budget_moves_down_the_ladder() {
        // 10M × 768: raw is 30.7 GB; 16 GiB rules out raw-vector indexes.
        let a = ask(10_000_000, 768, Some(16 << 30), 0.95);
        let kind = chosen(&a);
        assert!(
            kind == "IVF_SQ8" || kind == "HNSW_SQ8" || kind == "DISKANN",
            "{kind}"
        );
        let rec = a.recommended.unwrap();
        assert!(rec.plan.recommended_ram_bytes <= 16 << 30);
        // 8 GiB leaves DiskANN (PQ codes in RAM, vectors on SSD) at recall 0.95 ...
        let a = ask(10_000_000, 768, Some(8 << 30), 0.95);
        assert_eq!(chosen(&a), "DISKANN");
        assert!(a.reasons.iter().any(|r| r.contains("on SSD")));
        // ... and in-RAM IVF_PQ when the recall target allows it.
        assert_eq!(chosen(&ask(10_000_000, 768, Some(8 << 30), 0.85)), "IVF_PQ");
        assert_eq!(chosen(&ask(10_000_000, 768, Some(1 << 30), 0.85)), "NONE");
    }

    #[test]
    fn auto_pick_keeps_to_available_types_and_falls_back() {
        let target = |recall, ram| AutoTarget {
            recall,
            ram_bytes: ram,
        };
        let no_diskann = |t: IndexType| t != IndexType::DiskAnn;
        let small = auto_pick(5_000, 384, target(0.95, None), no_diskann).unwrap();
        assert_eq!(small.index, IndexRequest::new(IndexType::Flat));
        assert!(
            small.reasons[0].contains("5000 vectors × 384"),
            "{:?}",
            small.reasons
        );
        let roomy = auto_pick(1_000_000, 128, target(0.95, None), no_diskann).unwrap();
        assert_eq!(roomy.index.kind, IndexType::Hnsw);
        // 10M × 768 in 8 GiB at recall 0.95 is DiskANN's; without it, the best that fits.
        let a = auto_pick(10_000_000, 768, target(0.95, Some(8 << 30)), no_diskann).unwrap();
        assert_eq!(a.index.kind, IndexType::IvfPq);
        assert_eq!(a.index.params.nlist, None, "nlist is left to each segment");
        assert!(
            a.reasons
                .iter()
                .any(|r| r.contains("highest typical recall")),
            "{:?}",
            a.reasons
        );
        let d = auto_pick(10_000_000, 768, target(0.95, Some(8 << 30)), |_| true).unwrap();
        assert_eq!(d.index.kind, IndexType::DiskAnn);
        // Nothing fits 1 GiB: the smallest.
        let n = auto_pick(10_000_000, 768, target(0.85, Some(1 << 30)), no_diskann).unwrap();
        assert_eq!(n.index.kind, IndexType::IvfPq);
        assert!(n.reasons.iter().any(|r| r.contains("needs the least")));
        // Past the exact range with recall 1.0 asked: FLAT is what reaches it.
        let exact = auto_pick(1_000_000, 128, target(1.0, None), no_diskann).unwrap();
        assert_eq!(exact.index.kind, IndexType::Flat);
    }

    #[test]
    fn perfect_recall_means_exact() {
        assert_eq!(chosen(&ask(1_000_000, 128, None, 1.0)), "FLAT");
        assert!(advise(AdviceRequest {
            vectors: 1,
            dim: 8,
            ram_budget: None,
            recall_target: 1.5
        })
        .is_err());
    }
}
