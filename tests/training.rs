//! Training options: learning-rate schedules, AdamW, label smoothing and the probability
//! comparison rule, each against its definition.

use dfdx::prelude::*;
use lesser::ops::{Act, cross_entropy_smoothed};
use lesser::spec::Relation;
use lesser::spec::Schedule;
use lesser::train::{pair_probability, sum_distribution};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn schedules_give_the_documented_rates() {
    // 10 epochs of 5 steps.
    let (total, per_epoch) = (50, 5);
    let f = |s: &Schedule, step| s.factor(step, total, per_epoch);
    let constant = Schedule::Constant { warmup: 0 };
    assert!((0..50).all(|t| f(&constant, t) == 1.0));
    // Warm-up: linear over the first 2 epochs (10 steps), 1/10 at the first step.
    let warm = Schedule::Constant { warmup: 2 };
    assert!(close(f(&warm, 0), 0.1) && close(f(&warm, 4), 0.5) && f(&warm, 10) == 1.0);
    // Cosine from 1 to 0 over the steps after the warm-up: half-way is 0.5.
    let cos = Schedule::Cosine { warmup: 0 };
    assert!(close(f(&cos, 0), 1.0) && close(f(&cos, 25), 0.5));
    assert!(f(&cos, 49) < 0.01);
    let cos_warm = Schedule::Cosine { warmup: 2 };
    assert!(close(f(&cos_warm, 10), 1.0) && close(f(&cos_warm, 30), 0.5));
    // Step: gamma every 3 epochs.
    let step = Schedule::Step {
        every: 3,
        gamma: 0.5,
        warmup: 0,
    };
    assert!(f(&step, 14) == 1.0 && f(&step, 15) == 0.5 && f(&step, 30) == 0.25);
    // One-cycle: lr/25 at the start, lr at pct_start, lr/250000 at the end (PyTorch).
    let one = Schedule::OneCycle { pct_start: 0.3 };
    assert!(close(f(&one, 0), 1.0 / 25.0));
    assert!(close(f(&one, 14), 1.0));
    assert!(close(f(&one, 49), 1.0 / 25.0 / 1e4));
}

#[test]
fn label_smoothing_matches_its_definition_and_gradient() {
    let dev = Cpu::default();
    let logits = vec![0.5f32, -1.0, 2.0, 0.0, 1.0, 1.5];
    let targets = [2u8, 0];
    let eps = 0.2f32;
    let x: Act<NoneTape> = dev.tensor_from_vec(logits.clone(), (2, 3, 1, 1));
    let loss = cross_entropy_smoothed(x.clone(), &targets, eps).array();
    // Definition: mean over rows of sum_k q_k * -log p_k with q = (1-eps) onehot + eps/K.
    let want: f64 = logits
        .chunks(3)
        .zip(targets)
        .map(|(row, t)| {
            let lse = row.iter().map(|&v| f64::from(v).exp()).sum::<f64>().ln();
            (0..3)
                .map(|k| {
                    let q = f64::from(eps) / 3.0
                        + if k == t as usize {
                            1.0 - f64::from(eps)
                        } else {
                            0.0
                        };
                    q * (lse - f64::from(row[k]))
                })
                .sum::<f64>()
        })
        .sum::<f64>()
        / 2.0;
    assert!(
        (f64::from(loss) - want).abs() < 1e-6,
        "{loss} against {want}"
    );
    // Gradient against central differences.
    let g = {
        let xt = dev.tensor_from_vec(logits.clone(), (2, 3, 1, 1));
        let l = cross_entropy_smoothed(xt.leaky_trace(), &targets, eps);
        l.backward().get(&xt).as_vec()
    };
    for i in 0..6 {
        let at = |d: f32| {
            let mut v = logits.clone();
            v[i] += d;
            let t: Act<NoneTape> = dev.tensor_from_vec(v, (2, 3, 1, 1));
            f64::from(cross_entropy_smoothed(t, &targets, eps).array())
        };
        let numeric = (at(1e-3) - at(-1e-3)) / 2e-3;
        assert!(
            (f64::from(g[i]) - numeric).abs() < 1e-3,
            "{i}: {} against {numeric}",
            g[i]
        );
    }
    // eps = 0 is plain cross-entropy, bit for bit.
    let plain = lesser::ops::cross_entropy(x.clone(), &targets).array();
    assert_eq!(cross_entropy_smoothed(x, &targets, 0.0).array(), plain);
}

/// Each relation's probability rule against a brute-force sum over every pair of classes,
/// and the sum's distribution against its definition.
#[test]
fn the_probability_rules_equal_brute_force() {
    let norm = |k: usize, f: &dyn Fn(f64) -> f64| -> Vec<f64> {
        let v: Vec<f64> = (0..k).map(|i| f(i as f64)).collect();
        let s: f64 = v.iter().sum();
        v.iter().map(|x| x / s).collect()
    };
    for k in [2, 5, 10, 26] {
        let p0 = norm(k, &|i| (i * 0.7 + 1.0).sin().abs() + 0.1);
        let p1 = norm(k, &|i| (i * 1.3 + 2.0).cos().abs() + 0.1);
        let brute = |holds: &dyn Fn(usize, usize) -> bool| -> f64 {
            (0..k)
                .flat_map(|i| (0..k).map(move |j| (i, j)))
                .filter(|&(i, j)| holds(i, j))
                .map(|(i, j)| p0[i] * p1[j])
                .sum()
        };
        type Holds<'a> = &'a dyn Fn(usize, usize) -> bool;
        let rules: [(Relation, Holds); 3] = [
            (Relation::Le, &|i, j| i <= j),
            (Relation::Lt, &|i, j| i < j),
            (Relation::Eq, &|i, j| i == j),
        ];
        for (r, holds) in rules {
            let got = pair_probability(r, &p0, &p1);
            assert!((got - brute(holds)).abs() < 1e-12, "{r:?} with {k} classes");
        }
        let sums = sum_distribution(&p0, &p1);
        assert_eq!(sums.len(), 2 * k - 1);
        for (s, &p) in sums.iter().enumerate() {
            assert!((p - brute(&|i, j| i + j == s)).abs() < 1e-12, "sum {s}");
        }
    }
    // Certain classes: 3 <= 7 is 1, 7 <= 3 is 0, 5 < 5 is 0, 5 == 5 is 1.
    let one = |k: usize| -> Vec<f64> { (0..10).map(|i| f64::from(u8::from(i == k))).collect() };
    assert_eq!(pair_probability(Relation::Le, &one(3), &one(7)), 1.0);
    assert_eq!(pair_probability(Relation::Le, &one(7), &one(3)), 0.0);
    assert_eq!(pair_probability(Relation::Le, &one(5), &one(5)), 1.0);
    assert_eq!(pair_probability(Relation::Lt, &one(5), &one(5)), 0.0);
    assert_eq!(pair_probability(Relation::Eq, &one(5), &one(5)), 1.0);
}

mod common;

/// A spec with every option trains end to end, and its options are checked like any key.
#[test]
fn a_spec_with_the_training_options_runs() {
    let d = common::temp("training", "options");
    let spec = r#"
[model]
weight_sharing = true
aux_loss = 1.0
compare = "probability"
digit = [
  { layer = "conv2d", out = 4, kernel = 3, padding = 1 },
  { layer = "batch_norm" },
  { layer = "relu" },
  { layer = "max_pool2d", kernel = 2 },
  { layer = "flatten" },
  { layer = "linear", out = 10 },
]
[train]
epochs = 3
repeats = 2
label_smoothing = 0.1
optimizer = { kind = "adamw", lr = 0.003, weight_decay = 0.01 }
schedule = { kind = "cosine", warmup = 1 }
augment = { shift = 1.5, rotate = 10.0, scale = 0.1, elastic = 0.5 }
repair = true
tta = { shift = 1.0 }
"#;
    std::fs::write(d.join("specs/opts.toml"), spec).unwrap();
    let out = common::lesser(&d, &[]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let results = common::read(d.join("reports/results.csv"));
    assert_eq!(
        results.lines().filter(|l| l.contains(",ok,")).count(),
        2,
        "{results}"
    );
    for (bad, says) in [
        (
            "schedule = { kind = \"cosine\", warmup = 1 }",
            "schedule = { kind = \"step\", every = 0 }",
        ),
        ("label_smoothing = 0.1", "label_smoothing = 1.5"),
        ("rotate = 10.0", "rotate = 400.0"),
        ("elastic = 0.5", "elastic = 5.0"),
        ("elastic = 0.5", "elastic = 0.5, elastic_sigma = 0.1"),
        ("tta = { shift = 1.0 }", "tta = { shift = 4.0 }"),
        (
            "schedule = { kind = \"cosine\", warmup = 1 }",
            "schedule = { kind = \"cosine\", warmup = 3 }",
        ),
    ] {
        std::fs::write(d.join("specs/opts.toml"), spec.replace(bad, says)).unwrap();
        let out = common::command(&d)
            .args(["check", "--data", common::DATA, "specs"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{says}");
        assert!(
            common::stderr(&out).contains("opts.toml:")
                && common::stderr(&out).contains(": train."),
            "{}",
            common::stderr(&out)
        );
    }
}

/// The rows of `results.csv` / `curves.csv` of a run in `dir`, by column name.
fn rows(dir: &std::path::Path, file: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    common::csv_rows(&common::read(dir.join("reports").join(file)))
}

const EARLY: &str = r#"
[model]
weight_sharing = true
aux_loss = 1.0
digit = [
  { layer = "conv2d", out = 4, kernel = 3 },
  { layer = "relu" },
  { layer = "flatten" },
  { layer = "linear", out = 10 },
]
head = [{ layer = "linear", in = 20, out = 2 }]
[train]
epochs = EPOCHS
repeats = 1
batch_size = 25
validation = 0.2
optimizer = { kind = "sgd", lr = 0.05, momentum = 0.9 }
"#;

#[test]
fn early_stopping_keeps_the_best_epoch_on_validation() {
    let d = common::temp("training", "early");
    let stopped = EARLY.replace("EPOCHS", "30") + "early_stopping = { patience = 2 }\n";
    std::fs::write(d.join("specs/e.toml"), stopped).unwrap();
    let out = common::lesser(&d, &["--pairs", "300"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    // Validation errors per epoch, from the curves: the round keeps the first best.
    let val: Vec<f64> = rows(&d, "curves.csv")
        .iter()
        .filter(|r| r["metric"] == "validation_error")
        .map(|r| r["value"].parse().unwrap())
        .collect();
    let best = val.iter().copied().fold(f64::INFINITY, f64::min);
    let best_epoch = val.iter().position(|&v| v == best).unwrap() + 1;
    assert!(val.len() < 30, "stopped early: {val:?}");
    assert!(
        val.len() - best_epoch == 2,
        "two epochs without improvement: {val:?}"
    );
    let r = &rows(&d, "results.csv")[0];
    assert_eq!(r["validation_error"].parse::<f64>().unwrap(), best);
    // The same variant trained for exactly `best_epoch` epochs has the same weights and test
    // error: the round went back to them.
    let e = common::temp("training", "exact");
    let exact = EARLY.replace("EPOCHS", &best_epoch.to_string());
    std::fs::write(e.join("specs/e.toml"), exact).unwrap();
    assert!(common::lesser(&e, &["--pairs", "300"]).status.success());
    let x = &rows(&e, "results.csv")[0];
    for column in ["weights", "test_error", "validation_error"] {
        assert_eq!(r[column], x[column], "{column}");
    }
    let report = common::read(d.join("reports/REPORT.md"));
    assert!(
        report.contains("| digit error | validation | description |"),
        "{report}"
    );
}

#[test]
fn evaluation_runs_in_evaluation_mode() {
    use lesser::data::{Dataset, draw};
    let d = common::temp("training", "eval");
    let spec = r#"
[model]
weight_sharing = true
aux_loss = 1.0
compare = "argmax"
digit = [
  { layer = "conv2d", out = 4, kernel = 3 },
  { layer = "batch_norm" },
  { layer = "relu" },
  { layer = "flatten" },
  { layer = "dropout", p = 0.5 },
  { layer = "linear", out = 10 },
]
"#;
    std::fs::write(d.join("specs/m.toml"), spec).unwrap();
    let s = lesser::spec::load(&d.join("specs/m.toml"))
        .unwrap()
        .unwrap();
    let net = lesser::compile::Network::new(&s, common::SEED, 3).unwrap();
    let data = Dataset::load(std::path::Path::new(&common::data()), 2).unwrap();
    let (train, _) = draw(&data.train, &data.test, s.task, (40, 40), 5).unwrap();
    let whole = lesser::train::evaluate(&[&net], &train, None)
        .unwrap()
        .unwrap();
    // No dropout: the same again. Running statistics, not the batch's: pair by pair alike.
    assert_eq!(
        lesser::train::evaluate(&[&net], &train, None)
            .unwrap()
            .unwrap(),
        whole
    );
    let mut wrong = 0.0;
    for i in 0..train.len() {
        let one = lesser::data::Samples {
            input: train.sample(i).to_vec(),
            target: vec![train.target[i]],
            classes: train.sample_classes(i).to_vec(),
            ..train.clone()
        };
        wrong += lesser::train::evaluate(&[&net], &one, None)
            .unwrap()
            .unwrap()
            .pair;
    }
    assert!((wrong / train.len() as f64 - whole.pair).abs() < 1e-12);
}

/// An ensemble's round counts every member's parameters and gives other numbers than one
/// network; its first member is the plain round's network, whose curve is the round's.
#[test]
fn an_ensemble_trains_every_member() {
    let d = common::temp("training", "ensemble");
    let one = EARLY.replace("EPOCHS", "2");
    std::fs::write(d.join("specs/e.toml"), one.clone()).unwrap();
    assert!(
        common::lesser(&d, &["--pairs", "200", "--out", "one"])
            .status
            .success()
    );
    std::fs::write(d.join("specs/e.toml"), one + "ensemble = 3\n").unwrap();
    let out = common::lesser(&d, &["--pairs", "200", "--out", "three"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let read =
        |dir: &str| common::csv_rows(&common::read(d.join(dir).join("results.csv")))[0].clone();
    let (a, b) = (read("one"), read("three"));
    assert_eq!(
        b["params"].parse::<usize>().unwrap(),
        3 * a["params"].parse::<usize>().unwrap()
    );
    assert_ne!(a["weights"], b["weights"], "other weights");
    assert!(
        !b["validation_error"].is_empty(),
        "validation measured on the ensemble"
    );
    let curves = |dir: &str| common::read(d.join(dir).join("curves.csv"));
    assert!(curves("one").contains("validation_error"));
    assert_eq!(curves("three"), curves("one"));
}
