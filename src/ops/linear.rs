//! Fully connected layer (PyTorch's `Linear`), flattening its input.

use super::kernels::{MatRef, matmul};
use super::{Act, OpTape, Param, add_param_grad, check_len, unary_op, values};
use crate::error::Result;
use dfdx::prelude::HasShape;

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
    let xv = values(&x);
    let wv = values(weight);
    // Start from the bias in every row, then accumulate the product onto it.
    let bv = values(bias);
    let mut out = Vec::with_capacity(n * out_features);
    for _ in 0..n {
        out.extend_from_slice(&bv);
    }
    matmul(
        &mut out,
        MatRef::new(&xv, n, inf),
        MatRef::new(&wv, out_features, inf).t(),
        true,
    );
    let (weight, bias) = (weight.clone(), bias.clone());
    Ok(unary_op(
        x,
        out,
        (n, out_features, 1, 1),
        move |gy, grads| {
            let gym = MatRef::new(gy, n, out_features);
            let mut gb = vec![0.0; out_features];
            for row in gy.chunks_exact(out_features) {
                for (b, g) in gb.iter_mut().zip(row) {
                    *b += g;
                }
            }
            add_param_grad(grads, &bias, &gb)?;
            let mut gw = vec![0.0; out_features * inf];
            matmul(&mut gw, gym.t(), MatRef::new(&xv, n, inf), false);
            add_param_grad(grads, &weight, &gw)?;
            if !input_grad {
                return Ok(None);
            }
            let mut gx = xv; // reuse the saved input's buffer
            matmul(&mut gx, gym, MatRef::new(&wv, out_features, inf), false);
            Ok(Some(gx))
        },
    ))
}
