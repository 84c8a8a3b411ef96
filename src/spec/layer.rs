//! The layers a spec's stacks are made of, as written in TOML.

use serde::{Deserialize, Deserializer, Serialize};

/// A spec's real number: read as written (64-bit) and refused unless it is finite and fits a
/// 32-bit float without becoming infinite or zero, so `1e300` is not silently `inf`, nor
/// `1e-50` silently `0`, and `nan` never reaches a network.
pub(crate) fn real<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    let v = f64::deserialize(d)?;
    let small = v != 0.0 && v.abs() < f64::from(f32::MIN_POSITIVE);
    if !v.is_finite() || v.abs() > f64::from(f32::MAX) || small {
        return Err(serde::de::Error::custom(format!(
            "{v:e} is not a finite number within the range of a 32-bit float \
             (about 1.2e-38 to 3.4e38 in size)"
        )));
    }
    Ok(v as f32)
}

/// [`real`] for an optional key.
pub(crate) fn real_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
    real(d).map(Some)
}

/// Two [`real`]s, e.g. Adam's betas.
pub(crate) fn real_pair<'de, D: Deserializer<'de>>(d: D) -> Result<[f32; 2], D::Error> {
    #[derive(Deserialize)]
    struct Real(#[serde(deserialize_with = "real")] f32);
    let [a, b] = <[Real; 2]>::deserialize(d)?;
    Ok([a.0, b.0])
}

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
        #[serde(deserialize_with = "real")]
        threshold: f32,
        #[serde(deserialize_with = "real")]
        value: f32,
    },
    /// Zeroes each value with probability `p` (default 0.5) while training.
    Dropout {
        #[serde(default = "half", deserialize_with = "real")]
        p: f32,
    },
    /// Per-channel batch normalization with learned scale and shift.
    BatchNorm {
        #[serde(default = "bn_momentum", deserialize_with = "real")]
        momentum: f32,
        #[serde(default = "bn_eps", deserialize_with = "real")]
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
