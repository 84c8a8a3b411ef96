//! 2-D convolution (PyTorch's `Conv2d`, square kernel, zero padding).

use super::im2col::{MatRef, Window, cnhw_to_nchw, col2im_add, im2col, matmul, nchw_to_cnhw};
use super::lanes::{self, LaneNorm};
use super::{Act, OpTape, Param, add_param_grad, check_len, unary_op, values};
use super::{Activation, PoolKind, activation, pool2d};
use super::{BatchNormState, batch_norm2d};
use crate::error::{Error, Result};
use crate::kernels::{Epilogue, Norm};
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
    let layer = ChainLayer {
        weight,
        bias,
        geom,
        norm: None,
        epi,
    };
    conv2d_chain(x, &[layer], input_grad)
}

/// One convolution of [`conv2d_chain`], with an optional batch norm and its epilogue.
#[derive(Clone, Copy, Debug)]
pub struct ChainLayer<'a> {
    pub weight: &'a Param,
    pub bias: &'a Param,
    pub geom: Conv2dGeometry,
    pub norm: Option<ChainNorm<'a>>,
    pub epi: Epilogue,
}

/// A batch norm between a chained convolution and its epilogue: [`batch_norm2d`]'s
/// parameters, running statistics and mode.
#[derive(Clone, Copy, Debug)]
pub struct ChainNorm<'a> {
    pub gamma: &'a Param,
    pub beta: &'a Param,
    pub state: &'a BatchNormState,
    pub training: bool,
}

/// [`conv2d_fused`] layers, each with an optional batch norm before its epilogue, one after
/// another as one op: the same numbers as the layers one by one (a batch norm's up to the
/// order of its sums). For stride-1 layers (as the compiler chains them) the activations
/// between them never leave the kernels' layout, and a norm costs no pass of its own; a chain
/// of other layers runs them one by one.
pub fn conv2d_chain<T: OpTape>(
    x: Act<T>,
    layers: &[ChainLayer],
    input_grad: bool,
) -> Result<Act<T>> {
    let (n, c, h, w) = *x.shape();
    // Every layer's window, checked before anything runs.
    let mut wins = Vec::with_capacity(layers.len());
    let mut side = (c, h, w);
    for l in layers {
        let win = l.geom.window(side.0, side.1, side.2)?;
        check_len("conv2d weight", l.weight, l.geom.weight_len())?;
        check_len("conv2d bias", l.bias, l.geom.out_channels)?;
        if let Some(nm) = &l.norm {
            check_len("batch_norm gamma", nm.gamma, l.geom.out_channels)?;
            check_len("batch_norm beta", nm.beta, l.geom.out_channels)?;
        }
        if l.epi.max_pool2 && (win.out_h < 2 || win.out_w < 2) {
            return Err(Error::Shape(format!(
                "pool kernel 2 does not fit a {}x{} input",
                win.out_h, win.out_w
            )));
        }
        side = (
            l.geom.out_channels,
            l.epi.side(win.out_h),
            l.epi.side(win.out_w),
        );
        wins.push(win);
    }
    if !layers.iter().all(|l| l.geom.stride == 1) {
        let mut y = x;
        for (i, (l, win)) in layers.iter().zip(wins).enumerate() {
            y = conv2d_one(y, l, win, input_grad || i > 0)?;
        }
        return Ok(y);
    }
    // Stride 1 (every seed layer): register-blocked kernels on 16 images at a time.
    let params: Vec<Owned> = layers.iter().map(Owned::new).collect();
    let (out, saved) =
        lanes::conv_forward(&values(&x), n, &lanes_layers(&params, &wins), T::OWNS_TAPE);
    for (l, st) in layers.iter().zip(&saved.stats) {
        if let (Some(nm), Some(st)) = (&l.norm, st) {
            nm.state.update(&st.mean, &st.var, st.count);
        }
    }
    let dims = (n, side.0, side.1, side.2);
    Ok(unary_op(x, out, dims, move |gy, grads| {
        let layers = lanes_layers(&params, &wins);
        let (grads_w, gx) = lanes::conv_backward(&saved, gy, n, &layers, input_grad);
        for (p, (gw, gb, gn)) in params.iter().zip(grads_w) {
            add_param_grad(grads, &p.bias, &gb)?;
            add_param_grad(grads, &p.weight, &gw)?;
            if let (Some(nm), Some((gg, gbeta))) = (&p.norm, gn) {
                add_param_grad(grads, &nm.gamma, &gg)?;
                add_param_grad(grads, &nm.beta, &gbeta)?;
            }
        }
        Ok(gx)
    }))
}

/// A chained layer's parameters as the backward pass keeps them.
struct Owned {
    weight: Param,
    bias: Param,
    epi: Epilogue,
    norm: Option<OwnedNorm>,
}

/// A chained norm's parameters, and its fixed statistics when it does not use the batch's.
struct OwnedNorm {
    gamma: Param,
    beta: Param,
    eps: f32,
    /// `(mean, 1 / sqrt(var + eps))` of the running statistics, for evaluation.
    fixed: Option<(Vec<f32>, Vec<f32>)>,
}

impl Owned {
    fn new(l: &ChainLayer) -> Self {
        let norm = l.norm.map(|nm| OwnedNorm {
            gamma: nm.gamma.clone(),
            beta: nm.beta.clone(),
            eps: nm.state.eps,
            fixed: (!nm.training).then(|| nm.state.fixed()),
        });
        Owned {
            weight: l.weight.clone(),
            bias: l.bias.clone(),
            epi: l.epi,
            norm,
        }
    }
}

/// The layers as the lane kernels take them: windows, weights, biases, norms, epilogues.
fn lanes_layers<'a>(params: &'a [Owned], wins: &[Window]) -> Vec<lanes::ConvLayer<'a>> {
    params
        .iter()
        .zip(wins)
        .map(|(p, &win)| lanes::ConvLayer {
            win,
            w: p.weight.values(),
            bias: p.bias.values(),
            norm: p.norm.as_ref().map(|nm| {
                let (gamma, beta) = (nm.gamma.values(), nm.beta.values());
                match &nm.fixed {
                    Some((mean, inv_std)) => LaneNorm::Fixed(Norm {
                        mean,
                        inv_std,
                        gamma,
                        beta,
                    }),
                    None => LaneNorm::Batch {
                        gamma,
                        beta,
                        eps: nm.eps,
                    },
                }
            }),
            epi: p.epi,
        })
        .collect()
}

/// One layer of a chain that does not run in the lane layout: im2col for other strides
/// (then the norm and epilogue as layers of their own), the lane kernels for stride 1.
fn conv2d_one<T: OpTape>(
    x: Act<T>,
    l: &ChainLayer,
    win: Window,
    input_grad: bool,
) -> Result<Act<T>> {
    if l.geom.stride == 1 {
        return conv2d_chain(x, std::slice::from_ref(l), input_grad);
    }
    let mut y = conv2d_im2col(x, l.weight, l.bias, l.geom, win, input_grad);
    if let Some(nm) = &l.norm {
        y = batch_norm2d(y, nm.gamma, nm.beta, nm.state, nm.training)?;
    }
    if l.epi.relu {
        y = activation(y, Activation::Relu);
    }
    if l.epi.max_pool2 {
        y = pool2d(y, PoolKind::Max, 2, 2)?;
    }
    Ok(y)
}

/// Any stride: im2col, then one matrix product for the whole batch, (out x patch) . (patch x N*P).
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
        // The weight gradient as its transpose, (patch x N*P) . (N*P x out): the output
        // channels, often fewer than 16, then fill one vector of positions.
        let mut gwt = vec![0.0; patch * out_c];
        matmul(&mut gwt, MatRef::new(&cols, patch, np), gym.t());
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
        matmul(&mut gcols, MatRef::new(wv, out_c, patch).t(), gym);
        let mut gx = vec![0.0; n * win.image()];
        col2im_add(&gcols, n, &win, &mut gx);
        Ok(Some(gx))
    })
}
