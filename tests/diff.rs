//! `lesser diff`: paired statistics between two sets of results.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lesser::diff::{Test, Verdict, diff, paired, parse_results, welch};
use lesser::record::RESULTS_HEADER;

/// A results.csv with one variant `v` whose rounds have these test errors and data seeds;
/// `hash` names the spec hash (written as 16 hex digits, as the runner writes hashes).
fn results(rows: &[(&str, u64, f64)], hash: &str) -> String {
    let hash: String = format!(
        "{:0>16}",
        hash.bytes().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let mut s = RESULTS_HEADER.join(",") + "\n";
    for (i, (v, seed, err)) in rows.iter().enumerate() {
        s += &format!(
            "{v},{i},{seed},{},{hash},100,25,1000,0.1,0.0500,{err:.4},,ok,00000000000000dd,,\n",
            seed + 7
        );
    }
    s
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lesser-diff-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn lesser(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lesser"))
        .current_dir(dir)
        .arg("diff")
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

const OLD: [(&str, u64, f64); 3] = [("v", 1, 0.20), ("v", 2, 0.20), ("v", 3, 0.20)];
const NEW: [(&str, u64, f64); 3] = [("v", 1, 0.17), ("v", 2, 0.16), ("v", 3, 0.15)];

#[test]
fn a_directory_against_itself_shows_no_change() {
    let d = temp("self");
    std::fs::create_dir_all(d.join("reports")).unwrap();
    std::fs::write(d.join("reports/results.csv"), results(&OLD, "h")).unwrap();
    let out = lesser(&d, &["reports", "reports", "--fail-on-regression"]);
    assert_eq!(out.status.code(), Some(0));
    let t = text(&out);
    assert!(
        t.contains("no change (identical errors; p undefined)"),
        "{t}"
    );
    // NEW defaults to ./reports.
    assert_eq!(text(&lesser(&d, &["reports"])), t);
}

#[test]
fn a_constructed_improvement_is_better_with_the_hand_computed_p() {
    // Differences -0.03, -0.04, -0.05: mean -0.04, sd 0.01, se 0.01/sqrt(3), t = -6.9282 on
    // 2 degrees of freedom, where the t CDF is 1/2 + t / (2 sqrt(2 + t^2)), so
    // p = 1 - |t| / sqrt(2 + t^2) = 1 - 6.9282 / 7.0711 = 0.020204.
    let (change, p, ci) = paired(&[(0.20, 0.17), (0.20, 0.16), (0.20, 0.15)], 0.05);
    assert!((change + 0.04).abs() < 1e-12);
    let t: f64 = 0.04 / (0.01 / 3f64.sqrt());
    let by_hand = 1.0 - t / (2.0 + t * t).sqrt();
    assert!((by_hand - 0.020204).abs() < 1e-6);
    assert!((p.unwrap() - by_hand).abs() < 1e-6, "{p:?}");
    // 95% interval: -0.04 -/+ t(0.975, 2) * se, t(0.975, 2) = 4.302653.
    let (lo, hi) = ci.unwrap();
    let half = 4.302653 * 0.01 / 3f64.sqrt();
    assert!((lo - (-0.04 - half)).abs() < 1e-6 && (hi - (-0.04 + half)).abs() < 1e-6);

    let old = parse_results(&results(&OLD, "h"), "old").unwrap();
    let new = parse_results(&results(&NEW, "h"), "new").unwrap();
    let c = &diff(&old, &new, 0.05)[0];
    assert_eq!((c.test, c.verdict, c.n), (Test::Paired, Verdict::Better, 3));
    assert!(!c.spec_changed);
    // Stricter level: no longer clear.
    assert_eq!(diff(&old, &new, 0.01)[0].verdict, Verdict::NoClearChange);
    // Through the command line, with the markdown format.
    let d = temp("better");
    std::fs::write(d.join("old.csv"), results(&OLD, "h")).unwrap();
    std::fs::write(d.join("new.csv"), results(&NEW, "h2")).unwrap();
    let out = lesser(&d, &["old.csv", "new.csv", "--format", "markdown"]);
    let t = text(&out);
    assert!(
        t.contains("| v | 20.0% | 16.0% | -4.0 | [-6.5, -1.5] | 0.020 | 0.020 | paired t | 3 | better (spec changed) |"),
        "{t}"
    );
}

/// Results files from before the `weights` and `validation_error` columns are still read.
#[test]
fn results_without_the_newer_columns_are_read() {
    let text = results(&OLD, "h");
    let drop_last = |t: &str| -> String {
        t.lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n")
            .collect()
    };
    let without_validation = drop_last(&text);
    assert!(without_validation.contains(",data_hash,weights\n"));
    let without_weights = drop_last(&without_validation);
    assert!(without_weights.contains(",status,data_hash\n"));
    let new = parse_results(&text, "new").unwrap();
    for old in [without_validation, without_weights] {
        let a = parse_results(&old, "old").unwrap();
        assert_eq!(diff(&a, &new, 0.05)[0].verdict, Verdict::Identical);
    }
}

#[test]
fn unpaired_rounds_fall_back_to_welch() {
    let other: Vec<(&str, u64, f64)> = NEW.iter().map(|&(v, s, e)| (v, s + 100, e)).collect();
    let old = parse_results(&results(&OLD, "h"), "old").unwrap();
    let new = parse_results(&results(&other, "h"), "new").unwrap();
    let c = &diff(&old, &new, 0.05)[0];
    assert_eq!(c.test, Test::Welch);
    let (change, p, _) = welch(&[0.20, 0.20, 0.20], &[0.17, 0.16, 0.15], 0.05);
    assert!((change + 0.04).abs() < 1e-12);
    // Old has no variance, so Welch reduces to a one-sample test on new: same t and df as
    // the paired case above.
    assert!((p.unwrap() - 0.020204).abs() < 1e-5);
    // Added and removed variants are listed.
    let w: Vec<(&str, u64, f64)> = NEW.iter().map(|&(_, s, e)| ("w", s, e)).collect();
    let new = parse_results(&results(&w, "h"), "new").unwrap();
    let verdicts: Vec<_> = diff(&old, &new, 0.05).iter().map(|c| c.verdict).collect();
    assert_eq!(verdicts, vec![Verdict::Added, Verdict::Removed]);
}

#[test]
fn fail_on_regression_sets_the_exit_code() {
    let d = temp("gate");
    std::fs::write(d.join("good.csv"), results(&NEW, "h")).unwrap();
    std::fs::write(d.join("bad.csv"), results(&OLD, "h")).unwrap();
    let worse = lesser(&d, &["good.csv", "bad.csv", "--fail-on-regression"]);
    assert_eq!(worse.status.code(), Some(1));
    assert!(text(&worse).contains("worse"));
    assert_eq!(lesser(&d, &["good.csv", "bad.csv"]).status.code(), Some(0));
    let better = lesser(&d, &["bad.csv", "good.csv", "--fail-on-regression"]);
    assert_eq!(better.status.code(), Some(0));
    let csv = text(&lesser(&d, &["bad.csv", "good.csv", "--format", "csv"]));
    assert!(csv.starts_with("variant,old,new,"), "{csv}");
}

#[test]
fn a_git_revision_is_read_from_history() {
    let d = temp("git");
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .current_dir(&d)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    };
    git(&["init", "-q"]);
    std::fs::create_dir_all(d.join("reports")).unwrap();
    std::fs::write(d.join("reports/results.csv"), results(&OLD, "h")).unwrap();
    git(&["add", "."]);
    git(&["commit", "-qm", "old"]);
    std::fs::write(d.join("reports/results.csv"), results(&NEW, "h")).unwrap();
    let out = lesser(&d, &["HEAD"]);
    let t = text(&out);
    assert!(
        t.contains("better") && t.contains("old: HEAD:reports/results.csv"),
        "{t}"
    );
    // A directory named like a branch is refused, not silently read in its place.
    git(&["branch", "old"]);
    std::fs::create_dir_all(d.join("old")).unwrap();
    std::fs::write(d.join("old/results.csv"), results(&OLD, "h")).unwrap();
    let t = text(&lesser(&d, &["old"]));
    assert!(
        t.contains("old is both a path here and a git revision"),
        "{t}"
    );
    assert!(text(&lesser(&d, &["./old"])).contains("better"));
}

#[test]
fn bad_sides_get_one_clear_line() {
    let d = temp("errors");
    let out = lesser(&d, &["no-such-rev"]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(
        t.starts_with(
            "error: no-such-rev: not a reports directory, a results file or a git revision"
        ),
        "{t}"
    );
    assert_eq!(t.lines().count(), 1);
    std::fs::write(d.join("spec.toml"), "[model]\n").unwrap();
    let t = text(&lesser(&d, &["spec.toml", "spec.toml"]));
    assert!(
        t.contains("spec.toml: not a results file: columns are `[model]`"),
        "{t}"
    );
    std::fs::write(d.join("short.csv"), "variant,round,test_error\nv,0,0.2\n").unwrap();
    let t = text(&lesser(&d, &["short.csv", "short.csv"]));
    assert!(
        t.contains("short.csv: not a results file: columns are `variant,round,test_error`"),
        "{t}"
    );
    let mut bad = results(&OLD, "h");
    bad = bad.replace("0.2000", "zero");
    std::fs::write(d.join("vals.csv"), bad).unwrap();
    let t = text(&lesser(&d, &["vals.csv", "vals.csv"]));
    assert!(
        t.contains("vals.csv: row 2: test_error `zero` is not an error rate in [0, 1]"),
        "{t}"
    );
}

/// A round listed twice is refused with its row, not pooled as two rounds; names and
/// descriptions reach Markdown escaped.
#[test]
fn duplicate_rounds_are_refused_and_markdown_is_escaped() {
    let d = temp("dup");
    let mut text = results(&OLD, "h");
    let second = text.lines().nth(2).unwrap().to_string();
    text.push_str(&(second + "\n"));
    std::fs::write(d.join("dup.csv"), text).unwrap();
    std::fs::write(d.join("old.csv"), results(&OLD, "h")).unwrap();
    let out = lesser(&d, &["old.csv", "dup.csv"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        self::text(&out).contains("dup.csv: row 5: round 1 of v appears twice"),
        "{}",
        self::text(&out)
    );
    let evil = results(&[("<img src=x onerror=1>![i](http://e/x)", 1, 0.2)], "h");
    std::fs::write(d.join("evil.csv"), evil).unwrap();
    let out = lesser(&d, &["evil.csv", "evil.csv", "--format", "markdown"]);
    let t = self::text(&out);
    assert!(
        t.contains("| &lt;img src=x onerror=1>\\![i\\](http\\://e/x) |") && !t.contains("<img"),
        "{t}"
    );
}

/// Holm's adjusted p-values against a hand computation: the i-th smallest of m multiplied by
/// m - i, never below an earlier one, capped at 1; undefined ones left out.
#[test]
fn holm_adjusts_as_computed_by_hand() {
    let p = [
        Some(0.01),
        Some(0.04),
        None,
        Some(0.03),
        Some(0.005),
        Some(0.9),
    ];
    // Sorted: 0.005 x5 = 0.025, 0.01 x4 = 0.04, 0.03 x3 = 0.09, 0.04 x2 = 0.08 -> 0.09,
    // 0.9 x1 = 0.9.
    let want = [
        Some(0.04),
        Some(0.09),
        None,
        Some(0.09),
        Some(0.025),
        Some(0.9),
    ];
    for (got, want) in lesser::diff::holm(&p).iter().zip(want) {
        match (got, want) {
            (Some(g), Some(w)) => assert!((g - w).abs() < 1e-12, "{g} {w}"),
            (g, w) => assert_eq!(*g, w),
        }
    }
    assert_eq!(
        lesser::diff::holm(&[Some(0.6), Some(0.7)]),
        [Some(1.0), Some(1.0)]
    );
}

/// Two variants that each improve at p of about 0.04: better on their own, no clear change
/// once corrected for each other (the default); the output says which.
#[test]
fn many_variants_are_corrected_together() {
    let d = temp("holm");
    let rows = |errs: [f64; 5]| -> Vec<(&'static str, u64, f64)> {
        let mut r = Vec::new();
        for v in ["v", "w"] {
            r.extend(errs.iter().enumerate().map(|(i, &e)| (v, i as u64, e)));
        }
        r
    };
    let old = rows([0.20; 5]);
    let new = rows([0.19, 0.18, 0.20, 0.17, 0.185]);
    std::fs::write(d.join("old.csv"), results(&old, "h")).unwrap();
    std::fs::write(d.join("new.csv"), results(&new, "h")).unwrap();
    let single = paired(
        &[
            (0.2, 0.19),
            (0.2, 0.18),
            (0.2, 0.20),
            (0.2, 0.17),
            (0.2, 0.185),
        ],
        0.05,
    )
    .1
    .unwrap();
    assert!((0.025..0.05).contains(&single), "{single}");
    let corrected = text(&lesser(&d, &["old.csv", "new.csv"]));
    let verdicts = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("v ") || l.starts_with("w "))
            .map(|l| l.split("  ").last().unwrap().to_string())
            .collect()
    };
    assert_eq!(verdicts(&corrected), ["no clear change"; 2], "{corrected}");
    assert!(
        corrected.contains(&format!("{:.3}", 2.0 * single)),
        "{corrected}"
    );
    assert!(corrected.contains("Holm's method"), "{corrected}");
    let alone = text(&lesser(&d, &["old.csv", "new.csv", "--correction", "none"]));
    assert_eq!(verdicts(&alone), ["better"; 2], "{alone}");
    assert!(alone.contains("No correction"), "{alone}");
}
