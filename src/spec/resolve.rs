//! A merged spec file into a complete [`Spec`]: defaults filled in one place, then one small
//! check per rule that no single key can check alone. Each rule names the key it is about.

use std::path::Path;

use super::file::{self, ModelFile, SpecFile, TrainFile};
use super::{
    Augment, Compare, Model, Normalize, Optimizer, Schedule, Spec, Stack, Topology, Train,
};
use crate::error::{Error, Result};

/// The defaults of every key a spec may leave out.
mod default {
    use super::{Compare, Normalize, Topology};

    pub const TOPOLOGY: Topology = Topology::Digits;
    pub const WEIGHT_SHARING: bool = false;
    pub const AUX_LOSS: f32 = 0.0;
    pub const ASYMMETRY: f32 = 0.0;
    pub const COMPARE: Compare = Compare::Learned;
    pub const EPOCHS: usize = 25;
    pub const BATCH_SIZE: usize = 100;
    pub const NORMALIZE: Normalize = Normalize::Standardize;
    pub const REPEATS: usize = 10;
    pub const SEED: u64 = 0;
}

/// A rule's verdict: `Err((key, why))`.
type Rule = std::result::Result<(), (&'static str, String)>;

/// Fills defaults and checks `f`, the merged file chain of the spec at `path`, as the
/// variant `name`.
pub(super) fn resolve(path: &Path, name: &str, f: SpecFile) -> Result<Spec> {
    let m = f.model.unwrap_or_default();
    let err = |(key, why): (&str, String)| Error::spec(path, key, why);
    ignored_keys(&m).map_err(err)?;
    let stack = |s: Option<Stack>| {
        s.unwrap_or_else(|| Stack {
            file: path.to_path_buf(),
            layers: Vec::new(),
        })
    };
    let model = Model {
        topology: m.topology.unwrap_or(default::TOPOLOGY),
        weight_sharing: m.weight_sharing.unwrap_or(default::WEIGHT_SHARING),
        aux_loss: m.aux_loss.unwrap_or(default::AUX_LOSS),
        asymmetry: m.asymmetry.unwrap_or(default::ASYMMETRY),
        compare: m.compare.unwrap_or(default::COMPARE),
        digit: stack(m.digit),
        head: stack(m.head),
        joint: stack(m.joint),
    };
    let train = train_with_defaults(f.train.unwrap_or_default());
    for rule in [
        loss_weights(&model),
        counts(&train),
        optimizer(&train.optimizer),
        schedule(&train),
        topology(&model),
    ] {
        rule.map_err(err)?;
    }
    Ok(Spec {
        name: name.to_string(),
        stem: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        grid: None,
        overrides: Vec::new(),
        path: path.to_path_buf(),
        description: f.description.unwrap_or_default(),
        order: f.order,
        reference: f.reference,
        baseline: f.baseline,
        model,
        train,
    })
}

fn train_with_defaults(t: TrainFile) -> Train {
    Train {
        epochs: t.epochs.unwrap_or(default::EPOCHS),
        batch_size: t.batch_size.unwrap_or(default::BATCH_SIZE),
        optimizer: t.optimizer.unwrap_or(Optimizer::Adam {
            lr: file::adam_lr(),
            betas: file::adam_betas(),
            weight_decay: 0.0,
        }),
        normalize: t.normalize.unwrap_or(default::NORMALIZE),
        schedule: t.schedule.unwrap_or(Schedule::Constant { warmup: 0 }),
        label_smoothing: t.label_smoothing.unwrap_or(0.0),
        validation: t.validation.unwrap_or(0.0),
        early_stopping: t.early_stopping,
        // All zeros is no augmentation, and a shift of 0 no test-time augmentation: how a
        // spec turns off what the one it extends has.
        augment: t
            .augment
            .filter(|a| a.shift != 0.0 || a.rotate != 0.0 || a.scale != 0.0 || a.elastic != 0.0)
            .map(|a| Augment {
                // Without a distortion its smoothness means nothing (nor hashes).
                elastic_sigma: if a.elastic == 0.0 {
                    file::elastic_sigma()
                } else {
                    a.elastic_sigma
                },
                ..a
            }),
        repair: t.repair.unwrap_or(false),
        ensemble: t.ensemble.unwrap_or(1),
        curve_every: t.curve_every.unwrap_or(1),
        tta: t.tta.filter(|t| t.shift != 0.0),
        repeats: t.repeats.unwrap_or(default::REPEATS),
        seed: t.seed.unwrap_or(default::SEED),
    }
}

/// Keys a topology would ignore are refused, so that a spec never says more than it does.
fn ignored_keys(m: &ModelFile) -> Rule {
    let topology = m.topology.unwrap_or(default::TOPOLOGY);
    let (name, ignored): (&str, &[(&'static str, bool)]) = match topology {
        Topology::Joint => (
            "joint",
            &[
                ("model.compare", m.compare.is_some()),
                ("model.digit", m.digit.is_some()),
                ("model.head", m.head.is_some()),
            ],
        ),
        Topology::Digits => ("digits", &[("model.joint", m.joint.is_some())]),
    };
    match ignored.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err((
            key,
            format!("{key} has no effect with topology = \"{name}\"; remove it"),
        )),
        None => Ok(()),
    }
}

/// Loss weights are finite and not negative.
fn loss_weights(m: &Model) -> Rule {
    for (key, w) in [
        ("model.aux_loss", m.aux_loss),
        ("model.asymmetry", m.asymmetry),
    ] {
        if !(w >= 0.0 && w.is_finite()) {
            return Err((key, format!("must be a finite weight >= 0, got {w}")));
        }
    }
    Ok(())
}

/// Epochs, batch size and repeats are at least 1.
fn counts(t: &Train) -> Rule {
    for (key, v) in [
        ("train.epochs", t.epochs),
        ("train.batch_size", t.batch_size),
        ("train.repeats", t.repeats),
    ] {
        if v == 0 {
            return Err((key, "must be at least 1".into()));
        }
    }
    Ok(())
}

/// The optimizer's settings are in the ranges PyTorch accepts.
fn optimizer(o: &Optimizer) -> Rule {
    let (lr, weight_decay) = match *o {
        Optimizer::Adam {
            lr, weight_decay, ..
        }
        | Optimizer::Adamw {
            lr, weight_decay, ..
        }
        | Optimizer::Sgd {
            lr, weight_decay, ..
        } => (lr, weight_decay),
    };
    if !(lr > 0.0 && lr.is_finite()) {
        return Err(("train.optimizer.lr", format!("must be > 0, got {lr}")));
    }
    if !(weight_decay >= 0.0 && weight_decay.is_finite()) {
        return Err((
            "train.optimizer.weight_decay",
            format!("must be >= 0, got {weight_decay}"),
        ));
    }
    match *o {
        Optimizer::Adam { betas, .. } | Optimizer::Adamw { betas, .. }
            if !betas.iter().all(|b| (0.0..1.0).contains(b)) =>
        {
            Err((
                "train.optimizer.betas",
                format!("each must be in [0, 1), got {betas:?}"),
            ))
        }
        Optimizer::Sgd { momentum, .. } if !(momentum >= 0.0 && momentum.is_finite()) => Err((
            "train.optimizer.momentum",
            format!("must be >= 0, got {momentum}"),
        )),
        _ => Ok(()),
    }
}

/// The training options' settings (validation, early stopping, curves, ensemble, schedule,
/// label smoothing) are in range.
fn schedule(t: &Train) -> Rule {
    if !(0.0..1.0).contains(&t.validation) {
        return Err((
            "train.validation",
            format!(
                "a share of the training pairs in [0, 1), got {}",
                t.validation
            ),
        ));
    }
    if let Some(e) = t.early_stopping {
        if t.validation == 0.0 {
            return Err((
                "train.early_stopping",
                "stops on the validation error: set train.validation (e.g. 0.2)".into(),
            ));
        }
        if e.patience == 0 {
            return Err(("train.early_stopping.patience", "must be at least 1".into()));
        }
    }
    if t.curve_every == 0 {
        return Err(("train.curve_every", "must be at least 1".into()));
    }
    if !(1..=16).contains(&t.ensemble) {
        return Err((
            "train.ensemble",
            format!("networks per round, 1 to 16, got {}", t.ensemble),
        ));
    }
    if let Some(tta) = t.tta
        && !(tta.shift > 0.0 && tta.shift <= 3.0)
    {
        return Err((
            "train.tta.shift",
            format!("must be in (0, 3] pixels (0 for none), got {}", tta.shift),
        ));
    }
    if let Some(a) = t.augment {
        for (key, v, max) in [
            ("train.augment.shift", a.shift, 7.0),
            ("train.augment.rotate", a.rotate, 180.0),
            ("train.augment.scale", a.scale, 0.9),
            ("train.augment.elastic", a.elastic, 3.0),
        ] {
            if !(0.0..=max).contains(&v) {
                return Err((key, format!("must be in [0, {max}], got {v}")));
            }
        }
        if !(0.5..=7.0).contains(&a.elastic_sigma) {
            return Err((
                "train.augment.elastic_sigma",
                format!("must be in [0.5, 7] pixels, got {}", a.elastic_sigma),
            ));
        }
    }
    if !(0.0..1.0).contains(&t.label_smoothing) {
        return Err((
            "train.label_smoothing",
            format!("must be in [0, 1), got {}", t.label_smoothing),
        ));
    }
    match t.schedule {
        Schedule::Step { every: 0, .. } => {
            Err(("train.schedule.every", "must be at least 1".into()))
        }
        Schedule::Step { gamma, .. } if !(gamma > 0.0 && gamma <= 1.0) => Err((
            "train.schedule.gamma",
            format!("must be in (0, 1], got {gamma}"),
        )),
        Schedule::OneCycle { pct_start } if !(pct_start > 0.0 && pct_start < 1.0) => Err((
            "train.schedule.pct_start",
            format!("must be in (0, 1), got {pct_start}"),
        )),
        Schedule::Constant { warmup }
        | Schedule::Cosine { warmup }
        | Schedule::Step { warmup, .. }
            if warmup >= t.epochs =>
        {
            Err((
                "train.schedule.warmup",
                format!(
                    "{warmup} epochs of warm-up leave none of the {} epochs",
                    t.epochs
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// The stacks and settings the topology needs are there, and none it cannot use.
fn topology(m: &Model) -> Rule {
    let fail = |key: &'static str, why: &str| Err((key, why.to_string()));
    match m.topology {
        Topology::Joint if m.joint.layers.is_empty() => {
            fail("model.joint", "the joint topology needs a joint stack")
        }
        Topology::Joint if m.aux_loss > 0.0 => fail(
            "model.aux_loss",
            "the joint topology has no digit outputs, so no auxiliary loss; set aux_loss = 0 \
             or use topology = \"digits\"",
        ),
        Topology::Joint if m.weight_sharing => fail(
            "model.weight_sharing",
            "the joint topology has no digit network to share",
        ),
        Topology::Joint => Ok(()),
        Topology::Digits if m.digit.layers.is_empty() => {
            fail("model.digit", "the digits topology needs a digit stack")
        }
        Topology::Digits => match m.compare {
            Compare::Learned if m.head.layers.is_empty() => {
                fail("model.head", "compare = \"learned\" needs a head stack")
            }
            Compare::Argmax | Compare::Probability if !m.head.layers.is_empty() => fail(
                "model.head",
                "compare = \"argmax\" or \"probability\" uses no head; remove the head stack",
            ),
            Compare::Argmax | Compare::Probability if m.aux_loss == 0.0 => fail(
                "model.aux_loss",
                "compare = \"argmax\" or \"probability\" learns only from the auxiliary \
                 loss; set aux_loss > 0",
            ),
            Compare::Argmax | Compare::Probability if m.asymmetry > 0.0 => fail(
                "model.asymmetry",
                "compare = \"argmax\" or \"probability\" has no learned head for the \
                 reversed-pair loss",
            ),
            _ => Ok(()),
        },
    }
}
