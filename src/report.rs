//! The sweep's files: `results.csv` (one row per round), `REPORT.md` (one row per variant),
//! `timing.csv` (wall clock, kept apart because it is not reproducible).
//!
//! Formatting is deterministic, so the same sweep writes byte-identical files and `git diff`
//! shows only real changes.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};
use crate::store::RoundKey;
use crate::train::{RoundResult, Status};

/// One round as reported and stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundRecord {
    pub variant: String,
    pub round: usize,
    pub data_seed: u64,
    pub init_seed: u64,
    pub spec_hash: String,
    pub data_hash: String,
    pub params: usize,
    pub epochs: usize,
    pub pairs: usize,
    pub version: String,
    pub result: RoundResult,
    /// Wall-clock seconds the round took to train: kept in the store and `timing.csv`, never
    /// in `results.csv` (it is not reproducible).
    pub seconds: f64,
}

/// The columns of `results.csv`, in order.
pub const RESULTS_HEADER: [&str; 14] = [
    "variant",
    "round",
    "data_seed",
    "init_seed",
    "spec_hash",
    "params",
    "epochs",
    "pairs",
    "final_train_loss",
    "train_error",
    "test_error",
    "digit_test_error",
    "status",
    "data_hash",
];

fn opt(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v:.4}"))
}

fn status_text(s: Status) -> String {
    match s {
        Status::Ok => "ok".into(),
        Status::Diverged { epoch } => format!("diverged@{epoch}"),
    }
}

fn parse_status(s: &str) -> Option<Status> {
    match s {
        "ok" => Some(Status::Ok),
        _ => s
            .strip_prefix("diverged@")?
            .parse()
            .ok()
            .map(|epoch| Status::Diverged { epoch }),
    }
}

impl RoundRecord {
    /// The store key of this round.
    pub fn key(&self) -> RoundKey {
        RoundKey {
            spec_hash: self.spec_hash.clone(),
            data_seed: self.data_seed,
            init_seed: self.init_seed,
            data_hash: self.data_hash.clone(),
            pairs: self.pairs,
            epochs: self.epochs,
            version: self.version.clone(),
        }
    }

    /// The `results.csv` fields.
    pub fn fields(&self) -> Vec<String> {
        let r = &self.result;
        vec![
            self.variant.clone(),
            self.round.to_string(),
            self.data_seed.to_string(),
            self.init_seed.to_string(),
            self.spec_hash.clone(),
            self.params.to_string(),
            self.epochs.to_string(),
            self.pairs.to_string(),
            format!("{:.6}", r.final_train_loss),
            opt(r.train_error),
            opt(r.test_error),
            opt(r.digit_test_error),
            status_text(r.status),
            self.data_hash.clone(),
        ]
    }

    /// Parses the fields of a `results.csv` row (see [`RESULTS_HEADER`]).
    pub fn from_fields(f: &[&str], version: &str) -> Option<Self> {
        if f.len() != RESULTS_HEADER.len() {
            return None;
        }
        let num = |s: &str| -> Option<Option<f64>> {
            if s.is_empty() {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        Some(RoundRecord {
            variant: f[0].to_string(),
            round: f[1].parse().ok()?,
            data_seed: f[2].parse().ok()?,
            init_seed: f[3].parse().ok()?,
            spec_hash: f[4].to_string(),
            params: f[5].parse().ok()?,
            epochs: f[6].parse().ok()?,
            pairs: f[7].parse().ok()?,
            result: RoundResult {
                final_train_loss: f[8].parse().ok()?,
                train_error: num(f[9])?,
                test_error: num(f[10])?,
                digit_test_error: num(f[11])?,
                status: parse_status(f[12])?,
            },
            data_hash: f[13].to_string(),
            version: version.to_string(),
            seconds: 0.0,
        })
    }

    /// One store line: the crate version, the seconds, then the results fields,
    /// comma-separated (no field can hold a comma: names are file stems checked by the runner).
    pub fn to_store_line(&self) -> String {
        let mut f = vec![self.version.clone(), format!("{:.3}", self.seconds)];
        f.extend(self.fields());
        f.join(",")
    }

    /// Parses a store line; `None` for anything malformed.
    pub fn from_store_line(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split(',').collect();
        let [version, seconds, rest @ ..] = f.as_slice() else {
            return None;
        };
        let mut r = Self::from_fields(rest, version)?;
        r.seconds = seconds.parse().ok()?;
        Some(r)
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees a
/// half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// `results.csv` for `records` (already in report order).
pub fn results_csv(records: &[RoundRecord]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(RESULTS_HEADER).expect("in-memory write");
    for r in records {
        w.write_record(r.fields()).expect("in-memory write");
    }
    w.into_inner().expect("in-memory write")
}

/// Per-variant statistics of the test error.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub variant: String,
    pub description: String,
    pub params: usize,
    pub rounds: usize,
    pub diverged: usize,
    pub mean: Option<f64>,
    /// Sample standard deviation (n - 1).
    pub std: Option<f64>,
    pub best: Option<f64>,
    pub worst: Option<f64>,
    pub digit_mean: Option<f64>,
}

/// Mean and sample standard deviation (`None` below 2 values).
pub fn mean_std(v: &[f64]) -> (Option<f64>, Option<f64>) {
    if v.is_empty() {
        return (None, None);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.len() > 1)
        .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (Some(mean), std)
}

/// Summarizes the rounds of one variant.
pub fn summarize(variant: &str, description: &str, rounds: &[&RoundRecord]) -> Summary {
    let errs: Vec<f64> = rounds.iter().filter_map(|r| r.result.test_error).collect();
    let digits: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r.result.digit_test_error)
        .collect();
    let (mean, std) = mean_std(&errs);
    Summary {
        variant: variant.to_string(),
        description: description.to_string(),
        params: rounds.first().map_or(0, |r| r.params),
        rounds: rounds.len(),
        diverged: rounds
            .iter()
            .filter(|r| r.result.status != Status::Ok)
            .count(),
        mean,
        std,
        best: errs.iter().copied().reduce(f64::min),
        worst: errs.iter().copied().reduce(f64::max),
        digit_mean: mean_std(&digits).0,
    }
}

/// A fraction as a percentage with one decimal, or an em dash.
pub fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

/// What `REPORT.md` says about how the numbers were made.
#[derive(Debug, Clone)]
pub struct Protocol {
    pub pairs: usize,
    pub train_pool: usize,
    pub test_pool: usize,
    pub data_files: Vec<(String, String)>,
    pub data_hash: String,
    pub version: String,
}

/// `REPORT.md`: one row per variant, then the data and protocol.
pub fn report_md(summaries: &[Summary], p: &Protocol) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# lesser: sweep report\n");
    let _ = writeln!(
        s,
        "Test error of predicting whether the first of two 14x14 MNIST digits is lesser than or \
         equal to the second, over independent rounds (fresh pairs and initialization each).\n"
    );
    let _ = writeln!(
        s,
        "| variant | params | rounds | mean | std | best | worst | digit error | description |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for m in summaries {
        let rounds = if m.diverged > 0 {
            format!("{} ({} diverged)", m.rounds, m.diverged)
        } else {
            m.rounds.to_string()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            m.variant,
            m.params,
            rounds,
            pct(m.mean),
            pct(m.std),
            pct(m.best),
            pct(m.worst),
            pct(m.digit_mean),
            m.description
        );
    }
    let _ = writeln!(s, "\n## Data and protocol\n");
    let _ = writeln!(
        s,
        "- {} training pairs and {} test pairs per round, drawn without replacement from \
         disjoint pools of {} train and {} test images (MNIST, average-pooled 28x28 -> 14x14); \
         target = class0 <= class1.",
        p.pairs, p.pairs, p.train_pool, p.test_pool
    );
    let _ = writeln!(
        s,
        "- Round r draws its pairs from the same data seed for every variant (a paired design); \
         the initialization seed also depends on the variant's name and its spec's `seed`."
    );
    let _ = writeln!(
        s,
        "- Errors are measured once, after the last epoch; the test set chooses nothing. \
         `std` is the sample standard deviation; digit error is the digit-classification \
         error on the test pairs' digits (— for networks without digit outputs). Diverged \
         rounds (NaN or infinite loss) are counted and left out of the statistics."
    );
    let _ = writeln!(
        s,
        "- Every round is a row of `results.csv`; wall-clock times are in `timing.csv`."
    );
    let _ = writeln!(s, "- lesser {}; data hash `{}`:", p.version, p.data_hash);
    for (name, sha) in &p.data_files {
        let _ = writeln!(s, "  - `{name}` sha256 `{sha}`");
    }
    s
}
