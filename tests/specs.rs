//! Spec files and the compiler: shapes, parameter counts, sharing, forward passes, errors.

mod common;

use std::path::{Path, PathBuf};

use dfdx::prelude::*;
use lesser::compile::{DigitLogits, Input, Network, Shape3, infer_layer, plan};
use lesser::ops::values;
use lesser::spec::{self, LayerSpec};

fn specs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("specs")
}

fn load(name: &str) -> spec::Spec {
    spec::load(&specs_dir().join(format!("{name}.toml")))
        .unwrap()
        .unwrap()
}

#[test]
fn layer_shape_inference() {
    let conv = |out, kernel, stride, padding| LayerSpec::Conv2d {
        input: None,
        out,
        kernel,
        stride,
        padding,
    };
    // (layer, input shape, output shape, parameters)
    let cases: Vec<(LayerSpec, Shape3, Shape3, usize)> = vec![
        (conv(6, 3, 1, 0), (1, 14, 14), (6, 12, 12), 60),
        (conv(4, 3, 2, 1), (2, 14, 14), (4, 7, 7), 76),
        (
            LayerSpec::ConvTranspose2d {
                out: 3,
                kernel: 2,
                stride: 2,
                padding: 0,
            },
            (1, 14, 14),
            (3, 28, 28),
            15,
        ),
        (
            LayerSpec::MaxPool2d {
                kernel: 2,
                stride: None,
            },
            (6, 12, 12),
            (6, 6, 6),
            0,
        ),
        (
            LayerSpec::AvgPool2d {
                kernel: 3,
                stride: Some(1),
            },
            (6, 5, 7),
            (6, 3, 5),
            0,
        ),
        (
            LayerSpec::Upsample { scale: 2 },
            (1, 14, 14),
            (1, 28, 28),
            0,
        ),
        (LayerSpec::Relu, (6, 4, 4), (6, 4, 4), 0),
        (LayerSpec::Tanh, (3, 1, 1), (3, 1, 1), 0),
        (LayerSpec::Sigmoid, (3, 1, 1), (3, 1, 1), 0),
        (
            LayerSpec::Threshold {
                threshold: 0.0,
                value: 0.0,
            },
            (1, 2, 2),
            (1, 2, 2),
            0,
        ),
        (LayerSpec::Dropout { p: 0.5 }, (10, 1, 1), (10, 1, 1), 0),
        (
            LayerSpec::BatchNorm {
                momentum: 0.1,
                eps: 1e-5,
            },
            (6, 4, 4),
            (6, 4, 4),
            12,
        ),
        (LayerSpec::Flatten, (16, 4, 4), (256, 1, 1), 0),
        (
            LayerSpec::Linear {
                input: Some(256),
                out: 120,
            },
            (256, 1, 1),
            (120, 1, 1),
            30840,
        ),
    ];
    for (layer, input, output, params) in cases {
        assert_eq!(
            infer_layer(&layer, input).map(|p| (p.output, p.params)),
            Ok((output, params)),
            "{}",
            layer.kind()
        );
    }
    // Layers that do not fit say why.
    assert!(
        infer_layer(&conv(6, 5, 1, 0), (1, 4, 4))
            .unwrap_err()
            .contains("does not fit")
    );
    let lin = LayerSpec::Linear {
        input: Some(256),
        out: 10,
    };
    assert_eq!(
        infer_layer(&lin, (400, 1, 1)).unwrap_err(),
        "expects 256 input features, got 400"
    );
    assert!(
        infer_layer(&lin, (16, 4, 4))
            .unwrap_err()
            .contains("add { layer = \"flatten\" }")
    );
}

/// Parameter counts of the nine seed variants. The report's table counts multiplications
/// only (weights, no biases) and has typos: 2(6*16) in Direct_basic for 2(6*16*3*3), and
/// (265*120) in the SHres rows for 256*120. Our counts are its weights, typos corrected,
/// plus biases, plus (SHres) the upsampling and smoothing layers the table leaves out.
#[test]
fn seed_variant_parameter_counts() {
    let head_w = 20 * 12 + 12 * 8 + 8 * 2; // 352
    let head_b = 12 + 8 + 2;
    let direct_w = 54 + 864 + 256 * 120 + 120 * 84 + 840; // 42558
    let direct_b = 6 + 16 + 120 + 84 + 10;
    let shres_w = 150 + 2400 + 256 * 120 + 120 * 84 + 840; // 44190
    let shres_front = (4 + 1) + (9 + 1); // conv_transpose k2 and 3x3 smoothing, with biases
    let shres_b = 6 + 16 + 120 + 84 + 10;
    // The report's totals, as printed.
    assert_eq!(direct_w + head_w, 42910); // directWS, directALWS, directALWSASYM
    assert_eq!(2 * direct_w + head_w, 85468); // directAL (and Direct_basic, typo fixed)
    assert_eq!(shres_w + head_w + 9 * 120, 45622); // SHresWS: its 265*120 is 9*120 too many
    let expected = [
        ("Direct_basic", 2 * (direct_w + direct_b) + head_w + head_b),
        ("directWS", direct_w + direct_b + head_w + head_b),
        ("directAL", 2 * (direct_w + direct_b) + head_w + head_b),
        ("directALWS", direct_w + direct_b + head_w + head_b),
        ("directALWSASYM", direct_w + direct_b + head_w + head_b),
        ("SHresWS", shres_w + shres_b + shres_front + head_w + head_b),
        (
            "SHresAL",
            2 * (shres_w + shres_b + shres_front) + head_w + head_b,
        ),
        (
            "SHresALWS",
            shres_w + shres_b + shres_front + head_w + head_b,
        ),
        (
            "SHresALWSASYM",
            shres_w + shres_b + shres_front + head_w + head_b,
        ),
    ];
    for (name, count) in expected {
        let s = load(name);
        assert_eq!(plan(&s, common::SEED).unwrap().params, count, "{name}");
        // The built network holds exactly that many values.
        assert_eq!(
            Network::new(&s, common::SEED, 1).unwrap().param_count(),
            count,
            "{name}"
        );
    }
    assert_eq!(load("directWS").train.repeats, 10);
    let joint = plan(&load("joint_baseline"), common::SEED).unwrap().params;
    assert!((65_000..75_000).contains(&joint), "{joint}");
}

/// The sweep starts the costliest rounds first by this estimate.
#[test]
fn work_per_pair_counts_multiply_adds() {
    // Direct digit network, weights and biases times the positions they apply at:
    // conv 60 x 12x12, conv 880 x 4x4, then 30,840 + 10,164 + 850; twice (two digits),
    // plus the head's 252 + 104 + 18.
    let direct = 2 * (60 * 144 + 880 * 16 + 30_840 + 10_164 + 850) + 374;
    assert_eq!(
        plan(&load("directALWSASYM"), common::SEED)
            .unwrap()
            .work_per_pair(),
        direct
    );
    let shres = plan(&load("SHresALWSASYM"), common::SEED)
        .unwrap()
        .work_per_pair();
    assert!(shres > 3 * direct, "{shres} vs {direct}");
}

#[test]
fn every_shipped_spec_runs_forward() {
    let files = spec::spec_files(&[specs_dir()]).unwrap();
    let mut ran = 0;
    for f in files {
        let Some(s) = spec::load(&f).unwrap() else {
            continue;
        };
        let net = Network::new(&s, common::SEED, 3).unwrap();
        let pairs: Vec<f32> = (0..5 * 2 * 196)
            .map(|i| ((i * 37) % 11) as f32 - 5.0)
            .collect();
        let out = net
            .forward::<NoneTape>(
                Input {
                    samples: &pairs,
                    batch: 5,
                },
                false,
            )
            .unwrap();
        match out.compare {
            Some(compare) => {
                assert_eq!(s.model.compare, spec::Compare::Learned, "{}", s.name);
                assert_eq!(*compare.shape(), (5, 2, 1, 1), "{}", s.name);
                assert!(values(&compare).iter().all(|v| v.is_finite()));
            }
            // Compared from the digits' outputs.
            None => assert_ne!(s.model.compare, spec::Compare::Learned, "{}", s.name),
        }
        assert_eq!(out.reversed.is_some(), s.model.asymmetry > 0.0);
        ran += 1;
    }
    assert_eq!(ran, 12);
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lesser-specs-{name}-{}", std::process::id()))
}

const ARGMAX: &str = r#"
[model]
weight_sharing = WS
compare = "argmax"
aux_loss = 1.0
digit = [
  { layer = "conv2d", out = 2, kernel = 3 },
  { layer = "relu" },
  { layer = "flatten" },
  { layer = "linear", in = 288, out = 10 },
]
"#;

/// d(sum of all digit logits)/d(first parameter) for one pair.
fn digit_grad(net: &Network, x0: &[f32], x1: &[f32]) -> Vec<f32> {
    let pairs: Vec<f32> = x0.iter().chain(x1).copied().collect();
    let out = net
        .forward::<OwnedTape<f32, Cpu>>(
            Input {
                samples: &pairs,
                batch: 1,
            },
            true,
        )
        .unwrap();
    let loss = match out.digits.unwrap() {
        DigitLogits::Interleaved(d) => d.sum::<(), _>(),
        DigitLogits::Split(a, b) => a.sum::<(), _>() + b.sum::<(), _>(),
    };
    net.params[0].grad(&loss.backward())
}

#[test]
fn weight_sharing_shares_parameters_and_gradients() {
    let dir = temp("share");
    let shared = spec::load(&write(&dir, "s.toml", &ARGMAX.replace("WS", "true")))
        .unwrap()
        .unwrap();
    let twin = spec::load(&write(&dir, "t.toml", &ARGMAX.replace("WS", "false")))
        .unwrap()
        .unwrap();
    let (ns, nt) = (
        Network::new(&shared, common::SEED, 5).unwrap(),
        Network::new(&twin, common::SEED, 5).unwrap(),
    );
    // One parameter set versus two.
    assert_eq!(ns.params.len(), 4);
    assert_eq!(nt.params.len(), 8);
    assert_eq!(2 * ns.param_count(), nt.param_count());
    let x0: Vec<f32> = (0..196).map(|i| (i % 7) as f32 / 7.0).collect();
    let x1: Vec<f32> = (0..196).map(|i| (i % 5) as f32 / 3.0 - 0.5).collect();
    // Shared: the first conv weight's gradient holds both digits' contributions.
    let g01 = digit_grad(&ns, &x0, &x1);
    let g00 = digit_grad(&ns, &x0, &x0);
    let g11 = digit_grad(&ns, &x1, &x1);
    for i in 0..g01.len() {
        assert!((g01[i] - (g00[i] + g11[i]) / 2.0).abs() < 1e-4, "{i}");
    }
    assert!(g01.iter().zip(&g00).any(|(a, b)| (a - b).abs() > 1e-3));
    // Two copies: the first network's gradient ignores the second digit.
    assert_eq!(digit_grad(&nt, &x0, &x1), digit_grad(&nt, &x0, &x0));
}

fn err_of(path: &Path) -> String {
    match spec::load(path) {
        Ok(Some(s)) => plan(&s, common::SEED).unwrap_err().to_string(),
        Ok(None) => panic!("abstract"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn spec_errors_name_the_file_and_place() {
    let dir = temp("errors");
    // Unknown key: line 3, column 1.
    let p = write(
        &dir,
        "unknown.toml",
        "[model]\naux_loss = 1.0\nwieght_sharing = true\n",
    );
    let e = err_of(&p);
    assert!(
        e.starts_with(&format!(
            "{}:3:1: model.wieght_sharing: unknown field `wieght_sharing`",
            p.display()
        )),
        "{e}"
    );
    // Wrong type: line 2, column 10.
    let p = write(&dir, "type.toml", "[train]\nepochs = \"many\"\n");
    let e = err_of(&p);
    assert!(
        e.starts_with(&format!("{}:2:1: train.epochs: invalid type", p.display())),
        "{e}"
    );
    // Unknown layer kind.
    let p = write(
        &dir,
        "kind.toml",
        "[model]\ndigit = [\n  { layer = \"conv3d\", out = 2 },\n]\n",
    );
    let e = err_of(&p);
    assert!(e.contains("kind.toml:3:") && e.contains("conv3d"), "{e}");
    // Shape mismatch: names spec, stack, index, kind, and both sizes.
    let p = write(
        &dir,
        "shape.toml",
        &ARGMAX.replace("WS", "true").replace("in = 288", "in = 256"),
    );
    let e = err_of(&p);
    assert!(
        e.contains("shape.toml:10:3: spec shape: model.digit[3] (linear): expects 256 input features, got 288"),
        "{e}"
    );
    // A stack that does not end in 10 digit logits.
    let p = write(
        &dir,
        "end.toml",
        &ARGMAX.replace("WS", "true").replace("out = 10", "out = 9"),
    );
    assert!(err_of(&p).contains("model.digit ends in 9, it must end in 10"));
    // Sizes that would overflow or exhaust memory are refused, not attempted.
    let huge = |layer: &str| {
        ARGMAX
            .replace("WS", "true")
            .replace("{ layer = \"relu\" },", layer)
    };
    let p = write(
        &dir,
        "wide.toml",
        &huge("{ layer = \"upsample\", scale = 100000 },"),
    );
    let e = err_of(&p);
    assert!(
        e.contains("wide.toml:8:3: spec wide: model.digit[1] (upsample): gives 2880000000000 values per sample"),
        "{e}"
    );
    let p = write(
        &dir,
        "pad.toml",
        &huge("{ layer = \"conv2d\", out = 2, kernel = 3, padding = 9223372036854775807 },"),
    );
    assert!(
        err_of(&p).contains("model.digit[1] (conv2d)"),
        "{}",
        err_of(&p)
    );
    // extends: a missing parent, then a cycle.
    let p = write(&dir, "orphan.toml", "extends = \"nope.toml\"\n");
    let e = err_of(&p);
    assert!(
        e.contains("orphan.toml:1:1: extends") && e.contains("nope.toml: no such file"),
        "{e}"
    );
    write(&dir, "a.toml", "extends = \"b.toml\"\n");
    let p = write(&dir, "b.toml", "extends = \"a.toml\"\n");
    let e = err_of(&p);
    assert!(
        e.contains("b.toml") && e.contains("cycle in extends"),
        "{e}"
    );
    // Optimizer settings PyTorch would refuse.
    let p = write(
        &dir,
        "betas.toml",
        "[train]\noptimizer = { kind = \"adam\", betas = [1.5, 0.9] }\n",
    );
    assert!(err_of(&p).contains("betas.toml:2:30: train.optimizer.betas: each must be in [0, 1)"));
    // The joint topology refuses an auxiliary loss.
    let p = write(
        &dir,
        "joint.toml",
        "[model]\ntopology = \"joint\"\naux_loss = 1.0\njoint = [{ layer = \"flatten\" }]\n",
    );
    assert!(err_of(&p).contains("model.aux_loss: the joint topology has no digit outputs"));
}

#[test]
fn extends_overrides_keys_and_replaces_stacks() {
    let s = load("directALWSASYM");
    assert!(s.model.weight_sharing);
    assert_eq!((s.model.aux_loss, s.model.asymmetry), (1.0, 1.0));
    assert_eq!(s.model.digit.layers.len(), 11); // from base_direct
    assert_eq!(s.model.head.layers.len(), 5); // from base_common
    assert_eq!(s.train.epochs, 25);
    assert!(s.model.digit.file.ends_with("base_direct.toml"));
    // Abstract bases are not variants.
    assert!(
        spec::load(&specs_dir().join("base_direct.toml"))
            .unwrap()
            .is_none()
    );
    // The hash follows content, not the file name or repeats.
    assert_eq!(load("directALWS").hash(), load("directALWS").hash());
    assert_ne!(load("directALWS").hash(), load("directALWSASYM").hash());
}

#[test]
fn check_command_accepts_shipped_specs_and_rejects_bad_ones() {
    let bin = env!("CARGO_BIN_EXE_lesser");
    let ok = std::process::Command::new(bin)
        .args(["check", "--data", common::DATA])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(ok.status.success());
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(text.contains("total trainable parameters: 43168"), "{text}");
    let files = common::spec_file_count("specs");
    assert!(
        text.contains(&format!("{files} spec files checked, all valid")),
        "{text}"
    );
    // The ablation, which extends specs/best.toml and names it as baseline.
    let ablation = std::process::Command::new(bin)
        .args([
            "check",
            "--data",
            common::DATA,
            "specs/best.toml",
            "specs/ablation",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ablation.stdout);
    assert!(ablation.status.success(), "{text}");
    let files = 1 + common::spec_file_count("specs/ablation");
    assert!(
        text.contains(&format!("{files} spec files checked, all valid")),
        "{text}"
    );
    let dir = temp("check");
    write(&dir, "good.toml", &ARGMAX.replace("WS", "true"));
    write(&dir, "bad1.toml", "[model]\nfoo = 1\n");
    write(&dir, "bad2.toml", "[train]\nepochs = 0\n");
    let bad = std::process::Command::new(bin)
        .args(["check", "--data", common::DATA, dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    // Both bad specs are reported, the good one is still checked.
    assert!(
        err.contains("bad1.toml:2:1: model.foo: unknown field")
            && err.contains("bad2.toml:2:1: train.epochs"),
        "{err}"
    );
    assert!(err.contains("2 of 3 spec files are invalid"), "{err}");
    assert!(String::from_utf8_lossy(&bad.stdout).contains("good ("));
    let missing = std::process::Command::new(bin)
        .args(["check", "--data", common::DATA, "/nonexistent/specs"])
        .output()
        .unwrap();
    // Bad input exits 2; a check that finds invalid specs exits 1.
    assert_eq!(missing.status.code(), Some(2));
    // A directory without any spec file.
    let empty = temp("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = std::process::Command::new(bin)
        .args(["check", "--data", common::DATA, empty.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no spec files (*.toml) in this directory"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/specs"));
}

/// Every layer kind of the language, in one network, trains a round without error.
#[test]
fn every_layer_kind_trains() {
    let dir = temp("kinds");
    let p = write(
        &dir,
        "all.toml",
        r#"
[model]
weight_sharing = false
aux_loss = 0.5
asymmetry = 0.5
digit = [
  { layer = "upsample", scale = 2 },
  { layer = "conv2d", out = 3, kernel = 3, padding = 1 },
  { layer = "batch_norm" },
  { layer = "threshold", threshold = 0.1, value = 0.0 },
  { layer = "avg_pool2d", kernel = 2 },
  { layer = "conv_transpose2d", out = 2, kernel = 2, stride = 2 },
  { layer = "max_pool2d", kernel = 4 },
  { layer = "tanh" },
  { layer = "flatten" },
  { layer = "dropout", p = 0.2 },
  { layer = "linear", in = 98, out = 10 },
  { layer = "sigmoid" },
]
head = [{ layer = "linear", out = 6 }, { layer = "relu" }, { layer = "linear", out = 2 }]
[train]
epochs = 2
batch_size = 25
optimizer = { kind = "sgd", lr = 0.05, momentum = 0.9, weight_decay = 0.0001 }
"#,
    );
    let cfg = lesser::train::RoundConfig {
        epochs: 2,
        data_seed: 1,
        init_seed: 2,
    };
    let v = common::variant(&p, 100);
    let data = v.data.clone();
    let r = lesser::train::train_round(&v, &data, cfg).unwrap().result;
    assert_eq!(r.status, lesser::train::Status::Ok);
    assert!(r.final_train_loss.is_finite());
    assert!(r.test_error.is_some() && r.digit_test_error.is_some());
    // Dropout draws from the round's own seeded device: the same round gives the same numbers.
    assert_eq!(
        lesser::train::train_round(&v, &data, cfg).unwrap().result,
        r
    );
}

#[test]
fn numbers_out_of_range_and_ignored_keys_are_refused() {
    let dir = temp("ranges");
    let base = ARGMAX.replace("WS", "true");
    // The number as written, not as a 32-bit float would hold it.
    for (name, extra, place, shown) in [
        (
            "huge",
            "[train]\noptimizer = { kind = \"adam\", lr = 1e300 }\n",
            ":13:",
            "1e300",
        ),
        (
            "tiny",
            "[train]\noptimizer = { kind = \"adam\", lr = 1e-50 }\n",
            ":13:",
            "1e-50",
        ),
    ] {
        let p = write(&dir, &format!("{name}.toml"), &format!("{base}{extra}"));
        let e = err_of(&p);
        assert!(
            e.contains(place) && e.contains(shown) && e.contains("32-bit float"),
            "{e}"
        );
    }
    // NaN and infinity never reach a layer.
    for (name, layer) in [
        (
            "nanthr",
            "{ layer = \"threshold\", threshold = nan, value = 0.0 }",
        ),
        (
            "nanval",
            "{ layer = \"threshold\", threshold = 0.0, value = nan }",
        ),
        ("infeps", "{ layer = \"batch_norm\", eps = inf }"),
    ] {
        let text = base.replace("  { layer = \"relu\" },", &format!("  {layer},"));
        let p = write(&dir, &format!("{name}.toml"), &text);
        let e = err_of(&p);
        assert!(
            e.contains(":8:3: model.digit[1]: ") && e.contains("not a finite number"),
            "{name}: {e}"
        );
    }
    // Keys the joint topology would ignore.
    let joint = "[model]\ntopology = \"joint\"\nKEY\njoint = [{ layer = \"flatten\" }, \
                 { layer = \"linear\", out = 2 }]\n";
    for (key, line) in [
        ("model.compare", "compare = \"learned\""),
        ("model.digit", "digit = [{ layer = \"flatten\" }]"),
        ("model.head", "head = [{ layer = \"flatten\" }]"),
    ] {
        let p = write(&dir, "joint.toml", &joint.replace("KEY", line));
        let e = err_of(&p);
        assert!(
            e.contains(&format!("{key}: has no effect with topology = \"joint\"")),
            "{e}"
        );
    }
    let p = write(&dir, "joint.toml", &joint.replace("KEY", ""));
    assert!(spec::load(&p).unwrap().is_some());
}

/// A spec turns off the augmentation and test-time shifts of the spec it extends with
/// zeros: it resolves to the same spec (and hash) as one that never had them, whatever the
/// smoothness of an elastic distortion that is off.
#[test]
fn zeros_turn_off_inherited_augmentation_and_tta() {
    let dir = temp("zeros");
    let base = "[model]\nweight_sharing = true\naux_loss = 1.0\ncompare = \"argmax\"\n\
                digit = [{ layer = \"flatten\" }, { layer = \"linear\", out = 10 }]\n";
    write(&dir, "plain.toml", base);
    write(
        &dir,
        "with.toml",
        &format!(
            "{base}[train]\naugment = {{ shift = 1.0, elastic = 0.5 }}\ntta = {{ shift = 1.0 }}\n"
        ),
    );
    write(
        &dir,
        "off.toml",
        "extends = \"with.toml\"\n[train]\naugment = { shift = 0.0, elastic = 0.0, elastic_sigma = 3.0 }\n\
         tta = { shift = 0.0 }\n",
    );
    let load = |n: &str| spec::load(&dir.join(n)).unwrap().unwrap();
    let (plain, with, off) = (load("plain.toml"), load("with.toml"), load("off.toml"));
    assert!(with.train.augment.is_some() && with.train.tta.is_some());
    assert_eq!((off.train.augment, off.train.tta), (None, None));
    assert_eq!(off.hash(), plain.hash());
    for (name, augment) in [
        ("shift.toml", "{ shift = 1.0 }"),
        ("sigma.toml", "{ shift = 1.0, elastic_sigma = 3.0 }"),
    ] {
        write(&dir, name, &format!("{base}[train]\naugment = {augment}\n"));
    }
    assert_eq!(load("sigma.toml").hash(), load("shift.toml").hash());
}

/// The committed reports were made by the shipped specs: every variant's hash is the one in
/// its `results.csv` (a change to how specs resolve that moved a hash would retrain it and
/// break the reports' promise of bytes that only change with the numbers).
#[test]
fn shipped_specs_hash_as_their_committed_reports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (specs, results) in [
        (vec![root.join("specs")], root.join("reports/results.csv")),
        (
            vec![root.join("specs/best.toml"), root.join("specs/ablation")],
            root.join("reports/ablation/results.csv"),
        ),
    ] {
        let mut reader = csv::Reader::from_path(&results).unwrap();
        let header = reader.headers().unwrap().clone();
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        let (variant, hash) = (col("variant"), col("spec_hash"));
        let committed: std::collections::BTreeMap<String, String> = reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r[variant].to_string(), r[hash].to_string())
            })
            .collect();
        let (loaded, _) = lesser::variants::load_valid(&specs, &Default::default()).unwrap();
        assert_eq!(loaded.len(), committed.len(), "{}", results.display());
        for v in loaded {
            assert_eq!(
                Some(&v.spec.hash()),
                committed.get(&v.spec.name),
                "{}",
                v.spec.name
            );
        }
    }
}

/// Weights, as the seed report counts them: convolution, transposed-convolution and linear
/// weights, no biases and no batch-norm parameters; shared ones once.
#[test]
fn weights_are_counted_as_the_seed_counts_them() {
    let weights = |layer: LayerSpec, input: Shape3| infer_layer(&layer, input).unwrap().weights();
    let conv = LayerSpec::Conv2d {
        input: None,
        out: 6,
        kernel: 3,
        stride: 1,
        padding: 0,
    };
    assert_eq!(weights(conv, (1, 14, 14)), 6 * 3 * 3);
    let transposed = LayerSpec::ConvTranspose2d {
        out: 3,
        kernel: 2,
        stride: 2,
        padding: 0,
    };
    assert_eq!(weights(transposed, (2, 14, 14)), 2 * 3 * 2 * 2);
    let linear = LayerSpec::Linear {
        input: None,
        out: 12,
    };
    assert_eq!(weights(linear, (20, 1, 1)), 20 * 12);
    let norm = LayerSpec::BatchNorm {
        momentum: 0.1,
        eps: 1e-5,
    };
    assert_eq!(weights(norm, (8, 14, 14)), 0);
    // A batch-normalized stack, shared: conv 1->8 k3, norm, conv 8->8 k3, norm, linear.
    let dir = temp("weights");
    let spec = r#"
[model]
weight_sharing = true
compare = "argmax"
aux_loss = 1.0
digit = [
  { layer = "conv2d", out = 8, kernel = 3, padding = 1 },
  { layer = "batch_norm" },
  { layer = "relu" },
  { layer = "conv2d", out = 8, kernel = 3 },
  { layer = "batch_norm" },
  { layer = "flatten" },
  { layer = "linear", out = 10 },
]
"#;
    let s = spec::load(&write(&dir, "bn.toml", spec)).unwrap().unwrap();
    let plan = plan(&s, common::SEED).unwrap();
    assert_eq!(plan.weights, 8 * 9 + 8 * 8 * 9 + 8 * 12 * 12 * 10);
    assert_eq!(
        plan.params,
        plan.weights + 8 + 2 * 8 + 8 + 2 * 8 + 10,
        "params add the biases and the norms' scales and shifts"
    );
    // The seed report's figures for the networks it counts without a typo.
    assert_eq!(
        lesser::compile::plan(&load("directAL"), common::SEED)
            .unwrap()
            .weights,
        85_468
    );
    assert_eq!(
        lesser::compile::plan(&load("directWS"), common::SEED)
            .unwrap()
            .weights,
        42_910
    );
}
