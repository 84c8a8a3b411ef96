//! Grids in spec files and `--set` overrides: expansion, inheritance, layer-key axes, hashes,
//! bad axes and values, and a sweep over a grid against the same points as spec files.

mod common;

use std::path::Path;

use common::{TINY, command, lesser, read, stderr, temp};
use lesser::spec::{self, Override};

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join("specs").join(name), text).unwrap();
}

/// TINY with a grid over the learning rate, the auxiliary loss and a layer's width.
fn gridded(keys_in_this_order: &[&str]) -> String {
    let axes: Vec<String> = keys_in_this_order
        .iter()
        .map(|k| match *k {
            "lr" => "\"train.optimizer.lr\" = [0.001, 0.01]".to_string(),
            "aux" => "\"model.aux_loss\" = [0.5, 1.0]".to_string(),
            _ => "\"model.digit[0].out\" = [2, 3]".to_string(),
        })
        .collect();
    TINY.replace("in = 72, ", "") + "[grid]\n" + &axes.join("\n") + "\n"
}

fn names_and_hashes(path: &Path, overrides: &[Override]) -> Vec<(String, String)> {
    spec::load_all(path, overrides, 256)
        .unwrap()
        .unwrap()
        .iter()
        .map(|s| (s.name.clone(), s.hash()))
        .collect()
}

#[test]
fn a_grid_expands_into_named_points_whatever_the_key_order() {
    let d = temp("grid", "expand");
    write(&d, "g.toml", &gridded(&["lr", "aux", "out"]));
    let got = names_and_hashes(&d.join("specs/g.toml"), &[]);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    // Axes in key order (model.aux_loss, model.digit[0].out, train.optimizer.lr), the last
    // changing fastest.
    assert_eq!(
        names,
        [
            "g[aux_loss=0.5,out=2,lr=0.001]",
            "g[aux_loss=0.5,out=2,lr=0.01]",
            "g[aux_loss=0.5,out=3,lr=0.001]",
            "g[aux_loss=0.5,out=3,lr=0.01]",
            "g[aux_loss=1.0,out=2,lr=0.001]",
            "g[aux_loss=1.0,out=2,lr=0.01]",
            "g[aux_loss=1.0,out=3,lr=0.001]",
            "g[aux_loss=1.0,out=3,lr=0.01]",
        ]
    );
    let mut hashes: Vec<&str> = got.iter().map(|(_, h)| h.as_str()).collect();
    hashes.dedup();
    assert_eq!(hashes.len(), 8, "every point has its own hash");
    // The same grid written in another key order: the same points, names and hashes.
    write(&d, "g.toml", &gridded(&["out", "lr", "aux"]));
    assert_eq!(names_and_hashes(&d.join("specs/g.toml"), &[]), got);
    // A layer-key axis changes the layer: 2 or 3 output channels.
    let loaded = lesser::variants::load(
        &[d.join("specs")],
        &lesser::variants::LoadOptions::default(),
    )
    .unwrap();
    let params: Vec<usize> = loaded.variants.iter().map(|v| v.plan.params).collect();
    assert_eq!(params[0], 2 * 9 + 2 + 72 * 10 + 10 + 20 * 2 + 2);
    assert_eq!(params[2], 3 * 9 + 3 + 108 * 10 + 10 + 20 * 2 + 2);
}

#[test]
fn a_grid_is_inherited_and_a_child_can_replace_it() {
    let d = temp("grid", "inherit");
    write(
        &d,
        "base.toml",
        &format!("abstract = true\n{}", gridded(&["lr", "aux"])),
    );
    write(&d, "child.toml", "extends = \"base.toml\"\n");
    write(
        &d,
        "other.toml",
        "extends = \"base.toml\"\n[grid]\n\"train.epochs\" = [1, 2, 3]\n",
    );
    let names = |f: &str| -> Vec<String> {
        names_and_hashes(&d.join("specs").join(f), &[])
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    };
    assert_eq!(names("child.toml").len(), 4);
    assert!(names("child.toml")[0].starts_with("child[aux_loss=0.5,lr=0.001]"));
    assert_eq!(
        names("other.toml"),
        ["other[epochs=1]", "other[epochs=2]", "other[epochs=3]"]
    );
}

#[test]
fn overrides_change_the_hash_and_are_reported() {
    let d = temp("grid", "set");
    write(&d, "t.toml", &TINY.replace("DESC", "t"));
    let path = d.join("specs/t.toml");
    let plain = names_and_hashes(&path, &[]);
    // Setting a key to the value it already has still changes the hash.
    let same = Override::parse("train.epochs=1").unwrap();
    let set = names_and_hashes(&path, &[same]);
    assert_eq!(plain[0].0, set[0].0);
    assert_ne!(plain[0].1, set[0].1);
    let s = spec::load_all(
        &path,
        &[Override::parse("train.optimizer.lr=0.01").unwrap()],
        256,
    )
    .unwrap()
    .unwrap();
    match s[0].train.optimizer {
        spec::Optimizer::Adam { lr, .. } => assert_eq!(lr, 0.01),
        ref o => panic!("{o:?}"),
    }
    // End to end: recorded in REPORT.md, and a rerun without it shares no round.
    let out = lesser(&d, &["--set", "train.batch_size=25"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = read(d.join("reports/REPORT.md"));
    assert!(report.contains("`train.batch_size=25`"), "{report}");
    let out = lesser(&d, &[]);
    assert!(
        stderr(&out).contains("2 rounds (2 trained, 0 reused"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_axes_overrides_and_sizes_get_one_clear_line() {
    let d = temp("grid", "bad");
    let cases = [
        (
            "[grid]\n\"train.lrr\" = [1, 2]\n",
            "bad.toml:18:1: grid point bad[lrr=1]: train.lrr: unknown field `lrr`",
        ),
        (
            "[grid]\n\"model.aux_loss\" = [\"high\"]\n",
            "bad.toml:18:1: grid point bad[aux_loss=high]: model.aux_loss: invalid type",
        ),
        (
            "[grid]\n\"model.digit[9].out\" = [4]\n",
            "grid point bad[out=4]: model.digit[9].out: model.digit has 4 layers, so no model.digit[9]",
        ),
        (
            "[grid]\n\"model.digit[0].out\" = [4]\n",
            "spec bad[out=4]: model.digit[3] (linear): expects 72 input features, got 144",
        ),
        (
            "[grid]\n\"train.epochs\" = []\n",
            "bad.toml:18:1: grid axis \"train.epochs\" has no values",
        ),
    ];
    for (grid, says) in cases {
        write(&d, "bad.toml", &(TINY.to_string() + grid));
        let out = command(&d)
            .args(["check", "--data", common::DATA, "specs"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{grid}");
        let e = stderr(&out);
        assert!(e.contains(says), "{grid}: {e}");
    }
    // Too many points: refused, with how to allow it.
    let big: Vec<String> = (0..17)
        .map(|i| format!("{}", 0.001 * (i + 1) as f64))
        .collect();
    let grid = format!(
        "[grid]\n\"train.optimizer.lr\" = [{}]\n\"train.seed\" = [{}]\n",
        big.join(", "),
        (0..16)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    write(&d, "bad.toml", &(TINY.to_string() + &grid));
    let out = command(&d)
        .args(["check", "--data", common::DATA, "specs"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains(
            "the grid has 272 points, above the limit of 256; pass --max-grid 272 to allow it"
        ),
        "{}",
        stderr(&out)
    );
    let out = command(&d)
        .args([
            "check",
            "--data",
            common::DATA,
            "specs",
            "--max-grid",
            "272",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // A bad override: one line, whatever the number of specs, exit 2.
    write(&d, "bad.toml", &TINY.replace("DESC", "x"));
    write(&d, "more.toml", &TINY.replace("DESC", "y"));
    for (set, says) in [
        (
            "train.lrr=3",
            "error: --set train.lrr=3: train.lrr: unknown field `lrr`",
        ),
        (
            "train.epochs=many",
            "error: --set train.epochs=\"many\": train.epochs: invalid type",
        ),
        ("epochs", "error: --set epochs: expected KEY=VALUE"),
    ] {
        let out = lesser(&d, &["--set", set]);
        assert_eq!(out.status.code(), Some(2), "{set}");
        let e = stderr(&out);
        assert!(e.starts_with(says) && e.lines().count() == 1, "{set}: {e}");
    }
}

#[test]
fn a_grid_sweep_equals_its_points_written_as_specs() {
    let d = temp("grid", "same");
    write(&d, "g.toml", &gridded(&["lr", "aux"]));
    let out = lesser(&d, &["--out", "grid"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The same four points as files of their own, named as the points are.
    let e = temp("grid", "files");
    for aux in ["0.5", "1.0"] {
        for lr in ["0.001", "0.01"] {
            let text = TINY
                .replace("in = 72, ", "")
                .replace("aux_loss = 1.0", &format!("aux_loss = {aux}"))
                + &format!("optimizer = {{ kind = \"adam\", lr = {lr} }}\n");
            write(&e, &format!("g[aux_loss={aux},lr={lr}].toml"), &text);
        }
    }
    let out = lesser(&e, &["--out", "files"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let grid = read(d.join("grid/results.csv"));
    assert_eq!(grid, read(e.join("files/results.csv")));
    assert_eq!(grid.lines().count(), 9);
    // Rounds pair across points: round r has one data seed in all of them.
    let seeds: Vec<String> = common::csv_rows(&grid)
        .into_iter()
        .filter(|r| r["round"] == "0")
        .map(|r| r["data_seed"].clone())
        .collect();
    assert_eq!(seeds.len(), 4);
    assert!(seeds.windows(2).all(|w| w[0] == w[1]));
    let report = read(d.join("grid/REPORT.md"));
    assert!(
        report.contains("## Grid: g\n\n| aux_loss | lr | mean |"),
        "{report}"
    );
    // --only takes a stem (every point) or one point.
    let out = lesser(&d, &["--out", "grid", "--only", "g[aux_loss=1.0,lr=0.01]"]);
    assert!(
        stderr(&out).contains("2 rounds (0 trained, 2 reused"),
        "{}",
        stderr(&out)
    );
    let out = lesser(&d, &["--out", "grid", "--only", "g"]);
    assert!(
        stderr(&out).contains("8 rounds (0 trained, 8 reused"),
        "{}",
        stderr(&out)
    );
}

/// Axes over whole layers and whole tables: points named by the layer's or the table's kind
/// (by position where two share a kind), each point the spec with that value; `--set` on an
/// axis is refused, naming it.
#[test]
fn axes_over_layers_and_tables_have_readable_points() {
    let d = temp("grid", "tables");
    let grid = "[grid]\n\"model.digit[1]\" = [{ layer = \"relu\" }, { layer = \"tanh\" }]\n\
                \"train.schedule\" = [{ kind = \"cosine\" }, { kind = \"step\", every = 1 }, \
                { kind = \"step\", every = 2 }]\n";
    write(&d, "t.toml", &(TINY.to_string() + grid));
    let names: Vec<String> = names_and_hashes(&d.join("specs/t.toml"), &[])
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "t[digit[1]=relu,schedule=cosine]",
            "t[digit[1]=relu,schedule=#1]",
            "t[digit[1]=relu,schedule=#2]",
            "t[digit[1]=tanh,schedule=cosine]",
            "t[digit[1]=tanh,schedule=#1]",
            "t[digit[1]=tanh,schedule=#2]",
        ]
    );
    let specs = spec::load_all(&d.join("specs/t.toml"), &[], 256)
        .unwrap()
        .unwrap();
    assert_eq!(specs[3].model.digit.layers[1].spec, spec::LayerSpec::Tanh);
    assert_eq!(
        specs[2].train.schedule,
        spec::Schedule::Step {
            every: 2,
            gamma: 0.1,
            warmup: 0
        }
    );
    let out = command(&d)
        .args(["check", "--data", common::DATA, "specs"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let set = Override::parse("train.schedule.every=3").unwrap();
    let e = spec::load_all(&d.join("specs/t.toml"), &[set], 256)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--set train.schedule.every=3: train.schedule is an axis of the grid"),
        "{e}"
    );
}

/// A grid's numeric axes get a figure each, test error against the axis, one line per
/// combination of the other axes, on a log axis when the values span a factor of 10;
/// REPORT.md embeds them under the grid's table. A non-numeric axis gets none.
#[test]
fn numeric_axes_get_a_figure_under_the_grid_table() {
    let d = temp("grid", "figures");
    let grid = "[grid]\n\"train.optimizer.lr\" = [0.001, 0.003, 0.01]\n\
                \"model.aux_loss\" = [0.5, 1.0]\n\"description\" = [\"a\", \"b\"]\n";
    write(&d, "g.toml", &(TINY.to_string() + grid));
    let out = lesser(&d, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = read(d.join("reports/REPORT.md"));
    let links: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("![g: test error against "))
        .collect();
    assert_eq!(links.len(), 2, "{report}");
    let lr = links.iter().find(|l| l.contains("against lr]")).unwrap();
    let file = lr.split("](").nth(1).unwrap().trim_end_matches(')');
    let svg = read(d.join("reports").join(file));
    assert!(
        svg.starts_with("<svg") && svg.contains("lr (log scale)"),
        "{svg}"
    );
    // One line per combination of the other axes: 2 aux_loss x 2 descriptions.
    for label in ["description=a,aux_loss=0.5", "description=b,aux_loss=1.0"] {
        assert!(svg.contains(label), "{label}");
    }
    let aux = links
        .iter()
        .find(|l| l.contains("against aux_loss]"))
        .unwrap();
    let file = aux.split("](").nth(1).unwrap().trim_end_matches(')');
    assert!(!read(d.join("reports").join(file)).contains("(log scale)"));
    // The table comes first, then its figures.
    assert!(report.find("## Grid: g").unwrap() < report.find(lr).unwrap());
}
