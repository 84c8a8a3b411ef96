//! AVX-512F: the correlation kernels of [`super::simd`] on 512-bit registers, the 16 x 16
//! transposes into and out of the lane layout, the gradient spread with masks, and the
//! epilogue and Adam's update recompiled 16 lanes wide (the portable code, the same
//! operations).

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::simd::{Vector, correlate_grad_with, correlate_with};
use super::{AdamStep, CUT, Epilogue, GradLayout, Grid, Isa, LANES, Norm, Spread, portable};

impl Vector for __m512 {
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { _mm512_storeu_ps(p, self) }
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> Self {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { _mm512_set1_ps(*p) }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        // SAFETY: the caller upholds the contract of `Vector`.
        unsafe { _mm512_add_ps(a, b) }
    }
}

/// The AVX-512 kernel; it exists only on a CPU with AVX-512F, AVX2 and FMA (see [`get`]).
struct Avx512(());

/// The AVX-512 kernel, if this CPU has AVX-512F (and AVX2 and FMA, which the recompiled
/// epilogue relies on).
pub(super) fn get() -> Option<&'static dyn Isa> {
    static AVX512: Avx512 = Avx512(());
    let has = is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma");
    has.then_some(&AVX512 as &dyn Isa)
}

// SAFETY (every method): an `Avx512` exists only where the CPU has the features (`get`), and
// the public functions of `super` checked every bound before dispatching here.
impl Isa for Avx512 {
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
        // SAFETY: see the impl.
        unsafe { correlate_avx512(out, out_stride, n, src, off, w, co) }
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
        // SAFETY: see the impl.
        unsafe { correlate_grad_avx512(acc, g, src, off, l, co) }
    }

    fn gather(
        &self,
        dst: &mut [MaybeUninit<f32>],
        dst_stride: usize,
        len: usize,
        src: &[f32],
        stride: usize,
        m: usize,
    ) {
        // SAFETY: see the impl.
        unsafe { gather(dst, dst_stride, len, src, stride, m) }
    }

    fn scatter(&self, dst: &mut [MaybeUninit<f32>], src: &[f32], stride: usize, m: usize) {
        // SAFETY: see the impl.
        unsafe { scatter(dst, src, stride, m) }
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
        // SAFETY: see the impl.
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
        // SAFETY: see the impl. The portable code recompiled, the same operations.
        unsafe {
            widened(
                #[inline(always)]
                || portable::epilogue(epi, src, dims, bias, norm, dst, route),
            )
        }
    }

    fn adam(&self, step: AdamStep, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        // SAFETY: see the impl. The portable code recompiled, the same operations.
        unsafe {
            widened(
                #[inline(always)]
                || portable::adam(step, w, g, m, v),
            )
        }
    }
}

// The entry points. AVX-512 has 32 registers.

/// [`super::correlate`]'s kernel.
///
/// # Safety
/// The CPU must have the features enabled here, and the buffers must hold what
/// `super::correlate` checks.
#[target_feature(enable = "avx512f")]
unsafe fn correlate_avx512(
    out: &mut [MaybeUninit<f32>],
    out_stride: usize,
    n: usize,
    src: &[f32],
    off: &[usize],
    w: &[f32],
    co: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe { correlate_with::<__m512, 8, 3, 4, 5, 8, 12>(out, out_stride, n, src, off, w, co) }
}

/// [`super::correlate_grad`]'s kernel.
///
/// # Safety
/// The CPU must have the features enabled here, and the buffers must hold what
/// `super::correlate_grad_with` checks.
#[target_feature(enable = "avx512f")]
unsafe fn correlate_grad_avx512(
    acc: &mut [f32],
    g: &[f32],
    src: &[f32],
    off: &[usize],
    l: GradLayout,
    co: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe { correlate_grad_with::<__m512, 4, 6, 6, 8, 11>(acc, g, src, off, l, co) }
}

/// [`super::spread`] with AVX-512: one pixel of 16 lanes per instruction, the selections
/// as masks. One function, long as kernels are: its loops share the masks and pointers it
/// sets up, and splitting it would pass them through calls in the hot path.
///
/// # Safety
/// The CPU must have AVX-512F, and the buffers must hold what `super::spread` checks.
#[target_feature(enable = "avx512f")]
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
    // SAFETY: every pixel read or written lies within the bounds just asserted (the
    // route and ReLU output are as long as `src`, checked below).
    unsafe {
        let cut = _mm512_set1_epi32(CUT as i32);
        let mut i = 0;
        for o in 0..co {
            let mut sum = _mm512_setzero_ps();
            match how {
                Spread::Route(route) => {
                    assert!(route.len() >= src.len(), "spread: route too short");
                    for y in (0..oh / 2).map(|y| 2 * y) {
                        for x in (0..ow / 2).map(|x| 2 * x) {
                            let s = _mm512_loadu_ps(src.as_ptr().add(i));
                            let r =
                                _mm512_cvtepu8_epi32(_mm_loadu_si128(route.as_ptr().add(i).cast()));
                            let window = [
                                at(o, y, x),
                                at(o, y, x + 1),
                                at(o, y + 1, x),
                                at(o, y + 1, x + 1),
                            ];
                            for (which, p) in window.into_iter().enumerate() {
                                let hit =
                                    _mm512_cmpeq_epi32_mask(r, _mm512_set1_epi32(which as i32));
                                _mm512_storeu_ps(gc_ptr.add(p), _mm512_maskz_mov_ps(hit, s));
                            }
                            let live = _mm512_cmpneq_epi32_mask(r, cut);
                            sum = _mm512_mask_add_ps(sum, live, sum, s);
                            i += LANES;
                        }
                    }
                }
                Spread::Relu(out) => {
                    assert!(out.len() >= src.len(), "spread: output too short");
                    for y in 0..oh {
                        for x in 0..ow {
                            let s = _mm512_loadu_ps(src.as_ptr().add(i));
                            let v = _mm512_loadu_ps(out.as_ptr().add(i));
                            // Not `v <= 0`, NaN included: the portable code's test.
                            let live = _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(v, _mm512_setzero_ps());
                            let d = _mm512_maskz_mov_ps(live, s);
                            _mm512_storeu_ps(gc_ptr.add(at(o, y, x)), d);
                            sum = _mm512_add_ps(sum, d);
                            i += LANES;
                        }
                    }
                }
                Spread::Plain => {
                    for y in 0..oh {
                        for x in 0..ow {
                            let s = _mm512_loadu_ps(src.as_ptr().add(i));
                            _mm512_storeu_ps(gc_ptr.add(at(o, y, x)), s);
                            sum = _mm512_add_ps(sum, s);
                            i += LANES;
                        }
                    }
                }
            }
            let b = gb.as_mut_ptr().add(o * LANES);
            _mm512_storeu_ps(b, _mm512_add_ps(_mm512_loadu_ps(b), sum));
        }
    }
}

/// Transposes the 16 x 16 matrix whose rows are `r`.
///
/// # Safety
/// The CPU must have AVX-512F (call it from a function compiled for it).
#[inline(always)]
unsafe fn transpose(r: &mut [__m512; 16]) {
    // SAFETY: for the whole body, register shuffles only.
    unsafe {
        let lo = |a, b| _mm512_unpacklo_ps(a, b);
        let hi = |a, b| _mm512_unpackhi_ps(a, b);
        let lo2 = |a: __m512, b: __m512| {
            _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
        };
        let hi2 = |a: __m512, b: __m512| {
            _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
        };
        // Pairs of rows interleaved by 32, then by 64 bits: 4 x 4 blocks within each
        // 128-bit lane.
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = lo(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = hi(r[2 * i], r[2 * i + 1]);
        }
        for j in 0..4 {
            let b = 4 * j;
            r[b] = lo2(t[b], t[b + 2]);
            r[b + 1] = hi2(t[b], t[b + 2]);
            r[b + 2] = lo2(t[b + 1], t[b + 3]);
            r[b + 3] = hi2(t[b + 1], t[b + 3]);
        }
        // Then the 128-bit lanes themselves, across groups of 4 and of 8 rows.
        for j in 0..2 {
            let b = 8 * j;
            for q in 0..4 {
                t[b + q] = _mm512_shuffle_f32x4::<0x88>(r[b + q], r[b + q + 4]);
                t[b + q + 4] = _mm512_shuffle_f32x4::<0xdd>(r[b + q], r[b + q + 4]);
            }
        }
        for q in 0..8 {
            r[q] = _mm512_shuffle_f32x4::<0x88>(t[q], t[q + 8]);
            r[q + 8] = _mm512_shuffle_f32x4::<0xdd>(t[q], t[q + 8]);
        }
    }
}

/// The mask of the first `n` of 16.
fn first(n: usize) -> u16 {
    ((1u32 << n) - 1) as u16
}

/// [`super::gather_strided`], the caller having checked the bounds: 16 pixels at a time,
/// loaded as 16 rows and transposed.
///
/// # Safety
/// The CPU must have AVX-512F, and the buffers must hold what `super::gather_strided`
/// checks.
#[target_feature(enable = "avx512f")]
unsafe fn gather(
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
    len: usize,
    src: &[f32],
    stride: usize,
    m: usize,
) {
    // SAFETY: masked loads read only the first `n` values of each of the `m` rows,
    // within `src` as the caller checked; stores stay within `dst`.
    unsafe {
        let mut p = 0;
        while p < len {
            let n = (len - p).min(16);
            // Fixed counts of masked loads and stores, so that `r` stays in registers;
            // rows from `m` on load nothing and so are zeros.
            let mut r = [_mm512_setzero_ps(); 16];
            for (l, row) in r.iter_mut().enumerate() {
                let at = src.as_ptr().add(l.min(m - 1) * stride + p);
                *row = _mm512_maskz_loadu_ps(if l < m { first(n) } else { 0 }, at);
            }
            transpose(&mut r);
            for (q, v) in r.iter().enumerate() {
                let at = dst.as_mut_ptr().add((p + q.min(n - 1)) * dst_stride);
                _mm512_mask_storeu_ps(at.cast(), if q < n { 0xffff } else { 0 }, *v);
            }
            p += 16;
        }
    }
}

/// [`super::scatter`], the caller having checked the bounds: 16 pixels at a time,
/// transposed and stored as 16 rows.
///
/// # Safety
/// The CPU must have AVX-512F, and the buffers must hold what `super::scatter` checks.
#[target_feature(enable = "avx512f")]
unsafe fn scatter(dst: &mut [MaybeUninit<f32>], src: &[f32], stride: usize, m: usize) {
    let len = src.len() / LANES;
    // SAFETY: loads stay within `src`; masked stores write only the first `n` values of
    // each of the `m` rows, within `dst` as the caller checked.
    unsafe {
        let mut p = 0;
        while p < len {
            let n = (len - p).min(16);
            // Fixed counts of masked loads and stores, so that `r` stays in registers (a
            // loop of `n` copies is compiled to a memcpy onto the stack).
            let mut r = [_mm512_setzero_ps(); 16];
            for (q, v) in r.iter_mut().enumerate() {
                let at = src.as_ptr().add((p + q.min(n - 1)) * LANES);
                *v = _mm512_maskz_loadu_ps(if q < n { 0xffff } else { 0 }, at);
            }
            transpose(&mut r);
            for (l, row) in r.iter().enumerate() {
                let at = dst
                    .as_mut_ptr()
                    .add(l.min(m - 1) * stride + p)
                    .cast::<f32>();
                _mm512_mask_storeu_ps(at, if l < m { first(n) } else { 0 }, *row);
            }
            p += 16;
        }
    }
}

/// Runs `f` compiled with avx512f enabled (inlined here, so its loops vectorize to that
/// width).
///
/// # Safety
/// The CPU must have avx512f.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn widened<R>(f: impl FnOnce() -> R) -> R {
    f()
}
