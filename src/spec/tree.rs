//! A spec as one TOML tree: every file of its `extends` chain merged onto the defaults, then
//! grid points and overrides set by key path. Beside the values the tree keeps where each
//! key was set (a file's line and column, or a command-line flag), so that any error found
//! later, by deserialization or by a rule, names the place that caused it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use toml::Value;
use toml::de::{DeTable, DeValue};

use crate::error::{Error, Result};

/// The defaults, the root of every chain.
const DEFAULTS: &str = include_str!("defaults.toml");

/// The top-level keys a grid point or an override may change.
const SETTABLE: [&str; 5] = ["description", "data", "task", "model", "train"];

/// Where a key's value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// `line:col` in a spec file.
    File { path: PathBuf, at: String },
    /// A command-line flag: `--set KEY=VALUE`, `--epochs N`.
    Flag(String),
}

/// Values and where they came from.
#[derive(Debug, Clone)]
pub struct Tree {
    pub root: toml::Table,
    /// Key path (`train.optimizer.lr`, `model.digit[0]`) -> origin, for every key set by a
    /// file, a grid point or a flag; the defaults have none.
    origins: BTreeMap<String, Origin>,
}

/// One step of a key path.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `model.digit[0].out` as its steps.
fn steps(key: &str) -> std::result::Result<Vec<Step<'_>>, String> {
    let mut out = Vec::new();
    for segment in key.split('.') {
        let (name, rest) = segment.split_once('[').unwrap_or((segment, ""));
        if name.is_empty() {
            return Err(format!("`{key}` is not a key path"));
        }
        out.push(Step::Key(name));
        if !rest.is_empty() {
            let i = rest
                .strip_suffix(']')
                .and_then(|i| i.parse().ok())
                .ok_or_else(|| format!("`{segment}` is not `name[index]`"))?;
            out.push(Step::Index(i));
        }
    }
    Ok(out)
}

impl Tree {
    /// The defaults.
    pub fn defaults() -> Tree {
        Tree {
            root: toml::from_str(DEFAULTS).expect("the defaults are valid TOML"),
            origins: BTreeMap::new(),
        }
    }

    /// One file, every key placed; a syntax error names its line and column.
    pub fn parse(path: &Path) -> Result<Tree> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let syntax = |e: toml::de::Error| {
            let at = e
                .span()
                .map_or_else(String::new, |s| line_col(&text, s.start));
            // toml's message spans several lines (it quotes the source); keep the first.
            let msg = e.message().lines().next().unwrap_or("invalid TOML");
            Error::spec(path, at, msg)
        };
        let root: toml::Table = toml::from_str(&text).map_err(syntax)?;
        let spans = DeTable::parse(&text).map_err(syntax)?;
        let mut origins = BTreeMap::new();
        let lines = Lines::new(&text);
        let mut place = |key: String, start: usize| {
            let at = lines.line_col(start);
            origins.insert(
                key,
                Origin::File {
                    path: path.to_path_buf(),
                    at,
                },
            );
        };
        walk_table("", spans.get_ref(), &mut place);
        Ok(Tree { root, origins })
    }

    /// Removes a top-level key (one not inherited, like `extends`) and returns it.
    pub fn take(&mut self, key: &str) -> Option<(Value, Option<Origin>)> {
        let value = self.root.remove(key)?;
        let origin = self.origins.get(key).cloned();
        self.forget(key);
        Some((value, origin))
    }

    /// `self` with `child`'s keys winning: a top-level table (`model`, `train`) merges key by
    /// key, anything else (a stack, an optimizer, a grid) is replaced whole.
    pub fn merge(&mut self, child: Tree) {
        for (key, value) in child.root {
            let merges = key != "grid"
                && key != "search"
                && self.root.get(&key).is_some_and(Value::is_table);
            match value {
                Value::Table(theirs) if merges => {
                    for k in theirs.keys() {
                        self.forget(&format!("{key}.{k}"));
                    }
                    if let Some(Value::Table(mine)) = self.root.get_mut(&key) {
                        mine.extend(theirs);
                    }
                }
                value => {
                    self.forget(&key);
                    self.root.insert(key, value);
                }
            }
        }
        self.origins.extend(child.origins);
    }

    /// Sets `key` (a path: `train.optimizer.lr`, `model.digit[0].out`) to `value`, creating
    /// missing tables on the way; a stack's layer must exist.
    pub fn set(
        &mut self,
        key: &str,
        value: Value,
        origin: Origin,
    ) -> std::result::Result<(), String> {
        let steps = steps(key)?;
        if !matches!(steps.first(), Some(Step::Key(k)) if SETTABLE.contains(k)) {
            return Err(format!(
                "`{key}` is not a key a grid or --set can change (description, data.KEY, \
                 task.KEY, model.KEY, model.STACK[i].KEY, train.KEY, train.TABLE.KEY)"
            ));
        }
        // Walk from the root table itself, wrapped so that every step sees a `Value`.
        let mut root = Value::Table(std::mem::take(&mut self.root));
        let result = set_in(&mut root, key, &steps, value);
        if let Value::Table(table) = root {
            self.root = table;
        }
        result?;
        self.forget(key);
        self.origins.insert(key.to_string(), origin);
        Ok(())
    }

    /// Where `key`'s value came from: its own origin, or else the nearest enclosing key's
    /// (a layer set inside a stack a file wrote). `None` for a default.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        let mut k = key;
        loop {
            if let Some(o) = self.origins.get(k) {
                return Some(o);
            }
            k = &k[..k.rfind(['.', '['])?];
        }
    }

    /// Whether a file, grid point or flag set `key` itself.
    pub fn is_set(&self, key: &str) -> bool {
        self.origins.contains_key(key)
    }

    /// Drops the origins of `key` and everything under it: it is about to be replaced.
    fn forget(&mut self, key: &str) {
        let under = |k: &str| {
            k == key
                || k.strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        };
        self.origins.retain(|k, _| !under(k));
    }
}

/// Sets the value at `steps` under `node`.
fn set_in(
    node: &mut Value,
    key: &str,
    steps: &[Step],
    value: Value,
) -> std::result::Result<(), String> {
    let mut node = node;
    let mut walked = String::new();
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        node = match step {
            Step::Key(k) => {
                let Value::Table(t) = node else {
                    return Err(format!(
                        "`{walked}` is not a table, so `{key}` cannot be set"
                    ));
                };
                if last {
                    t.insert((*k).to_string(), value);
                    return Ok(());
                }
                if !walked.is_empty() {
                    walked.push('.');
                }
                walked.push_str(k);
                t.entry(*k)
                    .or_insert_with(|| Value::Table(toml::Table::new()))
            }
            Step::Index(n) => {
                let Value::Array(a) = node else {
                    return Err(format!("`{walked}` is not a stack, so no `{walked}[{n}]`"));
                };
                let len = a.len();
                let slot = a
                    .get_mut(*n)
                    .ok_or_else(|| format!("{walked} has {len} layers, so no {walked}[{n}]"))?;
                if last {
                    *slot = value;
                    return Ok(());
                }
                walked.push_str(&format!("[{n}]"));
                slot
            }
        };
    }
    Ok(())
}

/// Records where every key under `table` is written (a stack's layers: where each begins),
/// keyed by its path below `prefix`.
fn walk_table(prefix: &str, table: &DeTable, place: &mut impl FnMut(String, usize)) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        place(path.clone(), key.span().start);
        walk_value(&path, value.get_ref(), place);
    }
}

fn walk_value(path: &str, value: &DeValue, place: &mut impl FnMut(String, usize)) {
    match value {
        DeValue::Table(t) => walk_table(path, t, place),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                place(p.clone(), item.span().start);
                walk_value(&p, item.get_ref(), place);
            }
        }
        _ => {}
    }
}

/// Reads `path` and its `extends` chain into one tree on the defaults, each child's keys
/// winning, and whether `path` itself is `abstract` (which is not inherited).
pub fn load_chain(path: &Path) -> Result<(Tree, bool)> {
    let mut chain: Vec<Tree> = Vec::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut names: Vec<String> = Vec::new();
    let mut is_abstract = false;
    let mut next = Some((path.to_path_buf(), None::<Origin>));
    while let Some((p, from)) = next {
        if !p.is_file() {
            let why = format!("extends {}: no such file", p.display());
            return Err(match from {
                Some(Origin::File { path, at }) => Error::spec(path, at, why),
                _ => Error::spec(&p, "", "no such file"),
            });
        }
        let canon = p.canonicalize().map_err(|e| Error::io(&p, e))?;
        names.push(canon.display().to_string());
        if !seen.insert(canon) {
            let msg = format!("cycle in extends: {}", names.join(" -> "));
            return Err(Error::spec(path, "extends", msg));
        }
        let mut tree = Tree::parse(&p)?;
        let flag = tree.take("abstract");
        if chain.is_empty() {
            is_abstract = abstract_flag(&p, flag)?;
        }
        next = match tree.take("extends") {
            None => None,
            Some((Value::String(e), origin)) => {
                let parent = p.parent().map_or_else(|| PathBuf::from(&e), |d| d.join(&e));
                Some((parent, origin))
            }
            Some((_, origin)) => return Err(at(&p, origin, "extends: must be a file name")),
        };
        chain.push(tree);
    }
    let mut merged = Tree::defaults();
    for tree in chain.into_iter().rev() {
        merged.merge(tree);
    }
    Ok((merged, is_abstract))
}

fn abstract_flag(path: &Path, flag: Option<(Value, Option<Origin>)>) -> Result<bool> {
    match flag {
        None => Ok(false),
        Some((Value::Boolean(b), _)) => Ok(b),
        Some((_, origin)) => Err(at(path, origin, "abstract: must be true or false")),
    }
}

/// An error at `origin`, or in `path` when there is none.
pub fn at(path: &Path, origin: Option<Origin>, msg: impl Into<String>) -> Error {
    match origin {
        Some(Origin::File { path, at }) => Error::spec(path, at, msg),
        Some(Origin::Flag(flag)) => Error::spec(path, flag, msg),
        None => Error::spec(path, "", msg),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Tree {
        // A file per call: tests run at once.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lesser-tree-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!("t{n}.toml"));
        std::fs::write(&p, text).unwrap();
        Tree::parse(&p).unwrap()
    }

    #[test]
    fn sections_merge_by_key_and_values_replace_whole() {
        let mut t = Tree::defaults();
        t.merge(tree(
            "[train]\nepochs = 3\noptimizer = { kind = \"sgd\", lr = 0.1 }\n",
        ));
        t.merge(tree("[train]\noptimizer = { kind = \"adamw\" }\n"));
        let train = t.root["train"].as_table().unwrap();
        assert_eq!(train["epochs"].as_integer(), Some(3));
        assert!(train["optimizer"].as_table().unwrap().get("lr").is_none());
        assert_eq!(train["batch_size"].as_integer(), Some(100));
        // The replaced optimizer's inner places went with it.
        let Some(Origin::File { at, .. }) = t.origin("train.optimizer.lr") else {
            panic!("no origin")
        };
        assert_eq!(at, "2:1");
    }

    #[test]
    fn set_walks_paths_and_records_the_flag() {
        let mut t = Tree::defaults();
        t.merge(tree("[model]\ndigit = [{ layer = \"relu\" }]\n"));
        let flag = Origin::Flag("--set model.digit[0].p=0.5".into());
        t.set("train.optimizer.lr", Value::Float(0.5), flag.clone())
            .unwrap();
        assert_eq!(t.root["train"]["optimizer"]["kind"].as_str(), Some("adam"));
        assert_eq!(t.origin("train.optimizer.lr"), Some(&flag));
        let e = t.set("model.digit[4].out", Value::Integer(1), flag.clone());
        assert_eq!(
            e.unwrap_err(),
            "model.digit has 1 layers, so no model.digit[4]"
        );
        assert!(t.set("grid.x", Value::Integer(1), flag.clone()).is_err());
        assert!(t.set("train.epochs.x", Value::Integer(1), flag).is_err());
    }
}
