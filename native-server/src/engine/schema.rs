//! What a collection is: name, dimension, metric, index, shards and id mode.

use proxima_core::{IndexRequest, IndexType, Metric};
use serde::{Deserialize, Serialize};

use super::error::{EngineError, EngineResult};

/// The definition of a collection, fixed at creation (the index can be rebuilt).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionSchema {
    pub name: String,
    pub dim: usize,
    pub metric: Metric,
    /// The index as requested, with the defaults that depend only on `dim` filled in at
    /// creation; IVF's `nlist` (when not given) and `AUTO`'s pick are made per segment.
    pub index: IndexRequest,
    #[serde(default = "one")]
    pub num_shards: usize,
    /// The engine assigns ids (and rejects ids from the client).
    #[serde(default)]
    pub auto_id: bool,
}

fn one() -> usize {
    1
}

/// Most shards one collection may have.
pub const MAX_SHARDS: usize = 256;
/// Largest dimension accepted.
pub use proxima_core::validate::MAX_DIM;

impl CollectionSchema {
    /// Checks name, dimension, shard count and index parameters.
    pub fn validate(&self) -> EngineResult<()> {
        validate_name(&self.name)?;
        if self.dim == 0 || self.dim > MAX_DIM {
            return Err(proxima_core::Error::invalid(
                "dim",
                self.dim,
                format!("must be between 1 and {MAX_DIM}"),
            )
            .into());
        }
        if self.num_shards == 0 || self.num_shards > MAX_SHARDS {
            return Err(proxima_core::Error::invalid(
                "shards",
                self.num_shards,
                format!("must be between 1 and {MAX_SHARDS}"),
            )
            .into());
        }
        self.index.validate(self.dim)?;
        if self.index.kind == IndexType::DiskAnn {
            return Err(proxima_core::Error::Unsupported {
                operation: "create a collection with",
                index: "DISKANN (not available in this server build yet)".to_string(),
            }
            .into());
        }
        Ok(())
    }

    /// The shard that owns `id` (stable across restarts).
    pub fn shard_of(&self, id: u64) -> usize {
        (mix64(id) % self.num_shards as u64) as usize
    }
}

/// SplitMix64's finaliser: spreads sequential ids evenly over shards.
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Names are 1–64 characters of `[A-Za-z0-9_-]`, starting with a letter or digit (they are
/// directory names).
pub fn validate_name(name: &str) -> EngineResult<()> {
    let bad = |reason| {
        Err(EngineError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 64 {
        return bad("must be 1 to 64 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return bad("only letters, digits, '_' and '-' are allowed");
    }
    if !name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
    {
        return bad("must start with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_shards() {
        assert!(validate_name("docs_v2-en").is_ok());
        for bad in ["", "../etc", "a b", "-x", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        let schema = CollectionSchema {
            name: "c".into(),
            dim: 4,
            metric: Metric::L2,
            index: IndexRequest::new(IndexType::Flat),
            num_shards: 4,
            auto_id: false,
        };
        let mut counts = [0; 4];
        for id in 0..4000 {
            counts[schema.shard_of(id)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        let mut bad = schema.clone();
        bad.num_shards = 0;
        assert!(bad.validate().is_err());
        bad.num_shards = 1;
        bad.dim = 0;
        assert!(bad.validate().is_err());
    }
}
