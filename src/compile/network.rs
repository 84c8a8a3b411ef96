//! The network a spec compiles to: a digit network (shared or two copies) and a comparison
//! head, or one joint stack; its forward pass yields every output the losses need.

use dfdx::prelude::*;
use dfdx::tensor::PutTape;

use super::plan::{DataShape, Plan, Shape3, StackKind, plan};
use super::sequential::Sequential;
use crate::error::Result;
use crate::ops::{Act, OpTape, Param, concat_features, pair_features};
use crate::spec::{Compare, Spec, TaskKind, Topology};

#[derive(Debug, Clone)]
enum Body {
    /// One stack over the whole sample: a pair's two images as channels (joint), or the one
    /// image to classify.
    Whole(StackKind, Sequential),
    Digits {
        first: Sequential,
        /// The second digit's own network; `None` when weights are shared.
        second: Option<Sequential>,
        head: Option<Sequential>,
    },
}

/// A compiled variant: its layers, and its parameters in one flat store.
#[derive(Debug, Clone)]
pub struct Network {
    body: Body,
    /// Every trainable parameter, in a stable order; shared weights appear once.
    pub params: Vec<Param>,
    /// Whether to compute the reversed-pair output.
    reversed: bool,
    /// How a pair's prediction is made from the outputs.
    pub compare: Compare,
    /// The device, seeded per round: its RNG drives dropout.
    dev: Cpu,
    pub plan: Plan,
}

/// A batch of samples as the network reads it.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// `batch x images x height x width` values, normalized.
    pub samples: &'a [f32],
    pub batch: usize,
}

/// Digit logits, laid out as the network produced them.
pub enum DigitLogits<T> {
    /// `(2B, K)`: rows `2i` and `2i+1` are pair `i`'s digits (shared network).
    Interleaved(Act<T>),
    /// `(B, K)` each: first digits, second digits (two networks).
    Split(Act<T>, Act<T>),
}

/// What one forward pass yields.
pub struct Outputs<T> {
    /// `(B, N)` logits of the target's `N` values (a pair's relation, an image's class);
    /// `None` with the `argmax` and `probability` rules.
    pub compare: Option<Act<T>>,
    /// `(B, N)` logits for the reversed pair, when the spec has an asymmetry loss.
    pub reversed: Option<Act<T>>,
    /// The digit logits, for digits topologies.
    pub digits: Option<DigitLogits<T>>,
}

/// Everything a network has learned: its parameters and its batch norms' running
/// statistics, to keep the best epoch's and go back to it.
#[derive(Debug, Clone, PartialEq)]
pub struct NetState {
    /// Every parameter's values, in the network's order.
    pub params: Vec<Vec<f32>>,
    /// Every batch norm's running mean and variance, stack by stack, layer by layer.
    pub norms: Vec<(Vec<f32>, Vec<f32>)>,
}

/// The 4-D shape of `n` samples of shape `s`.
fn dims(n: usize, s: Shape3) -> (usize, usize, usize, usize) {
    (n, s.0, s.1, s.2)
}

impl Network {
    /// Compiles `spec` for `data` (checking it first) with parameters drawn from `seed`.
    pub fn new(spec: &Spec, data: DataShape, seed: u64) -> Result<Self> {
        Ok(Network::from_plan(spec, plan(spec, data)?, seed))
    }

    /// Builds the network `plan` (the plan of `spec`) describes, parameters drawn from `seed`.
    pub fn from_plan(spec: &Spec, plan: Plan, seed: u64) -> Self {
        let dev = Cpu::seed_from_u64(seed);
        let mut rng = crate::seeds::rng(seed, crate::seeds::INIT);
        let mut params = Vec::new();
        let m = &spec.model;
        let mut build = |kind| Sequential::new(plan.stack(kind), &mut params, &dev, &mut rng);
        let body = match (plan.data.task.kind, m.topology) {
            (TaskKind::Classify, _) => Body::Whole(StackKind::Image, build(StackKind::Image)),
            (TaskKind::Pairs, Topology::Joint) => {
                Body::Whole(StackKind::Joint, build(StackKind::Joint))
            }
            (TaskKind::Pairs, Topology::Digits) => {
                let first = build(StackKind::Digit);
                let second = (!m.weight_sharing).then(|| build(StackKind::Digit));
                let head = (m.compare == Compare::Learned).then(|| build(StackKind::Head));
                Body::Digits {
                    first,
                    second,
                    head,
                }
            }
        };
        Network {
            body,
            params,
            reversed: m.asymmetry > 0.0,
            compare: m.compare,
            dev,
            plan,
        }
    }

    /// Each stack in the order its parameters are stored, with the name kept weights give
    /// it (`digit`, `second_digit` for a second copy, `head`, `joint`).
    pub fn stack_order(&self) -> Vec<(&'static str, StackKind)> {
        match &self.body {
            Body::Whole(StackKind::Joint, _) => vec![("joint", StackKind::Joint)],
            Body::Whole(kind, _) => vec![("digit", *kind)],
            Body::Digits { second, head, .. } => {
                let mut v = vec![("digit", StackKind::Digit)];
                if second.is_some() {
                    v.push(("second_digit", StackKind::Digit));
                }
                if head.is_some() {
                    v.push(("head", StackKind::Head));
                }
                v
            }
        }
    }

    fn stacks(&self) -> Vec<&Sequential> {
        match &self.body {
            Body::Whole(_, s) => vec![s],
            Body::Digits {
                first,
                second,
                head,
            } => [Some(first), second.as_ref(), head.as_ref()]
                .into_iter()
                .flatten()
                .collect(),
        }
    }

    /// What the network has learned so far.
    pub fn state(&self) -> NetState {
        NetState {
            params: self.params.iter().map(|p| p.values().to_vec()).collect(),
            norms: self
                .stacks()
                .iter()
                .flat_map(|s| s.norms())
                .map(|n| (n.mean.borrow().clone(), n.var.borrow().clone()))
                .collect(),
        }
    }

    /// Goes back to `state` (taken from this network).
    pub fn set_state(&mut self, state: &NetState) {
        for (p, v) in self.params.iter_mut().zip(&state.params) {
            p.values_mut().copy_from_slice(v);
        }
        let stacks = self.stacks();
        for (n, (mean, var)) in stacks.iter().flat_map(|s| s.norms()).zip(&state.norms) {
            n.mean.borrow_mut().clone_from(mean);
            n.var.borrow_mut().clone_from(var);
        }
    }

    /// Trainable values, counted from the store (equals `plan.params`).
    pub fn param_count(&self) -> usize {
        self.params.iter().map(Param::len).sum()
    }

    fn tensor<T: OpTape>(&self, v: Vec<f32>, dims: (usize, usize, usize, usize)) -> Act<T> {
        self.dev.tensor_from_vec(v, dims).put_tape(T::default())
    }

    /// Runs the network on a batch. With `T = OwnedTape` every output carries what its loss
    /// needs for the backward pass; the digit network's tape rides on the comparison path
    /// when there is a head, so it is never lost when the auxiliary loss is off.
    pub fn forward<T: OpTape>(&self, input: Input, training: bool) -> Result<Outputs<T>> {
        match &self.body {
            Body::Whole(kind, stack) => self.forward_whole(*kind, stack, input, training),
            Body::Digits {
                first,
                second,
                head,
            } => {
                let (pairs, digits) =
                    self.digit_logits(first, second.as_ref(), head.is_some(), input, training)?;
                let Some(head) = head else {
                    // argmax rule: the digits carry the tape.
                    return Ok(Outputs {
                        compare: None,
                        reversed: None,
                        digits: Some(digits),
                    });
                };
                let p = &self.params;
                let reversed = if self.reversed {
                    let r = match &digits {
                        DigitLogits::Interleaved(d) => pair_features(d.with_empty_tape(), true),
                        DigitLogits::Split(d0, d1) => {
                            concat_features(d1.with_empty_tape(), d0.with_empty_tape())
                        }
                    };
                    Some(head.forward(r, p, training, false)?)
                } else {
                    None
                };
                let compare = head.forward(pairs.expect("a head has pairs"), p, training, false)?;
                Ok(Outputs {
                    compare: Some(compare),
                    reversed,
                    digits: Some(digits),
                })
            }
        }
    }

    /// One stack over each whole sample (and over a pair reversed).
    fn forward_whole<T: OpTape>(
        &self,
        kind: StackKind,
        stack: &Sequential,
        input: Input,
        training: bool,
    ) -> Result<Outputs<T>> {
        let (b, p) = (input.batch, &self.params);
        let shape = self.plan.input(kind);
        let x = self.tensor::<T>(input.samples.to_vec(), dims(b, shape));
        let compare = stack.forward(x, p, training, true)?;
        let reversed = if self.reversed {
            let pixels = self.plan.pixels();
            let mut swapped = input.samples.to_vec();
            for pair in swapped.chunks_exact_mut(2 * pixels) {
                pair.rotate_left(pixels);
            }
            let x = self.tensor::<T>(swapped, dims(b, shape));
            Some(stack.forward(x, p, training, true)?)
        } else {
            None
        };
        Ok(Outputs {
            compare: Some(compare),
            reversed,
            digits: None,
        })
    }

    /// Both digits' logits, through one shared network or two; with a head, also the
    /// features it compares (then they carry the tape, the logits an empty one).
    fn digit_logits<T: OpTape>(
        &self,
        first: &Sequential,
        second: Option<&Sequential>,
        head: bool,
        input: Input,
        training: bool,
    ) -> Result<(Option<Act<T>>, DigitLogits<T>)> {
        let (b, p) = (input.batch, &self.params);
        let (image, pixels) = (self.plan.image(), self.plan.pixels());
        let Some(second) = second else {
            // Both digits of every pair through one network, as a batch of 2B.
            let x = self.tensor::<T>(input.samples.to_vec(), dims(2 * b, image));
            let d = first.forward(x, p, training, true)?;
            return Ok(if head {
                let digits = DigitLogits::Interleaved(d.with_empty_tape());
                (Some(pair_features(d, false)), digits)
            } else {
                (None, DigitLogits::Interleaved(d))
            });
        };
        let (mut x0, mut x1) = (Vec::with_capacity(b * pixels), Vec::new());
        for pair in input.samples.chunks_exact(2 * pixels) {
            x0.extend_from_slice(&pair[..pixels]);
            x1.extend_from_slice(&pair[pixels..]);
        }
        let d0 = first.forward(self.tensor::<T>(x0, dims(b, image)), p, training, true)?;
        let d1 = second.forward(self.tensor::<T>(x1, dims(b, image)), p, training, true)?;
        Ok(if head {
            let digits = DigitLogits::Split(d0.with_empty_tape(), d1.with_empty_tape());
            (Some(concat_features(d0, d1)), digits)
        } else {
            (None, DigitLogits::Split(d0, d1))
        })
    }
}
