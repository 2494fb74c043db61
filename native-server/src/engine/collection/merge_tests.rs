//! The optimizer against the engine: segment counts under many small flushes, merges racing
//! deletes, upserts and restarts, compaction, and exact delete counts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proxima_core::{ConsistencyLevel, IndexSpec, Metric, SearchParams};

use crate::engine::{
    Collection, CollectionSchema, Engine, EngineConfig, EngineError, SegmentState,
};

const DIM: usize = 8;

/// SplitMix64: a seeded sequence, the same everywhere.
struct Rng(u64);

impl Rng {
    fn range(&mut self, range: std::ops::Range<u64>) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        range.start + (z ^ (z >> 31)) % (range.end - range.start)
    }
}

fn open(dir: &std::path::Path) -> Engine {
    let mut c = EngineConfig::new(dir);
    c.consistency_timeout = Duration::from_secs(20);
    Engine::open(c).unwrap()
}

fn create(engine: &Engine, name: &str, shards: usize) -> Arc<Collection> {
    engine
        .create_collection(CollectionSchema {
            name: name.into(),
            dim: DIM,
            metric: Metric::L2,
            index: IndexSpec::Flat.into(),
            num_shards: shards,
            auto_id: false,
        })
        .unwrap()
}

fn vector(id: u64, version: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|j| ((id * 31 + version * 17 + j * 7) % 101) as f32 + (id as f32) * 1e-3)
        .collect()
}

fn sealed(c: &Collection) -> usize {
    c.describe()
        .segments
        .iter()
        .filter(|s| s.state == SegmentState::Sealed)
        .count()
}

/// Every id of the model is there with its vector, nothing else is, and each vector is its
/// own nearest neighbour.
fn check(c: &Collection, model: &HashMap<u64, Vec<f32>>, deleted: &[u64]) {
    assert_eq!(c.count() as usize, model.len());
    for (id, v) in model {
        assert_eq!(&c.get(*id).unwrap(), v, "id {id}");
    }
    for id in deleted.iter().filter(|id| !model.contains_key(id)) {
        assert!(
            matches!(c.get(*id), Err(EngineError::IdNotFound { .. })),
            "deleted id {id} came back"
        );
    }
    for (id, v) in model.iter().take(50) {
        let r = c
            .search(v, &SearchParams::new(1), ConsistencyLevel::Strong, None)
            .unwrap();
        let hit = r.hits[0][0];
        assert!(
            hit.id == *id || hit.score == 0.0,
            "id {id}: nearest {hit:?}"
        );
    }
}

#[test]
fn small_flushes_keep_the_segment_count_logarithmic() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let c = create(&engine, "flushes", 1);
    let mut model = HashMap::new();
    let flushes = 300u64;
    for f in 0..flushes {
        let ids: Vec<u64> = (f * 5..f * 5 + 5).collect();
        let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id, 0)).collect();
        c.insert(&rows, Some(&ids)).unwrap();
        c.flush().unwrap();
        for &id in &ids {
            model.insert(id, vector(id, 0));
        }
    }
    assert!(c.wait_merges(Duration::from_secs(60)));
    let n = sealed(&c);
    // At most F − 1 = 3 segments per tier; 1,500 rows in tiers of 5 to 1,500: log4(300) + 2.
    let bound = 3 * ((flushes as f64).log(4.0) as usize + 2);
    assert!(
        n <= bound,
        "{n} sealed segments after {flushes} flushes (bound {bound})"
    );
    let merges = c.describe().merges;
    assert!(merges.merges > 0 && merges.failures == 0, "{merges:?}");
    // Each row is rewritten once per tier it climbs: log4(1,500 / 5) + 1 times at most.
    assert!(
        merges.rows_rewritten <= 1_500 * 6,
        "{} rows rewritten",
        merges.rows_rewritten
    );
    check(&c, &model, &[]);
    drop(c);
    drop(engine);
    let engine = open(dir.path());
    let c = engine.collection("flushes").unwrap();
    assert!(sealed(&c) <= bound);
    check(&c, &model, &[]);
}

#[test]
fn merges_racing_writes_deletes_and_restarts_lose_nothing_and_resurrect_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    create(&engine, "race", 2);
    let mut rng = Rng(7);
    let mut model: HashMap<u64, Vec<f32>> = HashMap::new();
    let mut deleted = Vec::new();
    for step in 0..600u64 {
        let c = engine.collection("race").unwrap();
        match rng.range(0..10) {
            0..=4 => {
                let ids: Vec<u64> = (0..rng.range(1..20))
                    .map(|_| rng.range(0..400))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id, step)).collect();
                c.insert(&rows, Some(&ids)).unwrap();
                for &id in &ids {
                    model.insert(id, vector(id, step));
                }
            }
            5..=7 => {
                let ids: Vec<u64> = (0..rng.range(1..30))
                    .map(|_| rng.range(0..400))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let present = ids.iter().filter(|id| model.contains_key(id)).count();
                assert_eq!(c.delete(&ids).unwrap().deleted, present);
                for id in ids {
                    model.remove(&id);
                    deleted.push(id);
                }
            }
            8 => c.flush().unwrap(),
            _ => {
                if rng.range(0..8) == 0 {
                    // A restart while merges may be running (close abandons them).
                    drop(c);
                    drop(engine);
                    engine = open(dir.path());
                } else if rng.range(0..4) == 0 {
                    c.compact().unwrap();
                }
            }
        }
    }
    let c = engine.collection("race").unwrap();
    check(&c, &model, &deleted);
    c.compact().unwrap();
    assert!(c.wait_merges(Duration::from_secs(60)));
    for s in c
        .describe()
        .segments
        .iter()
        .filter(|s| s.state == SegmentState::Sealed)
    {
        assert_eq!(s.rows, s.live_rows, "compact left deleted rows: {s:?}");
    }
    check(&c, &model, &deleted);
    drop(c);
    drop(engine);
    let engine = open(dir.path());
    check(&engine.collection("race").unwrap(), &model, &deleted);
}

#[test]
fn concurrent_deletes_of_the_same_ids_count_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let c = create(&engine, "count", 2);
    let ids: Vec<u64> = (0..2_000).collect();
    let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id, 0)).collect();
    c.insert(&rows, Some(&ids)).unwrap();
    c.flush().unwrap();
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let c = c.clone();
            let ids = ids.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(t);
                let mut total = 0;
                for chunk in ids.chunks(rng.range(7..50) as usize) {
                    total += c.delete(chunk).unwrap().deleted;
                }
                total
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, ids.len());
    assert_eq!(c.count(), 0);
}
