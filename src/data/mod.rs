//! MNIST pools and the pair-set protocol of the study.
//!
//! [`Mnist::load`] reads a directory of IDX files into a train and a test [`Pool`] of 14x14
//! images; [`generate_pair_sets`] draws the seeded train and test [`PairSet`]s of one round.

pub mod idx;
mod pairs;

pub use pairs::{PairSet, generate_pair_sets, pair_set, repair};

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Side of a pooled image.
pub const SIDE: usize = 14;
/// Pixels in a pooled image.
pub const PIXELS: usize = SIDE * SIDE;

/// Images average-pooled 2x2 to 14x14, as raw 0..255 floats, with their labels.
#[derive(Debug, Clone)]
pub struct Pool {
    /// `len() x 196` values, image after image, row-major.
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
}

impl Pool {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the pool holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `i` (196 values).
    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }

    /// Builds a pool from 28x28 IDX images and labels; errors name the file at fault
    /// (`images_path` for the image size, `labels_path` for a count that does not match).
    pub fn from_idx(
        images: &idx::IdxImages,
        labels: Vec<u8>,
        images_path: &Path,
        labels_path: &Path,
    ) -> Result<Self> {
        if images.rows != 2 * SIDE || images.cols != 2 * SIDE {
            return Err(Error::data(
                images_path,
                format!(
                    "images are {}x{}, the protocol needs 28x28",
                    images.rows, images.cols
                ),
            ));
        }
        if images.count != labels.len() {
            return Err(Error::data(
                labels_path,
                format!(
                    "image/label count mismatch: {} images, {} labels",
                    images.count,
                    labels.len()
                ),
            ));
        }
        Ok(Pool {
            images: avg_pool_2x2(&images.pixels, images.count),
            labels,
        })
    }
}

/// Average-pools 28x28 byte images 2x2 into 14x14 floats (the mean of four bytes, 0..255).
fn avg_pool_2x2(pixels: &[u8], count: usize) -> Vec<f32> {
    let full = 2 * SIDE;
    let mut out = Vec::with_capacity(count * PIXELS);
    for img in pixels.chunks_exact(full * full).take(count) {
        for y in 0..SIDE {
            for x in 0..SIDE {
                let at = |dy: usize, dx: usize| img[(2 * y + dy) * full + 2 * x + dx] as f32;
                out.push((at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4.0);
            }
        }
    }
    out
}

/// The train and test pools of a data directory.
#[derive(Debug, Clone)]
pub struct Mnist {
    pub train: Pool,
    pub test: Pool,
    /// The four files read, in order train images, train labels, test images, test labels.
    pub files: Vec<PathBuf>,
    /// Each file's digests, in the same order: its content's identifies the data, however
    /// it is stored.
    pub digests: Vec<idx::Digests>,
}

impl Mnist {
    /// Loads `dir`, which must hold `{train,t10k}-{images-idx3,labels-idx1}-ubyte`, each
    /// optionally gzipped (`.gz`).
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::data(dir, "data directory not found"));
        }
        let mut files = Vec::new();
        let mut digests = Vec::new();
        let mut pools = Vec::new();
        for split in ["train", "t10k"] {
            let images_path = find(dir, &format!("{split}-images-idx3-ubyte"))?;
            let labels_path = find(dir, &format!("{split}-labels-idx1-ubyte"))?;
            let images = idx::read_images(&images_path)?;
            let (labels, labels_digests) = idx::read_labels(&labels_path)?;
            pools.push(Pool::from_idx(&images, labels, &images_path, &labels_path)?);
            files.extend([images_path, labels_path]);
            digests.extend([images.digests.clone(), labels_digests]);
        }
        let [train, test]: [Pool; 2] = pools
            .try_into()
            .map_err(|_| Error::data(dir, "expected a train and a test split"))?;
        Ok(Mnist {
            train,
            test,
            files,
            digests,
        })
    }
}

/// Finds `name` or `name.gz` in `dir`.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    [name.to_string(), format!("{name}.gz")]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::data(dir.join(name), "missing (looked for it and its .gz)"))
}
