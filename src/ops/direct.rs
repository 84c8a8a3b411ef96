//! Direct (im2col-free) kernels for stride-1 convolutions, register-blocked for AVX2 + FMA.
//!
//! The "wide" layout: every channel of an image is zero-padded and stored flat, `wp` values a
//! row, so a stride-1 convolution becomes a 1-D correlation: output position `p = y * wp + x`
//! reads tap `j` (channel, kernel row, kernel column) at `p + off[j]`, where
//! `off[j] = channel * plane + ky * wp + kx`. Each output row is computed `wp` wide; its last
//! `kernel - 1` values are junk that callers drop. In exchange every kernel below is a few long
//! contiguous loops over `p`, several output channels and 24 positions at a time held in
//! registers, with no im2col copy.
//!
//! Lengths are rounded up to [`LANES`]: callers size buffers with [`round_up`] and keep the
//! slack zero (see each function for what it reads). Without AVX2 and FMA the same loops run
//! in plain Rust (same sums, rounded separately rather than fused).

use super::kernels::Window;

/// Values per AVX2 register; every length is processed in whole multiples of it.
pub const LANES: usize = 8;

/// `n` rounded up to a multiple of [`LANES`].
pub fn round_up(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// Forward correlation: `out[o * out_stride + p] = sum_j w[o * taps + j] * src[p + off[j]]`
/// for every output channel `o < w.len() / taps` and `p < round_up(len)`, `taps = off.len()`.
///
/// Reads `src` up to `round_up(len) - 1 + max(off)`.
///
/// # Panics
/// When a buffer is shorter than that (a bug in the caller, not bad input).
pub fn correlate(
    out: &mut [f32],
    out_stride: usize,
    len: usize,
    src: &[f32],
    off: &[usize],
    w: &[f32],
) {
    let (taps, n) = (off.len(), round_up(len));
    if taps == 0 || n == 0 {
        return;
    }
    let co = w.len() / taps;
    let max_off = off.iter().copied().max().unwrap_or(0);
    assert!(
        w.len() == co * taps
            && out_stride >= n
            && out.len() >= (co.max(1) - 1) * out_stride + n
            && src.len() >= n + max_off,
        "correlate: buffer too short"
    );
    #[cfg(target_arch = "x86_64")]
    if avx::available() {
        // SAFETY: the CPU has AVX2 and FMA, and the assert above bounds every access.
        return unsafe { avx::correlate(out, out_stride, n, src, off, w, co) };
    }
    for o in 0..co {
        let row = &mut out[o * out_stride..][..n];
        row.fill(0.0);
        for (j, &at) in off.iter().enumerate() {
            let wj = w[o * taps + j];
            for (d, s) in row.iter_mut().zip(&src[at..at + n]) {
                *d += wj * s;
            }
        }
    }
}

/// Weight-gradient correlation, per lane: for every output channel `o`, tap `j` and lane `l`,
/// `acc[(o * taps + j) * LANES + l] += sum g[o * g_stride + p] * src[p + off[j]]` over the
/// `p < round_up(len)` with `p % LANES == l`. [`reduce_lanes`] turns `acc` into gradients;
/// keeping lanes apart until then spares a horizontal sum per image.
///
/// Reads `g` up to `(co - 1) * g_stride + round_up(len) - 1` and `src` up to
/// `round_up(len) - 1 + max(off)`.
///
/// # Panics
/// When a buffer is shorter than that (a bug in the caller, not bad input).
pub fn correlate_grad(
    acc: &mut [f32],
    g: &[f32],
    g_stride: usize,
    len: usize,
    src: &[f32],
    off: &[usize],
) {
    let (taps, n) = (off.len(), round_up(len));
    if taps == 0 || n == 0 {
        return;
    }
    let co = acc.len() / (taps * LANES);
    let max_off = off.iter().copied().max().unwrap_or(0);
    assert!(
        acc.len() == co * taps * LANES
            && g.len() >= (co.max(1) - 1) * g_stride + n
            && src.len() >= n + max_off,
        "correlate_grad: buffer too short"
    );
    #[cfg(target_arch = "x86_64")]
    if avx::available() {
        // SAFETY: the CPU has AVX2 and FMA, and the assert above bounds every access.
        return unsafe { avx::correlate_grad(acc, g, g_stride, n, src, off, co) };
    }
    for o in 0..co {
        let go = &g[o * g_stride..][..n];
        for (j, &at) in off.iter().enumerate() {
            let lanes = &mut acc[(o * taps + j) * LANES..][..LANES];
            for (gc, sc) in go
                .chunks_exact(LANES)
                .zip(src[at..at + n].chunks_exact(LANES))
            {
                for l in 0..LANES {
                    lanes[l] += gc[l] * sc[l];
                }
            }
        }
    }
}

/// Sums each run of [`LANES`] values of a [`correlate_grad`] accumulator, in lane order.
pub fn reduce_lanes(acc: &[f32]) -> Vec<f32> {
    acc.chunks_exact(LANES)
        .map(|l| l.iter().fold(0.0, |s, v| s + v))
        .collect()
}

/// The wide layout of a stride-1 window (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Wide {
    win: Window,
    /// Padded image height and width.
    hp: usize,
    wp: usize,
    /// Output positions computed per channel, `(out_h - 1) * wp + out_w`, junk included.
    span: usize,
    /// Offset of the last tap, `(kernel - 1) * (wp + 1)`: the zeros a gradient plane starts
    /// with, so that the input gradient is a forward correlation too.
    margin: usize,
}

impl Wide {
    /// The layout of `win`, which must have stride 1.
    pub fn new(win: &Window) -> Self {
        assert_eq!(win.stride, 1, "the wide layout is for stride 1");
        let (hp, wp) = (win.height + 2 * win.padding, win.width + 2 * win.padding);
        Wide {
            win: *win,
            hp,
            wp,
            span: (win.out_h - 1) * wp + win.out_w,
            margin: (win.kernel - 1) * (wp + 1),
        }
    }

    /// Values per channel of a padded input, slack included.
    fn x_plane(&self) -> usize {
        round_up(self.hp * self.wp) + LANES
    }

    /// Values per channel of a wide output gradient, margin included.
    fn g_plane(&self) -> usize {
        self.margin + round_up(self.hp * self.wp)
    }

    /// Tap offsets over `channels` planes of `plane` values, in weight order `(c, ky, kx)`.
    fn offsets(&self, channels: usize, plane: usize) -> Vec<usize> {
        let k = self.win.kernel;
        let mut off = Vec::with_capacity(channels * k * k);
        for c in 0..channels {
            for ky in 0..k {
                off.extend((0..k).map(|kx| c * plane + ky * self.wp + kx));
            }
        }
        off
    }

    /// Copies `batch` `C x H x W` images into zero-padded planes of [`Self::x_plane`] values.
    fn pad(&self, x: &[f32], batch: usize) -> Vec<f32> {
        let (win, plane) = (&self.win, self.x_plane());
        let mut xp = vec![0.0; batch * win.channels * plane];
        let rows = x.chunks_exact(win.width);
        for (r, row) in rows.enumerate() {
            let (cp, y) = (r / win.height, r % win.height);
            let at = cp * plane + (y + win.padding) * self.wp + win.padding;
            xp[at..at + win.width].copy_from_slice(row);
        }
        xp
    }
}

/// What a convolution applies to its own output before handing it on, fused into the
/// convolution so that its full-size output never leaves the cache: a ReLU, then a 2x2 max
/// pool with stride 2 (floor mode). ReLU first, then pool, as the layers are written; the two
/// commute except for NaN, which ReLU turns into 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Epilogue {
    pub relu: bool,
    pub max_pool2: bool,
}

impl Epilogue {
    /// Output side for a convolution output side.
    pub fn side(&self, conv_side: usize) -> usize {
        if self.max_pool2 {
            conv_side / 2
        } else {
            conv_side
        }
    }
}

/// Marks an output that passes no gradient back (ReLU cut it off).
const CUT: u32 = u32::MAX;

/// What [`conv_forward`] keeps for [`conv_backward`].
#[derive(Debug, Default)]
pub struct Saved {
    /// The padded input.
    xp: Vec<f32>,
    /// For every output value, the wide position (within its channel) of the convolution
    /// output it came from, or [`CUT`].
    route: Vec<u32>,
}

/// Stride-1 convolution of `batch` images `x` (`N x C x H x W`) with `w` (`out x C x k x k`)
/// plus `bias`, then `epi`: returns the `N x out x OH x OW` output (`OH`, `OW` as
/// [`Epilogue::side`] gives them) and what the backward pass needs.
pub fn conv_forward(
    x: &[f32],
    batch: usize,
    win: &Window,
    w: &[f32],
    bias: &[f32],
    epi: Epilogue,
) -> (Vec<f32>, Saved) {
    let wide = Wide::new(win);
    let (out_c, plane_in) = (bias.len(), win.channels * wide.x_plane());
    let (xp, off) = (
        wide.pad(x, batch),
        wide.offsets(win.channels, wide.x_plane()),
    );
    let n8 = round_up(wide.span);
    let (oh, ow) = (epi.side(win.out_h), epi.side(win.out_w));
    let mut wide_out = vec![0.0; out_c * n8];
    let mut out = vec![0.0; batch * out_c * oh * ow];
    let mut route = vec![0u32; out.len()];
    let plane_out = oh * ow;
    for (img, (dst, rt)) in out
        .chunks_exact_mut(out_c * plane_out)
        .zip(route.chunks_exact_mut(out_c * plane_out))
        .enumerate()
    {
        correlate(&mut wide_out, n8, wide.span, &xp[img * plane_in..], &off, w);
        for (o, (dst, rt)) in dst
            .chunks_exact_mut(plane_out)
            .zip(rt.chunks_exact_mut(plane_out))
            .enumerate()
        {
            let src = &wide_out[o * n8..][..n8];
            epilogue(src, wide.wp, bias[o], epi, ow, dst, rt);
        }
    }
    (out, Saved { xp, route })
}

/// Applies `bias` and `epi` to one wide output channel `src`, writing `dst` (rows of `ow`) and
/// where each value came from. Selections are written as plain `if` values so that they
/// compile to conditional moves: the comparisons are data-dependent and branches would
/// mispredict half the time.
fn epilogue(
    src: &[f32],
    wp: usize,
    bias: f32,
    epi: Epilogue,
    ow: usize,
    dst: &mut [f32],
    route: &mut [u32],
) {
    let relu = |v: f32| if epi.relu { v.max(0.0) } else { v };
    // The later of two candidates wins only when strictly larger: the first largest in scan
    // order, as the pool layer picks.
    let pick = |a: (f32, u32), b: (f32, u32)| if b.0 > a.0 { b } else { a };
    for (y, (d, r)) in dst
        .chunks_exact_mut(ow)
        .zip(route.chunks_exact_mut(ow))
        .enumerate()
    {
        if epi.max_pool2 {
            let (top, bottom) = (2 * y * wp, (2 * y + 1) * wp);
            let (r0, r1) = (&src[top..top + 2 * ow], &src[bottom..bottom + 2 * ow]);
            for x in 0..ow {
                let at = |row: usize, dx: usize| (row + 2 * x + dx) as u32;
                let v = |row: &[f32], dx: usize| relu(row[2 * x + dx] + bias);
                let upper = pick((v(r0, 0), at(top, 0)), (v(r0, 1), at(top, 1)));
                let lower = pick((v(r1, 0), at(bottom, 0)), (v(r1, 1), at(bottom, 1)));
                (d[x], r[x]) = pick(upper, lower);
            }
        } else {
            let row = &src[y * wp..y * wp + ow];
            for x in 0..ow {
                (d[x], r[x]) = (relu(row[x] + bias), (y * wp + x) as u32);
            }
        }
        if epi.relu {
            // A ReLU output of 0 passes no gradient.
            for (v, at) in d.iter().zip(r.iter_mut()) {
                *at = if *v > 0.0 { *at } else { CUT };
            }
        }
    }
}

/// Gradients of [`conv_forward`] given what it saved and the output gradient `gy`:
/// `(weight grad, bias grad, input grad if asked)`.
pub fn conv_backward(
    saved: &Saved,
    gy: &[f32],
    batch: usize,
    win: &Window,
    w: &[f32],
    out_c: usize,
    input_grad: bool,
) -> (Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let wide = Wide::new(win);
    let (c, taps) = (win.channels, win.kernel * win.kernel);
    let (plane_in, g_plane) = (c * wide.x_plane(), wide.g_plane());
    let off = wide.offsets(c, wide.x_plane());
    let plane_out = gy.len() / (batch * out_c).max(1);

    // The input gradient correlates the wide output gradient with the kernel flipped and its
    // channel axes swapped.
    let mut w_flip = vec![0.0; if input_grad { w.len() } else { 0 }];
    if input_grad {
        for (i, v) in w_flip.iter_mut().enumerate() {
            let (ci, o, t) = (i / (out_c * taps), (i / taps) % out_c, i % taps);
            *v = w[(o * c + ci) * taps + taps - 1 - t];
        }
    }
    let off_g = wide.offsets(out_c, g_plane);
    let gx_n = round_up(wide.hp * wide.wp);
    let mut gx_wide = vec![0.0; if input_grad { c * gx_n } else { 0 }];
    let mut gx = input_grad.then(|| vec![0.0; batch * win.image()]);

    let mut gb = vec![0.0; out_c];
    let mut acc = vec![0.0; w.len() * LANES];
    // The wide output gradient of one image; only its span is ever written, so the margin
    // and slack stay zero.
    let mut g_wide = vec![0.0; out_c * g_plane];
    for (img, (gyi, rt)) in gy
        .chunks_exact(out_c * plane_out)
        .zip(saved.route.chunks_exact(out_c * plane_out))
        .enumerate()
    {
        for (o, (g, r)) in gyi
            .chunks_exact(plane_out)
            .zip(rt.chunks_exact(plane_out))
            .enumerate()
        {
            let gw = &mut g_wide[o * g_plane + wide.margin..][..wide.span];
            gw.fill(0.0);
            let mut sum = 0.0;
            for (&g, &at) in g.iter().zip(r) {
                if at != CUT {
                    gw[at as usize] += g;
                    sum += g;
                }
            }
            gb[o] += sum;
        }
        let xi = &saved.xp[img * plane_in..];
        correlate_grad(
            &mut acc,
            &g_wide[wide.margin..],
            g_plane,
            wide.span,
            xi,
            &off,
        );
        if let Some(gx) = gx.as_deref_mut() {
            let len = wide.hp * wide.wp;
            correlate(&mut gx_wide, gx_n, len, &g_wide, &off_g, &w_flip);
            // Crop the padding off.
            let gxi = &mut gx[img * win.image()..][..win.image()];
            for (r, row) in gxi.chunks_exact_mut(win.width).enumerate() {
                let (ci, y) = (r / win.height, r % win.height);
                let at = ci * gx_n + (y + win.padding) * wide.wp + win.padding;
                row.copy_from_slice(&gx_wide[at..at + win.width]);
            }
        }
    }
    (reduce_lanes(&acc), gb, gx)
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    /// Output channels held in registers at once by the forward kernel.
    const OB: usize = 4;

    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    /// `OB_ x (8 * PV)` outputs at `p`: every tap broadcast once per channel and fused into
    /// `PV` registers of positions.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block<const OB_: usize, const PV: usize>(
        out: *mut f32,
        out_stride: usize,
        p: usize,
        src: *const f32,
        off: &[usize],
        w: *const f32,
        taps: usize,
    ) {
        // SAFETY (whole body): the caller keeps `p + 8 * PV` within the bounds `correlate`
        // asserted, for OB_ channels of `out` and `w`.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); PV]; OB_];
            for (j, &at) in off.iter().enumerate() {
                let s = src.add(p + at);
                let mut x = [_mm256_setzero_ps(); PV];
                for (v, xv) in x.iter_mut().enumerate() {
                    *xv = _mm256_loadu_ps(s.add(8 * v));
                }
                for (b, accb) in acc.iter_mut().enumerate() {
                    let wb = _mm256_broadcast_ss(&*w.add(b * taps + j));
                    for v in 0..PV {
                        accb[v] = _mm256_fmadd_ps(wb, x[v], accb[v]);
                    }
                }
            }
            for (b, accb) in acc.iter().enumerate() {
                for (v, a) in accb.iter().enumerate() {
                    _mm256_storeu_ps(out.add(b * out_stride + p + 8 * v), *a);
                }
            }
        }
    }

    /// All positions of `OB_` output channels: 24 at a time, then 8 at a time.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows<const OB_: usize>(
        out: *mut f32,
        out_stride: usize,
        n: usize,
        src: *const f32,
        off: &[usize],
        w: *const f32,
    ) {
        let taps = off.len();
        let mut p = 0;
        // SAFETY: `p + 24 <= n` and `p + 8 <= n` (n is a multiple of 8) keep `block` in bounds.
        unsafe {
            while p + 24 <= n {
                block::<OB_, 3>(out, out_stride, p, src, off, w, taps);
                p += 24;
            }
            while p < n {
                block::<OB_, 1>(out, out_stride, p, src, off, w, taps);
                p += 8;
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn correlate(
        out: &mut [f32],
        out_stride: usize,
        n: usize,
        src: &[f32],
        off: &[usize],
        w: &[f32],
        co: usize,
    ) {
        let taps = off.len();
        let (out, src, w) = (out.as_mut_ptr(), src.as_ptr(), w.as_ptr());
        let mut o = 0;
        // SAFETY: `correlate` asserted the bounds for all `co` channels.
        unsafe {
            while o < co {
                let (op, wp) = (out.add(o * out_stride), w.add(o * taps));
                let ob = (co - o).min(OB);
                match ob {
                    4 => rows::<4>(op, out_stride, n, src, off, wp),
                    3 => rows::<3>(op, out_stride, n, src, off, wp),
                    2 => rows::<2>(op, out_stride, n, src, off, wp),
                    _ => rows::<1>(op, out_stride, n, src, off, wp),
                }
                o += ob;
            }
        }
    }

    /// Output channels and taps per weight-gradient block (9 accumulators, 3 gradient rows and
    /// one source register: 13 of the 16).
    const GB: usize = 3;
    const TB: usize = 3;

    /// `OB_ x TB_` lane accumulators over all `n` positions.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn grad_block<const OB_: usize, const TB_: usize>(
        acc: *mut f32,
        taps: usize,
        g: *const f32,
        g_stride: usize,
        n: usize,
        src: *const f32,
        off: &[usize],
    ) {
        // SAFETY (whole body): the caller points `acc` and `off` at this block's first tap,
        // with `TB_` taps and `OB_` channels left, and `n` within the bounds
        // `correlate_grad` asserted.
        unsafe {
            let mut a = [[_mm256_setzero_ps(); TB_]; OB_];
            let mut p = 0;
            while p < n {
                let mut gv = [_mm256_setzero_ps(); OB_];
                for (b, v) in gv.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(g.add(b * g_stride + p));
                }
                for t in 0..TB_ {
                    let s = _mm256_loadu_ps(src.add(p + off[t]));
                    for b in 0..OB_ {
                        a[b][t] = _mm256_fmadd_ps(gv[b], s, a[b][t]);
                    }
                }
                p += 8;
            }
            for (b, ab) in a.iter().enumerate() {
                for (t, v) in ab.iter().enumerate() {
                    let at = acc.add((b * taps + t) * 8);
                    _mm256_storeu_ps(at, _mm256_add_ps(_mm256_loadu_ps(at), *v));
                }
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn grad_rows<const OB_: usize>(
        acc: *mut f32,
        g: *const f32,
        g_stride: usize,
        n: usize,
        src: *const f32,
        off: &[usize],
    ) {
        let taps = off.len();
        let mut j = 0;
        // SAFETY: every block stays within `taps` taps and `OB_` channels.
        unsafe {
            while j < taps {
                let (tb, a) = ((taps - j).min(TB), acc.add(j * 8));
                match tb {
                    3 => grad_block::<OB_, 3>(a, taps, g, g_stride, n, src, &off[j..]),
                    2 => grad_block::<OB_, 2>(a, taps, g, g_stride, n, src, &off[j..]),
                    _ => grad_block::<OB_, 1>(a, taps, g, g_stride, n, src, &off[j..]),
                }
                j += tb;
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn correlate_grad(
        acc: &mut [f32],
        g: &[f32],
        g_stride: usize,
        n: usize,
        src: &[f32],
        off: &[usize],
        co: usize,
    ) {
        let taps = off.len();
        let (acc, g, src) = (acc.as_mut_ptr(), g.as_ptr(), src.as_ptr());
        let mut o = 0;
        // SAFETY: `correlate_grad` asserted the bounds for all `co` channels.
        unsafe {
            while o < co {
                let (ap, gp) = (acc.add(o * taps * 8), g.add(o * g_stride));
                let ob = (co - o).min(GB);
                match ob {
                    3 => grad_rows::<3>(ap, gp, g_stride, n, src, off),
                    2 => grad_rows::<2>(ap, gp, g_stride, n, src, off),
                    _ => grad_rows::<1>(ap, gp, g_stride, n, src, off),
                }
                o += ob;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 31) % 97) as f32 / 97.0 - 0.5)
            .collect()
    }

    /// The kernels against their definitions, summed in f64, for channel counts that hit every
    /// block size and lengths with and without a 24-wide body.
    #[test]
    fn kernels_match_their_definitions() {
        for &(co, taps, len) in &[
            (1, 1, 5),
            (4, 9, 40),
            (6, 25, 668),
            (7, 10, 22),
            (16, 150, 92),
        ] {
            let off: Vec<usize> = (0..taps).map(|j| j * 3 + j % 2).collect();
            let n = round_up(len);
            let src = data(n + off[taps - 1], 1);
            let w = data(co * taps, 2);
            let mut out = vec![f32::NAN; co * n];
            correlate(&mut out, n, len, &src, &off, &w);
            for o in 0..co {
                for p in 0..n {
                    let r: f64 = (0..taps)
                        .map(|j| w[o * taps + j] as f64 * src[p + off[j]] as f64)
                        .sum();
                    assert!(
                        (out[o * n + p] as f64 - r).abs() < 1e-4,
                        "forward {co} {taps}"
                    );
                }
            }
            let g = data(co * n, 3);
            let mut acc = vec![0.0; co * taps * LANES];
            correlate_grad(&mut acc, &g, n, len, &src, &off);
            let gw = reduce_lanes(&acc);
            for o in 0..co {
                for j in 0..taps {
                    let r: f64 = (0..n)
                        .map(|p| g[o * n + p] as f64 * src[p + off[j]] as f64)
                        .sum();
                    assert!(
                        (gw[o * taps + j] as f64 - r).abs() < 1e-3,
                        "grad {co} {taps}"
                    );
                }
            }
        }
    }
}
