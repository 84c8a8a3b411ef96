//! IDX datasets and the sample sets of a round.
//!
//! [`Dataset::load`] reads a directory of IDX files into a train and a test [`Pool`] of
//! average-pooled images, with the number of classes its labels show; [`draw`] takes the
//! seeded train and test [`Samples`] of one round for a task.

pub mod idx;
mod samples;

pub use samples::{Samples, draw, repair, sample_set};

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Images of one split, average-pooled, as raw 0..255 floats, with their labels.
#[derive(Clone)]
pub struct Pool {
    /// `len() x pixels` values, image after image, row-major.
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
    /// Values in one image.
    pub pixels: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} images of {} pixels)", self.len(), self.pixels)
    }
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

    /// Image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * self.pixels..(i + 1) * self.pixels]
    }
}

/// Average-pools `count` byte images of `rows x cols` by `p x p` windows, as PyTorch's
/// `avg_pool2d` does (rows and columns left over at the edge are dropped); each value is the
/// mean of its window's bytes, summed row by row.
fn avg_pool(pixels: &[u8], count: usize, rows: usize, cols: usize, p: usize) -> Vec<f32> {
    let (h, w) = (rows / p, cols / p);
    let scale = (p * p) as f32;
    let mut out = Vec::with_capacity(count * h * w);
    for img in pixels.chunks_exact(rows * cols).take(count) {
        for y in 0..h {
            for x in 0..w {
                let mut sum = 0.0f32;
                for dy in 0..p {
                    for dx in 0..p {
                        sum += f32::from(img[(p * y + dy) * cols + p * x + dx]);
                    }
                }
                out.push(sum / scale);
            }
        }
    }
    out
}

/// A directory's train and test pools at one pooling factor.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub dir: PathBuf,
    pub pool: usize,
    pub train: Pool,
    pub test: Pool,
    /// The images' size as stored: `(rows, cols)`.
    pub stored: (usize, usize),
    /// The size the network sees, after pooling: `(height, width)`.
    pub side: (usize, usize),
    /// Largest training label + 1.
    pub classes: usize,
    /// Each file read (train images, train labels, test images, test labels) with the
    /// SHA-256 of the file as stored (what `sha256sum` shows).
    pub files: Vec<(String, String)>,
    /// One hash over the files' contents, so that the same data gzipped or not is the same.
    pub hash: String,
}

/// One split as read and pooled, with its images' stored size and both files' digests.
struct Split {
    pool: Pool,
    /// `(rows, cols)` as stored.
    size: (usize, usize),
    paths: [PathBuf; 2],
    digests: [idx::Digests; 2],
}

/// Reads a split and pools it by `p` (the bytes are dropped once pooled: a large dataset's
/// two splits are never held raw at once).
fn read_split(dir: &Path, split: &str, p: usize) -> Result<Split> {
    let images_path = find(dir, &format!("{split}-images-idx3-ubyte"))?;
    let labels_path = find(dir, &format!("{split}-labels-idx1-ubyte"))?;
    let images = idx::read_images(&images_path)?;
    let (labels, labels_digests) = idx::read_labels(&labels_path)?;
    if images.count != labels.len() {
        return Err(Error::data(
            &labels_path,
            format!(
                "{} labels for the {} images of {}",
                labels.len(),
                images.count,
                images_path.display()
            ),
        ));
    }
    let (rows, cols) = (images.rows, images.cols);
    if rows == 0 || cols == 0 || p == 0 || rows < p || cols < p {
        return Err(Error::data(
            &images_path,
            format!("images are {rows}x{cols}: data.pool = {p} leaves no pixel"),
        ));
    }
    let pool = Pool {
        images: avg_pool(&images.pixels, images.count, rows, cols, p),
        labels,
        pixels: (rows / p) * (cols / p),
    };
    Ok(Split {
        pool,
        size: (rows, cols),
        paths: [images_path, labels_path],
        digests: [images.digests, labels_digests],
    })
}

impl Dataset {
    /// Loads `dir`, which must hold `{train,t10k}-{images-idx3,labels-idx1}-ubyte`, each
    /// optionally gzipped (`.gz`), and pools its images by `pool`. Errors name the file at
    /// fault.
    pub fn load(dir: &Path, pool: usize) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::data(dir, "data directory not found"));
        }
        let train = read_split(dir, "train", pool)?;
        let test = read_split(dir, "t10k", pool)?;
        let stored = train.size;
        if test.size != stored {
            return Err(Error::data(
                &test.paths[0],
                format!(
                    "images are {}x{}, the training images are {}x{}",
                    test.size.0, test.size.1, stored.0, stored.1
                ),
            ));
        }
        let classes = check_classes(&train, &test)?;
        let mut all = Sha256::new();
        let mut files = Vec::new();
        for s in [&train, &test] {
            for (path, d) in s.paths.iter().zip(&s.digests) {
                all.update(d.content.as_bytes());
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                files.push((name.unwrap_or_default(), d.file.clone()));
            }
        }
        Ok(Dataset {
            dir: dir.to_path_buf(),
            pool,
            train: train.pool,
            test: test.pool,
            stored,
            side: (stored.0 / pool, stored.1 / pool),
            classes,
            files,
            hash: crate::hash::short(all),
        })
    }

    /// `28x28 -> 14x14` (pooled) or `28x28`.
    pub fn sizes(&self) -> String {
        let (r, c) = self.stored;
        let (h, w) = self.side;
        if self.pool == 1 {
            format!("{r}x{c}")
        } else {
            format!("{r}x{c} -> {h}x{w}")
        }
    }
}

/// The number of classes (largest training label + 1): at least two, and every test label
/// one of them.
fn check_classes(train: &Split, test: &Split) -> Result<usize> {
    let (train_labels, test_labels) = (&train.pool.labels, &test.pool.labels);
    let Some(&top) = train_labels.iter().max() else {
        return Err(Error::data(
            &train.paths[1],
            "no labels: the split is empty",
        ));
    };
    if train_labels.iter().all(|&l| l == top) {
        return Err(Error::data(
            &train.paths[1],
            format!("every label is {top}: a study needs 2 classes at least"),
        ));
    }
    let classes = usize::from(top) + 1;
    if let Some(i) = test_labels.iter().position(|&l| usize::from(l) >= classes) {
        return Err(Error::data(
            &test.paths[1],
            format!(
                "label {} at index {i} is beyond the {classes} classes of the training labels \
                 (0 to {top})",
                test_labels[i]
            ),
        ));
    }
    Ok(classes)
}

/// Finds `name` or `name.gz` in `dir`.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    [name.to_string(), format!("{name}.gz")]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::data(dir.join(name), "missing (looked for it and its .gz)"))
}
