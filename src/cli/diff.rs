//! `lesser diff`: what a change did, variant by variant.

use std::fmt::Write as _;

use super::args::{DiffArgs, Format};
use super::print;
use crate::diff::{Side, diff, load_side};
use crate::error::{Error, Result};
use crate::fs::write_atomic;
use crate::record::RoundRecord;
use crate::report::comparison_cells;
use crate::report::figures::{self, Row};

/// Prints the comparison; returns 1 with `--fail-on-regression` when a variant got worse,
/// diverged in every round or lost rounds.
pub fn run(args: &DiffArgs) -> Result<u8> {
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        return Err(Error::Usage(format!(
            "--alpha must be in (0, 1), got {}",
            args.alpha
        )));
    }
    let old = load_side(&args.old)?;
    let new = match &args.new {
        Some(n) => load_side(n)?,
        // The working tree's reports.
        None => load_side("reports")?,
    };
    let comparisons = diff(&old, &new, args.alpha);
    let level = format!("{:.0}% CI (pts)", 100.0 * (1.0 - args.alpha));
    let header: Vec<String> = [
        "variant",
        "old",
        "new",
        "change (pts)",
        &level,
        "p",
        "test",
        "n",
        "verdict",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let rows: Vec<Vec<String>> = comparisons.iter().map(comparison_cells).collect();
    let mut out = String::new();
    match args.format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            // Writing into a Vec cannot fail.
            let _ = w.write_record(&header);
            for r in &rows {
                let _ = w.write_record(r);
            }
            out = String::from_utf8_lossy(&w.into_inner().unwrap_or_default()).into_owned();
        }
        Format::Markdown => {
            let _ = writeln!(out, "| {} |", header.join(" | "));
            let _ = writeln!(out, "|---|---:|---:|---:|---|---:|---|---:|---|");
            for r in &rows {
                let _ = writeln!(out, "| {} |", r.join(" | "));
            }
        }
        Format::Table => {
            let widths: Vec<usize> = (0..header.len())
                .map(|i| {
                    rows.iter()
                        .map(|r| r[i].chars().count())
                        .chain([header[i].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            for r in std::iter::once(&header).chain(&rows) {
                let cells: Vec<String> = r
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                let _ = writeln!(out, "{}", cells.join("  ").trim_end());
            }
        }
    }
    if args.format != Format::Csv {
        let _ = writeln!(
            out,
            "\nold: {}\nnew: {}\nchange = new - old test error; lower is better. Paired t-test on \
             rounds with the same data seed, Welch's t-test when rounds do not pair; level {}.",
            old.label, new.label, args.alpha
        );
    }
    print(&out)?;
    if let Some(path) = &args.plot {
        let rows: Vec<Row> = comparisons
            .iter()
            .map(|c| {
                let set = |side: &Side| {
                    let rounds: Vec<&RoundRecord> = side
                        .variants
                        .get(&c.variant)
                        .map(|v| v.iter().collect())
                        .unwrap_or_default();
                    figures::dot_set(&rounds)
                };
                Row {
                    label: c.variant.clone(),
                    sets: vec![set(&old), set(&new)],
                    reference: None,
                }
            })
            .collect();
        let svg = figures::dots_svg(&rows, &["old", "new"], "test error (%)");
        write_atomic(path, svg.as_bytes())?;
    }
    let worse = comparisons.iter().any(|c| c.verdict.is_regression());
    Ok(u8::from(args.fail_on_regression && worse))
}
