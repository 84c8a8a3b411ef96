//! The plan: every stack of a spec checked before anything runs, as typed layers with their
//! shapes and parameter counts. It is the one description `check` prints, `run` schedules and
//! the network is built from.

use crate::error::{Error, Result};
use crate::ops::{Activation, Conv2dGeometry, ConvTranspose2dGeometry, PoolKind, pool_out_side};
use crate::spec::{Compare, LayerSpec, Spec, Stack, Task, TaskKind, Topology};

/// The shape of one sample: `(channels, height, width)`; flat features are `(F, 1, 1)`.
pub type Shape3 = (usize, usize, usize);

/// What a plan is made for: the task, and the size and classes of the dataset's images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataShape {
    pub task: Task,
    /// `(height, width)` of one image as the network sees it.
    pub side: (usize, usize),
    pub classes: usize,
}

/// Largest number of values one sample may have after any layer: far above what a study of
/// small networks needs, and low enough that a typo cannot exhaust memory.
pub const MAX_VALUES: usize = 1 << 24;
/// Largest number of trainable values one layer may have.
pub const MAX_PARAMS: usize = 1 << 26;

/// A layer as it will run: its kind with every size resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LayerOp {
    Conv2d(Conv2dGeometry),
    ConvTranspose2d(ConvTranspose2dGeometry),
    BatchNorm {
        channels: usize,
        momentum: f32,
        eps: f32,
    },
    Linear {
        input: usize,
        out: usize,
    },
    /// A layer without parameters.
    Plain(PlainOp),
}

/// A layer without parameters: it runs as planned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PlainOp {
    Pool {
        kind: PoolKind,
        kernel: usize,
        stride: usize,
    },
    Upsample {
        scale: usize,
    },
    Activation(Activation),
    Threshold {
        threshold: f32,
        value: f32,
    },
    Dropout {
        p: f32,
    },
    Flatten,
}

/// One planned layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlan {
    pub op: LayerOp,
    /// The spec's name for the layer (`conv2d`, `relu`, ...).
    pub kind: &'static str,
    pub input: Shape3,
    pub output: Shape3,
    /// Trainable values (weights and biases).
    pub params: usize,
}

impl LayerPlan {
    /// The layer's weights: the parameters a value is multiplied by.
    pub fn weights(&self) -> usize {
        match self.op {
            LayerOp::Conv2d(g) => g.weight_len(),
            LayerOp::ConvTranspose2d(g) => g.weight_len(),
            LayerOp::Linear { input, out } => input * out,
            LayerOp::BatchNorm { .. } | LayerOp::Plain(_) => 0,
        }
    }
}

/// Which stack of a spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackKind {
    /// Applied to each digit (twice per pair).
    Digit,
    /// The learned comparison on both digits' logits.
    Head,
    /// The whole pair at once.
    Joint,
    /// The one image of a classification task (written as `model.digit`).
    Image,
}

impl StackKind {
    /// The spec key, as errors and `check` name it.
    pub fn key(self) -> &'static str {
        match self {
            StackKind::Digit | StackKind::Image => "model.digit",
            StackKind::Head => "model.head",
            StackKind::Joint => "model.joint",
        }
    }

    /// How many times a pair's forward pass runs the stack.
    pub fn runs_per_pair(self) -> usize {
        match self {
            StackKind::Digit => 2,
            StackKind::Head | StackKind::Joint | StackKind::Image => 1,
        }
    }
}

/// A spec's stacks, checked, with their layers' shapes and parameter counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub stacks: Vec<(StackKind, Vec<LayerPlan>)>,
    /// Trainable parameters, shared weights counted once.
    pub params: usize,
    /// Weights: the parameters a value is multiplied by (convolution and linear weights; no
    /// biases or batch-norm parameters), shared ones counted once. The seed report counts
    /// its networks so.
    pub weights: usize,
    /// What it was planned for.
    pub data: DataShape,
}

impl Plan {
    /// The layers of stack `kind` (empty when the spec has none).
    pub fn stack(&self, kind: StackKind) -> &[LayerPlan] {
        self.stacks
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(&[], |(_, layers)| layers.as_slice())
    }

    /// One image: `(1, height, width)`.
    pub fn image(&self) -> Shape3 {
        (1, self.data.side.0, self.data.side.1)
    }

    /// Values in one image.
    pub fn pixels(&self) -> usize {
        self.data.side.0 * self.data.side.1
    }

    /// What stack `kind` reads.
    pub fn input(&self, kind: StackKind) -> Shape3 {
        let (h, w) = self.data.side;
        match kind {
            StackKind::Digit | StackKind::Image => (1, h, w),
            StackKind::Joint => (2, h, w),
            StackKind::Head => (2 * self.data.classes, 1, 1),
        }
    }

    /// About how many multiply-adds one pair's forward pass takes (each weight times the
    /// positions it is applied at; the digit network twice): what the sweep schedules by.
    pub fn work_per_pair(&self) -> usize {
        self.stacks
            .iter()
            .map(|(kind, layers)| {
                kind.runs_per_pair()
                    * layers
                        .iter()
                        .map(|l| l.params * l.output.1 * l.output.2)
                        .sum::<usize>()
            })
            .sum()
    }

    /// A generous estimate of the bytes one round needs: every layer's input and output of a
    /// training batch kept for the backward pass, with as much again for their gradients and
    /// once more for temporaries, or the largest layer of an evaluation chunk twice, whichever
    /// is larger; plus four copies of the parameters (values, gradients, two Adam moments).
    pub fn memory_bytes(&self, batch: usize, eval_chunk: usize) -> u128 {
        let values = |s: Shape3| s.0 as u128 * s.1 as u128 * s.2 as u128;
        let (mut kept, mut widest) = (0u128, 0u128);
        for (kind, layers) in &self.stacks {
            let runs = kind.runs_per_pair() as u128;
            for l in layers {
                kept += runs * (values(l.input) + values(l.output));
                widest = widest.max(runs * values(l.output).max(values(l.input)));
            }
        }
        let train = 3 * batch as u128 * kept;
        let eval = 2 * eval_chunk as u128 * widest;
        4 * (train.max(eval) + 4 * self.params as u128)
    }
}

/// Renders a shape as `6x12x12`, or `256` when flat.
pub fn show(s: Shape3) -> String {
    if s.1 == 1 && s.2 == 1 {
        s.0.to_string()
    } else {
        format!("{}x{}x{}", s.0, s.1, s.2)
    }
}

fn checked(a: usize, b: usize) -> std::result::Result<usize, String> {
    a.checked_mul(b)
        .ok_or_else(|| format!("sizes overflow ({a} x {b})"))
}

/// `out` must be at least 1.
fn positive_out(out: usize) -> std::result::Result<(), String> {
    if out == 0 {
        Err("out must be at least 1".into())
    } else {
        Ok(())
    }
}

/// `layer` planned on `input`, or why it does not fit: the reason alone, as text, because
/// only the caller ([`plan`]) knows the file, place and stack to name in the error.
pub fn infer_layer(layer: &LayerSpec, input: Shape3) -> std::result::Result<LayerPlan, String> {
    let (c, h, w) = input;
    let same = |op: PlainOp, params: usize| Ok((LayerOp::Plain(op), input, params));
    let (op, output, params) = match *layer {
        LayerSpec::Conv2d {
            input: expected,
            out,
            kernel,
            stride,
            padding,
        } => conv2d(input, expected, out, kernel, stride, padding),
        LayerSpec::ConvTranspose2d {
            out,
            kernel,
            stride,
            padding,
        } => conv_transpose2d(input, out, kernel, stride, padding),
        LayerSpec::MaxPool2d { kernel, stride } => pool(input, PoolKind::Max, kernel, stride),
        LayerSpec::AvgPool2d { kernel, stride } => pool(input, PoolKind::Avg, kernel, stride),
        LayerSpec::Upsample { scale } => {
            if scale == 0 {
                return Err("scale must be at least 1".into());
            }
            let output = (c, checked(h, scale)?, checked(w, scale)?);
            Ok((LayerOp::Plain(PlainOp::Upsample { scale }), output, 0))
        }
        LayerSpec::Relu => same(PlainOp::Activation(Activation::Relu), 0),
        LayerSpec::Tanh => same(PlainOp::Activation(Activation::Tanh), 0),
        LayerSpec::Sigmoid => same(PlainOp::Activation(Activation::Sigmoid), 0),
        LayerSpec::Threshold { threshold, value } => {
            same(PlainOp::Threshold { threshold, value }, 0)
        }
        LayerSpec::Dropout { p } => {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("p must be in [0, 1), got {p}"));
            }
            same(PlainOp::Dropout { p }, 0)
        }
        LayerSpec::BatchNorm { momentum, eps } => {
            if !(0.0..=1.0).contains(&momentum) || eps.is_nan() || eps <= 0.0 {
                return Err("momentum must be in [0, 1] and eps > 0".into());
            }
            let op = LayerOp::BatchNorm {
                channels: c,
                momentum,
                eps,
            };
            Ok((op, input, 2 * c))
        }
        LayerSpec::Flatten => {
            let output = (checked(checked(c, h)?, w)?, 1, 1);
            Ok((LayerOp::Plain(PlainOp::Flatten), output, 0))
        }
        LayerSpec::Linear {
            input: expected,
            out,
        } => linear(input, expected, out),
    }?;
    within_limits(output, params)?;
    Ok(LayerPlan {
        op,
        kind: layer.kind(),
        input,
        output,
        params,
    })
}

/// A layer's operation, output shape and parameter count.
type Planned = std::result::Result<(LayerOp, Shape3, usize), String>;

fn conv2d(
    input: Shape3,
    expected: Option<usize>,
    out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Planned {
    let (c, h, w) = input;
    if let Some(e) = expected.filter(|&e| e != c) {
        return Err(format!(
            "expects {e} input channels, got {c} ({})",
            show(input)
        ));
    }
    positive_out(out)?;
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
    let output = (out, win.out_h, win.out_w);
    Ok((LayerOp::Conv2d(geom), output, geom.weight_len() + out))
}

fn conv_transpose2d(
    input: Shape3,
    out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Planned {
    let (c, h, w) = input;
    positive_out(out)?;
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
    let output = (out, win.height, win.width);
    let params = geom.weight_len() + out;
    Ok((LayerOp::ConvTranspose2d(geom), output, params))
}

fn pool(input: Shape3, kind: PoolKind, kernel: usize, stride: Option<usize>) -> Planned {
    let (c, h, w) = input;
    let stride = stride.unwrap_or(kernel);
    let (Some(oh), Some(ow)) = (
        pool_out_side(h, kernel, stride),
        pool_out_side(w, kernel, stride),
    ) else {
        return Err(format!(
            "kernel {kernel} (stride {stride}) does not fit a {} input",
            show(input)
        ));
    };
    let op = PlainOp::Pool {
        kind,
        kernel,
        stride,
    };
    Ok((LayerOp::Plain(op), (c, oh, ow), 0))
}

fn linear(input: Shape3, expected: Option<usize>, out: usize) -> Planned {
    let (c, h, w) = input;
    if !(h == 1 && w == 1) {
        return Err(format!(
            "needs flat input, got {}: add {{ layer = \"flatten\" }} before it",
            show(input)
        ));
    }
    if let Some(e) = expected.filter(|&e| e != c) {
        return Err(format!("expects {e} input features, got {c}"));
    }
    positive_out(out)?;
    let op = LayerOp::Linear { input: c, out };
    Ok((op, (out, 1, 1), checked(c + 1, out)?))
}

/// A layer's output and parameters stay within what a round can hold.
fn within_limits(output: Shape3, params: usize) -> std::result::Result<(), String> {
    let values = checked(checked(output.0, output.1)?, output.2)?;
    if values > MAX_VALUES {
        return Err(format!(
            "gives {values} values per sample ({}), above the limit of {MAX_VALUES}",
            show(output)
        ));
    }
    if params > MAX_PARAMS {
        return Err(format!(
            "has {params} parameters, above the limit of {MAX_PARAMS}"
        ));
    }
    Ok(())
}

/// Plans stack `kind` of `spec` on `input`, requiring it to end in `out` flat values (`why`
/// says what they are). Errors name the spec, the stack, the layer's index, kind and place.
fn plan_stack(
    spec: &Spec,
    (kind, stack): (StackKind, &Stack),
    input: Shape3,
    (out, why): (usize, &str),
) -> Result<Vec<LayerPlan>> {
    let key = kind.key();
    let mut shape = input;
    let mut plans = Vec::with_capacity(stack.layers.len());
    for (i, layer) in stack.layers.iter().enumerate() {
        let plan = infer_layer(&layer.spec, shape).map_err(|why| {
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
        shape = plan.output;
        plans.push(plan);
    }
    if shape != (out, 1, 1) {
        return Err(Error::spec(
            &stack.file,
            stack.layers.last().map_or("", |l| l.place.as_str()),
            format!(
                "spec {}: {key} ends in {}, it must end in {out} flat values ({why})",
                spec.name,
                show(shape)
            ),
        ));
    }
    Ok(plans)
}

/// Checks `spec`'s shapes on images of `data` and counts its parameters.
pub fn plan(spec: &Spec, data: DataShape) -> Result<Plan> {
    let m = &spec.model;
    let mut p = Plan {
        stacks: Vec::new(),
        params: 0,
        weights: 0,
        data,
    };
    let classes = format!("the {} classes of the data", data.classes);
    let outputs = data.task.outputs(data.classes);
    let target = format!(
        "the {outputs} values of the target {}",
        data.task.describe()
    );
    let mut add = |kind, stack, out: (usize, &str), copies| -> Result<()> {
        let layers = plan_stack(spec, (kind, stack), p.input(kind), out)?;
        p.params += copies * layers.iter().map(|l| l.params).sum::<usize>();
        p.weights += copies * layers.iter().map(LayerPlan::weights).sum::<usize>();
        p.stacks.push((kind, layers));
        Ok(())
    };
    match (data.task.kind, m.topology) {
        (TaskKind::Classify, _) => add(StackKind::Image, &m.digit, (outputs, &classes), 1)?,
        (TaskKind::Pairs, Topology::Joint) => {
            add(StackKind::Joint, &m.joint, (outputs, &target), 1)?
        }
        (TaskKind::Pairs, Topology::Digits) => {
            let copies = if m.weight_sharing { 1 } else { 2 };
            add(StackKind::Digit, &m.digit, (data.classes, &classes), copies)?;
            if m.compare == Compare::Learned {
                add(StackKind::Head, &m.head, (outputs, &target), 1)?;
            }
        }
    }
    Ok(p)
}
