//! `lesser run`: the sweep.

use std::fmt::Write as _;
use std::io::Write as _;

use super::args::RunArgs;
use super::print;
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
        max_memory: args.sweep.max_memory,
        load: crate::variants::LoadOptions::parse(&args.sweep.spec.set, args.sweep.spec.max_grid)?,
    };
    let outcome = sweep(&opts)?;
    if args.quiet {
        return Ok(());
    }
    // The headline numbers; REPORT.md has the rest.
    let mut table = format!(
        "{:<20} {:>7} {:>7} {:>7} {:>7}  rounds\n",
        "variant", "mean", "std", "best", "worst"
    );
    for s in &outcome.summaries {
        let _ = writeln!(
            table,
            "{:<20} {:>7} {:>7} {:>7} {:>7}  {}",
            s.variant,
            pct(s.mean),
            pct(s.std),
            pct(s.best),
            pct(s.worst),
            s.rounds
        );
    }
    print(&table)?;
    let _ = writeln!(
        std::io::stderr(),
        "{} rounds ({} trained, {} reused from the store) in {:.1} s on {jobs} {} ({} kernel); \
         reports in {}",
        outcome.records.len(),
        outcome.trained,
        outcome.records.len() - outcome.trained,
        outcome.seconds,
        if jobs == 1 { "thread" } else { "threads" },
        crate::kernels::Kernel::active().name(),
        args.out.display()
    );
    Ok(())
}
