//! NEON (every aarch64 CPU): the correlation kernels of [`super::simd`] on pairs of 128-bit
//! registers for the forward correlation (8 lanes, as AVX2) and fours of them for the weight
//! gradient (16 lanes, as AVX-512), so every lane sums what it sums there: the same bits.
//! 32 registers of 4 floats hold as many values as AVX2's 16 of 8, so the blocking is
//! AVX2's. Everything else portable.

use std::arch::aarch64::*;
use std::mem::MaybeUninit;

use super::simd::{Pair, Vector, correlate_grad_with, correlate_with};
use super::{GradLayout, Isa};

impl Vector for float32x4_t {
    const LANES: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: NEON is part of every aarch64 CPU.
        unsafe { vdupq_n_f32(0.0) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { vld1q_f32(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { vst1q_f32(p, self) }
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> Self {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { vld1q_dup_f32(p) }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: as `zero`. `vfmaq_f32(c, a, b)` is `c + a * b`, fused (`fmla`).
        unsafe { vfmaq_f32(c, a, b) }
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        // SAFETY: as `zero`.
        unsafe { vaddq_f32(a, b) }
    }
}

/// 8 lanes, as AVX2's registers.
type Two = Pair<float32x4_t>;
/// 16 lanes, as AVX-512's: the weight gradient's.
type Four = Pair<Two>;

/// The NEON kernel.
struct Neon(());

/// The NEON kernel: every aarch64 CPU has it.
pub(super) fn get() -> &'static dyn Isa {
    static NEON: Neon = Neon(());
    &NEON
}

impl Isa for Neon {
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
        // SAFETY: NEON is part of every aarch64 CPU, and the caller checked the bounds
        // (`super::correlate`).
        unsafe { correlate_with::<Two, 6, 2, 3, 4, 6, 12>(out, out_stride, n, src, off, w, co) }
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
        // SAFETY: as for `correlate` (bounds: `super::correlate_grad_with`). 16-lane fours:
        // each accumulator takes four registers, hence AVX2's smaller blocks.
        unsafe { correlate_grad_with::<Four, 3, 1, 1, 2, 5>(acc, g, src, off, l, co) }
    }
}
