//! NEON (every aarch64 CPU): the correlation kernels of [`super::simd`] on pairs of 128-bit
//! registers for the forward correlation (8 lanes, as AVX2) and fours of them for the weight
//! gradient (16 lanes, as AVX-512), so every lane sums what it sums there: the same bits.
//! 32 registers of 4 floats hold as many values as AVX2's 16 of 8, so the blocking is
//! AVX2's. Everything else portable.

use std::arch::aarch64::*;
use std::mem::MaybeUninit;

use super::simd::{Vector, correlate_grad_with, correlate_with};
use super::{GradLayout, Isa};

/// Two NEON registers as one 8-lane vector.
#[derive(Clone, Copy)]
struct Two(float32x4_t, float32x4_t);

impl Vector for Two {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: NEON is part of every aarch64 CPU.
        unsafe { Two(vdupq_n_f32(0.0), vdupq_n_f32(0.0)) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { Two(vld1q_f32(p), vld1q_f32(p.add(4))) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe {
            vst1q_f32(p, self.0);
            vst1q_f32(p.add(4), self.1);
        }
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> Self {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe {
            let v = vld1q_dup_f32(p);
            Two(v, v)
        }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: as `zero`. `vfmaq_f32(c, a, b)` is `c + a * b`, fused (`fmla`).
        unsafe { Two(vfmaq_f32(c.0, a.0, b.0), vfmaq_f32(c.1, a.1, b.1)) }
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        // SAFETY: as `zero`.
        unsafe { Two(vaddq_f32(a.0, b.0), vaddq_f32(a.1, b.1)) }
    }
}

/// Four NEON registers as one 16-lane vector: the weight-gradient kernel's, so that each of
/// its 16 lanes sums the same positions as with AVX-512.
#[derive(Clone, Copy)]
struct Four(Two, Two);

impl Vector for Four {
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: as `Two`'s.
        unsafe { Four(Two::zero(), Two::zero()) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { Four(Two::load(p), Two::load(p.add(8))) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe {
            self.0.store(p);
            self.1.store(p.add(8));
        }
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> Self {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { Four(Two::splat(p), Two::splat(p)) }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: as `Two`'s.
        unsafe { Four(Two::fma(a.0, b.0, c.0), Two::fma(a.1, b.1, c.1)) }
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        // SAFETY: as `Two`'s.
        unsafe { Four(Two::add(a.0, b.0), Two::add(a.1, b.1)) }
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
