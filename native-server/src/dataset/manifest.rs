//! `manifest.json`: what a dataset holds and the parameters it was built with.

use std::path::Path;

use proxima_core::Metric;
use serde::{Deserialize, Serialize};

use super::{files, io_error, DatasetError};

/// The manifest format written by this version.
pub const MANIFEST_FORMAT: u32 = 1;

/// The description of a dataset directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    pub name: String,
    pub dim: usize,
    pub metric: Metric,
    /// Base vectors.
    pub count: usize,
    /// Query vectors (held-out texts and questions, or the imported query file).
    pub num_queries: usize,
    /// Neighbours per query in `groundtruth.ibin`.
    pub ground_truth_k: usize,
    /// The embedding model, for text datasets.
    pub model: Option<String>,
    /// Where the data came from, in words.
    pub source: String,
    /// Facts about the source at build time (corpus size, fingerprint, file sizes).
    #[serde(default)]
    pub source_details: serde_json::Value,
    /// The parameters the dataset was built with: a later build with equal parameters reuses it.
    pub params: serde_json::Value,
    /// Unix time of the build.
    pub created_unix: u64,
    /// Seconds the build took.
    pub build_seconds: f64,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Manifest, DatasetError> {
        let path = dir.join(files::MANIFEST);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DatasetError::NotFound {
                    dir: dir.to_path_buf(),
                })
            }
            Err(e) => return Err(io_error(&path)(e)),
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| DatasetError::Invalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(DatasetError::Invalid {
                path,
                reason: format!(
                    "manifest format {} (this build reads {MANIFEST_FORMAT}): rebuild with --force",
                    manifest.format
                ),
            });
        }
        Ok(manifest)
    }

    /// Writes `dir/manifest.json`.
    pub fn write(&self, dir: &Path) -> Result<(), DatasetError> {
        let path = dir.join(files::MANIFEST);
        let mut text = serde_json::to_string_pretty(self).map_err(|e| DatasetError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        text.push('\n');
        std::fs::write(&path, text).map_err(io_error(&path))
    }
}
