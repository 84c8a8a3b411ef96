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

/// `tanh(x)` from `exp` alone, in `f64` then rounded: libm's `tanhf` differs in the last
/// bit between x86-64 and aarch64, its `exp` does not, so every machine computes the same
/// bits. Within an ulp of the exact value (libm's `tanhf` can be two off).
pub fn tanh(x: f32) -> f32 {
    // Below 2^-12, tanh(x) = x - x^3/3 rounds to x (and 1 - exp(-2x) would lose it).
    if x.abs() < 1.0 / 4096.0 {
        return x;
    }
    let x = f64::from(x);
    let t = (-2.0 * x.abs()).exp();
    ((1.0 - t) / (1.0 + t)).copysign(x) as f32
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
        Activation::Tanh => y.iter_mut().for_each(|v| *v = tanh(*v)),
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

#[cfg(test)]
mod tests {
    /// The exp-based tanh is within an ulp of the exact value (`f64`'s, rounded) over the
    /// range that matters, and keeps signs, zeros, infinities and NaN.
    #[test]
    fn tanh_is_within_an_ulp() {
        for i in -40_000..=40_000 {
            let x = i as f32 * 2.5e-4;
            let (ours, exact) = (super::tanh(x), f64::from(x).tanh() as f32);
            let ulp = f32::EPSILON * exact.abs().max(f32::MIN_POSITIVE);
            assert!((ours - exact).abs() <= ulp, "tanh({x}): {ours} vs {exact}");
        }
        assert_eq!(super::tanh(1e-30), 1e-30f32.tanh());
        assert_eq!(super::tanh(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(
            (super::tanh(f32::INFINITY), super::tanh(-50.0)),
            (1.0, -1.0)
        );
        assert!(super::tanh(f32::NAN).is_nan());
    }
}
