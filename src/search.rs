//! Searches: a spec's trials drawn, trained on the search's own data seeds (rung by rung
//! under successive halving), ranked on their mean validation error, and the best confirmed
//! as ordinary variants of the sweep, trained on the reported rounds.
//!
//! Nothing here trains: the caller's `phase` trains (or looks up) the rounds of a list of
//! variants, so that the sweep, its shards and `lesser report` share one procedure, and a
//! test can hand it a constructed objective.

use std::convert::Infallible;

use toml::Value;

use crate::error::Result;
use crate::record::{RoundRecord, Status};
use crate::seeds;
use crate::spec::{Method, Range, Rung, Search};
use crate::variants::{Searched, Variant};

/// One trial: its point and its objective at each rung it reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub point: Vec<Value>,
    /// The variant the point makes: `stem[lr=0.0021,wd=0.013]`.
    pub name: String,
    /// Mean validation error over the trial's rounds, per rung reached (infinite when a
    /// round diverged).
    pub objectives: Vec<f64>,
}

/// What a search did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub stem: String,
    pub search: Search,
    pub rungs: Vec<Rung>,
    /// Every trial, in the order drawn.
    pub trials: Vec<Trial>,
    /// The confirmed variants' names, best first.
    pub confirmed: Vec<String>,
}

impl Outcome {
    /// Rounds the search trained (every rung's).
    pub fn rounds(&self) -> usize {
        self.search.spent(&self.rungs).0
    }

    /// The best objective at the last rung.
    pub fn best(&self) -> Option<f64> {
        let last = self.rungs.len();
        self.trials
            .iter()
            .filter(|t| t.objectives.len() == last)
            .map(|t| t.objectives[last - 1])
            .min_by(f64::total_cmp)
    }
}

/// Trains (or looks up) every round of these variants: all their records, or `None` while
/// some are not yet stored (other shards train them).
pub type Phase<'a> = dyn FnMut(&[Variant]) -> Result<Option<Vec<RoundRecord>>> + 'a;

/// Runs every search, adding its confirmed variants to `selected` (then put back in report
/// order): the searches' outcomes, and the stems of those that wait for rounds.
pub fn run_all(
    searches: &[Searched],
    selected: &mut Vec<Variant>,
    phase: &mut Phase,
) -> Result<(Vec<Outcome>, Vec<String>)> {
    let (mut outcomes, mut waiting) = (Vec::new(), Vec::new());
    for s in searches {
        let Some((outcome, confirmed)) = run(s, phase)? else {
            waiting.push(s.spec.spec.stem.clone());
            continue;
        };
        for v in confirmed {
            if let Some(twin) = selected.iter().find(|w| w.spec.name == v.spec.name) {
                let why = format!(
                    "the confirmed variant {} is also a variant of {}",
                    v.spec.name,
                    twin.spec.path.display()
                );
                return Err(s.spec.search.error(why));
            }
            selected.push(v);
        }
        outcomes.push(outcome);
    }
    // Stable: a search's variants after the others of their order.
    selected.sort_by_key(|v| (v.spec.order.is_none(), v.spec.order));
    Ok((outcomes, waiting))
}

/// Runs the search of `s`: its outcome and the confirmed variants, or `None` while a phase
/// waits for rounds.
pub fn run(s: &Searched, phase: &mut Phase) -> Result<Option<(Outcome, Vec<Variant>)>> {
    let search = &s.spec.search;
    let rungs = search.rungs(s.spec.spec.train.epochs);
    let mut trials: Vec<Trial> = Vec::new();
    // The first rung batch by batch (a batch of TPE draws from the ones before it).
    let batch = match search.method {
        Method::Random => search.trials,
        Method::Tpe => search.batch,
    };
    for (b, first) in (0..search.trials).step_by(batch).enumerate() {
        let n = batch.min(search.trials - first);
        let points = match search.method {
            Method::Tpe if b > 0 => tpe_points(search, b, n, &trials),
            _ => (first..first + n).map(|t| search.random_point(t)).collect(),
        };
        let fresh: Vec<Trial> = points
            .into_iter()
            .map(|point| Trial {
                name: search.name(&s.spec.spec.stem, &point),
                point,
                objectives: Vec::new(),
            })
            .collect();
        let at = trials.len();
        trials.extend(fresh);
        let alive: Vec<usize> = (at..trials.len()).collect();
        if !train_rung(s, rungs[0].epochs, &alive, &mut trials, phase)? {
            return Ok(None);
        }
    }
    for (k, rung) in rungs.iter().enumerate().skip(1) {
        let alive = ranked(&trials, k)[..rung.trials].to_vec();
        if !train_rung(s, rung.epochs, &alive, &mut trials, phase)? {
            return Ok(None);
        }
    }
    let mut confirmed: Vec<Variant> = Vec::new();
    for i in ranked(&trials, rungs.len()) {
        if confirmed.len() == search.top {
            break;
        }
        if confirmed.iter().any(|v| v.spec.name == trials[i].name) {
            continue;
        }
        let spec = s.spec.at(&trials[i].point, None)?;
        confirmed.push(Variant::new(spec, s.base.data.clone())?);
    }
    let outcome = Outcome {
        stem: s.spec.spec.stem.clone(),
        search: search.clone(),
        rungs,
        confirmed: confirmed.iter().map(|v| v.spec.name.clone()).collect(),
        trials,
    };
    Ok(Some((outcome, confirmed)))
}

/// The trials that reached rung `k - 1`, best first (ties to the one drawn first); those that
/// stopped earlier after them, by how far they got.
pub fn ranked(trials: &[Trial], k: usize) -> Vec<usize> {
    let reached = |i: usize| trials[i].objectives.len().min(k);
    let last = |i: usize| {
        let at = reached(i).wrapping_sub(1);
        trials[i]
            .objectives
            .get(at)
            .copied()
            .unwrap_or(f64::INFINITY)
    };
    let mut order: Vec<usize> = (0..trials.len()).collect();
    order.sort_by(|&a, &b| {
        (reached(b).cmp(&reached(a)))
            .then(last(a).total_cmp(&last(b)))
            .then(a.cmp(&b))
    });
    order
}

/// Trains the trials at `alive` for `epochs` on the search's rounds and records each one's
/// objective; `false` while the phase waits.
fn train_rung(
    s: &Searched,
    epochs: usize,
    alive: &[usize],
    trials: &mut [Trial],
    phase: &mut Phase,
) -> Result<bool> {
    let mut variants: Vec<Variant> = Vec::new();
    for &i in alive {
        if variants.iter().any(|v| v.spec.name == trials[i].name) {
            continue;
        }
        let mut spec = s.spec.at(&trials[i].point, Some(epochs))?;
        spec.train.repeats = s.spec.search.rounds;
        let mut v = Variant::new(spec, s.base.data.clone())?;
        v.trial = true;
        variants.push(v);
    }
    let Some(records) = phase(&variants)? else {
        return Ok(false);
    };
    for &i in alive {
        let errors: Vec<Option<f64>> = records
            .iter()
            .filter(|r| r.variant == trials[i].name && r.epochs == epochs)
            .map(|r| {
                r.result
                    .validation_error
                    .filter(|_| r.result.status == Status::Ok)
            })
            .collect();
        let objective = match errors.iter().copied().collect::<Option<Vec<f64>>>() {
            Some(e) if !e.is_empty() => e.iter().sum::<f64>() / e.len() as f64,
            _ => f64::INFINITY,
        };
        trials[i].objectives.push(objective);
    }
    Ok(true)
}

/// `n` points of TPE batch `b`, each key drawn by its own estimator from the first-rung
/// objectives of the trials so far (Optuna's independent TPE).
fn tpe_points(search: &Search, b: usize, n: usize, trials: &[Trial]) -> Vec<Vec<Value>> {
    let mut rng = Chacha(seeds::rng(seeds::search_seed(search.seed, b), seeds::TPE));
    let columns: Vec<Vec<Value>> = search
        .space
        .iter()
        .enumerate()
        .map(|(k, d)| {
            let (lo, hi) = d.range.domain();
            let range = tpe::range(lo, hi).expect("a checked range is not empty");
            let mut optim = match d.range {
                Range::Choice(_) => tpe::TpeOptimizer::new(tpe::histogram_estimator(), range),
                _ => tpe::TpeOptimizer::new(tpe::parzen_estimator(), range),
            };
            for t in trials {
                let x = d.range.position(&t.point[k]).clamp(lo, hi.next_down());
                // Never NaN: an objective is a mean of errors, or infinite.
                let _ = optim.tell(x, t.objectives[0]);
            }
            (0..n)
                .map(|_| {
                    let x = optim.ask(&mut rng).unwrap_or(lo);
                    d.range.value(x)
                })
                .collect()
        })
        .collect();
    (0..n)
        .map(|i| columns.iter().map(|c| c[i].clone()).collect())
        .collect()
}

/// The sweep's ChaCha8 streams for the `tpe` crate's generator trait.
struct Chacha(rand_chacha::ChaCha8Rng);

impl rand_core::TryRng for Chacha {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> std::result::Result<u32, Infallible> {
        Ok(rand::RngCore::next_u32(&mut self.0))
    }

    fn try_next_u64(&mut self) -> std::result::Result<u64, Infallible> {
        Ok(rand::RngCore::next_u64(&mut self.0))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> std::result::Result<(), Infallible> {
        rand::RngCore::fill_bytes(&mut self.0, dst);
        Ok(())
    }
}
