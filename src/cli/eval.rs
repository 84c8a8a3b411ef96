//! `lesser eval`: a round's kept weights, rebuilt into its network and measured again.

use super::args::EvalArgs;
use super::print;
use crate::compile::Network;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::report::pct;
use crate::run::{round_key, store_path};
use crate::train::{RoundConfig, evaluate, kept_test_set};
use crate::variants::{self, Variant};

/// Loads the variant's kept weights for `--round` and prints its errors.
pub fn run(args: &EvalArgs) -> Result<()> {
    let load = variants::LoadOptions::parse(&args.spec.set, args.spec.max_grid)?
        .counts(args.epochs, None)
        .data(None, args.pairs)?;
    let (mut all, searches) = variants::load_valid(&args.specs, &load)?;
    let store = store_path(&args.out);
    if !searches.is_empty() && store.is_dir() {
        // A search's confirmed variants, as its stored trial rounds rank them.
        let store = crate::store::RoundStore::open(&store)?;
        crate::run::searches_stored(&searches, &mut all, &store)?;
    }
    let Some(v) = all.iter().find(|v| v.spec.name == args.variant) else {
        let known: Vec<&str> = all.iter().map(|v| v.spec.name.as_str()).collect();
        return Err(Error::Usage(format!(
            "{}: no such variant (known: {})",
            args.variant,
            known.join(", ")
        )));
    };
    if args.round >= v.spec.train.repeats {
        return Err(Error::Usage(format!(
            "--round {}: {} has rounds 0 to {}",
            args.round,
            v.spec.name,
            v.spec.train.repeats - 1
        )));
    }
    let nets = kept_networks(v, args)?;
    let key = round_key(v, args.round);
    let cfg = RoundConfig {
        epochs: key.epochs,
        data_seed: key.data_seed,
        init_seed: key.init_seed,
    };
    let other = match &args.data {
        Some(dir) => Some(other_data(v, dir)?),
        None => None,
    };
    let other_ref = other.as_ref().map(|(d, n)| (d, *n));
    let (test, views) = kept_test_set(v, cfg, other_ref)?;
    if let Some(path) = &args.save_samples {
        let bytes = crate::weights::samples_to_bytes(&test, v.data.side)?;
        crate::fs::write_atomic(path, &bytes)?;
    }
    let refs: Vec<&Network> = nets.iter().collect();
    let errors = evaluate(&refs, &test, views.as_ref())?;
    let on = match &other {
        Some((d, n)) => format!("{n} test samples of {}", d.dir.display()),
        None => format!("its {} test samples", v.spec.data.test_pairs),
    };
    let Some(e) = errors else {
        return Err(Error::Protocol(format!(
            "{} round {}: an output is NaN or infinite on {on}",
            v.spec.name, args.round
        )));
    };
    let digit = e
        .digit
        .filter(|_| v.spec.model.aux_loss > 0.0)
        .map_or_else(String::new, |d| format!(", digit error {}", pct(Some(d))));
    print(&format!(
        "{} round {} on {on}: test error {}{digit} ({} exactly)\n",
        v.spec.name,
        args.round,
        pct(Some(e.pair)),
        e.pair
    ))
}

/// The round's networks with their kept weights; a missing, cut or foreign file is refused
/// with its path.
fn kept_networks(v: &Variant, args: &EvalArgs) -> Result<Vec<Network>> {
    let key = round_key(v, args.round);
    let path = crate::store::weights_path(&store_path(&args.out), &key);
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::data(
            &path,
            format!(
                "no kept weights for {} round {} with this spec and data; \
                 `lesser run --keep-weights` keeps them",
                v.spec.name, args.round
            ),
        ),
        _ => Error::io(&path, e),
    })?;
    let meta = crate::weights::metadata(&bytes, &path)?;
    let kept = meta.get("spec_hash").map_or("none", String::as_str);
    if kept != key.spec_hash {
        return Err(Error::data(
            &path,
            format!(
                "weights of spec hash {kept}, {} is now {}",
                v.spec.name, key.spec_hash
            ),
        ));
    }
    let mut nets: Vec<Network> = (0..v.spec.train.ensemble)
        .map(|_| Network::from_plan(&v.spec, v.plan.clone(), key.init_seed))
        .collect();
    crate::weights::load(&mut nets, &bytes, &path)?;
    Ok(nets)
}

/// Another dataset to evaluate on: images the network can read, and enough of them.
fn other_data(v: &Variant, dir: &std::path::Path) -> Result<(Dataset, usize)> {
    let d = Dataset::load(dir, v.spec.data.pool)?;
    if d.side != v.data.side || d.classes != v.data.classes {
        return Err(Error::data(
            dir,
            format!(
                "images {} of {} classes; {} reads {} of {}",
                d.sizes(),
                d.classes,
                v.spec.name,
                v.data.sizes(),
                v.data.classes
            ),
        ));
    }
    let n = v.spec.data.test_pairs;
    let need = n.saturating_mul(v.spec.task.images());
    if need > d.test.len() {
        return Err(Error::Data {
            path: dir.to_path_buf(),
            msg: format!(
                "{n} test samples need {need} images, the test split holds {}",
                d.test.len()
            ),
        });
    }
    Ok((d, n))
}
