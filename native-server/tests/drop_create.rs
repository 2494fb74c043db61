//! Creates, drops, inserts and searches of one collection name from several threads at once:
//! create and drop are linearisable (each create succeeds or finds the collection there, each
//! drop succeeds or finds nothing, never an error of the disk), and afterwards the name works,
//! also after a restart.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use proxima_core::{ConsistencyLevel, IndexSpec, Metric, SearchParams};
use proxima_server::engine::{
    Collection, CollectionSchema, Engine, EngineConfig, EngineError, FsyncPolicy,
};

const NAME: &str = "hammered";
const DIM: usize = 4;
const THREADS: usize = 8;
const ROUNDS: usize = 300;

fn schema() -> CollectionSchema {
    CollectionSchema {
        name: NAME.into(),
        dim: DIM,
        metric: Metric::L2,
        index: IndexSpec::Flat.into(),
        num_shards: 2,
        auto_id: false,
    }
}

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    // Checkpoints (segment files, manifest rewrites, WAL truncation) while drops close the
    // collection.
    c.seal_rows = 16;
    c.fsync = FsyncPolicy::Never;
    // A WAL file per write or two: appends in flight during a drop start files.
    c.wal_file_bytes = 128;
    c.consistency_timeout = Duration::from_secs(5);
    c
}

fn rows(seed: u64, n: usize) -> Vec<f32> {
    (0..n * DIM)
        .map(|j| ((seed.wrapping_mul(2_654_435_761) ^ j as u64) % 1000) as f32 / 10.0)
        .collect()
}

/// xorshift64*: each thread's sequence of operations.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// An insert or search on a collection that a drop may close meanwhile: it succeeds, or
/// finds the collection closed; a search that was waiting for the applier when the drop came
/// may run into its consistency timeout instead. Anything else is a bug.
fn check_data_op<T>(engine: &Engine, c: &Arc<Collection>, r: Result<T, EngineError>, what: &str) {
    match r {
        Ok(_) | Err(EngineError::Closed) => {}
        Err(EngineError::ConsistencyTimeout { .. })
            if !engine
                .collection(NAME)
                .is_ok_and(|now| Arc::ptr_eq(&now, c)) => {}
        Err(e) => panic!("{what}: unexpected {} error: {e}", e.code()),
    }
}

#[test]
fn concurrent_creates_and_drops_of_one_name_are_linearisable() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(config(dir.path())).unwrap());
    let created = AtomicUsize::new(0);
    let existed = AtomicUsize::new(0);
    let dropped = AtomicUsize::new(0);
    let missing = AtomicUsize::new(0);
    let inserted = AtomicUsize::new(0);
    let searched = AtomicUsize::new(0);
    let start = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (engine, start) = (&engine, &start);
            let (created, existed, dropped, missing, inserted, searched) =
                (&created, &existed, &dropped, &missing, &inserted, &searched);
            s.spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1);
                start.wait();
                for round in 0..ROUNDS {
                    match next(&mut rng) % 4 {
                        0 => match engine.create_collection(schema()) {
                            Ok(_) => {
                                created.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(EngineError::CollectionExists { .. }) => {
                                existed.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("create: unexpected {} error: {e}", e.code()),
                        },
                        1 => match engine.drop_collection(NAME) {
                            Ok(()) => {
                                dropped.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(EngineError::CollectionNotFound { .. }) => {
                                missing.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("drop: unexpected {} error: {e}", e.code()),
                        },
                        op => match engine.collection(NAME) {
                            Err(EngineError::CollectionNotFound { .. }) => {}
                            Err(e) => panic!("lookup: unexpected {} error: {e}", e.code()),
                            Ok(c) if op == 2 => {
                                let n = 1 + (round % 7);
                                let first = (t * ROUNDS + round) as u64 * 8;
                                let ids: Vec<u64> = (first..first + n as u64).collect();
                                let r = c.insert(&rows(first, n), Some(&ids));
                                if r.is_ok() {
                                    inserted.fetch_add(1, Ordering::Relaxed);
                                }
                                check_data_op(engine, &c, r, "insert");
                            }
                            Ok(c) => {
                                let r = c.search(
                                    &rows(round as u64, 2),
                                    &SearchParams::new(5),
                                    ConsistencyLevel::Strong,
                                    None,
                                );
                                if r.is_ok() {
                                    searched.fetch_add(1, Ordering::Relaxed);
                                }
                                check_data_op(engine, &c, r, "search");
                            }
                        },
                    }
                }
            });
        }
    });
    let (created, dropped) = (created.into_inner(), dropped.into_inner());
    eprintln!(
        "created {created}, already there {}, dropped {dropped}, not there {}, inserts {}, searches {}",
        existed.into_inner(),
        missing.into_inner(),
        inserted.into_inner(),
        searched.into_inner()
    );
    // Linearisable from an empty start: successful creates and drops alternate.
    let exists = engine.collection(NAME).is_ok();
    assert_eq!(created - dropped, usize::from(exists));
    assert!(
        created > 10 && dropped > 10,
        "too little contention to prove anything"
    );

    // Only the name's directory is left: every tombstone was removed.
    let root = dir.path().join("collections");
    let left = |root: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let expected: Vec<String> = if exists { vec![NAME.into()] } else { vec![] };
    assert_eq!(left(&root), expected);

    // The name works: drop (if there) and create again, write, read, restart.
    if exists {
        engine.drop_collection(NAME).unwrap();
    }
    assert!(matches!(
        engine.drop_collection(NAME),
        Err(EngineError::CollectionNotFound { .. })
    ));
    let c = engine.create_collection(schema()).unwrap();
    assert_eq!(c.count(), 0, "a new collection starts empty");
    let ids: Vec<u64> = (0..40).collect();
    c.insert(&rows(1, 40), Some(&ids)).unwrap();
    let hits = c
        .search(
            &rows(1, 1),
            &SearchParams::new(1),
            ConsistencyLevel::Strong,
            None,
        )
        .unwrap();
    assert_eq!(hits.hits[0][0].id, 0);
    assert_eq!(c.count(), 40);
    drop(c);
    drop(Arc::into_inner(engine).expect("no other handle"));

    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(engine.list(), vec![NAME.to_string()]);
    assert_eq!(engine.collection(NAME).unwrap().count(), 40);
    assert_eq!(left(&root), vec![NAME.to_string()]);
}

#[test]
fn leftovers_of_interrupted_drops_and_creates_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    engine.create_collection(schema()).unwrap();
    drop(engine);
    let root = dir.path().join("collections");
    // A drop that renamed the directory away but did not get to delete it, and a create
    // that did not get to rename its directory into place.
    for leftover in [
        format!(".dropped-{NAME}.1234-0"),
        format!(".creating-{NAME}"),
    ] {
        std::fs::create_dir_all(root.join(&leftover).join("segments")).unwrap();
        std::fs::write(root.join(&leftover).join("manifest.json"), b"{}").unwrap();
    }
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(engine.list(), vec![NAME.to_string()]);
    let mut left: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec![NAME.to_string()]);
}
