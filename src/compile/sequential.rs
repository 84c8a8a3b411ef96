//! A runtime stack of layers whose parameters live in the network's flat store.

use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::ops::{
    self, Act, Activation, BatchNormState, ChainLayer, Conv2dGeometry, ConvTranspose2dGeometry,
    Epilogue, OpTape, Param, PoolKind,
};
use crate::spec::LayerSpec;

use super::shape::{Shape3, infer_layer};

/// A convolution, referring to its weight and bias by index in the store, with the ReLU and
/// 2x2 max pool that follow it in the spec folded in.
#[derive(Debug, Clone, Copy)]
struct Conv {
    geom: Conv2dGeometry,
    weight: usize,
    bias: usize,
    epi: Epilogue,
}

/// One layer, referring to its parameters by index in the store.
#[derive(Debug, Clone)]
enum Layer {
    /// Convolutions in a row, run as one op (see [`push_fused`]).
    Conv2d(Vec<Conv>),
    ConvTranspose2d(ConvTranspose2dGeometry, usize, usize),
    Pool(PoolKind, usize, usize),
    Upsample(usize),
    Activation(Activation),
    Threshold(f32, f32),
    Dropout(f32),
    BatchNorm(usize, usize, BatchNormState),
    Flatten,
    Linear(usize, usize, usize),
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

/// Appends `layer`, folding a ReLU into the convolution right before it, and a 2x2 max pool
/// (stride 2) into a convolution before it (and its ReLU): the same numbers, computed without
/// storing the convolution's full-size output. A threshold at 0 with value 0 is a ReLU (the
/// same outputs, NaN included, and the same gradient mask), so it folds the same way.
///
/// A ReLU after the pool folds too: max and ReLU commute (`relu(max(a)) == max(relu(a))`, and
/// the gradient reaches the same element or none), so the fused convolution applies ReLU
/// first. The one difference is a NaN in a pooling window among numbers: the layers as
/// written pool it and zero it, the fused form zeroes it and pools the rest. A convolution
/// outputs NaN only once weights or activations are no longer finite: a diverging round.
///
/// A stride-1, unpadded convolution right after stride-1 convolutions joins them: the op
/// runs the chain without its activations leaving the kernels' layout in between.
fn push_fused(layers: &mut Vec<Layer>, layer: Layer) {
    if let (Some(Layer::Conv2d(chain)), Layer::Conv2d(next)) = (layers.last_mut(), &layer) {
        let chains = |c: &Conv| c.geom.stride == 1;
        if chain.iter().all(chains) && next.iter().all(|c| chains(c) && c.geom.padding == 0) {
            chain.extend_from_slice(next);
            return;
        }
    }
    if let Some(Layer::Conv2d(chain)) = layers.last_mut() {
        let epi = &mut chain.last_mut().expect("a chain holds a convolution").epi;
        let relu = match layer {
            Layer::Activation(Activation::Relu) => true,
            Layer::Threshold(t, v) => t == 0.0 && v == 0.0,
            _ => false,
        };
        match layer {
            _ if relu && !epi.relu => {
                epi.relu = true;
                return;
            }
            Layer::Pool(PoolKind::Max, 2, 2) if !epi.max_pool2 => {
                epi.max_pool2 = true;
                return;
            }
            _ => {}
        }
    }
    layers.push(layer);
}

impl Sequential {
    /// Builds `specs` on inputs of shape `input`, initializing parameters like PyTorch's
    /// defaults (weights and biases uniform in `±1/sqrt(fan_in)`) from `rng`. The specs must
    /// already have passed [`super::plan`].
    pub fn new(
        specs: &[LayerSpec],
        input: Shape3,
        store: &mut Vec<Param>,
        dev: &Cpu,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let mut shape = input;
        let mut layers = Vec::new();
        for spec in specs {
            let (c, _, _) = shape;
            let layer = match *spec {
                LayerSpec::Conv2d {
                    out,
                    kernel,
                    stride,
                    padding,
                    ..
                } => {
                    let geom = Conv2dGeometry {
                        in_channels: c,
                        out_channels: out,
                        kernel,
                        stride,
                        padding,
                    };
                    let bound = 1.0 / ((c * kernel * kernel) as f32).sqrt();
                    let weight = uniform(store, dev, rng, geom.weight_len(), bound);
                    let bias = uniform(store, dev, rng, out, bound);
                    Layer::Conv2d(vec![Conv {
                        geom,
                        weight,
                        bias,
                        epi: Epilogue::default(),
                    }])
                }
                LayerSpec::ConvTranspose2d {
                    out,
                    kernel,
                    stride,
                    padding,
                } => {
                    let geom = ConvTranspose2dGeometry {
                        in_channels: c,
                        out_channels: out,
                        kernel,
                        stride,
                        padding,
                    };
                    // PyTorch takes fan_in from weight dim 1, which is `out` here.
                    let bound = 1.0 / ((out * kernel * kernel) as f32).sqrt();
                    let w = uniform(store, dev, rng, geom.weight_len(), bound);
                    let b = uniform(store, dev, rng, out, bound);
                    Layer::ConvTranspose2d(geom, w, b)
                }
                LayerSpec::MaxPool2d { kernel, stride } => {
                    Layer::Pool(PoolKind::Max, kernel, stride.unwrap_or(kernel))
                }
                LayerSpec::AvgPool2d { kernel, stride } => {
                    Layer::Pool(PoolKind::Avg, kernel, stride.unwrap_or(kernel))
                }
                LayerSpec::Upsample { scale } => Layer::Upsample(scale),
                LayerSpec::Relu => Layer::Activation(Activation::Relu),
                LayerSpec::Tanh => Layer::Activation(Activation::Tanh),
                LayerSpec::Sigmoid => Layer::Activation(Activation::Sigmoid),
                LayerSpec::Threshold { threshold, value } => Layer::Threshold(threshold, value),
                LayerSpec::Dropout { p } => Layer::Dropout(p),
                LayerSpec::BatchNorm { momentum, eps } => Layer::BatchNorm(
                    constant(store, dev, c, 1.0),
                    constant(store, dev, c, 0.0),
                    BatchNormState::new(c, momentum, eps),
                ),
                LayerSpec::Flatten => Layer::Flatten,
                LayerSpec::Linear { out, .. } => {
                    let bound = 1.0 / (c as f32).sqrt();
                    let w = uniform(store, dev, rng, out * c, bound);
                    let b = uniform(store, dev, rng, out, bound);
                    Layer::Linear(out, w, b)
                }
            };
            push_fused(&mut layers, layer);
            shape = infer_layer(spec, shape)
                .expect("the compiler plans a spec before building it")
                .0;
        }
        Sequential { layers }
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
                            epi: c.epi,
                        })
                        .collect();
                    ops::conv2d_chain(x, &chain, input_grad)?
                }
                Layer::ConvTranspose2d(g, w, b) => {
                    ops::conv_transpose2d(x, &params[*w], &params[*b], *g, input_grad)?
                }
                Layer::Pool(kind, k, s) => ops::pool2d(x, *kind, *k, *s)?,
                Layer::Upsample(s) => ops::upsample_nearest(x, *s)?,
                Layer::Activation(kind) => ops::activation(x, *kind),
                Layer::Threshold(t, v) => ops::threshold(x, *t, *v),
                Layer::Dropout(p) if training => x.dropout(*p),
                Layer::Dropout(_) => x,
                Layer::BatchNorm(g, b, state) => {
                    ops::batch_norm2d(x, &params[*g], &params[*b], state, training)?
                }
                Layer::Flatten => {
                    let (n, c, h, w) = *x.shape();
                    x.reshape_like(&(n, c * h * w, 1, 1))
                }
                Layer::Linear(out, w, b) => {
                    ops::linear(x, &params[*w], &params[*b], *out, input_grad)?
                }
            };
        }
        Ok(x)
    }
}
