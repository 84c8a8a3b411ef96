//! Fully connected layer (PyTorch's `Linear`), flattening its input.
//!
//! All three products run on the direct convolution kernels ([`crate::kernels::correlate`]), as
//! 1x1 convolutions whose "positions" are output features or input features: one row of the
//! result per batch row or per output feature, several rows and 64 (AVX-512) or 24 (AVX2)
//! positions at a time in registers. Rows are padded to whole vectors with zeros.

use std::borrow::Cow;

use super::lanes::{transpose, transpose_packed};
use super::{Act, OpTape, Param, add_param_grad, check_len, unary_op, values};
use crate::error::{Error, Result};
use crate::kernels::{correlate_new, round_up};
use dfdx::prelude::HasShape;

/// `rows x cols` row-major values in rows of `stride` values (zeros after `cols`): borrowed
/// when they already are, else copied.
fn pad_rows(v: &[f32], cols: usize, stride: usize) -> Cow<'_, [f32]> {
    if cols == stride {
        return Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(v.len() / cols.max(1) * stride);
    for row in v.chunks_exact(cols) {
        out.extend_from_slice(row);
        out.extend(std::iter::repeat_n(0.0, stride - cols));
    }
    Cow::Owned(out)
}

/// The first `cols` values of every row of `stride` values (`v` itself when that is all).
fn unpad_rows(v: Vec<f32>, cols: usize, stride: usize) -> Vec<f32> {
    if cols == stride {
        return v;
    }
    let mut out = Vec::with_capacity(v.len() / stride.max(1) * cols);
    for row in v.chunks_exact(stride) {
        out.extend_from_slice(&row[..cols]);
    }
    out
}

/// Offsets `0, stride, 2 * stride, ...`: one tap per row.
fn row_offsets(rows: usize, stride: usize) -> Vec<usize> {
    (0..rows).map(|r| r * stride).collect()
}

/// `y = x W^T + b` for `x` `(N, C, H, W)` read as `(N, C*H*W)` (PyTorch's flatten order),
/// `weight` `(out, C*H*W)` and `bias` `(out)`; gives `(N, out, 1, 1)`.
pub fn linear<T: OpTape>(
    x: Act<T>,
    weight: &Param,
    bias: &Param,
    out_features: usize,
    input_grad: bool,
) -> Result<Act<T>> {
    let (n, c, h, w) = *x.shape();
    let inf = c * h * w;
    check_len("linear weight", weight, out_features * inf)?;
    check_len("linear bias", bias, out_features)?;
    if inf == 0 {
        return Err(Error::Shape(
            "linear needs at least one input feature".into(),
        ));
    }
    let (xv, wv, bv) = (values(&x), weight.shared(), bias.values());
    let (in_r, out_r) = (round_up(inf), round_up(out_features));

    // y[p, o] = sum_i x[p, i] W^T[i, o]: batch rows as output channels, features as positions.
    let mut wt = vec![0.0; inf * out_r];
    transpose(&mut wt, out_r, &wv, out_features, inf);
    let y = correlate_new(out_features, &wt, &row_offsets(inf, out_r), &xv);
    let mut out = Vec::with_capacity(n * out_features);
    for row in y.chunks_exact(out_r) {
        out.extend(row[..out_features].iter().zip(bv).map(|(v, b)| v + b));
    }

    let (weight, bias) = (weight.clone(), bias.clone());
    Ok(unary_op(
        x,
        out,
        (n, out_features, 1, 1),
        move |gy, grads| {
            let mut gb = vec![0.0; out_features];
            for row in gy.chunks_exact(out_features) {
                for (b, g) in gb.iter_mut().zip(row) {
                    *b += g;
                }
            }
            add_param_grad(grads, &bias, &gb)?;
            // gW[o, i] = sum_p gy^T[o, p] x[p, i]: output features as channels, batch rows
            // as taps.
            let mut gyt = vec![0.0; out_features * n];
            transpose_packed(&mut gyt, gy, n, out_features);
            let x_rows = pad_rows(&xv, inf, in_r);
            let gw = correlate_new(inf, &x_rows, &row_offsets(n, in_r), &gyt);
            add_param_grad(grads, &weight, &unpad_rows(gw, inf, in_r))?;
            if !input_grad {
                return Ok(None);
            }
            // gx[p, i] = sum_o gy[p, o] W[o, i]: batch rows as channels, output features as
            // taps.
            let w_rows = pad_rows(&wv, inf, in_r);
            let gx = correlate_new(inf, &w_rows, &row_offsets(out_features, in_r), gy);
            Ok(Some(unpad_rows(gx, inf, in_r)))
        },
    ))
}
