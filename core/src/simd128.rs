//! Distance kernels written with WebAssembly SIMD128 intrinsics.
//!
//! Compiled only for `wasm32` with the `simd128` target feature (set for the wasm target in
//! `.cargo/config.toml`): LLVM does not vectorise the portable kernels' float reductions there,
//! and the scalar build measured 2.2× slower per query. Every load is an unaligned `v128_load`
//! of 16 bytes that lies inside the slices (checked by the loop bounds).

use core::arch::wasm32::*;

#[inline(always)]
fn hsum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v)
        + f32x4_extract_lane::<1>(v)
        + f32x4_extract_lane::<2>(v)
        + f32x4_extract_lane::<3>(v)
}

#[inline(always)]
fn load_f32(s: &[f32], i: usize) -> v128 {
    debug_assert!(i + 4 <= s.len());
    // SAFETY: callers pass `i + 4 <= s.len()`, so the 16 bytes read lie inside `s`;
    // `v128_load` has no alignment requirement.
    unsafe { v128_load(s.as_ptr().add(i) as *const v128) }
}

/// `a · b` (`L2 = false`) or `|a − b|²` (`L2 = true`) of four floats, as four lanes.
#[inline(always)]
fn term<const L2: bool>(a: v128, b: v128) -> v128 {
    if L2 {
        let d = f32x4_sub(a, b);
        f32x4_mul(d, d)
    } else {
        f32x4_mul(a, b)
    }
}

/// The body of [`dot`] and [`l2_squared`]: four independent accumulators, 16 floats a step.
#[inline(always)]
fn reduce<const L2: bool>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut s = [f32x4_splat(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (j, acc) in s.iter_mut().enumerate() {
            *acc = f32x4_add(
                *acc,
                term::<L2>(load_f32(a, i + 4 * j), load_f32(b, i + 4 * j)),
            );
        }
        i += 16;
    }
    while i + 4 <= n {
        s[0] = f32x4_add(s[0], term::<L2>(load_f32(a, i), load_f32(b, i)));
        i += 4;
    }
    let mut sum = hsum(f32x4_add(f32x4_add(s[0], s[1]), f32x4_add(s[2], s[3])));
    while i < n {
        let (x, y) = (a[i], b[i]);
        sum += if L2 { (x - y) * (x - y) } else { x * y };
        i += 1;
    }
    sum
}

/// Inner product.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    reduce::<false>(a, b)
}

/// Squared Euclidean distance.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    reduce::<true>(a, b)
}

/// `Σ q[i] · codes[i]` for SQ8 codes (u8 widened to f32).
#[inline]
pub fn dot_u8(q: &[f32], codes: &[u8]) -> f32 {
    let n = q.len().min(codes.len());
    let (mut s0, mut s1, mut s2, mut s3) = (
        f32x4_splat(0.0),
        f32x4_splat(0.0),
        f32x4_splat(0.0),
        f32x4_splat(0.0),
    );
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: `i + 16 <= codes.len()`: the 16 bytes read lie inside `codes`.
        let c = unsafe { v128_load(codes.as_ptr().add(i) as *const v128) };
        let lo = u16x8_extend_low_u8x16(c);
        let hi = u16x8_extend_high_u8x16(c);
        let c0 = f32x4_convert_u32x4(u32x4_extend_low_u16x8(lo));
        let c1 = f32x4_convert_u32x4(u32x4_extend_high_u16x8(lo));
        let c2 = f32x4_convert_u32x4(u32x4_extend_low_u16x8(hi));
        let c3 = f32x4_convert_u32x4(u32x4_extend_high_u16x8(hi));
        s0 = f32x4_add(s0, f32x4_mul(load_f32(q, i), c0));
        s1 = f32x4_add(s1, f32x4_mul(load_f32(q, i + 4), c1));
        s2 = f32x4_add(s2, f32x4_mul(load_f32(q, i + 8), c2));
        s3 = f32x4_add(s3, f32x4_mul(load_f32(q, i + 12), c3));
        i += 16;
    }
    let mut sum = hsum(f32x4_add(f32x4_add(s0, s1), f32x4_add(s2, s3)));
    while i < n {
        sum += q[i] * f32::from(codes[i]);
        i += 1;
    }
    sum
}

/// Four inner products (`L2 = false`) or squared L2 distances of `q` with four rows: each
/// step loads four floats of the query once for the four rows.
#[inline]
pub fn batch4<const L2: bool>(q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
    let n = rows.iter().fold(q.len(), |n, r| n.min(r.len()));
    let mut acc = [f32x4_splat(0.0); 8];
    let mut i = 0;
    while i + 8 <= n {
        let (q0, q1) = (load_f32(q, i), load_f32(q, i + 4));
        for (j, row) in rows.iter().enumerate() {
            acc[2 * j] = f32x4_add(acc[2 * j], term::<L2>(q0, load_f32(row, i)));
            acc[2 * j + 1] = f32x4_add(acc[2 * j + 1], term::<L2>(q1, load_f32(row, i + 4)));
        }
        i += 8;
    }
    let mut out = [0.0f32; 4];
    for (j, row) in rows.iter().enumerate() {
        let mut sum = hsum(f32x4_add(acc[2 * j], acc[2 * j + 1]));
        for k in i..n {
            let (a, b) = (q[k], row[k]);
            sum += if L2 { (a - b) * (a - b) } else { a * b };
        }
        out[j] = sum;
    }
    out
}
