//! Threads inside a round give the same bits: a sweep with a batch-normalized network, an
//! ensemble and a grid writes the same `results.csv` (weights hash included) whatever
//! `--jobs` and `--threads` are, on every kernel this CPU has.

mod common;

use common::{command, data, read, stderr, temp};
use lesser::kernels::Kernel;

/// Layers wide enough that every pass splits (`lesser::par::MIN_WORK`): 16 channels of 3x3
/// taps over 14 positions a row, and more for the weight gradients.
const BN: &str = r#"
[model]
weight_sharing = true
aux_loss = 1.0
digit = [
  { layer = "conv2d", out = 16, kernel = 3, padding = 1 },
  { layer = "batch_norm" },
  { layer = "relu" },
  { layer = "conv2d", out = 16, kernel = 3, padding = 1 },
  { layer = "batch_norm" },
  { layer = "relu" },
  { layer = "max_pool2d", kernel = 2 },
  { layer = "flatten" },
  { layer = "linear", out = 64 },
  { layer = "relu" },
  { layer = "linear", out = 10 },
]
head = [{ layer = "linear", in = 20, out = 2 }]
[train]
epochs = 1
repeats = 2
batch_size = 50
"#;

#[test]
fn results_do_not_depend_on_threads() {
    let d = temp("threads", "same");
    let specs = [
        ("bn", BN.to_string()),
        (
            "ensemble",
            BN.replace("repeats = 2", "repeats = 1\nensemble = 2"),
        ),
        (
            "grid",
            format!("{BN}[grid]\n\"train.optimizer.lr\" = [0.0005, 0.002]\n"),
        ),
    ];
    for (name, text) in &specs {
        std::fs::write(d.join(format!("specs/{name}.toml")), text).unwrap();
    }
    let runs: [(&str, &str); 5] = [("1", "1"), ("2", "2"), ("1", "2"), ("1", "3"), ("2", "16")];
    let mut first: Option<String> = None;
    for k in Kernel::available() {
        for (jobs, threads) in runs {
            let out_dir = format!("out-{}-{jobs}-{threads}", k.name());
            let args = [
                "run",
                "--data",
                &data(),
                "--pairs",
                "150",
                "--out",
                &out_dir,
            ];
            let out = command(&d)
                .env("LESSER_KERNEL", k.name())
                .args(args)
                .args(["--jobs", jobs, "--threads", threads])
                .output()
                .unwrap();
            let what = format!("{} --jobs {jobs} --threads {threads}", k.name());
            assert!(out.status.success(), "{what}: {}", stderr(&out));
            let results = read(d.join(&out_dir).join("results.csv"));
            // 2 + 1 + 2 x 2 rounds.
            assert_eq!(results.lines().count(), 8, "{what}: {results}");
            match &first {
                None => first = Some(results),
                Some(f) => assert_eq!(&results, f, "results.csv under {what}"),
            }
        }
    }
}

#[test]
fn a_thread_count_out_of_range_is_refused() {
    let d = temp("threads", "range");
    for bad in ["0", "100000"] {
        let out = command(&d)
            .args(["run", "--data", &data(), "--threads", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(stderr(&out).contains("--threads"), "{}", stderr(&out));
    }
}
