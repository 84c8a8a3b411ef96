//! Grids and overrides: a spec's `[grid]` expands into one variant per point of the Cartesian
//! product of its axes, and `--set KEY=VALUE` changes a key of every selected spec. Both go
//! through [`super::set`], so a point or an override is checked like a file.

use serde::Serialize;

use super::file::GridFile;

/// Default of `--max-grid`: the most points one spec's grid may expand into.
pub const DEFAULT_MAX_POINTS: usize = 256;

/// A `--set KEY=VALUE` override.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub key: String,
    pub value: toml::Value,
    /// `KEY=VALUE` with the value in TOML's form (strings quoted), for messages, the
    /// reports and the spec's hash.
    pub text: String,
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
        Ok(Override {
            text: format!("{key}={value}"),
            key: key.to_string(),
            value,
        })
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

/// A value as a point's name shows it: strings without quotes.
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The shortest trailing part of each key (by `.`) that no other axis shares: `lr` for
/// `train.optimizer.lr`, `digit[0].out` when `head[0].out` is an axis too.
fn short_names(keys: &[&str]) -> Vec<String> {
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

/// Every point of `grid`, in order (the last axis changing fastest): for each, the value
/// index of every axis.
pub(super) fn points(grid: &GridFile) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new()];
    for axis in &grid.axes {
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

/// How many points `grid` has (saturating).
pub(super) fn count(grid: &GridFile) -> usize {
    grid.axes
        .iter()
        .fold(1usize, |n, a| n.saturating_mul(a.values.len()))
}

/// The point of `grid` at `indices`, named after `stem`: `stem[lr=0.003,aux_loss=0.3]`.
pub(super) fn point(stem: &str, grid: &GridFile, indices: &[usize]) -> (String, GridPoint) {
    let keys: Vec<&str> = grid.axes.iter().map(|a| a.key.as_str()).collect();
    let axes: Vec<(String, String, String)> = short_names(&keys)
        .into_iter()
        .zip(&grid.axes)
        .zip(indices)
        .map(|((short, a), &i)| (short, a.key.clone(), show(&a.values[i])))
        .collect();
    let inside: Vec<String> = axes.iter().map(|(s, _, v)| format!("{s}={v}")).collect();
    let name = format!("{stem}[{}]", inside.join(","));
    (
        name,
        GridPoint {
            stem: stem.to_string(),
            axes,
        },
    )
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
