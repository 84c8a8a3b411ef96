//! Stride-1 convolution on the image-per-lane layout.
//!
//! A batch is cut into groups of [`LANES`] images, and each group is stored
//! `C x H x W x LANES`: one pixel of the 16 images side by side (missing images of the last
//! group are zeros). A stride-1 convolution is then, output row by output row, the 1-D
//! correlation of [`correlate`] with tap offsets in whole pixels: every vector the kernels
//! load is one pixel of 16 images, aligned to a cache line, and every position they compute
//! is an output (no padding columns, no rounding of an image to whole vectors). The weight
//! gradient is [`correlate_grad`] with output rows as its "images", the input gradient the
//! forward correlation of the output gradient with the kernel flipped. The layout is entered
//! and left by one transposing pass each way, once for a whole chain of convolutions: each
//! one's output, in this layout, is the next one's input.

use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};

use super::im2col::Window;
use crate::kernels::{
    Epilogue, GradInput, Grid, LANES, Spread, as_uninit, correlate, correlate_grad, epilogue,
    gather_strided, reduce_lanes, scatter, spread,
};

/// Zero-initialized `f32`s starting on a 64-byte boundary (when the allocator allows), so
/// that a pixel of 16 lanes is one cache line.
#[derive(Debug, Default)]
struct Aligned {
    buf: Vec<f32>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn zeros(len: usize) -> Self {
        let buf = vec![0.0; len + LANES];
        let start = Self::start(&buf);
        Aligned { buf, start, len }
    }

    /// Where the aligned values begin in a buffer of `len + LANES`.
    fn start<T>(buf: &[T]) -> usize {
        let start = buf.as_ptr().align_offset(64);
        if start < LANES { start } else { 0 }
    }

    /// `len` values written by `fill`, without zeroing them first.
    ///
    /// # Safety
    /// `fill` must write every value of the slice it is given.
    unsafe fn written(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Self {
        let mut fresh = Fresh::new(len);
        fill(fresh.part_mut(0, len));
        // SAFETY: the caller's `fill` wrote every value.
        unsafe { fresh.into_aligned() }
    }
}

/// Like [`Aligned`], but made without writing anything: written part by part, read only where
/// written, and turned into an [`Aligned`] once every value is.
#[derive(Debug)]
struct Fresh {
    buf: Vec<MaybeUninit<f32>>,
    start: usize,
    len: usize,
}

impl Fresh {
    fn new(len: usize) -> Self {
        let mut buf = Vec::with_capacity(len + LANES);
        // SAFETY: `MaybeUninit` values need no initialization.
        unsafe { buf.set_len(len + LANES) };
        let start = Aligned::start(&buf);
        Fresh { buf, start, len }
    }

    /// `len` values from `at`, to write.
    fn part_mut(&mut self, at: usize, len: usize) -> &mut [MaybeUninit<f32>] {
        assert!(at + len <= self.len, "Fresh: part out of bounds");
        &mut self.buf[self.start + at..][..len]
    }

    /// `len` values from `at`, to read.
    ///
    /// # Safety
    /// Every one of them must have been written.
    unsafe fn part(&self, at: usize, len: usize) -> &[f32] {
        assert!(at + len <= self.len, "Fresh: part out of bounds");
        let part = &self.buf[self.start + at..][..len];
        // SAFETY: the caller says these values were written; `MaybeUninit<f32>` has `f32`'s
        // layout.
        unsafe { &*(part as *const [MaybeUninit<f32>] as *const [f32]) }
    }

    /// The buffer as an [`Aligned`].
    ///
    /// # Safety
    /// Every value must have been written.
    unsafe fn into_aligned(self) -> Aligned {
        let Fresh {
            mut buf,
            start,
            len,
        } = self;
        let (head, rest) = buf.split_at_mut(start);
        head.iter_mut().chain(&mut rest[len..]).for_each(|v| {
            v.write(0.0);
        });
        let mut buf = std::mem::ManuallyDrop::new(buf);
        let (ptr, n, cap) = (buf.as_mut_ptr().cast::<f32>(), buf.len(), buf.capacity());
        // SAFETY: the head and tail were written just above and the caller says the body
        // was; `MaybeUninit<f32>` has `f32`'s layout, and the allocation passes unchanged.
        let buf = unsafe { Vec::from_raw_parts(ptr, n, cap) };
        Aligned { buf, start, len }
    }
}

impl Deref for Aligned {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl DerefMut for Aligned {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

/// Groups of [`LANES`] images in a batch of `n`.
fn groups(n: usize) -> usize {
    n.div_ceil(LANES)
}

/// Images of group `g` in a batch of `n`.
fn in_group(n: usize, g: usize) -> usize {
    (n - g * LANES).min(LANES)
}

/// `C x H x W` images stored with `pad` zeros all round: the planes of one group.
#[derive(Clone, Copy, Debug)]
struct Planes {
    c: usize,
    h: usize,
    w: usize,
    pad: usize,
}

impl Planes {
    fn hp(&self) -> usize {
        self.h + 2 * self.pad
    }
    fn wp(&self) -> usize {
        self.w + 2 * self.pad
    }
    /// Pixels of one padded plane.
    fn area(&self) -> usize {
        self.hp() * self.wp()
    }
    /// Values of one group.
    fn group(&self) -> usize {
        self.c * self.area() * LANES
    }
    /// Values of one image in NCHW, padding excluded.
    fn image(&self) -> usize {
        self.c * self.h * self.w
    }
    /// Offsets of the taps of a `k x k` kernel, in weight order `(c, ky, kx)`.
    fn taps(&self, k: usize) -> Vec<usize> {
        let (area, wp) = (self.area(), self.wp());
        (0..self.c)
            .flat_map(|c| (0..k).flat_map(move |ky| (0..k).map(move |kx| (c, ky, kx))))
            .map(|(c, ky, kx)| (c * area + ky * wp + kx) * LANES)
            .collect()
    }
    /// Where image pixel `(c, y, x)` sits in a group, in pixels.
    fn pixel(&self, c: usize, y: usize, x: usize) -> usize {
        self.grid().pixel(c, y, x)
    }
    /// The pixel arithmetic of these planes, for the kernels.
    fn grid(&self) -> Grid {
        Grid {
            hp: self.hp(),
            wp: self.wp(),
            pad: self.pad,
        }
    }

    /// A plane's pixels as runs contiguous in both layouts: `(runs, pixels a run)`.
    fn runs(&self) -> (usize, usize) {
        if self.pad == 0 {
            (1, self.h * self.w)
        } else {
            (self.h, self.w)
        }
    }

    /// Zeros into the padding of one group `dst`, and nowhere else.
    fn zero_padding(&self, dst: &mut [MaybeUninit<f32>]) {
        if self.pad == 0 {
            return;
        }
        let zero = |v: &mut [MaybeUninit<f32>]| v.fill(MaybeUninit::new(0.0));
        let (row, side) = (self.wp() * LANES, self.pad * LANES);
        for plane in dst.chunks_exact_mut(self.area() * LANES) {
            let (top, rest) = plane.split_at_mut(self.pad * row);
            let (middle, bottom) = rest.split_at_mut(self.h * row);
            zero(top);
            zero(bottom);
            for r in middle.chunks_exact_mut(row) {
                zero(&mut r[..side]);
                zero(&mut r[row - side..]);
            }
        }
    }

    /// Group `g` of the NCHW batch `x` (`n` images) into `dst` (one group; missing images
    /// become zeros, padding is left as it is: without padding, every value is written).
    fn enter(&self, x: &[f32], n: usize, g: usize, dst: &mut [MaybeUninit<f32>]) {
        let (m, image) = (in_group(n, g), self.image());
        let x = &x[g * LANES * image..];
        // Unpadded, a plane is one run of pixels; padded, a row.
        let (runs, len) = self.runs();
        for c in 0..self.c {
            for r in 0..runs {
                let src = &x[(c * self.h) * self.w + r * len..];
                let at = self.pixel(c, r, 0) * LANES;
                gather(&mut dst[at..at + len * LANES], src, image, m);
            }
        }
    }

    /// The images of group `g` (of a batch of `n`) from `src` (one group) into the NCHW
    /// batch `x`, padding dropped: every value of those images is written.
    fn leave(&self, src: &[f32], n: usize, g: usize, x: &mut [MaybeUninit<f32>]) {
        let (m, image) = (in_group(n, g), self.image());
        let x = &mut x[g * LANES * image..];
        let (runs, len) = self.runs();
        for c in 0..self.c {
            for r in 0..runs {
                let dst = &mut x[(c * self.h) * self.w + r * len..];
                let at = self.pixel(c, r, 0) * LANES;
                scatter(dst, &src[at..at + len * LANES], image, m);
            }
        }
    }
}

/// `n` images of `p` from [`Planes::leave`], group by group: the batch, each value written
/// once and never zeroed first.
fn leave_all(
    n: usize,
    p: Planes,
    mut group: impl FnMut(usize, &mut [MaybeUninit<f32>]),
) -> Vec<f32> {
    let len = n * p.image();
    let mut out = Vec::with_capacity(len);
    for g in 0..groups(n) {
        group(g, &mut out.spare_capacity_mut()[..len]);
    }
    // SAFETY: the groups' `leave` wrote all `len` values (every image of the batch).
    unsafe { out.set_len(len) };
    out
}

/// `dst[p * LANES + l] = src[l * stride + p]` for `l < m` and every pixel `p` of `dst`: `m`
/// rows of `src`, `stride` apart, into pixels. Lanes from `m` on are set to 0.
fn gather(dst: &mut [MaybeUninit<f32>], src: &[f32], stride: usize, m: usize) {
    gather_strided(dst, LANES, dst.len() / LANES, src, stride, m)
}

/// `dst[c * dst_stride + r] = src[r * cols + c]`: the transpose of the `rows x cols`
/// row-major `src`, its rows as columns of `dst`, whose rows (`dst_stride >= round_up(rows)`
/// apart) are zero from `rows` to `round_up(rows)`. In 16 x 16 blocks (the linear layers'
/// weights: a plain loop stores each value to another cache line).
pub(crate) fn transpose(dst: &mut [f32], dst_stride: usize, src: &[f32], rows: usize, cols: usize) {
    for r0 in (0..rows).step_by(LANES) {
        let m = (rows - r0).min(LANES);
        let dst = as_uninit(&mut dst[r0..]);
        gather_strided(dst, dst_stride, cols, &src[r0 * cols..], cols, m);
    }
}

/// `dst[c * rows + r] = src[r * cols + c]`: the transpose of the `rows x cols` row-major
/// `src`, packed. Whole blocks of 16 rows as [`transpose`] does them, the rest value by value.
pub(crate) fn transpose_packed(dst: &mut [f32], src: &[f32], rows: usize, cols: usize) {
    assert!(
        dst.len() >= rows * cols && src.len() >= rows * cols,
        "transpose_packed: buffer too short"
    );
    let whole = rows / LANES * LANES;
    for r0 in (0..whole).step_by(LANES) {
        let dst = as_uninit(&mut dst[r0..]);
        gather_strided(dst, rows, cols, &src[r0 * cols..], cols, LANES);
    }
    for r in whole..rows {
        for (c, &v) in src[r * cols..][..cols].iter().enumerate() {
            dst[c * rows + r] = v;
        }
    }
}

/// One stride-1 convolution of a chain run by [`conv_forward`]: where it slides over its own
/// input, its weights (`out x C x k x k`) and bias, and the epilogue after it.
#[derive(Clone, Copy, Debug)]
pub struct ConvLayer<'a> {
    pub win: Window,
    pub w: &'a [f32],
    pub bias: &'a [f32],
    pub epi: Epilogue,
}

impl ConvLayer<'_> {
    fn conv(&self) -> Conv {
        Conv::new(&self.win, self.bias.len())
    }

    /// Its output planes, after the epilogue.
    fn out_planes(&self) -> Planes {
        let cv = self.conv();
        Planes {
            c: cv.co,
            h: self.epi.side(cv.oh),
            w: self.epi.side(cv.ow),
            pad: 0,
        }
    }

    /// Whether the backward pass reads its output: a ReLU without a pool gates the gradient.
    fn gates(&self) -> bool {
        self.epi.relu && !self.epi.max_pool2
    }
}

/// What [`conv_forward`] keeps for [`conv_backward`].
#[derive(Debug, Default)]
pub struct Saved {
    /// The first convolution's input, in the lane layout with its padding.
    x: Aligned,
    /// Every convolution's output in the lane layout: the next one's input, and the gate of
    /// a ReLU without a pool (empty for the last when that is not one).
    outs: Vec<Aligned>,
    /// Per convolution, with a pool: for every pooled value (lane layout), which of its
    /// window's four values it came from (row-major), or [`CUT`].
    routes: Vec<Vec<u8>>,
}

/// The sizes of one stride-1 convolution.
#[derive(Clone, Copy, Debug)]
struct Conv {
    input: Planes,
    k: usize,
    co: usize,
    oh: usize,
    ow: usize,
}

impl Conv {
    fn new(win: &Window, co: usize) -> Self {
        assert_eq!(win.stride, 1, "the lane kernels are for stride 1");
        let input = Planes {
            c: win.channels,
            h: win.height,
            w: win.width,
            pad: win.padding,
        };
        Conv {
            input,
            k: win.kernel,
            co,
            oh: win.out_h,
            ow: win.out_w,
        }
    }

    /// The convolution's output planes, with a margin of `k - 1` all round: the input
    /// gradient is the forward correlation of these with the flipped kernel.
    fn grad_planes(&self) -> Planes {
        // Non-square outputs keep their own sides; `pad` is the margin.
        Planes {
            c: self.co,
            h: self.oh,
            w: self.ow,
            pad: self.k - 1,
        }
    }
}

/// Checks that every layer of a chain takes what the one before gives, unpadded: each
/// convolution's output, in the lane layout, is then the next one's input as it is.
fn check_chain(layers: &[ConvLayer]) {
    assert!(!layers.is_empty(), "a chain of no convolution");
    for pair in layers.windows(2) {
        let (out, next) = (pair[0].out_planes(), pair[1].conv().input);
        assert!(
            (out.c, out.h, out.w, next.pad) == (next.c, next.h, next.w, 0),
            "a chained convolution takes the one before's output, unpadded"
        );
    }
}

/// Stride-1 convolutions one after another, each followed by its epilogue, on `batch`
/// images `x` (`N x C x H x W`, the first layer's input): returns the last layer's
/// `N x out x OH x OW` output and, when `for_backward`, what the backward pass needs (else
/// an empty [`Saved`]: evaluation keeps nothing). Each group of images goes through all
/// layers in the lane layout, entered once and left once.
///
/// # Panics
/// When a layer does not take the output of the one before it, unpadded (a bug in the
/// caller: the compiler chains only those).
pub fn conv_forward(
    x: &[f32],
    batch: usize,
    layers: &[ConvLayer],
    for_backward: bool,
) -> (Vec<f32>, Saved) {
    check_chain(layers);
    let last = layers.len() - 1;
    let xp = layers[0].conv().input;
    let n_groups = groups(batch);
    // What the backward pass reads is kept for every group; the rest is one group's, reused.
    let keep = |i: usize| for_backward && (i < last || layers[i].gates());
    let slot = |keep: bool, g: usize| if keep { g } else { 0 };
    // Kept for the backward pass, every group is entered up front, each value written once
    // (the padding as zeros); otherwise one group at a time, into zeros that stay as the
    // padding.
    let mut xl = if for_backward {
        let fill = |xl: &mut [MaybeUninit<f32>]| {
            for (g, dst) in xl.chunks_exact_mut(xp.group()).enumerate() {
                xp.zero_padding(dst);
                xp.enter(x, batch, g, dst);
            }
        };
        // SAFETY: `zero_padding` writes the padding of each group and `enter` the rest.
        unsafe { Aligned::written(n_groups * xp.group(), fill) }
    } else {
        Aligned::zeros(xp.group())
    };
    // Every layer's output, each value written by its epilogue before anything reads it.
    let mut outs: Vec<Fresh> = (0..layers.len())
        .map(|i| {
            let groups = if keep(i) { n_groups } else { 1 };
            Fresh::new(groups * layers[i].out_planes().group())
        })
        .collect();
    let mut routes: Vec<Vec<u8>> = layers
        .iter()
        .map(|l| {
            let pooled = for_backward && l.epi.max_pool2;
            vec![
                0;
                if pooled {
                    n_groups * l.out_planes().group()
                } else {
                    0
                }
            ]
        })
        .collect();
    let mut convs: Vec<Aligned> = layers
        .iter()
        .map(|l| {
            let cv = l.conv();
            Aligned::zeros(cv.co * cv.oh * cv.ow * LANES)
        })
        .collect();
    let offs: Vec<Vec<usize>> = layers
        .iter()
        .map(|l| l.conv().input.taps(l.win.kernel))
        .collect();
    let y = leave_all(batch, layers[last].out_planes(), |g, y| {
        if !for_backward {
            xp.enter(x, batch, g, as_uninit(&mut xl));
        }
        for (i, l) in layers.iter().enumerate() {
            let (cv, out_p) = (l.conv(), l.out_planes());
            let (done, rest) = outs.split_at_mut(i);
            let src = if i == 0 {
                &xl[slot(for_backward, g) * xp.group()..][..xp.group()]
            } else {
                let prev = layers[i - 1].out_planes().group();
                // SAFETY: the layer before wrote this group's output just above.
                unsafe { done[i - 1].part(slot(keep(i - 1), g) * prev, prev) }
            };
            let conv = &mut convs[i];
            let wp = cv.input.wp();
            for y in 0..cv.oh {
                let row = &mut conv[y * cv.ow * LANES..];
                let (len, stride) = (cv.ow * LANES, cv.oh * cv.ow * LANES);
                correlate(row, stride, len, &src[y * wp * LANES..], &offs[i], l.w);
            }
            let dst = rest[0].part_mut(slot(keep(i), g) * out_p.group(), out_p.group());
            let rt = if routes[i].is_empty() {
                &mut [][..]
            } else {
                &mut routes[i][g * out_p.group()..][..out_p.group()]
            };
            epilogue(l.epi, conv, (cv.co, cv.oh, cv.ow), l.bias, dst, rt);
        }
        let out_p = layers[last].out_planes();
        // SAFETY: the last layer wrote this group's output just above.
        let dst = unsafe { outs[last].part(slot(keep(last), g) * out_p.group(), out_p.group()) };
        out_p.leave(dst, batch, g, y);
    });
    if !for_backward {
        return (y, Saved::default());
    }
    let outs = outs
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            if keep(i) {
                // SAFETY: a kept output holds every group, and the loop above wrote every
                // group.
                unsafe { o.into_aligned() }
            } else {
                Aligned::default()
            }
        })
        .collect();
    (
        y,
        Saved {
            x: xl,
            outs,
            routes,
        },
    )
}

/// One layer's `(weight grad, bias grad)`.
pub type LayerGrads = (Vec<f32>, Vec<f32>);

/// Gradients of [`conv_forward`] given what it saved and the last layer's output gradient
/// `gy`: every layer's `(weight grad, bias grad)`, and the input gradient if asked. Each
/// group of images goes back through all layers in the lane layout.
pub fn conv_backward(
    saved: &Saved,
    gy: &[f32],
    batch: usize,
    layers: &[ConvLayer],
    input_grad: bool,
) -> (Vec<LayerGrads>, Option<Vec<f32>>) {
    check_chain(layers);
    let last = layers.len() - 1;
    let convs: Vec<Conv> = layers.iter().map(ConvLayer::conv).collect();
    let out_last = layers[last].out_planes();
    let mut gyl = Aligned::zeros(out_last.group());
    // Per layer, one group's convolution-output gradient; its margins are never written, so
    // they stay zero.
    let mut gcs: Vec<Aligned> = convs
        .iter()
        .map(|cv| Aligned::zeros(cv.grad_planes().group()))
        .collect();
    let mut gbs: Vec<Vec<f32>> = convs.iter().map(|cv| vec![0.0; cv.co * LANES]).collect();
    let mut accs: Vec<Vec<f32>> = layers
        .iter()
        .map(|l| vec![0.0; l.w.len() * LANES])
        .collect();
    let offs: Vec<Vec<usize>> = convs.iter().map(|cv| cv.input.taps(cv.k)).collect();
    // The input gradient of every layer but the first (the gradient of the layer before's
    // output), and of the first if asked.
    let wants = |i: usize| i > 0 || input_grad;
    let rows_g: Vec<Option<InputGradTaps>> = (0..layers.len())
        .map(|i| wants(i).then(|| InputGradTaps::new(&convs[i], layers[i].w)))
        .collect();
    let mut gxls: Vec<Aligned> = convs
        .iter()
        .enumerate()
        .map(|(i, cv)| Aligned::zeros(if wants(i) { cv.input.group() } else { 0 }))
        .collect();
    let xp = convs[0].input;

    // Group `g`'s weight and bias gradients, and its input gradient into `gx` if given.
    let mut group = |g: usize, gx: Option<&mut [MaybeUninit<f32>]>| {
        out_last.enter(gy, batch, g, as_uninit(&mut gyl));
        for i in (0..layers.len()).rev() {
            let (l, cv) = (&layers[i], &convs[i]);
            let out_p = l.out_planes();
            let (before, from) = gxls.split_at_mut(i + 1);
            let g_out = if i == last { &gyl[..] } else { &from[0][..] };
            let at = g * out_p.group();
            let how = if l.epi.max_pool2 {
                Spread::Route(&saved.routes[i][at..][..out_p.group()])
            } else if l.epi.relu {
                Spread::Relu(&saved.outs[i][at..][..out_p.group()])
            } else {
                Spread::Plain
            };
            let gp = cv.grad_planes();
            let (gwp, margin) = (gp.wp(), (gp.pad * gp.wp() + gp.pad) * LANES);
            let gc = &mut gcs[i];
            spread(
                g_out,
                how,
                (cv.co, cv.oh, cv.ow),
                gp.grid(),
                gc,
                &mut gbs[i],
            );
            let (xp_i, x_wp) = (cv.input, cv.input.wp());
            let x = if i == 0 { &saved.x } else { &saved.outs[i - 1] };
            let input = GradInput {
                g: &gc[margin..],
                g_stride: gp.area() * LANES,
                g_image: gwp * LANES,
                src: &x[g * xp_i.group()..],
                src_image: x_wp * LANES,
                images: cv.oh,
                len: cv.ow * LANES,
            };
            correlate_grad(&mut accs[i], input, &offs[i]);
            if let Some(rows_g) = &rows_g[i] {
                let gxl = &mut before[i];
                for y in 0..xp_i.hp() {
                    let (off_g, w_g) = rows_g.row(y);
                    let row = &mut gxl[y * x_wp * LANES..];
                    let src = &gc[y * gwp * LANES..];
                    correlate(row, xp_i.area() * LANES, x_wp * LANES, src, off_g, w_g);
                }
            }
        }
        if let Some(gx) = gx {
            xp.leave(&gxls[0], batch, g, gx);
        }
    };
    let gx = if input_grad {
        Some(leave_all(batch, xp, |g, gx| group(g, Some(gx))))
    } else {
        (0..groups(batch)).for_each(|g| group(g, None));
        None
    };
    let grads = accs
        .iter()
        .zip(&gbs)
        .map(|(acc, gb)| {
            let gb = gb.chunks_exact(LANES).map(|l| l.iter().sum()).collect();
            (reduce_lanes(acc), gb)
        })
        .collect();
    (grads, gx)
}

/// The taps and weights of the input gradient, for the rows of the padded input: the forward
/// correlation of the output gradient (with its margins) with the kernel flipped and its
/// channel axes swapped, over only the kernel rows that reach a row of the gradient inside
/// its margins (the others would add products with zeros: a third of the work for 5x5
/// kernels on 12x12 images).
struct InputGradTaps {
    /// Per distinct span of kernel rows: tap offsets, ordered `(output channel, kernel row,
    /// kernel column)`, and weights `(input channel, tap)`.
    sets: Vec<(Vec<usize>, Vec<f32>)>,
    /// Which set each padded input row takes.
    row_set: Vec<usize>,
}

impl InputGradTaps {
    fn new(cv: &Conv, w: &[f32]) -> Self {
        let (c, co, k, oh) = (cv.input.c, cv.co, cv.k, cv.oh);
        let gp = cv.grad_planes();
        let (area, gwp, m, taps) = (gp.area(), gp.wp(), k - 1, k * k);
        // The flipped kernel, `(input channel, output channel, kernel row, kernel column)`.
        let mut flip = Vec::with_capacity(w.len());
        for ci in 0..c {
            for o in 0..co {
                let kernel = &w[(o * c + ci) * taps..][..taps];
                flip.extend(kernel.iter().rev());
            }
        }
        let (mut sets, mut spans, mut row_set) = (Vec::new(), Vec::new(), Vec::new());
        for y in 0..cv.input.hp() {
            // Gradient row y + ky - m must be one of the oh real rows: ky in lo..hi.
            let (lo, hi) = (m.saturating_sub(y), (m + oh).saturating_sub(y).min(k));
            if let Some(i) = spans.iter().position(|&s| s == (lo, hi)) {
                row_set.push(i);
                continue;
            }
            let mut off = Vec::with_capacity(co * (hi - lo) * k);
            for o in 0..co {
                for ky in lo..hi {
                    off.extend((0..k).map(|kx| (o * area + ky * gwp + kx) * LANES));
                }
            }
            let mut w_g = Vec::with_capacity(c * off.len());
            for kernel in flip.chunks_exact(taps) {
                w_g.extend_from_slice(&kernel[lo * k..hi * k]);
            }
            row_set.push(sets.len());
            spans.push((lo, hi));
            sets.push((off, w_g));
        }
        InputGradTaps { sets, row_set }
    }

    /// Row `y`'s taps and weights.
    fn row(&self, y: usize) -> (&[usize], &[f32]) {
        let (off, w) = &self.sets[self.row_set[y]];
        (off, w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transposes into and out of the lane layout (AVX-512 where the CPU has it) against
    /// their definitions: partial groups, runs shorter and longer than 16 pixels, and nothing
    /// written outside the rows.
    #[test]
    fn transposes_match_their_definitions() {
        for m in [1, 7, 16] {
            for len in [1, 5, 16, 17, 40] {
                let stride = len + 3;
                let src: Vec<f32> = (0..m * stride).map(|i| i as f32 + 0.5).collect();
                let mut px = vec![f32::NAN; len * LANES];
                gather(as_uninit(&mut px), &src, stride, m);
                for p in 0..len {
                    for l in 0..LANES {
                        let want = if l < m { src[l * stride + p] } else { 0.0 };
                        assert_eq!(
                            px[p * LANES + l],
                            want,
                            "gather m {m} len {len} at {p}, {l}"
                        );
                    }
                }
                // As a matrix transpose: `m` rows of `len` into columns, padded to 16.
                let mut t = vec![f32::NAN; len * LANES];
                transpose(&mut t, LANES, &src[..m * len], m, len);
                for (i, v) in t.iter().enumerate() {
                    let (c, r) = (i / LANES, i % LANES);
                    let want = if r < m { src[r * len + c] } else { 0.0 };
                    assert_eq!(*v, want, "transpose m {m} len {len} at {c}, {r}");
                }
                let mut back = vec![MaybeUninit::new(-1.0); m * stride];
                scatter(&mut back, &px, stride, m);
                for (i, v) in back.iter().enumerate() {
                    // SAFETY: every value was initialized above.
                    let v = unsafe { v.assume_init() };
                    let want = if i % stride < len { src[i] } else { -1.0 };
                    assert_eq!(v, want, "scatter m {m} len {len} at {i}");
                }
            }
        }
        // Packed: whole blocks of 16 rows and a rest, every value written.
        for rows in [1, 15, 16, 35, 100] {
            for cols in [1, 5, 16, 21] {
                let src: Vec<f32> = (0..rows * cols).map(|i| i as f32 + 0.5).collect();
                let mut t = vec![f32::NAN; rows * cols];
                transpose_packed(&mut t, &src, rows, cols);
                for (i, v) in t.iter().enumerate() {
                    let (c, r) = (i / rows, i % rows);
                    let want = src[r * cols + c];
                    assert_eq!(*v, want, "transpose_packed {rows}x{cols} at {c}, {r}");
                }
            }
        }
    }
}
