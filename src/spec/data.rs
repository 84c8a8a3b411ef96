//! The `[data]` table: which IDX directory a variant reads, how its images are pooled, how
//! many samples a round draws and how pixels are scaled.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The most samples a round may draw from each split: far above any IDX dataset's size, low
/// enough that nothing sized by it overflows.
pub const MAX_SAMPLES: usize = 100_000_000;

/// The resolved `[data]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Data {
    /// The IDX directory: relative to the spec file that names it; relative to the working
    /// directory when it comes from `--data` or the defaults.
    pub dir: PathBuf,
    /// The dataset's name in reports (not hashed: the data hash identifies the data).
    pub name: String,
    /// What one image shows, in reports' sentences: `digits`, `images`.
    pub items: String,
    /// Average-pooling factor of the images (1: full resolution).
    pub pool: usize,
    /// Pairs (for classification: images) drawn for training, and for testing, per round.
    pub train_pairs: usize,
    pub test_pairs: usize,
    pub normalize: Normalize,
}

/// What of the data table decides a round's numbers beside the data's own hash and the store
/// key's pair count; each key left out at its default, so that older specs keep their hash.
#[derive(Serialize)]
pub(super) struct Hashed {
    #[serde(skip_serializing_if = "is_two")]
    pool: usize,
    /// The store key holds the training pairs; the test pairs only when they differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    test_pairs: Option<usize>,
}

impl Hashed {
    pub fn of(d: &Data) -> Hashed {
        Hashed {
            pool: d.pool,
            test_pairs: (d.test_pairs != d.train_pairs).then_some(d.test_pairs),
        }
    }

    pub fn is_default(&self) -> bool {
        self.pool == 2 && self.test_pairs.is_none()
    }
}

fn is_two(v: &usize) -> bool {
    *v == 2
}

/// How raw pixel values (0..255) are scaled before the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// Raw 0..255 values.
    None,
    /// Divide by 255.
    Scale,
    /// Subtract the round's training-set mean, divide by its standard deviation.
    Standardize,
}
