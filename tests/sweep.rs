//! The sweep end to end, through the `lesser` binary: reports, determinism across `--jobs`
//! and reruns, diverged rounds, interruption and resumption.

mod common;

use std::process::Command;

use common::{TINY, data, lesser, read, store_dir, store_files, stored, without_seconds};

fn setup(name: &str) -> std::path::PathBuf {
    common::setup("sweep", name)
}

#[test]
fn tiny_sweep_writes_all_three_files() {
    let d = setup("tiny");
    let out = lesser(&d, &["--jobs", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = read(d.join("reports/results.csv"));
    assert!(results.starts_with(&lesser::record::RESULTS_HEADER.join(",")));
    let rows = common::csv_rows(&results);
    assert_eq!(rows.len(), 4, "{results}");
    let names: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["variant"].as_str(), r["round"].as_str()))
        .collect();
    assert_eq!(
        names,
        [("alpha", "0"), ("alpha", "1"), ("beta", "0"), ("beta", "1")]
    );
    // Round r has the same data seed in both variants, different init seeds.
    assert_eq!(rows[0]["data_seed"], rows[2]["data_seed"]);
    assert_ne!(rows[0]["init_seed"], rows[2]["init_seed"]);
    assert_ne!(rows[0]["data_seed"], rows[1]["data_seed"]);
    // Errors are fractions of 100 test pairs; alpha has a digit error, params are exact.
    let err: f64 = rows[0]["test_error"].parse().unwrap();
    assert!((0.0..=1.0).contains(&err) && (err * 100.0).fract().abs() < 1e-9);
    assert!(!rows[0]["digit_test_error"].is_empty());
    assert_eq!(
        rows[0]["params"],
        (2 * 9 + 2 + 72 * 10 + 10 + 20 * 2 + 2).to_string()
    );
    let report = read(d.join("reports/REPORT.md"));
    assert!(report.contains("| alpha | 792 | 778 | 2 |"), "{report}");
    assert!(report.contains("| beta | 792 | 778 | 2 |"), "{report}");
    assert!(report.contains("100 training pairs and 100 test pairs"));
    let timing = read(d.join("reports/timing.csv"));
    assert_eq!(timing.lines().count(), 5);
    assert!(timing.starts_with("variant,round,seconds\n"));
}

#[test]
fn results_do_not_depend_on_jobs_or_reruns() {
    let d = setup("jobs");
    assert!(
        lesser(&d, &["--jobs", "1", "--out", "one"])
            .status
            .success()
    );
    assert!(
        lesser(&d, &["--jobs", "2", "--out", "two"])
            .status
            .success()
    );
    assert!(
        lesser(&d, &["--jobs", "2", "--out", "two", "--fresh"])
            .status
            .success()
    );
    for f in ["results.csv", "REPORT.md"] {
        assert_eq!(
            read(d.join("one").join(f)),
            read(d.join("two").join(f)),
            "{f}"
        );
    }
    // A rerun reuses the store and writes the same bytes, timing included (a stored round
    // keeps the seconds it took to train).
    let files = ["REPORT.md", "results.csv", "timing.csv"];
    let before: Vec<String> = files.iter().map(|f| read(d.join("two").join(f))).collect();
    let out = lesser(&d, &["--jobs", "2", "--out", "two"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 trained, 4 reused"));
    let after: Vec<String> = files.iter().map(|f| read(d.join("two").join(f))).collect();
    assert_eq!(after, before);
}

#[test]
fn a_diverged_round_is_recorded_and_the_sweep_goes_on() {
    let d = setup("diverge");
    std::fs::write(
        d.join("specs/wild.toml"),
        TINY.replace(
            "repeats = 2",
            "repeats = 2\noptimizer = { kind = \"sgd\", lr = 1e30 }\n[data]\nnormalize = \"none\"",
        ),
    )
    .unwrap();
    let out = lesser(&d, &["--jobs", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = read(d.join("reports/results.csv"));
    let wild: Vec<&str> = results.lines().filter(|l| l.starts_with("wild,")).collect();
    assert_eq!(wild.len(), 2);
    for l in wild {
        assert!(l.contains(",diverged@1,"), "{l}");
    }
    // The other variants still have their numbers.
    assert_eq!(results.lines().filter(|l| l.contains(",ok,")).count(), 4);
    let report = read(d.join("reports/REPORT.md"));
    assert!(
        report.contains("| wild | 792 | 778 | 2 (2 diverged) | — |"),
        "{report}"
    );
}

#[test]
fn an_interrupted_sweep_keeps_and_reuses_finished_rounds() {
    let d = setup("kill");
    for name in ["alpha", "beta"] {
        let p = d.join(format!("specs/{name}.toml"));
        std::fs::write(
            &p,
            read(p.clone())
                .replace("repeats = 2", "repeats = 10")
                .replace("epochs = 1", "epochs = 5"),
        )
        .unwrap();
    }
    let store = store_dir(&d);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lesser"))
        .current_dir(&d)
        .args(["run", "--data", &data(), "--pairs", "500", "--jobs", "1"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once at least two rounds are stored, well before all twenty are.
    let t = std::time::Instant::now();
    loop {
        let n = store_files(&store).len();
        if n >= 2 {
            break;
        }
        assert!(t.elapsed().as_secs() < 120, "no round finished");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = store_files(&store).len();
    assert!((2..20).contains(&kept), "{kept} rounds stored");
    assert!(!d.join("reports/results.csv").exists());
    // The rerun trains only what is missing, and matches an uninterrupted sweep.
    let out = lesser(&d, &["--pairs", "500", "--jobs", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("20 rounds ({} trained, {kept} reused", 20 - kept)),
        "{err}"
    );
    let resumed = read(d.join("reports/results.csv"));
    assert!(
        lesser(
            &d,
            &["--pairs", "500", "--jobs", "2", "--fresh", "--out", "clean"]
        )
        .status
        .success()
    );
    assert_eq!(resumed, read(d.join("clean/results.csv")));
    assert_eq!(
        read(d.join("reports/REPORT.md")),
        read(d.join("clean/REPORT.md"))
    );
}

#[test]
fn bad_input_fails_cleanly() {
    let d = setup("bad");
    // Too many pairs for the pools.
    let out = lesser(&d, &["--pairs", "5000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pairs 5000"));
    // A missing data directory.
    let out = Command::new(env!("CARGO_BIN_EXE_lesser"))
        .current_dir(&d)
        .args(["run", "--data", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere: data directory not found"));
    // An unknown variant.
    let out = lesser(&d, &["--only", "gamma"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--only gamma: no such variant"));
    // A bad spec stops the sweep before anything trains.
    std::fs::write(d.join("specs/broken.toml"), "[model]\nweight_sharing = 3\n").unwrap();
    let out = lesser(&d, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("broken.toml:2:1: model.weight_sharing: invalid type")
    );
    assert!(!store_dir(&d).exists());
}

#[test]
fn a_changed_spec_retrains_only_its_variant() {
    let d = setup("change");
    assert!(lesser(&d, &["--jobs", "2"]).status.success());
    let before = read(d.join("reports/results.csv"));
    let beta = d.join("specs/beta.toml");
    std::fs::write(
        &beta,
        read(beta.clone()).replace("batch_size = 50", "batch_size = 25"),
    )
    .unwrap();
    let out = lesser(&d, &["--jobs", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 rounds (2 trained, 2 reused"), "{err}");
    let after = read(d.join("reports/results.csv"));
    let rows = |s: &str, v: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with(v))
            .map(String::from)
            .collect()
    };
    assert_eq!(rows(&before, "alpha,"), rows(&after, "alpha,"));
    assert_ne!(rows(&before, "beta,"), rows(&after, "beta,"));
    // The store keeps one line per distinct round: 2 alpha + 2 old beta + 2 new beta.
    assert_eq!(store_files(&store_dir(&d)).len(), 6);
    // `--fresh` retrains all, and the store does not grow for identical reruns.
    let out = lesser(&d, &["--jobs", "2", "--fresh"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 rounds (4 trained, 0 reused"));
    assert_eq!(store_files(&store_dir(&d)).len(), 6);
}

#[test]
fn a_damaged_stored_round_is_ignored() {
    let d = setup("crash");
    assert!(lesser(&d, &["--only", "alpha"]).status.success());
    let store = store_dir(&d);
    let full = stored(&store);
    // A round's file cut short (as by a disk that failed mid-write).
    let files = store_files(&store);
    let second = read(files[1].clone());
    std::fs::write(&files[1], &second[..second.len() / 2]).unwrap();
    let out = lesser(&d, &["--only", "alpha"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 rounds (1 trained, 1 reused"), "{err}");
    // The same rounds again; only the wall-clock seconds may differ.
    assert_eq!(without_seconds(&stored(&store)), without_seconds(&full));
}

/// A spec's `baseline` puts it against that variant in REPORT.md, with the numbers `lesser
/// diff` gives for the same two sets of rounds; a baseline that names no variant is refused
/// with the file and key.
#[test]
fn a_baseline_is_compared_round_by_round() {
    let d = setup("baseline");
    let beta = read(d.join("specs/beta.toml"));
    std::fs::write(
        d.join("specs/beta.toml"),
        format!("baseline = \"alpha\"\n{beta}").replace("repeats = 2", "repeats = 3"),
    )
    .unwrap();
    let alpha = read(d.join("specs/alpha.toml")).replace("repeats = 2", "repeats = 3");
    std::fs::write(d.join("specs/alpha.toml"), alpha).unwrap();
    let out = lesser(&d, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = read(d.join("reports/REPORT.md"));
    assert!(report.contains("## Against baselines"), "{report}");
    let row = report
        .lines()
        .find(|l| l.starts_with("| beta | alpha |"))
        .unwrap_or_else(|| panic!("no baseline row: {report}"));
    // The same comparison through `lesser diff`, alpha's rounds as old and beta's as new.
    let results = read(d.join("reports/results.csv"));
    let mut lines = results.lines();
    let header = lines.next().unwrap();
    let only = |v: &str, as_: &str| {
        let rows: Vec<String> = results
            .lines()
            .filter(|l| l.starts_with(&format!("{v},")))
            .map(|l| l.replacen(v, as_, 1))
            .collect();
        format!("{header}\n{}\n", rows.join("\n"))
    };
    std::fs::write(d.join("old.csv"), only("alpha", "beta")).unwrap();
    std::fs::write(d.join("new.csv"), only("beta", "beta")).unwrap();
    let diff = common::command(&d)
        .args(["diff", "old.csv", "new.csv", "--format", "markdown"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&diff.stdout);
    let want = text.lines().find(|l| l.starts_with("| beta |")).unwrap();
    // Same cells after the baseline's name, but the spec-changed note diff adds.
    let cells = |l: &str| -> Vec<String> {
        l.split('|')
            .map(|c| c.trim().replace(" (spec changed)", ""))
            .collect()
    };
    let mut got = cells(row);
    got.remove(2);
    assert_eq!(got, cells(want), "{row}\n{want}");
    assert!(row.contains("paired t"), "{row}");

    std::fs::write(
        d.join("specs/beta.toml"),
        read(d.join("specs/beta.toml")).replace("baseline = \"alpha\"", "baseline = \"gamma\""),
    )
    .unwrap();
    let out = lesser(&d, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("beta.toml") && err.contains("baseline") && err.contains("\"gamma\""),
        "{err}"
    );
}

/// `lesser report` rebuilds from the store the bytes the run wrote, at a pair count whose
/// errors are not multiples of 1/10,000 (the store keeps exact numbers, not the rounded
/// ones `results.csv` shows): REPORT.md (its paired comparison is the most sensitive to
/// rounding), results.csv, curves.csv and every figure.
#[test]
fn report_rebuilds_the_run_bytes_at_any_pair_count() {
    let d = setup("exact");
    let beta = read(d.join("specs/beta.toml"));
    let beta = format!("baseline = \"alpha\"\n{beta}").replace("epochs = 1", "epochs = 3");
    std::fs::write(d.join("specs/beta.toml"), beta).unwrap();
    let args = ["--pairs", "300", "--repeats", "10"];
    assert!(lesser(&d, &args).status.success());
    let files = [
        "REPORT.md",
        "results.csv",
        "curves.csv",
        "figures/summary.svg",
    ];
    let figures = ["figures/alpha.svg", "figures/beta.svg"];
    let written: Vec<String> = files
        .iter()
        .chain(&figures)
        .map(|f| read(d.join("reports").join(f)))
        .collect();
    for f in files.iter().chain(&figures) {
        std::fs::remove_file(d.join("reports").join(f)).unwrap();
    }
    let out = common::command(&d)
        .args(["report", "--data", &common::data()])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    for (f, before) in files.iter().chain(&figures).zip(&written) {
        assert_eq!(&read(d.join("reports").join(f)), before, "{f}");
    }
}

/// `lesser report` with options that match no stored round leaves the reports as they are
/// and says which options the store holds.
#[test]
fn report_with_other_options_leaves_the_reports() {
    let d = setup("otheroptions");
    assert!(lesser(&d, &["--epochs", "2"]).status.success());
    let before = read(d.join("reports/REPORT.md"));
    let out = common::command(&d)
        .args(["report", "--data", &common::data(), "--pairs", "100"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = common::stderr(&out);
    assert!(e.contains("no stored round matches these options"), "{e}");
    assert!(e.contains("--pairs 100 with 2 epochs"), "{e}");
    assert_eq!(read(d.join("reports/REPORT.md")), before);
    assert!(read(d.join("reports/results.csv")).lines().count() == 5);
}

/// REPORT.md puts a variant beside its published figures only where its spec gives some:
/// ours and theirs, the weights (with the difference where they differ) and the test.
#[test]
fn published_figures_are_shown_where_a_spec_gives_them() {
    let d = setup("published");
    assert!(lesser(&d, &[]).status.success());
    let report = read(d.join("reports/REPORT.md"));
    assert!(
        !report.contains("## Against the published figures"),
        "{report}"
    );
    assert!(
        report.contains("| variant | params | weights | rounds |"),
        "{report}"
    );
    let alpha = read(d.join("specs/alpha.toml"));
    let full = "reference = { mean = 0.5, std = 0.05, best = 0.4, worst = 0.6, rounds = 10, \
                weights = 700 }\n";
    std::fs::write(d.join("specs/alpha.toml"), format!("{full}{alpha}")).unwrap();
    std::fs::write(
        d.join("specs/beta.toml"),
        format!("reference = 0.5\n{}", read(d.join("specs/beta.toml"))),
    )
    .unwrap();
    assert!(lesser(&d, &[]).status.success());
    let report = read(d.join("reports/REPORT.md"));
    let section = report
        .split("## Against the published figures")
        .nth(1)
        .unwrap_or_else(|| panic!("{report}"));
    // alpha: 18 + 720 + 40 weights (a shared digit network and the head; 792 params).
    let rows: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("| alpha") || l.starts_with("| beta"))
        .collect();
    assert_eq!(rows.len(), 2, "{section}");
    assert!(
        rows[0].contains("| 50.0% | 5.0% | 40.0% | 60.0% | 778 | 700 (ours +78) |"),
        "{}",
        rows[0]
    );
    assert!(rows[0].ends_with("| Welch t |"), "{}", rows[0]);
    assert!(
        rows[1].contains("| 50.0% | — | — | — | 778 | — |"),
        "{}",
        rows[1]
    );
    assert!(rows[1].ends_with("| one-sample t |"), "{}", rows[1]);
    // A reference out of range is refused with its key.
    std::fs::write(
        d.join("specs/beta.toml"),
        format!("reference = {{ mean = 2.0 }}\n{alpha}"),
    )
    .unwrap();
    let out = lesser(&d, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        common::stderr(&out).contains("beta.toml:1:15: reference.mean: a published test error"),
        "{}",
        common::stderr(&out)
    );
}

/// Text from a spec reaches REPORT.md as text: no HTML, image or link, and a name with
/// Markdown's brackets still links to its own figure.
#[test]
fn spec_text_reaches_the_report_escaped() {
    let d = common::temp("sweep", "escaped");
    let evil = "<script>alert(1)</script> ![i](http://evil/x.png)";
    let spec = common::TINY.replace("tiny DESC", evil);
    std::fs::write(d.join("specs/x[1].toml"), spec).unwrap();
    let out = lesser(&d, &[]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let report = read(d.join("reports/REPORT.md"));
    assert!(
        !report.contains("<script") && report.contains("&lt;/script> \\![i\\](http\\://evil"),
        "{report}"
    );
    let link = report
        .lines()
        .find(|l| l.starts_with("![x[1]](figures/"))
        .unwrap_or_else(|| panic!("{report}"));
    let file = link.trim_start_matches("![x[1]](").trim_end_matches(')');
    assert!(d.join("reports").join(file).is_file(), "{link}");
}
