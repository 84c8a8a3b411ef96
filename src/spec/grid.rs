//! Grids and overrides: a spec's `[grid]` expands into one variant per point of the Cartesian
//! product of its axes, and `--set KEY=VALUE` changes a key of every selected spec. Both go
//! through [`super::set`], so a point or an override is checked like a file.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::tree::{Origin, Tree, at};
use crate::error::{Error, Result};

/// Default of `--max-grid`: the most points one spec's grid may expand into.
pub const DEFAULT_MAX_POINTS: usize = 256;

/// The most `--max-grid` may allow: every point is a variant held in memory and planned.
pub const MAX_POINTS_LIMIT: usize = 100_000;

/// A key set from the command line for one run: `--set KEY=VALUE`, or `--epochs N` and
/// `--repeats N`, which set `train.epochs` and `train.repeats`.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub key: String,
    pub value: toml::Value,
    /// `KEY=VALUE` with the value in TOML's form (strings quoted), for the reports and the
    /// spec's hash.
    pub text: String,
    /// The flag as given, for messages: `--set KEY=VALUE`, `--epochs 4`.
    pub flag: String,
    /// Listed in the reports and part of the hash (`--set`); `--epochs` is in the hash
    /// through the epochs themselves, and `--repeats` changes no round.
    pub recorded: bool,
}

impl Override {
    /// Parses `KEY=VALUE`; VALUE is a TOML value (`0.5`, `true`, `[1, 2]`,
    /// `{ kind = "sgd", lr = 0.1 }`), or else taken as a string (`scale`).
    pub fn parse(text: &str) -> Result<Override, String> {
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| format!("--set {text}: expected KEY=VALUE"))?;
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || value.is_empty() {
            return Err(format!("--set {text}: expected KEY=VALUE"));
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        let text = format!("{key}={value}");
        Ok(Override {
            flag: format!("--set {text}"),
            text,
            key: key.to_string(),
            value,
            recorded: true,
        })
    }

    /// `--data DIR`: every spec's `data.dir`, relative to the working directory.
    pub fn data_dir(dir: &Path) -> Override {
        let value = toml::Value::String(dir.display().to_string());
        Override {
            key: "data.dir".into(),
            text: format!("data.dir={value}"),
            flag: format!("--data {}", dir.display()),
            value,
            recorded: false,
        }
    }

    /// A switch that turns `key` on: `--keep-weights` sets `train.keep_weights`.
    pub fn switch(option: &str, key: &str) -> Override {
        let value = toml::Value::Boolean(true);
        Override {
            key: key.to_string(),
            text: format!("{key}={value}"),
            flag: option.to_string(),
            value,
            recorded: false,
        }
    }

    /// A count option that sets `key`: `--epochs 4` sets `train.epochs`.
    pub fn count(option: &str, key: &str, n: usize) -> Override {
        let value = toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
        Override {
            key: key.to_string(),
            text: format!("{key}={value}"),
            flag: format!("{option} {n}"),
            value,
            recorded: false,
        }
    }
}

/// A spec's `[grid]` table: each key path with the values it takes, in key order.
#[derive(Debug, Clone)]
pub(super) struct Grid {
    file: PathBuf,
    axes: Vec<Axis>,
}

/// One axis of a grid.
#[derive(Debug, Clone)]
struct Axis {
    /// A key path, e.g. `train.optimizer.lr` or `model.digit[0].out`.
    key: String,
    values: Vec<toml::Value>,
    origin: Option<Origin>,
}

impl Grid {
    /// Takes the `grid` table out of `tree` (a grid is not a key of the variants it makes).
    pub fn take(tree: &mut Tree, path: &Path) -> Result<Option<Grid>> {
        let origins: Vec<(String, Option<Origin>)> = match tree.root.get("grid") {
            Some(toml::Value::Table(t)) => t
                .keys()
                .map(|k| (k.clone(), tree.origin(&format!("grid.{k}")).cloned()))
                .collect(),
            _ => Vec::new(),
        };
        let Some((value, origin)) = tree.take("grid") else {
            return Ok(None);
        };
        let file = match &origin {
            Some(Origin::File { path, .. }) => path.clone(),
            _ => path.to_path_buf(),
        };
        let toml::Value::Table(mut table) = value else {
            return Err(at(path, origin, "grid: must be a table of key = [values]"));
        };
        let mut axes = Vec::new();
        for (key, origin) in origins {
            let values = match table.remove(&key) {
                Some(toml::Value::Array(v)) if !v.is_empty() => v,
                Some(toml::Value::Array(_)) => {
                    return Err(at(
                        &file,
                        origin,
                        format!("grid axis \"{key}\" has no values"),
                    ));
                }
                _ => {
                    let why = format!("grid axis \"{key}\" must be a list of values");
                    return Err(at(&file, origin, why));
                }
            };
            axes.push(Axis {
                key,
                values,
                origin,
            });
        }
        Ok(Some(Grid { file, axes }))
    }

    /// How many points the grid has (saturating).
    fn count(&self) -> usize {
        self.axes
            .iter()
            .fold(1usize, |n, a| n.saturating_mul(a.values.len()))
    }

    /// Refuses a grid above `max_points`, and an override of a key an axis varies (it would
    /// make every point the same variant under different names).
    pub fn check(&self, overrides: &[Override], max_points: usize) -> Result<()> {
        let first = self.axes.first().and_then(|a| a.origin.clone());
        let total = self.count();
        if total > max_points {
            let shown = if total == usize::MAX {
                "too many".to_string()
            } else {
                total.to_string()
            };
            let why = format!(
                "the grid has {shown} points, above the limit of {max_points}; pass \
                 --max-grid {total} to allow it"
            );
            return Err(at(&self.file, first, why));
        }
        for o in overrides {
            let covered = |axis: &str| {
                axis == o.key
                    || [".", "["].iter().any(|sep| {
                        axis.starts_with(&format!("{}{sep}", o.key))
                            || o.key.starts_with(&format!("{axis}{sep}"))
                    })
            };
            if let Some(axis) = self.axes.iter().find(|a| covered(&a.key)) {
                return Err(Error::Usage(format!(
                    "{}: {} is an axis of the grid in {}; change the grid instead",
                    o.flag,
                    axis.key,
                    self.file.display()
                )));
            }
        }
        Ok(())
    }

    /// Every point, in order (the last axis changing fastest): for each, the value index of
    /// every axis.
    pub fn points(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new()];
        for axis in &self.axes {
            out = out
                .into_iter()
                .flat_map(|p| {
                    (0..axis.values.len()).map(move |i| {
                        let mut q = p.clone();
                        q.push(i);
                        q
                    })
                })
                .collect();
        }
        out
    }

    /// Sets every axis of `tree` to its value at `indices`, for the point `name`.
    pub fn apply(&self, tree: &mut Tree, indices: &[usize], name: &str) -> Result<()> {
        for (axis, &i) in self.axes.iter().zip(indices) {
            let origin = axis
                .origin
                .clone()
                .unwrap_or_else(|| Origin::Flag(String::new()));
            tree.set(&axis.key, axis.values[i].clone(), origin)
                .map_err(|why| {
                    let msg = format!("grid point {name}: {}: {why}", axis.key);
                    at(&self.file, axis.origin.clone(), msg)
                })?;
        }
        Ok(())
    }

    /// The point at `indices`, named after `stem`: `stem[lr=0.003,aux_loss=0.3]`.
    pub fn point(&self, stem: &str, indices: &[usize]) -> (String, GridPoint) {
        let keys: Vec<&str> = self.axes.iter().map(|a| a.key.as_str()).collect();
        let axes: Vec<(String, String, String)> = short_names(&keys)
            .into_iter()
            .zip(&self.axes)
            .zip(indices)
            .map(|((short, a), &i)| (short, a.key.clone(), show(&a.values, i)))
            .collect();
        let inside: Vec<String> = axes.iter().map(|(s, _, v)| format!("{s}={v}")).collect();
        let name = format!("{stem}[{}]", inside.join(","));
        let point = GridPoint {
            stem: stem.to_string(),
            axes,
        };
        (name, point)
    }
}

/// One point of a grid, as the reports show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GridPoint {
    /// The spec file's stem.
    pub stem: String,
    /// `(short name, key path, value)` per axis, in key order.
    pub axes: Vec<(String, String, String)>,
}

/// Value `i` of an axis as a point's name shows it: a string without quotes, a number as
/// written; a table (a layer, a schedule) by its `layer` or `kind` when no other value of
/// the axis shares it, else by its position (`#2`).
pub(super) fn show(values: &[toml::Value], i: usize) -> String {
    let kind = |v: &toml::Value| {
        let t = v.as_table()?;
        t.get("layer")
            .or_else(|| t.get("kind"))?
            .as_str()
            .map(str::to_string)
    };
    match &values[i] {
        toml::Value::String(s) => s.clone(),
        v @ (toml::Value::Table(_) | toml::Value::Array(_)) => match kind(v) {
            Some(k)
                if values
                    .iter()
                    .filter(|w| kind(w).as_ref() == Some(&k))
                    .count()
                    == 1 =>
            {
                k
            }
            _ => format!("#{i}"),
        },
        other => other.to_string(),
    }
}

/// The shortest trailing part of each key (by `.`) that no other axis shares: `lr` for
/// `train.optimizer.lr`, `digit[0].out` when `head[0].out` is an axis too.
pub(super) fn short_names(keys: &[&str]) -> Vec<String> {
    let parts: Vec<Vec<&str>> = keys.iter().map(|k| k.split('.').collect()).collect();
    let suffix = |p: &[&str], n: usize| p[p.len() - n.min(p.len())..].join(".");
    parts
        .iter()
        .map(|p| {
            (1..=p.len())
                .map(|n| suffix(p, n))
                .find(|s| {
                    parts
                        .iter()
                        .filter(|q| suffix(q, s.split('.').count()) == *s)
                        .count()
                        == 1
                })
                .unwrap_or_else(|| p.join("."))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_unique_suffixes() {
        let keys = [
            "train.optimizer.lr",
            "model.digit[0].out",
            "model.head[0].out",
        ];
        assert_eq!(short_names(&keys), ["lr", "digit[0].out", "head[0].out"]);
    }

    #[test]
    fn overrides_parse_toml_values_or_strings() {
        let o = Override::parse("train.epochs=40").unwrap();
        assert_eq!(
            (o.key.as_str(), o.value.clone()),
            ("train.epochs", toml::Value::Integer(40))
        );
        let o = Override::parse("train.normalize = scale").unwrap();
        assert_eq!(o.value, toml::Value::String("scale".into()));
        assert_eq!(o.text, "train.normalize=\"scale\"");
        assert!(Override::parse("epochs").is_err());
        assert!(Override::parse("=3").is_err());
    }
}
