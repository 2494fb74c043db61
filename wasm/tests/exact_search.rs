//! Runs in Node (default) and in headless Chromium (`WASM_BINDGEN_USE_BROWSER=1`).
#![cfg(target_arch = "wasm32")]

use proxima_wasm::{exact_search_js, version};
use wasm_bindgen_test::*;

#[wasm_bindgen_test]
fn finds_nearest_neighbours() {
    // Four 2-d points; the query sits next to point 2, then point 3.
    let base = [0.0, 0.0, 10.0, 0.0, 5.0, 5.0, 6.0, 6.0];
    let res = exact_search_js(&base, 2, &[5.1, 5.0], 2, "l2").unwrap();
    assert_eq!(res.k(), 2);
    assert_eq!(res.ids().to_vec(), vec![2, 3]);
    let scores = res.scores().to_vec();
    assert!((scores[0] - 0.01).abs() < 1e-5);
    assert!((scores[1] - 1.81).abs() < 1e-4);
}

#[wasm_bindgen_test]
fn cosine_ranks_by_angle() {
    let base = [1.0, 0.0, 0.0, 3.0, 10.0, 10.0];
    let res = exact_search_js(&base, 2, &[2.0, 2.1], 3, "cosine").unwrap();
    assert_eq!(res.ids().to_vec(), vec![2, 1, 0]);
    assert!((res.scores().to_vec()[0] - 0.9997).abs() < 1e-3);
}

#[wasm_bindgen_test]
fn bad_input_throws_typed_errors() {
    assert!(exact_search_js(&[1.0, 2.0, 3.0], 2, &[1.0, 2.0], 1, "l2").is_err());
    assert!(exact_search_js(&[1.0, f32::NAN], 2, &[1.0, 2.0], 1, "l2").is_err());
    assert!(exact_search_js(&[1.0, 2.0], 2, &[1.0, 2.0], 0, "l2").is_err());
    assert!(exact_search_js(&[1.0, 2.0], 2, &[1.0, 2.0], 1, "hamming").is_err());
    assert!(!version().is_empty());
}
