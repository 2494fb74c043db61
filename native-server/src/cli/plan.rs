//! `proxima plan`: the memory plan and the index advice, as tables.

use anyhow::Context;
use clap::Args;
use proxima_core::advisor::{advise, Advice, AdviceRequest};
use proxima_core::request::{IndexParams, IndexRequest, IndexType};
use proxima_core::sizing::{format_bytes, parse_bytes, plan, MemoryPlan};
use proxima_core::IndexSpec;
use serde::Serialize;

#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    /// Number of vectors.
    #[arg(long)]
    pub vectors: u64,
    /// Vector dimension.
    #[arg(long)]
    pub dim: usize,
    /// Index type to size: FLAT, IVF_FLAT, IVF_SQ8, IVF_PQ, HNSW, HNSW_SQ8, DISKANN
    /// (default: the advisor's recommendation).
    #[arg(long)]
    pub index: Option<String>,
    /// IVF lists (default: the next power of two above 4√N, at most N/39).
    #[arg(long)]
    pub nlist: Option<usize>,
    /// PQ sub-quantisers (IVF_PQ; default: the smallest divisor of dim ≥ dim/4) or HNSW links
    /// per node (default 16; efConstruction 100).
    #[arg(long)]
    pub m: Option<usize>,
    /// PQ bits per code (default 8).
    #[arg(long)]
    pub nbits: Option<usize>,
    /// RAM available, e.g. 64GiB or 16GB.
    #[arg(long)]
    pub ram: Option<String>,
    /// Recall@10 target for the advisor.
    #[arg(long, default_value_t = 0.95)]
    pub recall: f64,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// What `plan` computes: the requested plan (if an index was named) and the advice.
#[derive(Debug, Serialize)]
pub struct PlanReport {
    pub plan: Option<MemoryPlan>,
    pub advice: Advice,
}

/// Builds the index spec the user named, filling in the defaults a collection's index gets
/// (`proxima_core::request`), `nlist` for `--vectors` rows.
pub fn spec_from_args(args: &PlanArgs) -> anyhow::Result<Option<IndexSpec>> {
    let Some(name) = &args.index else {
        return Ok(None);
    };
    let normalised = name.to_ascii_uppercase().replace('-', "_");
    let kind: IndexType = serde_json::from_value(serde_json::Value::String(normalised.clone()))
        .ok()
        .filter(|k| *k != IndexType::Auto)
        .with_context(|| {
            format!(
                "unknown index type {normalised}: use FLAT, IVF_FLAT, IVF_SQ8, IVF_PQ, HNSW, HNSW_SQ8 or DISKANN"
            )
        })?;
    let takes = |p: &str| kind.param_names().contains(&p);
    let request = IndexRequest {
        kind,
        params: IndexParams {
            nlist: args.nlist.filter(|_| takes("nlist")),
            m: args.m.filter(|_| takes("m")),
            nbits: args.nbits.filter(|_| takes("nbits")),
            ..IndexParams::default()
        },
    };
    Ok(request.spec_for(args.dim, args.vectors))
}

/// Computes the report for `args`.
pub fn report(args: &PlanArgs) -> anyhow::Result<PlanReport> {
    let ram_budget = args
        .ram
        .as_deref()
        .map(parse_bytes)
        .transpose()
        .context("--ram")?;
    let plan = spec_from_args(args)?
        .map(|spec| plan(args.vectors, args.dim, spec))
        .transpose()?;
    let advice = advise(AdviceRequest {
        vectors: args.vectors,
        dim: args.dim,
        ram_budget,
        recall_target: args.recall,
    })?;
    Ok(PlanReport { plan, advice })
}

/// Renders the report as the tables `proxima plan` prints.
pub fn render(report: &PlanReport) -> String {
    let mut out = String::new();
    if let Some(plan) = &report.plan {
        out.push_str(&plan.to_string());
        out.push('\n');
    }
    let a = &report.advice;
    out.push_str(&format!(
        "Advice for {} vectors × {} dims, recall ≥ {}{}\n",
        a.request.vectors,
        a.request.dim,
        a.request.recall_target,
        a.request
            .ram_budget
            .map(|b| format!(", RAM budget {}", format_bytes(b)))
            .unwrap_or_default()
    ));
    out.push_str(&format!(
        "  {:<58} {:>12} {:>12} {:>12}  {}\n",
        "index", "index RAM", "with buffer", "disk", "verdict"
    ));
    for c in &a.considered {
        out.push_str(&format!(
            "  {:<58} {:>12} {:>12} {:>12}  {}\n",
            c.plan.index.to_string(),
            format_bytes(c.plan.index_bytes),
            format_bytes(c.plan.recommended_ram_bytes),
            if c.plan.disk_bytes > 0 {
                format_bytes(c.plan.disk_bytes)
            } else {
                "-".to_string()
            },
            c.verdict
        ));
    }
    match &a.recommended {
        Some(c) => out.push_str(&format!("Recommended: {}\n", c.plan.index)),
        None => out.push_str("Recommended: nothing fits\n"),
    }
    for r in &a.reasons {
        out.push_str(&format!("  - {r}\n"));
    }
    out
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let report = report(&args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(index: Option<&str>) -> PlanArgs {
        PlanArgs {
            vectors: 1_000_000,
            dim: 128,
            index: index.map(str::to_string),
            nlist: Some(4096),
            m: None,
            nbits: None,
            ram: None,
            recall: 0.95,
            json: false,
        }
    }

    #[test]
    fn seed_example_is_reproduced() {
        let text = render(&report(&args(Some("IVF_FLAT"))).unwrap());
        assert!(text.contains("inverted lists (raw × 1.05)"), "{text}");
        assert!(text.contains("537.6 MB"), "{text}");
        assert!(text.contains("Recommended:"), "{text}");
    }

    #[test]
    fn unknown_index_is_an_error() {
        assert!(report(&args(Some("LSH"))).is_err());
        assert!(report(&args(Some("AUTO"))).is_err());
    }

    #[test]
    fn defaults_are_those_of_a_collection() {
        let spec = |index: &str| spec_from_args(&args(Some(index))).unwrap().unwrap();
        assert_eq!(
            spec("hnsw"),
            IndexSpec::Hnsw {
                m: 16,
                ef_construction: 100
            }
        );
        assert_eq!(
            spec("IVF_PQ"),
            IndexSpec::IvfPq {
                nlist: 4096,
                m: 32,
                nbits: 8
            }
        );
        let mut a = args(Some("IVF_FLAT"));
        a.nlist = None;
        a.m = Some(8);
        assert_eq!(
            spec_from_args(&a).unwrap(),
            Some(IndexSpec::IvfFlat { nlist: 4096 })
        );
    }
}
