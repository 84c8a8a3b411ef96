//! The variants of a sweep: spec files loaded, planned once, checked against each other, put
//! in report order and selected. `check`, `run` and `bench` all start here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::compile::{DataShape, Plan, plan};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::record::check_variant_name;
use crate::spec::{self, Override, Spec};

/// Rows of a batch the evaluation runs at once (see `train::evaluate`); the memory estimate
/// counts them.
pub const EVAL_CHUNK: usize = 500;

/// Default of `--max-memory`, in GiB: a round estimated above it is refused before training.
pub const DEFAULT_MAX_MEMORY_GIB: f64 = 8.0;

/// A spec with its dataset and its plan, checked against each other.
#[derive(Debug, Clone)]
pub struct Variant {
    pub spec: Spec,
    pub plan: Plan,
    pub data: Arc<Dataset>,
    /// A search's trial: its rounds draw their data from the search's own seeds.
    pub trial: bool,
}

/// A spec that searches, on its dataset: its variants are made from the points it tries
/// (`search`).
#[derive(Debug, Clone)]
pub struct Searched {
    pub spec: spec::SearchSpec,
    /// The spec without a point, planned on its data: its shapes checked before any trial.
    pub base: Variant,
}

/// Datasets read once per directory and pooling factor, shared by every variant that reads
/// them; a dataset that failed to load keeps its error, for each variant that names it.
#[derive(Default)]
struct Datasets(HashMap<(PathBuf, usize), std::result::Result<Arc<Dataset>, String>>);

impl Datasets {
    fn get(&mut self, spec: &Spec) -> Result<Arc<Dataset>> {
        let d = &spec.data;
        let key = (
            d.dir.canonicalize().unwrap_or_else(|_| d.dir.clone()),
            d.pool,
        );
        self.0
            .entry(key)
            .or_insert_with(|| {
                Dataset::load(&d.dir, d.pool)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|why| spec.data_error("data.dir", why))
    }
}

/// What the spec files named on a command line hold.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Valid variants, in report order.
    pub variants: Vec<Variant>,
    /// Specs that search: their variants are known once their trials have trained.
    pub searches: Vec<Searched>,
    /// Files only there to be extended.
    pub abstract_files: Vec<PathBuf>,
    /// One error per bad file (or per name clash).
    pub errors: Vec<Error>,
    /// How many files were read.
    pub files: usize,
}

/// How spec files become variants: `--set` overrides (and the flags that set keys) and the
/// grid size limit.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub overrides: Vec<Override>,
    pub max_points: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            overrides: Vec::new(),
            max_points: spec::DEFAULT_MAX_POINTS,
        }
    }
}

impl LoadOptions {
    /// From the command line: `--set KEY=VALUE` texts and `--max-grid`.
    pub fn parse(sets: &[String], max_points: usize) -> Result<LoadOptions> {
        if max_points > spec::MAX_POINTS_LIMIT {
            return Err(Error::Usage(format!(
                "--max-grid {max_points}: at most {}",
                spec::MAX_POINTS_LIMIT
            )));
        }
        let overrides: Vec<Override> = sets
            .iter()
            .map(|s| Override::parse(s).map_err(Error::Usage))
            .collect::<Result<_>>()?;
        Ok(LoadOptions {
            overrides,
            max_points,
        })
    }

    /// `--epochs` and `--repeats`: every spec's `train.epochs` and `train.repeats`, set after
    /// the `--set`s (so that every rule sees them).
    pub fn counts(mut self, epochs: Option<usize>, repeats: Option<usize>) -> Self {
        let o = &mut self.overrides;
        o.extend(epochs.map(|n| Override::count("--epochs", "train.epochs", n)));
        o.extend(repeats.map(|n| Override::count("--repeats", "train.repeats", n)));
        self
    }

    /// `--keep-weights`: every spec's `train.keep_weights`.
    pub fn keep_weights(mut self, keep: bool) -> Self {
        if keep {
            let o = Override::switch("--keep-weights", "train.keep_weights");
            self.overrides.push(o);
        }
        self
    }

    /// `--data DIR` and `--pairs N`: every spec's `data.dir` (relative to the working
    /// directory), and its `data.train_pairs` and `data.test_pairs`.
    pub fn data(mut self, dir: Option<&Path>, pairs: Option<usize>) -> Result<Self> {
        if let Some(n) = pairs.filter(|&n| n > spec::MAX_SAMPLES) {
            let most = spec::MAX_SAMPLES;
            return Err(Error::Usage(format!("--pairs {n}: at most {most}")));
        }
        let o = &mut self.overrides;
        o.extend(dir.map(Override::data_dir));
        for key in ["data.train_pairs", "data.test_pairs"] {
            o.extend(pairs.map(|n| Override::count("--pairs", key, n)));
        }
        Ok(self)
    }
}

/// Loads and plans every spec under `paths` (every point of a grid a variant), collecting
/// every problem rather than stopping at the first. Report order: the `order` key (lower
/// first, specs without it after), then the order the paths were named in, each directory's
/// files in natural order, a grid's points in its order.
pub fn load(paths: &[PathBuf], opts: &LoadOptions) -> Result<Loaded> {
    let files = spec::spec_files(paths)?;
    let mut loaded = Loaded {
        files: files.len(),
        ..Loaded::default()
    };
    let mut datasets = Datasets::default();
    for f in &files {
        match spec::load_file(f, &opts.overrides, opts.max_points) {
            Ok(spec::File::Variants(specs)) => {
                for s in specs {
                    match datasets.get(&s).and_then(|d| Variant::new(s, d)) {
                        Ok(v) => loaded.variants.push(v),
                        Err(e) => loaded.errors.push(e),
                    }
                }
            }
            Ok(spec::File::Search(s)) => {
                let base = datasets
                    .get(&s.spec)
                    .and_then(|d| Variant::new(s.spec.clone(), d));
                match base {
                    Ok(base) => loaded.searches.push(Searched { spec: *s, base }),
                    Err(e) => loaded.errors.push(e),
                }
            }
            Ok(spec::File::Abstract) => loaded.abstract_files.push(f.clone()),
            Err(e) => loaded.errors.push(e),
        }
    }
    // Stable: ties keep the order the files were named in.
    loaded
        .variants
        .sort_by_key(|v| (v.spec.order.is_none(), v.spec.order));
    loaded.errors.extend(clashes(&loaded.variants));
    loaded
        .errors
        .extend(missing_baselines(&loaded.variants, &loaded.searches));
    // A bad `--set` fails every spec with the same line: say it once.
    let mut seen = std::collections::HashSet::new();
    loaded.errors.retain(|e| seen.insert(e.to_string()));
    Ok(loaded)
}

impl Variant {
    /// `spec` on `data`, with its plan: its name, its sample counts and every shape checked.
    pub fn new(spec: Spec, data: Arc<Dataset>) -> Result<Variant> {
        check_variant_name(&spec.name).map_err(|why| Error::spec(&spec.path, "", why))?;
        check_counts(&spec, &data)?;
        let shape = DataShape {
            task: spec.task,
            side: data.side,
            classes: data.classes,
        };
        let plan = plan(&spec, shape)?;
        Ok(Variant {
            spec,
            plan,
            data,
            trial: false,
        })
    }
}

/// The splits hold enough images for the samples a round draws.
fn check_counts(spec: &Spec, data: &Dataset) -> Result<()> {
    let images = spec.task.images();
    let what = if images == 2 { "pairs" } else { "images" };
    for (key, n, split, pool) in [
        (
            "data.train_pairs",
            spec.data.train_pairs,
            "train",
            &data.train,
        ),
        ("data.test_pairs", spec.data.test_pairs, "test", &data.test),
    ] {
        if n.saturating_mul(images) > pool.len() {
            return Err(spec.data_error(
                key,
                format!(
                    "{n} {what} need {} images, the {split} split of {} holds {}",
                    n.saturating_mul(images),
                    data.dir.display(),
                    pool.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Variants and searches whose `baseline` names no variant of the sweep.
fn missing_baselines(variants: &[Variant], searches: &[Searched]) -> Vec<Error> {
    let names: std::collections::HashSet<&str> =
        variants.iter().map(|v| v.spec.name.as_str()).collect();
    let specs = variants.iter().map(|v| &v.spec);
    specs
        .chain(searches.iter().map(|s| &s.spec.spec))
        .filter_map(|v| {
            let b = v.baseline.as_deref()?;
            let why = if b == v.name {
                format!("\"{b}\" is this variant itself")
            } else if !names.contains(b) {
                format!("no variant named \"{b}\" in this sweep (add its spec to --specs)")
            } else {
                return None;
            };
            Some(Error::spec(&v.path, "baseline", why))
        })
        .collect()
}

/// Two files whose stems give the same variant name: their rounds would be pooled.
fn clashes(variants: &[Variant]) -> Vec<Error> {
    let mut errors = Vec::new();
    for (i, a) in variants.iter().enumerate() {
        if let Some(b) = variants[..i].iter().find(|b| b.spec.name == a.spec.name) {
            errors.push(Error::spec(
                &a.spec.path,
                "",
                format!(
                    "variant name `{}` is also the name of {}; rename one of the files",
                    a.spec.name,
                    b.spec.path.display()
                ),
            ));
        }
    }
    errors
}

/// Every valid variant and search under `paths`, or all the problems at once.
pub fn load_valid(paths: &[PathBuf], opts: &LoadOptions) -> Result<(Vec<Variant>, Vec<Searched>)> {
    let loaded = load(paths, opts)?;
    if loaded.errors.is_empty() {
        Ok((loaded.variants, loaded.searches))
    } else {
        Err(Error::Specs(loaded.errors))
    }
}

/// The variants and searches named by `only` (all when empty): a name selects that variant,
/// a spec's stem all the points of its grid or its search, and with them the variants they
/// name as `baseline` (so that their comparisons are still made). An unknown name is an
/// error.
pub fn select(
    (mut variants, mut searches): (Vec<Variant>, Vec<Searched>),
    only: &[String],
) -> Result<(Vec<Variant>, Vec<Searched>)> {
    let named = |v: &Variant, n: &String| &v.spec.name == n || &v.spec.stem == n;
    let searched = |s: &Searched, n: &String| &s.spec.spec.stem == n;
    let known = |n: &String| {
        variants.iter().any(|v| named(v, n)) || searches.iter().any(|s| searched(s, n))
    };
    if let Some(missing) = only.iter().find(|n| !known(n)) {
        let known: Vec<&str> = variants
            .iter()
            .map(|v| v.spec.name.as_str())
            .chain(searches.iter().map(|s| s.spec.spec.stem.as_str()))
            .collect();
        return Err(Error::Usage(format!(
            "--only {missing}: no such variant (known: {})",
            known.join(", ")
        )));
    }
    if !only.is_empty() {
        searches.retain(|s| only.iter().any(|n| searched(s, n)));
        let chosen: Vec<bool> = variants
            .iter()
            .map(|v| only.iter().any(|n| named(v, n)))
            .collect();
        let baselines: Vec<String> = variants
            .iter()
            .zip(&chosen)
            .filter_map(|(v, &c)| v.spec.baseline.clone().filter(|_| c))
            .chain(searches.iter().filter_map(|s| s.spec.spec.baseline.clone()))
            .collect();
        let mut keep = chosen
            .into_iter()
            .zip(&variants)
            .map(|(c, v)| c || baselines.contains(&v.spec.name))
            .collect::<Vec<bool>>()
            .into_iter();
        variants.retain(|_| keep.next().unwrap_or(false));
    }
    Ok((variants, searches))
}

/// Checks `--max-memory`: a positive number of GiB.
pub fn check_max_memory(max_gib: f64) -> Result<()> {
    if max_gib > 0.0 && max_gib.is_finite() {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--max-memory {max_gib}: must be a positive number of GiB"
        )))
    }
}

/// Refuses a variant whose round would need more than `max_gib` GiB (see
/// [`Plan::memory_bytes`]).
pub fn check_memory(v: &Variant, max_gib: f64) -> Result<()> {
    let need = v.plan.memory_bytes(v.spec.train.batch_size, EVAL_CHUNK);
    let gib = need as f64 / f64::from(1u32 << 30);
    if gib > max_gib {
        return Err(Error::Resources(format!(
            "{}: spec {}: a round needs about {} (batch_size {}), above the limit of \
             {max_gib} GiB; shrink the network or the batch, or raise --max-memory",
            v.spec.path.display(),
            v.spec.name,
            size(need),
            v.spec.train.batch_size
        )));
    }
    Ok(())
}

/// `bytes` for a person: GiB with one decimal, or MiB below a tenth of a GiB.
fn size(bytes: u128) -> String {
    let gib = bytes as f64 / f64::from(1u32 << 30);
    if gib >= 0.1 {
        format!("{gib:.1} GiB")
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    }
}
