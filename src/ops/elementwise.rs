//! Shape-preserving and resampling ops that dfdx lacks: threshold and nearest upsampling.

use super::{Act, OpTape, unary_op, values};
use crate::error::{Error, Result};
use dfdx::prelude::HasShape;

/// PyTorch's `Threshold`: `y = value` where `x <= threshold`, else `x` (so NaN stays NaN).
/// The gradient passes where `x` was kept.
pub fn threshold<T: OpTape>(x: Act<T>, threshold: f32, value: f32) -> Act<T> {
    let dims = *x.shape();
    let xv = values(&x);
    let out = xv
        .iter()
        .map(|&v| if v <= threshold { value } else { v })
        .collect();
    unary_op(x, out, dims, move |gy, _| {
        let gx = xv
            .iter()
            .zip(gy)
            .map(|(&v, &g)| if v <= threshold { 0.0 } else { g })
            .collect();
        Ok(Some(gx))
    })
}

/// Nearest-neighbour upsampling by an integer `scale`: `(N, C, H, W)` -> `(N, C, sH, sW)`.
pub fn upsample_nearest<T: OpTape>(x: Act<T>, scale: usize) -> Result<Act<T>> {
    if scale == 0 {
        return Err(Error::Shape("upsample scale must be at least 1".into()));
    }
    let (n, c, h, w) = *x.shape();
    let (oh, ow) = (h * scale, w * scale);
    let xv = values(&x);
    let mut out = Vec::with_capacity(n * c * oh * ow);
    for plane in xv.chunks_exact(h * w) {
        for y in 0..oh {
            let row = &plane[(y / scale) * w..(y / scale + 1) * w];
            out.extend(row.iter().flat_map(|&v| std::iter::repeat_n(v, scale)));
        }
    }
    drop(xv);
    Ok(unary_op(x, out, (n, c, oh, ow), move |gy, _| {
        let mut gx = vec![0.0; n * c * h * w];
        for (p, plane) in gy.chunks_exact(oh * ow).enumerate() {
            for (i, g) in plane.iter().enumerate() {
                let (y, x) = (i / ow, i % ow);
                gx[(p * h + y / scale) * w + x / scale] += g;
            }
        }
        Ok(Some(gx))
    }))
}

/// An elementwise activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Tanh,
    Sigmoid,
}

/// Applies `kind` elementwise. (dfdx has these too, but its generic strided kernels cost
/// several times more than a plain pass over a contiguous buffer.)
pub fn activation<T: OpTape>(x: Act<T>, kind: Activation) -> Act<T> {
    let dims = *x.shape();
    let mut y = values(&x);
    match kind {
        // NaN stays NaN, as in PyTorch, so a diverged network shows in its outputs.
        Activation::Relu => y
            .iter_mut()
            .for_each(|v| *v = if v.is_nan() { *v } else { v.max(0.0) }),
        Activation::Tanh => y.iter_mut().for_each(|v| *v = v.tanh()),
        Activation::Sigmoid => y.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
    }
    // The derivative is a function of the output for all three, so only `y` is kept.
    let saved = if T::OWNS_TAPE { y.clone() } else { Vec::new() };
    unary_op(x, y, dims, move |gy, _| {
        let gx = gy
            .iter()
            .zip(&saved)
            .map(|(&g, &y)| match kind {
                Activation::Relu => {
                    if y > 0.0 {
                        g
                    } else {
                        0.0
                    }
                }
                Activation::Tanh => g * (1.0 - y * y),
                Activation::Sigmoid => g * y * (1.0 - y),
            })
            .collect();
        Ok(Some(gx))
    })
}
