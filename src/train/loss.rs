//! The training loss of a batch: the comparison's cross-entropy, plus the weighted digit
//! losses and the reversed-pair loss when the spec turns them on.

use dfdx::prelude::*;

use crate::compile::{DigitLogits, Outputs};
use crate::data::Samples;
use crate::ops::cross_entropy_smoothed;
use crate::spec::{Spec, Task, TaskKind};

/// The rows of a set at some indices, gathered into one batch.
pub(super) struct Batch {
    pub samples: Vec<f32>,
    pub target: Vec<u16>,
    /// The target of each pair reversed (empty for one-image samples).
    pub reversed_target: Vec<u16>,
    /// Image classes in network order: `c0, c1` of pair 0, then pair 1, ...
    pub classes: Vec<u8>,
}

/// The rows of `set` (samples of `task`) at `idx`.
pub(super) fn gather(task: Task, set: &Samples, idx: &[usize]) -> Batch {
    let pairs = task.kind == TaskKind::Pairs;
    let mut b = Batch {
        samples: Vec::with_capacity(idx.len() * set.sample_len()),
        target: Vec::with_capacity(idx.len()),
        reversed_target: Vec::with_capacity(idx.len()),
        classes: Vec::with_capacity(set.images * idx.len()),
    };
    for &i in idx {
        b.samples.extend_from_slice(set.sample(i));
        b.target.push(set.target[i]);
        let classes = set.sample_classes(i);
        if pairs {
            b.reversed_target
                .push(task.relation.target(classes[1], classes[0]));
        }
        b.classes.extend_from_slice(classes);
    }
    b
}

pub(super) type Loss = Tensor<(), f32, Cpu, OwnedTape<f32, Cpu>>;

/// Adds `w * l` to the running total.
fn add(total: Option<Loss>, l: Loss, w: f32) -> Option<Loss> {
    let l = if w == 1.0 { l } else { l * w };
    Some(match total {
        Some(t) => t + l,
        None => l,
    })
}

/// The training loss of batch `b`: comparison cross-entropy, plus the weighted digit losses
/// (summed over both digits) and the reversed-pair loss when the spec turns them on.
pub(super) fn batch_loss(spec: &Spec, out: Outputs<OwnedTape<f32, Cpu>>, b: &Batch) -> Loss {
    let m = &spec.model;
    let eps = spec.train.label_smoothing;
    let cross_entropy = |l, t: &[u8]| cross_entropy_smoothed(l, t, eps);
    let mut total = None;
    if let Some(c) = out.compare {
        total = add(total, cross_entropy_smoothed(c, &b.target, eps), 1.0);
    }
    if let Some(r) = out.reversed {
        let reversed = cross_entropy_smoothed(r, &b.reversed_target, eps);
        total = add(total, reversed, m.asymmetry);
    }
    if let Some(d) = out.digits
        && m.aux_loss > 0.0
    {
        match d {
            // The mean over 2B rows is half the sum of the two digits' means.
            DigitLogits::Interleaved(d) => {
                total = add(total, cross_entropy(d, &b.classes), 2.0 * m.aux_loss);
            }
            DigitLogits::Split(d0, d1) => {
                let (c0, c1): (Vec<u8>, Vec<u8>) =
                    b.classes.chunks_exact(2).map(|c| (c[0], c[1])).unzip();
                total = add(total, cross_entropy(d0, &c0), m.aux_loss);
                total = add(total, cross_entropy(d1, &c1), m.aux_loss);
            }
        }
    }
    total.expect("a resolved spec always has a loss")
}
