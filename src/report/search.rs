//! What a search did, in the reports: `search.csv` (every trial's objective at every rung it
//! reached), REPORT.md's section (the budget, the search's best validation error and the
//! confirmed variants' test errors side by side) and two figures per search: the objective of
//! every trial in the order drawn with the best so far, and the objective against each key.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::figures::{SERIES, series_legend};
use super::{Align, Summary, Table, comparison_cells, markdown, pct};
use crate::record::csv_line;
use crate::search::Outcome;
use crate::spec::{Method, Range};

/// `search.csv`: one row per trial and rung reached, exact numbers (empty where a round
/// diverged).
pub fn csv(outcomes: &[Outcome]) -> String {
    let mut s = String::from("search,trial,variant,rung,epochs,rounds,validation_error\n");
    for o in outcomes {
        for (t, trial) in o.trials.iter().enumerate() {
            for (k, v) in trial.objectives.iter().enumerate() {
                let v = if v.is_finite() {
                    v.to_string()
                } else {
                    String::new()
                };
                let row = [
                    o.stem.clone(),
                    (t + 1).to_string(),
                    trial.name.clone(),
                    (k + 1).to_string(),
                    o.rungs[k].epochs.to_string(),
                    o.search.rounds.to_string(),
                    v,
                ];
                s.push_str(&csv_line(&row));
                s.push('\n');
            }
        }
    }
    s
}

/// The figures' file names of `o`: the trials, then one per key.
pub fn figure_names(o: &Outcome) -> Vec<String> {
    let keys = o
        .search
        .space
        .iter()
        .map(|d| format!("search {} {}", o.stem, d.short));
    std::iter::once(format!("search {}", o.stem))
        .chain(keys)
        .map(|n| super::figures::file_name(&n))
        .collect()
}

/// REPORT.md's section on the searches.
pub fn section(s: &mut String, outcomes: &[Outcome], summaries: &[Summary]) {
    if outcomes.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n## Searches\n");
    for o in outcomes {
        let _ = writeln!(s, "### {}\n\n{}\n", markdown(&o.stem), budget(o));
        let mut t = Table::new(&[
            ("confirmed", Align::Left),
            ("search validation", Align::Right),
            ("rounds", Align::Right),
            ("validation", Align::Right),
            ("test mean", Align::Right),
            ("std", Align::Right),
            ("baseline", Align::Left),
            ("baseline mean", Align::Right),
            ("change (pts)", Align::Right),
            ("adjusted p", Align::Right),
            ("verdict", Align::Left),
        ]);
        let last = o.rungs.len();
        for name in &o.confirmed {
            let searched = o.trials.iter().find(|t| &t.name == name);
            let at_last = searched.and_then(|t| t.objectives.get(last - 1)).copied();
            let Some(m) = summaries.iter().find(|m| &m.variant == name) else {
                continue;
            };
            let mut cells = vec![
                name.clone(),
                pct(at_last.filter(|v| v.is_finite())),
                m.rounds.to_string(),
                pct(m.validation_mean),
                pct(m.mean),
                pct(m.std),
            ];
            match &m.against {
                Some((b, c)) => {
                    let c = comparison_cells(c);
                    cells.extend([b.clone(), c[1].clone(), c[3].clone(), c[6].clone()]);
                    cells.push(c[9].clone());
                }
                None => cells.extend(["—"; 5].map(String::from)),
            }
            t.row(cells);
        }
        s.push_str(&t.markdown());
        for name in figure_names(o) {
            let _ = writeln!(s, "\n![{}](figures/{name})", markdown(&o.stem));
        }
    }
}

/// What the search spent, in words.
fn budget(o: &Outcome) -> String {
    let keys: Vec<String> = o
        .search
        .space
        .iter()
        .map(|d| format!("`{}`", d.key))
        .collect();
    let method = match o.search.method {
        Method::Random => "drawn at random".to_string(),
        Method::Tpe => format!(
            "drawn by TPE in batches of {} (the first at random)",
            o.search.batch
        ),
    };
    let rungs: Vec<String> = o
        .rungs
        .iter()
        .map(|r| format!("{} at {} epochs", r.trials, r.epochs))
        .collect();
    let (rounds, epochs) = o.search.spent(&o.rungs);
    format!(
        "{} trials over {}, {method}, each trained {} rounds on the search's own data seeds \
         (never a reported round's) and ranked on its mean validation error; trials trained: \
         {}. {rounds} rounds in all ({epochs} epochs); the best validation error at the last \
         step: {}. The best {} became variants of this sweep, trained on its reported rounds \
         and compared with their baseline on the same pairs (p adjusted with the other \
         baseline comparisons, Holm's method).",
        o.trials.len(),
        keys.join(", "),
        o.search.rounds,
        rungs.join(", then "),
        pct(o.best().filter(|v| v.is_finite())),
        o.confirmed.len(),
    )
}

/// `(file name, SVG)` of every figure of `o`.
pub fn figures(o: &Outcome) -> Vec<(String, String)> {
    let names = figure_names(o);
    let first = o.rungs[0].epochs;
    let y: Vec<Option<f64>> = o
        .trials
        .iter()
        .map(|t| t.objectives.first().copied().filter(|v| v.is_finite()))
        .collect();
    let confirmed: Vec<bool> = o
        .trials
        .iter()
        .map(|t| o.confirmed.contains(&t.name))
        .collect();
    let y_label = format!(
        "validation error (%) after {first} epoch{}",
        if first == 1 { "" } else { "s" }
    );
    let trials = Plot {
        title: format!("{}: every trial in order, with the best so far", o.stem),
        x_label: "trial".into(),
        y_label,
        x: (1..=o.trials.len()).map(|i| i as f64).collect(),
        y,
        confirmed,
        best_so_far: true,
        log: false,
    };
    let mut out = vec![(names[0].clone(), svg(&trials))];
    for (k, d) in o.search.space.iter().enumerate() {
        let log = matches!(d.range, Range::Log(..));
        let x = o.trials.iter().map(|t| d.range.position(&t.point[k]));
        let x_label = match &d.range {
            Range::Log(..) => format!("{} (log scale)", d.short),
            Range::Choice(_) => format!("{} (choice number, from 0)", d.short),
            _ => d.short.clone(),
        };
        let plot = Plot {
            title: format!("{}: validation error against {}", o.stem, d.short),
            x_label,
            // A log axis is drawn as log10 of the values.
            x: x.map(|v| if log { v / std::f64::consts::LN_10 } else { v })
                .collect(),
            best_so_far: false,
            log,
            ..trials.clone()
        };
        out.push((names[k + 1].clone(), svg(&plot)));
    }
    out
}

/// One scatter of trials: `x` (log10 of the value on a log axis), `y` a fraction.
#[derive(Clone)]
struct Plot {
    title: String,
    x_label: String,
    y_label: String,
    x: Vec<f64>,
    y: Vec<Option<f64>>,
    confirmed: Vec<bool>,
    best_so_far: bool,
    log: bool,
}

fn svg(p: &Plot) -> String {
    super::figures::svg((760, 420), |root| draw(root, p))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    p: &Plot,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (lo, hi) =
        p.x.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
                (l.min(x), h.max(x))
            });
    let pad = ((hi - lo) * 0.05).max(0.5 * f64::from(u8::from(hi == lo)));
    let top =
        p.y.iter()
            .flatten()
            .fold(0.0, |a: f64, &b| a.max(100.0 * b))
            * 1.1
            + 0.1;
    let mut chart = ChartBuilder::on(root)
        .caption(&p.title, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d((lo - pad)..(hi + pad), 0.0..top)?;
    let log = p.log;
    let shown = move |v: &f64| {
        let x = if log { 10f64.powf(*v) } else { *v };
        format!("{}", format!("{x:.2e}").parse::<f64>().unwrap_or(x))
    };
    chart
        .configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .x_label_formatter(&shown)
        .y_label_formatter(&|y| format!("{y:.1}"))
        .light_line_style(RGBColor(238, 238, 238))
        .label_style(("sans-serif", 13))
        .draw()?;
    let (blue, red, grey) = (SERIES[0], SERIES[1], SERIES[5]);
    let dots = p.x.iter().zip(&p.y).zip(&p.confirmed);
    for (confirmed, r, colour, label) in [(false, 3, blue, "trial"), (true, 5, red, "confirmed")] {
        let these = dots.clone().filter(move |(_, c)| **c == confirmed);
        let circles = these.filter_map(move |((&x, y), _)| {
            Some(Circle::new((x, 100.0 * (*y)?), r, colour.filled()))
        });
        chart
            .draw_series(circles)?
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 9, y), r, colour.filled()));
    }
    if p.best_so_far {
        let mut best = f64::INFINITY;
        let line: Vec<(f64, f64)> =
            p.x.iter()
                .zip(&p.y)
                .filter_map(|(&x, y)| {
                    best = best.min((*y)?);
                    Some((x, 100.0 * best))
                })
                .collect();
        chart
            .draw_series(LineSeries::new(line, grey.stroke_width(2)))?
            .label("best so far")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], grey.stroke_width(3))
            });
    }
    series_legend(&mut chart)
}
