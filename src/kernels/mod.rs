//! The numeric kernels every op runs on: one file per instruction set behind one trait,
//! [`Isa`]. [`portable`] is plain Rust for any CPU (the trait's default methods), `avx2`
//! (AVX2 + FMA), `avx512` (AVX-512F) and `neon` (aarch64) override what they speed up, their
//! correlations written once over a vector type (`simd.rs`), and [`Kernel::active`] picks one
//! per process: `LESSER_KERNEL=portable|avx2|avx512|neon`, else the fastest this CPU runs.
//!
//! **The same bits on every kernel.** Every implementation computes each value with the same
//! IEEE operations in the same order: products summed from 0 in a fixed order with fused
//! multiply-adds, reductions over a fixed lane layout of 16, no library whose blocking
//! follows the CPU. A sweep's reports therefore do not depend on the kernel or the machine
//! (`tests/kernels.rs` runs a sweep under every kernel and compares the files). Outside this
//! module, ops use plain Rust arithmetic, which is the same everywhere, and the C library's
//! `exp` and `ln` (losses, sigmoid, tanh through `exp`), which glibc computes alike on x86-64
//! and aarch64 (`tests/cross/run.sh` compares them; its `tanhf` differs, so it is not used);
//! another C library may round those differently in the last bit.
//!
//! **Safety.** An instruction set's value (`Avx2`, `Avx512`) can only be made on a CPU that has
//! it, so its [`Isa`] methods are safe to call, and the bounds every method relies on are
//! checked once, in the public functions here. Code that only needs recompiling for wider
//! vectors (the epilogue, Adam) is the portable function called from a `#[target_feature]`
//! wrapper. The `multiversion` and `pulp` crates were not used: both choose the instruction
//! set by their own detection, while every op here must follow [`Kernel::active`] (so that
//! `LESSER_KERNEL` and the tests can run each kernel).
//!
//! The correlation kernels are 1-D: the forward one computes
//! `out[o][p] = sum_j w[o][j] * src[p + off[j]]` over a run of positions `p`, several output
//! channels and several vectors of positions at a time held in registers, the taps `j`
//! streamed past them; the weight-gradient one the matching sums over positions. A caller
//! makes its problem 1-D by its choice of layout and offsets: stride-1 convolutions in the
//! image-per-lane layout (`ops::lanes`), linear layers and matrix products as 1x1 ones.
//! Lengths are rounded up to [`LANES`]: callers size buffers with [`round_up`] and keep the
//! slack zero (see each function for what it reads).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod dispatch;
#[cfg(target_arch = "aarch64")]
mod neon;
mod portable;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod simd;

pub use dispatch::Kernel;

use std::mem::MaybeUninit;

use crate::par;
use dispatch::isa;

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
pub(crate) fn last_offset(off: &[usize]) -> usize {
    debug_assert!(off.windows(2).all(|w| w[0] <= w[1]), "offsets ascend");
    off.last().copied().unwrap_or(0)
}

/// What a convolution's output goes through in the lane layout before it is stored: a ReLU
/// and/or a 2x2 max pool (stride 2).
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

/// Batch normalization's numbers per channel, as an epilogue applies them after the bias:
/// `gamma * ((v - mean) * inv_std) + beta`.
#[derive(Clone, Copy, Debug)]
pub struct Norm<'a> {
    pub mean: &'a [f32],
    pub inv_std: &'a [f32],
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
}

impl<'a> Norm<'a> {
    /// The numbers of `channels` alone.
    pub fn channels(&self, channels: std::ops::Range<usize>) -> Norm<'a> {
        Norm {
            mean: &self.mean[channels.clone()],
            inv_std: &self.inv_std[channels.clone()],
            gamma: &self.gamma[channels.clone()],
            beta: &self.beta[channels],
        }
    }
}

/// A pooled output that passes no gradient back (ReLU cut it off): its route.
pub(crate) const CUT: u8 = u8::MAX;

/// How the gradient of an epilogue's output reaches the convolution's output.
#[derive(Clone, Copy)]
pub(crate) enum Spread<'a> {
    /// Through the pool, to where each value came from (the forward pass's route).
    Route(&'a [u8]),
    /// Through a ReLU alone: where its output (this) is positive.
    Relu(&'a [f32]),
    /// No epilogue: as it is.
    Plain,
}

/// Where pixels sit in one group of padded planes (`pad` zeros all round a `h x w` image,
/// `hp x wp` padded), in pixels of [`LANES`] values.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    pub hp: usize,
    pub wp: usize,
    pub pad: usize,
}

impl Grid {
    /// Where image pixel `(c, y, x)` sits, in pixels.
    #[inline(always)]
    pub fn pixel(&self, c: usize, y: usize, x: usize) -> usize {
        (c * self.hp + y + self.pad) * self.wp + x + self.pad
    }
}

/// One Adam update's constants, as PyTorch's `Adam` arranges them: the step size
/// `lr / (1 - b1^t)`, the moments' decay rates, the weight decay, and `1 / sqrt(1 - b2^t)`.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    pub step: f32,
    pub b1: f32,
    pub b2: f32,
    pub weight_decay: f32,
    pub inv_sqrt_c2: f32,
}

/// What an instruction set provides. The default methods are the portable implementations;
/// an instruction set overrides those it speeds up, with the same operations in the same
/// order (see the module's documentation). Callers have checked every bound each method
/// documents; implementations may rely on it.
pub(crate) trait Isa: Sync {
    /// [`correlate`] for `co` channels of `n` (a multiple of [`LANES`]) positions.
    #[allow(clippy::too_many_arguments)]
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
        portable::correlate(out, out_stride, n, src, off, w, co)
    }

    /// [`correlate_grad`] for `co` channels.
    fn correlate_grad(
        &self,
        acc: &mut [f32],
        g: &[f32],
        src: &[f32],
        off: &[usize],
        l: GradLayout,
        co: usize,
    ) {
        portable::correlate_grad(acc, g, src, off, l, co)
    }

    /// [`gather_strided`], bounds checked.
    fn gather(
        &self,
        dst: &mut [MaybeUninit<f32>],
        dst_stride: usize,
        len: usize,
        src: &[f32],
        stride: usize,
        m: usize,
    ) {
        portable::gather(dst, dst_stride, len, src, stride, m)
    }

    /// [`scatter`], bounds checked.
    fn scatter(&self, dst: &mut [MaybeUninit<f32>], src: &[f32], stride: usize, m: usize) {
        portable::scatter(dst, src, stride, m)
    }

    /// [`spread`].
    fn spread(
        &self,
        src: &[f32],
        how: Spread,
        dims: (usize, usize, usize),
        grid: Grid,
        gc: &mut [MaybeUninit<f32>],
        gb: &mut [f32],
    ) {
        portable::spread(src, how, dims, grid, gc, gb)
    }

    /// [`epilogue`].
    #[allow(clippy::too_many_arguments)]
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
        portable::epilogue(epi, src, dims, bias, norm, dst, route)
    }

    /// [`adam`].
    fn adam(&self, step: AdamStep, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        portable::adam(step, w, g, m, v)
    }
}

/// Forward correlation: `out[o * out_stride + p] = sum_j w[o * taps + j] * src[p + off[j]]`
/// for every output channel `o < w.len() / taps` and `p < round_up(len)`, `taps = off.len()`;
/// `off` ascending. Writes those values and nothing else, without reading `out`.
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
    correlate_with(Kernel::active(), out, out_stride, len, src, off, w)
}

/// [`correlate`] into a new vector, `co` rows of `round_up(len)` values: every value is
/// written once (a buffer zeroed first would be written twice).
pub fn correlate_new(len: usize, src: &[f32], off: &[usize], w: &[f32]) -> Vec<f32> {
    let (taps, n) = (off.len(), round_up(len));
    let total = w.len().checked_div(taps).unwrap_or(0) * n;
    let mut out = Vec::with_capacity(total);
    correlate_into(
        Kernel::active(),
        &mut out.spare_capacity_mut()[..total],
        n,
        len,
        src,
        off,
        w,
    );
    // SAFETY: `correlate_into` wrote `out[o * n + p]` for every channel `o` and `p < n`: all
    // `total` values.
    unsafe { out.set_len(total) };
    out
}

/// [`correlate`] into memory that need not be initialized, on this thread alone (for
/// callers that split a larger pass over the threads): writes exactly what [`correlate`]
/// writes.
pub(crate) fn correlate_uninit(
    out: &mut [MaybeUninit<f32>],
    out_stride: usize,
    len: usize,
    src: &[f32],
    off: &[usize],
    w: &[f32],
) {
    correlate_split(Kernel::active(), out, out_stride, len, src, off, w, 1)
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
    correlate_into(kernel, as_uninit(out), out_stride, len, src, off, w)
}

/// `v` as memory to write, for the functions here that write only initialized values (so
/// that `v` stays initialized) and read none.
pub(crate) fn as_uninit(v: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout; the callers write only initialized
    // values through it.
    unsafe { &mut *(v as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// [`correlate_with`] into memory that need not be initialized, its channels split over
/// the pool's threads.
fn correlate_into(
    kernel: Kernel,
    out: &mut [MaybeUninit<f32>],
    out_stride: usize,
    len: usize,
    src: &[f32],
    off: &[usize],
    w: &[f32],
) {
    let co = w.len().checked_div(off.len()).unwrap_or(0);
    let pieces = par::pieces(co, w.len() * round_up(len));
    correlate_split(kernel, out, out_stride, len, src, off, w, pieces)
}

/// [`correlate_into`] in `pieces` runs of channels.
#[allow(clippy::too_many_arguments)]
fn correlate_split(
    kernel: Kernel,
    out: &mut [MaybeUninit<f32>],
    out_stride: usize,
    len: usize,
    src: &[f32],
    off: &[usize],
    w: &[f32],
    pieces: usize,
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
    // Each channel's values are the same however the channels are split.
    let parts = par::Rows(out, out_stride);
    par::split(
        parts,
        (0, co),
        pieces,
        &|first, count, par::Rows(out, _)| {
            let w = &w[first * taps..][..count * taps];
            isa(kernel).correlate(out, out_stride, n, src, off, w, count);
        },
    );
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
pub(crate) struct GradLayout {
    pub g_stride: usize,
    pub g_image: usize,
    pub src_image: usize,
    pub images: usize,
    pub n: usize,
}

/// Weight-gradient correlation, per lane: for every output channel `o`, tap `j` and lane `l`,
/// `acc[(o * taps + j) * LANES + l] += sum g[o * g_stride + p] * src[p + off[j]]` (`off`
/// ascending) over every image and the positions `p < round_up(len)` with `p % LANES == l`,
/// each lane's sum formed from 0 in order (images, then positions) with fused multiply-adds
/// and then added to `acc`, by every implementation alike. [`reduce_lanes`] turns `acc` into gradients. Several images per call keep
/// each block's accumulators in registers across them, which matters when an image is only a
/// few vectors long.
///
/// Reads image `i`'s `g` up to `(co - 1) * g_stride + round_up(len) - 1` and its `src` up to
/// `round_up(len) - 1 + max(off)`.
///
/// # Panics
/// When a buffer is shorter than that (a bug in the caller, not bad input).
pub fn correlate_grad(acc: &mut [f32], input: GradInput, off: &[usize]) {
    correlate_grad_with(Kernel::active(), acc, input, off)
}

/// [`correlate_grad`] with a chosen implementation, which this CPU must support.
pub fn correlate_grad_with(kernel: Kernel, acc: &mut [f32], input: GradInput, off: &[usize]) {
    let co = acc.len() / (off.len() * LANES).max(1);
    let pieces = par::pieces(co, co * off.len() * round_up(input.len) * input.images);
    correlate_grad_split(kernel, acc, input, off, pieces)
}

/// [`correlate_grad`] on this thread alone, for callers that split a larger pass over the
/// threads: adds exactly what [`correlate_grad`] adds.
pub(crate) fn correlate_grad_piece(acc: &mut [f32], input: GradInput, off: &[usize]) {
    correlate_grad_split(Kernel::active(), acc, input, off, 1)
}

/// [`correlate_grad_with`] in `pieces` runs of channels.
fn correlate_grad_split(
    kernel: Kernel,
    acc: &mut [f32],
    input: GradInput,
    off: &[usize],
    pieces: usize,
) {
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
    // The channels split over the pool's threads: each channel's sums are the same.
    let parts = par::Rows(acc, taps * LANES);
    par::split(
        parts,
        (0, co),
        pieces,
        &|first, count, par::Rows(acc, _)| {
            let g = &g[first * g_stride..];
            isa(kernel).correlate_grad(acc, g, src, off, layout, count);
        },
    );
}

/// Sums each run of [`LANES`] values of a [`correlate_grad`] accumulator, in lane order.
pub fn reduce_lanes(acc: &[f32]) -> Vec<f32> {
    acc.chunks_exact(LANES)
        .map(|l| l.iter().fold(0.0, |s, v| s + v))
        .collect()
}

/// `dst[p * dst_stride + l] = src[l * stride + p]` for `p < len` and `l < LANES` (from `m`
/// on, 0): `m` rows of `src`, `stride` apart, into pixels of [`LANES`] values; what lies
/// between pixels is left as it is.
///
/// # Panics
/// When a buffer is too short (a bug in the caller, not bad input).
pub fn gather_strided(
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
    len: usize,
    src: &[f32],
    stride: usize,
    m: usize,
) {
    if len == 0 || m == 0 {
        return;
    }
    assert!(
        m <= LANES
            && dst_stride >= LANES
            && dst.len() >= (len - 1) * dst_stride + LANES
            && src.len() >= (m - 1) * stride + len,
        "gather: buffer too short"
    );
    isa(Kernel::active()).gather(dst, dst_stride, len, src, stride, m)
}

/// The inverse of [`gather_strided`] with packed pixels: `dst[l * stride + p] =
/// src[p * LANES + l]` for `l < m` and every pixel `p` of `src`.
///
/// # Panics
/// When a buffer is too short (a bug in the caller, not bad input).
pub fn scatter(dst: &mut [MaybeUninit<f32>], src: &[f32], stride: usize, m: usize) {
    let len = src.len() / LANES;
    if len == 0 || m == 0 {
        return;
    }
    assert!(
        m <= LANES && dst.len() >= (m - 1) * stride + len,
        "scatter: buffer too short"
    );
    isa(Kernel::active()).scatter(dst, src, stride, m)
}

/// Bias, then batch norm's `norm` if given, then `epi`, over one group's convolution output
/// `src` (`co x oh x ow` pixels) into `dst` (`co x OH x OW` pixels) and, with a pool, `route`
/// (unless it is empty): for each pooled output, which of its window's four pixels it came
/// from, or [`CUT`]. On this thread alone: the caller splits channels over the threads.
pub(crate) fn epilogue(
    epi: Epilogue,
    src: &[f32],
    dims: (usize, usize, usize),
    bias: &[f32],
    norm: Option<Norm>,
    dst: &mut [MaybeUninit<f32>],
    route: &mut [u8],
) {
    isa(Kernel::active()).epilogue(epi, src, dims, bias, norm, dst, route)
}

/// Writes one group's convolution-output gradient (`co x oh x ow` pixels) into `gc` (placed
/// by `grid`) from the gradient `src` of the epilogue's output, and adds it to the bias
/// gradient's lanes `gb`: each channel's sum over the group formed from 0 in pixel order,
/// then added once. Every one of those pixels is written but, after a pool over an odd
/// side, the last row or column, which no pooled value comes from. On this thread alone:
/// the caller splits channels over the threads.
///
/// # Panics
/// When a buffer is too short (a bug in the caller, not bad input).
pub(crate) fn spread(
    src: &[f32],
    how: Spread,
    dims: (usize, usize, usize),
    grid: Grid,
    gc: &mut [MaybeUninit<f32>],
    gb: &mut [f32],
) {
    let (co, oh, ow) = dims;
    if co == 0 || oh == 0 || ow == 0 {
        return;
    }
    let pooled = matches!(how, Spread::Route(_));
    let pixels = if pooled { (oh / 2) * (ow / 2) } else { oh * ow };
    let need = match how {
        Spread::Route(r) => r.len(),
        Spread::Relu(out) => out.len(),
        Spread::Plain => src.len(),
    };
    assert!(
        src.len() >= co * pixels * LANES
            && need >= src.len()
            && gb.len() >= co * LANES
            && gc.len() >= (grid.pixel(co - 1, oh - 1, ow - 1) + 1) * LANES,
        "spread: buffer too short"
    );
    isa(Kernel::active()).spread(src, how, dims, grid, gc, gb)
}

/// Runs `f` compiled for the active kernel's vector width, for plain Rust loops over lanes
/// outside the [`Isa`] methods (batch norm's passes). Plain Rust fuses nothing and reorders
/// no sum, so `f` gives the same bits whichever width it is compiled for.
pub(crate) fn widened<R>(f: impl FnOnce() -> R) -> R {
    match Kernel::active() {
        // SAFETY: the active kernel is one this CPU has (`Kernel::available`).
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { avx512::widened(f) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { avx2::widened(f) },
        _ => f(),
    }
}

/// One Adam update of weights `w` and moments `m`, `v` from gradient `g`, element by
/// element, in PyTorch's arrangement: one square root and one IEEE division an element.
///
/// # Panics
/// When the four slices differ in length.
pub fn adam(step: AdamStep, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    assert!(
        g.len() == w.len() && m.len() == w.len() && v.len() == w.len(),
        "adam: lengths differ"
    );
    isa(Kernel::active()).adam(step, w, g, m, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 31) % 97) as f32 / 97.0 - 0.5)
            .collect()
    }

    /// Every implementation this CPU has against the definitions, summed in f64, and against
    /// each other bit for bit, for channel and tap counts that hit every block size and
    /// remainder, and lengths shorter and longer than one block.
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
            (13, 20, 300),
            (32, 27, 256),
        ];
        for (co, taps, len) in cases {
            let off: Vec<usize> = (0..taps).map(|j| j * 3 + j % 2).collect();
            let n = round_up(len);
            let src = data(n + off[taps - 1], 1);
            let (w, g) = (data(co * taps, 2), data(co * n, 3));
            // What the portable kernel gives; every other must give the same bits.
            let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
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
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                match &first {
                    None => first = Some((out, gw)),
                    Some((out0, gw0)) => {
                        assert_eq!(bits(&out), bits(out0), "{what}: forward bits");
                        assert_eq!(bits(&gw), bits(gw0), "{what}: grad bits");
                    }
                }
            }
        }
    }

    /// The gradient spread of every kernel this CPU has against the portable one, bit for
    /// bit, through a pool's route, a ReLU (with NaN and signed zeros in its output) and as
    /// it is, over an odd side (whose last row and column no pooled value reaches).
    #[test]
    fn spread_is_the_same_on_every_kernel() {
        let (co, oh, ow) = (3, 5, 7);
        let grid = Grid {
            hp: oh + 2,
            wp: ow + 2,
            pad: 1,
        };
        let full = co * oh * ow * LANES;
        let src = data(full, 4);
        let route: Vec<u8> = (0..full).map(|i| [0, 1, 2, 3, CUT][i * 7 % 5]).collect();
        let specials = [f32::NAN, -0.0, 0.0, -1.0, 1.0];
        let out: Vec<f32> = (0..full).map(|i| specials[i * 3 % 5]).collect();
        let cases = [
            ("route", Spread::Route(&route)),
            ("relu", Spread::Relu(&out)),
            ("plain", Spread::Plain),
        ];
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for (what, how) in cases {
            let run = |kernel: Kernel| {
                let mut gc = vec![7.0f32; grid.pixel(co, 0, 0) * LANES];
                let mut gb = data(co * LANES, 5);
                isa(kernel).spread(&src, how, (co, oh, ow), grid, as_uninit(&mut gc), &mut gb);
                (bits(&gc), bits(&gb))
            };
            let portable = run(Kernel::Portable);
            for &kernel in Kernel::available() {
                assert!(run(kernel) == portable, "{kernel:?} {what}");
            }
        }
    }
}
