//! Comparing two sets of results variant by variant, with paired statistics.
//!
//! Rounds of two sweeps with the same data seed saw the same pairs, so the change of a variant
//! is measured on paired differences (a paired t-test); when rounds do not pair, Welch's
//! t-test compares the two samples instead. Lower error is better.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::error::{Error, Result};
use crate::record::{RESULTS_HEADER, RoundRecord};

/// The rounds of one side, by variant, in file order.
#[derive(Debug, Clone, Default)]
pub struct Side {
    /// What the user named (a directory, a file or a revision), for messages.
    pub label: String,
    pub variants: BTreeMap<String, Vec<RoundRecord>>,
    /// Variants in the order they first appear.
    pub order: Vec<String>,
}

/// Parses `results.csv` text; `source` names it in errors.
pub fn parse_results(text: &str, source: &str) -> Result<Side> {
    let err = |msg: String| Error::report(source, msg);
    let mut rdr = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header = rdr
        .headers()
        .map_err(|e| err(format!("not a results file: {e}")))?
        .clone();
    // Files from before the `weights` column are read too.
    let columns = header.len();
    let known = columns + 2 >= RESULTS_HEADER.len() && columns <= RESULTS_HEADER.len();
    if !known || header.iter().ne(RESULTS_HEADER[..columns].iter().copied()) {
        return Err(err(format!(
            "not a results file: columns are `{}`, expected `{}`",
            header.iter().collect::<Vec<_>>().join(","),
            RESULTS_HEADER.join(",")
        )));
    }
    let mut side = Side {
        label: source.to_string(),
        ..Side::default()
    };
    for (i, row) in rdr.records().enumerate() {
        let row = row.map_err(|e| err(format!("row {}: {e}", i + 2)))?;
        let fields: Vec<&str> = row.iter().collect();
        let rec = RoundRecord::from_fields(&fields, "")
            .map_err(|why| err(format!("row {}: {why}", i + 2)))?;
        if !side.variants.contains_key(&rec.variant) {
            side.order.push(rec.variant.clone());
        }
        let rounds = side.variants.entry(rec.variant.clone()).or_default();
        // A round counted twice would be pooled as two: a damaged or hand-merged file.
        if rounds.iter().any(|r| r.round == rec.round) {
            return Err(err(format!(
                "row {}: round {} of {} appears twice",
                i + 2,
                rec.round,
                rec.variant
            )));
        }
        rounds.push(rec);
    }
    Ok(side)
}

/// Reads one side: a reports directory, a results file, or a git revision whose
/// `reports/results.csv` (relative to the current directory) is read from history.
pub fn load_side(what: &str) -> Result<Side> {
    let path = PathBuf::from(what);
    let file = if path.is_dir() {
        path.join("results.csv")
    } else {
        path.clone()
    };
    if file.is_file() {
        // A name that is a path and a revision both would silently mean one: refuse it.
        let plain = !what.contains(['/', '\\']) && !what.starts_with('.');
        let verify = ["rev-parse", "--verify", "--quiet", "--end-of-options"];
        if plain && git(what, &verify, &format!("{what}^{{commit}}")).is_ok() {
            return Err(Error::Usage(format!(
                "{what} is both a path here and a git revision: write ./{what} for the path, \
                 or {what}^{{commit}} for the revision"
            )));
        }
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        return parse_results(&text, &file.display().to_string());
    }
    if path.is_dir() {
        return Err(Error::report(
            &file,
            "no results.csv in this reports directory",
        ));
    }
    let commit = git(
        what,
        &["rev-parse", "--verify", "--quiet", "--end-of-options"],
        &format!("{what}^{{commit}}"),
    )?;
    let commit = String::from_utf8_lossy(&commit).trim().to_string();
    let out = git(what, &["show"], &format!("{commit}:./reports/results.csv"))?;
    let text = String::from_utf8_lossy(&out);
    parse_results(&text, &format!("{what}:reports/results.csv"))
}

/// Runs `git ARGS OBJECT` for side `what`. `what` is never read as an option: one that starts
/// with `-` is refused, and `OBJECT` comes after `--end-of-options` or is a verified commit.
fn git(what: &str, args: &[&str], object: &str) -> Result<Vec<u8>> {
    let not_found = |why: &str| {
        Error::Git(format!(
            "{what}: not a reports directory, a results file or a git revision with \
             reports/results.csv{why}"
        ))
    };
    if what.starts_with('-') {
        return Err(not_found(""));
    }
    let out = Command::new("git")
        .args(args)
        .arg(object)
        .output()
        .map_err(|e| Error::Git(format!("{what}: not a file, and git could not run: {e}")))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        let why = why
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("fatal: ");
        return Err(not_found(&if why.is_empty() {
            String::new()
        } else {
            format!(" ({why})")
        }));
    }
    Ok(out.stdout)
}

/// Which test produced a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// Paired t-test on rounds with the same data seed.
    Paired,
    /// Welch's t-test on the two samples.
    Welch,
    /// Too few rounds for any test.
    None,
}

/// The verdict on one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Better,
    Worse,
    NoClearChange,
    /// Both sides hold exactly the same errors: no test is meaningful.
    Identical,
    Added,
    Removed,
    /// Every new round diverged, where old rounds had errors.
    AllDiverged,
    /// Fewer new rounds have an error than old ones (diverged or missing rounds).
    LostRounds,
}

impl Verdict {
    /// Whether `--fail-on-regression` fails on this verdict.
    pub fn is_regression(self) -> bool {
        matches!(
            self,
            Verdict::Worse | Verdict::AllDiverged | Verdict::LostRounds
        )
    }

    pub fn text(self) -> &'static str {
        match self {
            Verdict::AllDiverged => "every round diverged",
            Verdict::LostRounds => "lost rounds",
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::NoClearChange => "no clear change",
            Verdict::Identical => "no change (identical errors; p undefined)",
            Verdict::Added => "added",
            Verdict::Removed => "removed",
        }
    }
}

/// One variant's comparison. Errors are fractions; `change = new - old`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub variant: String,
    pub old_mean: Option<f64>,
    pub new_mean: Option<f64>,
    pub change: Option<f64>,
    /// 95% confidence interval of the change (at `1 - alpha` in general).
    pub ci: Option<(f64, f64)>,
    pub p: Option<f64>,
    /// `p` adjusted for the comparisons made alongside it ([`correct`]); `p` until then.
    pub p_adjusted: Option<f64>,
    pub test: Test,
    /// Rounds compared (pairs for the paired test).
    pub n: usize,
    /// Rounds with a test error (not diverged) on each side.
    pub old_ok: usize,
    pub new_ok: usize,
    pub spec_changed: bool,
    pub verdict: Verdict,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn var(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0)
}

/// Two-sided p-value and `(1 - alpha)` interval for an estimate with standard error `se` and
/// `df` degrees of freedom.
fn t_test(estimate: f64, se: f64, df: f64, alpha: f64) -> (Option<f64>, Option<(f64, f64)>) {
    let Ok(t) = StudentsT::new(0.0, 1.0, df) else {
        return (None, None);
    };
    if se == 0.0 {
        // Every difference equal and non-zero: certain, as far as the data can tell.
        return (Some(0.0), Some((estimate, estimate)));
    }
    let stat = estimate / se;
    let p = 2.0 * t.sf(stat.abs());
    let q = t.inverse_cdf(1.0 - alpha / 2.0);
    (
        Some(p.min(1.0)),
        Some((estimate - q * se, estimate + q * se)),
    )
}

/// Paired t-test on `pairs` of `(old, new)`.
pub fn paired(pairs: &[(f64, f64)], alpha: f64) -> (f64, Option<f64>, Option<(f64, f64)>) {
    let d: Vec<f64> = pairs.iter().map(|(o, n)| n - o).collect();
    let m = mean(&d);
    let se = (var(&d) / d.len() as f64).sqrt();
    let (p, ci) = t_test(m, se, d.len() as f64 - 1.0, alpha);
    (m, p, ci)
}

/// Welch's t-test of `new` against `old`.
pub fn welch(old: &[f64], new: &[f64], alpha: f64) -> (f64, Option<f64>, Option<(f64, f64)>) {
    let stats = |v: &[f64]| Sample {
        mean: mean(v),
        var: var(v),
        n: v.len(),
    };
    welch_summary(stats(old), stats(new), alpha)
}

/// A sample as its mean, (n - 1) variance and size: all a published table gives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub mean: f64,
    pub var: f64,
    pub n: usize,
}

/// Welch's t-test of `new` against `old` from their summary statistics.
pub fn welch_summary(
    old: Sample,
    new: Sample,
    alpha: f64,
) -> (f64, Option<f64>, Option<(f64, f64)>) {
    let (a, b) = (old.var / old.n as f64, new.var / new.n as f64);
    let change = new.mean - old.mean;
    let se = (a + b).sqrt();
    let df = if a + b == 0.0 {
        (old.n + new.n - 2) as f64
    } else {
        (a + b).powi(2) / (a * a / (old.n as f64 - 1.0) + b * b / (new.n as f64 - 1.0))
    };
    let (p, ci) = t_test(change, se, df, alpha);
    (change, p, ci)
}

/// One-sample t-test of `new` against a fixed `mean`: the change `new.mean - mean`.
pub fn one_sample(mean: f64, new: Sample, alpha: f64) -> (f64, Option<f64>, Option<(f64, f64)>) {
    let change = new.mean - mean;
    let se = (new.var / new.n as f64).sqrt();
    let (p, ci) = t_test(change, se, new.n as f64 - 1.0, alpha);
    (change, p, ci)
}

fn errors(rounds: &[RoundRecord]) -> Vec<f64> {
    rounds.iter().filter_map(|r| r.result.test_error).collect()
}

/// Compares one variant present on both sides.
pub fn compare(variant: &str, old: &[RoundRecord], new: &[RoundRecord], alpha: f64) -> Comparison {
    let (eo, en) = (errors(old), errors(new));
    let hashes = |rs: &[RoundRecord]| -> Vec<String> {
        let mut h: Vec<String> = rs.iter().map(|r| r.spec_hash.clone()).collect();
        h.sort();
        h.dedup();
        h
    };
    // Rounds pair when they drew the same data: same data seed, data and pair count.
    let mut pairs = Vec::new();
    for o in old {
        if let Some(n) = new.iter().find(|n| {
            n.data_seed == o.data_seed && n.data_hash == o.data_hash && n.pairs == o.pairs
        }) && let (Some(a), Some(b)) = (o.result.test_error, n.result.test_error)
        {
            pairs.push((a, b));
        }
    }
    let mut c = Comparison {
        variant: variant.to_string(),
        old_mean: (!eo.is_empty()).then(|| mean(&eo)),
        new_mean: (!en.is_empty()).then(|| mean(&en)),
        change: None,
        ci: None,
        p: None,
        p_adjusted: None,
        test: Test::None,
        n: 0,
        old_ok: eo.len(),
        new_ok: en.len(),
        spec_changed: hashes(old) != hashes(new),
        verdict: Verdict::NoClearChange,
    };
    if en.is_empty() && !eo.is_empty() {
        c.verdict = Verdict::AllDiverged;
        return c;
    }
    if eo == en && !eo.is_empty() {
        c.change = Some(0.0);
        c.n = eo.len();
        c.verdict = Verdict::Identical;
        return c;
    }
    let fully_paired = pairs.len() >= 2 && pairs.len() == eo.len() && pairs.len() == en.len();
    let (change, p, ci) = if fully_paired {
        c.test = Test::Paired;
        c.n = pairs.len();
        paired(&pairs, alpha)
    } else if eo.len() >= 2 && en.len() >= 2 {
        c.test = Test::Welch;
        c.n = eo.len().min(en.len());
        welch(&eo, &en, alpha)
    } else {
        c.change = c.new_mean.zip(c.old_mean).map(|(n, o)| n - o);
        if en.len() < eo.len() {
            c.verdict = Verdict::LostRounds;
        }
        return c;
    };
    c.change = Some(change);
    c.p = p;
    c.p_adjusted = p;
    c.ci = ci;
    c.verdict = if en.len() < eo.len() {
        Verdict::LostRounds
    } else {
        tested(p, change, alpha)
    };
    c
}

/// The verdict of a change whose test gave `p`.
fn tested(p: Option<f64>, change: f64, alpha: f64) -> Verdict {
    match p {
        Some(p) if p < alpha && change < 0.0 => Verdict::Better,
        Some(p) if p < alpha && change > 0.0 => Verdict::Worse,
        _ => Verdict::NoClearChange,
    }
}

/// How p-values are adjusted for the many comparisons a report makes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Correction {
    /// Holm's step-down method: the chance of any false "better" or "worse" among them all
    /// stays below alpha.
    Holm,
    /// Each comparison on its own.
    None,
}

/// Holm's adjusted p-values of `p` (`None` stays `None` and is not counted): the `i`-th
/// smallest of `m` is multiplied by `m - i`, capped at 1, and never below an earlier one.
pub fn holm(p: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_some()).collect();
    order.sort_by(|&a, &b| p[a].unwrap_or(1.0).total_cmp(&p[b].unwrap_or(1.0)));
    let m = order.len();
    let mut out = vec![None; p.len()];
    let mut floor = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        let adjusted = (p[i].unwrap_or(1.0) * (m - rank) as f64)
            .min(1.0)
            .max(floor);
        floor = adjusted;
        out[i] = Some(adjusted);
    }
    out
}

/// Adjusts the p-values of `comparisons` as `correction` says, and redraws the verdicts of
/// those a test decided.
pub fn correct(mut comparisons: Vec<&mut Comparison>, correction: Correction, alpha: f64) {
    let raw: Vec<Option<f64>> = comparisons.iter().map(|c| c.p).collect();
    let adjusted = match correction {
        Correction::Holm => holm(&raw),
        Correction::None => raw,
    };
    for (c, p) in comparisons.iter_mut().zip(adjusted) {
        c.p_adjusted = p;
        let decided = matches!(
            c.verdict,
            Verdict::Better | Verdict::Worse | Verdict::NoClearChange
        );
        if let (true, Some(change)) = (decided, c.change) {
            c.verdict = tested(p, change, alpha);
        }
    }
}

/// A variant on one side only.
fn one_sided(
    variant: &str,
    old: Option<&[RoundRecord]>,
    new: Option<&[RoundRecord]>,
    verdict: Verdict,
) -> Comparison {
    let mean_of = |rs: Option<&[RoundRecord]>| {
        let e = errors(rs?);
        (!e.is_empty()).then(|| mean(&e))
    };
    let ok = |rs: Option<&[RoundRecord]>| rs.map_or(0, |r| errors(r).len());
    Comparison {
        variant: variant.to_string(),
        old_mean: mean_of(old),
        new_mean: mean_of(new),
        change: None,
        ci: None,
        p: None,
        p_adjusted: None,
        test: Test::None,
        n: 0,
        old_ok: ok(old),
        new_ok: ok(new),
        spec_changed: false,
        verdict,
    }
}

/// Compares every variant of `old` and `new` (new's order first, then removed ones).
pub fn diff(old: &Side, new: &Side, alpha: f64) -> Vec<Comparison> {
    let mut out = Vec::new();
    for v in &new.order {
        let n = &new.variants[v];
        out.push(match old.variants.get(v) {
            Some(o) => compare(v, o, n, alpha),
            None => one_sided(v, None, Some(n), Verdict::Added),
        });
    }
    for v in old.order.iter().filter(|v| !new.variants.contains_key(*v)) {
        out.push(one_sided(v, Some(&old.variants[v]), None, Verdict::Removed));
    }
    out
}
