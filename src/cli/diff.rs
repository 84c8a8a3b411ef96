//! `lesser diff`: what a change did, variant by variant.

use std::fmt::Write as _;

use super::args::{DiffArgs, Format};
use super::print;
use crate::diff::{Correction, Side, correct, diff, load_side};
use crate::error::{Error, Result};
use crate::fs::write_atomic;
use crate::record::RoundRecord;
use crate::report::figures::{self, Row};
use crate::report::{Align, Table, comparison_cells};
use Align::{Left, Right};

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
    let mut comparisons = diff(&old, &new, args.alpha);
    correct(
        comparisons.iter_mut().collect(),
        args.correction,
        args.alpha,
    );
    let level = format!("{:.0}% CI (pts)", 100.0 * (1.0 - args.alpha));
    let mut table = Table::new(&[
        ("variant", Left),
        ("old", Right),
        ("new", Right),
        ("change (pts)", Right),
        (&level, Left),
        ("p", Right),
        ("adjusted p", Right),
        ("test", Left),
        ("n", Right),
        ("verdict", Left),
    ]);
    for c in &comparisons {
        table.row(comparison_cells(c));
    }
    let mut out = match args.format {
        Format::Csv => table.csv(),
        Format::Markdown => table.markdown(),
        Format::Table => table.text(),
    };
    if args.format != Format::Csv {
        let _ = writeln!(
            out,
            "\nold: {}\nnew: {}\nchange = new - old test error; lower is better. Paired t-test on \
             rounds with the same data seed, Welch's t-test when rounds do not pair; level {}. \
             {}",
            old.label,
            new.label,
            args.alpha,
            match args.correction {
                Correction::Holm => {
                    "The adjusted p corrects for the variants compared together (Holm's \
                     method; --correction none for none); verdicts use it."
                }
                Correction::None => "No correction for the variants compared together.",
            }
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
