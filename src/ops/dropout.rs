//! Dropout with dfdx's masks, drawn on every thread. dfdx draws value `i`'s keep-or-drop
//! from the `i`th `u64` of a ChaCha12 stream seeded by one draw from the device's generator
//! (its `StdRng` and `Bernoulli`), one value after another; here each piece of the values
//! seeks that stream to its first value's word, so the masks, and every round's numbers,
//! are dfdx's whatever the thread count.

use dfdx::prelude::*;
use dfdx::tensor::RandomU64;
use rand::SeedableRng;
use rand::distributions::{Bernoulli, Distribution};
use rand_chacha::ChaCha12Rng;

use super::{Act, OpTape, unary_op, values};
use crate::par::{self, Rows};

/// Drops each value with probability `p` and scales the rest by `1 / (1 - p)`, as dfdx's
/// `dropout` does, from the same draw of the device's generator. The mask is kept for the
/// backward pass rather than drawn again.
pub fn dropout<T: OpTape>(x: Act<T>, p: f64) -> Act<T> {
    let seed = x.device().random_u64();
    let dims = *x.shape();
    let xv = values(&x);
    let n = xv.len();
    let (mut out, mut dropped) = (vec![0.0f32; n], vec![false; n]);
    // dfdx's arithmetic, in f32: divided by `1 - p` forward, times `1 / (1 - p)` backward.
    let keep = (1.0 - p) as f32;
    // A probability outside [0, 1] is refused when the spec is read.
    if let Ok(dist) = Bernoulli::new(p) {
        let parts = (Rows(&mut out, 1), Rows(&mut dropped, 1));
        let pieces = par::pieces(n, n * par::PER_VALUE);
        par::split(parts, (0, n), pieces, &|first,
                                            _,
                                            (
            Rows(out, _),
            Rows(dropped, _),
        )| {
            let mut rng = ChaCha12Rng::seed_from_u64(seed);
            // Each value takes one `u64`: two words of the stream.
            rng.set_word_pos(2 * first as u128);
            for (i, (o, d)) in out.iter_mut().zip(dropped.iter_mut()).enumerate() {
                *d = dist.sample(&mut rng);
                *o = if *d { 0.0 } else { xv[first + i] / keep };
            }
        });
    }
    unary_op(x, out, dims, move |gy, _| {
        let scale = (1.0 - p).recip() as f32;
        let mut gx = vec![0.0f32; gy.len()];
        let pieces = par::pieces(n, n * par::PER_VALUE);
        par::split(
            Rows(&mut gx, 1),
            (0, n),
            pieces,
            &|first, _, Rows(gx, _)| {
                for (i, g) in gx.iter_mut().enumerate() {
                    let j = first + i;
                    *g = (if dropped[j] { 0.0 } else { scale }) * gy[j];
                }
            },
        );
        Ok(Some(gx))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dfdx's dropout and this one, forward and backward, on the same device state.
    fn both(n: usize, p: f64, threads: usize) -> [Vec<f32>; 4] {
        let run = |ours: bool| -> [Vec<f32>; 2] {
            let dev: Cpu = Cpu::seed_from_u64(7);
            let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let x = dev.tensor_from_vec(v, (1, n, 1, 1));
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let xt = x.clone().leaky_trace();
                let y = if ours { dropout(xt, p) } else { xt.dropout(p) };
                let weights: Vec<f32> = (0..n).map(|i| 1.0 + (i % 7) as f32).collect();
                let w = dev.tensor_from_vec(weights, (1, n, 1, 1));
                let out = y.as_vec();
                let grads = (y * w).sum().backward();
                [out, grads.get(&x).as_vec()]
            })
        };
        let [a, b] = run(false);
        let [c, d] = run(true);
        [a, c, b, d]
    }

    #[test]
    fn masks_and_gradients_are_dfdx_bits_on_any_thread_count() {
        for (n, p, threads) in [
            (1, 0.5, 1),
            (33, 0.3, 2),
            (40_000, 0.3, 2),
            (70_001, 0.1, 3),
        ] {
            let [theirs, ours, their_grad, our_grad] = both(n, p, threads);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            assert_eq!(bits(&theirs), bits(&ours), "{n} values, p {p}");
            assert_eq!(bits(&their_grad), bits(&our_grad), "{n} values, p {p}");
            assert!(ours.contains(&0.0) || n == 1);
        }
    }
}
