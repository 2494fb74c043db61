//! Engine tests: writes, deletes, upserts, recovery, indexes, compaction, consistency, shards.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use proxima_core::{ConsistencyLevel, Error as CoreError, IndexSpec, Metric, SearchParams};

use super::*;

mod aliases;
mod compaction;
mod indexes;
mod recall;
mod recovery;
mod search;
mod writes;

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.seal_rows = 1_000_000;
    c.consistency_timeout = Duration::from_secs(20);
    c
}

fn schema(
    name: &str,
    dim: usize,
    index: impl Into<proxima_core::IndexRequest>,
    shards: usize,
) -> CollectionSchema {
    CollectionSchema {
        name: name.into(),
        dim,
        metric: Metric::L2,
        index: index.into(),
        num_shards: shards,
        auto_id: false,
    }
}

fn vector(id: u64, version: u64, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|j| {
            let x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ version.wrapping_mul(31)
                ^ (j as u64 * 7919);
            ((x >> 11) % 10_000) as f32 / 100.0
        })
        .collect()
}

fn all_ids(c: &Collection, dim: usize) -> Vec<u64> {
    let k = (c.count() as usize).clamp(1, 10_000);
    let r = c
        .search(
            &vec![0.0; dim],
            &SearchParams::new(k),
            ConsistencyLevel::Strong,
            None,
        )
        .unwrap();
    let mut ids: Vec<u64> = r.hits[0].iter().map(|h| h.id).collect();
    ids.sort_unstable();
    ids
}

fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    crate::index::clustered(n, dim, seed, 64, 0.2)
}
