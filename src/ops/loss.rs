//! Softmax cross-entropy on integer class targets, and argmax predictions.

use dfdx::prelude::HasShape;
use dfdx::prelude::{SplitTape, Tensor, TensorFromVec};
use dfdx::tensor::PutTape;

use super::{Act, OpTape, add_into, values};

/// Mean over the batch of `-log softmax(logits)[target]`, for `logits` `(B, K, 1, 1)` and one
/// target class per row (numerically stable: max-shifted log-sum-exp).
pub fn cross_entropy<T: OpTape, L: Copy + Into<usize>>(
    logits: Act<T>,
    targets: &[L],
) -> Tensor<(), f32, Cpu, T> {
    cross_entropy_smoothed(logits, targets, 0.0)
}

/// [`cross_entropy`] against targets smoothed as PyTorch's `label_smoothing` does: weight
/// `1 - eps` on the class, `eps / K` on every class.
pub fn cross_entropy_smoothed<T: OpTape, L: Copy + Into<usize>>(
    logits: Act<T>,
    targets: &[L],
    eps: f32,
) -> Tensor<(), f32, Cpu, T> {
    let (b, c, h, w) = *logits.shape();
    let k = c * h * w;
    assert_eq!(b, targets.len(), "cross_entropy: one target per row");
    let lv = values(&logits);
    let mut probs = vec![0.0; lv.len()];
    let mut total = 0.0f64;
    let targets: Vec<usize> = targets.iter().map(|&t| t.into()).collect();
    for ((row, p), &t) in lv
        .chunks_exact(k)
        .zip(probs.chunks_exact_mut(k))
        .zip(&targets)
    {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for (pi, &v) in p.iter_mut().zip(row) {
            *pi = (v - max).exp();
            sum += *pi;
        }
        for pi in p.iter_mut() {
            *pi /= sum;
        }
        let lse = max + sum.ln();
        total += if eps == 0.0 {
            f64::from(lse - row[t])
        } else {
            let mean = row.iter().sum::<f32>() / k as f32;
            f64::from(lse - (1.0 - eps) * row[t] - eps * mean)
        };
    }
    let loss = (total / b as f64) as f32;
    let (logits, mut tape) = logits.split_tape();
    let y = logits.device().tensor_from_vec(vec![loss], ());
    if T::OWNS_TAPE {
        let (xg, yg) = (logits.ghost(), y.ghost());
        tape.add_backward_op(move |grads| {
            let gy = grads.get_or_alloc_mut(&yg)?[0] / b as f32;
            for (p, &t) in probs.chunks_exact_mut(k).zip(&targets) {
                if eps == 0.0 {
                    p[t] -= 1.0;
                } else {
                    let spread = eps / k as f32;
                    p.iter_mut().for_each(|v| *v -= spread);
                    p[t] -= 1.0 - eps;
                }
                for v in p.iter_mut() {
                    *v *= gy;
                }
            }
            add_into(grads.get_or_alloc_mut(&xg)?, &probs);
            Ok(())
        });
    }
    y.put_tape(tape)
}

use dfdx::prelude::Cpu;

/// The index of the largest logit of each row of `logits` `(B, K, ..)` (first one on ties).
pub fn logits_argmax<T>(logits: &Act<T>) -> Vec<usize> {
    let (_, c, h, w) = *logits.shape();
    values(logits).chunks_exact(c * h * w).map(argmax).collect()
}

/// Index of the first largest value of `row`; NaNs are passed over (0 when all are).
pub fn argmax<T: PartialOrd + Copy>(row: &[T]) -> usize {
    let mut best: Option<(usize, T)> = None;
    for (i, &v) in row.iter().enumerate() {
        #[allow(clippy::eq_op)] // `v == v` is false only for NaN.
        let number = v == v;
        if number && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map_or(0, |(i, _)| i)
}
