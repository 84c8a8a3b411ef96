//! Kept weights: every round's trained networks in a safetensors file beside its record,
//! read back bit for bit, and `lesser eval` measuring them again exactly.

mod common;

use std::path::{Path, PathBuf};

use common::{command, csv_rows, lesser, read, setup, stderr, store_dir};

/// A batch-normalized ensemble of two with test-time shifts: every part of a network a
/// file keeps (weights, biases, batch-norm statistics) and every way of measuring a round.
const ENSEMBLE: &str = r#"
[model]
weight_sharing = true
aux_loss = 1.0
compare = "probability"
digit = [
  { layer = "conv2d", out = 3, kernel = 3, stride = 2 },
  { layer = "batch_norm" },
  { layer = "relu" },
  { layer = "flatten" },
  { layer = "linear", out = 10 },
]
[train]
epochs = 2
batch_size = 50
repeats = 2
ensemble = 2
tta = { shift = 1 }
"#;

fn kept(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(store_dir(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    files
}

/// `lesser eval` in `dir` on the shipped data (as the runs are).
fn eval(dir: &Path, args: &[&str]) -> std::process::Output {
    command(dir).args(["eval"]).args(args).output().unwrap()
}

/// A scratch directory whose `data/mnist` is the shipped data, so that specs with the
/// default directory read it and `eval` finds it as `run` did.
fn with_data(name: &str) -> PathBuf {
    let d = setup("weights", name);
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::os::unix::fs::symlink(common::data(), d.join("data/mnist")).unwrap();
    d
}

/// The number `eval` prints after the percentage: the error as stored, every digit.
fn exact(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let inner = text.rsplit_once('(').map(|(_, r)| r).unwrap_or_default();
    inner
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn kept_weights_round_trip_and_eval_reproduces_every_round() {
    let d = with_data("roundtrip");
    std::fs::write(d.join("specs/ens.toml"), ENSEMBLE).unwrap();
    let out = command(&d)
        .args(["run", "--pairs", "100", "--keep-weights", "--only", "ens"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let files = kept(&d);
    assert_eq!(files.len(), 2, "one file per round");
    // Read back into networks of the same spec: every tensor equal, bit for bit, and the
    // parameters hash to the round's `weights`.
    let spec = d.join("specs/ens.toml");
    let v = common::variant(&spec, 100);
    let rows = csv_rows(&read(d.join("reports/results.csv")));
    let mut hashes = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let mut nets: Vec<lesser::compile::Network> = (0..2)
            .map(|_| lesser::compile::Network::from_plan(&v.spec, v.plan.clone(), 9))
            .collect();
        lesser::weights::load(&mut nets, &bytes, f).unwrap();
        let refs: Vec<&lesser::compile::Network> = nets.iter().collect();
        // Written again, the same tensors (the metadata's order is the map's).
        let meta = lesser::weights::metadata(&bytes, f).unwrap();
        let again = lesser::weights::to_bytes(&refs, meta.clone()).unwrap();
        let tensors = |b: &[u8]| {
            let mut nets: Vec<lesser::compile::Network> = (0..2)
                .map(|_| lesser::compile::Network::from_plan(&v.spec, v.plan.clone(), 3))
                .collect();
            lesser::weights::load(&mut nets, b, f).unwrap();
            nets.iter().map(|n| n.state()).collect::<Vec<_>>()
        };
        assert_eq!(tensors(&again), tensors(&bytes));
        assert_eq!(lesser::weights::metadata(&again, f).unwrap(), meta);
        assert_eq!(meta["variant"], "ens");
        let names: Vec<String> = lesser::weights::tensors(&nets[1], "member1.")
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert!(
            names.contains(&"member1.digit.1.running_var".to_string()),
            "{names:?}"
        );
        let params: Vec<lesser::ops::Param> =
            nets.iter().flat_map(|n| n.params.iter().cloned()).collect();
        hashes.push(lesser::train::weights_hash(&params));
    }
    let mut stored: Vec<String> = rows.iter().map(|r| r["weights"].clone()).collect();
    hashes.sort();
    stored.sort();
    assert_eq!(hashes, stored);
    // eval rebuilds each round and measures its test pairs again: the stored error exactly.
    for r in &rows {
        let out = eval(&d, &["ens", "--round", &r["round"], "--pairs", "100"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let stored: f64 = r["test_error"].parse().unwrap();
        let again: f64 = exact(&out).parse().unwrap();
        assert_eq!(format!("{again:.4}"), format!("{stored:.4}"));
        let store = common::stored(&store_dir(&d));
        assert!(store.contains(&format!(",{again:?},")), "exact: {again:?}");
    }
    // Another dataset's pairs: the same digits ungzipped, so the same error on the same seed.
    let other = eval(&d, &["ens", "--data", &common::data(), "--pairs", "100"]);
    assert!(other.status.success(), "{}", stderr(&other));
    assert_eq!(exact(&other), exact(&eval(&d, &["ens", "--pairs", "100"])));
}

#[test]
fn missing_cut_and_foreign_weights_are_refused() {
    let d = with_data("refused");
    // Rounds stored without weights are trained again when weights are asked for.
    assert!(lesser(&d, &["--only", "alpha"]).status.success());
    let out = eval(&d, &["alpha", "--pairs", "100"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no kept weights for alpha round 0"),
        "{}",
        stderr(&out)
    );
    let out = lesser(&d, &["--only", "alpha", "--keep-weights"]);
    assert!(
        stderr(&out).contains("2 rounds (2 trained, 0 reused"),
        "{}",
        stderr(&out)
    );
    let out = lesser(&d, &["--only", "alpha", "--keep-weights"]);
    assert!(
        stderr(&out).contains("2 rounds (0 trained, 2 reused"),
        "{}",
        stderr(&out)
    );
    assert!(eval(&d, &["alpha", "--pairs", "100"]).status.success());
    let files = kept(&d);
    // Cut short.
    let whole = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], &whole[..whole.len() / 2]).unwrap();
    let refused = |says: &str| {
        let outs = [
            eval(&d, &["alpha", "--pairs", "100"]),
            eval(&d, &["alpha", "--round", "1", "--pairs", "100"]),
        ];
        let e: Vec<String> = outs.iter().map(stderr).collect();
        assert!(outs.iter().any(|o| o.status.code() == Some(2)), "{e:?}");
        assert!(
            e.iter().any(|e| e.contains(says) && e.lines().count() == 1),
            "{says}: {e:?}"
        );
    };
    refused("not a whole safetensors file");
    // Another spec's weights under this round's name.
    std::fs::write(&files[0], &whole).unwrap();
    assert!(
        lesser(&d, &["--only", "beta", "--keep-weights"])
            .status
            .success()
    );
    let beta = kept(&d).into_iter().find(|f| !files.contains(f)).unwrap();
    for f in &files {
        std::fs::copy(&beta, f).unwrap();
    }
    refused("weights of spec hash");
    // The right spec hash, a tensor of another shape.
    let meta = lesser::weights::metadata(&whole, &files[0]).unwrap();
    let data = vec![0u8; 4 * 3];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3], &data).unwrap();
    let odd = safetensors::serialize([("digit.0.weight", view)], Some(meta)).unwrap();
    for f in &files {
        std::fs::write(f, &odd).unwrap();
    }
    refused("tensor digit.0.weight is F32 [3], the spec's is F32 [2, 1, 3, 3]");
}

/// Where the errors are, recorded with every round: its class-pair table counts each test
/// pair once and each error once, and each most confidently wrong pair is really wrong for
/// the kept network.
#[test]
fn the_breakdown_counts_every_error_and_its_worst_pairs_are_wrong() {
    let d = with_data("breakdown");
    let out = command(&d)
        .args(["run", "--pairs", "100", "--keep-weights", "--only", "alpha"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v = common::variant(&d.join("specs/alpha.toml"), 100);
    let store = lesser::store::RoundStore::open(&store_dir(&d)).unwrap();
    let mut checked = 0;
    for r in store.records() {
        let b = r.result.breakdown.as_ref().expect("recorded");
        assert_eq!(b.samples.len(), 100, "10 x 10 class pairs");
        assert_eq!(b.samples.iter().sum::<u32>(), 100);
        let errors = (r.result.test_error.unwrap() * 100.0).round() as u32;
        assert_eq!(b.wrong_total(), errors);
        assert!(!b.worst.is_empty() && b.worst.windows(2).all(|w| w[0].1 >= w[1].1));
        // The round's networks from their kept weights, its pairs and normalization redrawn.
        let path = store.weights_path(&r.key());
        let mut nets = vec![lesser::compile::Network::from_plan(
            &v.spec,
            v.plan.clone(),
            0,
        )];
        lesser::weights::load(&mut nets, &std::fs::read(&path).unwrap(), &path).unwrap();
        let data = &v.data;
        let (train, mut test) = lesser::data::draw(
            &data.train,
            &data.test,
            v.spec.task,
            (100, 100),
            r.data_seed,
        )
        .unwrap();
        let norm = lesser::train::Normalization::fit(v.spec.data.normalize, &train.input);
        norm.apply(&mut test.input);
        for &(i, p) in &b.worst {
            let i = i as usize;
            let one = lesser::data::Samples {
                input: test.sample(i).to_vec(),
                target: vec![test.target[i]],
                classes: test.sample_classes(i).to_vec(),
                ..test.clone()
            };
            let e = lesser::train::evaluate(&[&nets[0]], &one, None)
                .unwrap()
                .unwrap();
            assert_eq!(e.pair, 1.0, "pair {i} (p {p}) is wrong");
            checked += 1;
        }
    }
    assert!(checked >= 2);
    let svg = read(d.join("reports/figures/errors/alpha.svg"));
    roxmltree::Document::parse(&svg).unwrap();
    assert!(read(d.join("reports/REPORT.md")).contains("figures/errors/alpha.svg"));
}
