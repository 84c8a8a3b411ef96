//! One spec file as written: every key optional, so a child can override its parent's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{
    Augment, Compare, EarlyStopping, LayerSpec, Normalize, Optimizer, PlacedLayer, Schedule, Stack,
    Topology, Tta,
};
use crate::error::{Error, Result};

pub(super) fn adam_lr() -> f32 {
    1e-3
}
pub(super) fn adam_betas() -> [f32; 2] {
    [0.9, 0.999]
}
pub(super) fn adamw_weight_decay() -> f32 {
    0.01
}
pub(super) fn step_gamma() -> f32 {
    0.1
}
pub(super) fn one_cycle_pct() -> f32 {
    0.3
}
pub(super) fn tta_shift() -> f32 {
    1.0
}
/// Half the 4 pixels Simard et al. (2003) smoothed 28 x 28 digits with: the digits here are
/// 14 x 14.
pub(super) const fn elastic_sigma() -> f32 {
    2.0
}
pub(super) fn is_elastic_sigma(v: &f32) -> bool {
    *v == elastic_sigma()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    description: Option<String>,
    order: Option<i64>,
    #[serde(default, deserialize_with = "super::layer::real_opt")]
    reference: Option<f32>,
    baseline: Option<String>,
    grid: Option<BTreeMap<String, Spanned<Vec<toml::Value>>>>,
    extends: Option<Spanned<String>>,
    #[serde(rename = "abstract")]
    is_abstract: Option<bool>,
    model: Option<RawModel>,
    train: Option<TrainFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    topology: Option<Topology>,
    weight_sharing: Option<bool>,
    #[serde(default, deserialize_with = "super::layer::real_opt")]
    aux_loss: Option<f32>,
    #[serde(default, deserialize_with = "super::layer::real_opt")]
    asymmetry: Option<f32>,
    compare: Option<Compare>,
    digit: Option<Vec<Spanned<LayerSpec>>>,
    head: Option<Vec<Spanned<LayerSpec>>>,
    joint: Option<Vec<Spanned<LayerSpec>>>,
}

/// The model section of one file, stacks placed.
#[derive(Debug, Clone, Default)]
pub(super) struct ModelFile {
    pub topology: Option<Topology>,
    pub weight_sharing: Option<bool>,
    pub aux_loss: Option<f32>,
    pub asymmetry: Option<f32>,
    pub compare: Option<Compare>,
    pub digit: Option<Stack>,
    pub head: Option<Stack>,
    pub joint: Option<Stack>,
}

/// The train section of one file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TrainFile {
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub optimizer: Option<Optimizer>,
    pub schedule: Option<Schedule>,
    #[serde(default, deserialize_with = "super::layer::real_opt")]
    pub label_smoothing: Option<f32>,
    #[serde(default, deserialize_with = "super::layer::real_opt")]
    pub validation: Option<f32>,
    pub early_stopping: Option<EarlyStopping>,
    pub augment: Option<Augment>,
    pub repair: Option<bool>,
    pub ensemble: Option<usize>,
    pub tta: Option<Tta>,
    pub curve_every: Option<usize>,
    pub normalize: Option<Normalize>,
    pub repeats: Option<usize>,
    pub seed: Option<u64>,
}

/// A `[grid]` table: each key path with the values it takes, in key order.
#[derive(Debug, Clone, Default)]
pub(super) struct GridFile {
    pub file: PathBuf,
    pub axes: Vec<AxisFile>,
}

/// One axis of a grid.
#[derive(Debug, Clone)]
pub(super) struct AxisFile {
    /// A key path, e.g. `train.optimizer.lr` or `model.digit[0].out`.
    pub key: String,
    pub values: Vec<toml::Value>,
    /// `line:col` of the values.
    pub place: String,
}

/// One parsed file.
#[derive(Debug, Clone, Default)]
pub(super) struct SpecFile {
    pub description: Option<String>,
    pub order: Option<i64>,
    pub reference: Option<f32>,
    pub baseline: Option<String>,
    pub grid: Option<GridFile>,
    pub extends: Option<String>,
    /// `line:col` of the `extends` value.
    pub extends_place: String,
    pub is_abstract: bool,
    pub model: Option<ModelFile>,
    pub train: Option<TrainFile>,
}

/// `line:col` (1-based) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> String {
    Lines::new(text).line_col(offset)
}

/// The line starts of a text, so that many places are found in `O(log n)` each (a spec with
/// many layers would otherwise rescan the text for each).
struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { text, starts }
    }

    fn line_col(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        let col = self
            .text
            .get(start..offset)
            .map_or(0, |l| l.chars().count())
            + 1;
        format!("{line}:{col}")
    }
}

impl SpecFile {
    /// Parses `path`; unknown keys and wrong types are errors with line and column.
    pub fn parse(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let raw: RawFile = toml::from_str(&text).map_err(|e| {
            let place = e
                .span()
                .map_or_else(String::new, |s| line_col(&text, s.start));
            // toml's message spans several lines (it quotes the source); keep the first.
            let msg = e
                .message()
                .lines()
                .next()
                .unwrap_or("invalid TOML")
                .to_string();
            Error::spec(path, place, msg)
        })?;
        let lines = Lines::new(&text);
        let stack = |layers: Option<Vec<Spanned<LayerSpec>>>| {
            layers.map(|ls| Stack {
                file: path.to_path_buf(),
                layers: ls
                    .into_iter()
                    .map(|l| PlacedLayer {
                        place: lines.line_col(l.span().start),
                        spec: l.into_inner(),
                    })
                    .collect(),
            })
        };
        let model = raw.model.map(|m| ModelFile {
            topology: m.topology,
            weight_sharing: m.weight_sharing,
            aux_loss: m.aux_loss,
            asymmetry: m.asymmetry,
            compare: m.compare,
            digit: stack(m.digit),
            head: stack(m.head),
            joint: stack(m.joint),
        });
        let extends_place = raw
            .extends
            .as_ref()
            .map_or_else(String::new, |e| line_col(&text, e.span().start));
        let grid = match raw.grid {
            None => None,
            Some(table) => {
                let mut axes = Vec::new();
                for (key, values) in table {
                    let place = lines.line_col(values.span().start);
                    let values = values.into_inner();
                    if values.is_empty() {
                        return Err(Error::spec(
                            path,
                            place,
                            format!("grid axis \"{key}\" has no values"),
                        ));
                    }
                    axes.push(AxisFile { key, values, place });
                }
                Some(GridFile {
                    file: path.to_path_buf(),
                    axes,
                })
            }
        };
        if let Some(r) = raw.reference.filter(|r| !(0.0..=1.0).contains(r)) {
            return Err(Error::spec(
                path,
                "reference",
                format!("a published test error, a fraction in [0, 1], got {r}"),
            ));
        }
        Ok(SpecFile {
            description: raw.description,
            order: raw.order,
            reference: raw.reference,
            baseline: raw.baseline,
            grid,
            extends: raw.extends.map(Spanned::into_inner),
            extends_place,
            is_abstract: raw.is_abstract.unwrap_or(false),
            model,
            train: raw.train,
        })
    }

    /// `self` with every key `child` sets replaced by the child's value. `abstract` is not
    /// inherited: a file is abstract only if it says so.
    pub fn overridden_by(self, child: SpecFile) -> SpecFile {
        let model = match (self.model, child.model) {
            (Some(p), Some(c)) => Some(ModelFile {
                topology: c.topology.or(p.topology),
                weight_sharing: c.weight_sharing.or(p.weight_sharing),
                aux_loss: c.aux_loss.or(p.aux_loss),
                asymmetry: c.asymmetry.or(p.asymmetry),
                compare: c.compare.or(p.compare),
                digit: c.digit.or(p.digit),
                head: c.head.or(p.head),
                joint: c.joint.or(p.joint),
            }),
            (p, c) => c.or(p),
        };
        let train = match (self.train, child.train) {
            (Some(p), Some(c)) => Some(TrainFile {
                epochs: c.epochs.or(p.epochs),
                batch_size: c.batch_size.or(p.batch_size),
                optimizer: c.optimizer.or(p.optimizer),
                schedule: c.schedule.or(p.schedule),
                label_smoothing: c.label_smoothing.or(p.label_smoothing),
                validation: c.validation.or(p.validation),
                early_stopping: c.early_stopping.or(p.early_stopping),
                augment: c.augment.or(p.augment),
                repair: c.repair.or(p.repair),
                ensemble: c.ensemble.or(p.ensemble),
                curve_every: c.curve_every.or(p.curve_every),
                tta: c.tta.or(p.tta),
                normalize: c.normalize.or(p.normalize),
                repeats: c.repeats.or(p.repeats),
                seed: c.seed.or(p.seed),
            }),
            (p, c) => c.or(p),
        };
        SpecFile {
            description: child.description.or(self.description),
            order: child.order.or(self.order),
            reference: child.reference.or(self.reference),
            baseline: child.baseline.or(self.baseline),
            // A grid is replaced whole, like a stack.
            grid: child.grid.or(self.grid),
            extends: child.extends,
            extends_place: child.extends_place,
            is_abstract: child.is_abstract,
            model,
            train,
        }
    }
}
