//! The training loss of a batch: the comparison's cross-entropy, plus the weighted digit
//! losses and the reversed-pair loss when the spec turns them on.

use dfdx::prelude::*;

use crate::compile::{DigitLogits, Outputs};
use crate::data::{PIXELS, PairSet};
use crate::ops::cross_entropy_smoothed;
use crate::spec::Spec;

/// The rows of a set at some indices, gathered into one batch.
pub(super) struct Batch {
    pub pairs: Vec<f32>,
    pub target: Vec<u8>,
    pub reversed_target: Vec<u8>,
    /// Digit classes in network order: `c0, c1` of pair 0, then pair 1, ...
    pub classes: Vec<u8>,
}

/// The rows of `set` at `idx`.
pub(super) fn gather(set: &PairSet, idx: &[usize]) -> Batch {
    let mut b = Batch {
        pairs: Vec::with_capacity(idx.len() * 2 * PIXELS),
        target: Vec::with_capacity(idx.len()),
        reversed_target: Vec::with_capacity(idx.len()),
        classes: Vec::with_capacity(2 * idx.len()),
    };
    for &i in idx {
        b.pairs
            .extend_from_slice(&set.input[i * 2 * PIXELS..(i + 1) * 2 * PIXELS]);
        b.target.push(set.target[i]);
        let [c0, c1] = set.classes[i];
        b.reversed_target.push(u8::from(c1 <= c0));
        b.classes.extend([c0, c1]);
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
        total = add(total, cross_entropy(c, &b.target), 1.0);
    }
    if let Some(r) = out.reversed {
        total = add(total, cross_entropy(r, &b.reversed_target), m.asymmetry);
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
