//! A merged tree into a complete [`Spec`]: one deserialization (the tree already holds every
//! default), then one pass of small named rules, each about the keys no type can check
//! alone. Whatever set a key (a file, a grid point, `--set`, `--epochs`), it meets the same
//! checks, and an error names the place that set the key.

use std::path::Path;

use serde::Deserialize;

use super::tree::{Origin, Tree, at};
use super::{Compare, Data, MAX_SAMPLES, Model, Optimizer, Schedule, Spec, Task, TaskKind};
use super::{Topology, Train};
use crate::error::{Error, Result};

/// The most rounds, epochs and networks a spec may ask for: far above any study's, and low
/// enough that nothing sized by them can overflow or exhaust memory before training starts.
pub const MAX_EPOCHS: usize = 100_000;
pub const MAX_REPEATS: usize = 100_000;
pub const MAX_ENSEMBLE: usize = 16;

/// The top level of a merged tree (`grid`, `extends` and `abstract` taken out before).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    description: String,
    order: Option<i64>,
    #[serde(default, deserialize_with = "super::Reference::written")]
    reference: Option<super::Reference>,
    baseline: Option<String>,
    data: Data,
    task: Task,
    model: Model,
    train: Train,
}

/// A rule's verdict: `Err((key, why))`.
type Rule = std::result::Result<(), (&'static str, String)>;

/// The variant `name` of the spec file at `path`, from its merged `tree`.
pub(super) fn resolve(path: &Path, name: &str, tree: &Tree) -> Result<Spec> {
    if tree.is_set("train.normalize") {
        let origin = tree.origin("train.normalize").cloned();
        return Err(at(path, origin, "train.normalize: moved to data.normalize"));
    }
    let doc = deserialize(path, tree)?;
    let mut spec = Spec {
        name: name.to_string(),
        stem: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        grid: None,
        overrides: Vec::new(),
        path: path.to_path_buf(),
        description: doc.description,
        order: doc.order,
        reference: doc.reference,
        baseline: doc.baseline,
        data: placed_data(doc.data, tree),
        task: doc.task,
        model: doc.model,
        train: doc.train.without_zeros(),
        data_origins: [
            "data.dir",
            "data.pool",
            "data.train_pairs",
            "data.test_pairs",
        ]
        .iter()
        .filter(|k| tree.is_set(k))
        .filter_map(|k| Some((k.to_string(), tree.origin(k)?.clone())))
        .collect(),
    };
    place_stacks(&mut spec.model, path, tree);
    let err = |(key, why): (&str, String)| match tree.origin(key).cloned() {
        // Said once for every spec it fails alike (the lines are deduplicated).
        Some(Origin::Flag(flag)) => Error::Usage(format!("{flag}: {key}: {why}")),
        origin => at(path, origin, format!("{key}: {why}")),
    };
    ignored_keys(&spec.model, tree).map_err(err)?;
    task_keys(&spec, tree).map_err(err)?;
    for rule in RULES {
        rule(&spec).map_err(err)?;
    }
    Ok(spec)
}

/// Every rule, in the order they are checked.
const RULES: [fn(&Spec) -> Rule; 13] = [
    reference,
    samples,
    relation,
    loss_weights,
    counts,
    optimizer,
    hold_out,
    members_and_curves,
    tta,
    augment,
    label_smoothing,
    schedule,
    topology,
];

/// The tree as a [`Document`]; a value of the wrong type or an unknown key is named with
/// its place.
fn deserialize(path: &Path, tree: &Tree) -> Result<Document> {
    let value = toml::Value::Table(tree.root.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        // The path of an unknown key ends in the key itself, so it is placed where written.
        let key = e.path().to_string();
        let msg = e.inner().message().lines().next().unwrap_or("").to_string();
        match tree.origin(&key).cloned() {
            // The same bad override fails every spec alike: say it without the spec, once.
            Some(Origin::Flag(flag)) => Error::Usage(format!("{flag}: {key}: {msg}")),
            origin => at(path, origin, format!("{key}: {msg}")),
        }
    })
}

/// Each stack's layers with where they were written, for the compiler's errors.
fn place_stacks(m: &mut Model, path: &Path, tree: &Tree) {
    for (name, stack) in [
        ("digit", &mut m.digit),
        ("head", &mut m.head),
        ("joint", &mut m.joint),
    ] {
        for (i, layer) in stack.layers.iter_mut().enumerate() {
            let (file, place) = match tree.origin(&format!("model.{name}[{i}]")) {
                Some(Origin::File { path, at }) => (path.clone(), at.clone()),
                Some(Origin::Flag(flag)) => (path.to_path_buf(), flag.clone()),
                None => (path.to_path_buf(), String::new()),
            };
            stack.file = file;
            layer.place = place;
        }
    }
}

/// The data directory as a path to open: a relative one set in a file is relative to that
/// file. A directory set elsewhere than the defaults without a name of its own is named
/// after itself, its images called images.
fn placed_data(mut data: Data, tree: &Tree) -> Data {
    let own = tree
        .is_set("data.dir")
        .then(|| tree.origin("data.dir"))
        .flatten();
    if let Some(Origin::File { path, .. }) = own
        && data.dir.is_relative()
    {
        data.dir = lexical(&path.parent().unwrap_or(Path::new("")).join(&data.dir));
    }
    if tree.is_set("data.dir") && !tree.is_set("data.name") {
        data.name = data.dir.file_name().map_or_else(
            || data.dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        if !tree.is_set("data.items") {
            data.items = "images".into();
        }
    }
    data
}

/// `path` with each `dir/..` taken out, without asking the file system (which would resolve
/// links): `specs/studies/x/../../../data` is `data`.
fn lexical(path: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// What means nothing for one image and its class is refused, however it was inherited.
fn task_keys(s: &Spec, tree: &Tree) -> Rule {
    if s.task.kind != TaskKind::Classify {
        return Ok(());
    }
    let m = &s.model;
    let pairs_only = [
        ("task.relation", tree.is_set("task.relation")),
        ("model.topology", m.topology != Topology::Digits),
        ("model.weight_sharing", m.weight_sharing),
        ("model.aux_loss", m.aux_loss != 0.0),
        ("model.asymmetry", m.asymmetry != 0.0),
        ("model.compare", m.compare != Compare::Learned),
        ("model.head", !m.head.layers.is_empty()),
        ("train.repair", s.train.repair),
    ];
    match pairs_only.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err((
            key,
            "means nothing for task.kind = \"classify\" (one image and its class, which \
             model.digit predicts); remove it, or set it off (false, 0, [])"
                .into(),
        )),
        None => Ok(()),
    }
}

/// Keys a topology would ignore are refused, so that a spec never says more than it does.
fn ignored_keys(m: &Model, tree: &Tree) -> Rule {
    let (name, ignored): (&str, &[&'static str]) = match m.topology {
        Topology::Joint => ("joint", &["model.compare", "model.digit", "model.head"]),
        Topology::Digits => ("digits", &["model.joint"]),
    };
    match ignored.iter().find(|key| tree.is_set(key)) {
        Some(key) => Err((
            key,
            format!("has no effect with topology = \"{name}\"; remove it"),
        )),
        None => Ok(()),
    }
}

/// Published errors are fractions, over at least one round.
fn reference(s: &Spec) -> Rule {
    let Some(r) = &s.reference else {
        return Ok(());
    };
    for (key, v) in [
        ("reference.mean", Some(r.mean)),
        ("reference.std", r.std),
        ("reference.best", r.best),
        ("reference.worst", r.worst),
    ] {
        if let Some(v) = v.filter(|v| !(0.0..=1.0).contains(v)) {
            return Err((
                key,
                format!("a published test error, a fraction in [0, 1], got {v}"),
            ));
        }
    }
    if r.rounds == Some(0) {
        return Err(("reference.rounds", "must be at least 1".into()));
    }
    Ok(())
}

/// The pooling factor and the sample counts are at least 1, and a validation share leaves a
/// pair to train on.
fn samples(s: &Spec) -> Rule {
    let d = &s.data;
    for (key, v, max) in [
        ("data.pool", d.pool, 64),
        ("data.train_pairs", d.train_pairs, MAX_SAMPLES),
        ("data.test_pairs", d.test_pairs, MAX_SAMPLES),
    ] {
        if v == 0 {
            return Err((key, "must be at least 1".into()));
        }
        if v > max {
            return Err((key, format!("must be at most {max}, got {v}")));
        }
    }
    if s.train.validation > 0.0 && d.train_pairs < 2 {
        return Err((
            "train.validation",
            format!(
                "holding pairs out needs 2 training pairs at least, data.train_pairs is {}",
                d.train_pairs
            ),
        ));
    }
    Ok(())
}

/// A reversed-pair loss needs a relation that swapping the pair changes.
fn relation(s: &Spec) -> Rule {
    let r = s.task.relation;
    if s.task.kind == TaskKind::Pairs && r.symmetric() && s.model.asymmetry > 0.0 {
        return Err((
            "model.asymmetry",
            format!(
                "the reversed pair has the same target under {} (the relation is symmetric),                  so the reversed-pair loss teaches nothing; set asymmetry = 0",
                r.formula()
            ),
        ));
    }
    Ok(())
}

/// Loss weights are finite and not negative.
fn loss_weights(s: &Spec) -> Rule {
    for (key, w) in [
        ("model.aux_loss", s.model.aux_loss),
        ("model.asymmetry", s.model.asymmetry),
    ] {
        if !(w >= 0.0 && w.is_finite()) {
            return Err((key, format!("must be a finite weight >= 0, got {w}")));
        }
    }
    Ok(())
}

/// Epochs, batch size and repeats are at least 1 and within their limits.
fn counts(s: &Spec) -> Rule {
    let t = &s.train;
    for (key, v, max) in [
        ("train.epochs", t.epochs, MAX_EPOCHS),
        ("train.batch_size", t.batch_size, usize::MAX),
        ("train.repeats", t.repeats, MAX_REPEATS),
    ] {
        if v == 0 {
            return Err((key, "must be at least 1".into()));
        }
        if v > max {
            return Err((key, format!("must be at most {max}, got {v}")));
        }
    }
    Ok(())
}

/// The optimizer's settings are in the ranges PyTorch accepts.
fn optimizer(s: &Spec) -> Rule {
    let o = &s.train.optimizer;
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

/// The validation share is a fraction, and early stopping has one to stop on.
fn hold_out(s: &Spec) -> Rule {
    let t = &s.train;
    if !(0.0..1.0).contains(&t.validation) {
        return Err((
            "train.validation",
            format!(
                "a share of the training pairs in [0, 1), got {}",
                t.validation
            ),
        ));
    }
    if t.early_stopping.is_some() && t.validation == 0.0 {
        return Err((
            "train.early_stopping",
            "stops on the validation error: set train.validation (e.g. 0.2)".into(),
        ));
    }
    Ok(())
}

/// An ensemble has 1 to 16 networks, and curves are measured at least every epoch.
fn members_and_curves(s: &Spec) -> Rule {
    let t = &s.train;
    if t.curve_every == 0 {
        return Err(("train.curve_every", "must be at least 1".into()));
    }
    if !(1..=MAX_ENSEMBLE).contains(&t.ensemble) {
        return Err((
            "train.ensemble",
            format!(
                "networks per round, 1 to {MAX_ENSEMBLE}, got {}",
                t.ensemble
            ),
        ));
    }
    Ok(())
}

/// Test-time shifts stay within a few pixels.
fn tta(s: &Spec) -> Rule {
    match s.train.tta {
        Some(tta) if !(tta.shift > 0.0 && tta.shift <= 3.0) => Err((
            "train.tta.shift",
            format!("must be in (0, 3] pixels (0 for none), got {}", tta.shift),
        )),
        _ => Ok(()),
    }
}

/// Each transform of the augmentation is within its range.
fn augment(s: &Spec) -> Rule {
    let Some(a) = s.train.augment else {
        return Ok(());
    };
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
    Ok(())
}

/// Label smoothing leaves some weight on the true class.
fn label_smoothing(s: &Spec) -> Rule {
    let v = s.train.label_smoothing;
    if (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err((
            "train.label_smoothing",
            format!("must be in [0, 1), got {v}"),
        ))
    }
}

/// The schedule's settings are in range and its warm-up leaves epochs to train.
fn schedule(s: &Spec) -> Rule {
    let t = &s.train;
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
fn topology(s: &Spec) -> Rule {
    let m = &s.model;
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
        Topology::Digits if s.task.kind == TaskKind::Classify => Ok(()),
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
