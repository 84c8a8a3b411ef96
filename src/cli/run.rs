//! `lesser run`: the sweep.

use super::args::RunArgs;
use crate::error::Result;
use crate::report::pct;
use crate::run::{SweepOptions, sweep};

/// Runs the sweep and says where the reports went.
pub fn run(args: &RunArgs) -> Result<()> {
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let opts = SweepOptions {
        specs: args.sweep.specs.clone(),
        data: args.sweep.data.clone(),
        out: args.out.clone(),
        repeats: args.repeats,
        epochs: args.sweep.epochs,
        only: args.sweep.only.clone(),
        pairs: args.sweep.pairs,
        jobs,
        fresh: args.fresh,
        quiet: args.quiet,
    };
    let outcome = sweep(&opts)?;
    if !args.quiet {
        // The headline numbers; REPORT.md has the rest.
        println!(
            "{:<20} {:>7} {:>7} {:>7} {:>7}  rounds",
            "variant", "mean", "std", "best", "worst"
        );
        for s in &outcome.summaries {
            println!(
                "{:<20} {:>7} {:>7} {:>7} {:>7}  {}",
                s.variant,
                pct(s.mean),
                pct(s.std),
                pct(s.best),
                pct(s.worst),
                s.rounds
            );
        }
        eprintln!(
            "{} rounds ({} trained, {} reused from the store) in {:.1} s on {jobs} threads; \
             reports in {}",
            outcome.records.len(),
            outcome.trained,
            outcome.records.len() - outcome.trained,
            outcome.seconds,
            args.out.display()
        );
    }
    Ok(())
}
