//! The sweep's files: `results.csv` (one row per round), `curves.csv` (one row per round,
//! epoch and metric), `REPORT.md` (one row per variant, with its figures), `figures/`
//! (SVG, see [`figures`]) and `timing.csv` (wall clock, kept apart because it is not
//! reproducible).
//!
//! Formatting is deterministic, so the same sweep writes byte-identical files and `git diff`
//! shows only real changes.

pub mod axis_figure;
pub mod errors;
pub mod figures;
mod protocol;
pub mod search;
mod table;

use std::fmt::Write as _;
use std::path::Path;

use crate::diff::{Comparison, Sample, Test, Verdict, one_sample, welch_summary};
use crate::error::Result;
use crate::fs::write_atomic;
use crate::record::{RESULTS_HEADER, RoundRecord, Status, csv_line};
use crate::spec::{GridPoint, Reference};
use Align::{Left, Right};
pub use protocol::{Protocol, Study};
use protocol::{intro, protocol_section};
pub use table::{Align, Table, markdown};

/// `results.csv` for `records` (already in report order).
pub fn results_csv(records: &[RoundRecord]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing into a Vec cannot fail.
    let _ = w.write_record(RESULTS_HEADER);
    for r in records {
        let _ = w.write_record(r.fields());
    }
    w.into_inner().unwrap_or_default()
}

/// `timing.csv`: each round's own training time, also for rounds reused from the store, so
/// that a rerun that trains nothing leaves this file as it was.
pub fn timing_csv(records: &[RoundRecord]) -> String {
    let mut timing = String::from("variant,round,seconds\n");
    for r in records {
        let row = [
            r.variant.clone(),
            r.round.to_string(),
            format!("{:.3}", r.seconds),
        ];
        timing.push_str(&csv_line(&row));
        timing.push('\n');
    }
    timing
}

/// `curves.csv`: every round's learning curve, long format (one value a row).
pub fn curves_csv(records: &[RoundRecord]) -> String {
    let mut s = String::from("variant,round,epoch,metric,value\n");
    for r in records {
        for (e, p) in r.result.curve.iter().enumerate() {
            // Errors an epoch did not measure (`curve_every`) have no row.
            let measured = [
                ("test_error", p.test_error),
                ("validation_error", p.validation_error),
            ]
            .into_iter()
            .filter_map(|(m, v)| Some((m, format!("{:.4}", v?))));
            for (metric, value) in [
                ("train_loss", format!("{:.6}", p.train_loss)),
                ("train_error", format!("{:.4}", p.train_error)),
            ]
            .into_iter()
            .chain(measured)
            {
                let row = [r.variant.clone(), r.round.to_string(), (e + 1).to_string()];
                s.push_str(&csv_line(&row));
                let _ = writeln!(s, ",{metric},{value}");
            }
        }
    }
    s
}

/// Everything a sweep's reports are made of.
pub struct Files<'a> {
    /// Every round, in report order.
    pub records: &'a [RoundRecord],
    pub summaries: &'a [Summary],
    pub protocol: &'a Protocol,
    pub errors: &'a [errors::ErrorView],
    pub searches: &'a [crate::search::Outcome],
}

/// Writes `results.csv`, `curves.csv`, `REPORT.md`, `timing.csv`, `figures/` and, when the
/// sweep searched, `search.csv` into `out`, each file atomically. Figures of variants no
/// longer in the sweep are removed.
pub fn write_reports(out: &Path, f: &Files) -> Result<()> {
    write_atomic(&out.join("results.csv"), &results_csv(f.records))?;
    write_atomic(&out.join("curves.csv"), curves_csv(f.records).as_bytes())?;
    write_figures(&out.join("figures"), f)?;
    write_error_figures(&out.join("figures").join("errors"), f.errors)?;
    let md = report_md(f);
    write_atomic(&out.join("REPORT.md"), md.as_bytes())?;
    write_atomic(&out.join("timing.csv"), timing_csv(f.records).as_bytes())?;
    let searched = out.join("search.csv");
    if f.searches.is_empty() {
        // A search taken out of the sweep leaves no stale table behind.
        match std::fs::remove_file(&searched) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(crate::error::Error::io(&searched, e));
            }
            _ => {}
        }
    } else {
        write_atomic(&searched, search::csv(f.searches).as_bytes())?;
    }
    for dir in [out, &out.join("figures")] {
        crate::fs::remove_abandoned(dir);
    }
    Ok(())
}

/// `figures/errors/<variant>.svg` per variant whose rounds say where their errors are; no
/// other file is left there.
fn write_error_figures(dir: &Path, views: &[errors::ErrorView]) -> Result<()> {
    let names: Vec<String> = views
        .iter()
        .map(|v| figures::file_name(&v.variant))
        .collect();
    if !views.is_empty() {
        crate::fs::create_dir(dir)?;
    }
    for (v, name) in views.iter().zip(&names) {
        write_atomic(&dir.join(name), errors::errors_svg(v).as_bytes())?;
    }
    remove_stale(dir, &names)
}

/// Removes every SVG file of `dir` not named in `written` (a directory that is not there
/// has none).
fn remove_stale(dir: &Path, written: &[String]) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let stale: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "svg")
                && !written
                    .iter()
                    .any(|w| p.file_name().is_some_and(|n| n == w.as_str()))
        })
        .collect();
    for p in stale {
        match std::fs::remove_file(&p) {
            // Another run writing these reports at once removed it first.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(crate::error::Error::io(&p, e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// REPORT.md's section of the error figures.
fn errors_section(s: &mut String, views: &[errors::ErrorView]) {
    if views.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## Where the errors are\n\nPer variant, over its rounds: the test error by the \
         classes of a pair's first and second image (or by class), the confusion of its class \
         outputs where it has them (each true class's row in percent), and its most \
         confidently wrong test samples.\n"
    );
    for v in views {
        let _ = writeln!(
            s,
            "![{}: where the errors are](figures/errors/{})\n",
            markdown(&v.variant),
            figures::file_name(&v.variant)
        );
    }
}

/// `figures/summary.svg`, one `figures/<variant>.svg` per variant with curves, and one
/// figure per numeric axis of each grid.
fn write_figures(dir: &Path, f: &Files) -> Result<()> {
    let (records, summaries) = (f.records, f.summaries);
    let mut rows = figures::rows(&summary_rows(summaries), records);
    if several_studies(summaries) {
        // Grouped by task and dataset, each row saying which.
        let study = |label: &str| summaries.iter().position(|m| m.variant == label);
        let first = |i: usize| summaries.iter().position(|m| m.study == summaries[i].study);
        rows.sort_by_key(|r| study(&r.label).and_then(first));
        for r in &mut rows {
            if let Some(i) = study(&r.label) {
                r.label = format!("{} ({})", r.label, summaries[i].study);
            }
        }
    }
    let mut written = vec![figures::SUMMARY.to_string()];
    write_atomic(
        &dir.join(figures::SUMMARY),
        figures::dots_svg(&rows, &["round"], "test error (%)").as_bytes(),
    )?;
    let shared = axis_figure::shared_axis_figures(summaries);
    for f in axis_figure::axis_figures(summaries)
        .into_iter()
        .chain(shared)
    {
        let name = f.file_name();
        write_atomic(&dir.join(&name), axis_figure::axis_svg(&f).as_bytes())?;
        written.push(name);
    }
    for (name, svg) in f.searches.iter().flat_map(search::figures) {
        write_atomic(&dir.join(&name), svg.as_bytes())?;
        written.push(name);
    }
    for m in summaries {
        let rounds: Vec<&RoundRecord> = records.iter().filter(|r| r.variant == m.variant).collect();
        if let Some(c) = figures::curves(&m.variant, &rounds) {
            let name = figures::file_name(&m.variant);
            write_atomic(&dir.join(&name), figures::curves_svg(&c).as_bytes())?;
            written.push(name);
        }
    }
    std::fs::read_dir(dir).map_err(|e| crate::error::Error::io(dir, e))?;
    remove_stale(dir, &written)
}

/// Each variant with a `baseline` against it, round by round.
fn baseline_table(s: &mut String, summaries: &[Summary]) {
    let rows: Vec<(&String, &Comparison)> = summaries
        .iter()
        .filter_map(|m| m.against.as_ref().map(|(b, c)| (b, c)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## Against baselines\n\nEach variant against the variant its spec names as \
         `baseline`, on the same rounds' pairs: change = variant - baseline test error, with \
         a paired t-test as `lesser diff` computes it (95% interval, in points). The adjusted \
         p corrects for the table's comparisons together (Holm's method); the verdict uses \
         it.\n"
    );
    let mut t = Table::new(&[
        ("variant", Left),
        ("baseline", Left),
        ("baseline mean", Right),
        ("mean", Right),
        ("change (pts)", Right),
        ("95% CI (pts)", Left),
        ("p", Right),
        ("adjusted p", Right),
        ("test", Left),
        ("n", Right),
        ("verdict", Left),
    ]);
    for (b, c) in rows {
        let mut cells = comparison_cells(c);
        cells.insert(1, b.clone());
        t.row(cells);
    }
    s.push_str(&t.markdown());
}

/// Each variant with published figures (its spec's `reference`) beside ours.
fn published_table(s: &mut String, summaries: &[Summary]) {
    let rows: Vec<(&Summary, &Reference)> = summaries
        .iter()
        .filter_map(|m| m.reference.as_ref().map(|r| (m, r)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## Against the published figures\n\nOur rounds beside the published statistics \
         of the same variant (its spec's `reference`). Weights count the parameters a value is \
         multiplied by (no biases), as the publication does; where its count differs from ours \
         the row says by how much. change = our mean - the published one: Welch's t-test from \
         the published mean, std and rounds where it gives all three, else a one-sample \
         t-test against its mean (95% interval, in points). Published figures are often \
         rounded, and their rounds drew other pairs, so the test is a guide, not a verdict.\n"
    );
    let mut t = Table::new(&[
        ("variant", Left),
        ("mean", Right),
        ("std", Right),
        ("best", Right),
        ("worst", Right),
        ("published mean", Right),
        ("std", Right),
        ("best", Right),
        ("worst", Right),
        ("weights", Right),
        ("published weights", Right),
        ("change (pts)", Right),
        ("95% CI (pts)", Left),
        ("p", Right),
        ("test", Left),
    ]);
    for (m, r) in rows {
        let f = |v: Option<f32>| pct(v.map(f64::from));
        let published = match r.weights {
            None => "—".to_string(),
            Some(w) if w == m.weights => w.to_string(),
            Some(w) => format!("{w} (ours {:+})", m.weights as i64 - w as i64),
        };
        let mut cells = vec![m.variant.clone(), pct(m.mean), pct(m.std), pct(m.best)];
        cells.extend([
            pct(m.worst),
            f(Some(r.mean)),
            f(r.std),
            f(r.best),
            f(r.worst),
        ]);
        cells.extend([m.weights.to_string(), published]);
        cells.extend(against_published(m, r));
        t.row(cells);
    }
    s.push_str(&t.markdown());
}

/// Change, interval, p and test of a variant's rounds against its published figures.
fn against_published(m: &Summary, r: &Reference) -> [String; 4] {
    let n = m.rounds - m.diverged;
    let (Some(mean), Some(std)) = (m.mean, m.std) else {
        return ["—".into(), "—".into(), "—".into(), "—".into()];
    };
    let ours = Sample {
        mean,
        var: std * std,
        n,
    };
    let (change, p, ci, test) = match (r.std, r.rounds) {
        (Some(sd), Some(rounds)) if rounds > 1 => {
            let theirs = Sample {
                mean: f64::from(r.mean),
                var: f64::from(sd).powi(2),
                n: rounds,
            };
            let (c, p, ci) = welch_summary(theirs, ours, 0.05);
            (c, p, ci, "Welch t")
        }
        _ => {
            let (c, p, ci) = one_sample(f64::from(r.mean), ours, 0.05);
            (c, p, ci, "one-sample t")
        }
    };
    let ci = ci.map_or_else(
        || "—".into(),
        |(a, b)| format!("[{}, {}]", points(Some(a)), points(Some(b))),
    );
    [points(Some(change)), ci, p_value(p), test.into()]
}

/// A p-value as the reports show it.
fn p_value(p: Option<f64>) -> String {
    match p {
        Some(p) if p < 0.001 => "<0.001".into(),
        Some(p) => format!("{p:.3}"),
        None => "—".into(),
    }
}

/// The stems of the grids in `summaries`, in report order.
pub(crate) fn grid_stems(summaries: &[Summary]) -> Vec<&str> {
    let mut stems: Vec<&str> = Vec::new();
    for g in summaries.iter().filter_map(|m| m.grid.as_ref()) {
        if !stems.contains(&g.stem.as_str()) {
            stems.push(&g.stem);
        }
    }
    stems
}

/// One table per grid: a column per axis, then the test-error statistics of each point.
fn grid_tables(s: &mut String, summaries: &[Summary]) {
    for stem in grid_stems(summaries) {
        let points: Vec<(&Summary, &GridPoint)> = summaries
            .iter()
            .filter_map(|m| m.grid.as_ref().filter(|g| g.stem == stem).map(|g| (m, g)))
            .collect();
        let _ = writeln!(s, "\n## Grid: {}\n", markdown(stem));
        let best = points
            .iter()
            .filter_map(|(m, _)| m.validation_mean.map(|v| (v, &m.variant)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, name)| name.clone());
        let mut columns: Vec<(&str, Align)> = points[0]
            .1
            .axes
            .iter()
            .map(|a| (a.0.as_str(), Left))
            .collect();
        columns.extend([
            ("mean", Right),
            ("std", Right),
            ("best", Right),
            ("worst", Right),
        ]);
        if best.is_some() {
            columns.push(("validation", Right));
        }
        columns.push(("rounds", Right));
        let mut t = Table::new(&columns);
        for (m, g) in points {
            let mut cells: Vec<String> = g.axes.iter().map(|a| a.2.clone()).collect();
            cells.extend([pct(m.mean), pct(m.std), pct(m.best), pct(m.worst)]);
            if best.is_some() {
                cells.push(pct(m.validation_mean));
            }
            cells.push(m.rounds.to_string());
            t.row(cells);
            if best.as_ref() == Some(&m.variant) {
                t.bold_last(g.axes.len() + 4);
            }
        }
        s.push_str(&t.markdown());
        if let Some(b) = best {
            let _ = writeln!(
                s,
                "\nBest point on the validation error (in bold): `{}`.",
                markdown(&b)
            );
        }
        for f in axis_figure::axis_figures(summaries)
            .iter()
            .filter(|f| f.stem == stem)
        {
            let _ = writeln!(
                s,
                "\n![{}: test error against {}](figures/{})",
                markdown(stem),
                markdown(&f.axis),
                f.file_name()
            );
        }
    }
    for f in axis_figure::shared_axis_figures(summaries) {
        let _ = writeln!(
            s,
            "\n## Every grid against {axis}\n\n![test error against {axis}, a line per \
             grid](figures/{})",
            f.file_name(),
            axis = markdown(&f.axis)
        );
    }
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
    /// The grid point the variant is, if any (see [`report_md`]'s grid tables).
    pub grid: Option<GridPoint>,
    /// Published figures to compare with (the spec's `reference`).
    pub reference: Option<Reference>,
    /// Weights (the parameters a value is multiplied by; an ensemble's members all counted).
    pub weights: usize,
    /// The spec's `baseline` and this variant's rounds against its rounds (`old` the
    /// baseline), when both have rounds.
    pub against: Option<(String, Comparison)>,
    /// Whether its rounds have learning curves (and so a figure).
    pub has_curves: bool,
    /// Mean validation error, for variants that hold validation pairs out.
    pub validation_mean: Option<f64>,
    /// The variant's task and dataset in a few words (`eq on MNIST`): shown where a sweep's
    /// variants differ in them.
    pub study: String,
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
        grid: None,
        reference: None,
        weights: 0,
        against: None,
        has_curves: rounds.iter().any(|r| !r.result.curve.is_empty()),
        validation_mean: mean_std(
            &rounds
                .iter()
                .filter_map(|r| r.result.validation_error)
                .collect::<Vec<f64>>(),
        )
        .0,
        study: String::new(),
    }
}

/// Each variant with its published mean, for the summary figure.
fn summary_rows(summaries: &[Summary]) -> Vec<(String, Option<f64>)> {
    summaries
        .iter()
        .map(|m| {
            (
                m.variant.clone(),
                m.reference.as_ref().map(|r| f64::from(r.mean)),
            )
        })
        .collect()
}

/// Whether the variants of `summaries` differ in task or dataset.
fn several_studies(summaries: &[Summary]) -> bool {
    summaries.windows(2).any(|w| w[0].study != w[1].study)
}

/// A fraction as a percentage with one decimal, or an em dash.
pub fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

/// The row `lesser diff` prints for a comparison: variant, old and new means, change,
/// interval, p, test, rounds compared and verdict.
pub fn comparison_cells(c: &Comparison) -> Vec<String> {
    let ci = c.ci.map_or_else(
        || "—".into(),
        |(a, b)| format!("[{}, {}]", points(Some(a)), points(Some(b))),
    );
    let mut verdict = c.verdict.text().to_string();
    if matches!(c.verdict, Verdict::AllDiverged | Verdict::LostRounds) {
        verdict.push_str(&format!(
            " ({} of {} rounds with an error)",
            c.new_ok, c.old_ok
        ));
    }
    if c.spec_changed {
        verdict.push_str(" (spec changed)");
    }
    let p = p_value(c.p);
    let test = match c.test {
        Test::Paired => "paired t",
        Test::Welch => "Welch t",
        Test::None => "—",
    };
    vec![
        c.variant.clone(),
        pct(c.old_mean),
        pct(c.new_mean),
        points(c.change),
        ci,
        p,
        p_value(c.p_adjusted),
        test.into(),
        c.n.to_string(),
        verdict,
    ]
}

/// A change in percentage points, signed.
fn points(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{:+.1}", 100.0 * v))
}

/// `REPORT.md`: one row per variant, then the data and protocol.
pub fn report_md(f: &Files) -> String {
    let (summaries, p, errors) = (f.summaries, f.protocol, f.errors);
    let mut s = String::new();
    let _ = writeln!(s, "# lesser: sweep report\n");
    let _ = writeln!(s, "{}\n", intro(p));
    s.push_str(&summary_table(summaries).markdown());
    let _ = writeln!(
        s,
        "\n![Test error of every round, by variant: dots are rounds, ticks means with their \
         standard deviation](figures/{})",
        figures::SUMMARY
    );
    baseline_table(&mut s, summaries);
    search::section(&mut s, f.searches, summaries);
    published_table(&mut s, summaries);
    grid_tables(&mut s, summaries);
    if summaries.iter().any(|m| m.has_curves) {
        let _ = writeln!(
            s,
            "\n## Learning curves\n\nMean over rounds with the min-max band (of an \
             ensemble's first network); the training error is measured while each epoch \
             trains, the test error after it (for plotting only: nothing is chosen on it).\n"
        );
        for m in summaries.iter().filter(|m| m.has_curves) {
            let _ = writeln!(
                s,
                "![{}](figures/{})\n",
                markdown(&m.variant),
                figures::file_name(&m.variant)
            );
        }
    }
    errors_section(&mut s, errors);
    protocol_section(&mut s, p);
    s
}

/// One row per variant: its test-error statistics and description.
fn summary_table(summaries: &[Summary]) -> Table {
    // A validation column only where some variant holds validation pairs out, so that
    // reports of sweeps without any stay as they were.
    let validated = summaries.iter().any(|m| m.validation_mean.is_some());
    let studies = several_studies(summaries);
    let mut columns = vec![("variant", Left)];
    if studies {
        columns.push(("task", Left));
    }
    columns.extend([
        ("params", Right),
        ("weights", Right),
        ("rounds", Right),
        ("mean", Right),
        ("std", Right),
        ("best", Right),
        ("worst", Right),
        ("digit error", Right),
    ]);
    if validated {
        columns.push(("validation", Right));
    }
    columns.push(("description", Left));
    let mut t = Table::new(&columns);
    for m in summaries {
        let rounds = if m.diverged > 0 {
            format!("{} ({} diverged)", m.rounds, m.diverged)
        } else {
            m.rounds.to_string()
        };
        let mut cells = vec![m.variant.clone()];
        if studies {
            cells.push(m.study.clone());
        }
        cells.extend([
            m.params.to_string(),
            m.weights.to_string(),
            rounds,
            pct(m.mean),
            pct(m.std),
            pct(m.best),
            pct(m.worst),
            pct(m.digit_mean),
        ]);
        if validated {
            cells.push(pct(m.validation_mean));
        }
        cells.push(m.description.clone());
        t.row(cells);
    }
    t
}
