//! Batch normalization over the channels of an NCHW tensor (PyTorch's `BatchNorm1d/2d`).

use dfdx::prelude::HasShape;
use std::cell::RefCell;

use super::{Act, OpTape, Param, add_param_grad, check_len, unary_op, values};
use crate::error::Result;

/// Running statistics of one batch-norm layer, updated by every training forward pass.
#[derive(Debug, Clone)]
pub struct BatchNormState {
    pub mean: RefCell<Vec<f32>>,
    pub var: RefCell<Vec<f32>>,
    /// Weight of the newest batch in the running statistics (PyTorch's default 0.1).
    pub momentum: f32,
    pub eps: f32,
}

impl BatchNormState {
    /// Fresh statistics for `channels` (mean 0, variance 1).
    pub fn new(channels: usize, momentum: f32, eps: f32) -> Self {
        BatchNormState {
            mean: RefCell::new(vec![0.0; channels]),
            var: RefCell::new(vec![1.0; channels]),
            momentum,
            eps,
        }
    }

    /// Moves the running statistics toward a batch's `mean` and biased `var` over `count`
    /// values, as PyTorch does (the variance unbiased first).
    pub fn update(&self, mean: &[f32], var: &[f32], count: usize) {
        let unbias = count as f32 / (count.max(2) - 1) as f32;
        let mo = self.momentum;
        for (r, m) in self.mean.borrow_mut().iter_mut().zip(mean) {
            *r = (1.0 - mo) * *r + mo * m;
        }
        for (r, v) in self.var.borrow_mut().iter_mut().zip(var) {
            *r = (1.0 - mo) * *r + mo * v * unbias;
        }
    }

    /// The running mean and `1 / sqrt(var + eps)`: what evaluation normalizes with.
    pub fn fixed(&self) -> (Vec<f32>, Vec<f32>) {
        let inv_std = self
            .var
            .borrow()
            .iter()
            .map(|v| inv_std(*v, self.eps))
            .collect();
        (self.mean.borrow().clone(), inv_std)
    }
}

/// `1 / sqrt(var + eps)`, as every norm here forms it.
pub(crate) fn inv_std(var: f32, eps: f32) -> f32 {
    1.0 / (var + eps).sqrt()
}

/// Each channel's mean and (biased) variance over `xv`, `(N, C, H, W)` with `plane = H * W`,
/// summed in `f64`.
fn batch_stats(xv: &[f32], c: usize, plane: usize) -> (Vec<f32>, Vec<f32>) {
    let count = (xv.len() / c.max(1)) as f64;
    let mut mean = vec![0.0f64; c];
    let mut sq = vec![0.0f64; c];
    for (i, chunk) in xv.chunks_exact(plane).enumerate() {
        for &v in chunk {
            mean[i % c] += f64::from(v);
            sq[i % c] += f64::from(v) * f64::from(v);
        }
    }
    let mean: Vec<f32> = mean.iter().map(|s| (s / count) as f32).collect();
    let var: Vec<f32> = sq
        .iter()
        .zip(&mean)
        .map(|(s, &m)| ((s / count) - f64::from(m) * f64::from(m)).max(0.0) as f32)
        .collect();
    (mean, var)
}

/// `y = gamma * (x - mean) / sqrt(var + eps) + beta` per channel of `x` `(N, C, H, W)`, with the
/// batch's statistics when `training` (and the running ones updated), else the running ones.
pub fn batch_norm2d<T: OpTape>(
    x: Act<T>,
    gamma: &Param,
    beta: &Param,
    state: &BatchNormState,
    training: bool,
) -> Result<Act<T>> {
    let dims @ (n, c, h, w) = *x.shape();
    check_len("batch_norm gamma", gamma, c)?;
    check_len("batch_norm beta", beta, c)?;
    let (plane, count) = (h * w, n * h * w);
    let xv = values(&x);
    let (mean, var) = if training {
        let (mean, var) = batch_stats(&xv, c, plane);
        state.update(&mean, &var, count);
        (mean, var)
    } else {
        (state.mean.borrow().clone(), state.var.borrow().clone())
    };
    let inv_std: Vec<f32> = var.iter().map(|&v| inv_std(v, state.eps)).collect();
    let (gv, bv) = (gamma.shared(), beta.values());
    let mut xhat = xv;
    let mut out = vec![0.0; xhat.len()];
    for (i, (xh, o)) in xhat
        .chunks_exact_mut(plane)
        .zip(out.chunks_exact_mut(plane))
        .enumerate()
    {
        let ch = i % c;
        for (a, b) in xh.iter_mut().zip(o.iter_mut()) {
            *a = (*a - mean[ch]) * inv_std[ch];
            *b = gv[ch] * *a + bv[ch];
        }
    }
    let (gamma, beta) = (gamma.clone(), beta.clone());
    Ok(unary_op(x, out, dims, move |gy, grads| {
        let (mut gg, mut gb) = (vec![0.0f32; c], vec![0.0f32; c]);
        for (i, (g, xh)) in gy
            .chunks_exact(plane)
            .zip(xhat.chunks_exact(plane))
            .enumerate()
        {
            for (&g, &xh) in g.iter().zip(xh) {
                gb[i % c] += g;
                gg[i % c] += g * xh;
            }
        }
        let mut gx = vec![0.0; gy.len()];
        for (i, ((g, xh), o)) in gy
            .chunks_exact(plane)
            .zip(xhat.chunks_exact(plane))
            .zip(gx.chunks_exact_mut(plane))
            .enumerate()
        {
            let ch = i % c;
            let scale = gv[ch] * inv_std[ch];
            for ((&g, &xh), o) in g.iter().zip(xh).zip(o.iter_mut()) {
                *o = if training {
                    scale * (g - gb[ch] / count as f32 - xh * gg[ch] / count as f32)
                } else {
                    scale * g
                };
            }
        }
        add_param_grad(grads, &gamma, &gg)?;
        add_param_grad(grads, &beta, &gb)?;
        Ok(Some(gx))
    }))
}
