//! 2-D convolution (PyTorch's `Conv2d`, square kernel, zero padding).

use super::kernels::{MatRef, Window, cnhw_to_nchw, col2im_add, im2col, matmul, nchw_to_cnhw};
use super::lanes::{self, Epilogue};
use super::{Act, OpTape, Param, add_param_grad, check_len, unary_op, values};
use super::{Activation, PoolKind, activation, pool2d};
use crate::error::{Error, Result};
use dfdx::prelude::HasShape;

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
    conv2d_fused(x, weight, bias, geom, Epilogue::default(), input_grad)
}

/// [`conv2d`], then a ReLU and/or a 2x2 max pool (stride 2) as `epi` says: the same numbers
/// as the three layers one after another, but for stride 1 the convolution's full-size output
/// is never stored (the compiler fuses these layers when a spec writes them in a row).
pub fn conv2d_fused<T: OpTape>(
    x: Act<T>,
    weight: &Param,
    bias: &Param,
    geom: Conv2dGeometry,
    epi: Epilogue,
    input_grad: bool,
) -> Result<Act<T>> {
    let (n, c, h, w) = *x.shape();
    let win = geom.window(c, h, w)?;
    check_len("conv2d weight", weight, geom.weight_len())?;
    check_len("conv2d bias", bias, geom.out_channels)?;
    if epi.max_pool2 && (win.out_h < 2 || win.out_w < 2) {
        return Err(Error::Shape(format!(
            "pool kernel 2 does not fit a {}x{} input",
            win.out_h, win.out_w
        )));
    }
    if geom.stride != 1 {
        let mut y = conv2d_im2col(x, weight, bias, geom, win, input_grad);
        if epi.relu {
            y = activation(y, Activation::Relu);
        }
        if epi.max_pool2 {
            y = pool2d(y, PoolKind::Max, 2, 2)?;
        }
        return Ok(y);
    }
    // Stride 1 (every seed layer): register-blocked kernels on 16 images at a time.
    let out_c = geom.out_channels;
    let (out, saved) = lanes::conv_forward(
        &values(&x),
        n,
        &win,
        weight.values(),
        bias.values(),
        epi,
        T::OWNS_TAPE,
    );
    let (weight, bias) = (weight.clone(), bias.clone());
    let dims = (n, out_c, epi.side(win.out_h), epi.side(win.out_w));
    Ok(unary_op(x, out, dims, move |gy, grads| {
        let wv = weight.values();
        let (gw, gb, gx) = lanes::conv_backward(&saved, gy, n, &win, wv, out_c, input_grad);
        add_param_grad(grads, &bias, &gb)?;
        add_param_grad(grads, &weight, &gw)?;
        Ok(gx)
    }))
}

/// Any stride: im2col, then one gemm for the whole batch, (out x patch) . (patch x N*P).
fn conv2d_im2col<T: OpTape>(
    x: Act<T>,
    weight: &Param,
    bias: &Param,
    geom: Conv2dGeometry,
    win: Window,
    input_grad: bool,
) -> Act<T> {
    let n = x.shape().0;
    let (out_c, positions, patch) = (geom.out_channels, win.positions(), win.patch());
    let np = n * positions;
    let mut cols = Vec::new();
    im2col(&values(&x), n, &win, &mut cols);
    let mut tmp = vec![0.0; out_c * np];
    matmul(
        &mut tmp,
        MatRef::new(weight.values(), out_c, patch),
        MatRef::new(&cols, patch, np),
        false,
    );
    let out = cnhw_to_nchw(&tmp, n, out_c, positions, Some(bias.values()));
    drop(tmp);

    let (weight, bias) = (weight.clone(), bias.clone());
    let dims = (n, out_c, win.out_h, win.out_w);
    unary_op(x, out, dims, move |gy, grads| {
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
        let wv = weight.values();
        matmul(&mut gcols, MatRef::new(wv, out_c, patch).t(), gym, false);
        let mut gx = vec![0.0; n * win.image()];
        col2im_add(&gcols, n, &win, &mut gx);
        Ok(Some(gx))
    })
}
