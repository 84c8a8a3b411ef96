//! 2-D max and average pooling (square kernel, no padding, floor mode, like PyTorch's defaults).

use super::{Act, OpTape, unary_op, values};
use crate::error::{Error, Result};
use dfdx::prelude::HasShape;

/// Which reduction a pooling window applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

/// Output side of a pooling window, or `None` when it does not fit.
pub fn pool_out_side(side: usize, kernel: usize, stride: usize) -> Option<usize> {
    (kernel > 0 && stride > 0 && side >= kernel).then(|| (side - kernel) / stride + 1)
}

/// Pools `x` `(N, C, H, W)` with a `kernel x kernel` window every `stride` pixels, giving
/// `(N, C, (H-k)/s+1, (W-k)/s+1)`.
pub fn pool2d<T: OpTape>(
    x: Act<T>,
    kind: PoolKind,
    kernel: usize,
    stride: usize,
) -> Result<Act<T>> {
    let (n, c, h, w) = *x.shape();
    let (oh, ow) = pool_out_side(h, kernel, stride)
        .zip(pool_out_side(w, kernel, stride))
        .ok_or_else(|| {
            Error::Shape(format!(
                "pool kernel {kernel} (stride {stride}) does not fit a {h}x{w} input"
            ))
        })?;
    let planes = n * c;
    let xv = values(&x);
    let mut out = vec![0.0; planes * oh * ow];
    // For max pooling, where each output came from, for the backward pass.
    let mut argmax: Vec<u32> = Vec::new();
    if kind == PoolKind::Max {
        argmax.resize(out.len(), 0);
    }
    let scale = 1.0 / (kernel * kernel) as f32;
    if kind == PoolKind::Max && kernel == 2 && stride == 2 {
        max_pool_2x2(&xv, (h, w), (oh, ow), &mut out, &mut argmax);
    } else {
        pool_general(
            &xv,
            kind,
            kernel,
            stride,
            (h, w),
            (oh, ow),
            &mut out,
            &mut argmax,
        );
    }
    drop(xv);
    Ok(unary_op(x, out, (n, c, oh, ow), move |gy, _| {
        let mut gx = vec![0.0; planes * h * w];
        match kind {
            PoolKind::Max => {
                for (g, &at) in gy.iter().zip(&argmax) {
                    gx[at as usize] += g;
                }
            }
            PoolKind::Avg => {
                for p in 0..planes {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let g = gy[(p * oh + oy) * ow + ox] * scale;
                            for y in oy * stride..oy * stride + kernel {
                                let row = (p * h + y) * w + ox * stride;
                                for v in &mut gx[row..row + kernel] {
                                    *v += g;
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(Some(gx))
    }))
}

/// The common 2x2, stride 2 max pool: the first of the largest of each 2x2 block, in scan
/// order (the general loop's rule), without its generic indexing.
fn max_pool_2x2(
    xv: &[f32],
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    out: &mut [f32],
    argmax: &mut [u32],
) {
    for (p, plane) in xv.chunks_exact(h * w).enumerate() {
        for oy in 0..oh {
            let base = p * h * w + 2 * oy * w;
            let (r0, r1) = (&plane[2 * oy * w..][..w], &plane[(2 * oy + 1) * w..][..w]);
            let o = (p * oh + oy) * ow;
            for ox in 0..ow {
                let x = 2 * ox;
                let (mut best, mut at) = (r0[x], x);
                if r0[x + 1] > best || r0[x + 1].is_nan() {
                    (best, at) = (r0[x + 1], x + 1);
                }
                if r1[x] > best || r1[x].is_nan() {
                    (best, at) = (r1[x], w + x);
                }
                if r1[x + 1] > best || r1[x + 1].is_nan() {
                    (best, at) = (r1[x + 1], w + x + 1);
                }
                out[o + ox] = best;
                argmax[o + ox] = (base + at) as u32;
            }
        }
    }
}

/// Any square window and stride, max or average.
#[allow(clippy::too_many_arguments)]
fn pool_general(
    xv: &[f32],
    kind: PoolKind,
    kernel: usize,
    stride: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    out: &mut [f32],
    argmax: &mut [u32],
) {
    let scale = 1.0 / (kernel * kernel) as f32;
    for ((p, plane), out_plane) in xv
        .chunks_exact(h * w)
        .enumerate()
        .zip(out.chunks_exact_mut(oh * ow))
    {
        for oy in 0..oh {
            let rows = &plane[oy * stride * w..(oy * stride + kernel) * w];
            for ox in 0..ow {
                let x0 = ox * stride;
                let o = oy * ow + ox;
                match kind {
                    PoolKind::Max => {
                        let mut best = (f32::NEG_INFINITY, x0);
                        for (dy, row) in rows.chunks_exact(w).enumerate() {
                            for (dx, &v) in row[x0..x0 + kernel].iter().enumerate() {
                                // A NaN wins and then stays, as in PyTorch.
                                if v > best.0 || v.is_nan() {
                                    best = (v, dy * w + x0 + dx);
                                }
                            }
                        }
                        out_plane[o] = best.0;
                        argmax[p * oh * ow + o] = (p * h * w + oy * stride * w + best.1) as u32;
                    }
                    PoolKind::Avg => {
                        let sum: f32 = rows
                            .chunks_exact(w)
                            .map(|row| row[x0..x0 + kernel].iter().sum::<f32>())
                            .sum();
                        out_plane[o] = sum * scale;
                    }
                }
            }
        }
    }
}
