//! Stride-1 convolution on the image-per-lane layout.
//!
//! A batch is cut into groups of [`LANES`] images, and each group is stored
//! `C x H x W x LANES`: one pixel of the 16 images side by side (missing images of the last
//! group are zeros). A stride-1 convolution is then, output row by output row, the 1-D
//! correlation of [`correlate`](crate::kernels::correlate) with tap offsets in whole pixels: every vector the kernels
//! load is one pixel of 16 images, aligned to a cache line, and every position they compute
//! is an output (no padding columns, no rounding of an image to whole vectors). The weight
//! gradient is [`correlate_grad`] with output rows as its "images", the input gradient the
//! forward correlation of the output gradient with the kernel flipped. The layout is entered
//! and left by one transposing pass each way, once for a whole chain of convolutions: each
//! one's output, in this layout, is the next one's input (copied into padding when the next
//! is padded).
//!
//! A batch norm after a convolution runs inside the chain ([`LaneNorm`]). With the batch's
//! statistics, the chain is cut after each such layer (`segments`): a segment runs group by
//! group up to that layer's convolution, the statistics are summed over every group
//! (`norm.rs`), and then the layer's epilogue normalizes. The backward pass mirrors it.
//! Buffers come from a per-thread pool (`spare.rs`) and are written without zeroing where
//! every value is written (`Fresh`).

mod layout;
mod norm;
mod spare;

pub(crate) use layout::{transpose, transpose_packed};

use std::mem::MaybeUninit;

use super::im2col::Window;
use crate::kernels::{
    Epilogue, GradInput, LANES, Norm, Spread, as_uninit, correlate_grad, correlate_uninit,
    epilogue, reduce_lanes, spread,
};
use crate::par;
use layout::{Aligned, Fresh, Planes, groups, leave_all};

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

    /// The slot of layer `i`'s raw output for group `g`.
    fn raw_slot(&self, i: usize, g: usize) -> usize {
        let l = &self.layers[i];
        if l.batch_norm() || (self.all && l.norm.is_some()) {
            g
        } else {
            0
        }
    }

    /// Group `g` of the input into the first layer's input planes.
    fn enter(&mut self, g: usize) {
        let (xp, slot) = (self.layers[0].conv().input, self.span().slot(g));
        let dst = self.ins[0].part_mut(slot * xp.group(), xp.group());
        xp.zero_padding(dst);
        xp.enter(self.x, self.batch, g, dst);
    }

    /// Layer `i`'s convolution of group `g`, then its epilogue unless it waits for the
    /// batch's statistics.
    fn conv(&mut self, i: usize, g: usize) {
        let (l, cv, span) = (&self.layers[i], self.layers[i].conv(), self.span());
        let src: &[f32] = if i == 0 || cv.input.pad > 0 {
            // SAFETY: `enter` or the layer before's `finish` wrote this group's input.
            unsafe { self.ins[i].part(span.slot(g) * cv.input.group(), cv.input.group()) }
        } else {
            let prev = self.layers[i - 1].out_planes().group();
            // SAFETY: the layer before's `finish` wrote this group's output.
            unsafe { self.outs[i - 1].part(span.slot(g) * prev, prev) }
        };
        let at = self.raw_slot(i, g) * cv.out_len();
        let raw = self.raws[i].part_mut(at, cv.out_len());
        let (wp, off) = (cv.input.wp(), &self.offs[i]);
        let (len, stride) = (cv.ow * LANES, cv.oh * cv.ow * LANES);
        // The channels split over the threads, each piece every row: pieces large enough
        // to be worth handing to another thread.
        let pieces = par::pieces(cv.co, l.w.len() * stride);
        par::split(
            par::Rows(raw, stride),
            (0, cv.co),
            pieces,
            &|first, count, raw| {
                let w = &l.w[first * off.len()..][..count * off.len()];
                for y in 0..cv.oh {
                    let row = &mut raw.0[y * cv.ow * LANES..];
                    correlate_uninit(row, stride, len, &src[y * wp * LANES..], off, w);
                }
            },
        );
        if !l.batch_norm() {
            self.finish(i, g);
        }
    }

    /// Layer `i`'s epilogue on group `g`, and the padded copy of its output that the next
    /// layer reads, if that one is padded.
    fn finish(&mut self, i: usize, g: usize) {
        let (l, cv, span) = (&self.layers[i], self.layers[i].conv(), self.span());
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
        let out_p = l.out_planes();
        // SAFETY: `conv` wrote this group's raw output (every row of every channel).
        let raw = unsafe { self.raws[i].part(self.raw_slot(i, g) * cv.out_len(), cv.out_len()) };
        let dst = self.outs[i].part_mut(span.slot(g) * out_p.group(), out_p.group());
        let route = if self.routes[i].is_empty() {
            &mut [][..]
        } else {
            &mut self.routes[i][g * out_p.group()..][..out_p.group()]
        };
        epilogue(l.epi, raw, (cv.co, cv.oh, cv.ow), l.bias, norm, dst, route);
        let Some(next) = self.layers.get(i + 1).map(|n| n.conv().input) else {
            return;
        };
        if next.pad > 0 {
            // SAFETY: the epilogue just wrote this group's output.
            let src = unsafe { self.outs[i].part(span.slot(g) * out_p.group(), out_p.group()) };
            let dst = self.ins[i + 1].part_mut(span.slot(g) * next.group(), next.group());
            next.zero_padding(dst);
            next.pad_from(src, dst);
        }
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

    /// The last layer's output of group `g` into the NCHW output `y`.
    fn leave(&self, g: usize, y: &mut [MaybeUninit<f32>]) {
        let last = self.layers.len() - 1;
        let out_p = self.layers[last].out_planes();
        // SAFETY: the last layer's `finish` wrote this group's output.
        let src =
            unsafe { self.outs[last].part(self.span().slot(g) * out_p.group(), out_p.group()) };
        out_p.leave(src, self.batch, g, y);
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
    let all = for_backward || layers.iter().any(ConvLayer::batch_norm);
    let mut f = Forward::new(x, batch, layers, all);
    let last_p = layers[layers.len() - 1].out_planes();
    let y = if all {
        for seg in segments(layers) {
            let end = seg.end - 1;
            for g in 0..f.groups {
                if seg.start == 0 {
                    f.enter(g);
                }
                seg.clone().for_each(|i| f.conv(i, g));
            }
            if layers[end].batch_norm() {
                f.batch_stats(end);
                (0..f.groups).for_each(|g| f.finish(end, g));
            }
        }
        leave_all(batch, last_p, |g, y| f.leave(g, y))
    } else {
        leave_all(batch, last_p, |g, y| {
            f.enter(g);
            (0..layers.len()).for_each(|i| f.conv(i, g));
            f.leave(g, y);
        })
    };
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
    /// One group of the last layer's output gradient.
    gyl: Aligned,
    /// Per layer, its convolution-output gradient (margins never written, so zero): every
    /// group's for a layer with a norm, else one group's.
    gcs: Vec<Fresh>,
    /// Per layer, its input gradient, unpadded (the layer before's output gradient): every
    /// group's when the layer before has a batch norm, else one group's.
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
        Backward {
            saved,
            layers,
            gy,
            batch,
            groups: n_groups,
            offs: convs.iter().map(|cv| cv.input.taps(cv.k)).collect(),
            gyl: Aligned::zeros(layers[layers.len() - 1].out_planes().group()),
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
                    let all = i > 0 && layers[i - 1].batch_norm();
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
            all: i > 0 && self.layers[i - 1].batch_norm(),
            groups: self.groups,
        }
    }

    /// Layer `i`'s output gradient for group `g` spread through its epilogue (into `gcs`;
    /// the bias gradient too, unless a norm comes between).
    fn spread(&mut self, i: usize, g: usize) {
        let (l, cv) = (&self.layers[i], self.convs[i]);
        let out_p = l.out_planes();
        let last = self.layers.len() - 1;
        let g_out: &[f32] = if i == last {
            out_p.enter(self.gy, self.batch, g, as_uninit(&mut self.gyl));
            &self.gyl
        } else {
            let at = self.gx_span(i + 1).slot(g) * out_p.group();
            // SAFETY: the next layer's `grads` wrote this group's input gradient.
            unsafe { self.gxs[i + 1].part(at, out_p.group()) }
        };
        let at = g * out_p.group();
        let how = if l.epi.max_pool2 {
            Spread::Route(&self.saved.routes[i][at..][..out_p.group()])
        } else if l.epi.relu {
            Spread::Relu(&self.saved.outs[i][at..][..out_p.group()])
        } else {
            Spread::Plain
        };
        let gp = cv.grad_planes();
        let slot = self.gc_span(i).slot(g);
        let gc = self.gcs[i].part_mut(slot * gp.group(), gp.group());
        // What spread leaves stays zero from one group to the next in a slot.
        if !self.gc_zeroed[i][slot] {
            zero_unspread(gp, l.epi.max_pool2, gc);
            self.gc_zeroed[i][slot] = true;
        }
        // With a norm, the sum here is not the bias gradient; it is made after the norm's.
        let mut scratch = Vec::new();
        let gb = if l.norm.is_some() {
            scratch.resize(cv.co * LANES, 0.0);
            &mut scratch
        } else {
            &mut self.gbs[i]
        };
        spread(g_out, how, (cv.co, cv.oh, cv.ow), gp.grid(), gc, gb);
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

    /// Layer `i`'s weight gradient from group `g`, and its input gradient if wanted.
    fn grads(&mut self, i: usize, g: usize, input_grad: bool) {
        let cv = self.convs[i];
        let gp = cv.grad_planes();
        let (gwp, margin) = (gp.wp(), (gp.pad * gp.wp() + gp.pad) * LANES);
        let at = self.gc_span(i).slot(g) * gp.group();
        // SAFETY: `spread` (and the norm after it) wrote this group's gradient.
        let gc = unsafe { self.gcs[i].part(at, gp.group()) };
        let (xp, x_wp) = (cv.input, cv.input.wp());
        let x: &[f32] = if i == 0 || xp.pad > 0 {
            &self.saved.ins[i][g * xp.group()..]
        } else {
            &self.saved.outs[i - 1][g * xp.group()..]
        };
        let input = GradInput {
            g: &gc[margin..],
            g_stride: gp.area() * LANES,
            g_image: gwp * LANES,
            src: x,
            src_image: x_wp * LANES,
            images: cv.oh,
            len: cv.ow * LANES,
        };
        correlate_grad(&mut self.accs[i], input, &self.offs[i]);
        if !input_grad {
            return;
        }
        let Some(rows_g) = &self.rows_g[i] else {
            return;
        };
        // Only the rows and columns inside the padding: the rest would be dropped.
        let plane = xp.h * xp.w * LANES;
        let span = self.gx_span(i);
        // Every value written: every row of every channel.
        let gx = self.gxs[i].part_mut(span.slot(g) * xp.c * plane, xp.c * plane);
        // The input channels split over the threads, as in the forward pass.
        let pieces = par::pieces(xp.c, rows_g.taps() * plane);
        par::split(
            par::Rows(gx, plane),
            (0, xp.c),
            pieces,
            &|first, count, gx| {
                for y in 0..xp.h {
                    let (off_g, w_g) = rows_g.row(y + xp.pad);
                    let w_g = &w_g[first * off_g.len()..][..count * off_g.len()];
                    let row = &mut gx.0[y * xp.w * LANES..];
                    let src = &gc[((y + xp.pad) * gwp + xp.pad) * LANES..];
                    correlate_uninit(row, plane, xp.w * LANES, src, off_g, w_g);
                }
            },
        );
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
            (0..n_groups).for_each(|g| b.spread(end, g));
            b.norm(end, 0..n_groups);
        }
        // Group `g` back through the segment.
        let group = |b: &mut Backward, g: usize| {
            for i in seg.clone().rev() {
                if !(waits && i == end) {
                    b.spread(i, g);
                    b.norm(i, g..g + 1);
                }
                b.grads(i, g, wants(i));
            }
        };
        if seg.start == 0 && input_grad {
            let out = leave_all(batch, first_p, |g, dst| {
                group(&mut b, g);
                // SAFETY: the first layer's `grads` wrote this group's input gradient.
                let gx = unsafe { b.gxs[0].part(0, first_p.group()) };
                first_p.leave(gx, batch, g, dst);
            });
            gx = Some(out);
        } else {
            (0..n_groups).for_each(|g| group(&mut b, g));
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
/// after a pool over an odd side the last row or column; the channels split over the threads.
fn zero_unspread(gp: Planes, pooled: bool, gc: &mut [MaybeUninit<f32>]) {
    let plane = gp.area() * LANES;
    let pieces = par::pieces(gp.c, gc.len() * par::PER_VALUE);
    let rows = par::Rows(gc, plane);
    par::split(rows, (0, gp.c), pieces, &|_, c, par::Rows(gc, _)| {
        let gp = Planes { c, ..gp };
        gp.zero_padding(gc);
        if pooled {
            zero_odd_edges(gp, gc);
        }
    });
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
