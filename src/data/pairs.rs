//! The pair-set protocol: the seeded equivalent of the course's `generate_pair_sets(N)`.

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{PIXELS, Pool};
use crate::error::{Error, Result};

/// `n` pairs of 14x14 digits with their target and both classes.
#[derive(Debug, Clone, PartialEq)]
pub struct PairSet {
    /// `n x 2 x 14 x 14` raw pixel values (0..255), pair after pair, first digit first.
    pub input: Vec<f32>,
    /// `1` when the first digit is lesser than or equal to the second.
    pub target: Vec<u8>,
    /// The two digit classes of each pair.
    pub classes: Vec<[u8; 2]>,
}

impl PairSet {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.target.len()
    }

    /// True when the set holds no pair.
    pub fn is_empty(&self) -> bool {
        self.target.is_empty()
    }
}

/// Draws `n` pairs from `pool` with the RNG stream `stream` of `seed`: one random permutation,
/// its first `2n` images paired in order, so no image is used twice within the set.
pub fn pair_set(pool: &Pool, n: usize, seed: u64, stream: u64, what: &str) -> Result<PairSet> {
    if 2 * n > pool.len() {
        return Err(Error::Protocol(format!(
            "{n} {what} pairs need {} images, the {what} pool holds {}",
            2 * n,
            pool.len()
        )));
    }
    let mut rng = crate::seeds::rng(seed, stream);
    let mut order: Vec<usize> = (0..pool.len()).collect();
    order.shuffle(&mut rng);
    let mut set = PairSet {
        input: Vec::with_capacity(n * 2 * PIXELS),
        target: Vec::with_capacity(n),
        classes: Vec::with_capacity(n),
    };
    for pair in order[..2 * n].chunks_exact(2) {
        let (a, b) = (pair[0], pair[1]);
        set.input.extend_from_slice(pool.image(a));
        set.input.extend_from_slice(pool.image(b));
        let classes = [pool.labels[a], pool.labels[b]];
        set.target.push(u8::from(classes[0] <= classes[1]));
        set.classes.push(classes);
    }
    Ok(set)
}

/// The train set (from the train pool) and the test set (from the test pool) of one round.
pub fn generate_pair_sets(
    train: &Pool,
    test: &Pool,
    n: usize,
    seed: u64,
) -> Result<(PairSet, PairSet)> {
    Ok((
        pair_set(train, n, seed, crate::seeds::TRAIN_PAIRS, "train")?,
        pair_set(test, n, seed, crate::seeds::TEST_PAIRS, "test")?,
    ))
}

/// New pairs from the digits of `set`: its `2n` images shuffled by `rng` and paired in order,
/// each used once, targets recomputed from the classes. No digit from outside `set` is used.
pub fn repair(set: &PairSet, rng: &mut ChaCha8Rng) -> PairSet {
    let digits = 2 * set.len();
    let mut order: Vec<usize> = (0..digits).collect();
    order.shuffle(rng);
    let class = |d: usize| set.classes[d / 2][d % 2];
    let mut out = PairSet {
        input: Vec::with_capacity(set.input.len()),
        target: Vec::with_capacity(set.len()),
        classes: Vec::with_capacity(set.len()),
    };
    for pair in order.chunks_exact(2) {
        for &d in pair {
            out.input
                .extend_from_slice(&set.input[d * PIXELS..(d + 1) * PIXELS]);
        }
        let classes = [class(pair[0]), class(pair[1])];
        out.target.push(u8::from(classes[0] <= classes[1]));
        out.classes.push(classes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Pool;

    /// Re-pairing uses every training digit once and no other, and recomputes the targets.
    #[test]
    fn repairing_recomputes_targets_from_the_same_digits() {
        let pool = Pool {
            images: (0..40 * PIXELS).map(|i| (i / PIXELS) as f32).collect(),
            labels: (0..40).map(|i| (i * 7 % 10) as u8).collect(),
        };
        let set = pair_set(&pool, 10, 4, 0, "train").unwrap();
        let mut rng = crate::seeds::rng(9, 0);
        let new = repair(&set, &mut rng);
        assert_eq!(new.len(), set.len());
        let ids = |s: &PairSet| -> Vec<u32> {
            let mut v: Vec<u32> = s
                .input
                .chunks_exact(PIXELS)
                .map(|im| im[0] as u32)
                .collect();
            v.sort();
            v
        };
        assert_eq!(ids(&new), ids(&set), "the same 20 digits, each once");
        assert_ne!(new.input, set.input, "in new pairs");
        for (i, c) in new.classes.iter().enumerate() {
            let d0 = new.input[2 * i * PIXELS] as usize;
            assert_eq!(c[0], pool.labels[d0], "classes follow their digits");
            assert_eq!(new.target[i], u8::from(c[0] <= c[1]));
        }
    }
}
