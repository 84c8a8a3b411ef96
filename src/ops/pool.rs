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
    for p in 0..planes {
        let plane = &xv[p * h * w..(p + 1) * h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let o = (p * oh + oy) * ow + ox;
                let (y0, x0) = (oy * stride, ox * stride);
                match kind {
                    PoolKind::Max => {
                        let mut best = (f32::NEG_INFINITY, y0 * w + x0);
                        for y in y0..y0 + kernel {
                            for x in x0..x0 + kernel {
                                let v = plane[y * w + x];
                                // A NaN wins and then stays, as in PyTorch.
                                if v > best.0 || v.is_nan() {
                                    best = (v, y * w + x);
                                }
                            }
                        }
                        out[o] = best.0;
                        argmax[o] = (p * h * w + best.1) as u32;
                    }
                    PoolKind::Avg => {
                        let mut sum = 0.0;
                        for y in y0..y0 + kernel {
                            sum += plane[y * w + x0..y * w + x0 + kernel].iter().sum::<f32>();
                        }
                        out[o] = sum * scale;
                    }
                }
            }
        }
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
