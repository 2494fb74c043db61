//! The SIMD128 distance kernels (`proxima_core::metric` on wasm32) against plain scalar sums,
//! at every length from 0 to 70: the unrolled bodies, their 4/8/16-float steps and the tails.
//! Runs in Node (default) and in headless Chromium (`WASM_BINDGEN_USE_BROWSER=1`).
#![cfg(target_arch = "wasm32")]

use proxima_core::metric::{decode_u8, dot, dot4, dot_u8, l2_squared, l2_squared4};
use wasm_bindgen_test::*;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            let x = (i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 2000;
            x as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn close(got: f32, want: f64) -> bool {
    (f64::from(got) - want).abs() <= 1e-4 * (1.0 + want.abs())
}

#[wasm_bindgen_test]
fn kernels_match_scalar_sums_at_every_length() {
    for n in 0..=70 {
        let q = values(n, 1);
        let rows: Vec<Vec<f32>> = (2..6).map(|s| values(n, s)).collect();
        let naive_dot = |r: &[f32]| -> f64 { q.iter().zip(r).map(|(a, b)| f64::from(a * b)).sum() };
        let naive_l2 = |r: &[f32]| -> f64 {
            q.iter()
                .zip(r)
                .map(|(a, b)| f64::from((a - b) * (a - b)))
                .sum()
        };
        let four = [&rows[0][..], &rows[1][..], &rows[2][..], &rows[3][..]];
        let (d4, l4) = (dot4(&q, four), l2_squared4(&q, four));
        for (j, r) in rows.iter().enumerate() {
            assert!(close(dot(&q, r), naive_dot(r)), "dot, n = {n}");
            assert!(close(l2_squared(&q, r), naive_l2(r)), "l2, n = {n}");
            assert!(close(d4[j], naive_dot(r)), "dot4 row {j}, n = {n}");
            assert!(close(l4[j], naive_l2(r)), "l2_squared4 row {j}, n = {n}");
        }
        let codes: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
        let want: f64 = q
            .iter()
            .zip(&codes)
            .map(|(a, &c)| f64::from(a * f32::from(c)))
            .sum();
        assert!(close(dot_u8(&q, &codes), want), "dot_u8, n = {n}");
        let mut out = vec![f32::NAN; n];
        decode_u8(-0.5, 0.25, &codes, &mut out);
        for (i, (&o, &c)) in out.iter().zip(&codes).enumerate() {
            // The same two roundings as the scalar form: equal bit for bit.
            assert_eq!(
                o.to_bits(),
                (-0.5 + 0.25 * f32::from(c)).to_bits(),
                "decode_u8 [{i}], n = {n}"
            );
        }
    }
}
