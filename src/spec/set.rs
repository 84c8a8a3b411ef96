//! Setting one key of a merged spec by its path, as a grid axis or `--set` does:
//! `train.optimizer.lr`, `model.aux_loss`, `model.digit` (a whole stack), `model.digit[0]` (a
//! whole layer) or `model.digit[0].out` (a layer's key). The value is checked exactly as the
//! same key written in a file would be, so an override can never build what a file could not.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::file::{ModelFile, SpecFile, TrainFile};
use super::{LayerSpec, Optimizer, PlacedLayer, Stack};

/// `value` as a `T`, or why not (in the words a file's error would use).
fn de<T: DeserializeOwned>(value: &toml::Value) -> Result<T, String> {
    T::deserialize(value.clone()).map_err(|e| e.message().lines().next().unwrap_or("").into())
}

/// `item` with `key` set to `value` (through its TOML table, so every rule of `T` applies).
fn with_key<T: Serialize + DeserializeOwned>(
    item: &T,
    key: &str,
    value: &toml::Value,
) -> Result<T, String> {
    let toml::Value::Table(mut table) = toml::Value::try_from(item).map_err(|e| e.to_string())?
    else {
        return Err("not a table".into());
    };
    table.insert(key.to_string(), value.clone());
    T::deserialize(toml::Value::Table(table))
        .map_err(|e| e.message().lines().next().unwrap_or("").into())
}

/// `name[i]` as `(name, Some(i))`, `name` as `(name, None)`.
fn indexed(segment: &str) -> Result<(&str, Option<usize>), String> {
    match segment.split_once('[') {
        None => Ok((segment, None)),
        Some((name, rest)) => {
            let index = rest
                .strip_suffix(']')
                .and_then(|i| i.parse().ok())
                .ok_or_else(|| format!("`{segment}` is not `name[index]`"))?;
            Ok((name, Some(index)))
        }
    }
}

/// Sets `key` of `f` to `value`; `place` is where the value came from (a layer set here is
/// placed there in later errors).
pub(super) fn set(
    f: &mut SpecFile,
    key: &str,
    value: &toml::Value,
    place: &str,
) -> Result<(), String> {
    let (section, rest) = key.split_once('.').unwrap_or((key, ""));
    match (section, rest) {
        ("description", "") => f.description = Some(de(value)?),
        ("model", rest) if !rest.is_empty() => set_model(
            f.model.get_or_insert_with(ModelFile::default),
            rest,
            value,
            place,
        )?,
        ("train", rest) if !rest.is_empty() => {
            set_train(f.train.get_or_insert_with(TrainFile::default), rest, value)?
        }
        _ => return Err(unknown(key)),
    }
    Ok(())
}

fn unknown(key: &str) -> String {
    format!(
        "`{key}` is not a key a grid or --set can change (description, model.KEY, \
         model.STACK[i].KEY, train.KEY, train.TABLE.KEY)"
    )
}

fn set_model(m: &mut ModelFile, key: &str, value: &toml::Value, place: &str) -> Result<(), String> {
    let (first, rest) = key.split_once('.').unwrap_or((key, ""));
    let (name, index) = indexed(first)?;
    match (name, index, rest) {
        ("topology", None, "") => m.topology = Some(de(value)?),
        ("weight_sharing", None, "") => m.weight_sharing = Some(de(value)?),
        ("aux_loss", None, "") => m.aux_loss = Some(de::<Real>(value)?.0),
        ("asymmetry", None, "") => m.asymmetry = Some(de::<Real>(value)?.0),
        ("compare", None, "") => m.compare = Some(de(value)?),
        ("digit" | "head" | "joint", index, rest) => {
            let stack = match name {
                "digit" => &mut m.digit,
                "head" => &mut m.head,
                _ => &mut m.joint,
            };
            set_stack(stack, name, index, rest, value, place)?
        }
        _ => return Err(unknown(&format!("model.{key}"))),
    }
    Ok(())
}

/// A real number checked as a spec's are (`layer::real`).
#[derive(Deserialize)]
struct Real(#[serde(deserialize_with = "super::layer::real")] f32);

fn set_stack(
    stack: &mut Option<Stack>,
    name: &str,
    index: Option<usize>,
    key: &str,
    value: &toml::Value,
    place: &str,
) -> Result<(), String> {
    let placed = |spec| PlacedLayer {
        spec,
        place: place.to_string(),
    };
    let Some(i) = index else {
        if !key.is_empty() {
            return Err(unknown(&format!("model.{name}.{key}")));
        }
        let layers: Vec<LayerSpec> = de(value)?;
        let file = stack.as_ref().map(|s| s.file.clone()).unwrap_or_default();
        *stack = Some(Stack {
            file,
            layers: layers.into_iter().map(placed).collect(),
        });
        return Ok(());
    };
    let len = stack.as_ref().map_or(0, |s| s.layers.len());
    let layer = stack
        .as_mut()
        .and_then(|s| s.layers.get_mut(i))
        .ok_or_else(|| format!("model.{name} has {len} layers, so no model.{name}[{i}]"))?;
    let spec = if key.is_empty() {
        de(value)?
    } else {
        with_key(&layer.spec, key, value)?
    };
    *layer = placed(spec);
    Ok(())
}

fn set_train(t: &mut TrainFile, key: &str, value: &toml::Value) -> Result<(), String> {
    let (first, rest) = key.split_once('.').unwrap_or((key, ""));
    match (first, rest) {
        ("epochs", "") => t.epochs = Some(de(value)?),
        ("batch_size", "") => t.batch_size = Some(de(value)?),
        ("normalize", "") => t.normalize = Some(de(value)?),
        ("repeats", "") => t.repeats = Some(de(value)?),
        ("seed", "") => t.seed = Some(de(value)?),
        ("optimizer", "") => t.optimizer = Some(de(value)?),
        ("schedule", "") => t.schedule = Some(de(value)?),
        ("label_smoothing", "") => t.label_smoothing = Some(de::<Real>(value)?.0),
        ("validation", "") => t.validation = Some(de::<Real>(value)?.0),
        ("early_stopping", "") => t.early_stopping = Some(de(value)?),
        ("augment", "") => t.augment = Some(de(value)?),
        ("repair", "") => t.repair = Some(de(value)?),
        ("ensemble", "") => t.ensemble = Some(de(value)?),
        ("tta", "") => t.tta = Some(de(value)?),
        ("curve_every", "") => t.curve_every = Some(de(value)?),
        ("augment", key) => {
            let current = t.augment.unwrap_or(super::Augment::NONE);
            t.augment = Some(with_key(&current, key, value)?);
        }
        ("early_stopping", key) => {
            let current = t
                .early_stopping
                .unwrap_or(super::EarlyStopping { patience: 5 });
            t.early_stopping = Some(with_key(&current, key, value)?);
        }
        ("schedule", key) => {
            let current = t
                .schedule
                .clone()
                .unwrap_or(super::Schedule::Constant { warmup: 0 });
            t.schedule = Some(with_key(&current, key, value)?);
        }
        ("tta", key) => {
            let current = t.tta.unwrap_or(super::Tta {
                shift: super::file::tta_shift(),
            });
            t.tta = Some(with_key(&current, key, value)?);
        }
        ("optimizer", key) => {
            let current = t.optimizer.clone().unwrap_or(Optimizer::Adam {
                lr: super::file::adam_lr(),
                betas: super::file::adam_betas(),
                weight_decay: 0.0,
            });
            t.optimizer = Some(with_key(&current, key, value)?);
        }
        _ => return Err(unknown(&format!("train.{key}"))),
    }
    Ok(())
}
