//! The same bits on every kernel: a small sweep over every layer kind, run once under each
//! `LESSER_KERNEL` this CPU has, writes byte-identical reports.

mod common;

use common::{command, data, read, stderr, temp};
use lesser::kernels::Kernel;

/// Every layer kind and every convolution path: stride 1 in the lane layout (padded, chained,
/// with ReLU and pool fused), stride 2 on im2col, the upsampling transposed convolution and a
/// general one, batch norm, dropout, both pools, every activation.
const SPECS: [(&str, &str); 3] = [
    (
        "lanes",
        r#"
[model]
weight_sharing = true
aux_loss = 1.0
asymmetry = 0.5
digit = [
  { layer = "conv2d", out = 8, kernel = 3, padding = 1 },
  { layer = "batch_norm" },
  { layer = "relu" },
  { layer = "conv2d", out = 8, kernel = 3 },
  { layer = "relu" },
  { layer = "max_pool2d", kernel = 2 },
  { layer = "conv2d", out = 16, kernel = 3 },
  { layer = "tanh" },
  { layer = "flatten" },
  { layer = "dropout", p = 0.2 },
  { layer = "linear", out = 10 },
]
head = [{ layer = "linear", in = 20, out = 8 }, { layer = "sigmoid" }, { layer = "linear", out = 2 }]
[train]
epochs = 2
repeats = 2
batch_size = 50
"#,
    ),
    (
        "strided",
        r#"
[model]
aux_loss = 0.5
digit = [
  { layer = "conv_transpose2d", out = 2, kernel = 2, stride = 2 },
  { layer = "conv2d", out = 2, kernel = 3, padding = 1 },
  { layer = "threshold", threshold = 0.0, value = 0.0 },
  { layer = "conv2d", out = 4, kernel = 3, stride = 2 },
  { layer = "conv_transpose2d", out = 3, kernel = 3, stride = 2, padding = 1 },
  { layer = "avg_pool2d", kernel = 3 },
  { layer = "upsample", scale = 2 },
  { layer = "max_pool2d", kernel = 3, stride = 2 },
  { layer = "flatten" },
  { layer = "linear", out = 10 },
]
head = [{ layer = "linear", in = 20, out = 2 }]
[train]
epochs = 2
repeats = 2
batch_size = 50
"#,
    ),
    (
        "joint",
        r#"
[model]
topology = "joint"
joint = [
  { layer = "conv2d", out = 12, kernel = 5 },
  { layer = "relu" },
  { layer = "max_pool2d", kernel = 2 },
  { layer = "flatten" },
  { layer = "linear", out = 40 },
  { layer = "relu" },
  { layer = "linear", out = 2 },
]
[train]
epochs = 2
repeats = 2
batch_size = 50
optimizer = { kind = "sgd", lr = 0.05, momentum = 0.9, weight_decay = 0.001 }
"#,
    ),
];

#[test]
fn every_kernel_writes_the_same_reports() {
    let d = temp("kernels", "same");
    for (name, text) in SPECS {
        std::fs::write(d.join(format!("specs/{name}.toml")), text).unwrap();
    }
    let kernels = Kernel::available();
    assert!(kernels.contains(&Kernel::Portable));
    let names: Vec<&str> = kernels.iter().map(|k| k.name()).collect();
    println!("comparing the kernels this CPU has: {}", names.join(", "));
    // A test that compares one kernel with itself proves nothing: on an x86-64 CPU with AVX2
    // there must be two at least.
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        assert!(kernels.len() >= 2, "only {names:?} on a CPU with AVX2");
    }
    let mut first: Option<(String, String)> = None;
    for k in kernels {
        let out_dir = format!("out-{}", k.name());
        let out = command(&d)
            .env("LESSER_KERNEL", k.name())
            .args([
                "run",
                "--data",
                &data(),
                "--pairs",
                "150",
                "--out",
                &out_dir,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", k.name(), stderr(&out));
        assert!(
            stderr(&out).contains(&format!("({} kernel)", k.name())),
            "{}",
            stderr(&out)
        );
        let files = (
            read(d.join(&out_dir).join("results.csv")),
            read(d.join(&out_dir).join("REPORT.md")),
        );
        assert_eq!(files.0.lines().count(), 7, "{}", files.0);
        match &first {
            None => first = Some(files),
            Some(f) => {
                assert_eq!(&files.0, &f.0, "results.csv under {}", k.name());
                assert_eq!(&files.1, &f.1, "REPORT.md under {}", k.name());
            }
        }
    }
    // An unknown kernel is refused before anything runs.
    let out = command(&d)
        .env("LESSER_KERNEL", "sse9")
        .args(["check", "--data", common::DATA, "specs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("LESSER_KERNEL=sse9: unknown kernel"));
}
