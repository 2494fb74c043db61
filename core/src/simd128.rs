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
/// Unrolled by hand (here and in [`batch4`]): a loop over an array of accumulators keeps
/// them in registers only when LLVM unrolls it, which it does not when optimising for size.
#[inline(always)]
fn reduce<const L2: bool>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (mut s0, mut s1, mut s2, mut s3) = (
        f32x4_splat(0.0),
        f32x4_splat(0.0),
        f32x4_splat(0.0),
        f32x4_splat(0.0),
    );
    let mut i = 0;
    while i + 16 <= n {
        s0 = f32x4_add(s0, term::<L2>(load_f32(a, i), load_f32(b, i)));
        s1 = f32x4_add(s1, term::<L2>(load_f32(a, i + 4), load_f32(b, i + 4)));
        s2 = f32x4_add(s2, term::<L2>(load_f32(a, i + 8), load_f32(b, i + 8)));
        s3 = f32x4_add(s3, term::<L2>(load_f32(a, i + 12), load_f32(b, i + 12)));
        i += 16;
    }
    while i + 4 <= n {
        s0 = f32x4_add(s0, term::<L2>(load_f32(a, i), load_f32(b, i)));
        i += 4;
    }
    let mut sum = hsum(f32x4_add(f32x4_add(s0, s1), f32x4_add(s2, s3)));
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

/// `out[i] = min + step · codes[i]`, 16 codes a step (the same two roundings as the scalar
/// form: no fused multiply-add).
#[inline]
pub fn decode_u8(min: f32, step: f32, codes: &[u8], out: &mut [f32]) {
    let n = codes.len().min(out.len());
    let (vmin, vstep) = (f32x4_splat(min), f32x4_splat(step));
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: `i + 16 <= codes.len()`: the 16 bytes read lie inside `codes`.
        let c = unsafe { v128_load(codes.as_ptr().add(i) as *const v128) };
        let lo = u16x8_extend_low_u8x16(c);
        let hi = u16x8_extend_high_u8x16(c);
        let dec = |part: v128| f32x4_add(vmin, f32x4_mul(vstep, f32x4_convert_u32x4(part)));
        let d = [
            dec(u32x4_extend_low_u16x8(lo)),
            dec(u32x4_extend_high_u16x8(lo)),
            dec(u32x4_extend_low_u16x8(hi)),
            dec(u32x4_extend_high_u16x8(hi)),
        ];
        // SAFETY: `i + 16 <= out.len()`: the 64 bytes written lie inside `out`; `v128_store`
        // has no alignment requirement.
        unsafe {
            let o = out.as_mut_ptr().add(i);
            v128_store(o as *mut v128, d[0]);
            v128_store(o.add(4) as *mut v128, d[1]);
            v128_store(o.add(8) as *mut v128, d[2]);
            v128_store(o.add(12) as *mut v128, d[3]);
        }
        i += 16;
    }
    while i < n {
        out[i] = min + step * f32::from(codes[i]);
        i += 1;
    }
}

/// Four inner products (`L2 = false`) or squared L2 distances of `q` with four rows: each
/// step loads four floats of the query once for the four rows. Compiled as a function of its
/// own (wasm-opt may inline it again): inlined by LLVM into `dist4` when optimising for size,
/// V8's code for its loop took 47 x86 instructions a step instead of 43 (counted under
/// callgrind).
#[inline(never)]
pub fn batch4<const L2: bool>(q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
    let [r0, r1, r2, r3] = rows;
    let n = q
        .len()
        .min(r0.len())
        .min(r1.len())
        .min(r2.len())
        .min(r3.len());
    let zero = f32x4_splat(0.0);
    let (mut a0, mut a1, mut a2, mut a3) = (zero, zero, zero, zero);
    let (mut b0, mut b1, mut b2, mut b3) = (zero, zero, zero, zero);
    let mut i = 0;
    while i + 8 <= n {
        let q0 = load_f32(q, i);
        a0 = f32x4_add(a0, term::<L2>(q0, load_f32(r0, i)));
        a1 = f32x4_add(a1, term::<L2>(q0, load_f32(r1, i)));
        a2 = f32x4_add(a2, term::<L2>(q0, load_f32(r2, i)));
        a3 = f32x4_add(a3, term::<L2>(q0, load_f32(r3, i)));
        let q1 = load_f32(q, i + 4);
        b0 = f32x4_add(b0, term::<L2>(q1, load_f32(r0, i + 4)));
        b1 = f32x4_add(b1, term::<L2>(q1, load_f32(r1, i + 4)));
        b2 = f32x4_add(b2, term::<L2>(q1, load_f32(r2, i + 4)));
        b3 = f32x4_add(b3, term::<L2>(q1, load_f32(r3, i + 4)));
        i += 8;
    }
    let mut out = [
        hsum(f32x4_add(a0, b0)),
        hsum(f32x4_add(a1, b1)),
        hsum(f32x4_add(a2, b2)),
        hsum(f32x4_add(a3, b3)),
    ];
    // The last `n % 8` floats, one at a time for the four rows together.
    let t = |x: f32, y: f32| if L2 { (x - y) * (x - y) } else { x * y };
    for k in i..n {
        let x = q[k];
        out[0] += t(x, r0[k]);
        out[1] += t(x, r1[k]);
        out[2] += t(x, r2[k]);
        out[3] += t(x, r3[k]);
    }
    out
}
