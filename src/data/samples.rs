//! The sample sets of a round: the seeded equivalent of the course's `generate_pair_sets(N)`,
//! for any task (a sample is a pair of images, or one image).

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::Pool;
use crate::error::{Error, Result};
use crate::spec::Task;

/// `n` samples of a task, with their targets and their images' classes.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    /// `n x images x pixels` raw values (0..255), sample after sample, first image first.
    pub input: Vec<f32>,
    /// The task's target of each sample.
    pub target: Vec<u16>,
    /// The class of every image, in input order (`images` per sample).
    pub classes: Vec<u8>,
    /// Images in one sample: 2 for pairs, 1 to classify.
    pub images: usize,
    /// Values in one image.
    pub pixels: usize,
}

impl Samples {
    /// An empty set of samples of `images` images of `pixels` values.
    pub fn empty(images: usize, pixels: usize, capacity: usize) -> Samples {
        Samples {
            input: Vec::with_capacity(capacity * images * pixels),
            target: Vec::with_capacity(capacity),
            classes: Vec::with_capacity(capacity * images),
            images,
            pixels,
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.target.len()
    }

    /// True when the set holds no sample.
    pub fn is_empty(&self) -> bool {
        self.target.is_empty()
    }

    /// Values in one sample.
    pub fn sample_len(&self) -> usize {
        self.images * self.pixels
    }

    /// Sample `i`'s values.
    pub fn sample(&self, i: usize) -> &[f32] {
        let n = self.sample_len();
        &self.input[i * n..(i + 1) * n]
    }

    /// Sample `i`'s image classes.
    pub fn sample_classes(&self, i: usize) -> &[u8] {
        &self.classes[i * self.images..(i + 1) * self.images]
    }

    /// The samples from `at` on, taken out of `self`.
    pub fn split_off(&mut self, at: usize) -> Samples {
        Samples {
            input: self.input.split_off(at * self.sample_len()),
            target: self.target.split_off(at),
            classes: self.classes.split_off(at * self.images),
            images: self.images,
            pixels: self.pixels,
        }
    }
}

/// Draws `n` samples of `task` from `pool` with the RNG stream `stream` of `seed`: one random
/// permutation, its first images grouped in order (two to a pair), so no image is used
/// twice within the set; a smaller `n` takes a prefix of a larger one's samples.
pub fn sample_set(
    pool: &Pool,
    task: Task,
    n: usize,
    (seed, stream): (u64, u64),
    what: &str,
) -> Result<Samples> {
    let k = task.images();
    if n.checked_mul(k).is_none_or(|need| need > pool.len()) {
        return Err(Error::Protocol(format!(
            "{n} {what} samples need {} images, the {what} pool holds {}",
            n.saturating_mul(k),
            pool.len()
        )));
    }
    let mut rng = crate::seeds::rng(seed, stream);
    let mut order: Vec<usize> = (0..pool.len()).collect();
    order.shuffle(&mut rng);
    let mut set = Samples::empty(k, pool.pixels, n);
    for group in order[..k * n].chunks_exact(k) {
        for &i in group {
            set.input.extend_from_slice(pool.image(i));
            set.classes.push(pool.labels[i]);
        }
        set.target
            .push(task.target(&set.classes[set.classes.len() - k..]));
    }
    Ok(set)
}

/// The train set (from the train pool) and the test set (from the test pool) of one round.
pub fn draw(
    train: &Pool,
    test: &Pool,
    task: Task,
    (train_n, test_n): (usize, usize),
    seed: u64,
) -> Result<(Samples, Samples)> {
    Ok((
        sample_set(
            train,
            task,
            train_n,
            (seed, crate::seeds::TRAIN_PAIRS),
            "train",
        )?,
        sample_set(test, task, test_n, (seed, crate::seeds::TEST_PAIRS), "test")?,
    ))
}

/// New pairs from the images of `set`: its images shuffled by `rng` and grouped in order,
/// each used once, targets recomputed from the classes. No image from outside `set` is used.
pub fn repair(set: &Samples, task: Task, rng: &mut ChaCha8Rng) -> Samples {
    let images = set.images * set.len();
    let mut order: Vec<usize> = (0..images).collect();
    order.shuffle(rng);
    let p = set.pixels;
    let mut out = Samples::empty(set.images, p, set.len());
    for group in order.chunks_exact(set.images) {
        for &d in group {
            out.input.extend_from_slice(&set.input[d * p..(d + 1) * p]);
            out.classes.push(set.classes[d]);
        }
        out.target
            .push(task.target(&out.classes[out.classes.len() - set.images..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIXELS: usize = 9;

    /// Re-pairing uses every training image once and no other, and recomputes the targets.
    #[test]
    fn repairing_recomputes_targets_from_the_same_images() {
        let pool = Pool {
            images: (0..40 * PIXELS).map(|i| (i / PIXELS) as f32).collect(),
            labels: (0..40).map(|i| (i * 7 % 10) as u8).collect(),
            pixels: PIXELS,
        };
        let set = sample_set(&pool, Task::SEED, 10, (4, 0), "train").unwrap();
        let mut rng = crate::seeds::rng(9, 0);
        let new = repair(&set, Task::SEED, &mut rng);
        assert_eq!(new.len(), set.len());
        let ids = |s: &Samples| -> Vec<u32> {
            let mut v: Vec<u32> = s
                .input
                .chunks_exact(PIXELS)
                .map(|im| im[0] as u32)
                .collect();
            v.sort();
            v
        };
        assert_eq!(ids(&new), ids(&set), "the same 20 images, each once");
        assert_ne!(new.input, set.input, "in new pairs");
        for i in 0..new.len() {
            let c = new.sample_classes(i);
            let d0 = new.sample(i)[0] as usize;
            assert_eq!(c[0], pool.labels[d0], "classes follow their images");
            assert_eq!(new.target[i], u16::from(c[0] <= c[1]));
        }
    }

    /// A smaller set is a prefix of a larger one drawn from the same seed.
    #[test]
    fn fewer_samples_are_a_prefix() {
        let pool = Pool {
            images: (0..50 * PIXELS).map(|i| (i / PIXELS) as f32).collect(),
            labels: (0..50).map(|i| (i % 3) as u8).collect(),
            pixels: PIXELS,
        };
        let big = sample_set(&pool, Task::SEED, 20, (1, 0), "train").unwrap();
        let small = sample_set(&pool, Task::SEED, 5, (1, 0), "train").unwrap();
        assert_eq!(small.input, big.input[..small.input.len()]);
        let e = sample_set(&pool, Task::SEED, 26, (1, 0), "train").unwrap_err();
        assert_eq!(
            e.to_string(),
            "26 train samples need 52 images, the train pool holds 50"
        );
    }
}
