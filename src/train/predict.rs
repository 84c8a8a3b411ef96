//! Prediction rules: what outputs say about a batch of samples, for one network (from its
//! logits) and for several outputs of the same samples (an ensemble's members, test-time
//! views), whose probabilities are averaged.

use crate::compile::{DigitLogits, Outputs};
use crate::ops::{argmax, logits_argmax};
use crate::spec::{Compare, Relation, Task};

/// What a batch's outputs predict.
pub(super) struct Predicted {
    /// Per sample: its predicted target.
    pub target: Vec<u16>,
    /// Per digit, in network order (`c0, c1` of pair 0, then pair 1, ...), where the
    /// network has digit outputs.
    pub digits: Option<Vec<usize>>,
}

impl Predicted {
    /// How many predicted targets differ from `target`.
    pub fn wrong(&self, target: &[u16]) -> usize {
        self.target
            .iter()
            .zip(target)
            .filter(|(p, t)| p != t)
            .count()
    }
}

/// One network's outputs: the argmax of its target logits, or `compare`'s rule on the
/// digits.
pub(super) fn predict<T>(out: &Outputs<T>, compare: Compare, task: Task) -> Predicted {
    let r = task.relation;
    let digits = out.digits.as_ref().map(|d| match d {
        DigitLogits::Interleaved(d) => logits_argmax(d),
        DigitLogits::Split(d0, d1) => {
            let (a, b) = (logits_argmax(d0), logits_argmax(d1));
            a.iter().zip(&b).flat_map(|(&x, &y)| [x, y]).collect()
        }
    });
    let target = match (&out.compare, &out.digits) {
        (Some(c), _) => logits_argmax(c).iter().map(|&i| i as u16).collect(),
        (None, Some(d)) if compare == Compare::Probability => {
            let (p0, p1) = digit_probabilities(d);
            p0.iter()
                .zip(&p1)
                .map(|(a, b)| most_probable(r, a, b))
                .collect()
        }
        (None, _) => digits
            .as_ref()
            .map(|d| {
                d.chunks_exact(2)
                    .map(|c| by_argmax(r, c[0], c[1]))
                    .collect()
            })
            .unwrap_or_default(),
    };
    Predicted { target, digits }
}

/// `outs`, outputs of the same `n` samples, their probabilities averaged: the target
/// logits', or the digits' for `compare`'s rule.
pub(super) fn predict_averaged<T>(
    outs: &[Outputs<T>],
    n: usize,
    compare: Compare,
    task: Task,
) -> Predicted {
    let mut cmp: Vec<Vec<f64>> = vec![Vec::new(); n];
    let (mut p0, mut p1) = (vec![Vec::new(); n], vec![Vec::new(); n]);
    let add = |acc: &mut Vec<f64>, p: &[f64]| {
        acc.resize(p.len(), 0.0);
        acc.iter_mut().zip(p).for_each(|(a, v)| *a += v);
    };
    let mut has_digits = false;
    for out in outs {
        if let Some(c) = &out.compare {
            for (acc, p) in cmp.iter_mut().zip(softmax(&c.as_vec(), width(c))) {
                add(acc, &p);
            }
        }
        if let Some(d) = &out.digits {
            has_digits = true;
            let (q0, q1) = digit_probabilities(d);
            for (acc, q) in p0.iter_mut().zip(&q0).chain(p1.iter_mut().zip(&q1)) {
                add(acc, q);
            }
        }
    }
    let k = outs.len() as f64;
    let r = task.relation;
    let target = (0..n)
        .map(|i| match compare {
            Compare::Learned => argmax(&cmp[i]) as u16,
            Compare::Argmax => by_argmax(r, argmax(&p0[i]), argmax(&p1[i])),
            Compare::Probability => {
                let (a, c): (Vec<f64>, Vec<f64>) = (
                    p0[i].iter().map(|v| v / k).collect(),
                    p1[i].iter().map(|v| v / k).collect(),
                );
                most_probable(r, &a, &c)
            }
        })
        .collect();
    let digits = has_digits.then(|| {
        (0..n)
            .flat_map(|i| [argmax(&p0[i]), argmax(&p1[i])])
            .collect()
    });
    Predicted { target, digits }
}

/// Each of the `n` samples' probability of every target value, the outputs' probabilities
/// averaged: the target logits' softmax, or (for the `argmax` and `probability` rules) the
/// distribution the two digits' give the relation (yes/no: `[1 - P, P]`; sum: every sum's).
pub(super) fn probabilities<T>(outs: &[Outputs<T>], n: usize, task: Task) -> Vec<Vec<f64>> {
    let k = outs.len() as f64;
    let mut acc: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut add = |i: usize, p: &[f64]| {
        acc[i].resize(p.len(), 0.0);
        acc[i].iter_mut().zip(p).for_each(|(a, v)| *a += v / k);
    };
    for out in outs {
        match (&out.compare, &out.digits) {
            (Some(c), _) => {
                for (i, p) in softmax(&c.as_vec(), width(c)).iter().enumerate() {
                    add(i, p);
                }
            }
            (None, Some(d)) => {
                let (p0, p1) = digit_probabilities(d);
                let r = task.relation;
                for i in 0..n {
                    let dist = match r {
                        Relation::Sum => sum_distribution(&p0[i], &p1[i]),
                        _ => {
                            let p = pair_probability(r, &p0[i], &p1[i]);
                            vec![1.0 - p, p]
                        }
                    };
                    add(i, &dist);
                }
            }
            (None, None) => {}
        }
    }
    acc
}

/// Values per row of `(B, N)` logits.
fn width<T>(t: &crate::ops::Act<T>) -> usize {
    use dfdx::prelude::HasShape;
    let (_, c, h, w) = *t.shape();
    c * h * w
}

/// Softmax of each row of `(B, n)` logits, in `f64`.
pub(super) fn softmax(v: &[f32], n: usize) -> Vec<Vec<f64>> {
    v.chunks_exact(n)
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f64> = row.iter().map(|&x| f64::from(x - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            e.iter().map(|x| x / sum).collect()
        })
        .collect()
}

/// Each pair's two digit distributions.
fn digit_probabilities<T>(d: &DigitLogits<T>) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    match d {
        DigitLogits::Interleaved(d) => {
            let p = softmax(&d.as_vec(), width(d));
            let (mut p0, mut p1) = (Vec::new(), Vec::new());
            for pair in p.chunks_exact(2) {
                p0.push(pair[0].clone());
                p1.push(pair[1].clone());
            }
            (p0, p1)
        }
        DigitLogits::Split(d0, d1) => (
            softmax(&d0.as_vec(), width(d0)),
            softmax(&d1.as_vec(), width(d1)),
        ),
    }
}

/// The target of the two predicted classes.
fn by_argmax(r: Relation, c0: usize, c1: usize) -> u16 {
    // Classes index a network's outputs, so they fit a byte (a dataset has at most 256).
    r.target(c0 as u8, c1 as u8)
}

/// The most probable target of a pair whose classes are independent with distributions `p0`
/// and `p1`: for a yes/no relation, yes when its probability exceeds one half.
fn most_probable(r: Relation, p0: &[f64], p1: &[f64]) -> u16 {
    match r {
        Relation::Sum => argmax(&sum_distribution(p0, p1)) as u16,
        _ => u16::from(pair_probability(r, p0, p1) > 0.5),
    }
}

/// `P(relation(c0, c1))` for independent classes with distributions `p0` and `p1`, for a
/// yes/no relation (`le`, `lt`, `eq`); `sum` has a distribution, not a probability, and
/// gives NaN.
pub fn pair_probability(r: Relation, p0: &[f64], p1: &[f64]) -> f64 {
    match r {
        // Sum over i of p0(i) P(c1 >= i) (or > i), P accumulated from the top.
        Relation::Le | Relation::Lt => {
            let (mut above, mut total) = (0.0, 0.0);
            for i in (0..p0.len()).rev() {
                if r == Relation::Le {
                    above += p1[i];
                    total += p0[i] * above;
                } else {
                    total += p0[i] * above;
                    above += p1[i];
                }
            }
            total
        }
        Relation::Eq => p0.iter().zip(p1).map(|(a, b)| a * b).sum(),
        Relation::Sum => f64::NAN,
    }
}

/// `P(c0 + c1 = s)` for every `s`, the classes independent.
pub fn sum_distribution(p0: &[f64], p1: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; (p0.len() + p1.len()).saturating_sub(1)];
    for (i, a) in p0.iter().enumerate() {
        for (j, b) in p1.iter().enumerate() {
            out[i + j] += a * b;
        }
    }
    out
}
