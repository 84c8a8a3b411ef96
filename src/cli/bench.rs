//! `lesser bench`: seconds per round of each variant, on one thread.

use std::time::Instant;

use super::args::BenchArgs;
use crate::data::Mnist;
use crate::error::{Error, Result};
use crate::run::{data_seed, init_seed, load_specs};
use crate::train::{RoundConfig, train_round};

/// Trains `rounds` rounds per variant on the calling thread and prints the median time.
pub fn run(args: &BenchArgs) -> Result<()> {
    let s = &args.sweep;
    let specs = load_specs(&s.specs).map_err(|errs| {
        Error::Usage(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let data = Mnist::load(&s.data)?;
    println!("variant,epochs,pairs,seconds_per_round,test_error");
    for spec in specs
        .iter()
        .filter(|x| s.only.is_empty() || s.only.contains(&x.name))
    {
        let epochs = s.epochs.unwrap_or(spec.train.epochs);
        let mut times = Vec::new();
        let mut last = None;
        for round in 0..args.rounds.max(1) {
            let t = Instant::now();
            let r = train_round(
                spec,
                &data,
                RoundConfig {
                    pairs: s.pairs,
                    epochs,
                    data_seed: data_seed(round),
                    init_seed: init_seed(spec, round),
                },
            )?;
            times.push(t.elapsed().as_secs_f64());
            last = r.test_error;
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{},{epochs},{},{:.3},{}",
            spec.name,
            s.pairs,
            times[times.len() / 2],
            last.map_or_else(String::new, |e| format!("{e:.4}"))
        );
    }
    Ok(())
}
