//! `lesser run`: the sweep.

use std::fmt::Write as _;
use std::io::Write as _;

use super::args::{OutArgs, RunArgs, SweepArgs};
use super::print;
use crate::error::Result;
use crate::report::pct;
use crate::run::{Shard, Silent, SweepOptions, sweep};

/// The sweep's options from the command line (not fresh, all shards).
pub(super) fn options(sweep: &SweepArgs, target: &OutArgs, jobs: usize) -> Result<SweepOptions> {
    Ok(SweepOptions {
        specs: sweep.specs.clone(),
        out: target.out.clone(),
        repeats: target.repeats,
        epochs: sweep.epochs,
        only: sweep.only.clone(),
        jobs,
        threads: cores(),
        fresh: false,
        max_memory: sweep.max_memory,
        load: crate::variants::LoadOptions::parse(&sweep.spec.set, sweep.spec.max_grid)?
            .counts(sweep.epochs, target.repeats)
            .data(sweep.data.as_deref(), sweep.pairs)?,
        shard: None,
    })
}

/// This machine's cores: the default for `--jobs` and `--threads`.
pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs the sweep and says where the reports went.
pub fn run(args: &RunArgs) -> Result<()> {
    let jobs = args.jobs.unwrap_or_else(cores);
    let mut opts = options(&args.sweep, &args.target, jobs)?;
    opts.threads = args.threads.unwrap_or(opts.threads);
    opts.load = opts.load.keep_weights(args.keep_weights);
    let shard = args
        .shard
        .as_deref()
        .map(|s| Shard::parse(s, |v| std::env::var(v).ok()))
        .transpose()?;
    let opts = SweepOptions {
        fresh: args.fresh,
        shard,
        ..opts
    };
    let threads = opts.threads;
    let outcome = if args.quiet {
        sweep(&opts, &Silent)?
    } else {
        sweep(&opts, &super::progress::display())?
    };
    if args.quiet {
        return Ok(());
    }
    if let Some(s) = shard {
        let _ = writeln!(
            std::io::stderr(),
            "shard {}/{}: {} rounds ({} trained, {} reused from the store) in {:.1} s; \
             `lesser report --out {}` merges the shards' rounds",
            s.index,
            s.count,
            outcome.rounds,
            outcome.trained,
            outcome.rounds - outcome.trained,
            outcome.seconds,
            args.target.out.display()
        );
        for stem in &outcome.waiting {
            let _ = writeln!(
                std::io::stderr(),
                "search {stem}: its next step waits for trial rounds other shards train; run \
                 the shards again once they finish"
            );
        }
        return Ok(());
    }
    if outcome.trials_trained > 0 {
        let _ = writeln!(
            std::io::stderr(),
            "searches: {} trial rounds trained (search.csv has every trial)",
            outcome.trials_trained
        );
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
        "{} rounds ({} trained, {} reused from the store) in {:.1} s, {} at once on {} {} ({} \
         kernel); reports in {}",
        outcome.rounds,
        outcome.trained,
        outcome.rounds - outcome.trained,
        outcome.seconds,
        jobs.min(threads),
        threads,
        if threads == 1 { "thread" } else { "threads" },
        crate::kernels::Kernel::active().name(),
        args.target.out.display()
    );
    Ok(())
}
