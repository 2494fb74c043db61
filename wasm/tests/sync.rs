//! A `VectorCache` following a server collection: snapshots and change batches made with
//! `proxima_core::sync` (as the server makes them), applied here.
#![cfg(target_arch = "wasm32")]

use js_sys::{Object, Reflect};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

use proxima_core::hnsw::{Hnsw, HnswConfig};
use proxima_core::sync::{encode_snapshot, Change, ChangeBatch, ChangeRecord, SnapshotHeader};
use proxima_core::Metric;
use proxima_wasm::VectorCache;

fn get(o: &JsValue, key: &str) -> JsValue {
    Reflect::get(o, &JsValue::from_str(key)).unwrap()
}

fn code(e: JsValue) -> String {
    get(&e, "code").as_string().unwrap_or_default()
}

fn num(o: &JsValue, key: &str) -> f64 {
    get(o, key).as_f64().unwrap()
}

const DIM: usize = 4;

/// A server-side snapshot of `n` vectors (ids 0..n, row i = [i, 0, 0, 1]) at sequence `seq`.
fn snapshot(handle: &str, seq: u64, n: u64) -> Vec<u8> {
    let mut index = Hnsw::new(HnswConfig::new(DIM, Metric::L2)).unwrap();
    let ids: Vec<u64> = (0..n).collect();
    let rows: Vec<f32> = ids
        .iter()
        .flat_map(|&i| [i as f32, 0.0, 0.0, 1.0])
        .collect();
    if n > 0 {
        index.upsert(&ids, &rows).unwrap();
    }
    let header = SnapshotHeader {
        collection: "docs".into(),
        handle: handle.into(),
        dim: DIM,
        metric: Metric::L2,
        seq,
        count: n,
        complete: true,
    };
    encode_snapshot(&header, &index.to_bytes())
}

fn up(seq: u64, id: u64, x: f32) -> ChangeRecord {
    ChangeRecord {
        seq,
        change: Change::Upsert {
            id,
            vector: vec![x, 0.0, 0.0, 1.0],
        },
    }
}

fn del(seq: u64, id: u64) -> ChangeRecord {
    ChangeRecord {
        seq,
        change: Change::Delete { id },
    }
}

fn frame(handle: &str, since: u64, until: u64, records: Vec<ChangeRecord>, more: bool) -> Vec<u8> {
    ChangeBatch {
        collection: "docs".into(),
        handle: handle.into(),
        since,
        until,
        records,
        has_more: more,
    }
    .to_bytes()
}

fn nearest(c: &VectorCache, x: f32) -> f64 {
    let hits = c
        .search(&[x, 0.0, 0.0, 1.0], 1.0, JsValue::UNDEFINED)
        .unwrap();
    get(&hits.get(0), "id").as_f64().unwrap()
}

#[wasm_bindgen_test]
fn a_snapshot_then_batches_move_the_watermark() {
    let mut c = VectorCache::from_snapshot(&snapshot("h1", 10, 100)).unwrap();
    assert!(c.synced());
    assert!(c.complete());
    assert_eq!(c.watermark().unwrap(), Some(10.0));
    assert_eq!(c.handle().as_deref(), Some("h1"));
    assert_eq!(c.collection().as_deref(), Some("docs"));
    assert_eq!(c.len(), 100);
    assert_eq!(nearest(&c, 42.2), 42.0);

    // Replace 42 far away, delete 7, add 500; more to come.
    let batch = frame(
        "h1",
        10,
        14,
        vec![up(11, 42, 1000.0), del(12, 7), up(14, 500, 42.0)],
        true,
    );
    let report = c.apply_changes(&batch).unwrap();
    assert_eq!(num(&report, "upserted"), 2.0);
    assert_eq!(num(&report, "deleted"), 1.0);
    assert_eq!(num(&report, "skipped"), 0.0);
    assert_eq!(num(&report, "watermark"), 14.0);
    assert_eq!(get(&report, "hasMore").as_bool(), Some(true));
    assert_eq!(c.watermark().unwrap(), Some(14.0));
    assert_eq!(nearest(&c, 42.1), 500.0);
    assert!(!c.has(JsValue::from_f64(7.0)).unwrap());
    assert_eq!(c.len(), 100);

    // The same batch again: every record is at or below the watermark.
    let report = c.apply_changes(&batch).unwrap();
    assert_eq!(num(&report, "skipped"), 3.0);
    assert_eq!(num(&report, "watermark"), 14.0);

    // An empty batch (a long poll that timed out) covers (since, until] with no records.
    let report = c
        .apply_changes(&frame("h1", 14, 20, vec![], false))
        .unwrap();
    assert_eq!(num(&report, "watermark"), 20.0);
    assert_eq!(get(&report, "hasMore").as_bool(), Some(false));
    assert!(c.complete());
}

#[wasm_bindgen_test]
fn another_handle_or_a_gap_needs_a_snapshot() {
    let mut c = VectorCache::from_snapshot(&snapshot("h1", 10, 5)).unwrap();
    let other = c
        .apply_changes(&frame("h2", 10, 11, vec![up(11, 1, 9.0)], false))
        .unwrap_err();
    assert_eq!(code(other.clone()), "snapshot_required");
    assert!(format!("{other:?}").contains("snapshot_required: "));
    let gap = c
        .apply_changes(&frame("h1", 12, 13, vec![up(13, 1, 9.0)], false))
        .unwrap_err();
    assert_eq!(code(gap), "snapshot_required");
    // Nothing changed.
    assert_eq!(c.watermark().unwrap(), Some(10.0));
    assert_eq!(nearest(&c, 1.0), 1.0);
}

#[wasm_bindgen_test]
fn damaged_frames_and_snapshots_are_malformed() {
    let mut c = VectorCache::from_snapshot(&snapshot("h1", 3, 5)).unwrap();
    let mut batch = frame("h1", 3, 4, vec![up(4, 1, 2.0)], false);
    let mid = batch.len() / 2;
    batch[mid] ^= 0x10;
    assert_eq!(code(c.apply_changes(&batch).unwrap_err()), "malformed");
    assert_eq!(code(c.apply_changes(b"PXSY").unwrap_err()), "malformed");
    // A record of the wrong dimension refuses the whole batch.
    let bad = ChangeBatch {
        collection: "docs".into(),
        handle: "h1".into(),
        since: 3,
        until: 5,
        records: vec![
            up(4, 1, 2.0),
            ChangeRecord {
                seq: 5,
                change: Change::Upsert {
                    id: 2,
                    vector: vec![1.0],
                },
            },
        ],
        has_more: false,
    };
    assert_eq!(
        code(c.apply_changes(&bad.to_bytes()).unwrap_err()),
        "dimension_mismatch"
    );
    assert_eq!(c.watermark().unwrap(), Some(3.0));

    let snap = snapshot("h1", 3, 5);
    for cut in [0, 3, 20, snap.len() - 1] {
        let err = VectorCache::from_snapshot(&snap[..cut]).err().unwrap();
        assert_eq!(code(err), "malformed", "cut at {cut}");
    }
    // Plain index bytes are not a snapshot.
    let plain = Hnsw::new(HnswConfig::new(DIM, Metric::L2))
        .unwrap()
        .to_bytes();
    assert_eq!(
        code(VectorCache::from_snapshot(&plain).err().unwrap()),
        "malformed"
    );
}

#[wasm_bindgen_test]
fn to_snapshot_round_trips_the_watermark_and_handle() {
    let mut c = VectorCache::from_snapshot(&snapshot("h7", 0, 0)).unwrap();
    assert!(c.is_empty());
    c.apply_changes(&frame(
        "h7",
        0,
        9,
        vec![up(1, 1, 1.0), up(2, 2, 2.0), up(3, 3, 3.0), del(9, 2)],
        false,
    ))
    .unwrap();
    let blob = c.to_snapshot().unwrap();
    let back = VectorCache::from_snapshot(&blob).unwrap();
    assert_eq!(back.watermark().unwrap(), Some(9.0));
    assert_eq!(back.handle().as_deref(), Some("h7"));
    assert_eq!(back.collection().as_deref(), Some("docs"));
    assert!(back.complete());
    assert_eq!(back.len(), 2);
    assert_eq!(back.to_snapshot().unwrap(), blob);
    // The blob's index part is the cache's own bytes.
    assert!(blob.ends_with(&c.to_bytes()));
}

#[wasm_bindgen_test]
fn local_writes_make_a_synced_cache_incomplete() {
    let mut c = VectorCache::from_snapshot(&snapshot("h1", 1, 3)).unwrap();
    c.delete(JsValue::from_f64(99.0)).unwrap(); // absent: nothing changes
    assert!(c.complete());
    c.delete(JsValue::from_f64(1.0)).unwrap();
    assert!(!c.complete());
    let back = VectorCache::from_snapshot(&c.to_snapshot().unwrap()).unwrap();
    assert!(!back.complete());
    assert!(back.synced());
}

#[wasm_bindgen_test]
fn a_plain_cache_is_not_synced() {
    let opts = Object::new();
    Reflect::set(&opts, &"dim".into(), &4.into()).unwrap();
    Reflect::set(&opts, &"metric".into(), &"l2".into()).unwrap();
    let mut c = VectorCache::new(opts.into()).unwrap();
    assert!(!c.synced());
    assert!(!c.complete());
    assert_eq!(c.watermark().unwrap(), None);
    assert_eq!(c.handle(), None);
    assert_eq!(c.collection(), None);
    assert_eq!(code(c.to_snapshot().unwrap_err()), "not_synced");
    assert_eq!(
        code(
            c.apply_changes(&frame("h1", 0, 1, vec![], false))
                .unwrap_err()
        ),
        "not_synced"
    );
    // A plain cache's bytes still load as a plain cache.
    let back = VectorCache::from_bytes(&c.to_bytes()).unwrap();
    assert!(!back.synced());
}

#[wasm_bindgen_test]
fn sequences_past_2_pow_53_are_refused() {
    let mut c = VectorCache::from_snapshot(&snapshot("h1", 1, 1)).unwrap();
    let big = 1u64 << 53;
    let err = c.apply_changes(&frame("h1", 1, big, vec![], false));
    assert_eq!(code(err.unwrap_err()), "unsupported");
    assert_eq!(c.watermark().unwrap(), Some(1.0));
    let far = VectorCache::from_snapshot(&snapshot("h1", big, 1)).unwrap();
    assert_eq!(code(far.watermark().unwrap_err()), "unsupported");
}
