//! A spec's `[search]`: the keys to search with their ranges, how points are drawn (at random
//! or by a tree-structured Parzen estimator), the rounds per trial, successive halving over
//! epochs and how many of the best trials are confirmed. Points depend only on the table and
//! its seed (and, for TPE, on the objectives of earlier batches). [`SearchSpec`] is a spec
//! file with such a table: the spec checked against its ranges, and the variant at any point.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Value;

use super::Spec;
use super::grid::Override;
use super::resolve::resolve;
use super::tree::{Origin, Tree, at};
use crate::error::{Error, Result};
use crate::seeds;

/// The most trials a search may run: every trial is a variant planned and held in memory.
pub const MAX_TRIALS: usize = 10_000;

/// A parsed `[search]` table.
#[derive(Debug, Clone)]
pub struct Search {
    /// The file that wrote the table.
    pub file: PathBuf,
    pub space: Vec<Dim>,
    pub method: Method,
    pub trials: usize,
    pub seed: u64,
    /// Rounds per trial (on the search's own data seeds).
    pub rounds: usize,
    /// Trials a TPE batch draws at once, from the objectives of the batches before.
    pub batch: usize,
    pub halving: Option<Halving>,
    /// How many of the best trials become variants of the sweep.
    pub top: usize,
    pub origin: Option<Origin>,
}

/// One searched key.
#[derive(Debug, Clone)]
pub struct Dim {
    /// A key path, as a grid's or `--set`'s.
    pub key: String,
    /// The shortest trailing part of the key no other searched key shares.
    pub short: String,
    pub range: Range,
    pub origin: Option<Origin>,
}

/// The values a key is drawn from.
#[derive(Debug, Clone, PartialEq)]
pub enum Range {
    /// Uniform in the logarithm, between two positive bounds.
    Log(f64, f64),
    Uniform(f64, f64),
    /// A whole number between two bounds, both included.
    Int(i64, i64),
    Choice(Vec<Value>),
}

/// How trial points are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Random,
    /// Tree-structured Parzen estimator: the first batch at random, each later one from the
    /// objectives of the batches before it.
    Tpe,
}

/// Successive halving: every trial trained `min_epochs`, the best `1/eta` of them `eta` times
/// longer, and so on up to the spec's epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Halving {
    pub eta: usize,
    pub min_epochs: usize,
}

/// One step of a search: the trials trained for `epochs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    pub epochs: usize,
    pub trials: usize,
}

/// `[search]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    space: toml::Table,
    #[serde(default = "random")]
    method: Method,
    trials: usize,
    #[serde(default)]
    seed: u64,
    #[serde(default = "three")]
    rounds: usize,
    #[serde(default = "eight")]
    batch: usize,
    #[serde(default = "validation_error")]
    objective: String,
    halving: Option<Halving>,
    confirm: Confirm,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Confirm {
    top: usize,
}

fn random() -> Method {
    Method::Random
}
fn three() -> usize {
    3
}
fn eight() -> usize {
    8
}
fn validation_error() -> String {
    "validation_error".into()
}

impl Search {
    /// Takes the `search` table out of `tree`; checks it on its own (its keys are checked
    /// against the spec by `SearchSpec`).
    pub fn take(tree: &mut Tree, path: &Path) -> Result<Option<Search>> {
        let keys = placed(tree, "search.space");
        let placed = placed(tree, "search");
        let Some((value, origin)) = tree.take("search") else {
            return Ok(None);
        };
        let file = match &origin {
            Some(Origin::File { path, .. }) => path.clone(),
            _ => path.to_path_buf(),
        };
        let bad = |why: String| at(&file, origin.clone(), format!("search: {why}"));
        let bad_at = |(key, why): (&str, String)| {
            let o = placed
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, o)| o.clone());
            at(&file, o.or_else(|| origin.clone()), format!("search.{why}"))
        };
        let mut w: Written = serde_path_to_error::deserialize(value).map_err(|e| {
            // Placed at the key at fault where there is one (a missing key is the table's).
            let key = e.path().to_string();
            let msg = e.inner().message().lines().next().unwrap_or("").to_string();
            match key.split('.').next().filter(|k| !k.is_empty()) {
                Some(table) => bad_at((table, format!("{key}: {msg}"))),
                None => bad(msg),
            }
        })?;
        if w.objective != "validation_error" {
            return Err(bad_at((
                "objective",
                format!(
                    "objective = \"{}\": the only objective is \"validation_error\" (the test error \
                     chooses nothing)",
                    w.objective
                ),
            )));
        }
        let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        let shorts = super::grid::short_names(&names);
        let mut space = Vec::new();
        for ((key, origin), short) in keys.into_iter().zip(shorts) {
            let written = w.space.remove(&key).unwrap_or(Value::Boolean(false));
            let range = Range::parse(&written)
                .map_err(|why| at(&file, origin.clone(), format!("search.space.{key}: {why}")))?;
            space.push(Dim {
                key,
                short,
                range,
                origin,
            });
        }
        let search = Search {
            file: file.clone(),
            space,
            method: w.method,
            trials: w.trials,
            seed: w.seed,
            rounds: w.rounds,
            batch: w.batch,
            halving: w.halving,
            top: w.confirm.top,
            origin: origin.clone(),
        };
        search.check_counts().map_err(bad_at)?;
        Ok(Some(search))
    }

    /// Each count within its bounds: `(key, why)` of the first that is not.
    fn check_counts(&self) -> std::result::Result<(), (&'static str, String)> {
        let within = |key: &'static str, n: usize, most: usize| {
            if (1..=most).contains(&n) {
                return Ok(());
            }
            let table = key.split('.').next().unwrap_or(key);
            Err((table, format!("{key} = {n}: must be between 1 and {most}")))
        };
        if self.space.is_empty() {
            return Err(("space", "space: name at least one key to search".into()));
        }
        within("trials", self.trials, MAX_TRIALS)?;
        within("rounds", self.rounds, super::MAX_REPEATS)?;
        within("batch", self.batch, MAX_TRIALS)?;
        within("confirm.top", self.top, self.trials)?;
        if let Some(h) = self.halving {
            if h.eta < 2 {
                let why = format!("halving.eta = {}: must be at least 2", h.eta);
                return Err(("halving", why));
            }
            within("halving.min_epochs", h.min_epochs, super::MAX_EPOCHS)?;
        }
        Ok(())
    }

    /// An error at the table.
    pub fn error(&self, why: impl std::fmt::Display) -> Error {
        at(&self.file, self.origin.clone(), format!("search: {why}"))
    }

    /// An error at dimension `d`'s range.
    pub fn dim_error(&self, d: &Dim, why: impl std::fmt::Display) -> Error {
        at(
            &self.file,
            d.origin.clone(),
            format!("search.space.{}: {why}", d.key),
        )
    }

    /// The rungs of a spec trained `epochs` epochs: one without halving; else the last at
    /// `epochs` and each before it `eta` times shorter (Hyperband's brackets), as many as stay
    /// at or above `min_epochs`, each keeping `1/eta` of the trials before it (rounded up),
    /// and never fewer than the trials confirmed.
    pub fn rungs(&self, epochs: usize) -> Vec<Rung> {
        let Some(h) = self.halving else {
            return vec![Rung {
                epochs,
                trials: self.trials,
            }];
        };
        let mut shorter = vec![epochs];
        while let Some(e) = shorter
            .last()
            .map(|&e| (e as f64 / h.eta as f64).round() as usize)
        {
            if e < h.min_epochs.max(1) || shorter.len() >= 64 {
                break;
            }
            shorter.push(e);
        }
        let mut n = self.trials;
        shorter
            .into_iter()
            .rev()
            .map(|epochs| {
                let rung = Rung { epochs, trials: n };
                n = n.div_ceil(h.eta).max(self.top).min(n);
                rung
            })
            .collect()
    }

    /// What training `rungs` spends: its rounds, and their epochs summed.
    pub fn spent(&self, rungs: &[Rung]) -> (usize, usize) {
        let rounds = |r: &Rung| r.trials * self.rounds;
        let all = rungs.iter().map(rounds).sum();
        (all, rungs.iter().map(|r| rounds(r) * r.epochs).sum())
    }

    /// The point of trial `trial` drawn at random: the same for the same table and seed.
    pub fn random_point(&self, trial: usize) -> Vec<Value> {
        let mut rng = seeds::rng(seeds::search_seed(self.seed, trial), seeds::POINTS);
        self.space
            .iter()
            .map(|d| d.range.value(d.range.draw(&mut rng)))
            .collect()
    }

    /// Point names of a trial: `stem[lr=0.0021,wd=0.013]`.
    pub fn name(&self, stem: &str, point: &[Value]) -> String {
        let inside: Vec<String> = self
            .space
            .iter()
            .zip(point)
            .map(|(d, v)| format!("{}={}", d.short, d.show(v)))
            .collect();
        format!("{stem}[{}]", inside.join(","))
    }
}

impl std::fmt::Display for Range {
    /// As written in a spec.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Range::Log(a, b) => write!(f, "{{ log = [{a}, {b}] }}"),
            Range::Uniform(a, b) => write!(f, "{{ uniform = [{a}, {b}] }}"),
            Range::Int(a, b) => write!(f, "{{ int = [{a}, {b}] }}"),
            Range::Choice(c) => {
                let c: Vec<String> = c.iter().map(ToString::to_string).collect();
                write!(f, "{{ choice = [{}] }}", c.join(", "))
            }
        }
    }
}

/// A spec file with a `[search]`: the spec as written, and the variant at any point.
#[derive(Debug, Clone)]
pub struct SearchSpec {
    pub search: Search,
    /// The spec without a point (its name is the file stem).
    pub spec: Spec,
    tree: Tree,
    recorded: Vec<String>,
}

impl SearchSpec {
    /// Checks `search` against the spec: validation pairs held out, every key one the spec
    /// takes at both ends of its range (at every choice), none set by an override or by
    /// halving.
    pub(super) fn new(
        search: Search,
        spec: Spec,
        tree: Tree,
        recorded: Vec<String>,
        overrides: &[Override],
    ) -> Result<SearchSpec> {
        if spec.train.validation <= 0.0 {
            return Err(search.error(
                "the objective is the validation error, and this spec holds no validation \
                 pairs out; set train.validation (a share of the training pairs, e.g. 0.1)",
            ));
        }
        let s = SearchSpec {
            search,
            spec,
            tree,
            recorded,
        };
        for d in &s.search.space {
            if let Some(o) = overrides.iter().find(|o| o.key == d.key) {
                return Err(Error::Usage(format!(
                    "{}: {} is searched in {}; change the search instead",
                    o.flag,
                    d.key,
                    s.search.file.display()
                )));
            }
            if d.key == "train.epochs" && s.search.halving.is_some() {
                return Err(s
                    .search
                    .dim_error(d, "halving sets the epochs; search them or halve"));
            }
            for v in d.range.extremes() {
                // A value a name cannot hold would stop the search at its first trial.
                let name = format!("{}[{}={}]", s.spec.stem, d.short, d.show(&v));
                crate::record::check_variant_name(&name)
                    .map_err(|why| s.search.dim_error(d, why))?;
                let mut tree = s.tree.clone();
                let origin = d.origin.clone().unwrap_or(Origin::Flag(String::new()));
                tree.set(&d.key, v.clone(), origin)
                    .map_err(|why| s.search.dim_error(d, why))?;
                resolve(&s.spec.path, &s.spec.name, &tree).map_err(|e| match e {
                    Error::Spec { path, place, msg } => Error::Spec {
                        path,
                        place,
                        msg: format!("search at {}={}: {msg}", d.short, d.show(&v)),
                    },
                    other => other,
                })?;
            }
        }
        Ok(s)
    }

    /// The variant at `point`, named by it, trained `epochs` epochs when given (a rung of
    /// successive halving).
    pub fn at(&self, point: &[toml::Value], epochs: Option<usize>) -> Result<Spec> {
        let name = self.search.name(&self.spec.stem, point);
        let mut tree = self.tree.clone();
        for (d, v) in self.search.space.iter().zip(point) {
            let origin = d.origin.clone().unwrap_or(Origin::Flag(String::new()));
            tree.set(&d.key, v.clone(), origin)
                .map_err(|why| self.search.dim_error(d, why))?;
        }
        if let Some(e) = epochs {
            let e = toml::Value::Integer(i64::try_from(e).unwrap_or(i64::MAX));
            let origin = Origin::Flag("search.halving".into());
            tree.set("train.epochs", e, origin)
                .map_err(|why| self.search.error(why))?;
        }
        let mut spec = resolve(&self.spec.path, &name, &tree)?;
        spec.overrides = self.recorded.clone();
        Ok(spec)
    }
}

/// The keys of the table at `path` (`search` or `search.space`), each with where it was
/// written.
fn placed(tree: &Tree, path: &str) -> Vec<(String, Option<Origin>)> {
    let table = path
        .split('.')
        .try_fold(&tree.root, |t, k| t.get(k).and_then(Value::as_table));
    table
        .into_iter()
        .flat_map(|t| t.keys())
        .map(|k| (k.clone(), tree.origin(&format!("{path}.{k}")).cloned()))
        .collect()
}

impl Dim {
    /// `v` as a point's name shows it, as a grid shows its values: a string without quotes,
    /// a table (a schedule, a layer) by its `kind` or `layer`, or else by its choice number.
    pub fn show(&self, v: &Value) -> String {
        match &self.range {
            Range::Choice(c) => super::grid::show(c, c.iter().position(|w| w == v).unwrap_or(0)),
            _ => super::grid::show(std::slice::from_ref(v), 0),
        }
    }
}

impl Range {
    /// `{ log = [a, b] }`, `{ uniform = [a, b] }`, `{ int = [a, b] }` or `{ choice = [...] }`.
    fn parse(v: &Value) -> std::result::Result<Range, String> {
        const FORMS: &str = "must be { log = [low, high] }, { uniform = [low, high] }, \
                             { int = [low, high] } or { choice = [values] }";
        let Some((kind, bounds)) = v
            .as_table()
            .filter(|t| t.len() == 1)
            .and_then(|t| t.iter().next())
        else {
            return Err(FORMS.into());
        };
        let Some(list) = bounds.as_array() else {
            return Err(format!("{kind}: must be a list"));
        };
        let pair = |what: &str| -> std::result::Result<(f64, f64), String> {
            let num = |v: &Value| v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
            match list.as_slice() {
                [a, b] => match (num(a), num(b)) {
                    (Some(a), Some(b)) if a.is_finite() && b.is_finite() => Ok((a, b)),
                    _ => Err(format!("{what}: both bounds must be finite numbers")),
                },
                _ => Err(format!("{what}: must be two bounds, [low, high]")),
            }
        };
        let range = match kind.as_str() {
            "log" => {
                let (a, b) = pair("log")?;
                if a <= 0.0 {
                    return Err(format!("log: the low bound {a} must be above 0"));
                }
                Range::Log(a, b)
            }
            "uniform" => {
                let (a, b) = pair("uniform")?;
                Range::Uniform(a, b)
            }
            "int" => match list.as_slice() {
                [Value::Integer(a), Value::Integer(b)] => Range::Int(*a, *b),
                _ => return Err("int: must be two whole numbers, [low, high]".into()),
            },
            "choice" if list.is_empty() => return Err("choice: the list is empty".into()),
            "choice" => Range::Choice(list.clone()),
            _ => return Err(FORMS.into()),
        };
        let empty = match range {
            Range::Log(a, b) | Range::Uniform(a, b) => a >= b,
            Range::Int(a, b) => a > b,
            Range::Choice(_) => false,
        };
        if let Range::Uniform(a, b) = range
            && !(b - a).is_finite()
        {
            return Err(format!("{kind}: the range is wider than a number can hold"));
        }
        if empty {
            return Err(format!(
                "{kind}: the range is empty (the low bound must be below the high one)"
            ));
        }
        Ok(range)
    }

    /// The interval a TPE estimator works in: the logarithm for `log`, a choice's index.
    pub fn domain(&self) -> (f64, f64) {
        match *self {
            Range::Log(a, b) => (a.ln(), b.ln()),
            Range::Uniform(a, b) => (a, b),
            // Half a step beyond each bound, so that both ends are drawn as often as the rest.
            Range::Int(a, b) => (a as f64 - 0.5, b as f64 + 0.5),
            Range::Choice(ref c) => (0.0, c.len() as f64),
        }
    }

    /// The values a spec must take for the range to be usable: both ends, or every choice.
    pub fn extremes(&self) -> Vec<Value> {
        match self {
            Range::Choice(c) => c.clone(),
            _ => {
                let (a, b) = self.domain();
                vec![self.value(a), self.value(b)]
            }
        }
    }

    /// A number uniform in [`Range::domain`].
    fn draw(&self, rng: &mut impl rand::Rng) -> f64 {
        let (a, b) = self.domain();
        a + (b - a) * rng.r#gen::<f64>()
    }

    /// The value at `x` of the domain: floats to 3 significant digits (so that a point's name
    /// is its value), whole numbers rounded, a choice by index.
    pub fn value(&self, x: f64) -> Value {
        match self {
            Range::Log(a, b) => Value::Float(significant(x.exp()).clamp(*a, *b)),
            Range::Uniform(a, b) => Value::Float(significant(x).clamp(*a, *b)),
            Range::Int(a, b) => Value::Integer((x.round() as i64).clamp(*a, *b)),
            Range::Choice(c) => c[(x.max(0.0) as usize).min(c.len() - 1)].clone(),
        }
    }

    /// Where `v` (a value of this range) lies in the domain, for TPE and the figures.
    pub fn position(&self, v: &Value) -> f64 {
        let num = v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
        match self {
            Range::Log(..) => num.unwrap_or(1.0).ln(),
            Range::Uniform(..) | Range::Int(..) => num.unwrap_or(0.0),
            Range::Choice(c) => c.iter().position(|w| w == v).unwrap_or(0) as f64,
        }
    }
}

/// `x` to 3 significant digits.
fn significant(x: f64) -> f64 {
    format!("{x:.2e}").parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(halving: Option<Halving>, trials: usize) -> Search {
        Search {
            file: PathBuf::new(),
            space: vec![Dim {
                key: "train.optimizer.lr".into(),
                short: "lr".into(),
                range: Range::Log(1e-4, 1e-2),
                origin: None,
            }],
            method: Method::Random,
            trials,
            seed: 7,
            rounds: 3,
            batch: 8,
            halving,
            top: 1,
            origin: None,
        }
    }

    #[test]
    fn rungs_multiply_epochs_and_divide_trials() {
        let s = search(
            Some(Halving {
                eta: 3,
                min_epochs: 11,
            }),
            24,
        );
        let r: Vec<(usize, usize)> = s.rungs(100).iter().map(|r| (r.epochs, r.trials)).collect();
        assert_eq!(r, [(11, 24), (33, 8), (100, 3)]);
        assert_eq!(s.spent(&s.rungs(100)).1, 3 * (11 * 24 + 33 * 8 + 100 * 3));
        let long = search(
            Some(Halving {
                eta: 3,
                min_epochs: 200,
            }),
            24,
        );
        assert_eq!(
            long.rungs(100),
            [Rung {
                epochs: 100,
                trials: 24
            }]
        );
        let plain = search(None, 24);
        assert_eq!(
            plain.rungs(100),
            [Rung {
                epochs: 100,
                trials: 24
            }]
        );
    }

    #[test]
    fn random_points_are_rounded_and_within_the_range() {
        let s = search(None, 50);
        for t in 0..50 {
            let p = s.random_point(t);
            let x = p[0].as_float().unwrap();
            assert!((1e-4..=1e-2).contains(&x), "{x}");
            assert_eq!(format!("{x:.2e}").parse::<f64>().unwrap(), x);
            assert_eq!(p, s.random_point(t));
        }
        assert_ne!(s.random_point(0), s.random_point(1));
    }
}
