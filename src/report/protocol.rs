//! What `REPORT.md` says about how the numbers were made: the task and the data of each
//! variant, the seeds, the overrides, the version and the data files.

use std::fmt::Write as _;

use super::{Align, Table, markdown};
use crate::spec::{Relation, Task, TaskKind};

/// How a sweep's numbers were made.
#[derive(Debug, Clone)]
pub struct Protocol {
    /// One per task, dataset and sample counts, in report order.
    pub studies: Vec<Study>,
    pub version: String,
    /// `--set` overrides of this run (`KEY=VALUE`).
    pub overrides: Vec<String>,
}

/// A task on a dataset with its sample counts, and the variants that run it.
#[derive(Debug, Clone)]
pub struct Study {
    pub task: Task,
    /// Samples (pairs or images) drawn per round for training, and for testing.
    pub train: usize,
    pub test: usize,
    pub name: String,
    /// What an image shows: `digits`, `images`.
    pub items: String,
    pub dir: String,
    /// `28x28 -> 14x14`, or `28x28` unpooled.
    pub sizes: String,
    /// `(height, width)` the network sees.
    pub side: (usize, usize),
    pub classes: usize,
    pub train_pool: usize,
    pub test_pool: usize,
    /// Each data file with its SHA-256.
    pub files: Vec<(String, String)>,
    pub hash: String,
    pub variants: Vec<String>,
}

impl Study {
    /// Whether `other` is the same study (its variants aside).
    pub fn same(&self, other: &Study) -> bool {
        let key = |s: &Study| {
            (
                s.task,
                s.train,
                s.test,
                s.name.clone(),
                s.items.clone(),
                s.sizes.clone(),
                s.hash.clone(),
            )
        };
        key(self) == key(other)
    }

    /// What a round predicts, as a phrase: `whether the first of two 14x14 MNIST digits is
    /// lesser than or equal to the second`.
    fn predicting(&self) -> String {
        let (h, w) = self.side;
        let two = format!("two {h}x{w} {} {}", self.name, self.items);
        match (self.task.kind, self.task.relation) {
            (TaskKind::Classify, _) => {
                format!(
                    "the class of one {h}x{w} {} image (of {})",
                    self.name, self.classes
                )
            }
            (_, Relation::Le) => {
                format!("whether the first of {two} is lesser than or equal to the second")
            }
            (_, Relation::Lt) => format!("whether the first of {two} is lesser than the second"),
            (_, Relation::Eq) => format!("whether {two} are of the same class"),
            (_, Relation::Sum) => format!("the sum of the classes of {two}"),
        }
    }

    /// `pairs` or `images`.
    fn samples(&self) -> &'static str {
        match self.task.kind {
            TaskKind::Pairs => "pairs",
            TaskKind::Classify => "images",
        }
    }

    /// What the images are: `MNIST, average-pooled 28x28 -> 14x14`.
    fn images(&self) -> String {
        if self.sizes.contains("->") {
            format!("{}, average-pooled {}", self.name, self.sizes)
        } else {
            format!("{}, {} unpooled", self.name, self.sizes)
        }
    }

    fn target(&self) -> String {
        match self.task.kind {
            TaskKind::Pairs => self.task.relation.formula().to_string(),
            TaskKind::Classify => format!("the class ({} classes)", self.classes),
        }
    }
}

/// The sentence under the report's title.
pub fn intro(p: &Protocol) -> String {
    // Studies that differ only in their sample counts predict the same thing.
    let phrases: Vec<(String, &str)> = p
        .studies
        .iter()
        .map(|s| (s.predicting(), s.samples()))
        .collect();
    let (what, fresh) = match phrases.as_slice() {
        [one, rest @ ..] if rest.iter().all(|r| r == one) => (one.0.clone(), one.1),
        _ => (
            "each variant's target on its own task and data (see Data and protocol)".into(),
            "samples",
        ),
    };
    format!(
        "Test error of predicting {what}, over independent rounds (fresh {fresh} and \
         initialization each)."
    )
}

/// How the numbers were made: samples, pools, seeds, overrides, version and data.
pub fn protocol_section(s: &mut String, p: &Protocol) {
    let _ = writeln!(s, "\n## Data and protocol\n");
    match p.studies.as_slice() {
        [one] => {
            let _ = writeln!(
                s,
                "- {} training {what} and {} test {what} per round, drawn without replacement \
                 from disjoint pools of {} train and {} test images ({}); target = {}.",
                one.train,
                one.test,
                one.train_pool,
                one.test_pool,
                one.images(),
                one.target(),
                what = one.samples(),
            );
        }
        many => {
            let _ = writeln!(
                s,
                "- Each variant's samples are drawn without replacement from the disjoint train \
                 and test pools of its data:\n"
            );
            s.push_str(&studies_table(many).markdown());
            s.push('\n');
        }
    }
    let _ = writeln!(
        s,
        "- Round r draws its pairs from the same data seed for every variant (a paired design); \
         the initialization seed also depends on the variant's name and its spec's `seed`."
    );
    let _ = writeln!(
        s,
        "- Errors are measured once, after the last epoch; the test set chooses nothing. \
         `std` is the sample standard deviation; digit error is the digit-classification \
         error on the test pairs' digits (— where no auxiliary loss trains the digit \
         outputs as classes). Diverged rounds (a NaN or infinite loss, parameter or output) \
         are counted and left out of the statistics."
    );
    let _ = writeln!(
        s,
        "- Every round is a row of `results.csv`, with a hash of its trained weights (every \
         kernel gives the same bits); wall-clock times are in `timing.csv`."
    );
    if !p.overrides.is_empty() {
        let sets: Vec<String> = p
            .overrides
            .iter()
            .map(|o| format!("`{}`", o.replace('`', "'")))
            .collect();
        let _ = writeln!(
            s,
            "- Overrides of this run (`--set`, part of every variant's hash): {}.",
            sets.join(", ")
        );
    }
    data_files(s, p);
}

/// One row per study: its variants, task, images and sample counts.
fn studies_table(studies: &[Study]) -> Table {
    let mut t = Table::new(&[
        ("variants", Align::Left),
        ("task", Align::Left),
        ("data", Align::Left),
        ("classes", Align::Right),
        ("train", Align::Right),
        ("test", Align::Right),
        ("pools", Align::Right),
        ("data hash", Align::Left),
    ]);
    for st in studies {
        t.row(vec![
            st.variants.join(", "),
            format!("{}: {}", st.samples(), st.target()),
            st.images(),
            st.classes.to_string(),
            st.train.to_string(),
            st.test.to_string(),
            format!("{} / {}", st.train_pool, st.test_pool),
            st.hash.clone(),
        ]);
    }
    t
}

/// The version, and each dataset's hash and files.
fn data_files(s: &mut String, p: &Protocol) {
    let mut seen: Vec<&str> = Vec::new();
    let datasets: Vec<&Study> = p
        .studies
        .iter()
        .filter(|st| {
            let new = !seen.contains(&st.hash.as_str());
            seen.push(&st.hash);
            new
        })
        .collect();
    if let [one] = datasets.as_slice() {
        let _ = writeln!(s, "- lesser {}; data hash `{}`:", p.version, one.hash);
        files(s, one);
        return;
    }
    let _ = writeln!(s, "- lesser {}.", p.version);
    for st in datasets {
        let _ = writeln!(
            s,
            "- {} (`{}`), data hash `{}`:",
            markdown(&st.name),
            st.dir.replace('`', "'"),
            st.hash
        );
        files(s, st);
    }
}

fn files(s: &mut String, st: &Study) {
    for (name, sha) in &st.files {
        let _ = writeln!(s, "  - `{}` sha256 `{sha}`", name.replace('`', "'"));
    }
}
