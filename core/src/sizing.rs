//! Memory sizing: how much RAM (and disk) an index of `N` vectors of dimension `dim` needs.
//!
//! The formulas (decimal units: 1 MB = 10^6 bytes):
//!
//! | index | RAM while serving |
//! |---|---|
//! | raw vectors | `N × dim × 4` |
//! | FLAT | raw |
//! | IVF_FLAT | raw × 1.05 (lists, ids) + `nlist × dim × 4` centroids |
//! | IVF_SQ8 | `N × dim` codes + `N × 8` ids + centroids + `2 × dim × 4` ranges |
//! | IVF_PQ | `N × ⌈m × nbits / 8⌉` codes + `N × 8` ids + `2^nbits × dim × 4` codebooks + centroids |
//! | HNSW | raw + `N × M × 2 × 4` level-0 links + upper levels and offsets |
//! | HNSW_SQ8 | `N × dim` codes + the HNSW graph |
//! | DISKANN | RAM: `N × pq_bytes` codes + PQ pivots + a 1 % node cache; disk: 4 KiB sectors of nodes |
//!
//! Building streams the source vectors into the index in batches of 100k rows, so the build
//! peak is the index plus the training sample plus one batch (DiskANN: plus its graph build,
//! capped at a 2 GB build budget). The recommended RAM is
//! the larger of the two plus a 50 % buffer for the process, queries and growing segments.
//!
//! The seed's example, 1M × 128 with IVF_FLAT and nlist 4096: raw 512 MB, lists 537.6 MB
//! (≈ 538 MB), centroids 2.1 MB.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::{Error, Result};
use crate::spec::{IndexSpec, MIN_TRAINING_POINTS_PER_CENTROID};

/// Multiplier on the larger of serving and build memory.
pub const BUFFER_FACTOR: f64 = 1.5;
/// IVF_FLAT list overhead (ids, list headers, slack) on top of the raw vectors.
pub const IVF_FLAT_OVERHEAD: f64 = 1.05;
/// DiskANN sector size on disk.
pub const DISK_SECTOR: u64 = 4096;
/// Fraction of DiskANN nodes cached in RAM.
pub const DISKANN_CACHE_FRACTION: f64 = 0.01;
/// Rows added to an index per batch while building.
pub const ADD_BATCH_ROWS: u64 = 100_000;
/// RAM cap of a DiskANN graph build (the build partitions the data to stay under it).
pub const DISKANN_BUILD_BUDGET: u64 = 2_000_000_000;
/// Training points per centroid the engine samples for k-means (FAISS wants ≥ 39 and
/// subsamples above 256; 64 keeps the sample small without hurting the lists).
pub const TRAINING_POINTS_PER_CENTROID: u64 = 64;

/// One line of a memory plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Component {
    pub name: String,
    pub bytes: u64,
}

/// The computed memory plan for one index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryPlan {
    pub vectors: u64,
    pub dim: usize,
    pub index: IndexSpec,
    /// `N × dim × 4`.
    pub raw_bytes: u64,
    /// What the serving index holds in RAM, line by line.
    pub components: Vec<Component>,
    /// Sum of `components`.
    pub index_bytes: u64,
    /// Bytes on disk (DiskANN's graph and vectors; 0 for in-memory indexes).
    pub disk_bytes: u64,
    /// Peak RAM while building (source vectors + training sample + index).
    pub build_peak_bytes: u64,
    /// `max(index, build peak) × 1.5`.
    pub recommended_ram_bytes: u64,
    /// Training vectors the index needs (0 when none).
    pub min_training_vectors: u64,
}

fn mul(a: u64, b: u64) -> u64 {
    a.saturating_mul(b)
}

fn scale(bytes: u64, factor: f64) -> u64 {
    (bytes as f64 * factor).round() as u64
}

/// Bytes of the HNSW graph: level-0 links (2M per node), upper levels (M links on a
/// geometric 1/M share of nodes: M/(M-1) links per node on average) and per-node
/// offsets/levels (12 bytes).
fn hnsw_graph_bytes(n: u64, m: u64) -> (u64, u64) {
    let level0 = mul(mul(n, m), 2 * 4);
    let upper = scale(mul(n, 4), m as f64 / (m.max(2) - 1) as f64) + mul(n, 12);
    (level0, upper)
}

/// Bytes of one DiskANN node on disk: full vector, neighbour count and neighbour ids.
fn diskann_node_bytes(dim: u64, max_degree: u64) -> u64 {
    dim * 4 + 4 + max_degree * 4
}

/// Computes the memory plan of `spec` over `n` vectors of dimension `dim`.
pub fn plan(n: u64, dim: usize, spec: IndexSpec) -> Result<MemoryPlan> {
    crate::validate::check_plan_size(n, dim)?;
    spec.validate(dim)?;
    let d = dim as u64;
    let raw = mul(mul(n, d), 4);
    let centroids = |nlist: usize| mul(nlist as u64, d * 4);
    let ids = mul(n, 8);
    let mut parts: Vec<(String, u64)> = Vec::new();
    let mut disk = 0;
    let mut training_sample = 0;
    match spec {
        IndexSpec::Flat => parts.push(("vectors (raw)".into(), raw)),
        IndexSpec::IvfFlat { nlist } => {
            parts.push((
                "inverted lists (raw × 1.05)".into(),
                scale(raw, IVF_FLAT_OVERHEAD),
            ));
            parts.push((format!("centroids ({nlist} × {dim} × 4)"), centroids(nlist)));
        }
        IndexSpec::IvfSq8 { nlist } => {
            parts.push(("SQ8 codes (N × dim)".into(), mul(n, d)));
            parts.push(("list ids (N × 8)".into(), ids));
            parts.push((format!("centroids ({nlist} × {dim} × 4)"), centroids(nlist)));
            parts.push(("SQ ranges".into(), 2 * d * 4));
        }
        IndexSpec::IvfPq { nlist, m, nbits } => {
            let code = (m as u64 * nbits as u64).div_ceil(8);
            parts.push((format!("PQ codes (N × {code} B)"), mul(n, code)));
            parts.push(("list ids (N × 8)".into(), ids));
            parts.push((
                format!("PQ codebooks (2^{nbits} × {dim} × 4)"),
                mul(1u64 << nbits, d * 4),
            ));
            parts.push((format!("centroids ({nlist} × {dim} × 4)"), centroids(nlist)));
        }
        IndexSpec::Hnsw { m, .. } => {
            let (level0, upper) = hnsw_graph_bytes(n, m as u64);
            parts.push(("vectors (raw)".into(), raw));
            parts.push((format!("graph links (N × {m} × 2 × 4)"), level0));
            parts.push(("upper levels and offsets".into(), upper));
        }
        IndexSpec::HnswSq8 { m, .. } => {
            let (level0, upper) = hnsw_graph_bytes(n, m as u64);
            parts.push(("SQ8 codes (N × dim)".into(), mul(n, d)));
            parts.push((format!("graph links (N × {m} × 2 × 4)"), level0));
            parts.push(("upper levels and offsets".into(), upper));
        }
        IndexSpec::DiskAnn {
            max_degree,
            pq_bytes,
            ..
        } => {
            let node = diskann_node_bytes(d, max_degree as u64);
            parts.push((
                format!("PQ codes (N × {pq_bytes} B)"),
                mul(n, pq_bytes as u64),
            ));
            parts.push(("PQ pivots (256 × dim × 4)".into(), 256 * d * 4));
            parts.push((
                "node cache (1 % of nodes)".into(),
                scale(mul(n, node), DISKANN_CACHE_FRACTION),
            ));
            parts.push(("id map (N × 8)".into(), ids));
            disk = if node <= DISK_SECTOR {
                let per_sector = DISK_SECTOR / node;
                mul(n.div_ceil(per_sector), DISK_SECTOR)
            } else {
                mul(mul(n, node.div_ceil(DISK_SECTOR)), DISK_SECTOR)
            } + DISK_SECTOR;
        }
    }
    if let Some(nlist) = spec.nlist() {
        let sample = (nlist as u64 * TRAINING_POINTS_PER_CENTROID).min(n);
        training_sample = mul(mul(sample, d), 4);
    } else if spec.needs_training() {
        let sample = (256 * TRAINING_POINTS_PER_CENTROID).min(n);
        training_sample = mul(mul(sample, d), 4);
    }
    let index_bytes: u64 = parts.iter().fold(0, |sum, (_, b)| sum.saturating_add(*b));
    // Vectors stream into the index in batches from segment files, so the build needs the
    // index, the training sample and one batch in RAM at once.
    let batch = mul(mul(n.min(ADD_BATCH_ROWS), d), 4);
    let build_peak = match spec {
        // diskann-disk builds the graph in partitions under a RAM budget, then writes sectors.
        IndexSpec::DiskAnn { max_degree, .. } => {
            let in_memory_build = raw + mul(mul(n, max_degree as u64), 4);
            index_bytes + training_sample + in_memory_build.min(DISKANN_BUILD_BUDGET)
        }
        _ => index_bytes + training_sample + batch,
    };
    let min_training = spec.min_training_vectors() as u64;
    Ok(MemoryPlan {
        vectors: n,
        dim,
        index: spec,
        raw_bytes: raw,
        components: parts
            .into_iter()
            .map(|(name, bytes)| Component { name, bytes })
            .collect(),
        index_bytes,
        disk_bytes: disk,
        build_peak_bytes: build_peak,
        recommended_ram_bytes: scale(index_bytes.max(build_peak), BUFFER_FACTOR),
        min_training_vectors: min_training,
    })
}

/// The seed's nlist advice: the next power of two at or above 4√N (1M → 4096, 10M → 16384,
/// 100M → 65536), lowered until N holds the 39 × nlist training points.
pub fn recommended_nlist(n: u64) -> usize {
    let target = (4.0 * (n as f64).sqrt()).ceil().max(1.0) as u64;
    let mut nlist = target.next_power_of_two();
    while nlist > 1 && nlist * MIN_TRAINING_POINTS_PER_CENTROID as u64 > n {
        nlist /= 2;
    }
    nlist as usize
}

/// Formats bytes in decimal units (B, KB, MB, GB, TB) with one decimal.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Parses sizes such as `64GiB`, `512 MB`, `1.5g`, `1000` (bytes).
pub fn parse_bytes(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| Error::invalid("size", text, "expected a number with an optional unit"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024.0f64.powi(4),
        other => {
            return Err(Error::invalid(
                "size",
                text,
                format!("unknown unit {other:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"),
            ))
        }
    };
    Ok((value * factor).round() as u64)
}

impl fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Memory plan: {} vectors × {} dims, {}",
            self.vectors, self.dim, self.index
        )?;
        writeln!(
            f,
            "  {:<40} {:>12}",
            "raw vectors (N × dim × 4)",
            format_bytes(self.raw_bytes)
        )?;
        for c in &self.components {
            writeln!(f, "  {:<40} {:>12}", c.name, format_bytes(c.bytes))?;
        }
        writeln!(
            f,
            "  {:<40} {:>12}",
            "index in RAM",
            format_bytes(self.index_bytes)
        )?;
        if self.disk_bytes > 0 {
            writeln!(
                f,
                "  {:<40} {:>12}",
                "index on disk",
                format_bytes(self.disk_bytes)
            )?;
        }
        writeln!(
            f,
            "  {:<40} {:>12}",
            "build peak",
            format_bytes(self.build_peak_bytes)
        )?;
        writeln!(
            f,
            "  {:<40} {:>12}",
            "recommended RAM (+50 % buffer)",
            format_bytes(self.recommended_ram_bytes)
        )?;
        if self.min_training_vectors > 0 {
            writeln!(
                f,
                "  {:<40} {:>12}",
                "training vectors needed", self.min_training_vectors
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1e6;

    #[test]
    fn seed_example_ivf_flat_1m_128() {
        let p = plan(1_000_000, 128, IndexSpec::IvfFlat { nlist: 4096 }).unwrap();
        assert_eq!(p.raw_bytes, 512_000_000);
        let lists = p.components[0].bytes as f64 / MB;
        assert!((lists - 537.6).abs() < 0.05, "lists {lists}");
        assert_eq!(format_bytes(p.components[0].bytes), "537.6 MB");
        assert_eq!(p.components[1].bytes, 4096 * 128 * 4);
        assert!((p.index_bytes as f64 / MB - 539.7).abs() < 0.1);
        assert_eq!(
            p.recommended_ram_bytes,
            (p.build_peak_bytes as f64 * 1.5).round() as u64
        );
        assert_eq!(p.min_training_vectors, 39 * 4096);
    }

    #[test]
    fn other_formulas() {
        let n = 1_000_000u64;
        let hnsw = plan(
            n,
            128,
            IndexSpec::Hnsw {
                m: 32,
                ef_construction: 200,
            },
        )
        .unwrap();
        assert_eq!(hnsw.components[1].bytes, n * 32 * 2 * 4);
        let pq = plan(
            n,
            128,
            IndexSpec::IvfPq {
                nlist: 4096,
                m: 16,
                nbits: 8,
            },
        )
        .unwrap();
        assert_eq!(pq.components[0].bytes, n * 16);
        assert_eq!(pq.components[2].bytes, 256 * 128 * 4);
        let sq = plan(n, 128, IndexSpec::IvfSq8 { nlist: 4096 }).unwrap();
        assert_eq!(sq.components[0].bytes, n * 128);
        let flat = plan(n, 128, IndexSpec::Flat).unwrap();
        assert_eq!(flat.index_bytes, 512_000_000);
        let disk = plan(
            n,
            128,
            IndexSpec::DiskAnn {
                max_degree: 64,
                search_list: 100,
                pq_bytes: 32,
            },
        )
        .unwrap();
        assert_eq!(disk.components[0].bytes, n * 32);
        // 128 × 4 + 4 + 64 × 4 = 772 B per node: 5 nodes per 4 KiB sector.
        assert_eq!(disk.disk_bytes, n.div_ceil(5) * 4096 + 4096);
        assert!(disk.index_bytes < flat.index_bytes / 4);
    }

    #[test]
    fn nlist_advice_matches_seed() {
        assert_eq!(recommended_nlist(1_000_000), 4096);
        assert_eq!(recommended_nlist(10_000_000), 16384);
        assert_eq!(recommended_nlist(100_000_000), 65536);
        // Small collections: capped by the 39 × nlist training rule.
        assert_eq!(recommended_nlist(10_000), 256);
        assert!(recommended_nlist(10_000) * 39 <= 10_000);
        assert_eq!(recommended_nlist(5), 1);
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_bytes("64GiB").unwrap(), 64 * (1 << 30));
        assert_eq!(parse_bytes("512 MB").unwrap(), 512_000_000);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("GB").is_err());
    }

    #[test]
    fn rejects_bad_plans() {
        assert!(plan(0, 128, IndexSpec::Flat).is_err());
        assert!(plan(10, 128, IndexSpec::IvfFlat { nlist: 0 }).is_err());
    }
}
