//! Writes: inserts, upserts and deletes, input validation, and a model-based property test.

use super::*;

#[test]
fn writes_searches_upserts_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let c = engine
        .create_collection(schema("docs", 4, IndexSpec::Flat, 1))
        .unwrap();
    let ack = c
        .insert(&[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0], Some(&[10, 20]))
        .unwrap();
    assert_eq!(ack.ids, vec![10, 20]);
    assert_eq!(ack.seq, 2);
    let r = c
        .search(
            &[0.9, 1.0, 1.0, 1.0],
            &SearchParams::new(1),
            ConsistencyLevel::Strong,
            None,
        )
        .unwrap();
    assert_eq!(r.hits[0][0].id, 20);
    assert!(r.seq >= 2);
    // Upsert replaces, count stays exact.
    c.insert(&[5.0, 5.0, 5.0, 5.0], Some(&[10])).unwrap();
    assert_eq!(c.get(10).unwrap(), vec![5.0; 4]);
    assert_eq!(c.count(), 2);
    let del = c.delete(&[20, 20, 999]).unwrap();
    assert_eq!(del.deleted, 1);
    assert!(matches!(c.get(20), Err(EngineError::IdNotFound { id: 20 })));
    assert_eq!(all_ids(&c, 4), vec![10]);
    assert_eq!(c.count(), 1);
    assert_eq!(engine.list(), vec!["docs".to_string()]);
}

#[test]
fn bad_input_is_rejected_with_typed_errors_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let c = engine
        .create_collection(schema("c", 3, IndexSpec::Flat, 1))
        .unwrap();
    let invalid = |r: EngineResult<WriteAck>| match r {
        Err(EngineError::Invalid(e)) => e,
        other => panic!("expected a validation error, got {other:?}"),
    };
    assert_eq!(
        invalid(c.insert(&[1.0, 2.0], Some(&[1]))),
        CoreError::DimensionMismatch {
            expected: 3,
            got: 2
        }
    );
    assert!(matches!(
        invalid(c.insert(&[1.0, f32::NAN, 2.0], Some(&[1]))),
        CoreError::NonFiniteValue { row: 0, col: 1, .. }
    ));
    assert_eq!(
        invalid(c.insert(&[], Some(&[]))),
        CoreError::EmptyBatch { what: "vector" }
    );
    assert_eq!(
        invalid(c.insert(&[1.0; 6], Some(&[1, 1]))),
        CoreError::DuplicateId { id: 1 }
    );
    assert!(matches!(
        c.insert(&[1.0; 3], None),
        Err(EngineError::IdsRequired)
    ));
    // Norms whose distances would overflow f32 (any metric), zero vectors under cosine.
    assert!(matches!(
        invalid(c.insert(&[1.0, 2.0, 3.0, 3e38, 0.0, 0.0], Some(&[1, 2]))),
        CoreError::VectorTooLarge { row: 1, .. }
    ));
    let mut cos = schema("cos", 3, IndexSpec::Flat, 1);
    cos.metric = Metric::Cosine;
    let cos = engine.create_collection(cos).unwrap();
    assert_eq!(
        invalid(cos.insert(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0], Some(&[1, 2]))),
        CoreError::ZeroVector { row: 1 }
    );
    assert!(matches!(
        cos.search(
            &[0.0; 3],
            &SearchParams::new(1),
            ConsistencyLevel::Strong,
            None
        ),
        Err(EngineError::Invalid(CoreError::ZeroVector { row: 0 }))
    ));
    assert_eq!(cos.committed_seq(), 0);
    assert_eq!(
        c.committed_seq(),
        0,
        "nothing may be written by a rejected request"
    );
    for k in [0, 10_001] {
        assert!(matches!(
            c.search(
                &[1.0; 3],
                &SearchParams::new(k),
                ConsistencyLevel::Strong,
                None
            ),
            Err(EngineError::Invalid(CoreError::KOutOfRange { .. }))
        ));
    }
    // k within max_k and queries within max_queries, but too many hits for one answer.
    assert!(matches!(
        c.search(
            &vec![1.0; 3 * 101],
            &SearchParams::new(10_000),
            ConsistencyLevel::Strong,
            None
        ),
        Err(EngineError::Invalid(CoreError::ResultTooLarge {
            queries: 101,
            k: 10_000,
            max: 1_000_000
        }))
    ));
    assert!(matches!(
        engine.create_collection(schema("c", 3, IndexSpec::Flat, 1)),
        Err(EngineError::CollectionExists { .. })
    ));
    assert!(matches!(
        engine.collection("nope"),
        Err(EngineError::CollectionNotFound { .. })
    ));
    for bad in [
        IndexSpec::IvfFlat { nlist: 0 },
        IndexSpec::Hnsw {
            m: 0,
            ef_construction: 10,
        },
        IndexSpec::IvfPq {
            nlist: 4,
            m: 2,
            nbits: 8,
        },
    ] {
        assert!(
            engine.create_collection(schema("x", 3, bad, 1)).is_err(),
            "{bad}"
        );
    }
    assert!(engine
        .create_collection(schema("../evil", 3, IndexSpec::Flat, 1))
        .is_err());
    let mut auto = schema("auto", 2, IndexSpec::Flat, 2);
    auto.auto_id = true;
    let a = engine.create_collection(auto).unwrap();
    assert!(matches!(
        a.insert(&[1.0, 2.0], Some(&[5])),
        Err(EngineError::IdsNotAllowed)
    ));
    let ack = a.insert(&[1.0, 2.0, 3.0, 4.0], None).unwrap();
    assert_eq!(ack.ids.len(), 2);
    assert_ne!(ack.ids[0], ack.ids[1]);
}

#[derive(Debug, Clone)]
enum Op {
    Upsert(Vec<u64>),
    Delete(Vec<u64>),
    Flush,
    Compact,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(0u64..60, 1..8).prop_map(|mut v| { v.sort(); v.dedup(); Op::Upsert(v) }),
        4 => proptest::collection::vec(0u64..60, 1..8).prop_map(Op::Delete),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the sequence of upserts, deletes, flushes, compactions and restarts, the
    /// collection holds exactly the model's live ids with their latest vectors.
    #[test]
    fn engine_matches_a_model(ops in proptest::collection::vec(op(), 1..40), shards in 1usize..4) {
        let dir = tempfile::tempdir().unwrap();
        let dim = 3;
        let mut cfg = config(dir.path());
        cfg.seal_rows = 16;
        let mut engine = Engine::open(cfg.clone()).unwrap();
        engine.create_collection(schema("m", dim, IndexSpec::Flat, shards)).unwrap();
        let mut model: HashMap<u64, Vec<f32>> = HashMap::new();
        for (step, op) in ops.iter().enumerate() {
            let c = engine.collection("m").unwrap();
            match op {
                Op::Upsert(ids) => {
                    let vectors: Vec<f32> = ids.iter().flat_map(|&id| vector(id, step as u64, dim)).collect();
                    c.insert(&vectors, Some(ids)).unwrap();
                    for &id in ids { model.insert(id, vector(id, step as u64, dim)); }
                }
                Op::Delete(ids) => {
                    let present = { let mut u = ids.clone(); u.sort(); u.dedup(); u.iter().filter(|i| model.contains_key(i)).count() };
                    let ack = c.delete(ids).unwrap();
                    prop_assert_eq!(ack.deleted, present);
                    for id in ids { model.remove(id); }
                }
                Op::Flush => c.flush().unwrap(),
                Op::Compact => c.compact().unwrap(),
                Op::Restart => {
                    drop(c);
                    drop(engine);
                    engine = Engine::open(cfg.clone()).unwrap();
                }
            }
            let c = engine.collection("m").unwrap();
            prop_assert_eq!(c.count() as usize, model.len());
        }
        let c = engine.collection("m").unwrap();
        let mut want: Vec<u64> = model.keys().copied().collect();
        want.sort_unstable();
        prop_assert_eq!(all_ids(&c, dim), want);
        for (id, v) in &model {
            prop_assert_eq!(&c.get(*id).unwrap(), v);
        }
    }
}
