//! A runtime stack of layers whose parameters live in the network's flat store.

use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::ops::{
    self, Act, Activation, BatchNormState, ChainLayer, ChainNorm, Conv2dGeometry,
    ConvTranspose2dGeometry, Epilogue, OpTape, Param, PoolKind,
};

use super::plan::{LayerOp, LayerPlan, PlainOp};

/// A convolution, referring to its weight and bias by index in the store, with the batch
/// norm, ReLU and 2x2 max pool that follow it in the spec folded in.
#[derive(Debug, Clone)]
struct Conv {
    geom: Conv2dGeometry,
    weight: usize,
    bias: usize,
    norm: Option<Norm>,
    epi: Epilogue,
}

/// A batch norm: its scale and shift by index in the store, and its running statistics.
#[derive(Debug, Clone)]
struct Norm {
    scale: usize,
    shift: usize,
    state: BatchNormState,
}

/// One layer as it runs, referring to its parameters by index in the store.
#[derive(Debug, Clone)]
enum Layer {
    /// Convolutions in a row, run as one op (see [`push_fused`]).
    Conv2d(Vec<Conv>),
    ConvTranspose2d {
        geom: ConvTranspose2dGeometry,
        weight: usize,
        bias: usize,
    },
    BatchNorm(Norm),
    Linear {
        out: usize,
        weight: usize,
        bias: usize,
    },
    Plain(PlainOp),
}

/// Runs a layer without parameters.
fn plain<T: OpTape>(x: Act<T>, op: PlainOp, training: bool) -> Result<Act<T>> {
    Ok(match op {
        PlainOp::Pool {
            kind,
            kernel,
            stride,
        } => ops::pool2d(x, kind, kernel, stride)?,
        PlainOp::Upsample { scale } => ops::upsample_nearest(x, scale)?,
        PlainOp::Activation(kind) => ops::activation(x, kind),
        PlainOp::Threshold { threshold, value } => ops::threshold(x, threshold, value),
        PlainOp::Dropout { p } if training => ops::dropout(x, f64::from(p)),
        PlainOp::Dropout { .. } => x,
        PlainOp::Flatten => {
            let (n, c, h, w) = *x.shape();
            x.reshape_like(&(n, c * h * w, 1, 1))
        }
    })
}

/// A stack of layers.
#[derive(Debug, Clone)]
pub struct Sequential {
    layers: Vec<Layer>,
}

/// Adds a parameter of `len` values drawn uniformly from `(-bound, bound)` to the store.
fn uniform(
    store: &mut Vec<Param>,
    dev: &Cpu,
    rng: &mut ChaCha8Rng,
    len: usize,
    bound: f32,
) -> usize {
    let v: Vec<f32> = (0..len).map(|_| rng.gen_range(-bound..bound)).collect();
    store.push(Param::new(dev, v));
    store.len() - 1
}

/// Adds a parameter filled with `value`.
fn constant(store: &mut Vec<Param>, dev: &Cpu, len: usize, value: f32) -> usize {
    store.push(Param::new(dev, vec![value; len]));
    store.len() - 1
}

/// Appends `layer`, folding into a convolution right before it a batch norm (before
/// anything else follows the convolution), a ReLU, and a 2x2 max pool (stride 2): the same
/// numbers (a norm's up to the order of its sums), computed without storing the
/// convolution's full-size output. A threshold at 0 with value 0 is a ReLU (the same
/// outputs, NaN included, and the same gradient mask), so it folds the same way.
///
/// A ReLU after the pool folds too: max and ReLU commute (`relu(max(a)) == max(relu(a))`, and
/// the gradient reaches the same element or none), so the fused convolution applies ReLU
/// first. The one difference is a NaN in a pooling window among numbers: the layers as
/// written pool it and zero it, the fused form zeroes it and pools the rest. A convolution
/// outputs NaN only once weights or activations are no longer finite: a diverging round.
///
/// A stride-1 convolution right after stride-1 convolutions joins them: the op runs the
/// chain without its activations leaving the kernels' layout in between.
fn push_fused(layers: &mut Vec<Layer>, layer: Layer) {
    let layer = match (layers.last_mut(), layer) {
        (Some(Layer::Conv2d(chain)), Layer::Conv2d(next)) => {
            let chains = |c: &Conv| c.geom.stride == 1;
            if chain.iter().all(chains) && next.iter().all(chains) {
                chain.extend(next);
                return;
            }
            Layer::Conv2d(next)
        }
        (Some(Layer::Conv2d(chain)), Layer::BatchNorm(norm)) => {
            let conv = chain.last_mut().expect("a chain holds a convolution");
            let fits = conv.geom.out_channels == norm.state.mean.borrow().len();
            if fits && conv.norm.is_none() && conv.epi == Epilogue::default() {
                conv.norm = Some(norm);
                return;
            }
            Layer::BatchNorm(norm)
        }
        (_, layer) => layer,
    };
    if let Some(Layer::Conv2d(chain)) = layers.last_mut() {
        let epi = &mut chain.last_mut().expect("a chain holds a convolution").epi;
        let relu = match layer {
            Layer::Plain(PlainOp::Activation(Activation::Relu)) => true,
            Layer::Plain(PlainOp::Threshold { threshold, value }) => {
                threshold == 0.0 && value == 0.0
            }
            _ => false,
        };
        let pool2 = matches!(
            layer,
            Layer::Plain(PlainOp::Pool {
                kind: PoolKind::Max,
                kernel: 2,
                stride: 2
            })
        );
        if relu && !epi.relu {
            epi.relu = true;
            return;
        }
        if pool2 && !epi.max_pool2 {
            epi.max_pool2 = true;
            return;
        }
    }
    layers.push(layer);
}

impl Sequential {
    /// The running statistics of its batch norms, in order.
    pub fn norms(&self) -> Vec<&BatchNormState> {
        let mut out = Vec::new();
        for l in &self.layers {
            match l {
                Layer::BatchNorm(n) => out.push(&n.state),
                Layer::Conv2d(chain) => {
                    out.extend(chain.iter().filter_map(|c| Some(&c.norm.as_ref()?.state)))
                }
                _ => {}
            }
        }
        out
    }

    /// Builds the planned `layers`, initializing parameters like PyTorch's defaults (weights
    /// and biases uniform in `±1/sqrt(fan_in)`) from `rng`.
    pub fn new(
        layers: &[LayerPlan],
        store: &mut Vec<Param>,
        dev: &Cpu,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let mut built = Vec::new();
        for plan in layers {
            let layer = match plan.op {
                LayerOp::Conv2d(geom) => {
                    let fan_in = geom.in_channels * geom.kernel * geom.kernel;
                    let bound = 1.0 / (fan_in as f32).sqrt();
                    let weight = uniform(store, dev, rng, geom.weight_len(), bound);
                    let bias = uniform(store, dev, rng, geom.out_channels, bound);
                    Layer::Conv2d(vec![Conv {
                        geom,
                        weight,
                        bias,
                        norm: None,
                        epi: Epilogue::default(),
                    }])
                }
                LayerOp::ConvTranspose2d(geom) => {
                    // PyTorch takes fan_in from weight dim 1, which is `out` here.
                    let fan_in = geom.out_channels * geom.kernel * geom.kernel;
                    let bound = 1.0 / (fan_in as f32).sqrt();
                    let weight = uniform(store, dev, rng, geom.weight_len(), bound);
                    let bias = uniform(store, dev, rng, geom.out_channels, bound);
                    Layer::ConvTranspose2d { geom, weight, bias }
                }
                LayerOp::BatchNorm {
                    channels,
                    momentum,
                    eps,
                } => Layer::BatchNorm(Norm {
                    scale: constant(store, dev, channels, 1.0),
                    shift: constant(store, dev, channels, 0.0),
                    state: BatchNormState::new(channels, momentum, eps),
                }),
                LayerOp::Linear { input, out } => {
                    let bound = 1.0 / (input as f32).sqrt();
                    let weight = uniform(store, dev, rng, out * input, bound);
                    let bias = uniform(store, dev, rng, out, bound);
                    Layer::Linear { out, weight, bias }
                }
                LayerOp::Plain(op) => Layer::Plain(op),
            };
            push_fused(&mut built, layer);
        }
        Sequential { layers: built }
    }

    /// Runs the stack on `x` `(N, C, H, W)`. `training` turns dropout on and makes batch norm
    /// use (and update) batch statistics. When `x` is data (`from_data`), the first layer skips
    /// computing a gradient nobody reads.
    pub fn forward<T: OpTape>(
        &self,
        mut x: Act<T>,
        params: &[Param],
        training: bool,
        from_data: bool,
    ) -> Result<Act<T>> {
        for (i, layer) in self.layers.iter().enumerate() {
            let input_grad = i > 0 || !from_data;
            x = match layer {
                Layer::Conv2d(chain) => {
                    let chain: Vec<ChainLayer> = chain
                        .iter()
                        .map(|c| ChainLayer {
                            weight: &params[c.weight],
                            bias: &params[c.bias],
                            geom: c.geom,
                            norm: c.norm.as_ref().map(|n| ChainNorm {
                                gamma: &params[n.scale],
                                beta: &params[n.shift],
                                state: &n.state,
                                training,
                            }),
                            epi: c.epi,
                        })
                        .collect();
                    ops::conv2d_chain(x, &chain, input_grad)?
                }
                Layer::ConvTranspose2d { geom, weight, bias } => {
                    ops::conv_transpose2d(x, &params[*weight], &params[*bias], *geom, input_grad)?
                }
                Layer::BatchNorm(n) => {
                    ops::batch_norm2d(x, &params[n.scale], &params[n.shift], &n.state, training)?
                }
                Layer::Linear { out, weight, bias } => {
                    ops::linear(x, &params[*weight], &params[*bias], *out, input_grad)?
                }
                Layer::Plain(op) => plain(x, *op, training)?,
            };
        }
        Ok(x)
    }
}
