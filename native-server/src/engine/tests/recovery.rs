//! Recovery: the write-ahead log and sealed segments survive restarts.

use super::*;

#[test]
fn the_largest_ids_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(config(dir.path())).unwrap();
        let c = engine
            .create_collection(schema("big", 2, IndexSpec::Flat, 2))
            .unwrap();
        c.insert(&[1.0, 2.0, 3.0, 4.0], Some(&[u64::MAX, u64::MAX - 1]))
            .unwrap();
        engine.close();
    }
    // Replaying the log computes the next automatic id past the largest one: no overflow.
    let engine = Engine::open(config(dir.path())).unwrap();
    let c = engine.collection("big").unwrap();
    assert_eq!(c.get(u64::MAX).unwrap(), vec![1.0, 2.0]);
    assert_eq!(c.count(), 2);
}

#[test]
fn restart_recovers_wal_and_segments_and_deletes_stay_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 4;
    {
        let engine = Engine::open(config(dir.path())).unwrap();
        let c = engine
            .create_collection(schema("r", dim, IndexSpec::Flat, 2))
            .unwrap();
        for id in 0..50u64 {
            c.insert(&vector(id, 0, dim), Some(&[id])).unwrap();
        }
        c.flush().unwrap();
        c.delete(&[3, 4, 5]).unwrap(); // sealed rows, deleted after the checkpoint
        c.insert(&vector(7, 1, dim), Some(&[7])).unwrap(); // upsert of a sealed row
        for id in 50..60u64 {
            c.insert(&vector(id, 0, dim), Some(&[id])).unwrap();
        }
        c.delete(&[55]).unwrap(); // growing row
        engine.close();
    }
    let engine = Engine::open(config(dir.path())).unwrap();
    let c = engine.collection("r").unwrap();
    assert_eq!(c.count(), 60 - 4);
    let ids = all_ids(&c, dim);
    for gone in [3, 4, 5, 55] {
        assert!(!ids.contains(&gone), "deleted id {gone} came back");
    }
    assert_eq!(c.get(7).unwrap(), vector(7, 1, dim));
    assert_eq!(c.get(8).unwrap(), vector(8, 0, dim));
    // Checkpoint the deletions, restart again, compact, restart again.
    c.flush().unwrap();
    drop(c);
    drop(engine);
    let engine = Engine::open(config(dir.path())).unwrap();
    let c = engine.collection("r").unwrap();
    assert_eq!(c.count(), 56);
    c.compact().unwrap();
    let info = c.describe();
    assert_eq!(
        info.segments
            .iter()
            .filter(|s| s.state == SegmentState::Sealed)
            .map(|s| s.rows)
            .sum::<usize>(),
        56
    );
    drop(c);
    drop(engine);
    // Leftovers of an interrupted checkpoint or build go on open; nothing else does.
    let root = dir.path().join("collections/r");
    let segments: Vec<_> = std::fs::read_dir(root.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let leftovers = [
        root.join("segments/9999999999"),
        segments[0].join("index-77.faiss"),
        segments[0].join("live.tmp"),
        root.join("manifest.tmp"),
    ];
    std::fs::create_dir_all(&leftovers[0]).unwrap();
    std::fs::write(leftovers[0].join("rows.bin"), b"x").unwrap();
    for f in &leftovers[1..] {
        std::fs::write(f, b"x").unwrap();
    }
    let engine = Engine::open(config(dir.path())).unwrap();
    for f in &leftovers {
        assert!(!f.exists(), "{} left", f.display());
    }
    assert!(segments.iter().all(|s| s.join("rows.bin").exists()));
    let c = engine.collection("r").unwrap();
    assert_eq!(all_ids(&c, dim).len(), 56);
    assert_eq!(c.get(7).unwrap(), vector(7, 1, dim));
    engine.drop_collection("r").unwrap();
    assert!(engine.list().is_empty());
    assert!(!dir.path().join("collections/r").exists());
}

/// Many writers at once share fsyncs (group commit): every write gets its own sequence range,
/// and all of them survive a restart.
#[test]
fn concurrent_writers_group_commit_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 4;
    {
        let engine = Engine::open(config(dir.path())).unwrap();
        let c = engine
            .create_collection(schema("gc", dim, IndexSpec::Flat, 3))
            .unwrap();
        let writers: Vec<_> = (0..8u64)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    (0..50u64)
                        .map(|i| {
                            let id = t * 1000 + i;
                            c.insert(&vector(id, 0, dim), Some(&[id])).unwrap().seq
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 400, "sequence numbers must be unique");
        assert_eq!(c.count(), 400);
    }
    let engine = Engine::open(config(dir.path())).unwrap();
    let c = engine.collection("gc").unwrap();
    assert_eq!(c.count(), 400);
    assert_eq!(c.get(7049).unwrap(), vector(7049, 0, dim));
}
