//! Batch normalization inside a chain, on the lane layout: the batch's statistics of a
//! convolution's output, and the norm's backward pass over its spread gradient. The numbers
//! are those of `ops::batch_norm2d` (statistics in `f64`, the same formulas); only the order
//! of the sums differs. Lanes of missing images (the last group's) count for nothing and
//! get no gradient.

use super::BatchStats;
use super::layout::in_group;
use crate::kernels::{Grid, LANES, Norm, widened};
use crate::par;

/// Per channel, the sums over the batch's images and positions of `raw + bias` and its square,
/// in `f64`, then the mean, the biased variance and `1 / sqrt(var + eps)` as
/// `ops::batch_norm2d` forms them. `raw` holds every group, `co x oh x ow` pixels each. The
/// channels are split over the pool's threads (each channel's sums are the same).
pub(super) fn batch_stats(
    raw: &[f32],
    dims: (usize, usize, usize),
    bias: &[f32],
    batch: usize,
    eps: f32,
) -> BatchStats {
    let co = dims.0;
    let mut moments = vec![(0.0f32, 0.0f32); co];
    let pieces = par::pieces(co, raw.len());
    par::split(
        par::Rows(&mut moments, 1),
        (0, co),
        pieces,
        &|first, _, out| {
            widened(
                #[inline(always)]
                || moments_with(raw, dims, bias, batch, first, out.0),
            )
        },
    );
    BatchStats {
        count: batch * dims.1 * dims.2,
        mean: moments.iter().map(|m| m.0).collect(),
        var: moments.iter().map(|m| m.1).collect(),
        inv_std: moments
            .iter()
            .map(|m| crate::ops::norm::inv_std(m.1, eps))
            .collect(),
    }
}

/// The `(mean, variance)` of channels `first..` into `out`, one a channel.
#[inline(always)]
fn moments_with(
    raw: &[f32],
    (co, oh, ow): (usize, usize, usize),
    bias: &[f32],
    batch: usize,
    first: usize,
    out: &mut [(f32, f32)],
) {
    let (pixels, count) = (oh * ow, batch * oh * ow);
    let group = co * pixels * LANES;
    for (o, m) in (first..).zip(out.iter_mut()) {
        let b = bias[o];
        let (mut s, mut q) = ([0.0f64; LANES], [0.0f64; LANES]);
        for (g, raw) in raw.chunks_exact(group).enumerate() {
            let live = live_lanes(batch, g);
            // Whole pixels as arrays: no bounds to check in the lane loop.
            let plane = &raw[o * pixels * LANES..][..pixels * LANES];
            for px in plane.as_chunks::<LANES>().0 {
                for l in 0..LANES {
                    let v = if live[l] { f64::from(px[l] + b) } else { 0.0 };
                    s[l] += v;
                    q[l] += v * v;
                }
            }
        }
        let (s, q): (f64, f64) = (s.iter().sum(), q.iter().sum());
        let mean = (s / count as f64) as f32;
        let var = ((q / count as f64) - f64::from(mean) * f64::from(mean)).max(0.0) as f32;
        *m = (mean, var);
    }
}

/// What the backward pass normalized with.
pub(super) struct Coef<'a> {
    mean: &'a [f32],
    inv_std: &'a [f32],
    /// Batch statistics (whose gradient flows back through the mean and variance) or not.
    batch: bool,
}

impl<'a> Coef<'a> {
    pub(super) fn batch(st: &'a BatchStats) -> Self {
        Coef {
            mean: &st.mean,
            inv_std: &st.inv_std,
            batch: true,
        }
    }

    pub(super) fn fixed(n: Norm<'a>) -> Self {
        Coef {
            mean: n.mean,
            inv_std: n.inv_std,
            batch: false,
        }
    }
}

/// One layer's buffers for [`backward`].
pub(super) struct Pass<'a> {
    /// The gradient of the norm's output for the groups passed (from the first of them),
    /// groups `gc_group` apart, pixels placed by `grid`; replaced by the gradient of its
    /// input.
    pub gc: &'a mut [f32],
    pub gc_group: usize,
    pub grid: Grid,
    /// The convolution's output before bias, groups `raw_group` apart, compact.
    pub raw: &'a [f32],
    pub raw_group: usize,
    pub dims: (usize, usize, usize),
    pub bias: &'a [f32],
    pub gamma: &'a [f32],
    pub batch: usize,
}

/// The norm's backward pass over the groups `groups` (all of them for batch statistics):
/// replaces the gradient in `p.gc` by the gradient of the norm's input, adds that to the
/// bias gradient's lanes `gb`, and returns the `(gamma, beta)` gradients of these groups.
/// The channels are split over the pool's threads (each channel's sums are the same).
pub(super) fn backward(
    mut p: Pass,
    c: &Coef,
    groups: std::ops::Range<usize>,
    gb: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let co = p.dims.0;
    if co == 0 || groups.is_empty() {
        return (vec![0.0; co], vec![0.0; co]);
    }
    // Written through `gc` alone from here.
    let gc = par::Disjoint::new(std::mem::take(&mut p.gc));
    let v = View {
        gc: &gc,
        gc_group: p.gc_group,
        grid: p.grid,
        raw: p.raw,
        raw_group: p.raw_group,
        dims: p.dims,
        bias: p.bias,
        gamma: p.gamma,
        batch: p.batch,
    };
    // The last row `each_pixel` reaches, checked once here rather than row by row.
    let (_, oh, ow) = p.dims;
    let end = (groups.len() - 1) * p.gc_group + (p.grid.pixel(co - 1, oh - 1, 0) + ow) * LANES;
    assert!(end <= gc.len(), "norm: gradient too short");
    let mut sums = vec![(0.0f32, 0.0f32); co];
    let pieces = par::pieces(co, groups.len() * p.raw_group);
    let parts = (par::Rows(&mut sums, 1), par::Rows(gb, LANES));
    par::split(parts, (0, co), pieces, &|first, count, (sums, gb)| {
        let channels = first..first + count;
        widened(
            #[inline(always)]
            || backward_with(v, c, groups.clone(), channels, sums.0, gb.0),
        )
    });
    sums.into_iter().unzip()
}

/// A [`Pass`] as the pieces of [`backward`] share it: the gradient written through
/// [`par::Disjoint`], each piece its own channels' rows. Passed by value, so that the
/// compiler sees its fields cannot change under the writes.
#[derive(Clone, Copy)]
struct View<'a, 'b> {
    gc: &'a par::Disjoint<'b, f32>,
    gc_group: usize,
    grid: Grid,
    raw: &'a [f32],
    raw_group: usize,
    dims: (usize, usize, usize),
    bias: &'a [f32],
    gamma: &'a [f32],
    batch: usize,
}

/// [`backward`] for `channels`: their `(dgamma, dbeta)` into `sums` and their bias
/// gradient's lanes into `gb` (both from the first of them).
#[inline(always)]
fn backward_with(
    v: View,
    c: &Coef,
    groups: std::ops::Range<usize>,
    channels: std::ops::Range<usize>,
    sums: &mut [(f32, f32)],
    gb: &mut [f32],
) {
    let (_, oh, ow) = v.dims;
    let count = (v.batch * oh * ow) as f32;
    let first = channels.start;
    for o in channels {
        let (b, mean, inv_std) = (v.bias[o], c.mean[o], c.inv_std[o]);
        let xhat = |v: f32| ((v + b) - mean) * inv_std;
        let (mut sg, mut sgx) = ([0.0f32; LANES], [0.0f32; LANES]);
        each_pixel(v, o, groups.clone(), |live, gy, r| {
            if live.is_none() {
                for l in 0..LANES {
                    sg[l] += gy[l];
                    sgx[l] += gy[l] * xhat(r[l]);
                }
                return;
            }
            for l in 0..LANES {
                let gy = if live.is_some_and(|m| m[l]) {
                    gy[l]
                } else {
                    0.0
                };
                sg[l] += gy;
                sgx[l] += gy * xhat(r[l]);
            }
        });
        let (db, dg) = (sg.iter().sum::<f32>(), sgx.iter().sum::<f32>());
        sums[o - first] = (dg, db);
        let scale = v.gamma[o] * inv_std;
        let gb = &mut gb[(o - first) * LANES..][..LANES];
        each_pixel(v, o, groups.clone(), |live, gy, r| {
            for l in 0..LANES {
                let v = if c.batch {
                    scale * (gy[l] - db / count - xhat(r[l]) * dg / count)
                } else {
                    scale * gy[l]
                };
                let v = if live.is_none_or(|m| m[l]) { v } else { 0.0 };
                gy[l] = v;
                gb[l] += v;
            }
        });
    }
}

/// Calls `f(live, gradient, raw)` for every pixel of channel `o` in `groups`: which lanes hold
/// images (`None` when all do, so that the caller's lane loop needs no mask and vectorizes),
/// the norm's gradient there (to change) and the raw convolution output.
#[inline(always)]
fn each_pixel(
    v: View,
    o: usize,
    groups: std::ops::Range<usize>,
    mut f: impl FnMut(Option<&[bool; LANES]>, &mut [f32; LANES], &[f32; LANES]),
) {
    let (_, oh, ow) = v.dims;
    let (first, row) = (groups.start, ow * LANES);
    for g in groups {
        let live = live_lanes(v.batch, g);
        let mask = (!live.iter().all(|&l| l)).then_some(&live);
        for y in 0..oh {
            let at = (g - first) * v.gc_group + v.grid.pixel(o, y, 0) * LANES;
            let raw = g * v.raw_group + (o * oh + y) * row;
            // SAFETY: within the buffer (`backward` checked the last row); a row of channel
            // `o`, which only the piece given channel `o` writes, through this slice alone
            // while it lives.
            let gys = unsafe { v.gc.slice(at, row) };
            let raws = v.raw[raw..raw + row].as_chunks().0;
            for (gy, r) in gys.as_chunks_mut::<LANES>().0.iter_mut().zip(raws) {
                f(mask, gy, r);
            }
        }
    }
}

/// Which lanes of group `g` hold an image of a batch of `batch`.
fn live_lanes(batch: usize, g: usize) -> [bool; LANES] {
    let m = in_group(batch, g);
    std::array::from_fn(|l| l < m)
}
