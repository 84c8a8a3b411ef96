//! Stride-1 convolution on the image-per-lane layout.
//!
//! A batch is cut into groups of [`LANES`] images, and each group is stored `C x H x W x
//! LANES`: one pixel of the 16 images side by side (missing images of the last group are
//! zeros). A stride-1 convolution is then, output row by output row, the 1-D correlation of
//! [`correlate`](crate::kernels::correlate) with tap offsets in whole pixels: every vector
//! the kernels load is one pixel of 16 images, aligned to a cache line, and every position
//! they compute is an output (no padding columns, no rounding of an image to whole
//! vectors). The weight gradient is [`correlate_grad`](crate::kernels::correlate_grad) with
//! output rows as its "images", the input gradient the forward correlation of the output
//! gradient with the kernel flipped. The layout is entered and left by one transposing pass
//! each way, once for a whole chain of convolutions: each one's output, in this layout, is
//! the next one's input (copied into padding when the next is padded).
//!
//! A batch norm after a convolution runs inside the chain ([`LaneNorm`]). With the batch's
//! statistics, the chain is cut after each such layer (`segments`): a segment runs group by
//! group up to that layer's convolution, the statistics are summed over every group
//! (`norm.rs`), and then the layer's epilogue normalizes. The backward pass mirrors it. A
//! segment of one such layer runs each pass over every group at once, its `(group,
//! channel)` pairs split over the threads ([`par::runs`]); evaluation, which keeps nothing,
//! splits its groups. Buffers come from a per-thread pool (`spare.rs`) and are written
//! without zeroing where every value is written (`Fresh`).

mod layout;
mod norm;
mod spare;

pub(crate) use layout::{transpose, transpose_packed};

use std::mem::MaybeUninit;
use std::ops::Range;

use super::im2col::Window;
use crate::kernels::{
    Epilogue, GradInput, LANES, Norm, Spread, correlate_grad_piece, correlate_uninit, epilogue,
    reduce_lanes, spread,
};
use crate::par;
use layout::{Aligned, Fresh, Planes, groups, in_group, leave_all, leave_split};

/// Batch normalization after a convolution of a chain, before its epilogue's ReLU and pool.
#[derive(Clone, Copy, Debug)]
pub enum LaneNorm<'a> {
    /// Training: the batch's own statistics over every image and position (so the chain runs
    /// this layer for every group before normalizing any).
    Batch {
        gamma: &'a [f32],
        beta: &'a [f32],
        eps: f32,
    },
    /// Evaluation: fixed statistics (the running ones).
    Fixed(Norm<'a>),
}

/// One stride-1 convolution of a chain run by [`conv_forward`]: where it slides over its own
/// input (padded or not), its weights (`out x C x k x k`) and bias, an optional batch norm,
/// and the epilogue after it.
#[derive(Clone, Copy, Debug)]
pub struct ConvLayer<'a> {
    pub win: Window,
    pub w: &'a [f32],
    pub bias: &'a [f32],
    pub norm: Option<LaneNorm<'a>>,
    pub epi: Epilogue,
}

impl ConvLayer<'_> {
    fn conv(&self) -> Conv {
        Conv::new(&self.win, self.bias.len())
    }

    /// Its output planes, after the epilogue (never padded: a padded layer after it gets a
    /// padded copy).
    fn out_planes(&self) -> Planes {
        let cv = self.conv();
        Planes {
            c: cv.co,
            h: self.epi.side(cv.oh),
            w: self.epi.side(cv.ow),
            pad: 0,
        }
    }

    /// Whether it normalizes with the batch's statistics.
    fn batch_norm(&self) -> bool {
        matches!(self.norm, Some(LaneNorm::Batch { .. }))
    }
}

/// The statistics a batch-normalized layer computed: per channel, the batch's mean and
/// (biased) variance, and the `1 / sqrt(var + eps)` it normalized with.
#[derive(Clone, Debug, Default)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub inv_std: Vec<f32>,
    /// Values per channel (images times positions).
    pub count: usize,
}

/// What [`conv_forward`] keeps for [`conv_backward`], and the batch statistics it used.
#[derive(Debug, Default)]
pub struct Saved {
    /// Per convolution, its input in the lane layout with its padding when it is the first or
    /// padded (empty otherwise: the output of the one before is its input).
    ins: Vec<Aligned>,
    /// Every convolution's output in the lane layout: the next one's input, and the gate of
    /// a ReLU without a pool.
    outs: Vec<Aligned>,
    /// Per convolution, with a pool: for every pooled value (lane layout), which of its
    /// window's four values it came from (row-major), or [`CUT`](crate::kernels).
    routes: Vec<Vec<u8>>,
    /// Per convolution with a batch norm: its output before bias and norm.
    raws: Vec<Aligned>,
    /// Per convolution with a batch norm using the batch's statistics: those statistics.
    pub stats: Vec<Option<BatchStats>>,
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

    /// Pixels of one group's full-size output.
    fn out_len(&self) -> usize {
        self.co * self.oh * self.ow * LANES
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

/// Checks that every layer of a chain takes what the one before gives.
fn check_chain(layers: &[ConvLayer]) {
    assert!(!layers.is_empty(), "a chain of no convolution");
    for pair in layers.windows(2) {
        let (out, next) = (pair[0].out_planes(), pair[1].conv().input);
        assert!(
            (out.c, out.h, out.w) == (next.c, next.h, next.w),
            "a chained convolution takes the one before's output"
        );
    }
}

/// The runs of a chain that the forward pass takes group by group: each ends at a layer
/// normalized with batch statistics (which needs every group's output first) or at the last.
fn segments(layers: &[ConvLayer]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, l) in layers.iter().enumerate() {
        if l.batch_norm() || i + 1 == layers.len() {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    out
}

/// How many groups segment `seg` runs each pass over at once. A lone batch-normalized layer
/// takes every group: one split of the threads a pass rather than one a group. A longer
/// segment goes group by group, so that a group's outputs stay in cache from one layer to
/// the next.
fn block(seg: &Range<usize>, layers: &[ConvLayer], groups: usize) -> usize {
    if seg.len() == 1 && layers[seg.start].batch_norm() {
        groups
    } else {
        1
    }
}

/// Buffers of `n` groups or of one, and which part group `g` uses.
#[derive(Clone, Copy, Debug)]
struct Span {
    all: bool,
    groups: usize,
}

impl Span {
    fn len(&self) -> usize {
        if self.all { self.groups } else { 1 }
    }
    fn slot(&self, g: usize) -> usize {
        if self.all { g } else { 0 }
    }
    /// Whether groups `gs` each have a slot of their own.
    fn holds(&self, gs: &Range<usize>) -> bool {
        self.all || gs.len() <= 1
    }
    /// The slots groups `gs` reach: one past the last one's.
    fn end(&self, gs: &Range<usize>) -> usize {
        self.slot(gs.end.max(1) - 1) + 1
    }
}

/// Groups `0..n` in runs of `size` (the last may be shorter).
fn blocks(n: usize, size: usize) -> impl Iterator<Item = Range<usize>> {
    (0..n)
        .step_by(size.max(1))
        .map(move |s| s..(s + size).min(n))
}

/// The forward pass's buffers, filled layer by layer and group by group.
struct Forward<'a, 'l> {
    layers: &'a [ConvLayer<'l>],
    x: &'a [f32],
    batch: usize,
    groups: usize,
    /// Whether every buffer holds every group (training, or a batch norm).
    all: bool,
    offs: Vec<Vec<usize>>,
    ins: Vec<Fresh>,
    raws: Vec<Fresh>,
    outs: Vec<Fresh>,
    routes: Vec<Vec<u8>>,
    stats: Vec<Option<BatchStats>>,
}

impl<'a, 'l> Forward<'a, 'l> {
    fn new(x: &'a [f32], batch: usize, layers: &'a [ConvLayer<'l>], all: bool) -> Self {
        let groups = groups(batch);
        let span = Span { all, groups };
        let ins = layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let input = l.conv().input;
                let len = if i == 0 || input.pad > 0 {
                    span.len() * input.group()
                } else {
                    0
                };
                Fresh::new(len)
            })
            .collect();
        let raws = layers
            .iter()
            .map(|l| {
                let n = if l.batch_norm() || (all && l.norm.is_some()) {
                    groups
                } else {
                    1
                };
                Fresh::new(n * l.conv().out_len())
            })
            .collect();
        let outs = layers
            .iter()
            .map(|l| Fresh::new(span.len() * l.out_planes().group()))
            .collect();
        let routes = layers
            .iter()
            .map(|l| {
                let pooled = all && l.epi.max_pool2;
                vec![
                    0;
                    if pooled {
                        groups * l.out_planes().group()
                    } else {
                        0
                    }
                ]
            })
            .collect();
        Forward {
            layers,
            x,
            batch,
            groups,
            all,
            offs: layers
                .iter()
                .map(|l| l.conv().input.taps(l.win.kernel))
                .collect(),
            ins,
            raws,
            outs,
            routes,
            stats: vec![None; layers.len()],
        }
    }

    fn span(&self) -> Span {
        Span {
            all: self.all,
            groups: self.groups,
        }
    }

    /// Where layer `i`'s raw output keeps each group.
    fn raw_span(&self, i: usize) -> Span {
        let l = &self.layers[i];
        Span {
            all: l.batch_norm() || (self.all && l.norm.is_some()),
            groups: self.groups,
        }
    }

    /// Where layer `i`'s buffers keep each group (`(span, raw_span)`), checked to give each
    /// of groups `gs` a slot of its own.
    fn spans(&self, i: usize, gs: &Range<usize>) -> (Span, Span) {
        let (span, raw_span) = (self.span(), self.raw_span(i));
        assert!(raw_span.holds(gs) && span.holds(gs), "groups share a slot");
        (span, raw_span)
    }

    /// Group `g` of the input into the first layer's input planes.
    fn enter(&mut self, g: usize) {
        let (xp, slot) = (self.layers[0].conv().input, self.span().slot(g));
        let dst = self.ins[0].part_mut(slot * xp.group(), xp.group());
        xp.zero_padding(dst);
        xp.enter(self.x, self.batch, g, dst);
    }

    /// Layer `i`'s convolution of groups `gs`, then its epilogue unless it waits for the
    /// batch's statistics. Its `(group, channel)` pairs split over the threads once for all
    /// of `gs`, each piece every row of its channels: pieces large enough to be worth handing
    /// over.
    fn conv(&mut self, i: usize, gs: Range<usize>) {
        let (l, cv) = (&self.layers[i], self.layers[i].conv());
        let (span, raw_span) = self.spans(i, &gs);
        let (src, src_group) = if i == 0 || cv.input.pad > 0 {
            (&self.ins[i], cv.input.group())
        } else {
            (&self.outs[i - 1], self.layers[i - 1].out_planes().group())
        };
        let (wp, off, out_len) = (cv.input.wp(), &self.offs[i], cv.out_len());
        let (len, stride) = (cv.ow * LANES, cv.oh * cv.ow * LANES);
        let raw = self.raws[i].disjoint();
        assert!(
            raw_span.end(&gs) * out_len <= raw.len(),
            "conv: raw output too short"
        );
        let items = gs.len() * cv.co;
        let pieces = par::pieces(items, gs.len() * l.w.len() * stride);
        par::split((), (0, items), pieces, &|first, count, ()| {
            for (g, ch, _) in par::runs(first, count, cv.co) {
                let g = gs.start + g;
                let w = &l.w[ch.start * off.len()..][..ch.len() * off.len()];
                // SAFETY: `enter` or the layer before's `finish` wrote this group's input.
                let src = unsafe { src.part(span.slot(g) * src_group, src_group) };
                let at = raw_span.slot(g) * out_len + ch.start * stride;
                // SAFETY: within the buffer (checked above), and these channels of this
                // group are this piece's alone.
                let raw = unsafe { raw.slice(at, ch.len() * stride) };
                for y in 0..cv.oh {
                    correlate_uninit(
                        &mut raw[y * len..],
                        stride,
                        len,
                        &src[y * wp * LANES..],
                        off,
                        w,
                    );
                }
            }
        });
        if !l.batch_norm() {
            self.finish(i, gs);
        }
    }

    /// Layer `i`'s epilogue on groups `gs`, and the padded copy of its output that the next
    /// layer reads, if that one is padded: its `(group, channel)` pairs split over the
    /// threads once for all of `gs`.
    fn finish(&mut self, i: usize, gs: Range<usize>) {
        let (l, cv) = (&self.layers[i], self.layers[i].conv());
        let (span, raw_span) = self.spans(i, &gs);
        let norm = match (&l.norm, &self.stats[i]) {
            (Some(LaneNorm::Batch { gamma, beta, .. }), Some(st)) => Some(Norm {
                mean: &st.mean,
                inv_std: &st.inv_std,
                gamma,
                beta,
            }),
            (Some(LaneNorm::Fixed(n)), _) => Some(*n),
            _ => None,
        };
        let (out_p, out_len) = (l.out_planes(), cv.out_len());
        let first_raw = raw_span.slot(gs.start) * out_len;
        // SAFETY: `conv` wrote these groups' raw output (every row of every channel).
        let raw = unsafe { self.raws[i].part(first_raw, raw_span.end(&gs) * out_len - first_raw) };
        let next = self.layers.get(i + 1).map(|n| n.conv().input);
        let job = Finish {
            layer: l,
            norm,
            raw,
            raw_at: |g| raw_span.slot(g) * out_len - first_raw,
            span,
            outs: self.outs[i].disjoint(),
            routes: par::Disjoint::new(&mut self.routes[i]),
            padded: next
                .filter(|n| n.pad > 0)
                .map(|n| (n, self.ins[i + 1].disjoint())),
        };
        let end = span.end(&gs);
        let fits = |p: Planes, d: usize| end * p.group() <= d;
        assert!(fits(out_p, job.outs.len()), "finish: output too short");
        assert!(job.routes.is_empty() || gs.end * out_p.group() <= job.routes.len());
        assert!(
            job.padded
                .as_ref()
                .is_none_or(|(n, ins)| fits(*n, ins.len()))
        );
        let items = gs.len() * cv.co;
        let pieces = par::pieces(items, gs.len() * out_len * par::PER_VALUE);
        par::split((), (0, items), pieces, &|first, count, ()| {
            for (g, ch, _) in par::runs(first, count, cv.co) {
                job.channels(gs.start + g, ch);
            }
        });
    }

    /// Layer `i`'s batch statistics over every group of its raw output.
    fn batch_stats(&mut self, i: usize) {
        let l = &self.layers[i];
        let Some(LaneNorm::Batch { eps, .. }) = l.norm else {
            return;
        };
        let cv = l.conv();
        let dims = (cv.co, cv.oh, cv.ow);
        // SAFETY: `conv` wrote every group's raw output before the statistics are taken.
        let raw = unsafe { self.raws[i].part(0, self.groups * cv.out_len()) };
        self.stats[i] = Some(norm::batch_stats(raw, dims, l.bias, self.batch, eps));
    }

    /// The last layer's output of group `g` into its images `y` of the NCHW output.
    fn leave(&self, g: usize, y: &mut [MaybeUninit<f32>]) {
        let last = self.layers.len() - 1;
        let out_p = self.layers[last].out_planes();
        // SAFETY: the last layer's `finish` wrote this group's output.
        let src =
            unsafe { self.outs[last].part(self.span().slot(g) * out_p.group(), out_p.group()) };
        out_p.leave(src, in_group(self.batch, g), y);
    }
}

/// What the pieces of [`Forward::finish`] share: the buffers they write through
/// [`par::Disjoint`], each piece its own channels of each group.
struct Finish<'a, 'b, F> {
    layer: &'a ConvLayer<'a>,
    norm: Option<Norm<'a>>,
    /// The raw output of the groups being finished, and where group `g`'s begins in it.
    raw: &'a [f32],
    raw_at: F,
    span: Span,
    outs: par::Disjoint<'b, MaybeUninit<f32>>,
    routes: par::Disjoint<'b, u8>,
    /// The next layer's padded input planes and buffer, if it is padded.
    padded: Option<(Planes, par::Disjoint<'b, MaybeUninit<f32>>)>,
}

impl<F: Fn(usize) -> usize> Finish<'_, '_, F> {
    /// The epilogue of `ch` of group `g`, and their padded copy.
    fn channels(&self, g: usize, ch: Range<usize>) {
        let (l, cv) = (self.layer, self.layer.conv());
        let out_p = l.out_planes();
        let (src_px, dst_px, count) = (cv.oh * cv.ow * LANES, out_p.area() * LANES, ch.len());
        let src = &self.raw[(self.raw_at)(g) + ch.start * src_px..][..count * src_px];
        let at = self.span.slot(g) * out_p.group() + ch.start * dst_px;
        // SAFETY: within the buffer (checked by `finish`), and these channels of this group
        // are this piece's alone; the same for the two below.
        let dst = unsafe { self.outs.slice(at, count * dst_px) };
        let route = match self.routes.is_empty() {
            true => &mut [][..],
            // SAFETY: as above.
            false => unsafe {
                self.routes
                    .slice(g * out_p.group() + ch.start * dst_px, count * dst_px)
            },
        };
        let norm = self.norm.map(|n| n.channels(ch.clone()));
        let dims = (count, cv.oh, cv.ow);
        epilogue(l.epi, src, dims, &l.bias[ch.clone()], norm, dst, route);
        if let Some((next, ins)) = &self.padded {
            let (part, plane) = (Planes { c: count, ..*next }, next.area() * LANES);
            let at = self.span.slot(g) * next.group() + ch.start * plane;
            // SAFETY: as above.
            let dst_next = unsafe { ins.slice(at, count * plane) };
            part.zero_padding(dst_next);
            // SAFETY: the epilogue just wrote every value of `dst`.
            part.pad_from(unsafe { dst.assume_init_ref() }, dst_next);
        }
    }
}

/// Stride-1 convolutions one after another, each followed by its batch norm and epilogue,
/// on `batch` images `x` (`N x C x H x W`, the first layer's input): returns the last
/// layer's `N x out x OH x OW` output and what the backward pass needs when
/// `for_backward` (else only the batch statistics). Without batch statistics to wait for,
/// each group of images goes through all layers in the lane layout, entered once and left
/// once, in buffers of one group (evaluation keeps nothing); with them, each layer that
/// needs them runs for every group before its epilogue.
///
/// # Panics
/// When a layer does not take the output of the one before it (a bug in the caller).
pub fn conv_forward(
    x: &[f32],
    batch: usize,
    layers: &[ConvLayer],
    for_backward: bool,
) -> (Vec<f32>, Saved) {
    check_chain(layers);
    if !for_backward && !layers.iter().any(ConvLayer::batch_norm) {
        let y = forward_kept_nothing(x, batch, layers);
        let stats = vec![None; layers.len()];
        return (
            y,
            Saved {
                stats,
                ..Saved::default()
            },
        );
    }
    let mut f = Forward::new(x, batch, layers, true);
    for seg in segments(layers) {
        let end = seg.end - 1;
        for gs in blocks(f.groups, block(&seg, layers, f.groups)) {
            if seg.start == 0 {
                gs.clone().for_each(|g| f.enter(g));
            }
            seg.clone().for_each(|i| f.conv(i, gs.clone()));
        }
        if layers[end].batch_norm() {
            f.batch_stats(end);
            f.finish(end, 0..f.groups);
        }
    }
    let y = leave_all(batch, layers[layers.len() - 1].out_planes(), |g, y| {
        f.leave(g, y)
    });
    let stats = std::mem::take(&mut f.stats);
    if !for_backward {
        return (
            y,
            Saved {
                stats,
                ..Saved::default()
            },
        );
    }
    // SAFETY: with `all`, every group of every buffer was written: inputs by `enter` and
    // `finish`, outputs by `finish`.
    let seal = |v: Vec<Fresh>| v.into_iter().map(|b| unsafe { b.into_aligned() }).collect();
    (
        y,
        Saved {
            ins: seal(f.ins),
            outs: seal(f.outs),
            routes: f.routes,
            raws: f
                .raws
                .into_iter()
                .zip(layers)
                .map(|(r, l)| match l.norm {
                    // SAFETY: a norm's raw output holds every group, and `conv` wrote them all.
                    Some(_) => unsafe { r.into_aligned() },
                    None => Aligned::default(),
                })
                .collect(),
            stats,
        },
    )
}

/// [`conv_forward`] keeping nothing (no batch statistics, no backward pass): each group of
/// images goes through every layer in buffers of one group, entered once and left once.
/// Groups are independent here, so they split over the threads, each piece with buffers of
/// its own: one split for the whole pass.
fn forward_kept_nothing(x: &[f32], batch: usize, layers: &[ConvLayer]) -> Vec<f32> {
    let n_groups = groups(batch);
    let work: usize = layers
        .iter()
        .map(|l| {
            let cv = l.conv();
            l.w.len() * cv.oh * cv.ow * LANES
        })
        .sum();
    let pieces = par::pieces(n_groups, n_groups * work);
    let last_p = layers[layers.len() - 1].out_planes();
    leave_split(batch, last_p, pieces, |first, count, y| {
        let mut f = Forward::new(x, batch, layers, false);
        let per_group = LANES * last_p.image();
        for (g, y) in (first..first + count).zip(y.chunks_mut(per_group)) {
            f.enter(g);
            (0..layers.len()).for_each(|i| f.conv(i, g..g + 1));
            f.leave(g, y);
        }
    })
}

/// Where a layer's output gradient comes from in the backward pass.
#[derive(Clone, Copy)]
enum GradOut<'a> {
    /// The last layer's: the chain's output gradient (NCHW, a batch of `.1`), entered into
    /// the lane layout.
    Gy(&'a [f32], usize),
    /// The next layer's input gradient, its groups where the span puts them.
    Next(&'a Fresh, Span),
}

impl GradOut<'_> {
    fn holds(&self, gs: &Range<usize>) -> bool {
        match self {
            GradOut::Gy(..) => true,
            GradOut::Next(_, span) => span.holds(gs),
        }
    }

    /// The gradient of `channels` of group `g` of output planes `p`, entered into `buf` (made
    /// when first needed, and again when too short) if it must be.
    fn channels<'b>(
        &'b self,
        p: Planes,
        g: usize,
        channels: Range<usize>,
        buf: &'b mut Option<Fresh>,
    ) -> &'b [f32] {
        let len = channels.len() * p.area() * LANES;
        match *self {
            GradOut::Gy(gy, batch) => {
                if buf.as_ref().is_none_or(|b| b.len() < len) {
                    *buf = Some(Fresh::new(len));
                }
                let buf = buf.as_mut().expect("made just above");
                p.enter_channels(gy, batch, g, channels, buf.part_mut(0, len));
                // SAFETY: without padding, `enter` writes every value.
                unsafe { buf.part(0, len) }
            }
            GradOut::Next(gx, span) => {
                let at = span.slot(g) * p.group() + channels.start * p.area() * LANES;
                // SAFETY: the next layer's `grads` wrote this group's input gradient.
                unsafe { gx.part(at, len) }
            }
        }
    }
}

/// One layer's `(weight grad, bias grad)`, and its norm's `(gamma grad, beta grad)`.
pub type LayerGrads = (Vec<f32>, Vec<f32>, Option<(Vec<f32>, Vec<f32>)>);

/// The backward pass's buffers.
struct Backward<'a, 'l> {
    saved: &'a Saved,
    layers: &'a [ConvLayer<'l>],
    gy: &'a [f32],
    batch: usize,
    groups: usize,
    convs: Vec<Conv>,
    offs: Vec<Vec<usize>>,
    /// Per layer, whether its passes run over every group at once ([`block`]).
    blocked: Vec<bool>,
    /// Per layer, its convolution-output gradient (margins never written, so zero): every
    /// group's for a layer with a norm, else one group's.
    gcs: Vec<Fresh>,
    /// Per layer, its input gradient, unpadded (the layer before's output gradient): every
    /// group's when the layer before has a batch norm or the layer's passes take every
    /// group, else one group's.
    gxs: Vec<Fresh>,
    rows_g: Vec<Option<InputGradTaps>>,
    gbs: Vec<Vec<f32>>,
    accs: Vec<Vec<f32>>,
    norm_grads: Vec<Option<(Vec<f32>, Vec<f32>)>>,
    /// Per layer and slot of `gcs`, whether what `spread` leaves is zeroed yet.
    gc_zeroed: Vec<Vec<bool>>,
}

impl<'a, 'l> Backward<'a, 'l> {
    /// The buffers and accumulators of a backward pass through `layers`.
    fn new(
        saved: &'a Saved,
        gy: &'a [f32],
        batch: usize,
        layers: &'a [ConvLayer<'l>],
        input_grad: bool,
    ) -> Self {
        let convs: Vec<Conv> = layers.iter().map(ConvLayer::conv).collect();
        let n_groups = groups(batch);
        let wants = |i: usize| i > 0 || input_grad;
        let mut blocked = vec![false; layers.len()];
        for seg in segments(layers) {
            let all = block(&seg, layers, n_groups) > 1;
            blocked[seg].fill(all);
        }
        Backward {
            saved,
            layers,
            gy,
            batch,
            groups: n_groups,
            offs: convs.iter().map(|cv| cv.input.taps(cv.k)).collect(),
            gcs: layers
                .iter()
                .zip(&convs)
                .map(|(l, cv)| {
                    let n = if l.norm.is_some() { n_groups } else { 1 };
                    Fresh::new(n * cv.grad_planes().group())
                })
                .collect(),
            gxs: convs
                .iter()
                .enumerate()
                .map(|(i, cv)| {
                    let all = (i > 0 && layers[i - 1].batch_norm()) || blocked[i];
                    let n = if all { n_groups } else { 1 };
                    let compact = cv.input.c * cv.input.h * cv.input.w * LANES;
                    Fresh::new(if wants(i) { n * compact } else { 0 })
                })
                .collect(),
            rows_g: (0..layers.len())
                .map(|i| wants(i).then(|| InputGradTaps::new(&convs[i], layers[i].w)))
                .collect(),
            gbs: convs.iter().map(|cv| vec![0.0; cv.co * LANES]).collect(),
            accs: layers
                .iter()
                .map(|l| vec![0.0; l.w.len() * LANES])
                .collect(),
            norm_grads: vec![None; layers.len()],
            gc_zeroed: layers
                .iter()
                .map(|l| vec![false; if l.norm.is_some() { n_groups } else { 1 }])
                .collect(),
            blocked,
            convs,
        }
    }

    fn gc_span(&self, i: usize) -> Span {
        Span {
            all: self.layers[i].norm.is_some(),
            groups: self.groups,
        }
    }

    fn gx_span(&self, i: usize) -> Span {
        Span {
            all: (i > 0 && self.layers[i - 1].batch_norm()) || self.blocked[i],
            groups: self.groups,
        }
    }

    /// Layer `i`'s output gradient for groups `gs` spread through its epilogue (into `gcs`;
    /// the bias gradient too, unless a norm comes between): its `(group, channel)` pairs
    /// split over the threads once for all of `gs`, each group's sums added in group order.
    fn spread(&mut self, i: usize, gs: Range<usize>) {
        let (l, cv) = (&self.layers[i], self.convs[i]);
        let (out_p, gp) = (l.out_planes(), cv.grad_planes());
        let gc_span = self.gc_span(i);
        let from = if i + 1 == self.layers.len() {
            GradOut::Gy(self.gy, self.batch)
        } else {
            GradOut::Next(&self.gxs[i + 1], self.gx_span(i + 1))
        };
        assert!(gc_span.holds(&gs) && from.holds(&gs), "groups share a slot");
        let (dst_px, plane) = (out_p.area() * LANES, gp.area() * LANES);
        // What spread leaves stays zero from one group to the next in a slot.
        let zero: Vec<bool> = gs
            .clone()
            .map(|g| !self.gc_zeroed[i][gc_span.slot(g)])
            .collect();
        let gc = self.gcs[i].disjoint();
        assert!(
            gc_span.end(&gs) * gp.group() <= gc.len(),
            "spread: gradient too short"
        );
        // Each group's bias sums, added to the bias gradient in group order below (with a
        // norm, they are not the bias gradient: it is made after the norm's).
        let items = gs.len() * cv.co;
        let mut sums = vec![0.0; items * LANES];
        let saved = self.saved;
        let pieces = par::pieces(items, gs.len() * cv.out_len() * par::PER_VALUE);
        par::split(
            par::Rows(&mut sums, LANES),
            (0, items),
            pieces,
            &|first, count, sums| {
                let mut entered = None;
                for (k, ch, at) in par::runs(first, count, cv.co) {
                    let (g, n) = (gs.start + k, ch.len());
                    let g_out = from.channels(out_p, g, ch.clone(), &mut entered);
                    let at_out = g * out_p.group() + ch.start * dst_px;
                    let how = if l.epi.max_pool2 {
                        Spread::Route(&saved.routes[i][at_out..][..n * dst_px])
                    } else if l.epi.relu {
                        Spread::Relu(&saved.outs[i][at_out..][..n * dst_px])
                    } else {
                        Spread::Plain
                    };
                    let at_gc = gc_span.slot(g) * gp.group() + ch.start * plane;
                    // SAFETY: within the buffer (checked above), and these channels of this
                    // group are this piece's alone.
                    let gc = unsafe { gc.slice(at_gc, n * plane) };
                    let part = Planes { c: n, ..gp };
                    if zero[k] {
                        zero_unspread(part, l.epi.max_pool2, gc);
                    }
                    let gb = &mut sums.0[at * LANES..][..n * LANES];
                    spread(g_out, how, (n, cv.oh, cv.ow), part.grid(), gc, gb);
                }
            },
        );
        if l.norm.is_none() {
            for group in sums.chunks_exact(cv.co * LANES) {
                self.gbs[i].iter_mut().zip(group).for_each(|(b, s)| *b += s);
            }
        }
        for g in gs {
            self.gc_zeroed[i][gc_span.slot(g)] = true;
        }
    }

    /// The norm's backward pass over groups `gs` of layer `i`'s spread gradient.
    fn norm(&mut self, i: usize, gs: std::ops::Range<usize>) {
        let (l, cv) = (&self.layers[i], self.convs[i]);
        let (gamma, stats) = match l.norm {
            Some(LaneNorm::Batch { gamma, .. }) => (
                gamma,
                norm::Coef::batch(self.saved.stats[i].as_ref().expect("batch statistics")),
            ),
            Some(LaneNorm::Fixed(n)) => (n.gamma, norm::Coef::fixed(n)),
            None => return,
        };
        let gp = cv.grad_planes();
        let at = self.gc_span(i).slot(gs.start) * gp.group();
        // SAFETY: `spread` wrote these groups' gradients.
        let gc = unsafe { self.gcs[i].written_mut(at, gs.len() * gp.group()) };
        let grads = norm::backward(
            norm::Pass {
                gc,
                gc_group: gp.group(),
                grid: gp.grid(),
                raw: &self.saved.raws[i],
                raw_group: cv.out_len(),
                dims: (cv.co, cv.oh, cv.ow),
                bias: l.bias,
                gamma,
                batch: self.batch,
            },
            &stats,
            gs,
            &mut self.gbs[i],
        );
        let sum = self.norm_grads[i].get_or_insert_with(|| (vec![0.0; cv.co], vec![0.0; cv.co]));
        for (s, v) in sum.0.iter_mut().zip(&grads.0) {
            *s += v;
        }
        for (s, v) in sum.1.iter_mut().zip(&grads.1) {
            *s += v;
        }
    }

    /// Layer `i`'s weight gradient from groups `gs`, and its input gradient if wanted, each
    /// split over the threads once for all of `gs`: the weight gradient by output channel,
    /// each channel's sums added in group order; the input gradient by `(group, input
    /// channel)` pair.
    fn grads(&mut self, i: usize, gs: Range<usize>, input_grad: bool) {
        let cv = self.convs[i];
        let gp = cv.grad_planes();
        let (gwp, margin) = (gp.wp(), (gp.pad * gp.wp() + gp.pad) * LANES);
        let gc_span = self.gc_span(i);
        assert!(gc_span.holds(&gs), "groups share a slot");
        let first_gc = gc_span.slot(gs.start) * gp.group();
        // SAFETY: `spread` (and the norm after it) wrote these groups' gradients.
        let gc = unsafe { self.gcs[i].part(first_gc, gc_span.end(&gs) * gp.group() - first_gc) };
        let gc_of = |g: usize| &gc[gc_span.slot(g) * gp.group() - first_gc..][..gp.group()];
        let (xp, x_wp) = (cv.input, cv.input.wp());
        let x: &[f32] = if i == 0 || xp.pad > 0 {
            &self.saved.ins[i]
        } else {
            &self.saved.outs[i - 1]
        };
        let (off, taps) = (&self.offs[i], self.offs[i].len());
        let pieces = par::pieces(
            cv.co,
            gs.len() * self.layers[i].w.len() * cv.oh * cv.ow * LANES,
        );
        let accs = par::Rows(&mut self.accs[i], taps * LANES);
        par::split(accs, (0, cv.co), pieces, &|first, _, acc| {
            for g in gs.clone() {
                let input = GradInput {
                    g: &gc_of(g)[margin + first * gp.area() * LANES..],
                    g_stride: gp.area() * LANES,
                    g_image: gwp * LANES,
                    src: &x[g * xp.group()..],
                    src_image: x_wp * LANES,
                    images: cv.oh,
                    len: cv.ow * LANES,
                };
                correlate_grad_piece(acc.0, input, off);
            }
        });
        let Some(rows_g) = self.rows_g[i].as_ref().filter(|_| input_grad) else {
            return;
        };
        // Only the rows and columns inside the padding: the rest would be dropped.
        let plane = xp.h * xp.w * LANES;
        let span = self.gx_span(i);
        assert!(span.holds(&gs), "groups share a slot");
        let gx = self.gxs[i].disjoint();
        assert!(
            span.end(&gs) * xp.c * plane <= gx.len(),
            "grads: input gradient too short"
        );
        let items = gs.len() * xp.c;
        let pieces = par::pieces(items, gs.len() * rows_g.taps() * plane);
        par::split((), (0, items), pieces, &|first, count, ()| {
            for (g, ch, _) in par::runs(first, count, xp.c) {
                let g = gs.start + g;
                let gc = gc_of(g);
                let at = (span.slot(g) * xp.c + ch.start) * plane;
                // SAFETY: within the buffer (checked above), and these channels of this
                // group are this piece's alone. Every value is written: every row of every
                // channel.
                let gx = unsafe { gx.slice(at, ch.len() * plane) };
                for y in 0..xp.h {
                    let (off_g, w_g) = rows_g.row(y + xp.pad);
                    let w_g = &w_g[ch.start * off_g.len()..][..ch.len() * off_g.len()];
                    let row = &mut gx[y * xp.w * LANES..];
                    let src = &gc[((y + xp.pad) * gwp + xp.pad) * LANES..];
                    correlate_uninit(row, plane, xp.w * LANES, src, off_g, w_g);
                }
            }
        });
    }
}

/// Gradients of [`conv_forward`] given what it saved and the last layer's output gradient
/// `gy`: every layer's gradients, and the input gradient if asked. Without batch
/// statistics, each group of images goes back through all layers in the lane layout; a
/// layer normalized with them first spreads every group's gradient, then runs its norm's
/// backward pass over all of them.
pub fn conv_backward(
    saved: &Saved,
    gy: &[f32],
    batch: usize,
    layers: &[ConvLayer],
    input_grad: bool,
) -> (Vec<LayerGrads>, Option<Vec<f32>>) {
    check_chain(layers);
    let n_groups = groups(batch);
    let wants = |i: usize| i > 0 || input_grad;
    let mut b = Backward::new(saved, gy, batch, layers, input_grad);
    let first_p = {
        let xp = b.convs[0].input;
        Planes { pad: 0, ..xp }
    };
    let mut gx = None;
    for seg in segments(layers).into_iter().rev() {
        let end = seg.end - 1;
        let waits = layers[end].batch_norm();
        if waits {
            b.spread(end, 0..n_groups);
            b.norm(end, 0..n_groups);
        }
        // Groups `gs` back through the segment.
        let back = |b: &mut Backward, gs: Range<usize>| {
            for i in seg.clone().rev() {
                if !(waits && i == end) {
                    b.spread(i, gs.clone());
                    b.norm(i, gs.clone());
                }
                b.grads(i, gs.clone(), wants(i));
            }
        };
        let size = if b.blocked[end] { n_groups } else { 1 };
        if seg.start == 0 && input_grad {
            let out = leave_all(batch, first_p, |g, dst| {
                if g % size == 0 {
                    back(&mut b, g..(g + size).min(n_groups));
                }
                let at = b.gx_span(0).slot(g) * first_p.group();
                // SAFETY: the first layer's `grads` wrote this group's input gradient.
                let gx = unsafe { b.gxs[0].part(at, first_p.group()) };
                first_p.leave(gx, in_group(batch, g), dst);
            });
            gx = Some(out);
        } else {
            blocks(n_groups, size).for_each(|gs| back(&mut b, gs));
        }
    }
    let grads = b
        .accs
        .iter()
        .zip(&b.gbs)
        .zip(b.norm_grads)
        .map(|((acc, gb), ng)| {
            let gb = gb.chunks_exact(LANES).map(|l| l.iter().sum()).collect();
            (reduce_lanes(acc), gb, ng)
        })
        .collect();
    (grads, gx)
}

/// Zeros what [`spread`] leaves of one group of gradient planes `gp`: the margins, and
/// after a pool over an odd side the last row or column.
fn zero_unspread(gp: Planes, pooled: bool, gc: &mut [MaybeUninit<f32>]) {
    gp.zero_padding(gc);
    if pooled {
        zero_odd_edges(gp, gc);
    }
}

/// Zeros the last row or column of `gp`'s planes where a 2 x 2 pool left it out.
fn zero_odd_edges(gp: Planes, gc: &mut [MaybeUninit<f32>]) {
    let zero = MaybeUninit::new(0.0);
    for c in 0..gp.c {
        if gp.h % 2 == 1 {
            let at = gp.pixel(c, gp.h - 1, 0) * LANES;
            gc[at..at + gp.w * LANES].fill(zero);
        }
        if gp.w % 2 == 1 {
            for y in 0..gp.h {
                let at = gp.pixel(c, y, gp.w - 1) * LANES;
                gc[at..at + LANES].fill(zero);
            }
        }
    }
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

    /// The most weights a row's set has: times a plane's positions, a bound on the pass's
    /// multiply-adds (to decide how to split it).
    fn taps(&self) -> usize {
        self.sets.iter().map(|(_, w)| w.len()).max().unwrap_or(0)
    }

    /// Row `y`'s taps and weights.
    fn row(&self, y: usize) -> (&[usize], &[f32]) {
        let (off, w) = &self.sets[self.row_set[y]];
        (off, w)
    }
}
