//! Shape-preserving and resampling ops that dfdx lacks: threshold and nearest upsampling.

use super::{Act, OpTape, unary_op, values};
use crate::error::{Error, Result};
use dfdx::prelude::HasShape;

/// PyTorch's `Threshold`: `y = x` where `x > threshold`, else `value`. The gradient passes
/// where `x > threshold`.
pub fn threshold<T: OpTape>(x: Act<T>, threshold: f32, value: f32) -> Act<T> {
    let dims = *x.shape();
    let xv = values(&x);
    let out = xv
        .iter()
        .map(|&v| if v > threshold { v } else { value })
        .collect();
    unary_op(x, out, dims, move |gy, _| {
        let gx = xv
            .iter()
            .zip(gy)
            .map(|(&v, &g)| if v > threshold { g } else { 0.0 })
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
