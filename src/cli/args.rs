//! The command line, as clap derive types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Run seeded, repeated experiments on small networks that compare two MNIST digits.
#[derive(Debug, Parser)]
#[command(name = "lesser", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate specs and print each variant's layers, shapes and parameter counts.
    Check(CheckArgs),
    /// Train every round of every variant and write the reports.
    Run(RunArgs),
    /// Time one round of each variant on one thread.
    Bench(BenchArgs),
    /// Compare two sets of results variant by variant, with paired statistics.
    Diff(DiffArgs),
    /// Rebuild every report and figure from the stored rounds, training nothing.
    Report(ReportArgs),
    /// Evaluate a round's kept weights (`run --keep-weights`) on its test pairs or on
    /// another dataset, training nothing.
    Eval(EvalArgs),
}

/// How `diff` prints its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// A Markdown table, e.g. for a pull-request comment.
    Markdown,
    Csv,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The old results: a reports directory, a results.csv, or a git revision (HEAD~1, a
    /// branch, a tag) whose reports/results.csv is read from history.
    pub old: String,
    /// The new results, as OLD; default: the working tree's reports/.
    pub new: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Significance level of the tests (and 1 - confidence of the intervals).
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// How p-values are adjusted for comparing many variants at once; verdicts use the
    /// adjusted p.
    #[arg(long, value_enum, default_value_t = crate::diff::Correction::Holm)]
    pub correction: crate::diff::Correction,
    /// Exit with status 1 when any variant got worse, diverged in every round or lost
    /// rounds, at level --alpha.
    #[arg(long)]
    pub fail_on_regression: bool,
    /// Also draw old and new errors of every variant side by side into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

/// How spec files become variants (shared by `check`, `run` and `bench`).
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Override a key in every selected spec, e.g. `--set train.epochs=40` (repeatable;
    /// part of each variant's hash and recorded in the reports).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Most points one spec's grid may expand into.
    #[arg(long, default_value_t = crate::spec::DEFAULT_MAX_POINTS)]
    pub max_grid: usize,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Spec files or directories of them.
    #[arg(default_value = "specs")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Read every spec's data from this IDX directory instead of its `data.dir`.
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// Options shared by `run` and `bench`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Spec files or directories of them.
    #[arg(long = "specs", default_value = "specs", num_args = 1..)]
    pub specs: Vec<PathBuf>,
    /// Read every spec's data from this IDX directory (gzipped or not) instead of its
    /// `data.dir`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Only these variants: names, or spec file stems (every point of a grid).
    #[arg(long, num_args = 1..)]
    pub only: Vec<String>,
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Override every spec's epochs (for quick looks).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Training and test samples per round for every spec, instead of its
    /// `data.train_pairs` and `data.test_pairs`.
    #[arg(long)]
    pub pairs: Option<usize>,
    /// Refuse a variant whose round is estimated to need more than this many GiB of memory
    /// (`--jobs` rounds run at once).
    #[arg(long, default_value_t = crate::variants::DEFAULT_MAX_MEMORY_GIB)]
    pub max_memory: f64,
}

/// The rounds and the reports directory (shared by `run` and `report`).
#[derive(Debug, Args)]
pub struct OutArgs {
    /// Override every spec's number of rounds.
    #[arg(long)]
    pub repeats: Option<usize>,
    /// The reports directory (its round store is `.cache/rounds` inside).
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub sweep: SweepArgs,
    #[command(flatten)]
    pub target: OutArgs,
    /// Rounds trained at once (default: all cores). Results do not depend on it.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Threads in all (default: all cores); threads no round holds work inside the rounds
    /// running. Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Retrain every round, ignoring stored results.
    #[arg(long)]
    pub fresh: bool,
    /// Write every round's trained weights beside its record in the store (safetensors),
    /// for `lesser eval`; rounds stored without them are trained again.
    #[arg(long)]
    pub keep_weights: bool,
    /// Print only errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// Train only shard K of N (0-based) and write no reports; `lesser report` merges the
    /// shards' rounds. `auto`: a Slurm array task's shard; `auto/N`: a Kubernetes indexed
    /// Job's.
    #[arg(long, value_name = "K/N|auto|auto/N")]
    pub shard: Option<String>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub sweep: SweepArgs,
    /// Rounds timed per variant (the median is printed).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Threads each round runs on.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub sweep: SweepArgs,
    #[command(flatten)]
    pub target: OutArgs,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The variant, by name.
    pub variant: String,
    /// Which of its rounds.
    #[arg(long, default_value_t = 0)]
    pub round: usize,
    /// Evaluate on test pairs of this IDX directory (images of the variant's size and
    /// classes) instead of the round's own.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The pairs the round was trained with, if `run` was told `--pairs` (also the test
    /// samples drawn from --data).
    #[arg(long)]
    pub pairs: Option<usize>,
    /// The epochs the round was trained for, if `run` was told `--epochs`.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Also write the test samples measured (normalized, as the network reads them) and their
    /// targets to this safetensors file (tensors `input` and `target`), for another tool to
    /// measure the same weights on the same samples.
    #[arg(long, value_name = "FILE")]
    pub save_samples: Option<PathBuf>,
    /// Spec files or directories of them.
    #[arg(long = "specs", default_value = "specs", num_args = 1..)]
    pub specs: Vec<PathBuf>,
    #[command(flatten)]
    pub spec: SpecArgs,
    /// The reports directory whose store holds the weights.
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
}
