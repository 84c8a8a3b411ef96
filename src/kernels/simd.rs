//! What the AVX2, AVX-512 and NEON kernels share: the correlation kernels written once over a
//! vector type ([`Vector`]) and compiled for each instruction set by its file. Everything
//! here is `#[inline(always)]`, so it is compiled inside an entry point's
//! `#[target_feature]` and every intrinsic inlines.

use std::mem::MaybeUninit;

use super::GradLayout;

/// The few vector operations the kernels use, implemented by each instruction set's file.
///
/// # Safety
/// Every method needs the instruction set's CPU feature (call it only inside an entry point
/// compiled with `#[target_feature]` for it), and every pointer must be valid for `LANES`
/// values.
pub(super) trait Vector: Copy {
    const LANES: usize;
    unsafe fn zero() -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    unsafe fn splat(p: *const f32) -> Self;
    /// `a * b + c`, fused.
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
}

/// Runs `$f::<$v, $ob, R>($args)` for the runtime count `$r` in `0..=11`: the remainder
/// of a loop that ran `$f` with a wider block.
macro_rules! remainder {
    ($r:expr, $f:ident::<$v:ident, $ob:ident>($($arg:expr),*)) => {
        match $r {
            0 => {}
            1 => $f::<$v, $ob, 1>($($arg),*),
            2 => $f::<$v, $ob, 2>($($arg),*),
            3 => $f::<$v, $ob, 3>($($arg),*),
            4 => $f::<$v, $ob, 4>($($arg),*),
            5 => $f::<$v, $ob, 5>($($arg),*),
            6 => $f::<$v, $ob, 6>($($arg),*),
            7 => $f::<$v, $ob, 7>($($arg),*),
            8 => $f::<$v, $ob, 8>($($arg),*),
            9 => $f::<$v, $ob, 9>($($arg),*),
            10 => $f::<$v, $ob, 10>($($arg),*),
            _ => $f::<$v, $ob, 11>($($arg),*),
        }
    };
}

/// `OB x (LANES * PV)` outputs at `p`: every tap broadcast once per channel and fused into
/// `PV` registers of positions. `OB * PV` accumulators: enough to hide the FMA latency,
/// few enough to stay in registers.
#[inline(always)]
unsafe fn block<V: Vector, const OB: usize, const PV: usize>(
    out: *mut f32,
    out_stride: usize,
    p: usize,
    src: *const f32,
    off: &[usize],
    w: *const f32,
) {
    let taps = off.len();
    // SAFETY: for the whole body, the caller keeps `p + LANES * PV` within the bounds
    // `correlate` asserted, for OB channels of `out` and `w`.
    unsafe {
        let mut acc = [[V::zero(); PV]; OB];
        for (j, &at) in off.iter().enumerate() {
            let s = src.add(p + at);
            for (b, accb) in acc.iter_mut().enumerate() {
                let wb = V::splat(w.add(b * taps + j));
                for (v, a) in accb.iter_mut().enumerate() {
                    *a = V::fma(wb, V::load(s.add(V::LANES * v)), *a);
                }
            }
        }
        for (b, accb) in acc.iter().enumerate() {
            for (v, a) in accb.iter().enumerate() {
                a.store(out.add(b * out_stride + p + V::LANES * v));
            }
        }
    }
}

/// All `n` positions of `OB` output channels, `LANES * PV` at a time, then the rest at once.
#[inline(always)]
unsafe fn rows<V: Vector, const OB: usize, const PV: usize>(
    out: *mut f32,
    out_stride: usize,
    n: usize,
    src: *const f32,
    off: &[usize],
    w: *const f32,
) {
    let (mut p, step) = (0, V::LANES * PV);
    // SAFETY: every block ends at or before `n`, a multiple of LANES.
    unsafe {
        while p + step <= n {
            block::<V, OB, PV>(out, out_stride, p, src, off, w);
            p += step;
        }
        remainder!(
            (n - p) / V::LANES,
            block::<V, OB>(out, out_stride, p, src, off, w)
        );
    }
}

/// Output channels `WIDE` at a time with `PW` position registers each while at least
/// `WIDE` are left (each source vector loaded then feeds `WIDE` channels, which halves the
/// loads from L2 of a wide layer; a `WIDE` of 4 or less is none), then `OB = 4, 3, 2, 1`
/// with `PV[4 - OB]` registers.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn correlate_with<
    V: Vector,
    const WIDE: usize,
    const PW: usize,
    const P4: usize,
    const P3: usize,
    const P2: usize,
    const P1: usize,
>(
    out: &mut [MaybeUninit<f32>],
    out_stride: usize,
    n: usize,
    src: &[f32],
    off: &[usize],
    w: &[f32],
    co: usize,
) {
    let taps = off.len();
    let (out, src, w) = (out.as_mut_ptr().cast::<f32>(), src.as_ptr(), w.as_ptr());
    let mut o = 0;
    // SAFETY: `correlate` asserted the bounds for all `co` channels.
    unsafe {
        while o < co {
            let (op, wp) = (out.add(o * out_stride), w.add(o * taps));
            if WIDE > 4 && co - o >= WIDE {
                rows::<V, WIDE, PW>(op, out_stride, n, src, off, wp);
                o += WIDE;
                continue;
            }
            let ob = (co - o).min(4);
            match ob {
                4 => rows::<V, 4, P4>(op, out_stride, n, src, off, wp),
                3 => rows::<V, 3, P3>(op, out_stride, n, src, off, wp),
                2 => rows::<V, 2, P2>(op, out_stride, n, src, off, wp),
                _ => rows::<V, 1, P1>(op, out_stride, n, src, off, wp),
            }
            o += ob;
        }
    }
}

/// `OB x TB` lane accumulators over all `n` positions of every image, `acc` and `off`
/// pointing at the block's first tap; `OB` gradient registers and one source register
/// besides. A vector narrower than [`super::LANES`] covers the lanes a slice at a time
/// (first lanes 0 to 7, then 8 to 15, with AVX2): each lane sums the same values in the same
/// order as at full width, so the bits are the same, and each accumulator takes one register
/// rather than several.
#[inline(always)]
unsafe fn grad_block<V: Vector, const OB: usize, const TB: usize>(
    acc: *mut f32,
    taps: usize,
    g: *const f32,
    src: *const f32,
    off: &[usize],
    l: GradLayout,
) {
    let lanes = super::LANES;
    // Indexed once here, not in the loop.
    let off: [usize; TB] = std::array::from_fn(|t| off[t]);
    // SAFETY: for the whole body, the caller leaves `TB` taps and `OB` channels from here, and
    // every image within the bounds `correlate_grad` asserted; `slice + V::LANES <= LANES`.
    unsafe {
        for slice in (0..lanes).step_by(V::LANES) {
            let mut a = [[V::zero(); TB]; OB];
            for img in 0..l.images {
                let g = g.add(img * l.g_image + slice);
                let src = src.add(img * l.src_image + slice);
                let mut p = 0;
                while p < l.n {
                    let mut gv = [V::zero(); OB];
                    for (b, v) in gv.iter_mut().enumerate() {
                        *v = V::load(g.add(b * l.g_stride + p));
                    }
                    for t in 0..TB {
                        let s = V::load(src.add(p + off[t]));
                        for b in 0..OB {
                            a[b][t] = V::fma(gv[b], s, a[b][t]);
                        }
                    }
                    p += lanes;
                }
            }
            for (b, ab) in a.iter().enumerate() {
                for (t, v) in ab.iter().enumerate() {
                    let at = acc.add((b * taps + t) * lanes + slice);
                    V::add(V::load(at), *v).store(at);
                }
            }
        }
    }
}

#[inline(always)]
unsafe fn grad_rows<V: Vector, const OB: usize, const TB: usize>(
    acc: *mut f32,
    g: *const f32,
    src: *const f32,
    off: &[usize],
    l: GradLayout,
) {
    let (taps, lanes) = (off.len(), super::LANES);
    let mut j = 0;
    // SAFETY: every block stays within `taps` taps and `OB` channels.
    unsafe {
        while j + TB <= taps {
            let a = acc.add(j * lanes);
            grad_block::<V, OB, TB>(a, taps, g, src, &off[j..], l);
            j += TB;
        }
        let (a, o) = (acc.add(j * lanes), &off[j..]);
        remainder!(taps - j, grad_block::<V, OB>(a, taps, g, src, o, l));
    }
}

/// Output channels `WIDE` at a time with `TW` taps each while at least `WIDE` are left (more
/// reuse of every vector loaded; a `WIDE` of 3 or less is none), then `OB = 3, 2, 1` with
/// `TB[3 - OB]` taps each.
#[inline(always)]
pub(super) unsafe fn correlate_grad_with<
    V: Vector,
    const WIDE: usize,
    const TW: usize,
    const T3: usize,
    const T2: usize,
    const T1: usize,
>(
    acc: &mut [f32],
    g: &[f32],
    src: &[f32],
    off: &[usize],
    l: GradLayout,
    co: usize,
) {
    let (taps, lanes) = (off.len(), super::LANES);
    let (acc, g, src) = (acc.as_mut_ptr(), g.as_ptr(), src.as_ptr());
    let mut o = 0;
    // SAFETY: `correlate_grad` asserted the bounds for all `co` channels.
    unsafe {
        while o < co {
            let (ap, gp) = (acc.add(o * taps * lanes), g.add(o * l.g_stride));
            if WIDE > 3 && co - o >= WIDE {
                grad_rows::<V, WIDE, TW>(ap, gp, src, off, l);
                o += WIDE;
                continue;
            }
            let ob = (co - o).min(3);
            match ob {
                3 => grad_rows::<V, 3, T3>(ap, gp, src, off, l),
                2 => grad_rows::<V, 2, T2>(ap, gp, src, off, l),
                _ => grad_rows::<V, 1, T1>(ap, gp, src, off, l),
            }
            o += ob;
        }
    }
}
