//! The workload of the crash-recovery test: a deterministic sequence of writes that a writer
//! process runs (and is killed in the middle of), and the model the test checks against.

use std::collections::HashMap;
use std::path::Path;

use proxima_core::{IndexSpec, Metric};
use proxima_server::engine::{CollectionSchema, EngineConfig};

/// Vector dimension of the workload.
pub const DIM: usize = 8;
/// Ids are drawn from `0..ID_RANGE`, so upserts and deletes hit existing rows.
pub const ID_RANGE: u64 = 600;
/// The collection the writer fills.
pub const COLLECTION: &str = "crash";

/// One step of the workload.
#[derive(Debug, Clone, PartialEq)]
pub enum CrashOp {
    Upsert(Vec<u64>),
    Delete(Vec<u64>),
    Flush,
    Compact,
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The operation at `step` of the workload `seed`.
pub fn op_at(seed: u64, step: u64) -> CrashOp {
    let h = mix(seed ^ mix(step));
    let n = 1 + (h >> 8) % 24;
    let mut ids: Vec<u64> = (0..n).map(|i| mix(h ^ i) % ID_RANGE).collect();
    ids.sort_unstable();
    ids.dedup();
    match h % 100 {
        0..=64 => CrashOp::Upsert(ids),
        65..=93 => CrashOp::Delete(ids),
        94..=97 => CrashOp::Flush,
        _ => CrashOp::Compact,
    }
}

/// The vector written for `id` at `step`.
pub fn vector(id: u64, step: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|j| (mix(id * 1_000_003 + step * 31 + j) % 20_000) as f32 / 100.0 - 100.0)
        .collect()
}

/// Applies a step to the model of live ids and their vectors.
pub fn apply(model: &mut HashMap<u64, Vec<f32>>, op: &CrashOp, step: u64) {
    match op {
        CrashOp::Upsert(ids) => {
            for &id in ids {
                model.insert(id, vector(id, step));
            }
        }
        CrashOp::Delete(ids) => {
            for id in ids {
                model.remove(id);
            }
        }
        CrashOp::Flush | CrashOp::Compact => {}
    }
}

/// Engine settings that make the workload seal, rotate WAL files, build indexes and compact
/// often, so a kill lands in every phase.
pub fn engine_config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.seal_rows = 150;
    c.wal_file_bytes = 8 * 1024;
    c.auto_compact_deleted_ratio = 0.2;
    c
}

/// The workload's collection: two shards, IVF_FLAT (built on segments of ≥ 156 rows).
pub fn schema() -> CollectionSchema {
    CollectionSchema {
        name: COLLECTION.to_string(),
        dim: DIM,
        metric: Metric::L2,
        index: IndexSpec::IvfFlat { nlist: 4 }.into(),
        num_shards: 2,
        auto_id: false,
    }
}
