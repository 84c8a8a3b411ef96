//! Hostile input and hostile conditions, through the `lesser` binary: diverged networks that
//! hide behind a finite loss, impossible numbers in stores and results, concurrent runs on one
//! store, closed pipes and full disks, clashing names, option injection, and resource limits.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};

use common::{
    TINY, command, data, lesser, read, setup, stderr, store_dir, store_files, stored, temp,
    without_seconds,
};

/// The direct network of the seed with a wild SGD: round 1 of this variant (its seeds come
/// from its name) ends with finite losses but blows up in its third epoch.
const WILD: &str = r#"
[model]
weight_sharing = true
aux_loss = 1.0
digit = [
  { layer = "conv2d", out = 6, kernel = 3 },
  { layer = "relu" },
  { layer = "max_pool2d", kernel = 2 },
  { layer = "conv2d", out = 16, kernel = 3 },
  { layer = "relu" },
  { layer = "flatten" },
  { layer = "linear", in = 256, out = 120 },
  { layer = "relu" },
  { layer = "linear", out = 84 },
  { layer = "relu" },
  { layer = "linear", out = 10 },
]
head = [
  { layer = "linear", in = 20, out = 12 },
  { layer = "relu" },
  { layer = "linear", out = 8 },
  { layer = "relu" },
  { layer = "linear", out = 2 },
]
[train]
epochs = 3
repeats = 2
optimizer = { kind = "sgd", lr = 1, momentum = 0.9 }
"#;

#[test]
fn a_network_gone_non_finite_is_diverged_not_ok() {
    let d = temp("robust", "wild");
    std::fs::write(d.join("specs/w_direct_standardize_1.toml"), WILD).unwrap();
    let out = lesser(&d, &["--pairs", "300"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let results = read(d.join("reports/results.csv"));
    let round1 = results.lines().nth(2).unwrap();
    assert!(
        round1.starts_with("w_direct_standardize_1,1,") && round1.contains(",diverged@3,"),
        "{results}"
    );
    let report = read(d.join("reports/REPORT.md"));
    assert!(report.contains("| 2 (1 diverged) |"), "{report}");
}

#[test]
fn a_stored_round_with_bad_bytes_or_impossible_numbers_is_retrained() {
    let d = setup("robust", "store");
    assert!(lesser(&d, &["--only", "alpha"]).status.success());
    let full = stored(&store_dir(&d));
    let files = store_files(&store_dir(&d));
    assert_eq!(files.len(), 2);
    // One round's test error made impossible (a store line is the version, the seconds, then
    // the results fields), and a file of bytes that are not UTF-8 beside them.
    let line = read(files[1].clone());
    let mut f: Vec<&str> = line.trim_end().split(',').collect();
    let test_error = lesser::record::RESULTS_HEADER
        .iter()
        .position(|c| *c == "test_error")
        .unwrap();
    f[2 + test_error] = "2.0000";
    std::fs::write(&files[1], format!("{}\n", f.join(","))).unwrap();
    std::fs::write(store_dir(&d).join("garbage.csv"), b"\xff\xfe garbage\n").unwrap();
    let out = lesser(&d, &["--only", "alpha"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("2 rounds (1 trained, 1 reused"),
        "{}",
        stderr(&out)
    );
    // The retrained round replaced the damaged one, and equals the original.
    std::fs::remove_file(store_dir(&d).join("garbage.csv")).unwrap();
    assert_eq!(
        without_seconds(&stored(&store_dir(&d))),
        without_seconds(&full)
    );
    // `--fresh` works on such a store too.
    std::fs::write(store_dir(&d).join("garbage.csv"), b"\xff\n").unwrap();
    assert!(lesser(&d, &["--only", "alpha", "--fresh"]).status.success());
}

#[test]
fn concurrent_runs_on_one_store_lose_and_duplicate_nothing() {
    let d = setup("robust", "concurrent");
    for name in ["alpha", "beta"] {
        let p = d.join(format!("specs/{name}.toml"));
        std::fs::write(&p, read(p.clone()).replace("repeats = 2", "repeats = 8")).unwrap();
    }
    let spawn = |only: &[&str]| {
        command(&d)
            .args(["run", "--data", &data(), "--pairs", "300", "--jobs", "1"])
            .arg("--only")
            .args(only)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Each process knows only its own variant: its compaction must keep the other's rounds.
    // Two of each: the same round stored twice must still be one line.
    let children = [
        spawn(&["alpha"]),
        spawn(&["beta"]),
        spawn(&["alpha"]),
        spawn(&["beta"]),
    ];
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Every round of both variants is stored, once.
    let store = stored(&store_dir(&d));
    assert_eq!(store.lines().count(), 16, "{store}");
    let out = lesser(&d, &["--pairs", "300"]);
    assert!(
        stderr(&out).contains("16 rounds (0 trained, 16 reused"),
        "{}",
        stderr(&out)
    );
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(store_dir(&d))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Runs `lesser ARGS` in `dir` with its stdout (or stderr) a pipe whose reader is gone.
fn with_closed_pipe(dir: &Path, args: &[&str], on_stderr: bool) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut c = command(dir);
    c.args(args);
    if on_stderr {
        c.stderr(writer).stdout(Stdio::null());
    } else {
        c.stdout(writer).stderr(Stdio::piped());
    }
    c.output().unwrap()
}

#[test]
fn closed_pipes_end_quietly_and_full_disks_say_so() {
    let d = setup("robust", "pipes");
    let root = env!("CARGO_MANIFEST_DIR");
    // `lesser check | head`: the reader went away; no panic, success.
    let out = with_closed_pipe(Path::new(root), &["check"], false);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    // `lesser run | head`: the reports are written all the same.
    let data = data();
    let run = ["run", "--data", data.as_str(), "--pairs", "100"];
    let out = with_closed_pipe(&d, &run, false);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(d.join("reports/REPORT.md").is_file());
    // Progress on a closed stderr never stops a sweep.
    let out = with_closed_pipe(
        &d,
        &[&run[..], &["--fresh", "--out", "quiet"]].concat(),
        true,
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(d.join("quiet/results.csv").is_file());
    // A full disk behind stdout: one line, exit 3.
    let check = vec!["check", "--data", common::DATA, "specs"];
    for args in [check, vec!["diff", "reports", "reports"]] {
        let out = command(&d)
            .args(&args)
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).trim(),
            "error: writing to standard output: No space left on device (os error 28)"
        );
    }
}

fn results_row(variant: &str, round: usize, err: &str, status: &str) -> String {
    format!(
        "{variant},{round},{},7,00000000000000aa,100,25,1000,0.1,{},{err},,{status},\
         00000000000000dd,,\n",
        round + 1,
        if err.is_empty() { "" } else { "0.0500" }
    )
}

fn results_file(rows: &[(&str, &str)]) -> String {
    let mut s = lesser::record::RESULTS_HEADER.join(",") + "\n";
    for (i, (err, status)) in rows.iter().enumerate() {
        s += &results_row("v", i, err, status);
    }
    s
}

#[test]
fn diff_refuses_impossible_numbers_and_gates_on_lost_rounds() {
    let d = temp("robust", "diff");
    let ok = results_file(&[("0.2000", "ok"), ("0.2100", "ok"), ("0.1900", "ok")]);
    std::fs::write(d.join("old.csv"), &ok).unwrap();
    for bad in ["NaN", "inf", "2.0000", "-1"] {
        std::fs::write(d.join("bad.csv"), ok.replace("0.2100", bad)).unwrap();
        let out = command(&d)
            .args(["diff", "old.csv", "bad.csv"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert_eq!(
            stderr(&out).trim(),
            format!("error: bad.csv: row 3: test_error `{bad}` is not an error rate in [0, 1]")
        );
    }
    // Every new round diverged, or some were lost: reported, and the gate fails.
    let diverged = results_file(&[("", "diverged@1"), ("", "diverged@2"), ("", "diverged@1")]);
    let lost = results_file(&[("0.2000", "ok"), ("", "diverged@1"), ("0.1900", "ok")]);
    for (name, text, verdict) in [
        (
            "diverged.csv",
            diverged,
            "every round diverged (0 of 3 rounds with an error)",
        ),
        (
            "lost.csv",
            lost,
            "lost rounds (2 of 3 rounds with an error)",
        ),
    ] {
        std::fs::write(d.join(name), text).unwrap();
        let out = command(&d)
            .args(["diff", "old.csv", name, "--fail-on-regression"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains(verdict), "{table}");
    }
}

#[test]
fn diff_never_hands_an_option_to_git() {
    let d = temp("robust", "git");
    assert!(
        std::process::Command::new("git")
            .current_dir(&d)
            .args(["init", "-q"])
            .status()
            .unwrap()
            .success()
    );
    let target = d.join("overwritten");
    for arg in [format!("--output={}", target.display()), "-p".to_string()] {
        let out = command(&d).args(["diff", "--", &arg]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("not a reports directory"),
            "{}",
            stderr(&out)
        );
    }
    assert!(!target.exists());
}

#[test]
fn clashing_names_are_refused_and_a_file_named_twice_counts_once() {
    let d = setup("robust", "names");
    std::fs::create_dir_all(d.join("more")).unwrap();
    std::fs::write(d.join("more/alpha.toml"), TINY.replace("DESC", "other")).unwrap();
    let out = lesser(&d, &["--specs", "specs", "more"]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.contains("more/alpha.toml: variant name `alpha` is also the name of specs/alpha.toml"),
        "{e}"
    );
    assert!(!d.join("reports/.cache").exists());
    let out = lesser(
        &d,
        &["--specs", "specs/alpha.toml", "specs", "specs/alpha.toml"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let results = read(d.join("reports/results.csv"));
    assert_eq!(
        results.lines().filter(|l| l.starts_with("alpha,")).count(),
        2
    );
    // Named first, alpha is reported first.
    assert!(results.lines().nth(1).unwrap().starts_with("alpha,0,"));
}

#[test]
fn resource_limits_are_checked_before_training() {
    let d = temp("robust", "limits");
    let wide = TINY.replace(
        "{ layer = \"conv2d\", out = 2, kernel = 3, stride = 2 },",
        "{ layer = \"conv2d\", out = 80000, kernel = 1 }, { layer = \"max_pool2d\", kernel = 14 },",
    )
    .replace("in = 72, ", "");
    std::fs::write(d.join("specs/wide.toml"), wide).unwrap();
    let out = lesser(&d, &[]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.contains("wide.toml: spec wide: a round needs about") && e.contains("--max-memory"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(!d.join("reports").exists());
    std::fs::remove_file(d.join("specs/wide.toml")).unwrap();
    std::fs::write(d.join("specs/tiny.toml"), TINY.replace("DESC", "t")).unwrap();
    for (args, says) in [
        (
            vec!["--jobs", "100000"],
            "--jobs 100000: must be between 1 and 1024",
        ),
        (vec!["--jobs", "0"], "--jobs 0: must be between 1 and 1024"),
        (
            vec!["--pairs", "18446744073709551615"],
            "--pairs 18446744073709551615: at most 100000000",
        ),
    ] {
        let out = lesser(&d, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    // bench checks what it is given too.
    for (args, says) in [
        (vec!["--only", "ghost"], "--only ghost: no such variant"),
        (vec!["--rounds", "0"], "must be at least 1"),
        (vec!["--pairs", "0"], "must be at least 1"),
        (vec!["--epochs", "0"], "must be at least 1"),
    ] {
        let out = command(&d)
            .args(["bench", "--data", &data()])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
}

#[test]
fn a_description_cannot_break_the_report_table() {
    let d = temp("robust", "table");
    let text = TINY.replace(
        "description = \"tiny DESC\"",
        "description = \"\"\"two\nlines | and a pipe\"\"\"",
    );
    std::fs::write(d.join("specs/t.toml"), text).unwrap();
    let out = lesser(&d, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = read(d.join("reports/REPORT.md"));
    let row = report.lines().find(|l| l.starts_with("| t |")).unwrap();
    assert!(row.ends_with("| two lines \\| and a pipe |"), "{row}");
    // A name that would break the tables and CSV files is refused.
    std::fs::write(d.join("specs/a|b.toml"), TINY.replace("DESC", "x")).unwrap();
    let out = command(&d)
        .args(["check", "--data", common::DATA, "specs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("variant name `a|b`"),
        "{}",
        stderr(&out)
    );
}
