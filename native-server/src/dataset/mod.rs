//! Real datasets on disk: base vectors with their ids and texts, held-out query vectors, and the
//! exact top-100 ground truth of every query. The storage engine's tests and benchmarks read
//! them with [`Dataset::open`] (or [`testing::debian_subset`]).
//!
//! # Layout of a dataset directory
//!
//! | file | content |
//! |---|---|
//! | `manifest.json` | name, dim, metric, counts, model, source, the parameters it was built with |
//! | `base.fbin` | base vectors: `u32` rows, `u32` dim, row-major little-endian `f32` |
//! | `ids.u64` | the id of each base row: little-endian `u64`, one per row, no header |
//! | `texts.jsonl` | `{"id", "text"}` of each base row, in row order (text datasets only) |
//! | `queries.fbin` | query vectors, same layout as `base.fbin` |
//! | `queries.jsonl` | `{"id", "text", "kind"}` of each query row (text datasets only); `kind` is `held_out` (a corpus text kept out of the base; `id` is its corpus id) or `question` |
//! | `groundtruth.ibin` | per query, the base **row numbers** of its exact top-k (k = 100, or the base size if smaller), best first: `u32` rows, `u32` k, `i32` values (the big-ann-benchmarks convention); `ids.u64` maps rows to ids |
//!
//! Vectors are stored prepared for the metric (unit length for cosine). A build writes into a
//! temporary directory next to the target and renames it into place at the end, so a killed
//! build never leaves a directory that looks complete.

mod build;
mod manifest;
mod source;
pub mod testing;

use std::io::Read;
use std::path::{Path, PathBuf};

use proxima_core::formats::fbin::decode_u64s;
use proxima_core::formats::{read_fbin, read_ibin};
use proxima_core::Metric;

use crate::embed::EmbedError;

pub use build::{
    build_text, default_dir, import, proxima_home, BuildOutcome, ImportRequest, TextBuild,
    TextSource, DEFAULT_HELD_OUT, DEFAULT_SEED,
};
pub use manifest::Manifest;
pub use source::{
    debian_packages, fingerprint, parse_dumpavail, parse_jsonl, read_jsonl, shuffled, split,
    Record, DEBIAN_PACKAGES, DEBIAN_QUESTIONS,
};

/// File names inside a dataset directory.
pub mod files {
    pub const MANIFEST: &str = "manifest.json";
    pub const BASE: &str = "base.fbin";
    pub const IDS: &str = "ids.u64";
    pub const TEXTS: &str = "texts.jsonl";
    pub const QUERIES: &str = "queries.fbin";
    pub const QUERY_TEXTS: &str = "queries.jsonl";
    pub const GROUND_TRUTH: &str = "groundtruth.ibin";
}

/// Neighbours per query in the ground truth (fewer when the base is smaller).
pub const GROUND_TRUTH_K: usize = 100;

/// Why a dataset could not be built or opened.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The directory holds no dataset.
    #[error("no dataset in {}: {} is missing (build one with `proxima dataset build` or `proxima dataset import`)", dir.display(), files::MANIFEST)]
    NotFound { dir: PathBuf },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A vector file is malformed.
    #[error("{}: {source}", path.display())]
    Format {
        path: PathBuf,
        #[source]
        source: proxima_core::Error,
    },
    /// The files of a dataset disagree with its manifest or with each other.
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    /// A line of a JSONL file is not `{"id": <u64>, "text": "…"}`.
    #[error("{}, line {line}: {reason}", path.display())]
    Jsonl {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// The command that lists a built-in source's texts failed.
    #[error("`{command}` failed: {reason}")]
    Source { command: String, reason: String },
    /// The build parameters do not make sense.
    #[error("{0}")]
    Params(String),
    /// Embedding the texts failed (e.g. the model is not installed).
    #[error(transparent)]
    Embed(#[from] EmbedError),
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A dataset loaded in memory.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub dim: usize,
    pub metric: Metric,
    /// Id of each base row.
    pub ids: Vec<u64>,
    /// Base vectors, row-major, `len() × dim`.
    pub base: Vec<f32>,
    /// Query vectors, row-major, `num_queries() × dim`.
    pub queries: Vec<f32>,
    /// Per query, the ids of its exact top-100 base vectors (fewer when the base is smaller),
    /// best first. Empty when the dataset has no queries.
    pub ground_truth: Vec<Vec<u64>>,
}

fn open_file(path: &Path) -> Result<std::io::BufReader<std::fs::File>, DatasetError> {
    std::fs::File::open(path)
        .map(std::io::BufReader::new)
        .map_err(io_error(path))
}

fn invalid(path: &Path, reason: impl Into<String>) -> DatasetError {
    DatasetError::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read_vectors(path: &Path, dim: usize, rows: usize) -> Result<Vec<f32>, DatasetError> {
    let m = read_fbin(&mut open_file(path)?).map_err(|source| DatasetError::Format {
        path: path.to_path_buf(),
        source,
    })?;
    if m.rows != rows || (m.cols != dim && m.rows > 0) {
        return Err(invalid(
            path,
            format!(
                "holds {} × {}, the manifest says {rows} × {dim}",
                m.rows, m.cols
            ),
        ));
    }
    Ok(m.data)
}

impl Dataset {
    /// Reads the dataset in `dir`, checking its files against its manifest.
    pub fn open(dir: &Path) -> Result<Dataset, DatasetError> {
        let manifest = Manifest::read(dir)?;
        let base = read_vectors(&dir.join(files::BASE), manifest.dim, manifest.count)?;

        let ids_path = dir.join(files::IDS);
        let mut raw = Vec::new();
        open_file(&ids_path)?
            .read_to_end(&mut raw)
            .map_err(io_error(&ids_path))?;
        if raw.len() != manifest.count * 8 {
            return Err(invalid(
                &ids_path,
                format!(
                    "{} bytes for {} base rows (8 bytes per id)",
                    raw.len(),
                    manifest.count
                ),
            ));
        }
        let ids = decode_u64s(&raw).map_err(|e| invalid(&ids_path, e.to_string()))?;

        let (queries, ground_truth) = if manifest.num_queries == 0 {
            (Vec::new(), Vec::new())
        } else {
            let queries = read_vectors(
                &dir.join(files::QUERIES),
                manifest.dim,
                manifest.num_queries,
            )?;
            let gt_path = dir.join(files::GROUND_TRUTH);
            let gt =
                read_ibin(&mut open_file(&gt_path)?).map_err(|source| DatasetError::Format {
                    path: gt_path.clone(),
                    source,
                })?;
            if gt.rows != manifest.num_queries || gt.cols != manifest.ground_truth_k {
                return Err(invalid(
                    &gt_path,
                    format!(
                        "holds {} × {}, the manifest says {} queries × {}",
                        gt.rows, gt.cols, manifest.num_queries, manifest.ground_truth_k
                    ),
                ));
            }
            let mut truth = Vec::with_capacity(gt.rows);
            for q in 0..gt.rows {
                let row = gt.row(q);
                let mut neighbours = Vec::with_capacity(row.len());
                for &r in row {
                    let id = usize::try_from(r)
                        .ok()
                        .and_then(|r| ids.get(r))
                        .ok_or_else(|| {
                            invalid(
                                &gt_path,
                                format!("query {q} names base row {r}, outside 0..{}", ids.len()),
                            )
                        })?;
                    neighbours.push(*id);
                }
                truth.push(neighbours);
            }
            (queries, truth)
        };

        Ok(Dataset {
            name: manifest.name,
            dim: manifest.dim,
            metric: manifest.metric,
            ids,
            base,
            queries,
            ground_truth,
        })
    }

    /// Number of base vectors.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the base is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of query vectors.
    pub fn num_queries(&self) -> usize {
        self.queries.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Base vector of row `i`.
    pub fn base_row(&self, i: usize) -> &[f32] {
        &self.base[i * self.dim..(i + 1) * self.dim]
    }

    /// Query vector `q`.
    pub fn query(&self, q: usize) -> &[f32] {
        &self.queries[q * self.dim..(q + 1) * self.dim]
    }
}

#[cfg(test)]
mod tests;
