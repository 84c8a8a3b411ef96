//! Searches: points drawn the same way whatever runs them, successive halving keeping the
//! right trials, confirmation on data the search never saw, and bad tables refused with their
//! file and line.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{DATA, command, csv_rows, data, lesser, read, stderr, temp};
use lesser::record::{RoundRecord, RoundResult, Status};
use lesser::variants::{LoadOptions, Searched, Variant};

/// A tiny network with a validation split.
const BASE: &str = r#"
[model]
weight_sharing = true
aux_loss = 1.0
digit = [
  { layer = "flatten" },
  { layer = "linear", out = 8 },
  { layer = "relu" },
  { layer = "linear", out = 10 },
]
head = [{ layer = "linear", out = 2 }]

[train]
epochs = 9
batch_size = 50
validation = 0.2
repeats = 2
"#;

/// A search of `method` around BASE, compared with it.
fn search_spec(method: &str) -> String {
    format!(
        r#"extends = "base.toml"
baseline = "base"

[search]
method = "{method}"
trials = 7
batch = 3
rounds = 2
seed = 5
halving = {{ eta = 3, min_epochs = 1 }}
confirm = {{ top = 2 }}

[search.space]
"train.optimizer.lr" = {{ log = [1e-4, 3e-2] }}
"model.digit[1].out" = {{ int = [4, 24] }}
"train.label_smoothing" = {{ choice = [0.0, 0.1] }}
"#
    )
}

fn setup(name: &str, method: &str) -> std::path::PathBuf {
    let d = temp("search", name);
    std::fs::write(d.join("specs/base.toml"), BASE).unwrap();
    std::fs::write(d.join("specs/s.toml"), search_spec(method)).unwrap();
    d
}

/// The searches a directory's specs hold.
fn searches(dir: &Path) -> Vec<Searched> {
    let load = LoadOptions::default()
        .data(Some(Path::new(DATA)), Some(200))
        .unwrap();
    lesser::variants::load_valid(&[dir.join("specs")], &load)
        .unwrap()
        .1
}

/// Every report file but timing.csv, by name.
fn reports(dir: &Path) -> Vec<(String, String)> {
    ["REPORT.md", "results.csv", "curves.csv", "search.csv"]
        .iter()
        .map(|n| (n.to_string(), read(dir.join(n))))
        .collect()
}

#[test]
fn points_and_reports_are_the_same_for_any_jobs_and_shards() {
    for method in ["random", "tpe"] {
        let d = setup(&format!("same-{method}"), method);
        let one = lesser(
            &d,
            &[
                "--pairs",
                "200",
                "--out",
                "one",
                "--jobs",
                "1",
                "--threads",
                "1",
            ],
        );
        assert!(one.status.success(), "{}", stderr(&one));
        let two = lesser(
            &d,
            &[
                "--pairs",
                "200",
                "--out",
                "two",
                "--jobs",
                "2",
                "--threads",
                "3",
            ],
        );
        assert!(two.status.success(), "{}", stderr(&two));
        assert_eq!(reports(&d.join("one")), reports(&d.join("two")), "{method}");
        // Shards on one store, run in turn until no search waits, then merged.
        let mut passes = 0;
        loop {
            let mut waiting = false;
            for k in 0..2 {
                let o = lesser(
                    &d,
                    &[
                        "--pairs",
                        "200",
                        "--out",
                        "shards",
                        "--shard",
                        &format!("{k}/2"),
                    ],
                );
                assert!(o.status.success(), "{}", stderr(&o));
                waiting |= stderr(&o).contains("waits for trial rounds");
            }
            passes += 1;
            assert!(passes < 20, "the shards never finished the search");
            if !waiting {
                break;
            }
        }
        assert!(
            passes > 1,
            "{method}: a search in shards waits for the other shard"
        );
        let report = command(&d)
            .args([
                "report",
                "--data",
                &data(),
                "--pairs",
                "200",
                "--out",
                "shards",
            ])
            .output()
            .unwrap();
        assert!(report.status.success(), "{}", stderr(&report));
        assert_eq!(
            reports(&d.join("one")),
            reports(&d.join("shards")),
            "{method}"
        );
        let rows = csv_rows(&read(d.join("one/search.csv")));
        assert_eq!(rows.iter().filter(|r| r["rung"] == "1").count(), 7);
    }
}

#[test]
fn confirmation_draws_data_the_search_never_saw() {
    let d = setup("seeds", "random");
    let o = lesser(&d, &["--pairs", "200", "--out", "out"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let reported: BTreeSet<String> = csv_rows(&read(d.join("out/results.csv")))
        .into_iter()
        .map(|r| r["data_seed"].clone())
        .collect();
    let store = lesser::store::RoundStore::open(&lesser::run::store_path(&d.join("out"))).unwrap();
    let all: Vec<&RoundRecord> = store.records().collect();
    let searched: BTreeSet<String> = all
        .iter()
        .map(|r| r.data_seed.to_string())
        .filter(|s| !reported.contains(s))
        .collect();
    // 7 trials at 1 epoch, 3 at 3 and 2 at 9, 2 rounds each; then 2 confirmed and the
    // baseline, 2 rounds each.
    assert_eq!(all.len(), (7 + 3 + 2) * 2 + 3 * 2);
    assert_eq!(reported.len(), 2);
    assert_eq!(searched.len(), 2);
    let trial_rounds = all
        .iter()
        .filter(|r| searched.contains(&r.data_seed.to_string()));
    assert_eq!(trial_rounds.count(), (7 + 3 + 2) * 2);
    // And never a reported round's seed, however many rounds are reported.
    let trial: BTreeSet<u64> = (0..1000).map(lesser::seeds::trial_data_seed).collect();
    assert!((0..1000).all(|r| !trial.contains(&lesser::seeds::data_seed(r))));
}

/// A record of `v`'s round `round` with this validation error.
fn record(v: &Variant, round: usize, validation: f64) -> RoundRecord {
    let result = RoundResult {
        final_train_loss: 0.0,
        train_error: Some(0.0),
        test_error: Some(0.0),
        digit_test_error: None,
        status: Status::Ok,
        weights: None,
        curve: Vec::new(),
        validation_error: Some(validation),
        breakdown: None,
    };
    RoundRecord::new(
        &v.spec.name,
        round,
        0,
        lesser::run::round_key(v, round),
        result,
        0.0,
    )
}

#[test]
fn halving_keeps_the_best_of_each_rung_on_a_constructed_objective() {
    let d = setup("halving", "random");
    let s = &searches(&d)[0];
    // Short training favours a low learning rate, longer training a high one: each rung must
    // rank on its own epochs' objective.
    let objective = |lr: f64, epochs: usize| if epochs < 9 { lr } else { 0.5 - lr };
    let mut seen: Vec<(usize, Vec<f64>)> = Vec::new();
    let mut phase = |vs: &[Variant]| -> lesser::Result<Option<Vec<RoundRecord>>> {
        let lr = |v: &Variant| match &v.spec.train.optimizer {
            lesser::spec::Optimizer::Adam { lr, .. } => f64::from(*lr),
            other => panic!("{other:?}"),
        };
        seen.push((vs[0].spec.train.epochs, vs.iter().map(lr).collect()));
        let mut out = Vec::new();
        for v in vs {
            assert!(v.trial && v.spec.train.repeats == 2);
            for r in 0..2 {
                out.push(record(v, r, objective(lr(v), v.spec.train.epochs)));
            }
        }
        Ok(Some(out))
    };
    let (outcome, confirmed) = lesser::search::run(s, &mut phase).unwrap().unwrap();
    let epochs: Vec<usize> = seen.iter().map(|(e, _)| *e).collect();
    assert_eq!(epochs, [1, 3, 9]);
    let lrs = |i: usize| -> Vec<f64> { seen[i].1.clone() };
    let best = |mut v: Vec<f64>, n: usize, key: &dyn Fn(f64) -> f64| {
        v.sort_by(|a, b| key(*a).total_cmp(&key(*b)));
        v.truncate(n);
        v.sort_by(f64::total_cmp);
        v
    };
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    assert_eq!(lrs(0).len(), 7);
    assert_eq!(sorted(lrs(1)), best(lrs(0), 3, &|lr| objective(lr, 1)));
    assert_eq!(sorted(lrs(2)), best(lrs(1), 2, &|lr| objective(lr, 3)));
    let top = best(lrs(2), 2, &|lr| objective(lr, 9));
    let mut picked: Vec<f64> = confirmed
        .iter()
        .map(|v| match &v.spec.train.optimizer {
            lesser::spec::Optimizer::Adam { lr, .. } => f64::from(*lr),
            _ => unreachable!(),
        })
        .collect();
    // The best first.
    assert!(objective(picked[0], 9) <= objective(picked[1], 9));
    picked.sort_by(f64::total_cmp);
    assert_eq!(picked, top);
    assert!(
        confirmed
            .iter()
            .all(|v| !v.trial && v.spec.train.epochs == 9)
    );
    assert_eq!(outcome.confirmed.len(), 2);
    assert_eq!(outcome.rounds(), (7 + 3 + 2) * 2);
}

#[test]
fn sampled_points_depend_only_on_the_table() {
    let d = setup("points", "random");
    let (a, b) = (searches(&d), searches(&d));
    let points = |s: &Searched| -> Vec<Vec<toml::Value>> {
        (0..7).map(|t| s.spec.search.random_point(t)).collect()
    };
    assert_eq!(points(&a[0]), points(&b[0]));
    // Another seed, other points.
    std::fs::write(
        d.join("specs/s.toml"),
        search_spec("random").replace("seed = 5", "seed = 6"),
    )
    .unwrap();
    assert_ne!(points(&a[0]), points(&searches(&d)[0]));
}

/// `lesser check` on the search spec with `from` replaced by `to`: its error output.
fn refused(name: &str, from: &str, to: &str) -> String {
    let d = setup(&format!("bad-{name}"), "random");
    let spec = search_spec("random").replace(from, to);
    std::fs::write(d.join("specs/s.toml"), spec).unwrap();
    let o = command(&d)
        .args(["check", "specs", "--data", DATA])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{name} was accepted");
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn bad_searches_are_refused_with_file_and_line() {
    let cases: [(&str, &str, &str, &str); 14] = [
        (
            "unnameable-choice",
            "\"train.label_smoothing\" = { choice = [0.0, 0.1] }",
            "\"description\" = { choice = [\"a\", \"say \\\"b\\\"\"] }",
            "s.toml:16:1: search.space.description: variant name",
        ),
        (
            "misspelt-key",
            "trials = 7",
            "trails = 7",
            "s.toml:6:1: search.trails: unknown field `trails`",
        ),
        (
            "bad-middle-choice",
            "choice = [0.0, 0.1]",
            "choice = [0.0, \"much\", 0.1]",
            "s.toml:16:1: search at label_smoothing=much: train.label_smoothing:",
        ),
        (
            "too-wide",
            "log = [1e-4, 3e-2]",
            "uniform = [-1e308, 1e308]",
            "s.toml:14:1: search.space.train.optimizer.lr: uniform: the range is wider",
        ),
        (
            "grid-too",
            "[search.space]",
            "[grid]\n\"train.epochs\" = [1, 2]\n\n[search.space]",
            "s.toml:4:2: search: a spec has a grid or a search, not both",
        ),
        (
            "no-trials",
            "trials = 7",
            "trials = 0",
            "s.toml:6:1: search.trials = 0: must be between 1 and 10000",
        ),
        (
            "eta-1",
            "eta = 3",
            "eta = 1",
            "s.toml:10:1: search.halving.eta = 1: must be at least 2",
        ),
        (
            "empty",
            "log = [1e-4, 3e-2]",
            "log = [3e-2, 1e-4]",
            "s.toml:14:1: search.space.train.optimizer.lr: log: the range is empty",
        ),
        (
            "negative-log",
            "log = [1e-4, 3e-2]",
            "log = [-1.0, 3e-2]",
            "s.toml:14:1: search.space.train.optimizer.lr: log: the low bound -1 must be above 0",
        ),
        (
            "unknown-key",
            "train.label_smoothing",
            "train.label_smoothin",
            "s.toml:16:1: search at label_smoothin=0.0: train.label_smoothin: unknown field",
        ),
        (
            "no-validation",
            "baseline = \"base\"",
            "baseline = \"base\"\ntrain.validation = 0.0",
            "s.toml:5:2: search: the objective is the validation error, and this spec holds no \
             validation pairs out",
        ),
        (
            "test-objective",
            "trials = 7",
            "trials = 7\nobjective = \"test_error\"",
            "s.toml:7:1: search.objective = \"test_error\": the only objective is \"validation_error\"",
        ),
        (
            "no-values",
            "choice = [0.0, 0.1]",
            "choice = []",
            "s.toml:16:1: search.space.train.label_smoothing: choice: the list is empty",
        ),
        (
            "too-many-confirmed",
            "top = 2",
            "top = 8",
            "s.toml:11:1: search.confirm.top = 8: must be between 1 and 7",
        ),
    ];
    for (name, from, to, expected) in cases {
        let err = refused(name, from, to);
        let first = err.lines().next().unwrap_or_default();
        assert!(first.starts_with("error: specs/s.toml:"), "{name}: {err}");
        assert!(first.contains(expected), "{name}: {err}");
        assert!(
            err.ends_with("1 of 2 spec files are invalid\n"),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_confirmed_variant_is_evaluated_from_its_kept_weights() {
    let d = setup("eval", "random");
    let o = lesser(&d, &["--pairs", "200", "--out", "out", "--keep-weights"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = csv_rows(&read(d.join("out/results.csv")));
    let row = rows
        .iter()
        .find(|r| r["variant"].starts_with("s["))
        .unwrap();
    // `eval` reads the specs' own data directory, relative to where it runs.
    std::os::unix::fs::symlink(Path::new(DATA).parent().unwrap(), d.join("data")).unwrap();
    let e = command(&d)
        .args(["eval", &row["variant"], "--round", &row["round"]])
        .args(["--pairs", "200", "--out", "out"])
        .output()
        .unwrap();
    assert!(e.status.success(), "{}", stderr(&e));
    let said = String::from_utf8_lossy(&e.stdout).into_owned();
    // The error measured again, exactly, is the one results.csv rounds.
    let exact: f64 = said
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(" exactly"))
        .and_then(|(x, _)| x.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert_eq!(format!("{exact:.4}"), row["test_error"], "{said}");
    assert!(
        said.starts_with(&format!("{} round {}", row["variant"], row["round"])),
        "{said}"
    );
}

#[test]
fn check_states_what_a_search_will_spend() {
    let d = setup("check", "random");
    let o = command(&d)
        .args(["check", "specs", "--data", DATA])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let expected = [
        "s (specs/s.toml): search of 7 trials (random), 2 rounds each on the search's own data seeds",
        "  model.digit[1].out           { int = [4, 24] }",
        "  budget: 7 trials x 1 epochs, then 3 trials x 3 epochs, then 2 trials x 9 epochs; 24 \
         rounds, 68 epochs (0.54 of the 126 epochs of every trial trained in full)",
        "  then the best 2 confirmed on 2 reported rounds each, against base",
    ];
    for line in expected {
        assert!(out.lines().any(|l| l == line), "{line}\n{out}");
    }
}

#[test]
fn a_rerun_trains_nothing_and_a_wider_search_reuses_its_trials() {
    let d = setup("reuse", "random");
    let first = lesser(&d, &["--pairs", "200", "--out", "out"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("searches: 24 trial rounds trained"),
        "{}",
        stderr(&first)
    );
    let again = lesser(&d, &["--pairs", "200", "--out", "out"]);
    assert!(
        !stderr(&again).contains("trial rounds trained"),
        "{}",
        stderr(&again)
    );
    assert!(stderr(&again).contains("(0 trained"), "{}", stderr(&again));
    // Two more trials: the first seven keep their points, so their first step is stored.
    let wider = search_spec("random").replace("trials = 7", "trials = 9");
    std::fs::write(d.join("specs/s.toml"), wider).unwrap();
    let more = lesser(&d, &["--pairs", "200", "--out", "out"]);
    assert!(more.status.success(), "{}", stderr(&more));
    let trained: usize = stderr(&more)
        .split("searches: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", stderr(&more)));
    // 9 trials at 1 epoch, 3 at 3 and 2 at 9, 2 rounds each, less the 7 stored at 1 epoch.
    assert!(trained <= (9 + 3 + 2 - 7) * 2, "{trained}");
}

#[test]
fn a_choice_of_tables_is_named_by_its_kind() {
    let d = setup("tables", "random");
    let spec = search_spec("random").replace(
        "\"train.label_smoothing\" = { choice = [0.0, 0.1] }",
        "\"train.schedule\" = { choice = [{ kind = \"cosine\" }, { kind = \"constant\" }] }",
    );
    std::fs::write(d.join("specs/s.toml"), spec).unwrap();
    let o = lesser(&d, &["--pairs", "200", "--out", "out"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = csv_rows(&read(d.join("out/search.csv")));
    assert!(
        rows.iter().all(|r| r["variant"].contains(",schedule=c")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r["variant"].ends_with(",schedule=cosine]"))
    );
}
