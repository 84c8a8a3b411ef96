//! Spec files: one TOML file per variant, resolved through `extends` into a complete [`Spec`].
//!
//! Each file is parsed on its own (so every error names the file, line and column that caused
//! it), then merged with its parents: the child's keys win, stacks and the optimizer are
//! replaced whole. Defaults are filled last. The language is documented in `specs/README.md`.

mod file;
mod layer;

pub use layer::LayerSpec;

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use file::{ModelFile, SpecFile, TrainFile};

/// How the network sees a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topology {
    /// A digit network on each digit, then a comparison head on the 20 digit logits.
    Digits,
    /// One stack over the whole `2x14x14` input, ending in 2 logits.
    Joint,
}

/// How a digits network turns the two digits' logits into a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    /// A learned `head` stack on the concatenated digit logits, ending in 2 logits.
    Learned,
    /// No learned head: predict `argmax(d0) <= argmax(d1)`.
    Argmax,
}

/// How raw pixel values (0..255) are scaled before the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// Raw 0..255 values.
    None,
    /// Divide by 255.
    Scale,
    /// Subtract the round's training-set mean, divide by its standard deviation.
    Standardize,
}

/// The optimizer and its settings (PyTorch's semantics).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Optimizer {
    Adam {
        #[serde(default = "file::adam_lr", deserialize_with = "layer::real")]
        lr: f32,
        #[serde(default = "file::adam_betas", deserialize_with = "layer::real_pair")]
        betas: [f32; 2],
        #[serde(default, deserialize_with = "layer::real")]
        weight_decay: f32,
    },
    Sgd {
        #[serde(deserialize_with = "layer::real")]
        lr: f32,
        #[serde(default, deserialize_with = "layer::real")]
        momentum: f32,
        #[serde(default, deserialize_with = "layer::real")]
        weight_decay: f32,
    },
}

/// A layer with where it was written, for error messages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlacedLayer {
    pub spec: LayerSpec,
    /// `line:col` in the file that defined the stack.
    #[serde(skip)]
    pub place: String,
}

/// A named stack of layers and the file that defined it.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Stack {
    #[serde(skip)]
    pub file: PathBuf,
    pub layers: Vec<PlacedLayer>,
}

/// The resolved model section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    pub topology: Topology,
    pub weight_sharing: bool,
    /// Weight of the digit-class cross-entropy, summed over both digits (0 = off).
    pub aux_loss: f32,
    /// Weight of the loss on the reversed pair, target `class1 <= class0` (0 = off).
    pub asymmetry: f32,
    pub compare: Compare,
    pub digit: Stack,
    pub head: Stack,
    pub joint: Stack,
}

/// The resolved training section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Train {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: Optimizer,
    pub normalize: Normalize,
    /// Rounds to run (not part of the spec's hash: more rounds do not change a round).
    #[serde(skip)]
    pub repeats: usize,
    /// Base seed of the rounds' seeds (not part of the hash: seeds are recorded per round).
    #[serde(skip)]
    pub seed: u64,
}

/// A complete variant, ready to compile.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The file stem.
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    /// Where the variant stands in reports (lower first); `None` after every ordered one.
    pub order: Option<i64>,
    pub model: Model,
    pub train: Train,
}

impl Spec {
    /// A short hash of everything that determines a round's result, given its seeds.
    pub fn hash(&self) -> String {
        #[derive(Serialize)]
        struct Hashed<'a> {
            model: &'a Model,
            train: &'a Train,
        }
        let text = toml::to_string(&Hashed {
            model: &self.model,
            train: &self.train,
        })
        .expect("a resolved spec always serializes");
        Sha256::digest(text.as_bytes())
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Loads one variant file, following `extends`. `Ok(None)` for an `abstract` file.
pub fn load(path: &Path) -> Result<Option<Spec>> {
    let mut chain: Vec<(PathBuf, SpecFile)> = Vec::new();
    let mut next = Some(path.to_path_buf());
    while let Some(p) = next {
        let canon = p.canonicalize().map_err(|e| Error::io(&p, e))?;
        if chain.iter().any(|(q, _)| q == &canon) {
            let names: Vec<String> = chain.iter().map(|(q, _)| q.display().to_string()).collect();
            return Err(Error::spec(
                path,
                "extends",
                format!(
                    "cycle in extends: {} -> {}",
                    names.join(" -> "),
                    canon.display()
                ),
            ));
        }
        let parsed = SpecFile::parse(&p)?;
        next = parsed.extends.as_ref().map(|e| match p.parent() {
            Some(dir) => dir.join(e),
            None => PathBuf::from(e),
        });
        if let Some(parent) = &next
            && !parent.is_file()
        {
            return Err(Error::spec(
                &p,
                parsed.extends_place.clone(),
                format!("extends {}: no such file", parent.display()),
            ));
        }
        chain.push((canon, parsed));
    }
    // Merge from the root ancestor down, so each child overrides its parent.
    let mut merged = SpecFile::default();
    for (_, file) in chain.into_iter().rev() {
        merged = merged.overridden_by(file);
    }
    if merged.is_abstract {
        return Ok(None);
    }
    resolve(path, merged).map(Some)
}

/// Fills defaults and checks what no single key can check alone.
fn resolve(path: &Path, f: SpecFile) -> Result<Spec> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let m = f.model.unwrap_or_default();
    let t = f.train.unwrap_or_default();
    let err = |place: &str, msg: String| Err(Error::spec(path, place, msg));
    let stack = |s: Option<Stack>| {
        s.unwrap_or_else(|| Stack {
            file: path.to_path_buf(),
            layers: Vec::new(),
        })
    };
    let ModelFile {
        topology,
        weight_sharing,
        aux_loss,
        asymmetry,
        compare,
        digit,
        head,
        joint,
    } = m;
    // Keys a topology would ignore are refused, so that a spec never says more than it does.
    let topo = topology.unwrap_or(Topology::Digits);
    let ignored: &[(&str, bool)] = match topo {
        Topology::Joint => &[
            ("model.compare", compare.is_some()),
            ("model.digit", digit.is_some()),
            ("model.head", head.is_some()),
        ],
        Topology::Digits => &[("model.joint", joint.is_some())],
    };
    if let Some((key, _)) = ignored.iter().find(|(_, set)| *set) {
        let name = match topo {
            Topology::Joint => "joint",
            Topology::Digits => "digits",
        };
        return err(
            key,
            format!("{key} has no effect with topology = \"{name}\"; remove it"),
        );
    }
    let model = Model {
        topology: topology.unwrap_or(Topology::Digits),
        weight_sharing: weight_sharing.unwrap_or(false),
        aux_loss: aux_loss.unwrap_or(0.0),
        asymmetry: asymmetry.unwrap_or(0.0),
        compare: compare.unwrap_or(Compare::Learned),
        digit: stack(digit),
        head: stack(head),
        joint: stack(joint),
    };
    let TrainFile {
        epochs,
        batch_size,
        optimizer,
        normalize,
        repeats,
        seed,
    } = t;
    let train = Train {
        epochs: epochs.unwrap_or(25),
        batch_size: batch_size.unwrap_or(100),
        optimizer: optimizer.unwrap_or(Optimizer::Adam {
            lr: file::adam_lr(),
            betas: file::adam_betas(),
            weight_decay: 0.0,
        }),
        normalize: normalize.unwrap_or(Normalize::Standardize),
        repeats: repeats.unwrap_or(10),
        seed: seed.unwrap_or(0),
    };
    for (key, w) in [
        ("model.aux_loss", model.aux_loss),
        ("model.asymmetry", model.asymmetry),
    ] {
        if !(w >= 0.0 && w.is_finite()) {
            return err(key, format!("must be a finite weight >= 0, got {w}"));
        }
    }
    for (key, v) in [
        ("train.epochs", train.epochs),
        ("train.batch_size", train.batch_size),
        ("train.repeats", train.repeats),
    ] {
        if v == 0 {
            return err(key, "must be at least 1".into());
        }
    }
    let (lr, weight_decay) = match train.optimizer {
        Optimizer::Adam {
            lr, weight_decay, ..
        }
        | Optimizer::Sgd {
            lr, weight_decay, ..
        } => (lr, weight_decay),
    };
    if !(lr > 0.0 && lr.is_finite()) {
        return err("train.optimizer.lr", format!("must be > 0, got {lr}"));
    }
    if !(weight_decay >= 0.0 && weight_decay.is_finite()) {
        return err(
            "train.optimizer.weight_decay",
            format!("must be >= 0, got {weight_decay}"),
        );
    }
    match train.optimizer {
        // PyTorch refuses the same values.
        Optimizer::Adam { betas, .. } if !betas.iter().all(|b| (0.0..1.0).contains(b)) => {
            return err(
                "train.optimizer.betas",
                format!("each must be in [0, 1), got {betas:?}"),
            );
        }
        Optimizer::Sgd { momentum, .. } if !(momentum >= 0.0 && momentum.is_finite()) => {
            return err(
                "train.optimizer.momentum",
                format!("must be >= 0, got {momentum}"),
            );
        }
        _ => {}
    }
    match model.topology {
        Topology::Joint => {
            if model.joint.layers.is_empty() {
                return err(
                    "model.joint",
                    "the joint topology needs a joint stack".into(),
                );
            }
            if model.aux_loss > 0.0 {
                return err(
                    "model.aux_loss",
                    "the joint topology has no digit outputs, so no auxiliary loss; set \
                     aux_loss = 0 or use topology = \"digits\""
                        .into(),
                );
            }
            if model.weight_sharing {
                return err(
                    "model.weight_sharing",
                    "the joint topology has no digit network to share".into(),
                );
            }
        }
        Topology::Digits => {
            if model.digit.layers.is_empty() {
                return err(
                    "model.digit",
                    "the digits topology needs a digit stack".into(),
                );
            }
            match model.compare {
                Compare::Learned if model.head.layers.is_empty() => {
                    return err(
                        "model.head",
                        "compare = \"learned\" needs a head stack".into(),
                    );
                }
                Compare::Argmax if !model.head.layers.is_empty() => {
                    return err(
                        "model.head",
                        "compare = \"argmax\" uses no head; remove the head stack".into(),
                    );
                }
                Compare::Argmax if model.aux_loss == 0.0 => {
                    return err(
                        "model.aux_loss",
                        "compare = \"argmax\" learns only from the auxiliary loss; set \
                         aux_loss > 0"
                            .into(),
                    );
                }
                Compare::Argmax if model.asymmetry > 0.0 => {
                    return err(
                        "model.asymmetry",
                        "compare = \"argmax\" has no learned head for the reversed-pair loss"
                            .into(),
                    );
                }
                _ => {}
            }
        }
    }
    Ok(Spec {
        name,
        path: path.to_path_buf(),
        description: f.description.unwrap_or_default(),
        order: f.order,
        model,
        train,
    })
}

/// Compares file names naturally: case-insensitive, runs of digits by value (`v2` < `v10`).
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for ch in s.chars() {
            let digit = ch.is_ascii_digit();
            match out.last_mut() {
                Some((d, run)) if *d == digit => run.push(ch),
                _ => out.push((digit, ch.to_string())),
            }
        }
        out
    }
    let key = |s: &str| -> Vec<(bool, String)> {
        chunks(s)
            .into_iter()
            .map(|(digit, run)| {
                if digit {
                    // Equal values compare equal whatever their leading zeros.
                    let t = run.trim_start_matches('0');
                    (true, format!("{:0>40}", t))
                } else {
                    (false, run.to_lowercase())
                }
            })
            .collect()
    };
    key(a).cmp(&key(b)).then_with(|| a.cmp(b))
}

/// The spec files named by `paths`, in the order named: each directory gives its `*.toml`
/// files in natural order, each file itself. A file named twice (also through a directory) is
/// taken once. A directory without specs, or a missing path, is an error.
pub fn spec_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io(p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "toml"))
                .collect();
            if found.is_empty() {
                return Err(Error::spec(
                    p,
                    "",
                    "no spec files (*.toml) in this directory",
                ));
            }
            found.sort_by(|a, b| {
                let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
                natural_cmp(&name(a).unwrap_or_default(), &name(b).unwrap_or_default())
            });
            files.extend(found);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            return Err(Error::spec(p, "", "no such file or directory"));
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.canonicalize().unwrap_or_else(|_| f.clone())));
    Ok(files)
}
