//! Spec files: one TOML file per variant, resolved through `extends` into a complete [`Spec`].
//!
//! A spec is one TOML tree (`tree.rs`): its `extends` chain merged onto the defaults
//! (`defaults.toml`), a grid point and the overrides set by key path, every key remembering
//! where it was set. One deserialization and one pass of rules (`resolve.rs`) turn the tree
//! into a [`Spec`]; a `[grid]` (`grid.rs`) makes one per point, a `[search]` (`search.rs`) one
//! per point it tries. The language is documented in `specs/README.md`.

mod data;
mod grid;
mod layer;
mod resolve;
mod search;
mod task;
mod tree;

pub use data::{Data, MAX_SAMPLES, Normalize};
pub use grid::{DEFAULT_MAX_POINTS, GridPoint, MAX_POINTS_LIMIT, Override};
pub use layer::LayerSpec;
pub use resolve::{MAX_ENSEMBLE, MAX_EPOCHS, MAX_REPEATS};
pub use search::{Dim, Halving, MAX_TRIALS, Method, Range, Rung, Search, SearchSpec};
pub use task::{Relation, Task, TaskKind};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};
use resolve::resolve;
pub use tree::Origin;
use tree::Tree;

/// Defaults of the keys inside an optimizer, a schedule, augmentation and test-time shifts
/// (a section's own keys have theirs in `defaults.toml`).
mod default {
    pub fn adam_lr() -> f32 {
        1e-3
    }
    pub fn adam_betas() -> [f32; 2] {
        [0.9, 0.999]
    }
    pub fn adamw_weight_decay() -> f32 {
        0.01
    }
    pub fn step_gamma() -> f32 {
        0.1
    }
    pub fn one_cycle_pct() -> f32 {
        0.3
    }
    pub fn tta_shift() -> f32 {
        1.0
    }
    /// Half the 4 pixels Simard et al. (2003) smoothed 28 x 28 digits with: the digits here
    /// are 14 x 14.
    pub const fn elastic_sigma() -> f32 {
        2.0
    }
    pub fn is_elastic_sigma(v: &f32) -> bool {
        *v == elastic_sigma()
    }
}

/// How the network sees a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topology {
    /// A digit network on each digit, then a comparison head on the 20 digit logits.
    Digits,
    /// One stack over the whole `2x14x14` input, ending in 2 logits.
    Joint,
}

/// How a digits network turns the two digits' logits into a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    /// A learned `head` stack on the concatenated digit logits, ending in 2 logits.
    Learned,
    /// No learned head: predict `argmax(d0) <= argmax(d1)`.
    Argmax,
    /// No learned head: predict 1 when `P(c0 <= c1) = sum over i <= j of p0(i) p1(j)`
    /// exceeds 0.5, the two digit distributions taken as independent.
    Probability,
}

/// The optimizer and its settings (PyTorch's semantics).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Optimizer {
    Adam {
        #[serde(default = "default::adam_lr", deserialize_with = "layer::real")]
        lr: f32,
        #[serde(default = "default::adam_betas", deserialize_with = "layer::real_pair")]
        betas: [f32; 2],
        #[serde(default, deserialize_with = "layer::real")]
        weight_decay: f32,
    },
    /// Adam with decoupled weight decay (PyTorch's `AdamW`: weights shrink by `lr *
    /// weight_decay` each step, apart from the gradient).
    Adamw {
        #[serde(default = "default::adam_lr", deserialize_with = "layer::real")]
        lr: f32,
        #[serde(default = "default::adam_betas", deserialize_with = "layer::real_pair")]
        betas: [f32; 2],
        #[serde(
            default = "default::adamw_weight_decay",
            deserialize_with = "layer::real"
        )]
        weight_decay: f32,
    },
    Sgd {
        #[serde(deserialize_with = "layer::real")]
        lr: f32,
        #[serde(default, deserialize_with = "layer::real")]
        momentum: f32,
        #[serde(default, deserialize_with = "layer::real")]
        weight_decay: f32,
    },
}

/// How the learning rate moves over a round: a factor of the optimizer's `lr` at each step,
/// after a linear warm-up of `warmup` epochs from 0 (PyTorch's semantics where it has them).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// `lr` throughout.
    Constant {
        #[serde(default)]
        warmup: usize,
    },
    /// Cosine from `lr` down to 0 over the steps after the warm-up.
    Cosine {
        #[serde(default)]
        warmup: usize,
    },
    /// `lr * gamma^(epochs done / every)`.
    Step {
        every: usize,
        #[serde(default = "default::step_gamma", deserialize_with = "layer::real")]
        gamma: f32,
        #[serde(default)]
        warmup: usize,
    },
    /// PyTorch's `OneCycleLR` (cosine): from `lr / 25` up to `lr` over the first `pct_start`
    /// of the steps, then down to `lr / 250000`.
    OneCycle {
        #[serde(default = "default::one_cycle_pct", deserialize_with = "layer::real")]
        pct_start: f32,
    },
}

impl Schedule {
    /// The factor of `lr` at `step` (0-based) of `total` steps, `per_epoch` steps an epoch.
    pub fn factor(&self, step: usize, total: usize, per_epoch: usize) -> f64 {
        let (t, total) = (step as f64, total.max(1) as f64);
        let warm = |warmup: usize, f: f64| {
            let w = (warmup * per_epoch) as f64;
            if t < w { f * (t + 1.0) / w } else { f }
        };
        match *self {
            Schedule::Constant { warmup } => warm(warmup, 1.0),
            Schedule::Cosine { warmup } => {
                let w = (warmup * per_epoch) as f64;
                let span = (total - w).max(1.0);
                let after = (t - w).max(0.0);
                warm(
                    warmup,
                    0.5 * (1.0 + (std::f64::consts::PI * after / span).cos()),
                )
            }
            Schedule::Step {
                every,
                gamma,
                warmup,
            } => {
                let epoch = step / per_epoch.max(1);
                warm(warmup, f64::from(gamma).powi((epoch / every.max(1)) as i32))
            }
            Schedule::OneCycle { pct_start } => {
                // PyTorch's defaults: div_factor 25, final_div_factor 1e4.
                let (start, end) = (1.0 / 25.0, 1.0 / 25.0 / 1e4);
                let up = (f64::from(pct_start) * total - 1.0).max(1.0);
                let cos = |from: f64, to: f64, x: f64| {
                    to + (from - to) / 2.0 * (1.0 + (std::f64::consts::PI * x).cos())
                };
                if t <= up {
                    cos(start, 1.0, t / up)
                } else {
                    cos(1.0, end, ((t - up) / (total - 1.0 - up).max(1.0)).min(1.0))
                }
            }
        }
    }
}

/// A layer with where it was written, for error messages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlacedLayer {
    pub spec: LayerSpec,
    /// `line:col` in the file that defined the stack.
    #[serde(skip)]
    pub place: String,
}

/// A named stack of layers and the file that defined it.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Stack {
    #[serde(skip)]
    pub file: PathBuf,
    pub layers: Vec<PlacedLayer>,
}

/// Read as a list of layers; where they were written is filled in after.
impl<'de> Deserialize<'de> for Stack {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let layers = Vec::<LayerSpec>::deserialize(d)?;
        Ok(Stack {
            file: PathBuf::new(),
            layers: layers
                .into_iter()
                .map(|spec| PlacedLayer {
                    spec,
                    place: String::new(),
                })
                .collect(),
        })
    }
}

/// The resolved model section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub topology: Topology,
    pub weight_sharing: bool,
    /// Weight of the digit-class cross-entropy, summed over both digits (0 = off).
    #[serde(deserialize_with = "layer::real")]
    pub aux_loss: f32,
    /// Weight of the loss on the reversed pair, target `class1 <= class0` (0 = off).
    #[serde(deserialize_with = "layer::real")]
    pub asymmetry: f32,
    pub compare: Compare,
    pub digit: Stack,
    pub head: Stack,
    pub joint: Stack,
}

/// The resolved training section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Train {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: Optimizer,
    /// Left out of the hash when constant without warm-up, so older specs keep theirs.
    #[serde(skip_serializing_if = "Schedule::is_plain")]
    pub schedule: Schedule,
    /// Weight of the uniform distribution mixed into every target (0 = off).
    #[serde(skip_serializing_if = "is_zero", deserialize_with = "layer::real")]
    pub label_smoothing: f32,
    /// Transforms of the training digits, every epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub augment: Option<Augment>,
    /// New pairs from the round's training digits every epoch.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repair: bool,
    /// Networks trained per round, each from its own seed, their probabilities averaged.
    #[serde(skip_serializing_if = "is_one")]
    pub ensemble: usize,
    /// Test-time augmentation of the round's measurements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tta: Option<Tta>,
    /// Measure the curves' test and validation errors every this many epochs (and at the
    /// last); the rounds' results do not depend on it, their curves do.
    #[serde(skip_serializing_if = "is_one")]
    pub curve_every: usize,
    /// Share of the round's training pairs held out for validation (0 = none).
    #[serde(skip_serializing_if = "is_zero", deserialize_with = "layer::real")]
    pub validation: f32,
    /// Stop when the validation error has not improved for this many epochs, and keep the
    /// best epoch's weights (needs a validation share).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    /// Write each round's trained weights beside its record (not part of the hash: keeping
    /// them changes no number).
    #[serde(skip_serializing)]
    pub keep_weights: bool,
    /// Rounds to run (not part of the spec's hash: more rounds do not change a round).
    #[serde(skip_serializing)]
    pub repeats: usize,
    /// Base seed of the rounds' seeds (not part of the hash: seeds are recorded per round).
    #[serde(skip_serializing)]
    pub seed: u64,
}

impl Train {
    /// `self` with what a spec turns off by zeros turned off: augmentation whose transforms
    /// are all 0, test-time shifts of 0, early stopping with a patience of 0 (how a spec
    /// turns off what the one it extends has, and how the defaults say "none").
    fn without_zeros(self) -> Train {
        let augment = self
            .augment
            .filter(|a| a.shift != 0.0 || a.rotate != 0.0 || a.scale != 0.0 || a.elastic != 0.0)
            .map(|a| Augment {
                // Without a distortion its smoothness means nothing (nor hashes).
                elastic_sigma: if a.elastic == 0.0 {
                    default::elastic_sigma()
                } else {
                    a.elastic_sigma
                },
                ..a
            });
        Train {
            augment,
            tta: self.tta.filter(|t| t.shift != 0.0),
            early_stopping: self.early_stopping.filter(|e| e.patience != 0),
            ..self
        }
    }
}

/// Random transforms of the training digits, drawn afresh every epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// Largest shift, in pixels, along each axis.
    #[serde(default, deserialize_with = "layer::real")]
    pub shift: f32,
    /// Largest rotation, in degrees, either way.
    #[serde(default, deserialize_with = "layer::real")]
    pub rotate: f32,
    /// Largest change of size, as a fraction (0.1: 90% to 110%).
    #[serde(default, deserialize_with = "layer::real")]
    pub scale: f32,
    /// Elastic distortion: every pixel displaced smoothly at random, each axis's
    /// displacement with this standard deviation in pixels (0 = none).
    #[serde(
        default,
        deserialize_with = "layer::real",
        skip_serializing_if = "is_zero"
    )]
    pub elastic: f32,
    /// How smooth that displacement is: the standard deviation, in pixels, of the Gaussian
    /// that blurs independent per-pixel noise into it.
    #[serde(
        default = "default::elastic_sigma",
        deserialize_with = "layer::real",
        skip_serializing_if = "default::is_elastic_sigma"
    )]
    pub elastic_sigma: f32,
}

impl Augment {
    /// No transform at all.
    pub const NONE: Augment = Augment {
        shift: 0.0,
        rotate: 0.0,
        scale: 0.0,
        elastic: 0.0,
        elastic_sigma: default::elastic_sigma(),
    };
}

/// Test-time augmentation: a round's errors measured on its pairs as they are and shifted by
/// `shift` pixels left, right, up and down, the five views' probabilities averaged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tta {
    #[serde(default = "default::tta_shift", deserialize_with = "layer::real")]
    pub shift: f32,
}

/// Early stopping on the validation error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// Epochs without a lower validation error before training stops (0 = never).
    pub patience: usize,
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

fn is_zero(v: &f32) -> bool {
    *v == 0.0
}

impl Schedule {
    /// Constant, without warm-up: the default.
    pub fn is_plain(&self) -> bool {
        *self == Schedule::Constant { warmup: 0 }
    }
}

/// A variant's published figures: `reference = 0.19` (a mean test error alone) or
/// `reference = { mean = 0.19, std = 0.02, best = 0.17, worst = 0.22, weights = 42910,
/// rounds = 10 }`. Errors are fractions; `weights` counts what the publication counts (the
/// parameters a value is multiplied by).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    #[serde(deserialize_with = "layer::real")]
    pub mean: f32,
    #[serde(default, deserialize_with = "layer::real_opt")]
    pub std: Option<f32>,
    #[serde(default, deserialize_with = "layer::real_opt")]
    pub best: Option<f32>,
    #[serde(default, deserialize_with = "layer::real_opt")]
    pub worst: Option<f32>,
    pub weights: Option<usize>,
    /// Rounds the published statistics are over.
    pub rounds: Option<usize>,
}

impl Reference {
    /// `reference` as written: a table, a bare number for the mean alone, or `false` for
    /// none (a spec that extends one with published figures but measures something else).
    pub(crate) fn written<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<Reference>, D::Error> {
        let bad = |e: toml::de::Error| serde::de::Error::custom(e.message().to_string());
        let table = match toml::Value::deserialize(d)? {
            toml::Value::Boolean(false) => return Ok(None),
            table @ toml::Value::Table(_) => table,
            mean => toml::Value::Table([("mean".to_string(), mean)].into_iter().collect()),
        };
        Reference::deserialize(table).map(Some).map_err(bad)
    }
}

/// A complete variant, ready to compile.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The variant's name: the file stem, with the grid point when there is one
    /// (`directALWS[lr=0.003,aux_loss=0.3]`).
    pub name: String,
    /// The file stem.
    pub stem: String,
    /// The point of the spec's grid this variant is, if any.
    pub grid: Option<GridPoint>,
    /// `--set` overrides applied to it (`KEY=VALUE`), part of its hash.
    pub overrides: Vec<String>,
    pub path: PathBuf,
    pub description: String,
    /// Where the variant stands in reports (lower first); `None` after every ordered one.
    pub order: Option<i64>,
    /// Published figures of this variant (the seed report's), shown beside ours; not part of
    /// the hash.
    pub reference: Option<Reference>,
    /// The variant REPORT.md compares this one against, round by round (an ablation's
    /// full variant); not part of the hash.
    pub baseline: Option<String>,
    pub data: Data,
    pub task: Task,
    pub model: Model,
    pub train: Train,
    /// Where each `data` key was set, for the errors found once the data is read.
    pub data_origins: Vec<(String, Origin)>,
}

impl Spec {
    /// An error about `key` (a `data` key) at the place that set it: a flag's error once for
    /// every spec, a file's with its line.
    pub fn data_error(&self, key: &str, msg: impl std::fmt::Display) -> Error {
        match self.data_origins.iter().find(|(k, _)| k == key) {
            Some((_, Origin::Flag(flag))) => Error::Usage(format!("{flag}: {key}: {msg}")),
            Some((_, Origin::File { path, at })) => Error::spec(path, at, format!("{key}: {msg}")),
            None => Error::spec(&self.path, "", format!("{key}: {msg}")),
        }
    }

    /// A short hash of everything that determines a round's result, given its seeds.
    pub fn hash(&self) -> String {
        #[derive(Serialize)]
        struct Hashed<'a> {
            model: &'a Model,
            train: HashedTrain<'a>,
            // So that a run with overrides never shares rounds with one without, even where
            // an override sets a key to the value it had.
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            overrides: &'a [String],
            #[serde(skip_serializing_if = "Task::is_seed")]
            task: Task,
            #[serde(skip_serializing_if = "data::Hashed::is_default")]
            data: data::Hashed,
        }
        /// `normalize` where it was hashed before it moved to `[data]`, so that every
        /// spec keeps its hash.
        #[derive(Serialize)]
        struct HashedTrain<'a> {
            #[serde(flatten)]
            train: &'a Train,
            normalize: Normalize,
        }
        let text = toml::to_string(&Hashed {
            model: &self.model,
            train: HashedTrain {
                train: &self.train,
                normalize: self.data.normalize,
            },
            overrides: &self.overrides,
            task: self.task,
            data: data::Hashed::of(&self.data),
        })
        .expect("a resolved spec always serializes");
        crate::hash::short_of(text.as_bytes())
    }
}

/// Loads one variant file without a grid, following `extends`. `Ok(None)` for an
/// `abstract` file.
pub fn load(path: &Path) -> Result<Option<Spec>> {
    match load_all(path, &[], DEFAULT_MAX_POINTS)? {
        None => Ok(None),
        Some(mut specs) if specs.len() == 1 && specs[0].grid.is_none() => Ok(specs.pop()),
        Some(specs) => Err(Error::spec(
            path,
            "grid",
            format!(
                "has a grid of {} points; load it with load_all",
                specs.len()
            ),
        )),
    }
}

/// What one spec file holds.
#[derive(Debug, Clone)]
pub enum File {
    /// Only there to be extended.
    Abstract,
    /// One variant, or one per point of its grid.
    Variants(Vec<Spec>),
    /// A search: its variants are made from the points it tries.
    Search(Box<SearchSpec>),
}

/// Loads one spec file, following `extends`: one variant, or one per point of its grid, each
/// with `overrides` applied after the point. `Ok(None)` for an `abstract` file. A grid of
/// more than `max_points` points is refused, and so is an override of a key the grid varies,
/// and a file with a search ([`load_file`] loads those).
pub fn load_all(
    path: &Path,
    overrides: &[Override],
    max_points: usize,
) -> Result<Option<Vec<Spec>>> {
    match load_file(path, overrides, max_points)? {
        File::Abstract => Ok(None),
        File::Variants(specs) => Ok(Some(specs)),
        File::Search(s) => Err(s.search.error("this spec searches; load it with load_file")),
    }
}

/// Loads one spec file, following `extends`, with `overrides` applied: what it holds.
pub fn load_file(path: &Path, overrides: &[Override], max_points: usize) -> Result<File> {
    let (mut base, is_abstract) = tree::load_chain(path)?;
    if is_abstract {
        return Ok(File::Abstract);
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let grid = grid::Grid::take(&mut base, path)?;
    let search = Search::take(&mut base, path)?;
    let recorded: Vec<String> = overrides
        .iter()
        .filter(|o| o.recorded)
        .map(|o| o.text.clone())
        .collect();
    let variant = |mut tree: Tree, name: &str, point: Option<GridPoint>| -> Result<Spec> {
        set_all(&mut tree, overrides)?;
        let mut spec = resolve(path, name, &tree)?;
        spec.grid = point;
        spec.overrides = recorded.clone();
        Ok(spec)
    };
    if let Some(search) = search {
        set_all(&mut base, overrides)?;
        if grid.is_some() {
            return Err(search.error("a spec has a grid or a search, not both"));
        }
        let spec = variant(base.clone(), &stem, None)?;
        let s = SearchSpec::new(search, spec, base, recorded, overrides)?;
        return Ok(File::Search(Box::new(s)));
    }
    let Some(grid) = grid else {
        return Ok(File::Variants(vec![variant(base, &stem, None)?]));
    };
    grid.check(overrides, max_points)?;
    let mut specs = Vec::new();
    for indices in grid.points() {
        let (name, point) = grid.point(&stem, &indices);
        let mut tree = base.clone();
        grid.apply(&mut tree, &indices, &name)?;
        let spec = variant(tree, &name, Some(point)).map_err(|e| match e {
            Error::Spec { path, place, msg } => Error::Spec {
                path,
                place,
                msg: format!("grid point {name}: {msg}"),
            },
            other => other,
        })?;
        specs.push(spec);
    }
    Ok(File::Variants(specs))
}

/// Sets every override's key in `tree`.
fn set_all(tree: &mut Tree, overrides: &[Override]) -> Result<()> {
    for o in overrides {
        tree.set(&o.key, o.value.clone(), Origin::Flag(o.flag.clone()))
            .map_err(|why| Error::Usage(format!("{}: {why}", o.flag)))?;
    }
    Ok(())
}

/// Compares file names naturally: case-insensitive, runs of digits by value (`v2` < `v10`).
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for ch in s.chars() {
            let digit = ch.is_ascii_digit();
            match out.last_mut() {
                Some((d, run)) if *d == digit => run.push(ch),
                _ => out.push((digit, ch.to_string())),
            }
        }
        out
    }
    let key = |s: &str| -> Vec<(bool, String)> {
        chunks(s)
            .into_iter()
            .map(|(digit, run)| {
                if digit {
                    // Equal values compare equal whatever their leading zeros.
                    let t = run.trim_start_matches('0');
                    (true, format!("{:0>40}", t))
                } else {
                    (false, run.to_lowercase())
                }
            })
            .collect()
    };
    key(a).cmp(&key(b)).then_with(|| a.cmp(b))
}

/// The spec files named by `paths`, in the order named: each directory gives its `*.toml`
/// files in natural order, each file itself. A file named twice (also through a directory) is
/// taken once. A directory without specs, or a missing path, is an error.
pub fn spec_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io(p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "toml"))
                .collect();
            if found.is_empty() {
                return Err(Error::spec(
                    p,
                    "",
                    "no spec files (*.toml) in this directory",
                ));
            }
            found.sort_by(|a, b| {
                let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
                natural_cmp(&name(a).unwrap_or_default(), &name(b).unwrap_or_default())
            });
            files.extend(found);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            return Err(Error::spec(p, "", "no such file or directory"));
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.canonicalize().unwrap_or_else(|_| f.clone())));
    Ok(files)
}
