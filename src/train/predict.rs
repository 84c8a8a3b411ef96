//! Prediction rules: what outputs say about a batch of pairs, for one network (from its
//! logits) and for several outputs of the same pairs (an ensemble's members, test-time
//! views), whose probabilities are averaged.

use crate::compile::{DIGIT_CLASSES, DigitLogits, Outputs};
use crate::ops::{argmax, logits_argmax};
use crate::spec::Compare;

/// What a batch's outputs predict.
pub(super) struct Predicted {
    /// Per pair: 1 when the first digit is predicted lesser or equal.
    pub target: Vec<u8>,
    /// Per digit, in network order (`c0, c1` of pair 0, then pair 1, ...), where the
    /// network has digit outputs.
    pub digits: Option<Vec<usize>>,
}

impl Predicted {
    /// How many predicted targets differ from `target`.
    pub fn wrong(&self, target: &[u8]) -> usize {
        self.target
            .iter()
            .zip(target)
            .filter(|(p, t)| p != t)
            .count()
    }
}

/// One network's outputs: the comparison's argmax, or `compare`'s rule on the digits.
pub(super) fn predict<T>(out: &Outputs<T>, compare: Compare) -> Predicted {
    let digits = out.digits.as_ref().map(|d| match d {
        DigitLogits::Interleaved(d) => logits_argmax(d),
        DigitLogits::Split(d0, d1) => {
            let (a, b) = (logits_argmax(d0), logits_argmax(d1));
            a.iter().zip(&b).flat_map(|(&x, &y)| [x, y]).collect()
        }
    });
    let target = match (&out.compare, &out.digits) {
        (Some(c), _) => logits_argmax(c).iter().map(|&i| i as u8).collect(),
        (None, Some(d)) if compare == Compare::Probability => {
            let (p0, p1) = digit_probabilities(d);
            p0.iter()
                .zip(&p1)
                .map(|(a, b)| u8::from(lesser_or_equal(a, b) > 0.5))
                .collect()
        }
        (None, _) => digits
            .as_ref()
            .map(|d| d.chunks_exact(2).map(|c| u8::from(c[0] <= c[1])).collect())
            .unwrap_or_default(),
    };
    Predicted { target, digits }
}

/// `outs`, outputs of the same `n` pairs, their probabilities averaged: the comparison's,
/// or the digits' for `compare`'s rule.
pub(super) fn predict_averaged<T>(outs: &[Outputs<T>], n: usize, compare: Compare) -> Predicted {
    let mut cmp = vec![[0.0f64; 2]; n];
    let (mut p0, mut p1) = (vec![[0.0f64; 10]; n], vec![[0.0f64; 10]; n]);
    let mut has_digits = false;
    for out in outs {
        if let Some(c) = &out.compare {
            for (acc, p) in cmp.iter_mut().zip(softmax::<2>(&c.as_vec())) {
                acc[0] += p[0];
                acc[1] += p[1];
            }
        }
        if let Some(d) = &out.digits {
            has_digits = true;
            let (q0, q1) = digit_probabilities(d);
            for (acc, q) in p0.iter_mut().zip(&q0).chain(p1.iter_mut().zip(&q1)) {
                acc.iter_mut().zip(q).for_each(|(a, v)| *a += v);
            }
        }
    }
    let k = outs.len() as f64;
    let target = (0..n)
        .map(|i| match compare {
            Compare::Learned => u8::from(cmp[i][1] > cmp[i][0]),
            Compare::Argmax => u8::from(argmax(&p0[i]) <= argmax(&p1[i])),
            Compare::Probability => {
                let (a, c) = (p0[i].map(|v| v / k), p1[i].map(|v| v / k));
                u8::from(lesser_or_equal(&a, &c) > 0.5)
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

/// Softmax of each row of `(B, N)` logits, in `f64`.
pub(super) fn softmax<const N: usize>(v: &[f32]) -> Vec<[f64; N]> {
    v.chunks_exact(N)
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: [f64; N] = std::array::from_fn(|i| f64::from(row[i] - max).exp());
            let sum: f64 = e.iter().sum();
            e.map(|x| x / sum)
        })
        .collect()
}

/// Each pair's two digit distributions.
fn digit_probabilities<T>(
    d: &DigitLogits<T>,
) -> (Vec<[f64; DIGIT_CLASSES]>, Vec<[f64; DIGIT_CLASSES]>) {
    match d {
        DigitLogits::Interleaved(d) => {
            let p = softmax(&d.as_vec());
            (
                p.iter().step_by(2).copied().collect(),
                p.iter().skip(1).step_by(2).copied().collect(),
            )
        }
        DigitLogits::Split(d0, d1) => (softmax(&d0.as_vec()), softmax(&d1.as_vec())),
    }
}

/// `P(c0 <= c1) = sum over i <= j of p0(i) p1(j)`, the two digits taken as independent.
pub fn lesser_or_equal(p0: &[f64; 10], p1: &[f64; 10]) -> f64 {
    let mut at_least = 0.0; // P(c1 >= i), accumulated from the top
    let mut total = 0.0;
    for i in (0..10).rev() {
        at_least += p1[i];
        total += p0[i] * at_least;
    }
    total
}
