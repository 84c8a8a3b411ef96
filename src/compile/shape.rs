//! Shape inference and parameter counting, done before anything runs.

use crate::error::{Error, Result};
use crate::ops::{Conv2dGeometry, ConvTranspose2dGeometry, pool_out_side};
use crate::spec::{LayerSpec, Spec, Stack};

/// The shape of one sample: `(channels, height, width)`; flat features are `(F, 1, 1)`.
pub type Shape3 = (usize, usize, usize);

/// One layer as the compiler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlan {
    pub kind: &'static str,
    pub input: Shape3,
    pub output: Shape3,
    /// Trainable values (weights and biases).
    pub params: usize,
}

/// Renders a shape as `6x12x12`, or `256` when flat.
pub fn show(s: Shape3) -> String {
    if s.1 == 1 && s.2 == 1 {
        s.0.to_string()
    } else {
        format!("{}x{}x{}", s.0, s.1, s.2)
    }
}

/// Largest number of values one sample may have after any layer: far above what a study of
/// small networks needs, and low enough that a typo cannot exhaust memory.
pub const MAX_VALUES: usize = 1 << 24;
/// Largest number of trainable values one layer may have.
pub const MAX_PARAMS: usize = 1 << 26;

fn checked(a: usize, b: usize) -> std::result::Result<usize, String> {
    a.checked_mul(b)
        .ok_or_else(|| format!("sizes overflow ({a} x {b})"))
}

/// The output shape and parameter count of `layer` on `input`, or why it does not fit.
pub fn infer_layer(
    layer: &LayerSpec,
    input: Shape3,
) -> std::result::Result<(Shape3, usize), String> {
    let (c, h, w) = input;
    let flat = h == 1 && w == 1;
    match *layer {
        LayerSpec::Conv2d {
            input: expected,
            out,
            kernel,
            stride,
            padding,
        } => {
            if let Some(e) = expected.filter(|&e| e != c) {
                return Err(format!(
                    "expects {e} input channels, got {c} ({})",
                    show(input)
                ));
            }
            if out == 0 {
                return Err("out must be at least 1".into());
            }
            let geom = Conv2dGeometry {
                in_channels: c,
                out_channels: out,
                kernel,
                stride,
                padding,
            };
            let win = geom
                .window(c, h, w)
                .map_err(|e| format!("{e} ({})", show(input)))?;
            Ok(((out, win.out_h, win.out_w), geom.weight_len() + out))
        }
        LayerSpec::ConvTranspose2d {
            out,
            kernel,
            stride,
            padding,
        } => {
            if out == 0 {
                return Err("out must be at least 1".into());
            }
            let geom = ConvTranspose2dGeometry {
                in_channels: c,
                out_channels: out,
                kernel,
                stride,
                padding,
            };
            let win = geom
                .window(c, h, w)
                .map_err(|e| format!("{e} ({})", show(input)))?;
            Ok(((out, win.height, win.width), geom.weight_len() + out))
        }
        LayerSpec::MaxPool2d { kernel, stride } | LayerSpec::AvgPool2d { kernel, stride } => {
            let s = stride.unwrap_or(kernel);
            match (pool_out_side(h, kernel, s), pool_out_side(w, kernel, s)) {
                (Some(oh), Some(ow)) => Ok(((c, oh, ow), 0)),
                _ => Err(format!(
                    "kernel {kernel} (stride {s}) does not fit a {} input",
                    show(input)
                )),
            }
        }
        LayerSpec::Upsample { scale } => {
            if scale == 0 {
                return Err("scale must be at least 1".into());
            }
            Ok(((c, checked(h, scale)?, checked(w, scale)?), 0))
        }
        LayerSpec::Relu | LayerSpec::Tanh | LayerSpec::Sigmoid | LayerSpec::Threshold { .. } => {
            Ok((input, 0))
        }
        LayerSpec::Dropout { p } => {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("p must be in [0, 1), got {p}"));
            }
            Ok((input, 0))
        }
        LayerSpec::BatchNorm { momentum, eps } => {
            if !(0.0..=1.0).contains(&momentum) || eps.is_nan() || eps <= 0.0 {
                return Err("momentum must be in [0, 1] and eps > 0".into());
            }
            Ok((input, 2 * c))
        }
        LayerSpec::Flatten => Ok(((checked(checked(c, h)?, w)?, 1, 1), 0)),
        LayerSpec::Linear {
            input: expected,
            out,
        } => {
            if !flat {
                return Err(format!(
                    "needs flat input, got {}: add {{ layer = \"flatten\" }} before it",
                    show(input)
                ));
            }
            if let Some(e) = expected.filter(|&e| e != c) {
                return Err(format!("expects {e} input features, got {c}"));
            }
            if out == 0 {
                return Err("out must be at least 1".into());
            }
            Ok(((out, 1, 1), checked(c + 1, out)?))
        }
    }
}

/// Plans `stack` (named `key`, e.g. `model.digit`) of `spec` on `input`, requiring it to end
/// in `out` flat values. Errors name the spec, the stack, the layer's index, kind and place.
pub fn plan_stack(
    spec: &Spec,
    key: &str,
    stack: &Stack,
    input: Shape3,
    out: usize,
) -> Result<Vec<LayerPlan>> {
    let mut shape = input;
    let mut plans = Vec::with_capacity(stack.layers.len());
    for (i, layer) in stack.layers.iter().enumerate() {
        let limits = |(next, params): (Shape3, usize)| {
            let values = checked(checked(next.0, next.1)?, next.2)?;
            if values > MAX_VALUES {
                return Err(format!(
                    "gives {} values per sample ({}), above the limit of {MAX_VALUES}",
                    values,
                    show(next)
                ));
            }
            if params > MAX_PARAMS {
                return Err(format!(
                    "has {params} parameters, above the limit of {MAX_PARAMS}"
                ));
            }
            Ok((next, params))
        };
        let (next, params) = infer_layer(&layer.spec, shape)
            .and_then(limits)
            .map_err(|why| {
                Error::spec(
                    &stack.file,
                    &layer.place,
                    format!(
                        "spec {}: {key}[{i}] ({}): {why}",
                        spec.name,
                        layer.spec.kind()
                    ),
                )
            })?;
        plans.push(LayerPlan {
            kind: layer.spec.kind(),
            input: shape,
            output: next,
            params,
        });
        shape = next;
    }
    if shape != (out, 1, 1) {
        return Err(Error::spec(
            &stack.file,
            stack.layers.last().map_or("", |l| l.place.as_str()),
            format!(
                "spec {}: {key} ends in {}, it must end in {out} flat values",
                spec.name,
                show(shape)
            ),
        ));
    }
    Ok(plans)
}
