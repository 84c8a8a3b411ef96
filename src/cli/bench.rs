//! `lesser bench`: seconds per round of each variant, on `--threads` threads (one by default).

use std::time::Instant;

use super::args::BenchArgs;
use super::print;
use crate::error::{Error, Result};
use crate::seeds::{data_seed, init_seed};
use crate::train::{RoundConfig, train_round};
use crate::variants;

/// The most rounds `--rounds` times per variant.
const MAX_ROUNDS: usize = 1000;

/// Trains `rounds` rounds per variant, one at a time, and prints the median time.
pub fn run(args: &BenchArgs) -> Result<()> {
    let s = &args.sweep;
    if args.rounds == 0 || s.epochs == Some(0) {
        return Err(Error::Usage(
            "--rounds and --epochs must be at least 1".into(),
        ));
    }
    if args.rounds > MAX_ROUNDS {
        return Err(Error::Usage(format!(
            "--rounds {}: at most {MAX_ROUNDS}",
            args.rounds
        )));
    }
    variants::check_max_memory(s.max_memory)?;
    let load = variants::LoadOptions::parse(&s.spec.set, s.spec.max_grid)?
        .counts(s.epochs, None)
        .data(s.data.as_deref(), s.pairs)?;
    // A search's variants are known only once it has run: bench the others.
    let (selected, _) = variants::select(variants::load_valid(&s.specs, &load)?, &s.only)?;
    for v in &selected {
        variants::check_memory(v, s.max_memory)?;
    }
    let pool = crate::run::thread_pool(args.threads)?;
    print("variant,epochs,pairs,seconds_per_round,test_error\n")?;
    for v in &selected {
        let spec = &v.spec;
        let epochs = spec.train.epochs;
        let mut times = Vec::new();
        let mut last = None;
        for round in 0..args.rounds {
            let t = Instant::now();
            let cfg = RoundConfig {
                epochs,
                data_seed: data_seed(round),
                init_seed: init_seed(&spec.name, spec.train.seed, round),
            };
            let r = pool.install(|| train_round(v, &v.data, cfg))?;
            times.push(t.elapsed().as_secs_f64());
            last = r.result.test_error;
        }
        times.sort_by(f64::total_cmp);
        print(&format!(
            "{},{epochs},{},{:.3},{}\n",
            spec.name,
            spec.data.train_pairs,
            times[times.len() / 2],
            last.map_or_else(String::new, |e| format!("{e:.4}"))
        ))?;
    }
    Ok(())
}
