//! Studies other than the seed's: IDX datasets of other sizes and class counts written by the
//! tests, every task kind and relation trained end to end, shapes that follow the data, and
//! the errors of data that cannot serve a spec.

mod common;

use std::path::Path;

use common::{command, csv_rows, read, stderr, temp};

/// Writes an IDX dataset into `dir`: `train` and `test` images of `h x w` bytes, `classes`
/// classes in turn. Each class is a bright bar at its own place, with some seeded noise, so
/// that a small network can learn it.
fn write_idx(dir: &Path, (h, w): (usize, usize), classes: u8, (train, test): (usize, usize)) {
    std::fs::create_dir_all(dir).unwrap();
    let mut noise = 12345u32;
    let mut next = || {
        noise = noise.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (noise >> 16) as u8 % 60
    };
    for (split, n) in [("train", train), ("t10k", test)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % usize::from(classes)) as u8).collect();
        let mut pixels = Vec::with_capacity(n * h * w);
        for &c in &labels {
            let row = (usize::from(c) * h) / usize::from(classes);
            for y in 0..h {
                for _ in 0..w {
                    let bar = y == row || y == (row + 1).min(h - 1);
                    pixels.push(if bar { 200 + next() / 2 } else { next() });
                }
            }
        }
        let header = |magic: u32, dims: &[usize]| {
            let mut v = magic.to_be_bytes().to_vec();
            for &d in dims {
                v.extend((d as u32).to_be_bytes());
            }
            v
        };
        let mut images = header(0x803, &[n, h, w]);
        images.extend(pixels);
        let mut l = header(0x801, &[n]);
        l.extend(&labels);
        std::fs::write(dir.join(format!("{split}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(dir.join(format!("{split}-labels-idx1-ubyte")), l).unwrap();
    }
}

/// A digit network for `classes` classes on any image size.
fn digit(classes: usize) -> String {
    format!(
        "digit = [\n  {{ layer = \"conv2d\", out = 4, kernel = 3, padding = 1 }},\n  \
         {{ layer = \"relu\" }},\n  {{ layer = \"max_pool2d\", kernel = 2 }},\n  \
         {{ layer = \"flatten\" }},\n  {{ layer = \"linear\", out = {classes} }},\n]\n"
    )
}

const TRAIN: &str = "[train]\nepochs = 4\nbatch_size = 20\nrepeats = 2\n\
                     optimizer = { kind = \"adam\", lr = 0.01 }\n";

/// Runs `lesser run` in `d` on its own specs (their data named in them).
fn run(d: &Path, args: &[&str]) -> std::process::Output {
    command(d).arg("run").args(args).output().unwrap()
}

/// Every task kind and relation trains end to end on 20x20 images of 5 classes pooled to
/// 10x10, with each comparison rule; each learns (its test error is well below chance), and
/// `check` shows the input and parameters each variant has on these images.
#[test]
fn every_task_and_relation_trains_on_other_data() {
    let d = temp("tasks", "relations");
    write_idx(&d.join("data20"), (20, 20), 5, (400, 200));
    let data = "[data]\ndir = \"../data20\"\ntrain_pairs = 100\ntest_pairs = 100\n";
    let pairs = |relation: &str, model: &str| {
        format!("{data}[task]\nrelation = \"{relation}\"\n[model]\n{model}{TRAIN}")
    };
    let shared = format!("weight_sharing = true\naux_loss = 1.0\n{}", digit(5));
    let specs = [
        (
            "le",
            pairs(
                "le",
                &format!("{shared}head = [{{ layer = \"linear\", out = 2 }}]\n"),
            ),
        ),
        (
            "lt_argmax",
            pairs("lt", &format!("{shared}compare = \"argmax\"\n")),
        ),
        (
            "eq_probability",
            pairs("eq", &format!("{shared}compare = \"probability\"\n")),
        ),
        (
            "sum_head",
            pairs(
                "sum",
                &format!(
                    "{shared}head = [{{ layer = \"linear\", out = 32 }}, {{ layer = \"relu\" }}, \
                     {{ layer = \"linear\", out = 9 }}]\n"
                ),
            ),
        ),
        (
            "sum_probability",
            pairs("sum", &format!("{shared}compare = \"probability\"\n")),
        ),
        (
            "sum_joint",
            pairs(
                "sum",
                "topology = \"joint\"\njoint = [{ layer = \"flatten\" }, { layer = \"linear\", out = 9 }]\n",
            ),
        ),
        (
            "classify",
            format!(
                "{data}[task]\nkind = \"classify\"\n[model]\n{}{TRAIN}",
                digit(5)
            ),
        ),
    ];
    for (name, text) in &specs {
        std::fs::write(d.join(format!("specs/{name}.toml")), text).unwrap();
    }
    let out = command(&d).args(["check", "specs"]).output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        shown.contains("pairs, target = class0 + class1 on data20")
            && shown.contains("20x20 -> 10x10, 5 classes")
            && shown.contains("input 1x10x10")
            && shown.contains("input 2x10x10"),
        "{shown}"
    );
    // 4 x 5 x 5 = 100 features into the linear layer: its 505 parameters, and 40 in the conv.
    let linear = shown
        .lines()
        .find(|l| l.contains("model.digit[ 4] linear"))
        .unwrap();
    assert!(
        linear.contains("100 -> 5") && linear.ends_with(" 505"),
        "{linear}"
    );
    let out = run(&d, &["--jobs", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = csv_rows(&read(d.join("reports/results.csv")));
    assert_eq!(rows.len(), 2 * specs.len());
    for r in &rows {
        let e: f64 = r["test_error"].parse().unwrap();
        // Chance: 1/2 for the yes/no relations, 4/5 to classify, about 4/5 for the sum.
        let most = if r["variant"].starts_with("sum") {
            0.6
        } else {
            0.3
        };
        assert!(e < most, "{} learned nothing: {e}", r["variant"]);
    }
    let report = read(d.join("reports/REPORT.md"));
    assert!(
        report.contains("| classify | images: the class (5 classes) |"),
        "{report}"
    );
    assert!(report.contains("pairs: class0 + class1"), "{report}");
}

/// Full resolution (`pool = 1`) on 28x28 and 8x8 images of 3 classes: the image side comes
/// from the header, and a layer stack that does not fit the data is refused with its file,
/// layer and line before anything trains.
#[test]
fn shapes_follow_the_data() {
    let d = temp("tasks", "shapes");
    write_idx(&d.join("big"), (28, 28), 3, (200, 100));
    write_idx(&d.join("small"), (8, 8), 3, (200, 100));
    let spec = |dir: &str, digit: &str| {
        format!(
            "[data]\ndir = \"../{dir}\"\npool = 1\ntrain_pairs = 50\ntest_pairs = 50\n\
             [model]\nweight_sharing = true\naux_loss = 1.0\ncompare = \"argmax\"\n{digit}{TRAIN}"
        )
    };
    std::fs::write(d.join("specs/full.toml"), spec("big", &digit(3))).unwrap();
    let out = run(&d, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(read(d.join("reports/REPORT.md")).contains("28x28 big images"));
    // A linear layer written for 14x14 no longer fits 28x28.
    let fixed =
        "digit = [\n  { layer = \"flatten\" },\n  { layer = \"linear\", in = 196, out = 3 },\n]\n";
    std::fs::write(d.join("specs/full.toml"), spec("big", fixed)).unwrap();
    let out = run(&d, &[]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.contains("full.toml:12:3: spec full: model.digit[1] (linear): expects 196 input features, got 784"),
        "{e}"
    );
    // Too many poolings for 8x8 images.
    let pools = "digit = [\n  { layer = \"max_pool2d\", kernel = 4 },\n  { layer = \"max_pool2d\", kernel = 4 },\n  { layer = \"flatten\" },\n  { layer = \"linear\", out = 3 },\n]\n";
    std::fs::write(d.join("specs/full.toml"), spec("small", pools)).unwrap();
    let e = stderr(&run(&d, &[]));
    assert!(
        e.contains("full.toml:12:3: spec full: model.digit[1] (max_pool2d): kernel 4 (stride 4) does not fit a 1x2x2 input"),
        "{e}"
    );
    // Outputs that are not the data's classes.
    std::fs::write(d.join("specs/full.toml"), spec("small", &digit(10))).unwrap();
    let e = stderr(&run(&d, &[]));
    assert!(
        e.contains(
            "model.digit ends in 10, it must end in 3 flat values (the 3 classes of the data)"
        ),
        "{e}"
    );
}

/// Input that cannot serve a spec gets one line naming the file and key, exit 2, and the
/// rounds already stored stay.
#[test]
fn data_that_cannot_serve_a_spec_is_refused() {
    let d = temp("tasks", "refused");
    write_idx(&d.join("data"), (12, 12), 4, (60, 40));
    let base = "[data]\ndir = \"../data\"\ntrain_pairs = 10\ntest_pairs = 10\n[model]\n\
                weight_sharing = true\naux_loss = 1.0\ncompare = \"argmax\"\n";
    let write = |extra: &str| {
        let text = format!("{extra}{base}{}{TRAIN}", digit(4));
        std::fs::write(d.join("specs/s.toml"), text).unwrap();
    };
    write("");
    let out = run(&d, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let results = read(d.join("reports/results.csv"));
    let refused = |args: &[&str], says: &str| {
        let out = run(&d, args);
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{e}");
        assert!(e.contains(says) && e.lines().count() == 1, "{says}: {e}");
        assert_eq!(read(d.join("reports/results.csv")), results, "results kept");
    };
    refused(
        &["--pairs", "31"],
        "--pairs 31: data.train_pairs: 31 pairs need 62 images, the train split of",
    );
    let eq = format!("[task]\nrelation = \"eq\"\n{base}{}{TRAIN}", digit(4)).replace(
        "compare = \"argmax\"",
        "asymmetry = 0.5\nhead = [{ layer = \"linear\", out = 2 }]",
    );
    std::fs::write(d.join("specs/s.toml"), eq).unwrap();
    refused(
        &[],
        "model.asymmetry: the reversed pair has the same target under class0 == class1",
    );
    write("[task]\nkind = \"classify\"\n");
    refused(
        &[],
        "s.toml:8:1: model.weight_sharing: means nothing for task.kind = \"classify\"",
    );
    std::fs::write(
        d.join("specs/s.toml"),
        format!("{base}{}{TRAIN}normalize = \"scale\"\n", digit(4)),
    )
    .unwrap();
    refused(&[], "s.toml:21:1: train.normalize: moved to data.normalize");
    write("");
    // A test label beyond the training labels' classes names the labels file.
    let labels = d.join("data/t10k-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&labels).unwrap();
    let last = bytes.len() - 1;
    bytes[last] = 9;
    std::fs::write(&labels, bytes).unwrap();
    refused(
        &[],
        "t10k-labels-idx1-ubyte: label 9 at index 39 is beyond the 4 classes",
    );
}

/// A grid over the training-set size: one variant per size, nested draws (a smaller set is
/// a prefix of a larger one), and a rerun reuses every round from the store.
#[test]
fn a_grid_over_the_training_set_size_reuses_the_store() {
    let d = temp("tasks", "sizes");
    write_idx(&d.join("data"), (12, 12), 4, (200, 60));
    let text = format!(
        "[data]\ndir = \"../data\"\ntest_pairs = 20\n[model]\nweight_sharing = true\n\
         aux_loss = 1.0\ncompare = \"argmax\"\n{}{TRAIN}[grid]\n\"data.train_pairs\" = [10, 40, 80]\n",
        digit(4)
    );
    std::fs::write(d.join("specs/n.toml"), text).unwrap();
    let out = run(&d, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = csv_rows(&read(d.join("reports/results.csv")));
    let pairs: Vec<&str> = rows.iter().map(|r| r["pairs"].as_str()).collect();
    assert_eq!(pairs, ["10", "10", "40", "40", "80", "80"]);
    let report = read(d.join("reports/REPORT.md"));
    assert!(report.contains("n[train_pairs=80]"), "{report}");
    assert!(report.contains("figures/grid_n_train_pairs"), "{report}");
    let out = run(&d, &[]);
    assert!(
        stderr(&out).contains("6 rounds (0 trained, 6 reused"),
        "{}",
        stderr(&out)
    );
}
