//! 2-D convolution (PyTorch's `Conv2d`, square kernel, zero padding).

use super::kernels::{
    DIRECT_MAX_KERNEL, MatRef, Window, cnhw_to_nchw, col2im_add, direct_conv_backward,
    direct_conv_forward, im2col, matmul, nchw_to_cnhw,
};
use super::{Act, OpTape, Param, add_param_grad, check_len, unary_op, values};
use crate::error::{Error, Result};
use dfdx::prelude::HasShape;

/// Largest `in_channels * out_channels` convolved directly rather than by im2col and a gemm.
const DIRECT_MAX_CHANNELS: usize = 2;

/// What a convolution computes, apart from its batch and image size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2dGeometry {
    /// A convolution from `in_channels` to `out_channels`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Self {
        Conv2dGeometry {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
        }
    }

    /// Values in the weight (`out x in x k x k`).
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.in_channels * self.kernel * self.kernel
    }

    /// The window over an `in_channels x height x width` input, or an error saying why not.
    pub fn window(&self, channels: usize, height: usize, width: usize) -> Result<Window> {
        if channels != self.in_channels {
            return Err(Error::Shape(format!(
                "conv2d expects {} input channels, got {channels}",
                self.in_channels
            )));
        }
        Window::new(
            channels,
            height,
            width,
            self.kernel,
            self.stride,
            self.padding,
        )
        .ok_or_else(|| {
            Error::Shape(format!(
                "conv2d kernel {} (stride {}, padding {}) does not fit a {height}x{width} input",
                self.kernel, self.stride, self.padding
            ))
        })
    }
}

/// Convolves `x` `(N, in, H, W)` with `weight` `(out, in, k, k)` and adds `bias` `(out)`,
/// giving `(N, out, H', W')`. With `input_grad` false the backward pass skips `x`'s gradient
/// (for a network's first layer, whose input is data).
pub fn conv2d<T: OpTape>(
    x: Act<T>,
    weight: &Param,
    bias: &Param,
    geom: Conv2dGeometry,
    input_grad: bool,
) -> Result<Act<T>> {
    let (n, c, h, w) = *x.shape();
    let win = geom.window(c, h, w)?;
    check_len("conv2d weight", weight, geom.weight_len())?;
    check_len("conv2d bias", bias, geom.out_channels)?;
    let (out_c, positions, patch) = (geom.out_channels, win.positions(), win.patch());

    let np = n * positions;

    if geom.stride == 1
        && geom.kernel <= DIRECT_MAX_KERNEL
        && geom.in_channels * geom.out_channels <= DIRECT_MAX_CHANNELS
    {
        // So few channels that a gemm would be a matrix-vector product: convolve directly.
        let (xv, wv) = (values(&x), values(weight));
        let out = direct_conv_forward(&xv, n, &win, &wv, &values(bias), out_c);
        let (weight, bias) = (weight.clone(), bias.clone());
        let dims = (n, out_c, win.out_h, win.out_w);
        return Ok(unary_op(x, out, dims, move |gy, grads| {
            let (gw, gb, gx) = direct_conv_backward(&xv, gy, n, &win, &wv, out_c, input_grad);
            add_param_grad(grads, &bias, &gb)?;
            add_param_grad(grads, &weight, &gw)?;
            Ok(gx)
        }));
    }

    // Forward: one gemm for the whole batch, (out x patch) . (patch x N*P), then into NCHW.
    let mut cols = Vec::new();
    im2col(&values(&x), n, &win, &mut cols);
    let wv = values(weight);
    let mut tmp = vec![0.0; out_c * np];
    matmul(
        &mut tmp,
        MatRef::new(&wv, out_c, patch),
        MatRef::new(&cols, patch, np),
        false,
    );
    let out = cnhw_to_nchw(&tmp, n, out_c, positions, Some(&values(bias)));
    drop(tmp);

    let (weight, bias) = (weight.clone(), bias.clone());
    let dims = (n, out_c, win.out_h, win.out_w);
    Ok(unary_op(x, out, dims, move |gy, grads| {
        let gyc = nchw_to_cnhw(gy, n, out_c, positions);
        let gb: Vec<f32> = gyc.chunks_exact(np).map(|r| r.iter().sum()).collect();
        add_param_grad(grads, &bias, &gb)?;

        let gym = MatRef::new(&gyc, out_c, np);
        // The weight gradient as its transpose, (patch x N*P) . (N*P x out): the same sums,
        // but gemm runs this orientation of the long inner dimension up to twice as fast.
        let mut gwt = vec![0.0; patch * out_c];
        matmul(&mut gwt, MatRef::new(&cols, patch, np), gym.t(), false);
        let mut gw = vec![0.0; out_c * patch];
        for (t, row) in gwt.chunks_exact(out_c).enumerate() {
            for (o, v) in row.iter().enumerate() {
                gw[o * patch + t] = *v;
            }
        }
        add_param_grad(grads, &weight, &gw)?;

        if !input_grad {
            return Ok(None);
        }
        let mut gcols = cols; // reuse: cols is not needed any more
        matmul(&mut gcols, MatRef::new(&wv, out_c, patch).t(), gym, false);
        let mut gx = vec![0.0; n * win.image()];
        col2im_add(&gcols, n, &win, &mut gx);
        Ok(Some(gx))
    }))
}
