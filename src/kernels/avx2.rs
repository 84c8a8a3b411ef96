//! AVX2 + FMA: the correlation kernels of [`super::simd`] on 256-bit registers (the
//! weight-gradient one on pairs of them, 16 lanes as with AVX-512); everything else portable.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::simd::{Pair, Vector, correlate_grad_with, correlate_with};
use super::{GradLayout, Isa};

impl Vector for __m256 {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { _mm256_storeu_ps(p, self) }
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> Self {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { _mm256_broadcast_ss(&*p) }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { _mm256_add_ps(a, b) }
    }
}

/// The AVX2 kernel; it exists only on a CPU with AVX2 and FMA (see [`get`]).
struct Avx2(());

/// The AVX2 kernel, if this CPU has AVX2 and FMA.
pub(super) fn get() -> Option<&'static dyn Isa> {
    static AVX2: Avx2 = Avx2(());
    let has = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    has.then_some(&AVX2 as &dyn Isa)
}

impl Isa for Avx2 {
    fn correlate(
        &self,
        out: &mut [MaybeUninit<f32>],
        out_stride: usize,
        n: usize,
        src: &[f32],
        off: &[usize],
        w: &[f32],
        co: usize,
    ) {
        // SAFETY: an `Avx2` exists only where the CPU has AVX2 and FMA (`get`), and the
        // caller checked the bounds (`super::correlate`).
        unsafe { correlate_avx2(out, out_stride, n, src, off, w, co) }
    }

    fn correlate_grad(
        &self,
        acc: &mut [f32],
        g: &[f32],
        src: &[f32],
        off: &[usize],
        l: GradLayout,
        co: usize,
    ) {
        // SAFETY: as for `correlate` (bounds: `super::correlate_grad_with`).
        unsafe { correlate_grad_avx2(acc, g, src, off, l, co) }
    }
}

// The entry points. AVX2 has 16 registers (12 accumulators).

/// [`super::correlate`]'s kernel.
///
/// # Safety
/// The CPU must have the features enabled here, and the buffers must hold what
/// `super::correlate` checks.
#[target_feature(enable = "avx2,fma")]
unsafe fn correlate_avx2(
    out: &mut [MaybeUninit<f32>],
    out_stride: usize,
    n: usize,
    src: &[f32],
    off: &[usize],
    w: &[f32],
    co: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe { correlate_with::<__m256, 6, 2, 3, 4, 6, 12>(out, out_stride, n, src, off, w, co) }
}

/// [`super::correlate_grad`]'s kernel.
///
/// # Safety
/// The CPU must have the features enabled here, and the buffers must hold what
/// `super::correlate_grad_with` checks.
#[target_feature(enable = "avx2,fma")]
unsafe fn correlate_grad_avx2(
    acc: &mut [f32],
    g: &[f32],
    src: &[f32],
    off: &[usize],
    l: GradLayout,
    co: usize,
) {
    // SAFETY: forwarded from the caller. 16-lane pairs (each lane summing what it sums with
    // AVX-512: the same bits): each accumulator takes two of the 16 registers, hence the
    // smaller blocks and no wider one (a `WIDE` of 3 is none).
    unsafe { correlate_grad_with::<Pair<__m256>, 3, 1, 1, 2, 5>(acc, g, src, off, l, co) }
}

/// Runs `f` compiled with avx2 enabled (inlined here, so its loops vectorize to that
/// width).
///
/// # Safety
/// The CPU must have avx2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn widened<R>(f: impl FnOnce() -> R) -> R {
    f()
}
