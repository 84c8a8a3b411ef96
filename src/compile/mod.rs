//! Specs into networks: [`plan`] checks every shape and counts parameters before anything
//! runs; [`Network::new`] builds the dfdx network a plan describes.

mod network;
mod sequential;
mod shape;

pub use network::{DigitLogits, Input, Network, Outputs};
pub use shape::{LayerPlan, Shape3, infer_layer, plan_stack, show};

use crate::error::Result;
use crate::spec::{Compare, Spec, Topology};

/// Number of digit classes, and so of a digit network's outputs.
pub const DIGIT_CLASSES: usize = 10;

/// A spec's stacks, checked, with their layers' shapes and parameter counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `(key, layers)` per stack, e.g. `("model.digit", ..)`.
    pub stacks: Vec<(&'static str, Vec<LayerPlan>)>,
    /// Trainable parameters, shared weights counted once.
    pub params: usize,
}

impl Plan {
    /// About how many multiply-adds one pair's forward pass takes (each weight times the
    /// positions it is applied at; the digit network twice): what the sweep schedules by.
    pub fn work_per_pair(&self) -> usize {
        self.stacks
            .iter()
            .map(|(key, layers)| {
                let copies = if *key == "model.digit" { 2 } else { 1 };
                copies
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
        for (key, layers) in &self.stacks {
            let copies = if *key == "model.digit" { 2 } else { 1 };
            for l in layers {
                kept += copies * (values(l.input) + values(l.output));
                widest = widest.max(copies * values(l.output).max(values(l.input)));
            }
        }
        let train = 3 * batch as u128 * kept;
        let eval = 2 * eval_chunk as u128 * widest;
        4 * (train.max(eval) + 4 * self.params as u128)
    }
}

/// Checks `spec`'s shapes and counts its parameters.
pub fn plan(spec: &Spec) -> Result<Plan> {
    let m = &spec.model;
    let mut stacks = Vec::new();
    let mut params = 0;
    match m.topology {
        Topology::Joint => {
            let p = plan_stack(spec, "model.joint", &m.joint, (2, 14, 14), 2)?;
            params += p.iter().map(|l| l.params).sum::<usize>();
            stacks.push(("model.joint", p));
        }
        Topology::Digits => {
            let p = plan_stack(spec, "model.digit", &m.digit, (1, 14, 14), DIGIT_CLASSES)?;
            let copies = if m.weight_sharing { 1 } else { 2 };
            params += copies * p.iter().map(|l| l.params).sum::<usize>();
            stacks.push(("model.digit", p));
            if m.compare == Compare::Learned {
                let p = plan_stack(spec, "model.head", &m.head, (2 * DIGIT_CLASSES, 1, 1), 2)?;
                params += p.iter().map(|l| l.params).sum::<usize>();
                stacks.push(("model.head", p));
            }
        }
    }
    Ok(Plan { stacks, params })
}
