//! Helpers shared by the end-to-end tests: a tiny variant, scratch directories, and the
//! `lesser` binary run on the shipped data.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A variant that trains in a few milliseconds.
pub const TINY: &str = r#"
description = "tiny DESC"
[model]
weight_sharing = true
aux_loss = 1.0
digit = [
  { layer = "conv2d", out = 2, kernel = 3, stride = 2 },
  { layer = "relu" },
  { layer = "flatten" },
  { layer = "linear", in = 72, out = 10 },
]
head = [{ layer = "linear", in = 20, out = 2 }]
[train]
epochs = 1
batch_size = 50
repeats = 2
"#;

/// An empty scratch directory with a `specs` folder, unique to this test process.
pub fn temp(group: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lesser-{group}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("specs")).unwrap();
    d
}

/// A scratch directory with two tiny variants, `alpha` and `beta` (beta without the
/// auxiliary loss).
pub fn setup(group: &str, name: &str) -> PathBuf {
    let d = temp(group, name);
    std::fs::write(d.join("specs/alpha.toml"), TINY.replace("DESC", "a")).unwrap();
    std::fs::write(
        d.join("specs/beta.toml"),
        TINY.replace("DESC", "b")
            .replace("aux_loss = 1.0", "aux_loss = 0.0"),
    )
    .unwrap();
    d
}

/// The shipped data directory.
pub fn data() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/mnist")
        .display()
        .to_string()
}

/// `lesser` in `dir`, not yet started.
pub fn command(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lesser"));
    c.current_dir(dir);
    c
}

/// Runs `lesser run` in `dir` on the shipped data; 100 pairs unless `args` say otherwise.
pub fn lesser(dir: &Path, args: &[&str]) -> Output {
    let pairs: &[&str] = if args.contains(&"--pairs") {
        &[]
    } else {
        &["--pairs", "100"]
    };
    command(dir)
        .args(["run", "--data", &data()])
        .args(pairs)
        .args(args)
        .output()
        .unwrap()
}

/// A file's text, or a panic naming it.
pub fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Standard error of `o`, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The lines of a round store without their wall-clock seconds (the second field), which is
/// all that may differ when a round is trained again.
pub fn without_seconds(store: &str) -> Vec<String> {
    store
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(1);
            f.join(",")
        })
        .collect()
}

/// The round store of `dir`'s reports: one file per round.
pub fn store_dir(dir: &Path) -> PathBuf {
    dir.join("reports/.cache/rounds")
}

/// The round files of a store directory, in name order.
pub fn store_files(store: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(store)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|x| x == "csv"));
    files.sort();
    files
}

/// Every stored round's line, in file-name order.
pub fn stored(store: &Path) -> String {
    store_files(store)
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

/// The rows of CSV text with a header row, each a map from column name to value, so that
/// tests read columns by name.
pub fn csv_rows(text: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            header
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// The spec files (`*.toml`) directly in `dir` of the repository.
pub fn spec_file_count(dir: &str) -> usize {
    std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "toml"))
        })
        .count()
}

/// The seed study's data as a plan sees it: pairs of 14x14 images of 10 classes.
#[allow(dead_code)]
pub const SEED: lesser::compile::DataShape = lesser::compile::DataShape {
    task: lesser::spec::Task::SEED,
    side: (14, 14),
    classes: 10,
};

/// The one variant of the spec file at `path`, with its data, `pairs` pairs a split.
#[allow(dead_code)]
pub fn variant(path: &std::path::Path, pairs: usize) -> lesser::variants::Variant {
    let load = lesser::variants::LoadOptions::default()
        .data(None, Some(pairs))
        .unwrap();
    let (mut all, _) = lesser::variants::load_valid(&[path.to_path_buf()], &load).unwrap();
    assert_eq!(all.len(), 1);
    all.remove(0)
}

/// The shipped data directory, as `check` is told it in scratch directories.
pub const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist");
