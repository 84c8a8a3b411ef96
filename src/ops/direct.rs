//! Direct (im2col-free) kernels for stride-1 convolutions, register-blocked for AVX-512 and
//! AVX2 + FMA.
//!
//! The "wide" layout: every channel of an image is zero-padded and stored flat, `wp` values a
//! row, so a stride-1 convolution becomes a 1-D correlation: output position `p = y * wp + x`
//! reads tap `j` (channel, kernel row, kernel column) at `p + off[j]`, where
//! `off[j] = channel * plane + ky * wp + kx`. Each output row is computed `wp` wide; its last
//! `kernel - 1` values are junk that callers drop. In exchange every kernel below is a few long
//! contiguous loops over `p`, several output channels and several vectors of positions at a
//! time held in registers, with no im2col copy.
//!
//! Lengths are rounded up to [`LANES`]: callers size buffers with [`round_up`] and keep the
//! slack zero (see each function for what it reads). Without AVX2 and FMA the same loops run
//! in plain Rust (same sums, in another order and rounded separately rather than fused).

use super::kernels::Window;
use std::borrow::Cow;

/// Values per AVX-512 register (two AVX2 registers); every length is processed in whole
/// multiples of it.
pub const LANES: usize = 16;

/// `n` rounded up to a multiple of [`LANES`].
pub fn round_up(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// The largest of `off`, which must be ascending (as [`Wide`] builds them): its last. Checked
/// in debug builds only; the kernels run once per image, and a scan per call showed in
/// profiles.
fn last_offset(off: &[usize]) -> usize {
    debug_assert!(off.windows(2).all(|w| w[0] <= w[1]), "offsets ascend");
    off.last().copied().unwrap_or(0)
}

/// An implementation of the two kernels below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust, for any CPU.
    Portable,
    /// AVX2 + FMA (x86-64 from 2013 on).
    Avx2,
    /// AVX-512F.
    Avx512,
}

impl Kernel {
    /// The fastest this CPU runs.
    pub fn best() -> Kernel {
        *Kernel::available().last().unwrap_or(&Kernel::Portable)
    }

    /// Every implementation this CPU can run, slowest first (detected once).
    pub fn available() -> &'static [Kernel] {
        use std::sync::OnceLock;
        static AVAILABLE: OnceLock<Vec<Kernel>> = OnceLock::new();
        AVAILABLE.get_or_init(|| {
            let mut all = vec![Kernel::Portable];
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::is_x86_feature_detected as has;
                if has!("avx2") && has!("fma") {
                    all.push(Kernel::Avx2);
                }
                // The AVX-512 build also compiles the epilogue for AVX2.
                if has!("avx512f") && has!("avx2") && has!("fma") {
                    all.push(Kernel::Avx512);
                }
            }
            all
        })
    }
}

/// Forward correlation: `out[o * out_stride + p] = sum_j w[o * taps + j] * src[p + off[j]]`
/// for every output channel `o < w.len() / taps` and `p < round_up(len)`, `taps = off.len()`;
/// `off` ascending.
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
    correlate_with(Kernel::best(), out, out_stride, len, src, off, w)
}

/// [`correlate`] with a chosen implementation, which this CPU must support.
pub fn correlate_with(
    kernel: Kernel,
    out: &mut [f32],
    out_stride: usize,
    len: usize,
    src: &[f32],
    off: &[usize],
    w: &[f32],
) {
    let (taps, n) = (off.len(), round_up(len));
    if taps == 0 || n == 0 || w.is_empty() {
        return;
    }
    let co = w.len() / taps;
    let max_off = last_offset(off);
    assert!(
        w.len() == co * taps
            && out_stride >= n
            && out.len() >= (co.max(1) - 1) * out_stride + n
            && src.len() >= n + max_off,
        "correlate: buffer too short"
    );
    assert!(
        Kernel::available().contains(&kernel),
        "{kernel:?} unsupported"
    );
    match kernel {
        // SAFETY: the CPU has the features, and the asserts above bound every access.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { simd::correlate_avx512(out, out_stride, n, src, off, w, co) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { simd::correlate_avx2(out, out_stride, n, src, off, w, co) },
        _ => {
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
    }
}

/// [`correlate`] over taps that come in rows of `k` neighbours, as a convolution's do, set up
/// once for many images: tap `(r, kx)` reads `src[p + rows[r] + kx]` with weight
/// `w[o * taps + r * k + kx]` (`rows` ascending, `taps = rows.len() * k`).
///
/// With fewer than 4 output channels the kernels would load a source vector for every
/// multiply-add. Then (with 25 taps or more) each kernel column becomes an output channel of its own (`co * k`
/// channels over `rows.len()` taps, each load shared by `k` multiply-adds) and the columns are
/// added up after, each shifted by its `kx`: the same products, summed in another order.
pub struct RowTaps<'w> {
    /// Every tap's offset (the plain case) or each row's first (split by column).
    off: Vec<usize>,
    k: usize,
    /// The weights, reordered `(o, kx, r)` when split.
    w: Cow<'w, [f32]>,
    /// Output channels, or 0 when not split.
    split_co: usize,
    /// The columns' partial sums, when split.
    h: Vec<f32>,
}

impl<'w> RowTaps<'w> {
    pub fn new(rows: &[usize], k: usize, w: &'w [f32]) -> Self {
        let (r_len, taps) = (rows.len(), rows.len() * k);
        let co = w.len().checked_div(taps).unwrap_or(0);
        // A few taps load little either way, and splitting costs a pass over the output.
        if co >= 4 || co == 0 || k == 1 || taps < 25 {
            return RowTaps {
                off: row_taps(rows, k),
                k,
                w: Cow::Borrowed(w),
                split_co: 0,
                h: Vec::new(),
            };
        }
        let mut ws = vec![0.0; w.len()];
        for (i, &v) in w.iter().enumerate() {
            let (o, r, kx) = (i / taps, (i / k) % r_len, i % k);
            ws[(o * k + kx) * r_len + r] = v;
        }
        RowTaps {
            off: rows.to_vec(),
            k,
            w: Cow::Owned(ws),
            split_co: co,
            h: Vec::new(),
        }
    }

    /// Writes what [`correlate`] with these taps writes. Reads `src` as far as it does
    /// (`round_up(len) + k - 2 + max(rows)`) or, split by column, up to
    /// `round_up(len + k - 1) - 1 + max(rows)`: at most 15 values further.
    pub fn correlate(&mut self, out: &mut [f32], out_stride: usize, len: usize, src: &[f32]) {
        let (co, k) = (self.split_co, self.k);
        if co == 0 {
            return correlate(out, out_stride, len, src, &self.off, &self.w);
        }
        let n = round_up(len);
        // Column kx's sums are read `kx` positions on: rows long enough for that, zero beyond
        // `round_up(len + k - 1)`.
        let h_stride = round_up(n + k);
        self.h.clear();
        self.h.resize(co * k * h_stride, 0.0);
        correlate(&mut self.h, h_stride, len + k - 1, src, &self.off, &self.w);
        assert!(
            out.len() >= (co - 1) * out_stride + n,
            "RowTaps::correlate: buffer too short"
        );
        for o in 0..co {
            let dst = &mut out[o * out_stride..][..n];
            let cols = &self.h[o * k * h_stride..][..k * h_stride];
            #[cfg(target_arch = "x86_64")]
            if Kernel::best() == Kernel::Avx512 {
                // SAFETY: the CPU has AVX-512F.
                unsafe { add_columns_avx512(dst, cols, h_stride, k) };
                continue;
            }
            add_columns(dst, cols, h_stride, k);
        }
    }
}

/// `dst[p] = sum_kx cols[kx * stride + kx + p]`: the kernel columns of [`RowTaps`] added up.
#[inline(always)]
fn add_columns(dst: &mut [f32], cols: &[f32], stride: usize, k: usize) {
    let n = dst.len();
    dst.copy_from_slice(&cols[..n]);
    for kx in 1..k {
        for (d, v) in dst.iter_mut().zip(&cols[kx * stride + kx..][..n]) {
            *d += v;
        }
    }
}

/// [`add_columns`] compiled for AVX-512, where its loops vectorize 16 wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn add_columns_avx512(dst: &mut [f32], cols: &[f32], stride: usize, k: usize) {
    add_columns(dst, cols, stride, k)
}

/// Every tap's offset: `k` neighbours from each row's first.
fn row_taps(rows: &[usize], k: usize) -> Vec<usize> {
    rows.iter().flat_map(|&r| r..r + k).collect()
}

/// What a weight-gradient pass reads: `images` images, image `i`'s wide output gradient at
/// `g[i * g_image..]` (channels `g_stride` apart, `len` positions each) and its padded input
/// at `src[i * src_image..]`.
#[derive(Clone, Copy, Debug)]
pub struct GradInput<'a> {
    pub g: &'a [f32],
    pub g_stride: usize,
    pub g_image: usize,
    pub src: &'a [f32],
    pub src_image: usize,
    pub images: usize,
    pub len: usize,
}

/// The strides of a [`GradInput`], with `len` rounded up: what the vector kernels need.
#[derive(Clone, Copy, Debug)]
struct GradLayout {
    g_stride: usize,
    g_image: usize,
    src_image: usize,
    images: usize,
    n: usize,
}

/// Weight-gradient correlation, per lane: for every output channel `o`, tap `j` and lane `l`,
/// `acc[(o * taps + j) * LANES + l] += sum g[o * g_stride + p] * src[p + off[j]]` (`off`
/// ascending) over every image and some of the `p < round_up(len)` (which lane takes which
/// `p` depends on the implementation). [`reduce_lanes`] turns `acc` into gradients. Several images per call keep
/// each block's accumulators in registers across them, which matters when an image is only a
/// few vectors long.
///
/// Reads image `i`'s `g` up to `(co - 1) * g_stride + round_up(len) - 1` and its `src` up to
/// `round_up(len) - 1 + max(off)`.
///
/// # Panics
/// When a buffer is shorter than that (a bug in the caller, not bad input).
pub fn correlate_grad(acc: &mut [f32], input: GradInput, off: &[usize]) {
    correlate_grad_with(Kernel::best(), acc, input, off)
}

/// [`correlate_grad`] with a chosen implementation, which this CPU must support.
pub fn correlate_grad_with(kernel: Kernel, acc: &mut [f32], input: GradInput, off: &[usize]) {
    let GradInput {
        g,
        g_stride,
        g_image,
        src,
        src_image,
        images,
        len,
    } = input;
    let (taps, n) = (off.len(), round_up(len));
    if taps == 0 || n == 0 || images == 0 {
        return;
    }
    let co = acc.len() / (taps * LANES);
    let max_off = last_offset(off);
    assert!(
        acc.len() == co * taps * LANES
            && g.len() >= (images - 1) * g_image + (co.max(1) - 1) * g_stride + n
            && src.len() >= (images - 1) * src_image + n + max_off,
        "correlate_grad: buffer too short"
    );
    assert!(
        Kernel::available().contains(&kernel),
        "{kernel:?} unsupported"
    );
    let layout = GradLayout {
        g_stride,
        g_image,
        src_image,
        images,
        n,
    };
    match kernel {
        // SAFETY: the CPU has the features, and the asserts above bound every access.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { simd::correlate_grad_avx512(acc, g, src, off, layout, co) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { simd::correlate_grad_avx2(acc, g, src, off, layout, co) },
        _ => {
            for i in 0..images {
                for o in 0..co {
                    let go = &g[i * g_image + o * g_stride..][..n];
                    for (j, &at) in off.iter().enumerate() {
                        let lanes = &mut acc[(o * taps + j) * LANES..][..LANES];
                        let s = &src[i * src_image + at..][..n];
                        for (gc, sc) in go.chunks_exact(LANES).zip(s.chunks_exact(LANES)) {
                            for l in 0..LANES {
                                lanes[l] += gc[l] * sc[l];
                            }
                        }
                    }
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
        row_taps(&self.rows(channels, plane), self.win.kernel)
    }

    /// The first tap of each kernel row, `(c, ky)`, for [`RowTaps`].
    fn rows(&self, channels: usize, plane: usize) -> Vec<usize> {
        let k = self.win.kernel;
        (0..channels)
            .flat_map(|c| (0..k).map(move |ky| c * plane + ky * self.wp))
            .collect()
    }

    /// Copies `batch` `C x H x W` images into zero-padded planes of [`Self::x_plane`] values
    /// (appending, so no value is written twice).
    fn pad(&self, x: &[f32], batch: usize) -> Vec<f32> {
        let (win, plane) = (&self.win, self.x_plane());
        let mut xp = Vec::with_capacity(batch * win.channels * plane);
        let zeros = |xp: &mut Vec<f32>, n: usize| xp.extend(std::iter::repeat_n(0.0, n));
        let area = win.height * win.width;
        for image in x.chunks_exact(area) {
            if win.padding == 0 {
                // Rows are already `wp` apart: one copy per plane.
                xp.extend_from_slice(image);
                zeros(&mut xp, plane - area);
                continue;
            }
            zeros(&mut xp, win.padding * self.wp);
            for row in image.chunks_exact(win.width) {
                zeros(&mut xp, win.padding);
                xp.extend_from_slice(row);
                zeros(&mut xp, win.padding);
            }
            zeros(&mut xp, plane - (win.height + win.padding) * self.wp);
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
    /// With a pool: for every output value, the wide position (within its channel) of the
    /// convolution output it came from, or [`CUT`]. Empty otherwise (row `y` is wide row `y`).
    route: Vec<u32>,
    /// With a ReLU and no pool: the output, whose positive values pass the gradient.
    relu_out: Vec<f32>,
}

/// Stride-1 convolution of `batch` images `x` (`N x C x H x W`) with `w` (`out x C x k x k`)
/// plus `bias`, then `epi`: returns the `N x out x OH x OW` output (`OH`, `OW` as
/// [`Epilogue::side`] gives them) and, when `for_backward`, what the backward pass needs
/// (else an empty [`Saved`]: evaluation keeps nothing).
pub fn conv_forward(
    x: &[f32],
    batch: usize,
    win: &Window,
    w: &[f32],
    bias: &[f32],
    epi: Epilogue,
    for_backward: bool,
) -> (Vec<f32>, Saved) {
    let wide = Wide::new(win);
    let (out_c, plane_in) = (bias.len(), win.channels * wide.x_plane());
    let xp = wide.pad(x, batch);
    let mut taps = RowTaps::new(&wide.rows(win.channels, wide.x_plane()), win.kernel, w);
    let n8 = round_up(wide.span);
    let (oh, ow) = (epi.side(win.out_h), epi.side(win.out_w));
    let mut wide_out = vec![0.0; out_c * n8];
    let per_image = out_c * oh * ow;
    let mut out = vec![0.0; batch * per_image];
    let mut route = vec![0; if epi.max_pool2 { out.len() } else { 0 }];
    for img in 0..batch {
        taps.correlate(&mut wide_out, n8, wide.span, &xp[img * plane_in..]);
        let dst = &mut out[img * per_image..][..per_image];
        let rt = if route.is_empty() {
            &mut [][..]
        } else {
            &mut route[img * per_image..][..per_image]
        };
        let args = EpilogueArgs {
            src: &wide_out,
            n8,
            wp: wide.wp,
            bias,
            oh,
            ow,
            dst,
            route: rt,
        };
        #[cfg(target_arch = "x86_64")]
        if Kernel::best() != Kernel::Portable {
            // SAFETY: every non-portable kernel implies AVX2 and FMA.
            unsafe { epilogue_avx2(epi, args) };
            continue;
        }
        epilogue(epi, args);
    }
    if !for_backward {
        return (out, Saved::default());
    }
    let relu_out = if epi.relu && !epi.max_pool2 {
        out.clone()
    } else {
        Vec::new()
    };
    (
        out,
        Saved {
            xp,
            route,
            relu_out,
        },
    )
}

/// One image's wide output `src` (`n8` values a channel, `wp` a row) and where its epilogue
/// goes: `oh x ow` values a channel into `dst`, and their origins into `route` (empty when
/// the epilogue is).
struct EpilogueArgs<'a> {
    src: &'a [f32],
    n8: usize,
    wp: usize,
    bias: &'a [f32],
    oh: usize,
    ow: usize,
    dst: &'a mut [f32],
    route: &'a mut [u32],
}

/// One channel of ReLU (if `RELU`) and 2x2 max pool over the wide output `s` (`wp` values a
/// row), 16 outputs at a time: the same selections as the scalar loop in [`epilogue_with`]
/// (strictly greater wins, ReLU turns NaN into 0, and a ReLU output of 0 is cut), with masks
/// instead of branches. A whole channel per call, so the constants are set up once.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pool_plane_avx512<const RELU: bool>(
    s: &[f32],
    (wp, oh, ow): (usize, usize, usize),
    bias: f32,
    d: &mut [f32],
    r: &mut [u32],
) {
    use std::arch::x86_64::*;
    if oh == 0 || ow == 0 {
        return;
    }
    assert!(
        (2 * oh - 1) * wp + 2 * ow <= s.len() && d.len() >= oh * ow && r.len() >= oh * ow,
        "pool_plane: buffer too short"
    );
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let (b, zero, one, cut) = (
        _mm512_set1_ps(bias),
        _mm512_setzero_ps(),
        _mm512_set1_epi32(1),
        _mm512_set1_epi32(CUT as i32),
    );
    // max_ps returns its second operand when the first is NaN: 0, as the scalar ReLU.
    let act = |v: __m512| {
        let v = _mm512_add_ps(v, b);
        if RELU { _mm512_max_ps(v, zero) } else { v }
    };
    // The better of two candidates; the second only when strictly larger.
    let pick = |(av, ai): (__m512, __m512i), (bv, bi): (__m512, __m512i)| {
        let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(bv, av);
        (
            _mm512_mask_blend_ps(take, av, bv),
            _mm512_mask_blend_epi32(take, ai, bi),
        )
    };
    // The even and odd columns of 32 values from `p`, of which the first `m` are read.
    let split = |p: *const f32, m: usize| {
        let (m0, m1) = (
            ((1u64 << m.min(16)) - 1) as u16,
            ((1u64 << m.saturating_sub(16)) - 1) as u16,
        );
        // SAFETY: the caller keeps the `m` values from `p` within `s`; masked lanes are not
        // read.
        let (v0, v1) = unsafe {
            (
                act(_mm512_maskz_loadu_ps(m0, p)),
                act(_mm512_maskz_loadu_ps(m1, p.add(16))),
            )
        };
        (
            _mm512_permutex2var_ps(v0, even, v1),
            _mm512_permutex2var_ps(v0, odd, v1),
        )
    };
    for y in 0..oh {
        let (top, bottom) = (2 * y * wp, (2 * y + 1) * wp);
        let (d, r) = (&mut d[y * ow..][..ow], &mut r[y * ow..][..ow]);
        let mut x = 0;
        while x < ow {
            let m = (ow - x).min(16);
            let out_mask = ((1u32 << m) - 1) as u16;
            // SAFETY: reads stay within `2 * ow` values of rows `2y` and `2y + 1`, within `s`
            // as asserted; stores within `ow` values of `d` and `r`.
            unsafe {
                let (a_even, a_odd) = split(s.as_ptr().add(top + 2 * x), 2 * m);
                let (c_even, c_odd) = split(s.as_ptr().add(bottom + 2 * x), 2 * m);
                // Position of each output's top-left value: 2 * (x + lane) in its row.
                let col = _mm512_add_epi32(even, _mm512_set1_epi32(2 * x as i32));
                let ti = _mm512_add_epi32(col, _mm512_set1_epi32(top as i32));
                let bi = _mm512_add_epi32(col, _mm512_set1_epi32(bottom as i32));
                let upper = pick((a_even, ti), (a_odd, _mm512_add_epi32(ti, one)));
                let lower = pick((c_even, bi), (c_odd, _mm512_add_epi32(bi, one)));
                let (v, mut at) = pick(upper, lower);
                if RELU {
                    let live = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, zero);
                    at = _mm512_mask_blend_epi32(live, cut, at);
                }
                _mm512_mask_storeu_ps(d.as_mut_ptr().add(x), out_mask, v);
                _mm512_mask_storeu_epi32(r.as_mut_ptr().add(x).cast(), out_mask, at);
            }
            x += 16;
        }
    }
}

/// One channel of bias and ReLU (if `RELU`) from the wide output `s` (`wp` values a row) into
/// `oh x ow` values, 16 at a time with masks: the scalar loop's values (ReLU turns NaN into 0).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn bias_plane_avx512<const RELU: bool>(
    s: &[f32],
    (wp, oh, ow): (usize, usize, usize),
    bias: f32,
    d: &mut [f32],
) {
    use std::arch::x86_64::*;
    if oh == 0 || ow == 0 {
        return;
    }
    assert!(
        (oh - 1) * wp + ow <= s.len() && d.len() >= oh * ow,
        "bias_plane: buffer too short"
    );
    let (b, zero) = (_mm512_set1_ps(bias), _mm512_setzero_ps());
    for y in 0..oh {
        let mut x = 0;
        while x < ow {
            let mask = ((1u32 << (ow - x).min(16)) - 1) as u16;
            // SAFETY: the masks keep reads within row `y`'s `ow` values of `s` and writes
            // within `d`, as asserted.
            unsafe {
                let v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, s.as_ptr().add(y * wp + x)), b);
                // max_ps returns its second operand when the first is NaN: 0.
                let v = if RELU { _mm512_max_ps(v, zero) } else { v };
                _mm512_mask_storeu_ps(d.as_mut_ptr().add(y * ow + x), mask, v);
            }
            x += 16;
        }
    }
}

/// [`epilogue`] compiled for AVX2, where its selections vectorize with blends.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn epilogue_avx2(epi: Epilogue, args: EpilogueArgs) {
    epilogue(epi, args)
}

#[inline(always)]
fn epilogue(epi: Epilogue, args: EpilogueArgs) {
    match (epi.relu, epi.max_pool2) {
        (false, false) => epilogue_with::<false, false>(args),
        (true, false) => epilogue_with::<true, false>(args),
        (false, true) => epilogue_with::<false, true>(args),
        (true, true) => epilogue_with::<true, true>(args),
    }
}

/// Applies the bias, then the ReLU and/or 2x2 max pool, to one image's wide output. The
/// selections are written as plain `if` values so that they compile to conditional moves or
/// blends: the comparisons are data-dependent and branches would mispredict half the time.
#[inline(always)]
fn epilogue_with<const RELU: bool, const POOL: bool>(a: EpilogueArgs) {
    let EpilogueArgs {
        src,
        n8,
        wp,
        bias,
        oh,
        ow,
        dst,
        route,
    } = a;
    let avx512 = Kernel::best() == Kernel::Avx512;
    // `if` rather than `f32::max`: one compare and blend, and NaN still becomes 0.
    let relu = |v: f32| if !RELU || v > 0.0 { v } else { 0.0 };
    // The later of two candidates wins only when strictly larger: the first largest in scan
    // order, as the pool layer picks.
    let pick = |a: (f32, u32), b: (f32, u32)| if b.0 > a.0 { b } else { a };
    let plane = oh * ow;
    for (o, &b) in bias.iter().enumerate() {
        let s = &src[o * n8..(o + 1) * n8];
        let d = &mut dst[o * plane..][..plane];
        #[cfg(target_arch = "x86_64")]
        if avx512 {
            // SAFETY: `avx512` is only set when the CPU has AVX-512F.
            unsafe {
                if POOL {
                    let r = &mut route[o * plane..][..plane];
                    pool_plane_avx512::<RELU>(s, (wp, oh, ow), b, d, r);
                } else {
                    bias_plane_avx512::<RELU>(s, (wp, oh, ow), b, d);
                }
            }
            continue;
        }
        for y in 0..oh {
            let d = &mut d[y * ow..][..ow];
            if POOL {
                let (top, bottom) = (2 * y * wp, (2 * y + 1) * wp);
                let (r0, r1) = (&s[top..top + 2 * ow], &s[bottom..bottom + 2 * ow]);
                let r = &mut route[o * plane + y * ow..][..ow];
                let (top, bottom) = (top as u32, bottom as u32);
                for x in 0..ow {
                    let (i, xi) = (2 * x, 2 * x as u32);
                    let upper = pick(
                        (relu(r0[i] + b), top + xi),
                        (relu(r0[i + 1] + b), top + xi + 1),
                    );
                    let lower = pick(
                        (relu(r1[i] + b), bottom + xi),
                        (relu(r1[i + 1] + b), bottom + xi + 1),
                    );
                    let (v, at) = pick(upper, lower);
                    d[x] = v;
                    // A ReLU output of 0 passes no gradient.
                    r[x] = if RELU && v <= 0.0 { CUT } else { at };
                }
            } else {
                let row = &s[y * wp..y * wp + ow];
                for (dv, &v) in d.iter_mut().zip(row) {
                    *dv = relu(v + b);
                }
            }
        }
    }
}

/// Images per weight-gradient pass: enough to amortize a register block's setup over small
/// images, few enough that their gradients stay in the L2 cache.
const GRAD_CHUNK: usize = 8;

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
    let mut taps_g = RowTaps::new(&wide.rows(out_c, g_plane), win.kernel, &w_flip);
    let gx_n = round_up(wide.hp * wide.wp);
    let mut gx_wide = vec![0.0; if input_grad { c * gx_n } else { 0 }];
    let mut gx = input_grad.then(|| Vec::with_capacity(batch * win.image()));

    let mut gb = vec![0.0; out_c];
    let mut acc = vec![0.0; w.len() * LANES];
    // The wide output gradients of a chunk of images; only their spans are ever written, so
    // margins and slack stay zero.
    let g_image = out_c * g_plane;
    // (Plus slack: split by column, the input gradient reads up to 15 values further.)
    let mut g_wide = vec![0.0; GRAD_CHUNK.min(batch) * g_image + LANES];
    for start in (0..batch).step_by(GRAD_CHUNK) {
        let count = GRAD_CHUNK.min(batch - start);
        for k in 0..count {
            let img = start + k;
            let gyi = &gy[img * out_c * plane_out..][..out_c * plane_out];
            for (o, g) in gyi.chunks_exact(plane_out).enumerate() {
                let at = k * g_image + o * g_plane + wide.margin;
                let gw = &mut g_wide[at..][..wide.span];
                if saved.route.is_empty() && saved.relu_out.is_empty() {
                    // No epilogue: output row y is wide row y.
                    for (y, row) in g.chunks_exact(win.out_w).enumerate() {
                        gw[y * wide.wp..][..win.out_w].copy_from_slice(row);
                    }
                    gb[o] += g.iter().sum::<f32>();
                    continue;
                }
                if saved.route.is_empty() {
                    // A ReLU alone: the gradient passes where the output is positive.
                    let y_out = &saved.relu_out[(img * out_c + o) * plane_out..][..plane_out];
                    let rows = g.chunks_exact(win.out_w).zip(y_out.chunks_exact(win.out_w));
                    let mut sum = 0.0;
                    for (y, (row, yr)) in rows.enumerate() {
                        let dst = &mut gw[y * wide.wp..][..win.out_w];
                        for ((d, &g), &v) in dst.iter_mut().zip(row).zip(yr) {
                            *d = if v > 0.0 { g } else { 0.0 };
                            sum += *d;
                        }
                    }
                    gb[o] += sum;
                    continue;
                }
                gw.fill(0.0);
                let r = &saved.route[(img * out_c + o) * plane_out..][..plane_out];
                let (mut sum, mut sink) = (0.0, 0.0);
                for (&g, &at) in g.iter().zip(r) {
                    // Every wide position is the origin of at most one output (pooling windows
                    // do not overlap), so a plain store does; a cut value goes to `sink`.
                    // Branch-free, and with no read of what the previous store wrote.
                    let keep = at != CUT;
                    *(if keep {
                        &mut gw[at as usize]
                    } else {
                        &mut sink
                    }) = g;
                    sum += if keep { g } else { 0.0 };
                }
                gb[o] += sum;
            }
        }
        let input = GradInput {
            g: &g_wide[wide.margin..],
            g_stride: g_plane,
            g_image,
            src: &saved.xp[start * plane_in..],
            src_image: plane_in,
            images: count,
            len: wide.span,
        };
        correlate_grad(&mut acc, input, &off);
        let Some(gx) = gx.as_mut() else {
            continue;
        };
        for k in 0..count {
            let len = wide.hp * wide.wp;
            let g = &g_wide[k * g_image..];
            taps_g.correlate(&mut gx_wide, gx_n, len, g);
            // Crop the padding off (nothing to crop without padding: one copy per plane).
            for ci in 0..c {
                let plane = &gx_wide[ci * gx_n..][..len];
                if win.padding == 0 {
                    gx.extend_from_slice(plane);
                    continue;
                }
                for y in 0..win.height {
                    let at = (y + win.padding) * wide.wp + win.padding;
                    gx.extend_from_slice(&plane[at..at + win.width]);
                }
            }
        }
    }
    (reduce_lanes(&acc), gb, gx)
}

#[cfg(target_arch = "x86_64")]
mod simd {
    //! The kernels, written once over a vector type and compiled twice: for AVX-512 and for
    //! AVX2 + FMA. Everything below the entry points is `#[inline(always)]`, so it is compiled
    //! inside an entry point's `#[target_feature]` and every intrinsic inlines.

    use super::GradLayout;
    use std::arch::x86_64::*;

    /// The few vector operations the kernels use. All unsafe: they need the CPU feature, and
    /// the pointers must be valid for `LANES` values.
    trait Vector: Copy {
        const LANES: usize;
        unsafe fn zero() -> Self;
        unsafe fn load(p: *const f32) -> Self;
        unsafe fn store(self, p: *mut f32);
        unsafe fn splat(p: *const f32) -> Self;
        /// `a * b + c`, fused.
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
        unsafe fn add(a: Self, b: Self) -> Self;
    }

    // SAFETY (both impls): callers uphold the trait's contract.
    impl Vector for __m256 {
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> Self {
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm256_storeu_ps(p, self) }
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> Self {
            unsafe { _mm256_broadcast_ss(&*p) }
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            unsafe { _mm256_add_ps(a, b) }
        }
    }

    impl Vector for __m512 {
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> Self {
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm512_storeu_ps(p, self) }
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> Self {
            unsafe { _mm512_set1_ps(*p) }
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            unsafe { _mm512_add_ps(a, b) }
        }
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
        // SAFETY (whole body): the caller keeps `p + LANES * PV` within the bounds
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

    /// Output channels `OB = 4, 3, 2, 1` with `PV[4 - OB]` position registers each.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn correlate_with<
        V: Vector,
        const P4: usize,
        const P3: usize,
        const P2: usize,
        const P1: usize,
    >(
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
    /// besides.
    #[inline(always)]
    unsafe fn grad_block<V: Vector, const OB: usize, const TB: usize>(
        acc: *mut f32,
        taps: usize,
        g: *const f32,
        src: *const f32,
        off: &[usize],
        l: GradLayout,
    ) {
        // SAFETY (whole body): the caller leaves `TB` taps and `OB` channels from here, and
        // every image within the bounds `correlate_grad` asserted.
        unsafe {
            let mut a = [[V::zero(); TB]; OB];
            for img in 0..l.images {
                let (g, src) = (g.add(img * l.g_image), src.add(img * l.src_image));
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
                    p += V::LANES;
                }
            }
            for (b, ab) in a.iter().enumerate() {
                for (t, v) in ab.iter().enumerate() {
                    let at = acc.add((b * taps + t) * super::LANES);
                    V::add(V::load(at), *v).store(at);
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

    /// Output channels `OB = 3, 2, 1` with `TB[3 - OB]` taps each.
    #[inline(always)]
    unsafe fn correlate_grad_with<V: Vector, const T3: usize, const T2: usize, const T1: usize>(
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

    // The entry points. Block sizes: AVX2 has 16 registers (12 accumulators), AVX-512 32.

    #[target_feature(enable = "avx512f")]
    pub unsafe fn correlate_avx512(
        out: &mut [f32],
        out_stride: usize,
        n: usize,
        src: &[f32],
        off: &[usize],
        w: &[f32],
        co: usize,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { correlate_with::<__m512, 4, 5, 8, 12>(out, out_stride, n, src, off, w, co) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn correlate_avx2(
        out: &mut [f32],
        out_stride: usize,
        n: usize,
        src: &[f32],
        off: &[usize],
        w: &[f32],
        co: usize,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { correlate_with::<__m256, 3, 4, 6, 12>(out, out_stride, n, src, off, w, co) }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn correlate_grad_avx512(
        acc: &mut [f32],
        g: &[f32],
        src: &[f32],
        off: &[usize],
        l: GradLayout,
        co: usize,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { correlate_grad_with::<__m512, 6, 8, 11>(acc, g, src, off, l, co) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn correlate_grad_avx2(
        acc: &mut [f32],
        g: &[f32],
        src: &[f32],
        off: &[usize],
        l: GradLayout,
        co: usize,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { correlate_grad_with::<__m256, 3, 5, 10>(acc, g, src, off, l, co) }
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

    /// Every implementation this CPU has against the definitions, summed in f64, for channel
    /// and tap counts that hit every block size and remainder, and lengths shorter and longer
    /// than one block.
    #[test]
    fn kernels_match_their_definitions() {
        let cases = [
            (1, 1, 5),
            (1, 23, 800),
            (2, 9, 40),
            (4, 9, 40),
            (6, 25, 668),
            (7, 10, 22),
            (16, 150, 92),
        ];
        for (co, taps, len) in cases {
            let off: Vec<usize> = (0..taps).map(|j| j * 3 + j % 2).collect();
            let n = round_up(len);
            let src = data(n + off[taps - 1], 1);
            let (w, g) = (data(co * taps, 2), data(co * n, 3));
            for &kernel in Kernel::available() {
                let what = format!("{kernel:?} {co} channels {taps} taps {len} long");
                let mut out = vec![f32::NAN; co * n];
                correlate_with(kernel, &mut out, n, len, &src, &off, &w);
                for o in 0..co {
                    for p in 0..n {
                        let r: f64 = (0..taps)
                            .map(|j| w[o * taps + j] as f64 * src[p + off[j]] as f64)
                            .sum();
                        assert!((out[o * n + p] as f64 - r).abs() < 1e-4, "{what}: forward");
                    }
                }
                // Two images: the second's data right after the first's.
                let (g2, src2) = ([&g[..], &g[..]].concat(), [&src[..], &src[..]].concat());
                let input = GradInput {
                    g: &g2,
                    g_stride: n,
                    g_image: g.len(),
                    src: &src2,
                    src_image: src.len(),
                    images: 2,
                    len,
                };
                let mut acc = vec![0.0; co * taps * LANES];
                correlate_grad_with(kernel, &mut acc, input, &off);
                let gw = reduce_lanes(&acc);
                for o in 0..co {
                    for j in 0..taps {
                        let r: f64 = 2.0
                            * (0..n)
                                .map(|p| g[o * n + p] as f64 * src[p + off[j]] as f64)
                                .sum::<f64>();
                        assert!((gw[o * taps + j] as f64 - r).abs() < 1e-3, "{what}: grad");
                    }
                }
            }
        }
    }

    /// Rows of kernel taps, split by column (fewer than 4 channels and 25 taps or more) or not,
    /// against the definition: every real position (`p < len`), lengths that are not whole
    /// vectors, and no read beyond the bound the docs give.
    #[test]
    fn row_taps_match_the_definition() {
        // (channels, rows, k, len)
        for (co, r_len, k, len) in [
            (1, 30, 5, 784),
            (2, 9, 3, 37),
            (3, 5, 5, 20),
            (1, 3, 3, 900),
            (6, 6, 5, 92),
        ] {
            let rows: Vec<usize> = (0..r_len).map(|r| r * 29 + r % 3).collect();
            let taps = r_len * k;
            let split = co < 4 && k > 1 && taps >= 25;
            let read = rows[r_len - 1]
                + if split {
                    round_up(len + k - 1) - 1
                } else {
                    round_up(len) + k - 2
                };
            // Exactly as long as the docs say it reads: a read beyond panics.
            let src = data(read + 1, 4);
            let w = data(co * taps, 5);
            let n = round_up(len);
            let mut out = vec![f32::NAN; co * n];
            RowTaps::new(&rows, k, &w).correlate(&mut out, n, len, &src);
            for o in 0..co {
                for p in 0..len {
                    let r: f64 = (0..taps)
                        .map(|j| w[o * taps + j] as f64 * src[p + rows[j / k] + j % k] as f64)
                        .sum();
                    let what = format!("{co} channels {r_len}x{k} taps {len} long, at {o}, {p}");
                    assert!((out[o * n + p] as f64 - r).abs() < 1e-4, "{what}");
                }
            }
        }
    }
}
