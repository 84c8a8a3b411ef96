//! NEON (every aarch64 CPU): the correlation kernels of [`super::simd`] on 128-bit registers,
//! blocked as AVX-512's (32 registers; each accumulator here holds a quarter of what one
//! holds there). The weight gradient covers the 16 lanes a quarter at a time, so every lane
//! sums what it sums there: the same bits. Everything else portable.

use std::arch::aarch64::*;
use std::mem::MaybeUninit;

use super::simd::{Vector, correlate_grad_with, correlate_with};
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
        unsafe {
            correlate_with::<float32x4_t, 8, 3, 5, 8, 12, 12>(out, out_stride, n, src, off, w, co)
        }
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
        unsafe { correlate_grad_with::<float32x4_t, 4, 6, 6, 8, 11>(acc, g, src, off, l, co) }
    }
}
