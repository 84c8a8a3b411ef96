//! Learning curves and figures: the data handed to the plotting layer, the SVG it draws,
//! byte-identical reruns, and `lesser report` against the run that filled the store.

mod common;

use std::path::Path;

use common::{command, lesser, read, setup, stderr};
use lesser::record::{EpochPoint, RoundRecord, RoundResult, Status};
use lesser::report::figures;

fn record(variant: &str, round: usize, test: f64, curve: &[(f64, f64, f64)]) -> RoundRecord {
    RoundRecord {
        variant: variant.into(),
        round,
        data_seed: round as u64,
        init_seed: 7,
        spec_hash: "00000000000000aa".into(),
        data_hash: "00000000000000dd".into(),
        params: 10,
        epochs: curve.len(),
        pairs: 100,
        version: "x".into(),
        result: RoundResult {
            final_train_loss: 0.5,
            train_error: Some(0.1),
            test_error: Some(test),
            digit_test_error: None,
            status: Status::Ok,
            weights: None,
            validation_error: None,
            breakdown: None,
            curve: curve
                .iter()
                .map(|&(l, a, b)| EpochPoint {
                    train_loss: l,
                    train_error: a,
                    test_error: Some(b),
                    validation_error: None,
                })
                .collect(),
        },
        seconds: 0.0,
    }
}

#[test]
fn figures_get_the_right_series() {
    let records = vec![
        record("a", 0, 0.20, &[(2.0, 0.5, 0.4), (1.0, 0.3, 0.2)]),
        record("a", 1, 0.10, &[(4.0, 0.7, 0.6), (3.0, 0.1, 0.1)]),
        record("b", 0, 0.30, &[(1.0, 0.2, 0.3)]),
    ];
    let rows = figures::rows(&[("a".into(), Some(0.18)), ("b".into(), None)], &records);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].label, "a");
    let a = &rows[0].sets[0];
    assert!((a.errors[0] - 20.0).abs() < 1e-9 && (a.errors[1] - 10.0).abs() < 1e-9);
    assert!((a.mean.unwrap() - 15.0).abs() < 1e-9);
    assert!((a.std.unwrap() - 50f64.sqrt()).abs() < 1e-9, "sample std");
    assert!((rows[0].reference.unwrap() - 18.0).abs() < 1e-6);
    assert_eq!(rows[1].sets[0].std, None);
    let ra: Vec<&RoundRecord> = records.iter().filter(|r| r.variant == "a").collect();
    let c = figures::curves("a", &ra).unwrap();
    assert_eq!(c.rounds, 2);
    assert_eq!(c.train_loss.mean, [3.0, 2.0]);
    assert_eq!(c.train_loss.min, [2.0, 1.0]);
    assert_eq!(c.train_loss.max, [4.0, 3.0]);
    assert!(
        (c.test_error.mean[0] - 50.0).abs() < 1e-9 && (c.train_error.max[1] - 30.0).abs() < 1e-9
    );
    // Drawn: every round a dot (plus the legend's), the reference a cross.
    let svg = figures::dots_svg(&rows, &["round"], "test error (%)");
    assert_eq!(svg.matches("<circle").count(), 3 + 1, "{svg}");
    // plotters writes a text element's content on a line of its own.
    let text = |t: &str| format!(">\n{t}\n</text>");
    assert!(
        svg.contains(&text("test error (%)"))
            && svg.contains(&text("a"))
            && svg.contains(&text("b"))
    );
    let svg = figures::curves_svg(&c);
    assert!(svg.contains(&text("epoch")) && svg.contains(&text("error (%)")));
    assert!(svg.contains(&text("training loss (summed cross-entropies)")));
    assert_eq!(svg.matches("<polygon").count(), 3, "a band per curve");
    assert_eq!(figures::file_name("bn_cnn"), "bn_cnn.svg");
    // Names that are no plain file name: made one, kept apart by a hash of the whole name.
    let names = [
        "g[lr=0.1,aux=1]",
        "g_lr=0.1_aux=1_",
        "x",
        "x_",
        "summary",
        "summary_curves",
        "col[epochs=1]",
        "col_epochs=1",
        "v[a=a/b]",
        "v[a=a\\b]",
        "ÄÖÜ",
        ".hidden",
        &"d".repeat(250),
        &format!("{}x", "d".repeat(250)),
    ];
    let files: Vec<String> = names.iter().map(|n| figures::file_name(n)).collect();
    let distinct: std::collections::BTreeSet<&String> = files.iter().collect();
    assert_eq!(distinct.len(), names.len(), "{files:?}");
    for f in &files {
        assert!(
            f.len() <= 110 && !f.starts_with('.') && f != "summary.svg",
            "{f}"
        );
        assert!(
            f.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-=".contains(c)),
            "{f}"
        );
    }
    assert!(files[0].starts_with("g_lr=0.1_aux=1-"), "{}", files[0]);
}

/// Every file under `dir` (recursively), by relative path, but the store.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap() == ".cache" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn reports_and_figures_are_reproducible_and_rebuilt_from_the_store() {
    let d = setup("figures", "rebuild");
    for name in ["alpha", "beta"] {
        let p = d.join(format!("specs/{name}.toml"));
        std::fs::write(&p, read(p.clone()).replace("epochs = 1", "epochs = 3")).unwrap();
    }
    let out = lesser(&d, &["--jobs", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first = files(&d.join("reports"));
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "REPORT.md",
            "curves.csv",
            "figures/alpha.svg",
            "figures/beta.svg",
            "figures/errors/alpha.svg",
            "figures/errors/beta.svg",
            "figures/summary.svg",
            "results.csv",
            "timing.csv"
        ]
    );
    // Every figure is well-formed XML.
    for (name, bytes) in first.iter().filter(|(n, _)| n.ends_with(".svg")) {
        let text = String::from_utf8(bytes.clone()).unwrap();
        roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let curves = read(d.join("reports/curves.csv"));
    // 2 variants x 2 rounds x 3 epochs x 3 metrics.
    assert_eq!(curves.lines().count(), 1 + 36, "{curves}");
    assert!(curves.contains("\nalpha,1,3,test_error,"));
    // The last epoch's test error is the round's.
    let point = |variant: &str, round: &str, epoch: &str, metric: &str| {
        common::csv_rows(&curves).into_iter().find(|r| {
            [&r["variant"], &r["round"], &r["epoch"], &r["metric"]]
                == [variant, round, epoch, metric]
        })
    };
    let last = point("alpha", "0", "3", "test_error").unwrap();
    let results = common::csv_rows(&read(d.join("reports/results.csv")));
    let row = results
        .iter()
        .find(|r| r["variant"] == "alpha" && r["round"] == "0")
        .unwrap();
    assert_eq!(last["value"], row["test_error"]);
    let report = read(d.join("reports/REPORT.md"));
    assert!(
        report.contains("](figures/summary.svg)") && report.contains("![alpha](figures/alpha.svg)")
    );
    // A fresh rerun writes the same bytes (timing aside).
    let out = lesser(&d, &["--jobs", "1", "--fresh", "--out", "again"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let without_timing = |v: Vec<(String, Vec<u8>)>| -> Vec<(String, Vec<u8>)> {
        v.into_iter().filter(|(n, _)| n != "timing.csv").collect()
    };
    assert_eq!(
        without_timing(files(&d.join("again"))),
        without_timing(first.clone())
    );
    // `lesser report` rebuilds every file, timing included, from the store.
    for (n, _) in &first {
        std::fs::remove_file(d.join("reports").join(n)).unwrap();
    }
    let out = command(&d)
        .args(["report", "--data", &common::data(), "--pairs", "100"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("4 rounds reported from the store, 0 missing"));
    assert_eq!(files(&d.join("reports")), first);
    // It names what is missing, and reports what is there.
    std::fs::write(
        d.join("specs/gamma.toml"),
        common::TINY.replace("DESC", "g"),
    )
    .unwrap();
    let out = command(&d)
        .args(["report", "--data", &common::data(), "--pairs", "100"])
        .output()
        .unwrap();
    let e = stderr(&out);
    assert!(
        e.contains("missing: gamma round 0\nmissing: gamma round 1\n"),
        "{e}"
    );
    assert!(read(d.join("reports/REPORT.md")).contains("| gamma | 792 | 778 | 0 |"));
    // Without a store there is nothing to report.
    let out = command(&d)
        .args(["report", "--data", &common::data(), "--out", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("nowhere: no stored rounds"),
        "{}",
        stderr(&out)
    );
    // diff draws old and new side by side.
    let out = command(&d)
        .args(["diff", "again", "reports", "--plot", "diff.svg"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = read(d.join("diff.svg"));
    assert!(svg.contains(">\nold\n</text>") && svg.contains(">\nnew\n</text>"));
    assert_eq!(svg.matches("<circle").count(), 4 + 4 + 2, "{svg}");
}

#[test]
fn validation_errors_get_their_own_curve() {
    let mut r = record("v", 0, 0.2, &[(2.0, 0.5, 0.4), (1.0, 0.3, 0.2)]);
    for (p, v) in r.result.curve.iter_mut().zip([0.45, 0.25]) {
        p.validation_error = Some(v);
    }
    let c = figures::curves("v", &[&r]).unwrap();
    let band = c.validation_error.as_ref().unwrap();
    assert!((band.mean[0] - 45.0).abs() < 1e-9 && (band.mean[1] - 25.0).abs() < 1e-9);
    let svg = figures::curves_svg(&c);
    assert!(svg.contains(">\nvalidation error\n</text>"));
    assert_eq!(svg.matches("<polygon").count(), 4, "a band per curve");
    // Without validation: no such curve.
    let plain = record("p", 0, 0.2, &[(2.0, 0.5, 0.4)]);
    assert!(
        figures::curves("p", &[&plain])
            .unwrap()
            .validation_error
            .is_none()
    );
}

#[test]
fn epochs_without_a_test_error_are_left_out_of_its_curve() {
    let mut r = record(
        "s",
        0,
        0.2,
        &[(3.0, 0.6, 0.5), (2.0, 0.5, 0.4), (1.0, 0.3, 0.2)],
    );
    r.result.curve[0].test_error = None;
    r.result.curve[1].test_error = None;
    let c = figures::curves("s", &[&r]).unwrap();
    assert_eq!(c.train_loss.epoch, [1, 2, 3]);
    assert_eq!(c.test_error.epoch, [3]);
    assert!((c.test_error.mean[0] - 20.0).abs() < 1e-9);
    let svg = figures::curves_svg(&c);
    assert_eq!(svg.matches("<polygon").count(), 3, "a band per curve");
}

#[test]
fn curve_every_thins_the_curves_and_nothing_else() {
    let d = setup("figures", "curve_every");
    std::fs::remove_file(d.join("specs/beta.toml")).unwrap();
    let p = d.join("specs/alpha.toml");
    let spec = read(p.clone()).replace("epochs = 1", "epochs = 5\nvalidation = 0.2");
    std::fs::write(&p, &spec).unwrap();
    let out = lesser(&d, &["--jobs", "2", "--out", "every"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(
        &p,
        spec.replace("epochs = 5", "epochs = 5\ncurve_every = 2"),
    )
    .unwrap();
    let out = lesser(&d, &["--jobs", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The same rounds: errors and weights alike (the spec hash aside).
    let rows = |dir: &str| {
        let mut rows = common::csv_rows(&read(d.join(dir).join("results.csv")));
        for r in &mut rows {
            r.remove("spec_hash");
        }
        rows
    };
    assert_eq!(rows("reports"), rows("every"));
    let curves = read(d.join("reports/curves.csv"));
    let epochs = |metric: &str| -> Vec<String> {
        common::csv_rows(&curves)
            .into_iter()
            .filter(|r| r["variant"] == "alpha" && r["round"] == "0" && r["metric"] == metric)
            .map(|r| r["epoch"].clone())
            .collect()
    };
    assert_eq!(epochs("train_loss"), ["1", "2", "3", "4", "5"]);
    assert_eq!(epochs("test_error"), ["2", "4", "5"]);
    assert_eq!(epochs("validation_error"), ["2", "4", "5"]);
    // Every measured epoch's errors are the full curve's.
    let full = read(d.join("every/curves.csv"));
    for line in curves.lines() {
        assert!(full.lines().any(|l| l == line), "{line}");
    }
    // The store keeps the thinned curve, validation errors included.
    std::fs::remove_file(d.join("reports/curves.csv")).unwrap();
    let out = command(&d)
        .args(["report", "--data", &common::data(), "--pairs", "100"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read(d.join("reports/curves.csv")), curves);
    // Zero is refused with its place.
    std::fs::write(
        &p,
        spec.replace("epochs = 5", "epochs = 5\ncurve_every = 0"),
    )
    .unwrap();
    let out = lesser(&d, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("alpha.toml:15:1: train.curve_every: must be at least 1"),
        "{}",
        stderr(&out)
    );
}

/// The error axis fits the epochs after the first tenth: a curve that falls from 50% to 1%
/// is drawn on an axis that shows 1% clearly, its first epochs cut at the top and said so;
/// one that does not fall far keeps its whole range.
#[test]
fn the_error_axis_fits_the_settled_epochs() {
    let falling: Vec<(f64, f64, f64)> = (0..20)
        .map(|e| {
            let err = if e < 2 {
                0.5
            } else {
                0.01 + 0.001 * f64::from(20 - e)
            };
            (1.0, err, err)
        })
        .collect();
    let r = record("a", 0, 0.011, &falling);
    let c = figures::curves("a", &[&r]).unwrap();
    let svg = figures::curves_svg(&c);
    let text = |t: &str| format!(">\n{t}\n</text>");
    assert!(
        svg.contains(&text("error (%; the first epochs cut at the top)")),
        "{svg}"
    );
    // The top label is a few percent, not 50.
    assert!(
        svg.contains(&text("3.0")) && !svg.contains(&text("50.0")),
        "{svg}"
    );
    let flat: Vec<(f64, f64, f64)> = (0..20).map(|_| (1.0, 0.2, 0.2)).collect();
    let r = record("b", 0, 0.2, &flat);
    let svg = figures::curves_svg(&figures::curves("b", &[&r]).unwrap());
    assert!(svg.contains(&text("error (%)")), "{svg}");
}
