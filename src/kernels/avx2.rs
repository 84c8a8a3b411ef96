//! AVX2 + FMA: the correlation kernels of [`super::simd`] on 256-bit registers (the weight
//! gradient's 16 lanes half at a time), the gradient spread with compare masks, and the
//! epilogue and Adam's update recompiled 8 lanes wide (the portable code, the same
//! operations).

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::simd::{Vector, correlate_grad_with, correlate_with};
use super::{AdamStep, CUT, Epilogue, GradLayout, Grid, Isa, LANES, Norm, Spread, portable};

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

    fn spread(
        &self,
        src: &[f32],
        how: Spread,
        dims: (usize, usize, usize),
        grid: Grid,
        gc: &mut [MaybeUninit<f32>],
        gb: &mut [f32],
    ) {
        // SAFETY: as for `correlate` (bounds: `super::spread`).
        unsafe { spread(src, how, dims, grid, gc, gb) }
    }

    fn epilogue(
        &self,
        epi: Epilogue,
        src: &[f32],
        dims: (usize, usize, usize),
        bias: &[f32],
        norm: Option<Norm>,
        dst: &mut [MaybeUninit<f32>],
        route: &mut [u8],
    ) {
        // SAFETY: as for `correlate`. The portable code recompiled, the same operations.
        unsafe {
            widened(
                #[inline(always)]
                || portable::epilogue(epi, src, dims, bias, norm, dst, route),
            )
        }
    }

    fn adam(&self, step: AdamStep, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        // SAFETY: as for `correlate`. The portable code recompiled, the same operations.
        unsafe {
            widened(
                #[inline(always)]
                || portable::adam(step, w, g, m, v),
            )
        }
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
    // SAFETY: forwarded from the caller. 3 x 3 accumulators, 3 gradient registers and one
    // source register fit the 16 (a `WIDE` of 3 is none; a wider block spills).
    unsafe { correlate_grad_with::<__m256, 3, 3, 3, 6, 11>(acc, g, src, off, l, co) }
}

/// [`super::spread`] with AVX2: each pixel's 16 lanes as two halves of 8, the selections as
/// compare masks and blends (a selected-out lane is `+0.0`, as in the portable code). Long as
/// kernels are: its loops share the pointers it sets up.
///
/// # Safety
/// The CPU must have AVX2, and the buffers must hold what `super::spread` checks.
#[target_feature(enable = "avx2")]
unsafe fn spread(
    src: &[f32],
    how: Spread,
    (co, oh, ow): (usize, usize, usize),
    grid: Grid,
    gc: &mut [MaybeUninit<f32>],
    gb: &mut [f32],
) {
    let at = |o: usize, y: usize, x: usize| grid.pixel(o, y, x) * LANES;
    // Written only, never read.
    let gc_ptr = gc.as_mut_ptr().cast::<f32>();
    let pooled = matches!(how, Spread::Route(_));
    let pixels = if pooled { (oh / 2) * (ow / 2) } else { oh * ow };
    assert!(
        src.len() >= co * pixels * LANES
            && gb.len() >= co * LANES
            && gc.len() >= at(co - 1, oh - 1, ow - 1) + LANES,
        "spread: buffer too short"
    );
    let sp = src.as_ptr();
    // SAFETY: every pixel read or written lies within the bounds just asserted (the route
    // and ReLU output are as long as `src`, checked below); `h + 8 <= LANES`.
    unsafe {
        let cut = _mm256_set1_epi32(CUT as i32);
        let mut i = 0;
        for o in 0..co {
            let mut sum = [_mm256_setzero_ps(); 2];
            match how {
                Spread::Route(route) => {
                    assert!(route.len() >= src.len(), "spread: route too short");
                    for y in (0..oh / 2).map(|y| 2 * y) {
                        for x in (0..ow / 2).map(|x| 2 * x) {
                            let window = [
                                at(o, y, x),
                                at(o, y, x + 1),
                                at(o, y + 1, x),
                                at(o, y + 1, x + 1),
                            ];
                            for (k, h) in [0, 8].into_iter().enumerate() {
                                let s = _mm256_loadu_ps(sp.add(i + h));
                                let r8 = _mm_loadl_epi64(route.as_ptr().add(i + h).cast());
                                let r = _mm256_cvtepu8_epi32(r8);
                                for (which, p) in window.into_iter().enumerate() {
                                    let hit =
                                        _mm256_cmpeq_epi32(r, _mm256_set1_epi32(which as i32));
                                    let d = _mm256_and_ps(_mm256_castsi256_ps(hit), s);
                                    _mm256_storeu_ps(gc_ptr.add(p + h), d);
                                }
                                let dead = _mm256_castsi256_ps(_mm256_cmpeq_epi32(r, cut));
                                let added = _mm256_add_ps(sum[k], s);
                                sum[k] = _mm256_blendv_ps(added, sum[k], dead);
                            }
                            i += LANES;
                        }
                    }
                }
                Spread::Relu(out) => {
                    assert!(out.len() >= src.len(), "spread: output too short");
                    for y in 0..oh {
                        for x in 0..ow {
                            for (k, h) in [0, 8].into_iter().enumerate() {
                                let s = _mm256_loadu_ps(sp.add(i + h));
                                let v = _mm256_loadu_ps(out.as_ptr().add(i + h));
                                // Not `v <= 0`, NaN included: the portable code's test.
                                let live = _mm256_cmp_ps::<_CMP_NLE_UQ>(v, _mm256_setzero_ps());
                                let d = _mm256_and_ps(live, s);
                                _mm256_storeu_ps(gc_ptr.add(at(o, y, x) + h), d);
                                sum[k] = _mm256_add_ps(sum[k], d);
                            }
                            i += LANES;
                        }
                    }
                }
                Spread::Plain => {
                    for y in 0..oh {
                        for x in 0..ow {
                            for (k, h) in [0, 8].into_iter().enumerate() {
                                let s = _mm256_loadu_ps(sp.add(i + h));
                                _mm256_storeu_ps(gc_ptr.add(at(o, y, x) + h), s);
                                sum[k] = _mm256_add_ps(sum[k], s);
                            }
                            i += LANES;
                        }
                    }
                }
            }
            for (k, h) in [0, 8].into_iter().enumerate() {
                let b = gb.as_mut_ptr().add(o * LANES + h);
                _mm256_storeu_ps(b, _mm256_add_ps(_mm256_loadu_ps(b), sum[k]));
            }
        }
    }
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
