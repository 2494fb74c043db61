//! The whole `VectorCache` API, in Node (default) and headless Chromium
//! (`WASM_BINDGEN_USE_BROWSER=1`).
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, BigInt, BigUint64Array, Function, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

use proxima_wasm::VectorCache;

fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &JsValue::from_str(k), v).unwrap();
    }
    o.into()
}

fn get(o: &JsValue, key: &str) -> JsValue {
    Reflect::get(o, &JsValue::from_str(key)).unwrap()
}

fn code(e: JsValue) -> String {
    get(&e, "code").as_string().unwrap_or_default()
}

fn nums(ids: &[f64]) -> JsValue {
    ids.iter()
        .map(|&i| JsValue::from_f64(i))
        .collect::<Array>()
        .into()
}

/// Seeded pseudo-random rows in [-1, 1).
fn rows(n: usize, dim: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.max(1);
    (0..n * dim)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

fn cache(dim: usize, metric: &str) -> VectorCache {
    VectorCache::new(obj(&[
        ("dim", (dim as f64).into()),
        ("metric", metric.into()),
    ]))
    .unwrap()
}

fn hit_ids(hits: &Array) -> Vec<f64> {
    hits.iter()
        .map(|h| get(&h, "id").as_f64().unwrap())
        .collect()
}

#[wasm_bindgen_test]
fn upsert_search_get_delete() {
    let dim = 16;
    let mut c = cache(dim, "cosine");
    let data = rows(500, dim, 7);
    let ids: Vec<f64> = (0..500).map(|i| i as f64 * 2.0).collect();
    let report = c.upsert(nums(&ids), &data).unwrap();
    assert_eq!(get(&report, "inserted").as_f64(), Some(500.0));
    assert_eq!(c.len(), 500);
    assert_eq!(c.dim(), 16);
    assert_eq!(c.metric(), "cosine");
    let q = &data[10 * dim..11 * dim];
    let hits = c.search(q, 5.0, JsValue::UNDEFINED).unwrap();
    assert_eq!(hits.length(), 5);
    assert_eq!(get(&hits.get(0), "id").as_f64(), Some(20.0));
    assert!((get(&hits.get(0), "score").as_f64().unwrap() - 1.0).abs() < 1e-5);
    let v = c.get(JsValue::from_f64(20.0)).unwrap().unwrap();
    assert_eq!(v.length() as usize, dim);
    assert!(c.get(JsValue::from_f64(21.0)).unwrap().is_none());
    assert!(c.has(JsValue::from_f64(20.0)).unwrap());
    assert_eq!(c.delete(nums(&[20.0, 21.0])).unwrap(), 1);
    let hits = c.search(q, 5.0, JsValue::UNDEFINED).unwrap();
    assert!(!hit_ids(&hits).contains(&20.0));
    assert_eq!(c.len(), 499);
    let batch = c
        .search_batch(&data[..3 * dim], 4.0, JsValue::UNDEFINED)
        .unwrap();
    assert_eq!(batch.length(), 3);
    let stats = c.stats();
    assert_eq!(get(&stats, "vectors").as_f64(), Some(499.0));
    assert!(get(&stats, "memoryBytes").as_f64().unwrap() > (499 * dim * 4) as f64);
    assert_eq!(get(&stats, "getHits").as_f64(), Some(1.0));
    assert_eq!(get(&stats, "getMisses").as_f64(), Some(1.0));
    assert_eq!(get(&stats, "metric").as_string().as_deref(), Some("cosine"));
    c.clear();
    assert_eq!(c.len(), 0);
}

#[wasm_bindgen_test]
fn ids_as_bigints_and_typed_arrays() {
    let dim = 4;
    let mut c = cache(dim, "l2");
    let big = (1u64 << 60) + 3;
    let ids = Array::new();
    ids.push(&JsValue::from(BigInt::from(big)));
    ids.push(&JsValue::from(BigInt::from(5u64)));
    c.upsert(ids.into(), &[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
        .unwrap();
    let typed = BigUint64Array::from(&[7u64, 8][..]);
    c.upsert(typed.into(), &[2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0])
        .unwrap();
    let hits = c
        .search(&[0.1, 0.0, 0.0, 0.0], 2.0, JsValue::UNDEFINED)
        .unwrap();
    let first = get(&hits.get(0), "id");
    assert!(first.is_bigint(), "ids above 2^53 come back as BigInt");
    assert_eq!(
        u64::try_from(first.unchecked_into::<BigInt>()).unwrap(),
        big
    );
    assert_eq!(
        get(&hits.get(1), "id").as_f64(),
        Some(5.0),
        "safe ids come back as numbers"
    );
    assert!(c.has(JsValue::from(BigInt::from(big))).unwrap());
    // An unsafe number is refused, never rounded.
    let unsafe_id = nums(&[9007199254740993.0]);
    assert_eq!(
        code(c.upsert(unsafe_id, &[1.0; 4]).unwrap_err()),
        "invalid_parameter"
    );
    for bad in [-1.0, 2.5, f64::NAN] {
        assert_eq!(
            code(c.delete(nums(&[bad])).unwrap_err()),
            "invalid_parameter"
        );
    }
    assert_eq!(
        code(c.get(JsValue::from_str("7")).unwrap_err()),
        "invalid_parameter"
    );
    assert_eq!(c.len(), 4);
}

#[wasm_bindgen_test]
fn filters_as_functions_and_lists() {
    let dim = 8;
    let mut c = cache(dim, "l2");
    let data = rows(300, dim, 3);
    let ids: Vec<f64> = (0..300).map(f64::from).collect();
    c.upsert(nums(&ids), &data).unwrap();
    let q = &data[..dim];
    let even = Function::new_with_args("id", "return id % 2 === 0");
    let hits = c.search(q, 10.0, obj(&[("filter", even.into())])).unwrap();
    assert_eq!(hits.length(), 10);
    assert!(hit_ids(&hits).iter().all(|id| id % 2.0 == 0.0));
    let allow = nums(&[5.0, 6.0, 299.0, 1000.0]);
    let hits = c
        .search(q, 10.0, obj(&[("filter", allow), ("ef", 32.into())]))
        .unwrap();
    let mut got = hit_ids(&hits);
    got.sort_by(f64::total_cmp);
    assert_eq!(got, vec![5.0, 6.0, 299.0]);
    let throws = Function::new_with_args("id", "throw new Error('boom')");
    let err = c
        .search(q, 3.0, obj(&[("filter", throws.into())]))
        .unwrap_err();
    assert!(format!("{err:?}").contains("boom"));
    let err = c
        .search(q, 3.0, obj(&[("filter", "x".into())]))
        .unwrap_err();
    assert_eq!(code(err), "invalid_parameter");
}

#[wasm_bindgen_test]
fn bad_input_throws_coded_errors() {
    let bad_opts = [
        obj(&[("dim", 0.into()), ("metric", "l2".into())]),
        obj(&[("dim", 4.into()), ("metric", "hamming".into())]),
        obj(&[
            ("dim", 4.into()),
            ("metric", "l2".into()),
            ("quantization", "pq".into()),
        ]),
        obj(&[
            ("dim", 4.into()),
            ("metric", "l2".into()),
            ("colour", "red".into()),
        ]),
        obj(&[("metric", "l2".into())]),
        JsValue::from_str("dim=4"),
    ];
    for (i, o) in bad_opts.into_iter().enumerate() {
        let err = VectorCache::new(o)
            .err()
            .unwrap_or_else(|| panic!("options #{i} were accepted"));
        assert_eq!(code(err), "invalid_parameter", "options #{i}");
    }
    let mut c = cache(4, "cosine");
    assert_eq!(
        code(c.upsert(nums(&[1.0]), &[1.0, 2.0, 3.0]).unwrap_err()),
        "dimension_mismatch"
    );
    assert_eq!(
        code(c.upsert(nums(&[1.0, 2.0]), &[1.0; 4]).unwrap_err()),
        "id_count_mismatch"
    );
    assert_eq!(
        code(
            c.upsert(nums(&[1.0]), &[f32::NAN, 1.0, 1.0, 1.0])
                .unwrap_err()
        ),
        "non_finite_value"
    );
    assert_eq!(
        code(c.upsert(nums(&[1.0]), &[0.0; 4]).unwrap_err()),
        "zero_vector"
    );
    c.upsert(nums(&[1.0]), &[1.0; 4]).unwrap();
    assert_eq!(
        code(c.search(&[1.0; 3], 1.0, JsValue::UNDEFINED).unwrap_err()),
        "dimension_mismatch"
    );
    for k in [0.0, -1.0, 1.5, 1e9] {
        assert_eq!(
            code(c.search(&[1.0; 4], k, JsValue::UNDEFINED).unwrap_err()),
            "k_out_of_range"
        );
    }
    let err = c
        .search(&[1.0; 4], 1.0, obj(&[("ef", 0.into())]))
        .unwrap_err();
    assert_eq!(code(err.clone()), "invalid_parameter");
    let message = format!("{err:?}");
    assert!(message.contains("invalid_parameter: "), "{message}");
}

#[wasm_bindgen_test]
fn bytes_round_trip_and_corruption() {
    let dim = 12;
    for quantization in ["none", "sq8"] {
        let opts = obj(&[
            ("dim", (dim as f64).into()),
            ("metric", "ip".into()),
            ("quantization", quantization.into()),
            ("capacity", 1000.into()),
        ]);
        let mut c = VectorCache::new(opts).unwrap();
        let data = rows(400, dim, 11);
        let ids: Vec<f64> = (0..400).map(f64::from).collect();
        c.upsert(nums(&ids), &data).unwrap();
        c.delete(nums(&ids[..50])).unwrap();
        let bytes = c.to_bytes();
        let back = VectorCache::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back.len(), 350);
        for q in data.chunks_exact(dim).take(10) {
            let a = c.search(q, 5.0, JsValue::UNDEFINED).unwrap();
            let b = back.search(q, 5.0, JsValue::UNDEFINED).unwrap();
            assert_eq!(hit_ids(&a), hit_ids(&b));
        }
        let mut corrupt = bytes.clone();
        corrupt[bytes.len() / 2] ^= 1;
        assert_eq!(
            code(VectorCache::from_bytes(&corrupt).err().unwrap()),
            "malformed"
        );
        assert_eq!(
            code(
                VectorCache::from_bytes(&bytes[..bytes.len() - 9])
                    .err()
                    .unwrap()
            ),
            "malformed"
        );
        assert_eq!(
            code(VectorCache::from_bytes(b"not an index").err().unwrap()),
            "malformed"
        );
    }
}

#[wasm_bindgen_test]
fn capacity_evicts_least_recently_hit() {
    let dim = 4;
    let opts = obj(&[
        ("dim", 4.into()),
        ("metric", "l2".into()),
        ("capacity", 50.into()),
    ]);
    let mut c = VectorCache::new(opts).unwrap();
    let data = rows(60, dim, 5);
    let ids: Vec<f64> = (0..50).map(f64::from).collect();
    c.upsert(nums(&ids), &data[..50 * dim]).unwrap();
    c.get(JsValue::from_f64(0.0)).unwrap();
    let report = c
        .upsert(nums(&[100.0, 101.0]), &data[50 * dim..52 * dim])
        .unwrap();
    let evicted: Array = get(&report, "evicted").unchecked_into();
    assert_eq!(hit_ids_plain(&evicted), vec![1.0, 2.0]);
    assert_eq!(c.len(), 50);
    assert!(c.has(JsValue::from_f64(0.0)).unwrap());
    assert_eq!(get(&c.stats(), "evictions").as_f64(), Some(2.0));
}

fn hit_ids_plain(a: &Array) -> Vec<f64> {
    a.iter().map(|v| v.as_f64().unwrap()).collect()
}

/// The same index built here and natively serialises to the same bytes (the native golden
/// test in `proxima_core::hnsw` pins the length and CRC): a server-built snapshot loads here.
#[wasm_bindgen_test]
fn bytes_match_the_native_build() {
    let opts = obj(&[
        ("dim", 3.into()),
        ("metric", "l2".into()),
        ("m", 2.into()),
        ("seed", 7.into()),
    ]);
    let mut c = VectorCache::new(opts).unwrap();
    let ids = nums(&[10.0, 20.0, 30.0, 40.0]);
    let big = Array::from(&ids);
    big.push(&JsValue::from(BigInt::from(1u64 << 60)));
    let rows = [
        0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0,
    ];
    c.upsert(big.into(), &rows).unwrap();
    c.delete(nums(&[30.0])).unwrap();
    let bytes = c.to_bytes();
    assert_eq!(bytes.len(), 460);
    assert_eq!(proxima_core::crc32::hash(&bytes), 0x2144_DF1C);
}
