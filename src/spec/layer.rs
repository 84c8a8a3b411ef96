//! The layers a spec's stacks are made of, as written in TOML.

use serde::{Deserialize, Serialize};

fn one() -> usize {
    1
}
fn two() -> usize {
    2
}
fn half() -> f32 {
    0.5
}
fn bn_momentum() -> f32 {
    0.1
}
fn bn_eps() -> f32 {
    1e-5
}

/// One layer of a stack: `{ layer = "conv2d", out = 6, kernel = 3 }`. Defaults follow PyTorch.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "layer", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// Convolution to `out` channels; `stride` defaults to 1, `padding` to 0. `in`, when given,
    /// is checked against the channels that arrive.
    Conv2d {
        #[serde(rename = "in")]
        input: Option<usize>,
        out: usize,
        kernel: usize,
        #[serde(default = "one")]
        stride: usize,
        #[serde(default)]
        padding: usize,
    },
    /// Transposed convolution to `out` channels; output side `(in-1)*stride - 2*padding + kernel`.
    ConvTranspose2d {
        out: usize,
        kernel: usize,
        #[serde(default = "one")]
        stride: usize,
        #[serde(default)]
        padding: usize,
    },
    /// Max pooling; `stride` defaults to `kernel`.
    MaxPool2d {
        kernel: usize,
        stride: Option<usize>,
    },
    /// Average pooling; `stride` defaults to `kernel`.
    AvgPool2d {
        kernel: usize,
        stride: Option<usize>,
    },
    /// Nearest-neighbour upsampling by an integer `scale` (default 2).
    Upsample {
        #[serde(default = "two")]
        scale: usize,
    },
    Relu,
    Tanh,
    Sigmoid,
    /// `x` where `x > threshold`, else `value` (PyTorch's `Threshold`).
    Threshold {
        threshold: f32,
        value: f32,
    },
    /// Zeroes each value with probability `p` (default 0.5) while training.
    Dropout {
        #[serde(default = "half")]
        p: f32,
    },
    /// Per-channel batch normalization with learned scale and shift.
    BatchNorm {
        #[serde(default = "bn_momentum")]
        momentum: f32,
        #[serde(default = "bn_eps")]
        eps: f32,
    },
    /// Reads `(C, H, W)` as `C*H*W` features.
    Flatten,
    /// Fully connected layer to `out` features; its input must be flat. `in`, when given, is
    /// checked against the features that arrive.
    Linear {
        #[serde(rename = "in")]
        input: Option<usize>,
        out: usize,
    },
}

impl LayerSpec {
    /// The layer's name as written in specs.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Conv2d { .. } => "conv2d",
            LayerSpec::ConvTranspose2d { .. } => "conv_transpose2d",
            LayerSpec::MaxPool2d { .. } => "max_pool2d",
            LayerSpec::AvgPool2d { .. } => "avg_pool2d",
            LayerSpec::Upsample { .. } => "upsample",
            LayerSpec::Relu => "relu",
            LayerSpec::Tanh => "tanh",
            LayerSpec::Sigmoid => "sigmoid",
            LayerSpec::Threshold { .. } => "threshold",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::BatchNorm { .. } => "batch_norm",
            LayerSpec::Flatten => "flatten",
            LayerSpec::Linear { .. } => "linear",
        }
    }
}
